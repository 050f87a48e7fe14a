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
    /// The arbiter (qnetd) in this node's configuration file.
    #[command(subcommand)]
    Device(DeviceCommand),
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Add `[quorum.device]` to this node's clusterd.toml (comments kept; validated before it is
    /// written): `host=H algorithm=ffsplit|lms ca=PEM cert=PEM key=PEM [port=N] [tie_breaker=T]
    /// [votes=N]`. Run it on every node, then restart clusterd.
    Add {
        /// key=value settings.
        #[arg(required = true)]
        settings: Vec<String>,
        /// The configuration file to change.
        #[arg(long, default_value = "/etc/clusterd/clusterd.toml")]
        config: PathBuf,
    },
}

fn device_from(settings: &[String]) -> anyhow::Result<clusterd::DeviceSection> {
    let mut kv = std::collections::BTreeMap::new();
    for s in settings {
        let Some((k, v)) = s.split_once('=') else {
            return Err(Exit::error(Exit::INVALID_PARAM, format!("{s:?}: expected key=value")));
        };
        kv.insert(k.to_string(), v.to_string());
    }
    let mut take = |k: &str| kv.remove(k);
    let need = |v: Option<String>, k: &str| {
        v.ok_or_else(|| Exit::error(Exit::INVALID_PARAM, format!("{k}= is required (host, algorithm, ca, cert, key)")))
    };
    let num = |v: Option<String>, k: &str| -> anyhow::Result<Option<u32>> {
        v.map(|s| s.parse::<u32>().map_err(|_| Exit::error(Exit::INVALID_PARAM, format!("{k}={s}: not a number"))))
            .transpose()
    };
    let dev = clusterd::DeviceSection {
        host: need(take("host"), "host")?,
        port: match num(take("port"), "port")? {
            Some(p) => u16::try_from(p).map_err(|_| Exit::error(Exit::INVALID_PARAM, "port= is above 65535"))?,
            None => 5403,
        },
        algorithm: need(take("algorithm"), "algorithm")?,
        tie_breaker: take("tie_breaker").unwrap_or_else(|| "lowest".into()),
        votes: num(take("votes"), "votes")?,
        tls: clusterd::TlsPaths {
            ca: need(take("ca"), "ca")?.into(),
            cert: need(take("cert"), "cert")?.into(),
            key: need(take("key"), "key")?.into(),
        },
        heuristics: Vec::new(),
        heuristics_interval_ms: 3000,
    };
    if let Some(k) = kv.keys().next() {
        return Err(Exit::error(
            Exit::INVALID_PARAM,
            format!("{k}= is not a device setting; use host, port, algorithm, tie_breaker, votes, ca, cert, key"),
        ));
    }
    Ok(dev)
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
        QuorumCommand::Device(DeviceCommand::Add { settings, config }) => {
            let dev = device_from(&settings)?;
            let text = std::fs::read_to_string(&config)
                .map_err(|e| Exit::error(Exit::NO_INPUT, format!("{}: {e}", config.display())))?;
            let new = clusterd::FileConfig::add_device_section(&text, &dev).map_err(|p| {
                Exit::error(Exit::CONFIG, format!("{}: not changed:\n{}", config.display(), p.join("\n")))
            })?;
            let tmp = config.with_extension("toml.new");
            std::fs::write(&tmp, new).and_then(|()| std::fs::rename(&tmp, &config))?;
            println!(
                "added the arbiter {}:{} ({}) to {}; do the same on every node, then restart clusterd",
                dev.host,
                dev.port,
                dev.algorithm,
                config.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
