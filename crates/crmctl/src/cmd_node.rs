//! `crmctl node ...`: standby/unstandby, maintenance/unmaintenance (node attributes in the
//! configuration's `<nodes>`, as `crm_standby` writes them), permanent attributes, and the node
//! list. Mutations run through [`crate::cmd_resource::mutate`].

use std::process::ExitCode;

use clap::{Args, Subcommand};
use crm::edit::{self, Goal, Notes};

use crate::cmd_resource::{API_VERSION, EditFlags, Output, key_value, load, mutate};
use crate::exit::Exit;

/// `crmctl node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
    #[command(flatten)]
    flags: EditFlags,
}

/// Nodes to act on.
#[derive(Debug, Args)]
struct Targets {
    /// Node names.
    nodes: Vec<String>,
    /// Every configured node.
    #[arg(long, conflicts_with = "nodes")]
    all: bool,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Nodes, their state, and what runs on them.
    #[command(alias = "status")]
    List,
    /// Move every resource off the nodes and keep them off (standby=on).
    Standby(Targets),
    /// Let the nodes run resources again.
    #[command(alias = "online")]
    Unstandby(Targets),
    /// Leave the nodes' resources alone: no starts, stops or monitors (maintenance=on).
    Maintenance(Targets),
    /// Manage the nodes' resources again.
    #[command(alias = "ready")]
    Unmaintenance(Targets),
    /// Standby, then wait until nothing runs on the node, and report (default: 5 minutes).
    Drain {
        /// The node.
        node: String,
        /// How long to wait for the node to empty.
        #[arg(long, default_value = "5min")]
        timeout: String,
    },
    /// Show permanent node attributes, or set them: `attribute [N]` | `attribute N k=v…` (`k=` unsets).
    Attribute {
        /// The node.
        node: Option<String>,
        /// Attributes to set.
        #[arg(value_name = "K=V")]
        pairs: Vec<String>,
    },
}

fn targets(flags: &EditFlags, t: &Targets) -> anyhow::Result<Vec<String>> {
    if t.all {
        let (cib, _) = load(flags)?;
        return Ok(cib.config.nodes.iter().map(|n| n.uname.clone()).collect());
    }
    if t.nodes.is_empty() {
        return Err(Exit::error(Exit::USAGE, "name the nodes, or give --all"));
    }
    Ok(t.nodes.clone())
}

fn set_all(
    flags: &EditFlags,
    nodes: &[String],
    name: &'static str,
    value: Option<&'static str>,
    what: &str,
    goal: Goal,
) -> anyhow::Result<ExitCode> {
    mutate(
        flags,
        &format!("{what} {}", nodes.join(", ")),
        |c| {
            let mut notes = Notes::new();
            for n in nodes {
                notes.extend(edit::set_node_attribute(c, n, name, value)?);
            }
            Ok(notes)
        },
        goal,
    )
}

pub(crate) fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let flags = &args.flags;
    match &args.command {
        NodeCommand::List => list(flags),
        NodeCommand::Standby(t) => {
            let nodes = targets(flags, t)?;
            let goal = if nodes.len() == 1 { Goal::NodeEmpty(nodes[0].clone()) } else { Goal::Settled };
            set_all(flags, &nodes, edit::STANDBY, Some("on"), "standby", goal)
        }
        NodeCommand::Unstandby(t) => {
            set_all(flags, &targets(flags, t)?, edit::STANDBY, None, "unstandby", Goal::Settled)
        }
        NodeCommand::Maintenance(t) => {
            set_all(flags, &targets(flags, t)?, edit::MAINTENANCE, Some("on"), "maintenance", Goal::Settled)
        }
        NodeCommand::Unmaintenance(t) => {
            set_all(flags, &targets(flags, t)?, edit::MAINTENANCE, None, "unmaintenance", Goal::Settled)
        }
        NodeCommand::Drain { node, timeout } => {
            if flags.file.is_some() || flags.dry_run {
                return Err(Exit::error(Exit::USAGE, "drain acts on the live cluster; -f and --dry-run do not apply"));
            }
            let drain = crate::cmd_resource::EditFlags { wait: Some(timeout.clone()), ..flags.clone() };
            set_all(
                &drain,
                std::slice::from_ref(node),
                edit::STANDBY,
                Some("on"),
                "draining",
                Goal::NodeEmpty(node.clone()),
            )
        }
        NodeCommand::Attribute { node, pairs } if pairs.is_empty() => {
            let (cib, _) = load(flags)?;
            let mut any = false;
            for n in cib.config.nodes.iter().filter(|n| node.as_ref().is_none_or(|w| w == &n.uname || w == &n.id)) {
                any = true;
                let attrs: Vec<String> = n
                    .attributes
                    .iter()
                    .flat_map(|s| &s.pairs)
                    .map(|p| format!("{}={}", p.name, p.value.as_deref().unwrap_or("")))
                    .collect();
                println!("{}: {}", n.uname, if attrs.is_empty() { "(none)".to_string() } else { attrs.join(" ") });
            }
            if !any && let Some(n) = node {
                return Err(Exit::error(Exit::NO_SUCH, format!("no node named '{n}'")));
            }
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Attribute { node, pairs } => {
            let node = node.clone().ok_or_else(|| Exit::error(Exit::USAGE, "name the node"))?;
            let kv: Vec<(String, String)> = pairs
                .iter()
                .map(|w| key_value(w).ok_or_else(|| Exit::error(Exit::USAGE, format!("'{w}' is not key=value"))))
                .collect::<anyhow::Result<_>>()?;
            mutate(
                flags,
                &format!("set attributes of {node}"),
                |c| {
                    let mut notes = Notes::new();
                    for (k, v) in &kv {
                        notes.extend(edit::set_node_attribute(c, &node, k, (!v.is_empty()).then_some(v.as_str()))?);
                    }
                    Ok(notes)
                },
                Goal::Settled,
            )
        }
    }
}

fn list(flags: &EditFlags) -> anyhow::Result<ExitCode> {
    let (cib, quorum) = load(flags)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let t = crm::schedule(&cib, quorum, cib.execution_date.unwrap_or(now));
    if flags.output == Output::Json {
        let nodes: Vec<serde_json::Value> = t
            .current
            .nodes
            .iter()
            .map(|n| {
                let mut running = Vec::new();
                collect_running(&t.current.resources, &n.name, &mut running);
                let attrs: serde_json::Map<String, serde_json::Value> = cib
                    .config
                    .nodes
                    .iter()
                    .filter(|c| c.uname == n.name)
                    .flat_map(|c| c.attributes.iter().flat_map(|s| &s.pairs))
                    .map(|p| (p.name.clone(), p.value.clone().unwrap_or_default().into()))
                    .collect();
                serde_json::json!({ "name": n.name, "state": n.state, "resources": running, "attributes": attrs })
            })
            .collect();
        let doc = serde_json::json!({ "api_version": API_VERSION, "nodes": nodes });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    if t.current.nodes.is_empty() {
        println!("no nodes known yet");
    }
    for n in &t.current.nodes {
        let mut running = Vec::new();
        collect_running(&t.current.resources, &n.name, &mut running);
        println!(
            "{}\t{}\t{}",
            n.name,
            n.state,
            if running.is_empty() { "(no resources)".to_string() } else { running.join(" ") }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn collect_running(views: &[crm::scheduler::RscView], node: &str, out: &mut Vec<String>) {
    for v in views {
        if v.kind == "primitive" && v.nodes.iter().any(|n| n == node) {
            out.push(v.id.clone());
        }
        collect_running(&v.children, node, out);
    }
}
