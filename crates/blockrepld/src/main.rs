//! `blockrepld`: serves one replicated volume. Drives the blockrepl engine with a backing file,
//! an authenticated TCP replication link, a durable metadata file, a FUSE single-file frontend
//! (for `losetup --direct-io=on`), an NBD server (unix socket and/or TCP) and a local control
//! socket (`crmctl volume …`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

mod buffers;
mod config;
mod fuse;
mod link;
mod meta;
mod nbd;
mod node;
mod server;

/// Serve one replicated volume. Configure it with `--config FILE` (see
/// `deploy/blockrepld.toml`) or with the equivalent flags.
#[derive(Debug, Parser)]
#[command(name = "blockrepld", version)]
pub(crate) struct Args {
    /// Configuration file (TOML). The other flags, if given, override its fields.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Check the configuration, print the effective configuration and exit.
    #[arg(long)]
    pub(crate) check_config: bool,
    /// Volume name (used in status and file names).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// This node's id.
    #[arg(long)]
    pub(crate) node_id: Option<u32>,
    /// The peer's node id.
    #[arg(long)]
    pub(crate) peer_id: Option<u32>,
    /// Backing file or block device.
    #[arg(long)]
    pub(crate) backing: Option<PathBuf>,
    /// Directory for the metadata file (`<name>.meta`).
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// Create the backing file and metadata with this size in bytes if they do not exist.
    #[arg(long)]
    pub(crate) create_size: Option<u64>,
    /// With --create-size: both copies start identical (zero-filled) in this generation
    /// (hex), so no initial full sync is needed.
    #[arg(long)]
    pub(crate) initial_generation: Option<String>,
    /// Address to listen on for the peer (the lower node id listens).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// The peer's address (the higher node id dials).
    #[arg(long)]
    pub(crate) peer_addr: Option<String>,
    /// File holding the pre-shared key authenticating the replication link.
    #[arg(long)]
    pub(crate) psk_file: Option<PathBuf>,
    /// Control socket path.
    #[arg(long)]
    pub(crate) control: Option<PathBuf>,
    /// Mount a FUSE filesystem exposing the volume as `<dir>/disk.img`.
    #[arg(long)]
    pub(crate) fuse: Option<PathBuf>,
    /// Serve NBD on this unix socket.
    #[arg(long)]
    pub(crate) nbd_unix: Option<PathBuf>,
    /// Serve NBD on this TCP address.
    #[arg(long)]
    pub(crate) nbd_tcp: Option<String>,
    /// Replication protocol: A, B or C.
    #[arg(long)]
    pub(crate) protocol: Option<String>,
    /// Compare checksums before sending resync blocks.
    #[arg(long)]
    pub(crate) csums: bool,
    /// after-sb-0pri policy.
    #[arg(long)]
    pub(crate) after_sb_0pri: Option<String>,
    /// after-sb-1pri policy.
    #[arg(long)]
    pub(crate) after_sb_1pri: Option<String>,
    /// Resync rate cap in bytes/s without application I/O (0: unlimited).
    #[arg(long)]
    pub(crate) resync_rate_max: Option<u64>,
    /// Resync rate floor in bytes/s while the application writes.
    #[arg(long)]
    pub(crate) resync_rate_min: Option<u64>,
    /// Become Primary at start.
    #[arg(long)]
    pub(crate) primary: bool,
}

impl Args {
    /// The configuration: the file's table with the flags laid over it, checked as one.
    fn config(&self) -> anyhow::Result<config::DaemonConfig> {
        use toml::{Table, Value};
        let mut t: Table = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                text.parse().map_err(|e| anyhow::anyhow!("{}: not valid TOML: {e}", p.display()))?
            }
            None => Table::new(),
        };
        fn set(t: &mut Table, section: &str, key: &str, v: Value) {
            if section.is_empty() {
                t.insert(key.into(), v);
            } else if let Some(sub) = t.entry(section).or_insert_with(|| Value::Table(Table::new())).as_table_mut() {
                sub.insert(key.into(), v);
            }
        }
        let s = |v: &str| Value::String(v.to_string());
        let p = |v: &std::path::Path| Value::String(v.display().to_string());
        let i = |v: u64| Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
        let flags: [(&str, &str, Option<Value>); 19] = [
            ("", "name", self.name.as_deref().map(s)),
            ("", "node_id", self.node_id.map(|v| i(v.into()))),
            ("", "peer_id", self.peer_id.map(|v| i(v.into()))),
            ("", "backing", self.backing.as_deref().map(p)),
            ("", "state_dir", self.state_dir.as_deref().map(p)),
            ("", "psk_file", self.psk_file.as_deref().map(p)),
            ("", "control_socket", self.control.as_deref().map(p)),
            ("", "create_size_bytes", self.create_size.map(i)),
            ("", "initial_generation", self.initial_generation.as_deref().map(s)),
            ("", "primary_at_start", self.primary.then_some(Value::Boolean(true))),
            ("link", "listen", self.listen.as_deref().map(s)),
            ("link", "peer_addr", self.peer_addr.as_deref().map(s)),
            ("frontends", "fuse_dir", self.fuse.as_deref().map(p)),
            ("frontends", "nbd_unix_socket", self.nbd_unix.as_deref().map(p)),
            ("frontends", "nbd_tcp", self.nbd_tcp.as_deref().map(s)),
            ("replication", "protocol", self.protocol.as_deref().map(s)),
            ("replication", "csums", self.csums.then_some(Value::Boolean(true))),
            ("replication", "after_sb_0pri", self.after_sb_0pri.as_deref().map(s)),
            ("replication", "after_sb_1pri", self.after_sb_1pri.as_deref().map(s)),
        ];
        for (section, key, v) in flags {
            if let Some(v) = v {
                set(&mut t, section, key, v);
            }
        }
        for (key, v) in [
            ("resync_rate_max_bytes_per_sec", self.resync_rate_max),
            ("resync_rate_min_bytes_per_sec", self.resync_rate_min),
        ] {
            if let Some(v) = v {
                set(&mut t, "replication", key, i(v));
            }
        }
        let source = self.config.as_ref().map_or_else(|| "flags".to_string(), |p| p.display().to_string());
        config::DaemonConfig::from_table(t).with_context(|| format!("configuration from {source}"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("blockrepld: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match node::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blockrepld: {e:#}");
            ExitCode::FAILURE
        }
    }
}
