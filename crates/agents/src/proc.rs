//! Running a child process under a deadline: its own process group, captured (bounded) output,
//! and the whole group killed when the deadline passes.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Most bytes kept from each of stdout and stderr.
const CAPTURE_MAX: usize = 1 << 20;
/// How long to wait for the pipes to close after the child exited (a background grandchild
/// may keep them open; its output is then cut off).
const PIPE_GRACE: Duration = Duration::from_millis(30);

/// The result of [`run`].
#[derive(Debug)]
pub(crate) struct Ran {
    /// Exit status (after a kill: the kill signal).
    pub(crate) status: ExitStatus,
    /// The deadline passed and the process group was killed.
    pub(crate) timed_out: bool,
    /// Captured stdout (lossy UTF-8, truncated at 1 MiB).
    pub(crate) stdout: String,
    /// Captured stderr (lossy UTF-8, truncated at 1 MiB).
    pub(crate) stderr: String,
}

impl Ran {
    /// The exit code, or `None` when killed by a signal.
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// True for exit code 0.
    pub(crate) fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// A one-line description for exit reasons: exit code or signal plus the last stderr line.
    pub(crate) fn describe(&self) -> String {
        let how = if self.timed_out {
            "timed out (process group killed)".to_owned()
        } else if let Some(c) = self.status.code() {
            format!("exit code {c}")
        } else {
            format!("killed by signal {}", self.status.signal().unwrap_or(0))
        };
        let last = self
            .stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .rfind(|l| !l.is_empty());
        match last {
            Some(l) => format!("{how}: {l}"),
            None => how,
        }
    }
}

fn reader(mut pipe: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>, done: mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
                    let room = CAPTURE_MAX.saturating_sub(b.len());
                    b.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
        let _ = done.send(());
    });
}

/// Spawns `cmd` in a new process group with stdin from /dev/null and waits for it until
/// `deadline`; at the deadline the whole group gets SIGKILL. Returns spawn errors only.
pub(crate) fn run(cmd: &mut Command, deadline: Instant) -> std::io::Result<Ran> {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // ETXTBSY: the executable was just written and a concurrent fork elsewhere in this
    // process still holds a descriptor for writing; it goes away in moments.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && tries < 50 => {
                tries += 1;
                if !pause(Duration::from_millis(5), deadline) {
                    return Err(e);
                }
            }
            other => break other?,
        }
    };
    let pgid = Pid::from_raw(child.id() as i32);
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = mpsc::channel();
    if let Some(p) = child.stdout.take() {
        reader(p, out.clone(), done_tx.clone());
    }
    if let Some(p) = child.stderr.take() {
        reader(p, err.clone(), done_tx.clone());
    }
    drop(done_tx);
    let (exit_tx, exit_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exit_tx.send(child.wait());
    });
    let mut timed_out = false;
    let status = match exit_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(status) => status?,
        Err(_) => {
            timed_out = true;
            let _ = killpg(pgid, Signal::SIGKILL);
            match exit_rx.recv() {
                Ok(status) => status?,
                Err(_) => ExitStatus::from_raw(9),
            }
        }
    };
    if timed_out {
        // Anything of the group that survived the first kill (forked meanwhile) goes too.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let grace_end = Instant::now() + PIPE_GRACE;
    for _ in 0..2 {
        if done_rx
            .recv_timeout(grace_end.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
    let text = |b: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&b.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    };
    Ok(Ran {
        status,
        timed_out,
        stdout: text(&out),
        stderr: text(&err),
    })
}

/// True when process `pid` exists and is not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The command name of `pid` (`/proc/PID/comm`).
pub(crate) fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Sleeps `step` or until `deadline`, whichever is first; false once the deadline has passed.
pub(crate) fn pause(step: Duration, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    std::thread::sleep(step.min(deadline - now));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hanging_process_group_is_killed_at_the_deadline() {
        let mut cmd = Command::new("sh");
        // The background sleep is in the same group and must die with it.
        cmd.arg("-c").arg("sleep 30 & echo $!; sleep 30");
        let t0 = Instant::now();
        let ran = run(&mut cmd, Instant::now() + Duration::from_millis(300)).unwrap();
        assert!(ran.timed_out);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let bg: i32 = ran.stdout.trim().parse().unwrap();
        assert!(
            crate::proc::pause(Duration::ZERO, Instant::now() + Duration::from_secs(1))
                && (0..100).any(|_| {
                    std::thread::sleep(Duration::from_millis(10));
                    !alive(bg)
                }),
            "background child {bg} survived"
        );
    }

    #[test]
    fn output_and_exit_code_are_captured() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo out; printf '\\377garbage\\n' >&2; exit 7");
        let ran = run(&mut cmd, Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!(ran.code(), Some(7));
        assert_eq!(ran.stdout, "out\n");
        assert!(ran.stderr.contains("garbage"));
        assert!(!ran.timed_out);
    }
}
