//! The cluster node daemon's library: runs the sans-IO membership core for real.
//!
//! [`run`] binds one UDP socket per link, seals every datagram with ChaCha20-Poly1305 under
//! per-pair, per-direction, per-session keys derived from the cluster authkey (unauthenticated,
//! replayed or malformed datagrams are dropped and counted), persists the ring sequence number
//! atomically, and answers status requests on a unix socket ([`control`]). The `clusterd` binary
//! only parses arguments, loads the TOML [`FileConfig`], installs logging and calls [`run`].
//!
//! This crate is the only one of the membership stack that touches tokio, sockets and files; the
//! `membership` core must never depend on it.

mod admin;
pub mod arbiterd;
mod cibd;
mod config;
pub mod control;
mod crypto;
mod device;
mod execd;
mod fenced;
pub mod join;
mod mux;
mod node;
mod quic;
mod status;

pub use cibd::CibReport;
pub use config::{
    ConfigError, DeviceSection, ExecutorSection, FileConfig, HeuristicCommand, NodeEntry, QuorumSection, TlsPaths,
    Totem, Transport,
};
pub use crypto::OpenError;
pub use node::{AppPort, AppSide, Delivery, NodeError, NodeOptions, run};
pub use quic::{CertError, TlsMaterial, gen_arbiter_certs, gen_arbiter_server_certs, gen_certs};
pub use status::{render_quorum, render_status};

use std::path::Path;

/// Smallest and largest accepted authkey, in bytes.
pub const AUTHKEY_LEN: std::ops::RangeInclusive<usize> = 32..=4096;

/// Why an authkey could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// IO on the key file.
    #[error("authkey {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Wrong size.
    #[error("authkey {path}: {len} bytes; it must hold 32 to 4096 bytes (make one with `clusterd gen-key`)")]
    Size {
        /// The file.
        path: std::path::PathBuf,
        /// Its size.
        len: usize,
    },
    /// No randomness available.
    #[error("no randomness available to make a key: {0}")]
    Random(String),
}

/// Writes a new random 64-byte authkey to `path` (mode 0600), refusing to overwrite.
pub fn gen_key(path: &Path) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = [0u8; 64];
    getrandom::fill(&mut key).map_err(|e| KeyError::Random(e.to_string()))?;
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(&key).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Reads an authkey.
pub fn load_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let key = std::fs::read(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
    if !AUTHKEY_LEN.contains(&key.len()) {
        return Err(KeyError::Size { path: path.to_path_buf(), len: key.len() });
    }
    Ok(key)
}

/// Logs to standard error with `filter` (else `RUST_LOG`, else `info`); for the binaries.
pub fn init_logging(filter: Option<&str>) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f).map_err(|e| format!("--log-filter {f:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C: a daemon's signal to stop cleanly.
pub async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
