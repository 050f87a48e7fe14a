//! `crmctl simulate` and `crmctl explain`: run the policy engine on a CIB file, or on the live
//! CIB of the local clusterd (`--live`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::exit::Exit;

/// Policy-engine commands that work offline on a saved CIB.
#[derive(Debug, Subcommand)]
pub(crate) enum CrmCommand {
    /// Show what the cluster would do: current status, then the Transition Summary.
    Simulate(SimulateArgs),
    /// Explain where a resource is placed and why, score by score.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// CIB XML file (a Pacemaker CIB with its status section).
    #[arg(short = 'f', long = "file", required_unless_present = "live", conflicts_with = "live")]
    file: Option<String>,
    /// Use the live CIB of the local clusterd (quorum as the partition has it).
    #[arg(long)]
    live: bool,
    /// clusterd's runtime directory (with --live).
    #[arg(long, default_value = "/run/clusterd")]
    run_dir: std::path::PathBuf,
    /// Print allocation scores.
    #[arg(long)]
    scores: bool,
    /// Treat node N as failed (may repeat).
    #[arg(long = "node-fail", value_name = "N")]
    node_fail: Vec<String>,
    /// Inject an operation result: RSC_OP_INTERVAL@NODE=RC (may repeat).
    #[arg(long = "op-fail", alias = "op-inject", value_name = "RSC_OP@NODE=RC")]
    op_fail: Vec<String>,
    /// Override quorum (0 or 1).
    #[arg(long)]
    quorum: Option<u8>,
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// Resource id.
    resource: String,
    /// CIB XML file.
    #[arg(short = 'f', long = "file")]
    file: String,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn load(file: &str, opts: &crm::simulate::SimOptions) -> anyhow::Result<crm::simulate::Simulation> {
    let xml =
        std::fs::read_to_string(file).map_err(|e| Exit::error(Exit::NO_INPUT, format!("cannot read {file}: {e}")))?;
    load_text(&xml, file, opts)
}

fn load_text(xml: &str, file: &str, opts: &crm::simulate::SimOptions) -> anyhow::Result<crm::simulate::Simulation> {
    let sim = crm::simulate::simulate(xml, opts)
        .map_err(|e| Exit::error(Exit::CONFIG, e.to_string()))
        .with_context(|| format!("loading {file}"))?;
    for w in &sim.warnings {
        eprintln!("warning: {w}");
    }
    for p in crm::cib::validate(&sim.cib) {
        eprintln!("warning: {p}");
    }
    Ok(sim)
}

pub(crate) fn run(cmd: CrmCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CrmCommand::Simulate(a) => {
            let mut opts = crm::simulate::SimOptions {
                node_fail: a.node_fail,
                op_fail: a.op_fail,
                scores: a.scores,
                quorum: a.quorum.map(|q| q != 0),
                now: now(),
            };
            let sim = match &a.file {
                Some(f) => load(f, &opts)?,
                None => {
                    let report = crate::cmd_config::live(&a.run_dir)?;
                    opts.quorum = opts.quorum.or(Some(report.quorate));
                    load_text(&report.xml, "the live CIB", &opts)?
                }
            };
            print!("{}", crm::simulate::format_status(&sim.transition));
            println!();
            if a.scores {
                print!("{}", crm::simulate::format_scores(&sim.transition));
                println!();
            }
            print!("{}", crm::simulate::format_summary(&sim.transition));
            println!();
            print!("{}", crm::simulate::format_actions(&sim.transition));
            println!();
            print!("{}", crm::simulate::format_revised(&sim.transition));
            Ok(ExitCode::SUCCESS)
        }
        CrmCommand::Explain(a) => {
            let opts = crm::simulate::SimOptions { now: now(), ..Default::default() };
            let sim = load(&a.file, &opts)?;
            match crm::simulate::explain(&sim.transition, &a.resource) {
                Some(text) => {
                    print!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(Exit::error(Exit::NO_SUCH, format!("no resource named '{}'", a.resource))),
            }
        }
    }
}
