//! The replicated-volume agent (`native:builtin:volume`), run as a promotable clone: it drives
//! one `blockrepld` per node through its control socket, the way the drbd agent drives DRBD.
//! Start brings the volume up Secondary and connecting (starting the daemon when its socket does
//! not answer), promote and demote switch the role (never forced), stop demotes and takes the
//! daemon down, and every answer that carries the volume's state restates this node's
//! promotion score from its disk state.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use blockrepl::control::{self, ControlError, Request, Response};
use blockrepl::{ConnState, DiskState, ReplState, Role, Status};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::configured;
use crate::agent::{Op, Outcome, ResourceAgent};
use crate::error::AgentError;
use crate::events::Event;
use crate::proc;
use crate::rc::OcfRc;
use crate::schema::{ActionSpec, Metadata, ParamSpec, ParamType};

/// The replicated-volume agent.
#[derive(Debug, Default)]
pub(crate) struct Volume;

/// Promotion score of an UpToDate copy that is connected (the peer cannot be newer).
pub(crate) const SCORE_CONNECTED: i64 = 10_000;
/// Promotion score of an UpToDate copy without a connection to its peer.
pub(crate) const SCORE_ALONE: i64 = 1_000;

/// How often a wait polls the daemon.
const POLL: Duration = Duration::from_millis(20);
/// How long a promotion waits for a connected peer's demotion to arrive.
const PEER_DEMOTE_GRACE: Duration = Duration::from_secs(3);
/// A daemon that leaves a status request unanswered this long is hung (at stop).
const HUNG_AFTER: Duration = Duration::from_secs(5);
/// The daemon's binary name.
const DAEMON: &str = "blockrepld";

/// This node's promotion score for a volume in state `s` (`None`: must not be promoted here).
/// Only UpToDate data is promotable without force: with 10 000 when connected and past the
/// handshake (the peer cannot hold newer data), with 1 000 when alone or still deciding.
pub(crate) fn promotion_score(s: &Status) -> Option<i64> {
    if s.disk != DiskState::UpToDate {
        return None;
    }
    let decided = matches!(
        s.repl,
        ReplState::Established
            | ReplState::SyncSource
            | ReplState::PausedSyncS
            | ReplState::VerifyS
            | ReplState::VerifyT
    );
    Some(if s.conn == ConnState::Connected && decided { SCORE_CONNECTED } else { SCORE_ALONE })
}

/// A one-line summary of a status for exit reasons.
fn summary(s: &Status) -> String {
    format!("role {:?}, disk {:?}, {:?}/{:?}, peer disk {:?}", s.role, s.disk, s.conn, s.repl, s.peer_disk)
}

/// The monitor's verdict on a status: running (promoted or not), or failed when the daemon
/// answers in a state it cannot serve from.
fn verdict(s: &Status) -> Outcome {
    let promoted = s.role == Role::Primary;
    let out = match (s.role, s.disk) {
        (_, DiskState::Failed) => Outcome::fail(
            if promoted { OcfRc::FailedPromoted } else { OcfRc::ErrGeneric },
            format!("the backing storage failed ({})", summary(s)),
        ),
        (Role::Unknown, _) => Outcome::fail(OcfRc::ErrGeneric, format!("the daemon reports no role ({})", summary(s))),
        (Role::Primary, _) => Outcome::rc(OcfRc::RunningPromoted),
        (Role::Secondary, _) => Outcome::ok(),
    };
    let out = match (&s.split_brain, s.conn, out.reason.is_none()) {
        (Some(sb), ConnState::StandAlone, true) => out.with_reason(format!(
            "split brain: {} blocks diverge; resolve with `crmctl volume resolve <volume> --discard-my-data` on the victim",
            sb.diverging_blocks
        )),
        _ => out,
    };
    out.with_promotion(promotion_score(s))
}

/// What this resource instance refers to.
#[derive(Debug)]
struct Spec {
    /// The daemon's configuration file.
    config: PathBuf,
    /// Its control socket (`None` when the configuration file is missing on this node and no
    /// `control_socket` parameter was given: nothing can be running then).
    socket: Option<PathBuf>,
    /// Why `socket` is unknown.
    missing: Option<String>,
    /// The socket comes from the `control_socket` parameter (passed to the daemon as a flag).
    socket_from_param: bool,
}

/// Reads one top-level string `key` of a TOML document (before any `[section]`): a basic
/// (`"…"`, with escapes) or a literal (`'…'`) one-line string. `Ok(None)` when absent.
pub(crate) fn toml_top_level_str(text: &str, key: &str) -> Result<Option<String>, String> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            return Ok(None);
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let k = k.trim();
        if k != key && k.trim_matches('"') != key {
            continue;
        }
        let v = v.trim();
        if let Some(rest) = v.strip_prefix("'") {
            if rest.starts_with("''") {
                return Err(format!("{key}: write it as a one-line string"));
            }
            return match rest.split_once('\'') {
                Some((s, tail)) if tail.trim().is_empty() || tail.trim().starts_with('#') => Ok(Some(s.to_owned())),
                _ => Err(format!("{key}: unterminated string")),
            };
        }
        let Some(rest) = v.strip_prefix('"') else {
            return Err(format!("{key}: expected a string, found `{v}`"));
        };
        if rest.starts_with("\"\"") {
            return Err(format!("{key}: write it as a one-line string"));
        }
        let mut out = String::new();
        let mut chars = rest.chars();
        loop {
            match chars.next() {
                None => return Err(format!("{key}: unterminated string")),
                Some('"') => break,
                Some('\\') => {
                    let c = match chars.next() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some(u @ ('u' | 'U')) => {
                            let n = if u == 'u' { 4 } else { 8 };
                            let hex: String = chars.by_ref().take(n).collect();
                            u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == n)
                                .and_then(char::from_u32)
                                .ok_or_else(|| format!("{key}: bad escape \\{u}{hex}"))?
                        }
                        other => return Err(format!("{key}: bad escape \\{}", other.unwrap_or(' '))),
                    };
                    out.push(c);
                }
                Some(c) => out.push(c),
            }
        }
        let tail = chars.as_str().trim();
        if !tail.is_empty() && !tail.starts_with('#') {
            return Err(format!("{key}: unexpected `{tail}` after the string"));
        }
        return Ok(Some(out));
    }
    Ok(None)
}

fn spec(op: &Op<'_>) -> Result<Spec, Outcome> {
    let config = PathBuf::from(op.params.str("config").unwrap_or_default());
    if !config.is_absolute() {
        return Err(configured("config", format!("{} is not an absolute path", config.display())));
    }
    let param_socket = match op.params.str("control_socket") {
        Some(p) if !Path::new(p).is_absolute() => {
            return Err(configured("control_socket", format!("{p} is not an absolute path")));
        }
        p => p.map(PathBuf::from),
    };
    let text = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(e) => {
            let why = format!("parameter `config`: cannot read {}: {e}", config.display());
            let socket_from_param = param_socket.is_some();
            return Ok(Spec { config, socket: param_socket, missing: Some(why), socket_from_param });
        }
    };
    let socket_from_param = param_socket.is_some();
    let socket = match param_socket {
        Some(s) => s,
        None => match toml_top_level_str(&text, "control_socket") {
            Ok(Some(s)) if Path::new(&s).is_absolute() => PathBuf::from(s),
            Ok(Some(s)) => {
                return Err(configured(
                    "config",
                    format!("{}: control_socket {s} is not an absolute path", config.display()),
                ));
            }
            Ok(None) => {
                return Err(configured(
                    "config",
                    format!(
                        "{} has no top-level control_socket; add it or set the `control_socket` parameter",
                        config.display()
                    ),
                ));
            }
            Err(e) => return Err(configured("config", format!("{}: {e}", config.display()))),
        },
    };
    Ok(Spec { config, socket: Some(socket), missing: None, socket_from_param })
}

impl Spec {
    /// The config file must exist for actions that bring the volume up.
    fn socket_for_start(&self) -> Result<&Path, Outcome> {
        match (&self.missing, &self.socket) {
            (None, Some(s)) => Ok(s),
            (why, _) => Err(Outcome::fail(OcfRc::ErrInstalled, why.clone().unwrap_or_default())),
        }
    }

    /// The daemon's arguments: the configuration file, and the control socket when the
    /// parameter overrides the file's.
    fn daemon_args(&self) -> Vec<&OsStr> {
        let mut args = vec![OsStr::new("--config"), self.config.as_os_str()];
        if let (true, Some(socket)) = (self.socket_from_param, &self.socket) {
            args.extend([OsStr::new("--control"), socket.as_os_str()]);
        }
        args
    }

    /// Where the daemon's output goes: next to its control socket.
    fn log_path(socket: &Path) -> PathBuf {
        socket.with_extension("log")
    }
}

/// The daemon binary: the parameter, else `blockrepld` next to this executable, else in PATH.
fn daemon_binary(op: &Op<'_>) -> Result<PathBuf, Outcome> {
    if let Some(p) = op.params.str("blockrepld") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Outcome::fail(
                OcfRc::ErrInstalled,
                format!("parameter `blockrepld`: {} does not exist on this node", p.display()),
            ))
        };
    }
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join(DAEMON)));
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(DAEMON)).collect::<Vec<_>>())
        .unwrap_or_default();
    beside.into_iter().chain(in_path).find(|p| p.is_file()).ok_or_else(|| {
        Outcome::fail(
            OcfRc::ErrInstalled,
            "blockrepld is neither next to this executable nor in PATH; install it or set the parameter `blockrepld`",
        )
    })
}

/// Has the daemon check the configuration file (every problem at once).
fn check_config(op: &Op<'_>, bin: &Path, s: &Spec) -> Result<(), Outcome> {
    let config = &s.config;
    let mut cmd = Command::new(bin);
    cmd.args(s.daemon_args()).arg("--check-config");
    let ran = proc::run(&mut cmd, op.deadline)
        .map_err(|e| Outcome::fail(OcfRc::ErrInstalled, format!("cannot run {}: {e}", bin.display())))?;
    if ran.timed_out {
        return Err(Outcome::timed_out("blockrepld --check-config did not finish in time"));
    }
    if !ran.success() {
        return Err(configured(
            "config",
            format!("blockrepld rejects {}: {}", config.display(), ran.stderr.trim().replace('\n', "; ")),
        ));
    }
    Ok(())
}

/// Why a control call did not return a status.
#[derive(Debug)]
enum CallError {
    /// Nothing listens on the socket (no file, or connection refused).
    Absent(String),
    /// The daemon refused the request.
    Refused(String),
    /// The daemon answered badly or the socket failed mid-call.
    Broken(String),
    /// The op's deadline passed first.
    TimedOut,
}

impl CallError {
    fn describe(&self, what: &str) -> String {
        match self {
            CallError::Absent(e) => format!("{what}: blockrepld is not running ({e})"),
            CallError::Refused(e) => format!("{what} refused by blockrepld: {e}"),
            CallError::Broken(e) => format!("{what}: {e}"),
            CallError::TimedOut => format!("{what}: no answer from blockrepld before the deadline"),
        }
    }

    /// The outcome of an action that needed this call.
    fn outcome(&self, what: &str) -> Outcome {
        match self {
            CallError::TimedOut => Outcome::timed_out(self.describe(what)),
            CallError::Absent(_) => Outcome::fail(OcfRc::NotRunning, self.describe(what)),
            _ => Outcome::fail(OcfRc::ErrGeneric, self.describe(what)),
        }
    }
}

/// One control request, bounded by `deadline` (the library call's own read timeout is longer:
/// it runs on a helper thread that is abandoned, and finishes by itself, when the deadline
/// passes first).
fn call(socket: &Path, req: Request, deadline: Instant) -> Result<Status, CallError> {
    if Instant::now() >= deadline {
        return Err(CallError::TimedOut);
    }
    let (tx, rx) = mpsc::channel();
    let path = socket.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(control::call(&path, &req));
    });
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(Response::Ok { status, .. })) => Ok(*status),
        Ok(Ok(Response::Error { message })) => Err(CallError::Refused(message)),
        Ok(Err(ControlError::Connect { source, .. }))
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) =>
        {
            Err(CallError::Absent(source.to_string()))
        }
        Ok(Err(e)) => Err(CallError::Broken(e.to_string())),
        Err(_) => Err(CallError::TimedOut),
    }
}

/// Pids of the `blockrepld` processes serving `config` (found by their command line, so a
/// daemon started by an earlier executor, or whose socket does not answer, is found too).
fn daemon_pids(config: &Path, bin_name: Option<&OsStr>) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id() as i32;
    let wanted = config.as_os_str().as_bytes();
    let canonical = std::fs::canonicalize(config).ok();
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            let Some(argv0) = args.first() else { return false };
            let name = Path::new(OsStr::from_bytes(argv0)).file_name();
            let is_daemon = name == Some(OsStr::new(DAEMON)) || (bin_name.is_some() && name == bin_name);
            if !is_daemon || args.iter().any(|a| *a == b"--check-config") {
                return false;
            }
            let same = |p: &[u8]| {
                p == wanted
                    || canonical
                        .as_deref()
                        .is_some_and(|c| std::fs::canonicalize(OsStr::from_bytes(p)).ok().as_deref() == Some(c))
            };
            args.windows(2).any(|w| w[0] == b"--config" && same(w[1]))
                || args.iter().any(|a| a.strip_prefix(b"--config=").is_some_and(same))
        })
        .filter(|&pid| proc::alive(pid))
        .collect();
    pids.sort_unstable();
    pids
}

/// The daemon binary's file name as configured, to recognise its processes.
fn bin_name(op: &Op<'_>) -> Option<std::ffi::OsString> {
    op.params.str("blockrepld").and_then(|p| Path::new(p).file_name().map(OsStr::to_owned))
}

/// Waits until none of `pids` is alive; false at `until`.
fn wait_gone(pids: &[i32], until: Instant) -> bool {
    loop {
        if !pids.iter().any(|&p| proc::alive(p)) {
            return true;
        }
        if !proc::pause(Duration::from_millis(10), until) {
            return false;
        }
    }
}

impl Volume {
    /// Starts the daemon for `config` and waits for its control socket to answer.
    fn launch(&self, op: &Op<'_>, s: &Spec, socket: &Path) -> Result<Status, Outcome> {
        let bin = daemon_binary(op)?;
        check_config(op, &bin, s)?;
        if op.expired() {
            return Err(Outcome::timed_out("no time left to start blockrepld"));
        }
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Outcome::fail(OcfRc::ErrPerm, format!("cannot create {} for the control socket: {e}", dir.display()))
            })?;
        }
        let log_path = Spec::log_path(socket);
        let log = File::create(&log_path)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| Outcome::fail(OcfRc::ErrPerm, format!("cannot write {}: {e}", log_path.display())))?;
        let mut child = Command::new(&bin)
            .args(s.daemon_args())
            .current_dir("/")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1)
            .spawn()
            .map_err(|e| Outcome::fail(OcfRc::ErrInstalled, format!("cannot run {}: {e}", bin.display())))?;
        let pid = child.id() as i32;
        let result = loop {
            match call(socket, Request::Status, op.deadline) {
                Ok(st) => break Ok(st),
                Err(CallError::TimedOut) => {
                    break Err(Outcome::timed_out(format!(
                        "blockrepld (pid {pid}) did not answer on {} in time; see {}",
                        socket.display(),
                        log_path.display()
                    )));
                }
                Err(CallError::Absent(_)) => {}
                Err(e) => break Err(Outcome::fail(OcfRc::ErrGeneric, e.describe("status after start"))),
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last = log.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no output");
                break Err(Outcome::fail(OcfRc::ErrGeneric, format!("blockrepld exited at start ({status}): {last}")));
            }
            if !proc::pause(POLL, op.deadline) {
                break Err(Outcome::timed_out(format!(
                    "blockrepld (pid {pid}) did not answer on {} in time; see {}",
                    socket.display(),
                    log_path.display()
                )));
            }
        };
        // The daemon outlives this operation: a thread reaps it whenever it exits.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        if result.is_ok() {
            Event::VolumeDaemonStarted { rsc: op.instance, pid, config: &s.config }.log();
        }
        result
    }

    /// Waits for a daemon that runs but does not answer yet (one started by an earlier, timed
    /// out start) until the deadline; `None` when it exited meanwhile.
    fn await_socket(&self, op: &Op<'_>, socket: &Path, pids: &[i32]) -> Result<Option<Status>, Outcome> {
        loop {
            match call(socket, Request::Status, op.deadline) {
                Ok(st) => return Ok(Some(st)),
                Err(CallError::Absent(_)) if pids.iter().any(|&p| proc::alive(p)) => {}
                Err(CallError::Absent(_)) => return Ok(None),
                Err(e) => return Err(e.outcome("status")),
            }
            if !proc::pause(POLL, op.deadline) {
                return Err(Outcome::timed_out(format!(
                    "blockrepld {pids:?} runs but does not answer on {}; stop the resource to restart it",
                    socket.display()
                )));
            }
        }
    }

    fn do_start(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let socket = s.socket_for_start()?;
        let mut st = match call(socket, Request::Status, op.deadline) {
            Ok(st) => st,
            Err(CallError::Absent(_)) => {
                let pids = daemon_pids(&s.config, bin_name(op).as_deref());
                let running = if pids.is_empty() { None } else { self.await_socket(op, socket, &pids)? };
                match running {
                    Some(st) => st,
                    None => self.launch(op, &s, socket)?,
                }
            }
            Err(e) => return Err(e.outcome("status")),
        };
        if st.role == Role::Primary {
            st = call(socket, Request::Secondary, op.deadline).map_err(|e| e.outcome("secondary"))?;
        }
        if st.conn == ConnState::StandAlone {
            st = call(socket, Request::Connect { discard_my_data: false }, op.deadline)
                .map_err(|e| e.outcome("connect"))?;
        }
        if st.disk == DiskState::Failed {
            return Err(verdict(&st));
        }
        Ok(Outcome::ok().with_promotion(promotion_score(&st)))
    }

    /// Stops the daemon processes `pids` that did not go away: TERM, then KILL.
    fn kill_daemons(&self, op: &Op<'_>, pids: &[i32]) -> Result<(), Outcome> {
        for &p in pids {
            // CONT too: a stopped process would hold a pending TERM until the KILL.
            let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
            let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
        }
        if wait_gone(pids, Instant::now() + op.remaining() / 2) {
            return Ok(());
        }
        for &p in pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            Event::VolumeDaemonKilled { rsc: op.instance, pid: p }.log();
        }
        if wait_gone(pids, op.deadline) {
            return Ok(());
        }
        Err(Outcome::timed_out(format!("blockrepld {pids:?} survived SIGKILL")))
    }

    fn do_stop(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let name = bin_name(op);
        // A daemon that does not answer in 5 s (or a quarter of the time) is hung: killed below.
        let answering = s.socket.as_deref().and_then(|socket| {
            call(socket, Request::Status, Instant::now() + (op.remaining() / 4).min(HUNG_AFTER))
                .ok()
                .map(|st| (socket, st))
        });
        if let Some((socket, st)) = answering {
            if st.role == Role::Primary {
                call(socket, Request::Secondary, op.deadline).map_err(|e| e.outcome("secondary before down"))?;
            }
            let pids = daemon_pids(&s.config, name.as_deref());
            // The daemon may close the socket as it exits; whatever the answer, the processes
            // are checked below.
            let _ = call(socket, Request::Down, Instant::now() + op.remaining() / 4);
            // Let it exit by itself for half the time left; then it is killed.
            wait_gone(&pids, Instant::now() + op.remaining() / 2);
        }
        let left = daemon_pids(&s.config, name.as_deref());
        if !left.is_empty() {
            self.kill_daemons(op, &left)?;
        }
        Ok(Outcome::ok().with_promotion(None))
    }

    fn do_monitor(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let Some(socket) = &s.socket else {
            let pids = daemon_pids(&s.config, bin_name(op).as_deref());
            if pids.is_empty() {
                return Ok(Outcome::not_running().with_promotion(None));
            }
            return Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!("blockrepld {pids:?} runs but {}", s.missing.unwrap_or_default()),
            ));
        };
        match call(socket, Request::Status, op.deadline) {
            Ok(st) => Ok(verdict(&st)),
            // Nothing listens, or the daemon went away during the call (it was dying): not
            // running, unless a daemon for this volume is still there.
            Err(err @ (CallError::Absent(_) | CallError::Broken(_))) => {
                let pids = daemon_pids(&s.config, bin_name(op).as_deref());
                match err {
                    _ if pids.is_empty() => Ok(Outcome::not_running().with_promotion(None)),
                    CallError::Absent(e) => Err(Outcome::fail(
                        OcfRc::ErrGeneric,
                        format!(
                            "blockrepld {pids:?} runs but its control socket {} does not answer: {e}",
                            socket.display()
                        ),
                    )),
                    other => Err(other.outcome("status")),
                }
            }
            Err(e) => Err(e.outcome("status")),
        }
    }

    fn do_promote(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let socket = s.socket_for_start()?;
        let mut st = call(socket, Request::Status, op.deadline).map_err(|e| e.outcome("status before promote"))?;
        if st.role == Role::Primary {
            return Ok(Outcome::ok().with_promotion(promotion_score(&st)));
        }
        // The peer's demotion is not acknowledged to whoever demoted it: its new role may still
        // be on the wire when this promotion is ordered right after. Give it a moment.
        let settle = Instant::now() + PEER_DEMOTE_GRACE.min(op.remaining() / 2);
        while st.conn == ConnState::Connected && st.peer_role == Role::Primary && proc::pause(POLL, settle) {
            st = call(socket, Request::Status, op.deadline).map_err(|e| e.outcome("status before promote"))?;
        }
        // Never forced: only UpToDate data is promoted; the daemon says why it refuses.
        match call(socket, Request::Primary { force: false }, op.deadline) {
            Ok(st) => Ok(Outcome::ok().with_promotion(promotion_score(&st))),
            Err(e) => {
                let fail = e.outcome("primary");
                // Refused: the score this state deserves goes with the failure.
                let now = call(socket, Request::Status, op.deadline).ok();
                Err(match now {
                    Some(st) => fail.with_promotion(promotion_score(&st)),
                    None => fail,
                })
            }
        }
    }

    fn do_demote(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let socket = s.socket_for_start()?;
        let st = call(socket, Request::Secondary, op.deadline).map_err(|e| e.outcome("secondary"))?;
        Ok(Outcome::ok().with_promotion(promotion_score(&st)))
    }

    fn do_validate(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        s.socket_for_start()?;
        let bin = daemon_binary(op)?;
        check_config(op, &bin, &s)?;
        Ok(Outcome::ok())
    }
}

impl ResourceAgent for Volume {
    fn meta_data(&self) -> Result<Metadata, AgentError> {
        let s = Duration::from_secs;
        let role_monitor = |interval: u64, role: &str| ActionSpec {
            role: Some(role.to_owned()),
            ..ActionSpec::monitor(s(20), s(interval), 0)
        };
        Ok(Metadata {
            name: "volume".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            shortdesc: "Replicated block volume (blockrepld), as a promotable clone".into(),
            longdesc: "Manages one blockrepld-served volume on this node; configure it as a promotable clone with clone-max=2 and promoted-max=1. start brings the volume up Secondary and connecting (starting blockrepld from its configuration file when the control socket does not answer); promote makes it Primary (never forced: only UpToDate data); demote makes it Secondary; stop demotes and takes the daemon down. monitor answers 8 when Primary, 0 when Secondary, 7 when not running, and sets this node's promotion score from the disk state: 10000 for UpToDate data connected to its peer, 1000 for UpToDate data without a connection, none otherwise (Consistent, Outdated, Inconsistent, Diskless are never promoted).".into(),
            params: vec![
                ParamSpec::new("config", ParamType::String, "Path of the volume's blockrepld configuration file")
                    .required()
                    .unique()
                    .long("Absolute path of the TOML file blockrepld runs from (as written by `crmctl volume create`)."),
                ParamSpec::new("control_socket", ParamType::String, "The volume's control socket")
                    .long("Absolute path; taken from the configuration file's control_socket when not given."),
                ParamSpec::new("blockrepld", ParamType::String, "The blockrepld binary").long(
                    "Absolute path; when not given, blockrepld next to the executor's own executable, else the one in PATH.",
                ),
            ],
            actions: vec![
                ActionSpec::new("start", s(60)),
                ActionSpec::new("stop", s(60)),
                ActionSpec::new("promote", s(30)),
                ActionSpec::new("demote", s(30)),
                role_monitor(15, "Promoted"),
                role_monitor(20, "Unpromoted"),
                ActionSpec::new("validate-all", s(20)),
                ActionSpec::new("meta-data", s(5)),
            ],
        })
    }

    fn validate(&self, op: &Op<'_>) -> Outcome {
        self.do_validate(op).unwrap_or_else(|o| o)
    }

    fn start(&self, op: &Op<'_>) -> Outcome {
        self.do_start(op).unwrap_or_else(|o| o)
    }

    fn stop(&self, op: &Op<'_>) -> Outcome {
        self.do_stop(op).unwrap_or_else(|o| o)
    }

    fn monitor(&self, op: &Op<'_>) -> Outcome {
        self.do_monitor(op).unwrap_or_else(|o| o)
    }

    fn promote(&self, op: &Op<'_>) -> Outcome {
        self.do_promote(op).unwrap_or_else(|o| o)
    }

    fn demote(&self, op: &Op<'_>) -> Outcome {
        self.do_demote(op).unwrap_or_else(|o| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockrepl::{Gi, Stats};

    fn status(role: Role, disk: DiskState, conn: ConnState, repl: ReplState) -> Status {
        Status {
            node: Default::default(),
            peer: Default::default(),
            role,
            peer_role: Role::Unknown,
            conn,
            repl,
            disk,
            peer_disk: DiskState::DUnknown,
            out_of_sync_blocks: 0,
            sync_done_percent: None,
            gi: Gi::default(),
            last_error: None,
            split_brain: None,
            verify: None,
            stats: Stats::default(),
            promotion_pending: false,
        }
    }

    #[test]
    fn only_up_to_date_data_earns_a_promotion_score() {
        use ConnState::*;
        use DiskState::*;
        let score = |disk, conn, repl| promotion_score(&status(Role::Secondary, disk, conn, repl));
        assert_eq!(score(UpToDate, Connected, ReplState::Established), Some(SCORE_CONNECTED));
        assert_eq!(score(UpToDate, Connected, ReplState::SyncSource), Some(SCORE_CONNECTED));
        assert_eq!(score(UpToDate, Connected, ReplState::WFBitMap), Some(SCORE_ALONE), "handshake undecided");
        assert_eq!(score(UpToDate, Connecting, ReplState::Off), Some(SCORE_ALONE));
        assert_eq!(score(UpToDate, StandAlone, ReplState::Off), Some(SCORE_ALONE));
        for disk in [Consistent, Outdated, Inconsistent, Diskless, Failed] {
            assert_eq!(score(disk, Connected, ReplState::Established), None, "{disk:?}");
            assert_eq!(score(disk, Connecting, ReplState::Off), None, "{disk:?}");
        }
        assert_eq!(score(Inconsistent, Connected, ReplState::SyncTarget), None);
    }

    #[test]
    fn monitor_codes_follow_the_role_and_a_failed_disk_is_an_error() {
        let v = verdict(&status(Role::Primary, DiskState::UpToDate, ConnState::Connected, ReplState::Established));
        assert_eq!((v.rc, v.promotion), (OcfRc::RunningPromoted, Some(Some(SCORE_CONNECTED))));
        let v = verdict(&status(Role::Secondary, DiskState::Inconsistent, ConnState::Connected, ReplState::SyncTarget));
        assert_eq!((v.rc, v.promotion), (OcfRc::Success, Some(None)));
        let v = verdict(&status(Role::Primary, DiskState::Failed, ConnState::Connected, ReplState::Established));
        assert_eq!(v.rc, OcfRc::FailedPromoted);
        let v = verdict(&status(Role::Secondary, DiskState::Failed, ConnState::StandAlone, ReplState::Off));
        assert_eq!(v.rc, OcfRc::ErrGeneric);
        assert!(v.reason.unwrap().contains("backing storage failed"));
        let v = verdict(&status(Role::Unknown, DiskState::UpToDate, ConnState::StandAlone, ReplState::Off));
        assert_eq!(v.rc, OcfRc::ErrGeneric);
    }

    #[test]
    fn control_socket_is_read_from_the_top_level_of_the_config() {
        let f = |t: &str| toml_top_level_str(t, "control_socket");
        assert_eq!(
            f("name = \"r0\"\ncontrol_socket = \"/run/a b.sock\" # here\n").unwrap().as_deref(),
            Some("/run/a b.sock")
        );
        assert_eq!(f("control_socket='/run/x\\y.sock'\n").unwrap().as_deref(), Some("/run/x\\y.sock"));
        assert_eq!(f("control_socket = \"/r/\\u00e9\\\"q\\\\\"\n").unwrap().as_deref(), Some("/r/é\"q\\"));
        assert_eq!(f("[link]\ncontrol_socket = \"/nope\"\n").unwrap(), None, "only the top level counts");
        assert_eq!(f("name = \"r0\"\n").unwrap(), None);
        for bad in [
            "control_socket = 5\n",
            "control_socket = \"/x\n",
            "control_socket = \"/x\" y\n",
            "control_socket = \"\\q\"\n",
        ] {
            let e = f(bad).unwrap_err();
            assert!(e.starts_with("control_socket:"), "{bad}: {e}");
        }
    }
}
