//! Running a helper program (virsh, a fence-agents script) with a hard deadline.
//!
//! The child gets its own process group, so that on timeout the whole group (a script and
//! the ipmitool or ssh it started) is killed, not just the direct child.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Largest amount of stdout/stderr kept (the rest is drained and dropped).
const MAX_OUTPUT: usize = 1 << 20;

/// What a finished child produced.
#[derive(Debug)]
pub(crate) struct ChildOutput {
    /// Exit code, or minus the signal number.
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Why a child did not finish normally.
#[derive(Debug)]
pub(crate) enum ChildError {
    /// It could not be started (missing binary, permissions).
    Spawn(std::io::Error),
    /// It was still running at the deadline and was killed.
    Timeout { waited: Duration, stderr: String },
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        kept
    })
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `cmd` with `stdin` fed to it, killing its process group at `deadline`.
pub(crate) fn run(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    deadline: Instant,
) -> Result<ChildOutput, ChildError> {
    let start = Instant::now();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().map_err(ChildError::Spawn)?;
    let pgid = child.id();
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Small (a few hundred bytes): fits the pipe buffer, cannot block.
        let _ = pipe.write_all(input);
    }
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    // Kill the group in every case: a finished script may have left helpers behind.
    kill_group(pgid);
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err
                .and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(ChildError::Timeout {
                waited: start.elapsed(),
                stderr,
            });
        }
    };
    let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    Ok(ChildOutput {
        code: status
            .code()
            .unwrap_or_else(|| -status.signal().unwrap_or(0)),
        stdout: text(out),
        stderr: text(err),
    })
}

/// The last non-empty line of `s`, trimmed, at most 300 characters.
pub(crate) fn last_line(s: &str) -> String {
    let line = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.trim().chars().take(300).collect()
}
