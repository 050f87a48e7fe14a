//! `crmctl quorum status | expected-votes N`: votequorum on the local node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use clusterd::control::{self, ControlError, Request, Response};

use crate::exit::Exit;

/// Quorum commands.
#[derive(Debug, Args)]
pub(crate) struct QuorumArgs {
    #[command(subcommand)]
    command: QuorumCommand,
    /// The daemon's runtime directory (where its control socket is).
    #[arg(long, default_value = "/run/clusterd", global = true)]
    run_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum QuorumCommand {
    /// Votes, expected votes, quorum, flags, the arbiter, and in plain words why the partition is
    /// (or is not) quorate. Exits 0 when quorate, 106 (no quorum) when not.
    Status {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Change expected votes on every member (never below the votes present).
    ExpectedVotes {
        /// The new expected votes.
        votes: u32,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn ask(run_dir: &std::path::Path, req: &Request) -> anyhow::Result<Response> {
    match control::query(run_dir, req) {
        Ok(Response::Error(e)) => Err(Exit::error(Exit::ERROR, format!("clusterd refused: {e}"))),
        Ok(r) => Ok(r),
        Err(e @ ControlError::Connect { .. }) => Err(Exit::error(Exit::NOT_CONNECTED, e.to_string())),
        Err(e) => Err(Exit::error(Exit::ERROR, e.to_string())),
    }
}

pub(crate) fn run(args: QuorumArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        QuorumCommand::Status { output } => {
            let Response::QuorumStatus(report) = ask(&args.run_dir, &Request::QuorumStatus)? else {
                return Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd"));
            };
            match output {
                Format::Text => print!("{}", clusterd::render_quorum(&report)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(if report.status.quorate { ExitCode::SUCCESS } else { ExitCode::from(Exit::NO_QUORUM) })
        }
        QuorumCommand::ExpectedVotes { votes } => match ask(&args.run_dir, &Request::SetExpectedVotes(votes))? {
            Response::Done(what) => {
                println!("{what}");
                Ok(ExitCode::SUCCESS)
            }
            _ => Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd")),
        },
    }
}
