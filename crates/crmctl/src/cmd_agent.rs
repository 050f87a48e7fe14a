//! `crmctl agent …`: list, describe and run resource agents by hand, without the daemon
//! (like `crm_resource --list-agents`, `--show-metadata` and `--force-*`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use agents::{Action, ExecStatus, Registry, Request};
use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::exit::Exit;

/// Resource agents: list, describe, run an action by hand.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
    /// OCF root directory (scripts under ROOT/resource.d/PROVIDER/TYPE).
    #[arg(long, global = true, default_value = agents::OCF_ROOT)]
    ocf_root: std::path::PathBuf,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// List every agent on this machine (native and OCF), optionally filtered by class.
    List {
        /// Only this class (`native`, `ocf`).
        #[arg(long)]
        class: Option<String>,
    },
    /// Show an agent's parameters (type, required, default) and actions.
    Describe {
        /// `class:provider:type`, or a type name when unambiguous.
        agent: String,
        /// Print the raw meta-data XML.
        #[arg(long)]
        xml: bool,
    },
    /// Run one action now, on this machine, and print rc, exit reason and timing.
    Run {
        /// `class:provider:type`, or a type name when unambiguous.
        agent: String,
        /// start, stop, monitor, promote, demote, notify, reload, validate-all, meta-data.
        action: String,
        /// Instance parameters as key=value.
        params: Vec<String>,
        /// Timeout (Pacemaker syntax: 20s, 500ms, 2min); default: the agent's own.
        #[arg(long)]
        timeout: Option<String>,
        /// Monitor depth (OCF_CHECK_LEVEL): 0, 10 or 20.
        #[arg(long, default_value_t = 0)]
        depth: u32,
        /// Resource id passed as OCF_RESOURCE_INSTANCE.
        #[arg(long, default_value = "manual")]
        instance: String,
        /// Meta attribute key=value (repeatable), passed as OCF_RESKEY_CRM_meta_KEY.
        #[arg(long = "meta")]
        meta: Vec<String>,
    },
    /// Run an agent with the OCF calling convention: parameters from OCF_RESKEY_*, exit code =
    /// OCF code, `ocf-exit-reason:` on stderr. For a wrapper script that hands a native agent
    /// to an OCF cluster manager or to ocf-tester: `exec crmctl agent ocf-exec vip "$1"`.
    OcfExec {
        /// `class:provider:type`, or a type name when unambiguous.
        agent: String,
        /// The OCF action (argv[1] of the wrapper).
        action: String,
    },
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Exit::error(Exit::USAGE, format!("{what} `{kv}` is not key=value")))
        })
        .collect()
}

pub(crate) fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let registry = Registry::new(&args.ocf_root);
    match args.command {
        AgentCommand::List { class } => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for name in registry.list() {
                if class.as_deref().is_none_or(|c| c == name.class)
                    && writeln!(out, "{name}").is_err()
                {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Describe { agent, xml } => {
            let a = registry
                .get(&agent)
                .map_err(|e| Exit::error(Exit::NO_SUCH, e.to_string()))?;
            if xml {
                print!("{}", a.meta_data_xml()?);
                return Ok(ExitCode::SUCCESS);
            }
            let md = a.meta_data()?;
            let full = registry.resolve(&agent)?;
            println!("{full} (version {}): {}", md.version, md.shortdesc);
            if !md.longdesc.is_empty() {
                println!(
                    "  {}",
                    md.longdesc.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
            println!("\nParameters:");
            for p in &md.params {
                let mut flags = Vec::new();
                if p.required {
                    flags.push("required".to_owned());
                }
                if p.unique {
                    flags.push("unique".to_owned());
                }
                if let Some(d) = &p.default {
                    flags.push(format!("default={d}"));
                }
                let kind = match &p.kind {
                    agents::ParamType::Select(o) => format!("one of {}", o.join("|")),
                    k => format!("{k:?}").to_lowercase(),
                };
                println!(
                    "  {:<20} {:<10} {}{}",
                    p.name,
                    kind,
                    p.shortdesc,
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", flags.join(", "))
                    }
                );
            }
            println!("\nActions:");
            for a in &md.actions {
                let mut extra = String::new();
                if let Some(i) = a.interval {
                    extra.push_str(&format!(" interval={}s", i.as_secs()));
                }
                if let Some(d) = a.depth {
                    extra.push_str(&format!(" depth={d}"));
                }
                if let Some(r) = &a.role {
                    extra.push_str(&format!(" role={r}"));
                }
                println!("  {:<14} timeout={}s{extra}", a.name, a.timeout.as_secs());
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::OcfExec { agent, action } => {
            use std::io::Write as _;
            let a = match registry.get(&agent) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("ocf-exit-reason:{e}");
                    return Ok(ExitCode::from(5));
                }
            };
            let env = std::env::vars().collect();
            let out = agents::run_as_ocf_script(a.as_ref(), &action, &env);
            let _ = std::io::stdout().write_all(out.stdout.as_bytes());
            let _ = std::io::stderr().write_all(out.stderr.as_bytes());
            Ok(ExitCode::from(out.code))
        }
        AgentCommand::Run {
            agent,
            action,
            params,
            timeout,
            depth,
            instance,
            meta,
        } => {
            let a = registry
                .get(&agent)
                .map_err(|e| Exit::error(Exit::NO_SUCH, e.to_string()))?;
            let action: Action = action
                .parse()
                .map_err(|e: agents::AgentError| Exit::error(Exit::USAGE, e.to_string()))?;
            let timeout = timeout
                .map(|t| {
                    agents::parse_duration(&t).ok_or_else(|| {
                        Exit::error(
                            Exit::USAGE,
                            format!("--timeout `{t}` is not a duration (e.g. 20s, 500ms)"),
                        )
                    })
                })
                .transpose()?;
            let mut req = Request::new(action, &instance, pairs(&params, "parameter")?);
            req.meta = pairs(&meta, "--meta")?;
            req.depth = depth;
            req.timeout = timeout;
            let result = agents::execute(a.as_ref(), &req);
            if !result.output.is_empty() && action == Action::MetaData {
                print!("{}", result.output);
            }
            println!(
                "{} {} rc={} ({}) reason='{}' time={:.3}s{}",
                registry
                    .resolve(&agent)
                    .context("resolving the agent name")?,
                action,
                result.rc.code(),
                result.rc.name(),
                result.reason.as_deref().unwrap_or(""),
                result.elapsed.as_secs_f64(),
                if result.status == ExecStatus::TimedOut {
                    format!(" TIMED OUT (timeout {:.3}s)", result.timeout.as_secs_f64())
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::from(match result.status {
                ExecStatus::TimedOut => Exit::TIMEOUT,
                ExecStatus::Done if result.rc.code() <= 9 => result.rc.code(),
                ExecStatus::Done => match result.rc {
                    agents::OcfRc::Degraded | agents::OcfRc::DegradedPromoted => 0,
                    _ => Exit::ERROR,
                },
            }))
        }
    }
}
