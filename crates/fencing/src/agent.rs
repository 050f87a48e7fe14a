//! The [`FenceAgent`] trait, the outcome vocabulary, and the bounded executor around it.
//!
//! # Why blocking methods
//! Every device speaks a short request/response protocol (a few UDP datagrams, one HTTP
//! request, one child process) whose every wait is bounded by a deadline passed in. Blocking
//! code with explicit socket and process timeouts is the simplest thing that is provably
//! bounded, keeps this crate free of any async runtime, and makes `Box<dyn FenceAgent>` work
//! without boxing futures. The fencer inside the daemon calls agents through [`spawn`]: the
//! action runs on its own thread and the returned [`ActionHandle`] is a runtime-agnostic
//! `Future` (and can also be waited on synchronously). A supervisor enforces the deadline even
//! for an agent that overruns it or panics: the answer is then `Unknown`, never `Done`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::metadata::Metadata;

/// What a fence device is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Power the target off and confirm it is off.
    Off,
    /// Power the target on.
    On,
    /// Power the target off (confirmed), then on again.
    Reboot,
    /// Report the target's power state.
    Status,
    /// List the plugs (ports, domains, instances) the device controls.
    List,
    /// Check that the device is reachable and accepts our credentials.
    Monitor,
    /// Describe the agent and its parameters.
    Metadata,
}

impl Action {
    /// Every action, in documentation order.
    pub const ALL: [Action; 7] = [
        Action::Off,
        Action::On,
        Action::Reboot,
        Action::Status,
        Action::List,
        Action::Monitor,
        Action::Metadata,
    ];

    /// The fence-agents name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::On => "on",
            Action::Reboot => "reboot",
            Action::Status => "status",
            Action::List => "list",
            Action::Monitor => "monitor",
            Action::Metadata => "metadata",
        }
    }

    /// Parses a fence-agents action name (`metadata` and `meta-data` both accepted).
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "off" => Action::Off,
            "on" => Action::On,
            "reboot" => Action::Reboot,
            "status" => Action::Status,
            "list" => Action::List,
            "monitor" => Action::Monitor,
            "metadata" | "meta-data" => Action::Metadata,
            _ => return None,
        })
    }

    /// True for the actions that take a node down (and so can fence it).
    pub fn fences(self) -> bool {
        matches!(self, Action::Off | Action::Reboot)
    }

    /// True for the actions that change power state.
    pub fn is_power_change(self) -> bool {
        matches!(self, Action::Off | Action::On | Action::Reboot)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A power state as the device reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PowerState {
    /// Powered on (running).
    On,
    /// Powered off (stopped, destroyed).
    Off,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        })
    }
}

/// One plug a device controls (an outlet, a libvirt domain, an EC2 instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plug {
    /// What to pass as `plug`/`port`.
    pub id: String,
    /// A human name (domain UUID, instance `Name` tag), when the device has one.
    pub alias: Option<String>,
    /// Power state, when the listing includes it.
    pub power: Option<PowerState>,
}

/// The result of one action. `Done` is only ever produced on the device's confirmation.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The device confirmed the action (for `off`: the target is confirmed powered off).
    Done(T),
    /// The action certainly did not happen (refused, bad credentials, bad configuration).
    Failed(AgentError),
    /// We cannot tell whether it happened (no answer, garbage, lost connection after the
    /// command was sent). Never counts as fenced.
    Unknown(AgentError),
}

impl<T> Outcome<T> {
    /// Maps the confirmed value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Done(v) => Outcome::Done(f(v)),
            Outcome::Failed(e) => Outcome::Failed(e),
            Outcome::Unknown(e) => Outcome::Unknown(e),
        }
    }

    /// The error of a non-`Done` outcome.
    pub fn error(&self) -> Option<&AgentError> {
        match self {
            Outcome::Done(_) => None,
            Outcome::Failed(e) | Outcome::Unknown(e) => Some(e),
        }
    }

    /// `"done"`, `"failed"` or `"unknown"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "done",
            Outcome::Failed(_) => "failed",
            Outcome::Unknown(_) => "unknown",
        }
    }
}

impl<T> From<AgentError> for Outcome<T> {
    /// Errors that certainly happened before anything reached the device are `Failed`;
    /// everything else is `Unknown`.
    fn from(e: AgentError) -> Self {
        if e.is_before_command() {
            Outcome::Failed(e)
        } else {
            Outcome::Unknown(e)
        }
    }
}

/// What a confirmed action produced.
#[derive(Debug)]
pub enum Done {
    /// Confirmed off.
    Off,
    /// Confirmed on.
    On,
    /// Confirmed off, then powered on (`on_error` says why the power-on part failed, if it
    /// did: the target is fenced either way).
    Rebooted {
        /// The power-on half's failure, if any.
        on_error: Option<String>,
    },
    /// The reported power state.
    Status(PowerState),
    /// The plugs.
    List(Vec<Plug>),
    /// The device answered and accepted our credentials.
    Monitor,
    /// The agent's self-description.
    Metadata(Metadata),
}

/// Why an action did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The device configuration is unusable; nothing was sent.
    #[error("invalid device parameter `{field}`: {problem}")]
    Config {
        /// The parameter.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The device rejected our credentials; nothing was changed.
    #[error("authentication failed at {device}: {detail}")]
    Auth {
        /// Device address.
        device: String,
        /// What the device said.
        detail: String,
    },
    /// Nothing answered before the deadline.
    #[error("{device} did not answer {what} within {waited_ms} ms")]
    Timeout {
        /// Device address.
        device: String,
        /// What we were waiting for.
        what: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The device could not be reached at all (refused, no route).
    #[error("cannot reach {device}: {detail}")]
    Unreachable {
        /// Device address.
        device: String,
        /// The OS error.
        detail: String,
    },
    /// The device answered something we cannot parse or trust.
    #[error("{device} answered garbage: {detail}")]
    Protocol {
        /// Device address.
        device: String,
        /// What was wrong.
        detail: String,
    },
    /// The device understood and refused (completion code, API error, agent exit code).
    #[error("{device} refused {what}: {detail}")]
    Refused {
        /// Device address.
        device: String,
        /// The request.
        what: String,
        /// The device's reason.
        detail: String,
    },
    /// The command was accepted but the power state never reached the wanted value.
    #[error("{device}: power still {seen} {waited_ms} ms after {action}")]
    NotConfirmed {
        /// Device address.
        device: String,
        /// The action.
        action: Action,
        /// The last state seen.
        seen: PowerState,
        /// How long we polled.
        waited_ms: u64,
    },
    /// The plug is not known to the device.
    #[error("{device} has no plug `{plug}`")]
    NoSuchPlug {
        /// Device address.
        device: String,
        /// The plug asked for.
        plug: String,
    },
    /// This agent cannot do the action.
    #[error("agent {agent} does not support `{action}`")]
    Unsupported {
        /// Agent type.
        agent: String,
        /// The action.
        action: Action,
    },
    /// A fence-agents script failed.
    #[error("{agent} exited with {code} ({meaning}){}", stderr_suffix(.stderr))]
    Script {
        /// Script name.
        agent: String,
        /// Exit code (or -signal).
        code: i32,
        /// The fence-agents meaning of the code.
        meaning: String,
        /// Last line of stderr, secrets removed.
        stderr: String,
    },
    /// The agent overran its deadline or panicked; the supervisor gave up on it.
    #[error("agent {agent} {what}")]
    Supervisor {
        /// Agent type.
        agent: String,
        /// What happened.
        what: String,
    },
}

fn stderr_suffix(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

impl AgentError {
    /// True when the error certainly arose before any command reached the device, so the
    /// action certainly did not happen.
    pub fn is_before_command(&self) -> bool {
        matches!(
            self,
            AgentError::Config { .. }
                | AgentError::Auth { .. }
                | AgentError::Unreachable { .. }
                | AgentError::Refused { .. }
                | AgentError::NotConfirmed { .. }
                | AgentError::NoSuchPlug { .. }
                | AgentError::Unsupported { .. }
        )
    }

    /// True when another attempt may succeed (not for bad configuration or credentials:
    /// repeating those only risks locking the account).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            AgentError::Config { .. }
                | AgentError::Auth { .. }
                | AgentError::NoSuchPlug { .. }
                | AgentError::Unsupported { .. }
        )
    }
}

/// A fence device driver. Each method is one attempt that must return by `deadline`;
/// retries and the overall timeout live in [`execute`]. Implementations must return
/// `Outcome::Done` for `off`/`reboot` only when the device confirmed the power-off.
pub trait FenceAgent: Send + Sync + fmt::Debug {
    /// The agent type (`ipmi`, `libvirt`, `ec2`, or a `fence_*` script name).
    fn agent_type(&self) -> &str;

    /// Powers the plug off and confirms it is off.
    fn off(&self, plug: Option<&str>, deadline: Instant) -> Outcome<()>;

    /// Powers the plug on and confirms it is on.
    fn on(&self, plug: Option<&str>, deadline: Instant) -> Outcome<()>;

    /// Reports the plug's power state.
    fn status(&self, plug: Option<&str>, deadline: Instant) -> Outcome<PowerState>;

    /// Lists the plugs.
    fn list(&self, deadline: Instant) -> Outcome<Vec<Plug>>;

    /// Checks reachability and credentials.
    fn monitor(&self, deadline: Instant) -> Outcome<()>;

    /// Describes the agent and its parameters.
    fn metadata(&self, deadline: Instant) -> Outcome<Metadata>;

    /// Powers off (confirmed), then on. The target counts as fenced once the off half is
    /// confirmed, even if powering on fails.
    fn reboot(&self, plug: Option<&str>, deadline: Instant) -> Outcome<Option<String>> {
        match self.off(plug, deadline) {
            Outcome::Done(()) => {}
            Outcome::Failed(e) => return Outcome::Failed(e),
            Outcome::Unknown(e) => return Outcome::Unknown(e),
        }
        match self.on(plug, deadline) {
            Outcome::Done(()) => Outcome::Done(None),
            Outcome::Failed(e) | Outcome::Unknown(e) => Outcome::Done(Some(e.to_string())),
        }
    }
}

/// One action to execute, with its bounds.
#[derive(Clone, Debug)]
pub struct Request {
    /// The action.
    pub action: Action,
    /// The plug (port, domain, instance id), for devices that control several.
    pub plug: Option<String>,
    /// Overall time for every attempt together.
    pub timeout: Duration,
    /// Further attempts after a retryable failure, within `timeout`.
    pub retries: u32,
}

impl Request {
    /// A request with the fence-agents defaults: 20 s, two retries for power actions.
    pub fn new(action: Action, plug: Option<&str>) -> Request {
        Request {
            action,
            plug: plug.map(str::to_owned),
            timeout: Duration::from_secs(20),
            retries: if action.is_power_change() { 2 } else { 0 },
        }
    }
}

/// What [`execute`] observed.
#[derive(Debug)]
pub struct Report {
    /// The action.
    pub action: Action,
    /// The final outcome.
    pub outcome: Outcome<Done>,
    /// Attempts made (at least one).
    pub attempts: u32,
    /// Wall time spent.
    pub elapsed: Duration,
}

impl Report {
    /// True only when the device confirmed the target is powered off (off or reboot).
    pub fn confirms_fenced(&self) -> bool {
        matches!(
            (self.action, &self.outcome),
            (Action::Off, Outcome::Done(Done::Off))
                | (Action::Reboot, Outcome::Done(Done::Rebooted { .. }))
        )
    }
}

/// Smallest slice of time worth another attempt.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// Runs `req` against `agent` on the calling thread: attempts until one is `Done`, the error
/// is not retryable, retries are used up, or the timeout leaves too little time.
pub fn execute(agent: &dyn FenceAgent, req: &Request) -> Report {
    let start = Instant::now();
    let deadline = start + req.timeout;
    let plug = req.plug.as_deref();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = match req.action {
            Action::Off => agent.off(plug, deadline).map(|()| Done::Off),
            Action::On => agent.on(plug, deadline).map(|()| Done::On),
            Action::Reboot => agent
                .reboot(plug, deadline)
                .map(|on_error| Done::Rebooted { on_error }),
            Action::Status => agent.status(plug, deadline).map(Done::Status),
            Action::List => agent.list(deadline).map(Done::List),
            Action::Monitor => agent.monitor(deadline).map(|()| Done::Monitor),
            Action::Metadata => agent.metadata(deadline).map(Done::Metadata),
        };
        let retry = match outcome.error() {
            None => false,
            Some(e) => {
                tracing::debug!(agent = agent.agent_type(), action = %req.action, attempt = attempts, error = %e, "fence attempt did not complete");
                e.is_retryable()
                    && attempts <= req.retries
                    && deadline.saturating_duration_since(Instant::now()) >= MIN_ATTEMPT
            }
        };
        if !retry {
            let report = Report {
                action: req.action,
                outcome,
                attempts,
                elapsed: start.elapsed(),
            };
            log_report(agent.agent_type(), plug, &report);
            return report;
        }
    }
}

/// One event per finished power action: `info` when confirmed, `warn` otherwise. Only the
/// agent type, plug, outcome and error are logged: errors never carry secrets.
fn log_report(agent: &str, plug: Option<&str>, r: &Report) {
    if !r.action.is_power_change() {
        return;
    }
    let elapsed_ms = u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX);
    let plug = plug.unwrap_or("-");
    match r.outcome.error() {
        None => {
            tracing::info!(agent, plug, action = %r.action, attempts = r.attempts, elapsed_ms, "fence action confirmed")
        }
        Some(e) => {
            tracing::warn!(agent, plug, action = %r.action, outcome = r.outcome.kind(), attempts = r.attempts, elapsed_ms, error = %e, "fence action not confirmed")
        }
    }
}

/// Extra time the supervisor grants past the request's timeout before it gives up on an
/// agent that does not honour its deadline.
pub const SUPERVISOR_GRACE: Duration = Duration::from_secs(2);

/// Runs `req` on a dedicated thread. The handle resolves within `req.timeout` plus
/// [`SUPERVISOR_GRACE`], whatever the agent does; an overrun or a panic becomes `Unknown`.
pub fn spawn(agent: Arc<dyn FenceAgent>, req: Request) -> ActionHandle {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            report: None,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    let out = Arc::clone(&shared);
    let action = req.action;
    let spawned = std::thread::Builder::new()
        .name(format!("fence-{}", req.action))
        .spawn(move || {
            let report = supervise(agent, req);
            let mut slot = out.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.report = Some(report);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
            out.ready.notify_all();
        });
    if let Err(e) = spawned {
        let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.report = Some(Report {
            action,
            outcome: Outcome::Failed(AgentError::Supervisor {
                agent: "-".into(),
                what: format!("could not start a thread: {e}"),
            }),
            attempts: 0,
            elapsed: Duration::ZERO,
        });
    }
    ActionHandle { shared }
}

fn supervise(agent: Arc<dyn FenceAgent>, req: Request) -> Report {
    let start = Instant::now();
    let limit = req.timeout + SUPERVISOR_GRACE;
    let (tx, rx) = std::sync::mpsc::channel();
    let action = req.action;
    let name = agent.agent_type().to_owned();
    let worker = std::thread::Builder::new()
        .name(format!("fence-{name}"))
        .spawn(move || {
            let _ = tx.send(execute(agent.as_ref(), &req));
        });
    let what = match worker {
        Err(e) => format!("could not start: {e}"),
        Ok(_) => match rx.recv_timeout(limit) {
            Ok(report) => return report,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                format!("overran its deadline by more than {SUPERVISOR_GRACE:?}; abandoned")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => "panicked".to_owned(),
        },
    };
    tracing::error!(agent = %name, %action, %what, "fence agent misbehaved");
    Report {
        action,
        outcome: Outcome::Unknown(AgentError::Supervisor { agent: name, what }),
        attempts: 1,
        elapsed: start.elapsed(),
    }
}

struct Slot {
    report: Option<Report>,
    waker: Option<Waker>,
}

struct Shared {
    slot: Mutex<Slot>,
    ready: Condvar,
}

/// A running action: a `Future` for async callers, [`ActionHandle::wait`] for others.
pub struct ActionHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ActionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ActionHandle")
    }
}

impl ActionHandle {
    /// Blocks until the report is ready.
    pub fn wait(self) -> Report {
        let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = slot.report.take() {
                return r;
            }
            slot = self
                .shared
                .ready
                .wait(slot)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Future for ActionHandle {
    type Output = Report;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Report> {
        let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        match slot.report.take() {
            Some(r) => Poll::Ready(r),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Polls the power state until it is `want` or `deadline` passes, `interval` apart.
/// Used by agents to turn "command accepted" into "state confirmed".
pub(crate) fn confirm_power(
    device: &str,
    action: Action,
    want: PowerState,
    deadline: Instant,
    interval: Duration,
    mut status: impl FnMut() -> Outcome<PowerState>,
) -> Outcome<()> {
    let start = Instant::now();
    loop {
        let seen = match status() {
            Outcome::Done(s) if s == want => return Outcome::Done(()),
            Outcome::Done(s) => s,
            // The command went out: losing contact now leaves the state unknown.
            Outcome::Failed(e) | Outcome::Unknown(e) => return Outcome::Unknown(e),
        };
        let now = Instant::now();
        if now + interval >= deadline {
            return Outcome::Failed(AgentError::NotConfirmed {
                device: device.to_owned(),
                action,
                seen,
                waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent whose answers are scripted per call, to test the executor's rules.
    #[derive(Debug)]
    struct Scripted {
        off: Mutex<Vec<Outcome<()>>>,
        hang: Option<Duration>,
    }

    impl FenceAgent for Scripted {
        fn agent_type(&self) -> &str {
            "scripted"
        }
        fn off(&self, _: Option<&str>, _: Instant) -> Outcome<()> {
            if let Some(h) = self.hang {
                std::thread::sleep(h);
            }
            self.off.lock().unwrap().remove(0)
        }
        fn on(&self, _: Option<&str>, _: Instant) -> Outcome<()> {
            Outcome::Failed(AgentError::Refused {
                device: "d".into(),
                what: "on".into(),
                detail: "no".into(),
            })
        }
        fn status(&self, _: Option<&str>, _: Instant) -> Outcome<PowerState> {
            Outcome::Done(PowerState::On)
        }
        fn list(&self, _: Instant) -> Outcome<Vec<Plug>> {
            Outcome::Done(vec![])
        }
        fn monitor(&self, _: Instant) -> Outcome<()> {
            panic!("monitor panics on purpose")
        }
        fn metadata(&self, _: Instant) -> Outcome<Metadata> {
            Outcome::Failed(AgentError::Unsupported {
                agent: "scripted".into(),
                action: Action::Metadata,
            })
        }
    }

    fn timeout() -> AgentError {
        AgentError::Timeout {
            device: "d".into(),
            what: "x".into(),
            waited_ms: 1,
        }
    }

    #[test]
    fn unknown_attempts_are_retried_until_confirmed() {
        let a = Scripted {
            off: Mutex::new(vec![
                Outcome::Unknown(timeout()),
                Outcome::Unknown(timeout()),
                Outcome::Done(()),
            ]),
            hang: None,
        };
        let r = execute(&a, &Request::new(Action::Off, None));
        assert_eq!(r.attempts, 3);
        assert!(r.confirms_fenced());
    }

    #[test]
    fn auth_failures_are_not_retried_and_never_fence() {
        let auth = AgentError::Auth {
            device: "d".into(),
            detail: "bad".into(),
        };
        let a = Scripted {
            off: Mutex::new(vec![Outcome::from(auth), Outcome::Done(())]),
            hang: None,
        };
        let r = execute(&a, &Request::new(Action::Off, None));
        assert_eq!(r.attempts, 1);
        assert_eq!(r.outcome.kind(), "failed");
        assert!(!r.confirms_fenced());
    }

    #[test]
    fn reboot_counts_as_fenced_when_only_power_on_fails() {
        let a = Scripted {
            off: Mutex::new(vec![Outcome::Done(())]),
            hang: None,
        };
        let r = execute(&a, &Request::new(Action::Reboot, None));
        assert!(r.confirms_fenced());
        assert!(matches!(
            r.outcome,
            Outcome::Done(Done::Rebooted { on_error: Some(_) })
        ));
    }

    #[test]
    fn supervisor_turns_overrun_and_panic_into_unknown() {
        let a: Arc<dyn FenceAgent> = Arc::new(Scripted {
            off: Mutex::new(vec![Outcome::Done(())]),
            hang: Some(Duration::from_secs(4)),
        });
        let mut req = Request::new(Action::Off, None);
        req.timeout = Duration::from_millis(100);
        let t = Instant::now();
        let r = spawn(Arc::clone(&a), req).wait();
        assert!(
            t.elapsed() < Duration::from_millis(3500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(r.outcome.kind(), "unknown");
        assert!(!r.confirms_fenced());

        let r = spawn(a, Request::new(Action::Monitor, None)).wait();
        assert!(
            matches!(&r.outcome, Outcome::Unknown(AgentError::Supervisor { what, .. }) if what == "panicked")
        );
    }
}
