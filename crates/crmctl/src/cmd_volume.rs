//! `crmctl volume …`: replicated volumes served by `blockrepld`, through its control socket.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use blockrepl::control::{self, Request, Response};
use clap::{Args, Subcommand, ValueEnum};

use crate::exit::Exit;

/// Replicated volumes.
#[derive(Debug, Args)]
pub(crate) struct VolumeArgs {
    /// Directory holding the volumes' control sockets (`<dir>/<volume>.sock`).
    #[arg(long, global = true, default_value = "/run/clusterd/blockrepl")]
    run_dir: PathBuf,
    #[command(subcommand)]
    cmd: VolumeCmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Drbd,
}

#[derive(Debug, Subcommand)]
enum VolumeCmd {
    /// Create a new volume's backing file and metadata and start serving it. Arguments after
    /// `--` go to blockrepld (e.g. `--node-id 1 --peer-id 2 --backing F --state-dir D --psk-file K --listen A`).
    Create {
        /// Volume name.
        volume: String,
        /// Size in bytes.
        #[arg(long)]
        size: u64,
        /// blockrepld arguments.
        #[arg(last = true)]
        daemon_args: Vec<String>,
    },
    /// Start serving an existing volume (arguments after `--` go to blockrepld).
    Up {
        /// Volume name.
        volume: String,
        /// blockrepld arguments.
        #[arg(last = true)]
        daemon_args: Vec<String>,
    },
    /// Stop serving the volume.
    Down {
        /// Volume name.
        volume: String,
    },
    /// Promote to Primary.
    Primary {
        /// Volume name.
        volume: String,
        /// Promote data that is not UpToDate (first promotion of a new volume).
        #[arg(long)]
        force: bool,
    },
    /// Demote to Secondary.
    Secondary {
        /// Volume name.
        volume: String,
    },
    /// Allow the replication link (after a disconnect or a refused handshake).
    Connect {
        /// Volume name.
        volume: String,
    },
    /// Drop the replication link and stay StandAlone.
    Disconnect {
        /// Volume name.
        volume: String,
    },
    /// Show state, in the spirit of `drbdadm status`.
    Status {
        /// Volume name.
        volume: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Format,
    },
    /// Start an online verify (differing blocks are reported and marked out of sync).
    Verify {
        /// Volume name.
        volume: String,
    },
    /// Resolve a split brain by discarding THIS node's changes (run on the victim).
    Resolve {
        /// Volume name.
        volume: String,
        /// Required: this node's data since the split is thrown away.
        #[arg(long)]
        discard_my_data: bool,
        /// Only print how many blocks diverge.
        #[arg(long)]
        dry_run: bool,
    },
}

fn socket(args: &VolumeArgs, volume: &str) -> PathBuf {
    args.run_dir.join(format!("{volume}.sock"))
}

fn call(args: &VolumeArgs, volume: &str, req: &Request) -> anyhow::Result<blockrepl::Status> {
    match control::call(&socket(args, volume), req).map_err(|e| Exit::error(Exit::NOT_CONNECTED, e.to_string()))? {
        Response::Ok { status, .. } => Ok(*status),
        Response::Error { message } => Err(Exit::error(Exit::ERROR, message)),
    }
}

fn start(args: &VolumeArgs, volume: &str, extra: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.run_dir).with_context(|| format!("creating {}", args.run_dir.display()))?;
    let sock = socket(args, volume);
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("blockrepld")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("blockrepld"));
    let log = std::fs::File::create(args.run_dir.join(format!("{volume}.log")))?;
    Command::new(exe)
        .arg("--name")
        .arg(volume)
        .arg("--control")
        .arg(&sock)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting blockrepld")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if control::call(&sock, &Request::Status).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Exit::error(
        Exit::TIMEOUT,
        format!("blockrepld did not come up; see {}", args.run_dir.join(format!("{volume}.log")).display()),
    ))
}

/// Runs a volume command.
pub(crate) fn run(args: VolumeArgs) -> anyhow::Result<ExitCode> {
    match &args.cmd {
        VolumeCmd::Create { volume, size, daemon_args } => {
            let mut a = vec!["--create-size".to_string(), size.to_string()];
            a.extend(daemon_args.iter().cloned());
            start(&args, volume, &a)?;
            println!("volume {volume} created and up");
        }
        VolumeCmd::Up { volume, daemon_args } => {
            start(&args, volume, daemon_args)?;
            println!("volume {volume} up");
        }
        VolumeCmd::Down { volume } => {
            call(&args, volume, &Request::Down)?;
            println!("volume {volume} down");
        }
        VolumeCmd::Primary { volume, force } => {
            let s = call(&args, volume, &Request::Primary { force: *force })?;
            print!("{}", control::render_drbd(volume, &s));
        }
        VolumeCmd::Secondary { volume } => {
            let s = call(&args, volume, &Request::Secondary)?;
            print!("{}", control::render_drbd(volume, &s));
        }
        VolumeCmd::Connect { volume } => {
            let s = call(&args, volume, &Request::Connect { discard_my_data: false })?;
            print!("{}", control::render_drbd(volume, &s));
        }
        VolumeCmd::Disconnect { volume } => {
            let s = call(&args, volume, &Request::Disconnect)?;
            print!("{}", control::render_drbd(volume, &s));
        }
        VolumeCmd::Status { volume, output } => {
            let s = call(&args, volume, &Request::Status)?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&s)?),
                Format::Drbd => print!("{}", control::render_drbd(volume, &s)),
                Format::Text => print!("{}", control::render_text(volume, &s)),
            }
        }
        VolumeCmd::Verify { volume } => {
            let s = call(&args, volume, &Request::Verify)?;
            print!("{}", control::render_text(volume, &s));
        }
        VolumeCmd::Resolve { volume, discard_my_data, dry_run } => {
            let s = call(&args, volume, &Request::Status)?;
            match &s.split_brain {
                Some(sb) => println!(
                    "{volume}: split brain: this node changed {} blocks, the peer {}; {} blocks ({} KiB) diverge and would be overwritten here",
                    sb.local_changes,
                    sb.peer_changes,
                    sb.diverging_blocks,
                    sb.diverging_blocks * 4
                ),
                None => println!("{volume}: no split brain recorded"),
            }
            if *dry_run {
                return Ok(ExitCode::SUCCESS);
            }
            if !discard_my_data {
                return Err(Exit::error(
                    Exit::USAGE,
                    "refusing to resolve without --discard-my-data (this node's changes are lost)",
                ));
            }
            call(&args, volume, &Request::Disconnect)?;
            let s = call(&args, volume, &Request::Connect { discard_my_data: true })?;
            print!("{}", control::render_drbd(volume, &s));
        }
    }
    Ok(ExitCode::SUCCESS)
}
