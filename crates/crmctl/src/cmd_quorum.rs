//! `crmctl quorum status | expected-votes N`: votequorum on the local node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use clusterd::control::{Request, Response};

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
    /// Add the arbiter. With a join code (`model=net host=H token=CODE [algorithm=ffsplit|lms]
    /// [port=N] [tie_breaker=T] [votes=N]`), on one node: the running cluster gives every node
    /// its own certificate from the arbiter, rewrites every node's clusterd.toml and starts
    /// using the arbiter, or changes nothing anywhere. With certificates made by hand
    /// (`host=H algorithm=... ca=PEM cert=PEM key=PEM`): edits only this node's file (run it
    /// on every node, then restart clusterd).
    Add {
        /// key=value settings.
        #[arg(required = true)]
        settings: Vec<String>,
        /// The configuration file to change.
        #[arg(long, default_value = "/etc/clusterd/clusterd.toml")]
        config: PathBuf,
    },
    /// Remove the arbiter from every node at once (files rewritten, votes given back; a
    /// two-node cluster gets two_node back), or from none.
    #[command(alias = "delete")]
    Remove,
}

type Settings = std::collections::BTreeMap<String, String>;

fn settings_of(settings: &[String]) -> anyhow::Result<Settings> {
    let mut kv = Settings::new();
    for s in settings {
        let Some((k, v)) = s.split_once('=') else {
            return Err(Exit::error(Exit::INVALID_PARAM, format!("{s:?}: expected key=value")));
        };
        kv.insert(k.to_string(), v.to_string());
    }
    match kv.remove("model").as_deref() {
        None | Some("net") => Ok(kv),
        Some(m) => Err(Exit::error(Exit::INVALID_PARAM, format!("model={m}: the only model is net (qnetd)"))),
    }
}

/// `model=net host=H token=CODE ...`: the cluster-wide request.
fn join_request_from(mut kv: Settings) -> anyhow::Result<clusterd::control::DeviceAddRequest> {
    let token = kv.remove("token").unwrap_or_default();
    token.parse::<clusterd::join::JoinToken>().map_err(|e| Exit::error(Exit::INVALID_PARAM, e.to_string()))?;
    let host = kv
        .remove("host")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Exit::error(Exit::INVALID_PARAM, "host= is required: the arbiter's host name or address"))?;
    let port = match kv.remove("port") {
        Some(p) => p.parse::<u16>().map_err(|_| Exit::error(Exit::INVALID_PARAM, format!("port={p}: not a port")))?,
        None => 5403,
    };
    let votes = kv
        .remove("votes")
        .map(|v| v.parse::<u32>().map_err(|_| Exit::error(Exit::INVALID_PARAM, format!("votes={v}: not a number"))))
        .transpose()?;
    let req = clusterd::control::DeviceAddRequest {
        host,
        port,
        token,
        algorithm: kv.remove("algorithm").unwrap_or_else(|| "ffsplit".into()),
        tie_breaker: kv.remove("tie_breaker").unwrap_or_else(|| "lowest".into()),
        votes,
    };
    if let Some(k) = kv.keys().next() {
        return Err(Exit::error(
            Exit::INVALID_PARAM,
            format!(
                "{k}= is not a device setting with a join code; use model, host, token, port, algorithm, tie_breaker, votes"
            ),
        ));
    }
    Ok(req)
}

fn device_from(mut kv: Settings) -> anyhow::Result<clusterd::DeviceSection> {
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

/// A cluster-wide change through clusterd: prints what was done.
fn cluster_wide(run_dir: &std::path::Path, req: &Request) -> anyhow::Result<ExitCode> {
    match crate::daemon::ask(run_dir, req)? {
        Response::Done(what) => {
            println!("{what}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd")),
    }
}

pub(crate) fn run(args: QuorumArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        QuorumCommand::Status { output } => {
            let Response::QuorumStatus(report) = crate::daemon::ask(&args.run_dir, &Request::QuorumStatus)? else {
                return Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd"));
            };
            match output {
                Format::Text => print!("{}", clusterd::render_quorum(&report)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(if report.status.quorate { ExitCode::SUCCESS } else { ExitCode::from(Exit::NO_QUORUM) })
        }
        QuorumCommand::ExpectedVotes { votes } => {
            match crate::daemon::ask(&args.run_dir, &Request::SetExpectedVotes(votes))? {
                Response::Done(what) => {
                    println!("{what}");
                    Ok(ExitCode::SUCCESS)
                }
                _ => Err(Exit::error(Exit::ERROR, "unexpected answer from clusterd")),
            }
        }
        QuorumCommand::Device(DeviceCommand::Remove) => cluster_wide(&args.run_dir, &Request::DeviceRemove),
        QuorumCommand::Device(DeviceCommand::Add { settings, config }) => {
            let kv = settings_of(&settings)?;
            if kv.contains_key("token") {
                return cluster_wide(&args.run_dir, &Request::DeviceAdd(join_request_from(kv)?));
            }
            let dev = device_from(kv)?;
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
