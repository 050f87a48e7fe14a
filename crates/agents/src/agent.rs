//! The `ResourceAgent` trait, the operation an agent is asked to perform, and [`execute`],
//! which validates parameters, dispatches, times and classifies one operation.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::error::AgentError;
use crate::rc::{OcfRc, Recovery};
use crate::schema::{Metadata, Params};

/// The timeout used when neither the request nor the agent's meta-data gives one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// An action of the OCF resource agent API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Start the resource (idempotent).
    Start,
    /// Stop the resource (idempotent).
    Stop,
    /// Check the resource at a depth (`OCF_CHECK_LEVEL`).
    Monitor,
    /// Promote to the promoted role.
    Promote,
    /// Demote to the unpromoted role.
    Demote,
    /// Pre/post notification for clones.
    Notify,
    /// Apply changed reloadable parameters.
    Reload,
    /// Check the parameters (`validate-all`).
    Validate,
    /// Describe the agent (`meta-data`).
    MetaData,
}

impl Action {
    /// Every action, in a stable order.
    pub const ALL: [Action; 9] = [
        Action::Start,
        Action::Stop,
        Action::Monitor,
        Action::Promote,
        Action::Demote,
        Action::Notify,
        Action::Reload,
        Action::Validate,
        Action::MetaData,
    ];

    /// The OCF spelling (argv[1] of an OCF script).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor => "monitor",
            Action::Promote => "promote",
            Action::Demote => "demote",
            Action::Notify => "notify",
            Action::Reload => "reload",
            Action::Validate => "validate-all",
            Action::MetaData => "meta-data",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Action {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Action, AgentError> {
        Ok(match s {
            "start" => Action::Start,
            "stop" => Action::Stop,
            "monitor" | "status" => Action::Monitor,
            "promote" => Action::Promote,
            "demote" => Action::Demote,
            "notify" => Action::Notify,
            "reload" => Action::Reload,
            "validate-all" | "validate" => Action::Validate,
            "meta-data" | "metadata" => Action::MetaData,
            other => {
                return Err(AgentError::UnknownAction { action: other.to_owned() });
            }
        })
    }
}

/// What the caller asks for: one action on one resource instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The action.
    pub action: Action,
    /// The resource id (`OCF_RESOURCE_INSTANCE`).
    pub instance: String,
    /// Instance parameters as configured (`OCF_RESKEY_<name>`).
    pub params: BTreeMap<String, String>,
    /// Meta attributes (`OCF_RESKEY_CRM_meta_<name>`), e.g. notify variables.
    pub meta: BTreeMap<String, String>,
    /// Monitor depth (`OCF_CHECK_LEVEL`): 0, 10 or 20.
    pub depth: u32,
    /// Interval of a recurring monitor (zero for a one-shot or probe).
    pub interval: Duration,
    /// Timeout; `None` takes the agent's advertised default for the action.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request for `action` on `instance` with `params`, everything else defaulted.
    pub fn new(action: Action, instance: &str, params: BTreeMap<String, String>) -> Request {
        Request {
            action,
            instance: instance.to_owned(),
            params,
            meta: BTreeMap::new(),
            depth: 0,
            interval: Duration::ZERO,
            timeout: None,
        }
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the monitor depth.
    pub fn depth(mut self, depth: u32) -> Request {
        self.depth = depth;
        self
    }
}

/// One operation as an agent sees it: the request plus validated parameters and a deadline.
#[derive(Debug)]
pub struct Op<'a> {
    /// The action being performed.
    pub action: Action,
    /// The resource id.
    pub instance: &'a str,
    /// The parameters as given (strings).
    pub raw: &'a BTreeMap<String, String>,
    /// Validated, typed parameters with defaults (empty for agents that validate themselves).
    pub params: &'a Params,
    /// Meta attributes.
    pub meta: &'a BTreeMap<String, String>,
    /// Monitor depth.
    pub depth: u32,
    /// Recurring monitor interval (zero for a probe).
    pub interval: Duration,
    /// The operation's timeout.
    pub timeout: Duration,
    /// When the operation must be finished; agents bound every wait and child by it.
    pub deadline: Instant,
}

impl Op<'_> {
    /// Time left before the deadline (zero when passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// What an agent's action returns: an OCF code and an optional exit reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The result code.
    pub rc: OcfRc,
    /// Why (shown as `exitreason`), for failures and noteworthy successes.
    pub reason: Option<String>,
    /// The agent gave up because its deadline passed.
    pub timed_out: bool,
    /// Text output (meta-data XML, diagnostic lines).
    pub output: String,
    /// For a promotable resource: how much this node should be preferred for the promoted role
    /// (what `crm_master -v` sets); `Some(None)` withdraws it; `None` leaves it as it is.
    pub promotion: Option<Option<i64>>,
}

impl Outcome {
    /// A result with a code and no reason.
    pub fn rc(rc: OcfRc) -> Outcome {
        Outcome { rc, reason: None, timed_out: false, output: String::new(), promotion: None }
    }

    /// Sets (or with `None` withdraws) this node's promotion score for the resource.
    pub fn with_promotion(mut self, score: Option<i64>) -> Outcome {
        self.promotion = Some(score);
        self
    }

    /// Success.
    pub fn ok() -> Outcome {
        Outcome::rc(OcfRc::Success)
    }

    /// Cleanly not running.
    pub fn not_running() -> Outcome {
        Outcome::rc(OcfRc::NotRunning)
    }

    /// A result with a reason.
    pub fn fail(rc: OcfRc, reason: impl Into<String>) -> Outcome {
        Outcome { reason: Some(reason.into()), ..Outcome::rc(rc) }
    }

    /// The action is not implemented by this agent.
    pub fn unimplemented(action: Action) -> Outcome {
        Outcome::fail(OcfRc::ErrUnimplemented, format!("action {action} is not implemented by this agent"))
    }

    /// The deadline passed while waiting for something.
    pub fn timed_out(reason: impl Into<String>) -> Outcome {
        Outcome { timed_out: true, ..Outcome::fail(OcfRc::ErrGeneric, reason) }
    }

    /// Adds a reason to a result that has none.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Outcome {
        self.reason = Some(reason.into());
        self
    }
}

/// How the operation ended, apart from its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStatus {
    /// The agent finished within its timeout.
    Done,
    /// The timeout passed: the agent was stopped (its process group killed) or gave up.
    TimedOut,
}

/// The full result of one operation, as the executor records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    /// The action performed.
    pub action: Action,
    /// The result code (`OCF_ERR_GENERIC` for a timeout).
    pub rc: OcfRc,
    /// Done or timed out.
    pub status: ExecStatus,
    /// The exit reason.
    pub reason: Option<String>,
    /// Text output (meta-data XML for `meta-data`).
    pub output: String,
    /// Wall time taken.
    pub elapsed: Duration,
    /// The timeout that applied.
    pub timeout: Duration,
    /// The agent's promotion score for this node ([`Outcome::promotion`]).
    pub promotion: Option<Option<i64>>,
}

impl OpResult {
    /// The recovery class given the code the caller expected.
    pub fn recovery_when_expecting(&self, expected: OcfRc) -> Recovery {
        match self.status {
            ExecStatus::TimedOut => Recovery::Soft,
            ExecStatus::Done => self.rc.recovery_when_expecting(expected),
        }
    }
}

impl fmt::Display for OpResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rc={}", self.action, self.rc)?;
        if self.status == ExecStatus::TimedOut {
            write!(f, " TIMED OUT after {:.3}s", self.timeout.as_secs_f64())?;
        }
        if let Some(r) = &self.reason {
            write!(f, " reason='{r}'")?;
        }
        write!(f, " time={:.3}s", self.elapsed.as_secs_f64())
    }
}

/// A resource agent. Implementations are blocking and must bound all their work by
/// [`Op::deadline`] (kill children, stop waiting); [`execute`] is the only caller.
///
/// The trait is synchronous and object-safe on purpose: agents spend their time in syscalls
/// and child processes, so an async executor runs each operation with `spawn_blocking`
/// (`Arc<dyn ResourceAgent>` is `Send + Sync`), and the agents crate stays free of a runtime.
pub trait ResourceAgent: Send + Sync {
    /// The agent's schema: parameters and actions.
    fn meta_data(&self) -> Result<Metadata, AgentError>;

    /// The meta-data XML (the output of the `meta-data` action).
    fn meta_data_xml(&self) -> Result<String, AgentError> {
        Ok(self.meta_data()?.to_xml())
    }

    /// True when [`execute`] should check parameters against [`ResourceAgent::meta_data`]
    /// before each action (native agents); false when the agent checks them itself (scripts).
    fn checks_params_by_schema(&self) -> bool {
        true
    }

    /// Starts the resource; success if already running.
    fn start(&self, op: &Op<'_>) -> Outcome;

    /// Stops the resource; success if already stopped.
    fn stop(&self, op: &Op<'_>) -> Outcome;

    /// Reports running (0), cleanly stopped (7) or failed (1 or another error), at `op.depth`.
    fn monitor(&self, op: &Op<'_>) -> Outcome;

    /// Checks the configuration beyond the schema (files exist, values make sense here).
    fn validate(&self, _op: &Op<'_>) -> Outcome {
        Outcome::ok()
    }

    /// Promotes the resource.
    fn promote(&self, op: &Op<'_>) -> Outcome {
        Outcome::unimplemented(op.action)
    }

    /// Demotes the resource.
    fn demote(&self, op: &Op<'_>) -> Outcome {
        Outcome::unimplemented(op.action)
    }

    /// Handles a clone notification (variables in `op.meta`).
    fn notify(&self, op: &Op<'_>) -> Outcome {
        Outcome::unimplemented(op.action)
    }

    /// Applies changed parameters without a restart.
    fn reload(&self, op: &Op<'_>) -> Outcome {
        Outcome::unimplemented(op.action)
    }
}

/// Runs one operation: resolves the timeout, checks parameters against the schema (every
/// problem reported at once as `OCF_ERR_CONFIGURED`), dispatches, and times the result. An
/// action that overruns its timeout is reported as timed out whatever code it returned.
pub fn execute(agent: &dyn ResourceAgent, req: &Request) -> OpResult {
    let started = Instant::now();
    // Meta-data only when needed: a script's meta-data costs a process.
    let needs_md = req.timeout.is_none() || (agent.checks_params_by_schema() && req.action != Action::MetaData);
    let md = if needs_md { Some(agent.meta_data()) } else { None };
    let timeout = req.timeout.unwrap_or_else(|| {
        md.as_ref()
            .and_then(|m| m.as_ref().ok())
            .and_then(|m| m.action(req.action.as_str()).map(|a| a.timeout))
            .unwrap_or(DEFAULT_TIMEOUT)
    });
    let finish = |outcome: Outcome| {
        let elapsed = started.elapsed();
        let overran = elapsed > timeout;
        let status = if outcome.timed_out || overran { ExecStatus::TimedOut } else { ExecStatus::Done };
        let (rc, reason) = match (status, outcome.timed_out) {
            (ExecStatus::TimedOut, false) => (
                OcfRc::ErrGeneric,
                Some(format!(
                    "{} took {:.3}s, over its {:.3}s timeout{}",
                    req.action,
                    elapsed.as_secs_f64(),
                    timeout.as_secs_f64(),
                    outcome.reason.map(|r| format!(" (agent said: {r})")).unwrap_or_default()
                )),
            ),
            _ => (outcome.rc, outcome.reason),
        };
        let result = OpResult {
            action: req.action,
            rc,
            status,
            reason,
            output: outcome.output,
            elapsed,
            timeout,
            promotion: outcome.promotion,
        };
        crate::events::Event::OpFinished {
            rsc: &req.instance,
            action: &req.action,
            rc: rc.code(),
            elapsed_ms: elapsed.as_millis() as u64,
            timed_out: status == ExecStatus::TimedOut,
        }
        .log();
        result
    };

    if req.action == Action::MetaData {
        return finish(match agent.meta_data_xml() {
            Ok(xml) => Outcome { output: xml, ..Outcome::ok() },
            Err(e) => Outcome::fail(OcfRc::ErrGeneric, e.to_string()),
        });
    }

    let params = if agent.checks_params_by_schema() {
        let md = match md.unwrap_or_else(|| agent.meta_data()) {
            Ok(md) => md,
            Err(e) => return finish(Outcome::fail(OcfRc::ErrGeneric, e.to_string())),
        };
        match md.validate(&req.params) {
            Ok(p) => p,
            Err(errors) => {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                return finish(Outcome::fail(OcfRc::ErrConfigured, text.join("; ")));
            }
        }
    } else {
        Params::default()
    };

    let op = Op {
        action: req.action,
        instance: &req.instance,
        raw: &req.params,
        params: &params,
        meta: &req.meta,
        depth: req.depth,
        interval: req.interval,
        timeout,
        deadline: started + timeout,
    };
    let outcome = match req.action {
        Action::Start => agent.start(&op),
        Action::Stop => agent.stop(&op),
        Action::Monitor => agent.monitor(&op),
        Action::Promote => agent.promote(&op),
        Action::Demote => agent.demote(&op),
        Action::Notify => agent.notify(&op),
        Action::Reload => agent.reload(&op),
        Action::Validate => agent.validate(&op),
        Action::MetaData => Outcome::ok(), // answered above
    };
    finish(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ActionSpec, ParamSpec, ParamType};

    /// An agent whose start sleeps for `naptime` and ignores its deadline.
    struct Sleepy;

    impl ResourceAgent for Sleepy {
        fn meta_data(&self) -> Result<Metadata, AgentError> {
            Ok(Metadata {
                name: "sleepy".into(),
                version: "1".into(),
                shortdesc: String::new(),
                longdesc: String::new(),
                params: vec![
                    ParamSpec::new("nap_ms", ParamType::Integer, "nap").required(),
                    ParamSpec::new("flag", ParamType::Boolean, "a flag").default("no"),
                ],
                actions: vec![ActionSpec::new("start", Duration::from_millis(50))],
            })
        }
        fn start(&self, op: &Op<'_>) -> Outcome {
            let nap = op.params.int("nap_ms").unwrap_or(0);
            std::thread::sleep(Duration::from_millis(nap as u64));
            Outcome::ok()
        }
        fn stop(&self, _op: &Op<'_>) -> Outcome {
            Outcome::ok()
        }
        fn monitor(&self, _op: &Op<'_>) -> Outcome {
            Outcome::not_running()
        }
    }

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn an_overrun_is_a_timeout_whatever_the_agent_returned() {
        let r = execute(&Sleepy, &Request::new(Action::Start, "s", params(&[("nap_ms", "120")])));
        assert_eq!(r.timeout, Duration::from_millis(50), "the advertised default applies");
        assert_eq!(r.status, ExecStatus::TimedOut);
        assert_eq!(r.rc, OcfRc::ErrGeneric);
        assert_eq!(r.recovery_when_expecting(OcfRc::Success), Recovery::Soft);
        let r = execute(&Sleepy, &Request::new(Action::Start, "s", params(&[("nap_ms", "0")])));
        assert_eq!((r.status, r.rc), (ExecStatus::Done, OcfRc::Success));
    }

    #[test]
    fn schema_violations_are_all_reported_as_not_configured() {
        let r = execute(&Sleepy, &Request::new(Action::Monitor, "s", params(&[("flag", "maybe"), ("extra", "1")])));
        assert_eq!(r.rc, OcfRc::ErrConfigured);
        let reason = r.reason.unwrap();
        for p in ["`extra`", "`nap_ms`", "`flag`"] {
            assert!(reason.contains(p), "{reason}");
        }
    }

    #[test]
    fn defaults_and_unimplemented_actions() {
        let r = execute(&Sleepy, &Request::new(Action::Promote, "s", params(&[("nap_ms", "0")])));
        assert_eq!(r.rc, OcfRc::ErrUnimplemented);
        let r = execute(&Sleepy, &Request::new(Action::MetaData, "s", BTreeMap::new()));
        assert_eq!(r.rc, OcfRc::Success);
        assert!(r.output.contains("<parameter name=\"nap_ms\""));
        assert_eq!("validate-all".parse::<Action>().unwrap(), Action::Validate);
        assert!("frobnicate".parse::<Action>().is_err());
        assert_eq!(format!("{:<8}|", Action::Stop), "stop    |");
    }
}
