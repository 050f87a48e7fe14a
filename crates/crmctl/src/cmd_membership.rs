//! `crmctl membership status`: the local node's view, links and counters.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use clusterd::control::{self, ControlError, Request, Response};

use crate::exit::Exit;

/// Membership commands.
#[derive(Debug, Args)]
pub(crate) struct MembershipArgs {
    #[command(subcommand)]
    command: MembershipCommand,
}

#[derive(Debug, Subcommand)]
enum MembershipCommand {
    /// Show the ring id, members, per-link state and counters of the local node.
    Status {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
        output: Format,
        /// The daemon's runtime directory (where its control socket is).
        #[arg(long, default_value = "/run/clusterd")]
        run_dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub(crate) fn run(args: MembershipArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MembershipCommand::Status { output, run_dir } => {
            let status = match control::query(&run_dir, &Request::MembershipStatus) {
                Ok(Response::MembershipStatus(s)) => s,
                Ok(Response::Error(e)) => return Err(Exit::error(Exit::ERROR, format!("clusterd refused: {e}"))),
                Ok(other) => return Err(Exit::error(Exit::ERROR, format!("unexpected answer: {other:?}"))),
                Err(e @ ControlError::Connect { .. }) => return Err(Exit::error(Exit::NOT_CONNECTED, e.to_string())),
                Err(e) => return Err(Exit::error(Exit::ERROR, e.to_string())),
            };
            match output {
                Format::Text => print!("{}", clusterd::render_status(&status)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
