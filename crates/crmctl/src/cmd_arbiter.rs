//! `crmctl arbiter setup | token create | status`: run on the arbiter (third) host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use clusterd::arbiterd::{QNETD_SOCKET, QnetdConfig};
use clusterd::control::{self, Request, Response};

use crate::exit::Exit;

/// Arbiter host commands.
#[derive(Debug, Args)]
pub(crate) struct ArbiterArgs {
    #[command(subcommand)]
    command: ArbiterCommand,
    /// The arbiter's configuration directory.
    #[arg(long, default_value = "/etc/qnetd", global = true)]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ArbiterCommand {
    /// Make this host an arbiter: CA, certificate and qnetd.toml in --dir (kept when already
    /// there); with --start, also start qnetd. Then hand out join codes with `token create`.
    Setup {
        /// Address (UDP, QUIC) qnetd listens on.
        #[arg(long, default_value = "0.0.0.0:5403")]
        listen: SocketAddr,
        /// qnetd's runtime directory (its status socket).
        #[arg(long, default_value = "/run/qnetd")]
        run_dir: PathBuf,
        /// Start qnetd in the background now (unless it already answers).
        #[arg(long)]
        start: bool,
        /// Where the started qnetd logs.
        #[arg(long, default_value = "/var/log/qnetd.log")]
        log: PathBuf,
    },
    /// Join codes for clusters.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Clusters, nodes, heuristics and who holds each cluster's vote.
    Status {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a join code. On any node of the cluster, `crmctl quorum device add model=net
    /// host=THIS-HOST token=CODE` then gives every node its own certificate.
    Create {
        /// How long the code stays valid (`30m`, `1h`; at most 168h). Codes also end when qnetd restarts.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Only this cluster may use the code (default: the first cluster that uses it).
        #[arg(long)]
        cluster: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn socket(dir: &Path) -> anyhow::Result<PathBuf> {
    let config = dir.join("qnetd.toml");
    let cfg = QnetdConfig::load(&config).map_err(|e| {
        Exit::error(Exit::NOT_CONFIGURED, format!("{e} (is this the arbiter host? run `crmctl arbiter setup` first)"))
    })?;
    Ok(cfg.run_dir.join(QNETD_SOCKET))
}

fn ask(sock: &Path, req: &Request) -> anyhow::Result<Response> {
    crate::daemon::ask_at(sock, req, "qnetd", "; start it with `crmctl arbiter setup --start` or your service manager")
}

/// The qnetd binary: next to this crmctl, else from PATH.
fn qnetd_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("qnetd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("qnetd"))
}

fn start_qnetd(config: &Path, sock: &Path, log: &Path) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if control::query_socket(sock, &Request::ArbiterStatus).is_ok() {
        println!("qnetd is already running");
        return Ok(());
    }
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let logf = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Exit::error(Exit::CANT_CREATE, format!("{}: {e}", log.display())))?;
    let bin = qnetd_binary();
    let mut child = std::process::Command::new(&bin)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf)
        .process_group(0)
        .spawn()
        .map_err(|e| Exit::error(Exit::NOT_INSTALLED, format!("cannot start {}: {e}", bin.display())))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if control::query_socket(sock, &Request::ArbiterStatus).is_ok() {
            println!("qnetd started (pid {}), logging to {}", child.id(), log.display());
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(Exit::error(Exit::ERROR, format!("qnetd exited ({st}):\n{}", tail.join("\n"))));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Exit::error(Exit::TIMEOUT, format!("qnetd did not answer within 10 s; see {}", log.display())))
}

pub(crate) fn run(args: ArbiterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ArbiterCommand::Setup { listen, run_dir, start, log } => {
            let (config, made) = clusterd::arbiterd::setup_arbiter(&args.dir, listen, &run_dir)
                .map_err(|e| Exit::error(Exit::CANT_CREATE, e))?;
            if made {
                println!("made an arbiter CA, the arbiter's certificate and {}", config.display());
            } else {
                println!("{} is already set up (kept)", config.display());
            }
            if start {
                start_qnetd(&config, &socket(&args.dir)?, &log)?;
                println!(
                    "next: `crmctl arbiter token create`, then on a cluster node `crmctl quorum device add model=net host=<this host> token=<code>`"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ArbiterCommand::Token(TokenCommand::Create { ttl, cluster }) => {
            let ttl = agents::parse_duration(&ttl).ok_or_else(|| {
                Exit::error(Exit::INVALID_PARAM, format!("--ttl {ttl}: not a duration; use e.g. 30m or 1h"))
            })?;
            if ttl > clusterd::join::MAX_TOKEN_TTL || ttl < Duration::from_secs(1) {
                return Err(Exit::error(Exit::INVALID_PARAM, "--ttl: use 1s to 168h"));
            }
            let sock = socket(&args.dir)?;
            let req = Request::ArbiterTokenCreate { ttl_ms: ttl.as_millis() as u64, cluster: cluster.clone() };
            let Response::Token { token, expires_in_ms } = ask(&sock, &req)? else {
                return Err(Exit::error(Exit::ERROR, "unexpected answer from qnetd"));
            };
            println!("{token}");
            eprintln!(
                "valid for {} s{} (or until qnetd restarts). On any node of the cluster run:\n  crmctl quorum device add model=net host=<this host> token={token} algorithm=ffsplit",
                expires_in_ms / 1000,
                cluster.map(|c| format!(", for cluster {c}")).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        ArbiterCommand::Status { output } => {
            let sock = socket(&args.dir)?;
            let Response::ArbiterStatus(clusters) = ask(&sock, &Request::ArbiterStatus)? else {
                return Err(Exit::error(Exit::ERROR, "unexpected answer from qnetd"));
            };
            match output {
                Format::Text => print!("{}", clusterd::arbiterd::render_arbiter_status(&clusters)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&clusters)?),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
