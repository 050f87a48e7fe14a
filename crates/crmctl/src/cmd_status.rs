//! `crmctl status`: the cluster at a glance, from the local clusterd (or `-f FILE` offline).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use clusterd::control::{Request, Response};
use crm::cib::{Cib, Resource, ResourceKind};

use crate::exit::Exit;

/// `crmctl status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Work offline on a saved CIB (a Pacemaker CIB with its status section).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// clusterd's runtime directory.
    #[arg(long, default_value = "/run/clusterd")]
    run_dir: PathBuf,
}

fn property<'a>(cib: &'a Cib, names: &[&str]) -> Option<&'a str> {
    cib.config
        .properties
        .iter()
        .flat_map(|set| set.pairs.iter())
        .filter(|p| names.contains(&p.name.as_str()))
        .find_map(|p| p.value.as_deref())
}

fn is_false(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "false" | "no" | "off" | "0" | "n"))
}

fn is_true(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1" | "y"))
}

fn count_primitives(r: &Resource, fence: &mut usize, other: &mut usize) {
    match &r.kind {
        ResourceKind::Primitive { class, .. } if class == "stonith" => *fence += 1,
        ResourceKind::Primitive { .. } => *other += 1,
        ResourceKind::Group { members } => members.iter().for_each(|m| count_primitives(m, fence, other)),
        ResourceKind::Clone { child, .. } => count_primitives(child, fence, other),
    }
}

/// Loud lines an administrator must not miss.
fn banners(cib: &Cib) -> Vec<String> {
    let mut out = Vec::new();
    let (mut fence, mut other) = (0, 0);
    for r in &cib.config.resources {
        count_primitives(r, &mut fence, &mut other);
    }
    if is_false(property(cib, &["fencing-enabled", "stonith-enabled"])) {
        out.push(
            "*** FENCING IS DISABLED: a lost node's resources are started elsewhere without knowing it is down ***"
                .into(),
        );
    } else if fence == 0 && other > 0 {
        out.push(
            "*** NO FENCE DEVICES: resources of a lost node stay where they were until it is fenced; add one with crmctl stonith create ***"
                .into(),
        );
    }
    if is_true(property(cib, &["maintenance-mode"])) {
        out.push("*** MAINTENANCE MODE: the cluster starts, stops and monitors nothing ***".into());
    }
    if is_true(property(cib, &["stop-all-resources"])) {
        out.push("*** STOP-ALL-RESOURCES is set: every resource is stopped ***".into());
    }
    out
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut head = String::new();
    let (xml, quorate, busy) = match &args.file {
        Some(f) => {
            let xml = std::fs::read_to_string(f)
                .map_err(|e| Exit::error(Exit::NO_INPUT, format!("cannot read {}: {e}", f.display())))?;
            let _ = writeln!(head, "Offline: {}", f.display());
            (xml, None, None)
        }
        None => {
            let report = crate::cmd_config::live(&args.run_dir)?;
            let q = match crate::daemon::ask(&args.run_dir, &Request::QuorumStatus)? {
                Response::QuorumStatus(q) => q,
                _ => return Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd")),
            };
            let s = &q.status;
            let members: Vec<String> = s
                .members
                .iter()
                .map(|m| q.nodes.iter().find(|n| n.0 == *m).map_or_else(|| m.to_string(), |n| n.1.clone()))
                .collect();
            let _ = writeln!(
                head,
                "Cluster: {}   Seen from: {} (id {}), a partition of {} node{}: {}",
                q.cluster_name,
                q.name,
                q.node_id,
                members.len(),
                if members.len() == 1 { "" } else { "s" },
                members.join(" ")
            );
            let arbiter = match &q.arbiter {
                None => "none".to_string(),
                Some(a) if a.has_vote => format!("{} connected, vote for this partition", a.address),
                Some(a) if a.connected => format!("{} connected, no vote for this partition", a.address),
                Some(a) => format!("{} NOT connected", a.address),
            };
            let _ = writeln!(
                head,
                "Quorum: {} ({} of {} expected votes, {} needed)   Arbiter: {arbiter}",
                if s.quorate { "yes" } else { "NO: changes are refused and resources are stopped" },
                s.total_votes,
                s.expected_votes,
                s.quorum
            );
            let (a, e, n) = report.version;
            let _ = writeln!(
                head,
                "DC: {}   CIB: version {a}.{e}.{n}{}",
                report.dc.as_deref().unwrap_or("none"),
                if report.synced { "" } else { " (synchronizing with the members)" }
            );
            (report.xml, Some(s.quorate), report.transition_running)
        }
    };
    let opts = crm::simulate::SimOptions { quorum: quorate, now: now(), ..Default::default() };
    let sim = crm::simulate::simulate(&xml, &opts).map_err(|e| Exit::error(Exit::CONFIG, e.to_string()))?;
    print!("{head}");
    for b in banners(&sim.cib) {
        println!("{b}");
    }
    println!();
    print!("{}", crm::simulate::format_status(&sim.transition));
    println!();
    print!("{}", crm::simulate::format_failures(&sim.cib));
    if sim.transition.executable().any(|a| !a.pseudo) {
        if quorate.is_some() {
            println!("In progress: the DC is carrying out (or about to carry out) this transition:");
        }
        print!("{}", crm::simulate::format_summary(&sim.transition));
    } else if busy == Some(true) {
        // The plan is done as far as the CIB shows, but results are still coming in.
        println!("In progress: the DC is finishing a transition (results still to be recorded).");
    } else {
        println!("Settled: the policy engine has nothing to do.");
    }
    Ok(ExitCode::SUCCESS)
}
