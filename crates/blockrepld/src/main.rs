//! `blockrepld`: serves one replicated volume. Drives the blockrepl engine with a backing file,
//! an authenticated TCP replication link, a durable metadata file, a FUSE single-file frontend
//! (for `losetup --direct-io=on`), an NBD server (unix socket and/or TCP) and a local control
//! socket (`crmctl volume …`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

mod fuse;
mod link;
mod meta;
mod nbd;
mod node;
mod server;

/// Serve one replicated volume.
#[derive(Debug, Parser)]
#[command(name = "blockrepld", version)]
pub(crate) struct Args {
    /// Volume name (used in status and file names).
    #[arg(long)]
    pub(crate) name: String,
    /// This node's id.
    #[arg(long)]
    pub(crate) node_id: u32,
    /// The peer's node id.
    #[arg(long)]
    pub(crate) peer_id: u32,
    /// Backing file or block device.
    #[arg(long)]
    pub(crate) backing: PathBuf,
    /// Directory for the metadata file (`<name>.meta`).
    #[arg(long)]
    pub(crate) state_dir: PathBuf,
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
    pub(crate) psk_file: PathBuf,
    /// Control socket path.
    #[arg(long)]
    pub(crate) control: PathBuf,
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
    #[arg(long, default_value = "C")]
    pub(crate) protocol: String,
    /// Compare checksums before sending resync blocks.
    #[arg(long)]
    pub(crate) csums: bool,
    /// after-sb-0pri policy.
    #[arg(long, default_value = "disconnect")]
    pub(crate) after_sb_0pri: String,
    /// after-sb-1pri policy.
    #[arg(long, default_value = "disconnect")]
    pub(crate) after_sb_1pri: String,
    /// Resync rate cap in bytes/s without application I/O (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub(crate) resync_rate_max: u64,
    /// Resync rate floor in bytes/s while the application writes.
    #[arg(long, default_value_t = 4 << 20)]
    pub(crate) resync_rate_min: u64,
    /// Become Primary at start.
    #[arg(long)]
    pub(crate) primary: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match node::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blockrepld: {e:#}");
            ExitCode::FAILURE
        }
    }
}
