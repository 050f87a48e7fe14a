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
    /// Directory holding the volumes' blockrepld configuration files (`<dir>/<volume>.toml`).
    #[arg(long, global = true, default_value = "/etc/clusterd/blockrepl")]
    config_dir: PathBuf,
    #[command(subcommand)]
    cmd: VolumeCmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Drbd,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Volume name.
    volume: String,
    /// Size in bytes (a multiple of 4096).
    #[arg(long)]
    size: u64,
    /// This node's id.
    #[arg(long)]
    node_id: u32,
    /// The peer's node id.
    #[arg(long)]
    peer_id: u32,
    /// Backing file or block device.
    #[arg(long)]
    backing: PathBuf,
    /// Directory for the metadata file.
    #[arg(long, default_value = "/var/lib/blockrepl")]
    state_dir: PathBuf,
    /// Pre-shared key file of the replication link.
    #[arg(long)]
    psk_file: PathBuf,
    /// Address to accept the peer on (the lower node id).
    #[arg(long)]
    listen: Option<String>,
    /// The peer's address (the higher node id).
    #[arg(long)]
    peer_addr: Option<String>,
    /// Both copies start zero-filled in this generation (hex, the same on both nodes).
    #[arg(long)]
    initial_generation: Option<String>,
    /// Serve NBD on this unix socket.
    #[arg(long)]
    nbd_unix: Option<PathBuf>,
    /// Expose the volume as `<dir>/disk.img` through FUSE.
    #[arg(long)]
    fuse: Option<PathBuf>,
    /// Replication protocol: A, B or C.
    #[arg(long, default_value = "C")]
    protocol: String,
    /// Overwrite an existing configuration file.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Subcommand)]
enum VolumeCmd {
    /// Create a new volume: write its blockrepld configuration (`<config-dir>/<volume>.toml`),
    /// check it, then start serving (the backing file and metadata are created).
    Create(Box<CreateArgs>),
    /// Start serving a volume from its configuration file (`<config-dir>/<volume>.toml`).
    Up {
        /// Volume name.
        volume: String,
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

fn config_path(args: &VolumeArgs, volume: &str) -> PathBuf {
    args.config_dir.join(format!("{volume}.toml"))
}

fn daemon_exe() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("blockrepld")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("blockrepld"))
}

/// A TOML basic string (JSON's escapes are valid TOML).
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn toml_path(p: &std::path::Path) -> String {
    toml_str(&p.display().to_string())
}

/// Has blockrepld check a configuration file; its message names every problem.
fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let out = Command::new(daemon_exe())
        .arg("--config")
        .arg(path)
        .arg("--check-config")
        .output()
        .context("running blockrepld --check-config")?;
    if !out.status.success() {
        return Err(Exit::error(Exit::CONFIG, String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

fn start(args: &VolumeArgs, volume: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.run_dir).with_context(|| format!("creating {}", args.run_dir.display()))?;
    let sock = socket(args, volume);
    let config = config_path(args, volume);
    if !config.exists() {
        return Err(Exit::error(
            Exit::NO_INPUT,
            format!("{} does not exist; create the volume with `crmctl volume create {volume} ...`", config.display()),
        ));
    }
    check_config(&config)?;
    let log = std::fs::File::create(args.run_dir.join(format!("{volume}.log")))?;
    Command::new(daemon_exe())
        .arg("--config")
        .arg(&config)
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
        VolumeCmd::Create(c) => {
            let CreateArgs {
                volume,
                size,
                node_id,
                peer_id,
                backing,
                state_dir,
                psk_file,
                listen,
                peer_addr,
                initial_generation,
                nbd_unix,
                fuse,
                protocol,
                overwrite,
            } = &**c;
            let path = config_path(&args, volume);
            if path.exists() && !overwrite {
                return Err(Exit::error(
                    Exit::EXISTS,
                    format!(
                        "{} exists; `crmctl volume up {volume}` starts it, --overwrite replaces it",
                        path.display()
                    ),
                ));
            }
            let mut text = format!(
                "# Written by `crmctl volume create`; see deploy/blockrepld.toml for every field.\n\
                 name = {}\nnode_id = {node_id}\npeer_id = {peer_id}\nbacking = {}\nstate_dir = {}\n\
                 psk_file = {}\ncontrol_socket = {}\ncreate_size_bytes = {size}\n",
                toml_str(volume),
                toml_path(backing),
                toml_path(state_dir),
                toml_path(psk_file),
                toml_path(&socket(&args, volume)),
            );
            if let Some(g) = initial_generation {
                text.push_str(&format!("initial_generation = {}\n", toml_str(g)));
            }
            text.push_str("\n[link]\n");
            if let Some(l) = listen {
                text.push_str(&format!("listen = {}\n", toml_str(l)));
            }
            if let Some(p) = peer_addr {
                text.push_str(&format!("peer_addr = {}\n", toml_str(p)));
            }
            text.push_str("\n[frontends]\n");
            if let Some(f) = fuse {
                text.push_str(&format!("fuse_dir = {}\n", toml_path(f)));
            }
            if let Some(n) = nbd_unix {
                text.push_str(&format!("nbd_unix_socket = {}\n", toml_path(n)));
            }
            text.push_str(&format!("\n[replication]\nprotocol = {}\n", toml_str(protocol)));
            std::fs::create_dir_all(&args.config_dir)
                .with_context(|| format!("creating {}", args.config_dir.display()))?;
            let tmp = path.with_extension("toml.new");
            std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
            if let Err(e) = check_config(&tmp) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
            println!("volume {volume}: configuration written to {}", path.display());
            start(&args, volume)?;
            println!("volume {volume} created and up");
        }
        VolumeCmd::Up { volume } => {
            start(&args, volume)?;
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
