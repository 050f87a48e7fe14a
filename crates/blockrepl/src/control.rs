//! The local control protocol of `blockrepld`: one JSON request per line on a unix socket, one
//! JSON response line back. `crmctl volume …` is the client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::Status;

/// A control request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Report the volume's state.
    Status,
    /// Become Primary (`force`: promote data that is not UpToDate, for a new volume).
    Primary {
        /// Force.
        force: bool,
    },
    /// Become Secondary.
    Secondary,
    /// Allow connecting; `discard_my_data` volunteers this node as split-brain victim.
    Connect {
        /// Discard local changes at the next split-brain handshake.
        discard_my_data: bool,
    },
    /// Drop the link and stay StandAlone.
    Disconnect,
    /// Start an online verify.
    Verify,
    /// Stop the daemon.
    Down,
}

/// A control response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// Done; the status after the command.
    Ok {
        /// Volume name.
        volume: String,
        /// State.
        status: Box<Status>,
        /// Bytes written to the replication link since start (frames, headers included).
        #[serde(default)]
        link_bytes_sent: u64,
    },
    /// Refused, with the reason.
    Error {
        /// Why.
        message: String,
    },
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The socket could not be reached.
    #[error("cannot reach blockrepld at {path}: {source}; is the volume up?")]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// I/O on the socket failed.
    #[error("control socket i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The answer did not parse.
    #[error("malformed answer from blockrepld: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Sends one request and waits for the answer.
pub fn call(socket: &Path, req: &Request) -> Result<Response, ControlError> {
    let mut s = UnixStream::connect(socket)
        .map_err(|source| ControlError::Connect { path: socket.display().to_string(), source })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    Ok(serde_json::from_str(&answer)?)
}

/// Renders a status the way `drbdadm status` does.
pub fn render_drbd(volume: &str, s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{volume} role:{:?}", s.role);
    let _ = writeln!(out, "  disk:{:?}", s.disk);
    let peer = format!("node{}", s.peer);
    match s.conn {
        crate::ConnState::Connected => {
            let _ = write!(
                out,
                "  {peer} role:{:?}\n    replication:{:?} peer-disk:{:?}",
                s.peer_role, s.repl, s.peer_disk
            );
            if let Some(p) = s.sync_done_percent {
                let _ = write!(out, " done:{p:.2}");
            }
            out.push('\n');
        }
        other => {
            let _ = writeln!(out, "  {peer} connection:{other:?}");
        }
    }
    out
}

/// Renders a status in plain words, with the out-of-sync count, split brain and verify results.
pub fn render_text(volume: &str, s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = render_drbd(volume, s);
    let _ = writeln!(out, "  out-of-sync: {} blocks ({} KiB)", s.out_of_sync_blocks, s.out_of_sync_blocks * 4);
    if let Some(sb) = &s.split_brain {
        let _ = writeln!(
            out,
            "  split brain: local changes {} blocks, peer changes {} blocks, {} blocks diverge (the victim loses them)",
            sb.local_changes, sb.peer_changes, sb.diverging_blocks
        );
    }
    if let Some(v) = &s.verify {
        let _ = writeln!(
            out,
            "  verify: {} ({} blocks checked, {} out of sync{})",
            if v.running { "running" } else { "finished" },
            v.checked_blocks,
            v.out_of_sync_count,
            if v.out_of_sync_blocks.is_empty() { String::new() } else { format!(": {:?}", v.out_of_sync_blocks) }
        );
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "  last error: {e}");
    }
    out
}
