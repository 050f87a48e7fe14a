//! `qnetd`: the quorum arbiter for two-node and even-sized clusters (and many clusters at once).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use clusterd::arbiterd::{QNETD_SOCKET, QnetdConfig, run_qnetd};
use clusterd::control::{Request, Response};

/// The quorum arbiter daemon.
#[derive(Debug, Parser)]
#[command(name = "qnetd", version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, short, default_value = "/etc/qnetd/qnetd.toml", global = true)]
    config: PathBuf,
    /// Parse and validate the configuration, print the effective configuration, and exit.
    #[arg(long)]
    check_config: bool,
    /// Log filter (default from RUST_LOG, else `info`).
    #[arg(long)]
    log_filter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Clusters, nodes, their views and heuristics, and who holds each cluster's vote.
    Status {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
        output: Format,
        /// The daemon's runtime directory (default: from the configuration file, else /run/qnetd).
        #[arg(long)]
        run_dir: Option<PathBuf>,
    },
    /// Make an arbiter CA, the arbiter's certificate and one client certificate per node of a
    /// cluster: ca.pem, ca.key, qnetd.pem, qnetd.key, <cluster>-node<id>.pem/.key.
    GenCerts {
        /// The cluster's name (as in clusterd.toml).
        #[arg(long)]
        cluster: String,
        /// Node ids 1..=N.
        #[arg(long)]
        nodes: u32,
        /// Output directory (files are never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn run(args: Args) -> anyhow::Result<()> {
    match &args.command {
        Some(Command::GenCerts { cluster, nodes, out }) => {
            clusterd::gen_arbiter_certs(out, cluster, &(1..=*nodes).collect::<Vec<_>>())?;
            println!("wrote an arbiter CA, qnetd.pem and {nodes} client certificates to {}", out.display());
            println!(
                "copy ca.pem, qnetd.pem and qnetd.key to the arbiter host; ca.pem and <cluster>-node<id>.* to each node"
            );
            return Ok(());
        }
        Some(Command::Status { output, run_dir }) => {
            let dir = match run_dir {
                Some(d) => d.clone(),
                None => QnetdConfig::load(&args.config).map(|c| c.run_dir).unwrap_or_else(|_| "/run/qnetd".into()),
            };
            let clusters = match clusterd::control::query_socket(&dir.join(QNETD_SOCKET), &Request::ArbiterStatus)? {
                Response::ArbiterStatus(c) => c,
                Response::Error(e) => anyhow::bail!("qnetd refused: {e}"),
                other => anyhow::bail!("unexpected answer: {other:?}"),
            };
            match output {
                Format::Text => print!("{}", clusterd::arbiterd::render_arbiter_status(&clusters)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&clusters)?),
            }
            return Ok(());
        }
        None => {}
    }
    let config = QnetdConfig::load(&args.config)?;
    if args.check_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    clusterd::init_logging(args.log_filter.as_deref()).map_err(anyhow::Error::msg)?;
    let tls = clusterd::TlsMaterial::load(&config.tls.ca, &config.tls.cert, &config.tls.key)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(run_qnetd(config, tls, clusterd::terminated()))?;
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("qnetd: {err:#}");
            ExitCode::FAILURE
        }
    }
}
