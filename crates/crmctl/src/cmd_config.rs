//! `crmctl config export | import`: the cluster's CIB, replicated by clusterd on every node.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use clusterd::control::{Request, Response};

use crate::exit::Exit;

/// CIB commands.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
    /// The daemon's runtime directory (where its control socket is).
    #[arg(long, default_value = "/run/clusterd", global = true)]
    run_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Write the live CIB (configuration and status) to FILE, or to standard output.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::PacemakerCib)]
        format: Format,
        /// Where to write (default: standard output).
        file: Option<PathBuf>,
    },
    /// Replace the cluster's configuration with the one in FILE (a Pacemaker CIB or a bare
    /// `<configuration>` element), on every node at once. Checked first; nothing changes on
    /// a refusal. Needs quorum.
    Import {
        /// The file.
        file: PathBuf,
        /// Only check the file and say what would change.
        #[arg(long)]
        dry_run: bool,
        /// Refuse if the configuration changed since it was at this epoch (from `export`).
        #[arg(long)]
        if_epoch: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// Pacemaker's CIB XML (`cibadmin --query` shape).
    PacemakerCib,
}

/// The live CIB.
pub(crate) fn live(run_dir: &Path) -> anyhow::Result<clusterd::CibReport> {
    match crate::daemon::ask(run_dir, &Request::CibQuery)? {
        Response::Cib(r) => Ok(*r),
        _ => Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd")),
    }
}

pub(crate) fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Export { format: Format::PacemakerCib, file } => {
            let report = live(&args.run_dir)?;
            if !report.synced {
                eprintln!(
                    "warning: the nodes are synchronizing their copies after a membership change; this copy may be older"
                );
            }
            match file {
                Some(f) => {
                    std::fs::write(&f, &report.xml)
                        .map_err(|e| Exit::error(Exit::CANT_CREATE, format!("{}: {e}", f.display())))?;
                    let (a, e, n) = report.version;
                    eprintln!("wrote the CIB (version {a}.{e}.{n}; import with --if-epoch {e}) to {}", f.display());
                }
                None => print!("{}", report.xml),
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Import { file, dry_run, if_epoch } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Exit::error(Exit::NO_INPUT, format!("{}: {e}", file.display())))?;
            let configuration = crm::replica::configuration_of(&text)
                .map_err(|e| Exit::error(Exit::CONFIG, format!("{}: {e}", file.display())))?;
            let summary = crm::replica::check_configuration(&configuration)
                .map_err(|e| Exit::error(Exit::CONFIG, format!("{}: not imported: {e}", file.display())))?;
            if dry_run {
                println!("{}: valid ({summary}); nothing changed (--dry-run)", file.display());
                return Ok(ExitCode::SUCCESS);
            }
            match crate::daemon::ask(&args.run_dir, &Request::CibReplaceConfiguration { xml: configuration, if_epoch })?
            {
                Response::Done(what) => {
                    println!("imported {} ({summary}): {what}", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                _ => Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd")),
            }
        }
    }
}
