//! `clusterd`: parses arguments, loads the configuration, installs logging and runs the node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The cluster node daemon.
#[derive(Debug, Parser)]
#[command(name = "clusterd", version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, short, default_value = "/etc/clusterd/clusterd.toml", global = true)]
    config: PathBuf,
    /// Runtime directory (control socket), overriding the file.
    #[arg(long, global = true)]
    run_dir: Option<PathBuf>,
    /// State directory, overriding the file.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
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
    /// Write a new random cluster authkey (copy it to every node, mode 0600).
    GenKey {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a cluster CA and a certificate per node (for `transport = "quic"`): ca.pem, ca.key,
    /// node<id>.pem, node<id>.key. Copy ca.pem and each node's pair to that node.
    GenCerts {
        /// Node ids 1..=N.
        #[arg(long)]
        nodes: u32,
        /// Output directory (files are never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::GenKey { out }) = &args.command {
        clusterd::gen_key(out)?;
        println!("wrote a new authkey to {}", out.display());
        return Ok(());
    }
    if let Some(Command::GenCerts { nodes, out }) = &args.command {
        let ids: Vec<u32> = (1..=*nodes).collect();
        clusterd::gen_certs(out, &ids)?;
        println!("wrote a cluster CA and {} node certificates to {}", ids.len(), out.display());
        return Ok(());
    }
    let mut config = clusterd::FileConfig::load(&args.config)?;
    if let Some(d) = &args.run_dir {
        config.run_dir = d.clone();
    }
    if let Some(d) = &args.state_dir {
        config.state_dir = d.clone();
    }
    if args.check_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    clusterd::init_logging(args.log_filter.as_deref()).map_err(anyhow::Error::msg)?;
    let authkey = match &config.authkey {
        Some(path) if config.transport == clusterd::Transport::Udp => clusterd::load_key(path)?,
        _ => Vec::new(),
    };
    let tls = match &config.tls {
        Some(t) if config.transport == clusterd::Transport::Quic => {
            Some(clusterd::TlsMaterial::load(&t.ca, &t.cert, &t.key)?)
        }
        _ => None,
    };
    let opts = clusterd::NodeOptions {
        config_path: Some(args.config.clone()),
        run_dir: config.run_dir.clone(),
        state_dir: config.state_dir.clone(),
        config,
        authkey,
        tls,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(clusterd::run(opts, clusterd::terminated(), None))?;
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("clusterd: {err:#}");
            ExitCode::FAILURE
        }
    }
}
