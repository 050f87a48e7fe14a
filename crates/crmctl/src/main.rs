//! `crmctl`: the one admin CLI. Parses arguments and calls one library function per command;
//! each command area lives in its own module (`cmd_<area>.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_membership;
mod exit;

/// Manage a cluster: resources, constraints, nodes, quorum, fencing and volumes.
#[derive(Debug, Parser)]
#[command(name = "crmctl", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of this build and the wire protocol it speaks.
    Version,
    /// Cluster membership: views, links, counters.
    Membership(cmd_membership::MembershipArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("crmctl {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Membership(args) => cmd_membership::run(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("crmctl: {err:#}");
            exit::code_for(&err)
        }
    }
}
