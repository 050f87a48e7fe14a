//! The conformance suite every agent must pass (feature `testing`): idempotent start and stop,
//! monitor telling running from stopped, bad parameters answered with the right code, and
//! timeouts honoured. It runs against a real resource; the caller provides the parameters and
//! the environment (namespace, device, daemon binary).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::agent::{Action, ExecStatus, OpResult, Request, ResourceAgent, execute};
use crate::rc::OcfRc;
use crate::schema::Metadata;

/// Slack allowed over a timeout before "timeouts honoured" fails (process teardown, noise).
const TIMEOUT_SLACK: Duration = Duration::from_millis(1500);

/// A parameter set that must be refused.
#[derive(Debug, Clone)]
pub struct BadParams {
    /// What is wrong with it.
    pub label: String,
    /// The parameters.
    pub params: BTreeMap<String, String>,
    /// Codes acceptable from `validate-all` and from `start`.
    pub expect: Vec<OcfRc>,
}

/// What to run the suite with.
#[derive(Debug, Clone)]
pub struct Case {
    /// The resource id.
    pub instance: String,
    /// Good parameters.
    pub params: BTreeMap<String, String>,
    /// Monitor depths to check while running (0 is always checked).
    pub depths: Vec<u32>,
    /// Extra bad parameter sets (one per missing required parameter is added automatically).
    pub bad: Vec<BadParams>,
    /// Codes acceptable when a required parameter is missing (default: `OCF_ERR_CONFIGURED`).
    pub missing_required: Vec<OcfRc>,
    /// Timeout for the normal steps.
    pub timeout: Duration,
    /// If set: a start with this (too short) timeout must return within it (plus slack), and a
    /// normal stop afterwards must leave nothing running.
    pub short_timeout: Option<Duration>,
}

impl Case {
    /// A case with good `params` and defaults for everything else.
    pub fn new(instance: &str, params: &[(&str, &str)]) -> Case {
        Case {
            instance: instance.to_owned(),
            params: kv(params),
            depths: Vec::new(),
            bad: Vec::new(),
            missing_required: vec![OcfRc::ErrConfigured],
            timeout: Duration::from_secs(20),
            short_timeout: Some(Duration::from_millis(1)),
        }
    }

    /// Adds a bad parameter set: `changes` applied to the good parameters (an empty value
    /// removes the key).
    pub fn bad(mut self, label: &str, changes: &[(&str, &str)], expect: &[OcfRc]) -> Case {
        let mut params = self.params.clone();
        for (k, v) in changes {
            if v.is_empty() {
                params.remove(*k);
            } else {
                params.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        self.bad.push(BadParams {
            label: label.to_owned(),
            params,
            expect: expect.to_vec(),
        });
        self
    }

    /// Sets the extra monitor depths.
    pub fn depths(mut self, depths: &[u32]) -> Case {
        self.depths = depths.to_vec();
        self
    }
}

/// Builds a parameter map from pairs.
pub fn kv(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// One step of the suite.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was checked.
    pub label: String,
    /// What the agent returned.
    pub result: OpResult,
    /// Acceptable codes.
    pub expected: Vec<OcfRc>,
    /// Whether the step passed (code acceptable and timeout honoured).
    pub passed: bool,
    /// Why it failed.
    pub problem: Option<String>,
}

/// The suite's result for one agent.
#[derive(Debug, Clone)]
pub struct Report {
    /// The agent (as the caller named it).
    pub agent: String,
    /// Every step in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// The failed steps.
    pub fn failures(&self) -> Vec<&Step> {
        self.steps.iter().filter(|s| !s.passed).collect()
    }

    /// Panics with every failed step when any failed.
    pub fn assert_passed(&self) {
        let f = self.failures();
        assert!(f.is_empty(), "{} failed conformance:\n{self}", self.agent);
    }

    /// Panics when a step failed that is not in `known` (labels of documented deviations of
    /// an upstream agent); prints the known ones that did fail.
    pub fn assert_passed_except(&self, known: &[&str]) {
        let unexpected: Vec<&Step> = self
            .failures()
            .into_iter()
            .filter(|s| !known.contains(&s.label.as_str()))
            .collect();
        for s in self.failures() {
            if known.contains(&s.label.as_str()) {
                eprintln!(
                    "{}: known deviation: {} -> {}",
                    self.agent, s.label, s.result
                );
            }
        }
        assert!(
            unexpected.is_empty(),
            "{} failed conformance:\n{self}",
            self.agent
        );
    }

    /// `(step label, rc)` for every step, to compare agents doing the same job.
    pub fn rc_trace(&self) -> Vec<(String, u8)> {
        self.steps
            .iter()
            .map(|s| (s.label.clone(), s.result.rc.code()))
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(
                f,
                "  [{}] {:<45} {}{}",
                if s.passed { " ok " } else { "FAIL" },
                s.label,
                s.result,
                s.problem
                    .as_ref()
                    .map(|p| format!("  <- {p}"))
                    .unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

/// Steps whose codes differ between two reports of the same case (e.g. a native agent and the
/// OCF script doing the same job), as `label: a=rc b=rc` lines.
pub fn compare(a: &Report, b: &Report) -> Vec<String> {
    let bt: BTreeMap<String, u8> = b.rc_trace().into_iter().collect();
    a.rc_trace()
        .into_iter()
        .filter_map(|(label, rc)| {
            let other = bt.get(&label)?;
            (*other != rc).then(|| format!("{label}: {}={rc} {}={other}", a.agent, b.agent))
        })
        .collect()
}

struct Runner<'a> {
    agent: &'a dyn ResourceAgent,
    case: &'a Case,
    steps: Vec<Step>,
}

impl Runner<'_> {
    fn step(
        &mut self,
        label: &str,
        action: Action,
        params: &BTreeMap<String, String>,
        depth: u32,
        timeout: Duration,
        expected: &[OcfRc],
    ) -> OpResult {
        let req = Request {
            depth,
            ..Request::new(action, &self.case.instance, params.clone()).timeout(timeout)
        };
        let result = execute(self.agent, &req);
        let mut problem = None;
        if result.elapsed > timeout + TIMEOUT_SLACK {
            problem = Some(format!(
                "took {:.3}s, timeout {:.3}s not honoured",
                result.elapsed.as_secs_f64(),
                timeout.as_secs_f64()
            ));
        } else if !expected.contains(&result.rc) {
            let want: Vec<String> = expected.iter().map(ToString::to_string).collect();
            problem = Some(format!("expected {}", want.join(" or ")));
        }
        self.steps.push(Step {
            label: label.to_owned(),
            result: result.clone(),
            expected: expected.to_vec(),
            passed: problem.is_none(),
            problem,
        });
        result
    }
}

/// Runs the suite. The resource must be stopped when called; it is stopped when this returns
/// (as far as the agent can stop it).
pub fn conformance(agent: &dyn ResourceAgent, name: &str, case: &Case) -> Report {
    use OcfRc::{ErrUnimplemented, NotRunning, Success};
    let t = case.timeout;
    let good = &case.params;
    let mut r = Runner {
        agent,
        case,
        steps: Vec::new(),
    };

    let md = r.step("meta-data", Action::MetaData, good, 0, t, &[Success]);
    let metadata = Metadata::from_xml(&md.output);
    if let Err(e) = &metadata {
        r.steps.push(Step {
            label: "meta-data parses".into(),
            result: md.clone(),
            expected: vec![Success],
            passed: false,
            problem: Some(e.to_string()),
        });
    }
    let metadata = metadata.ok();
    if let Some(m) = &metadata {
        let missing: Vec<&str> = ["start", "stop", "monitor"]
            .into_iter()
            .filter(|a| m.action(a).is_none())
            .collect();
        if !missing.is_empty() {
            r.steps.push(Step {
                label: "meta-data advertises start, stop, monitor".into(),
                result: md.clone(),
                expected: vec![Success],
                passed: false,
                problem: Some(format!("missing {}", missing.join(", "))),
            });
        }
    }

    r.step(
        "validate-all with good parameters",
        Action::Validate,
        good,
        0,
        t,
        &[Success],
    );
    r.step(
        "probe while stopped",
        Action::Monitor,
        good,
        0,
        t,
        &[NotRunning],
    );
    r.step("stop while stopped", Action::Stop, good, 0, t, &[Success]);
    r.step("start", Action::Start, good, 0, t, &[Success]);
    r.step("start while running", Action::Start, good, 0, t, &[Success]);
    r.step(
        "monitor after start",
        Action::Monitor,
        good,
        0,
        t,
        &[Success],
    );
    for d in &case.depths {
        r.step(
            &format!("monitor depth {d} after start"),
            Action::Monitor,
            good,
            *d,
            t,
            &[Success],
        );
    }
    r.step("stop", Action::Stop, good, 0, t, &[Success]);
    r.step(
        "monitor after stop",
        Action::Monitor,
        good,
        0,
        t,
        &[NotRunning],
    );
    r.step("stop again", Action::Stop, good, 0, t, &[Success]);

    if metadata
        .as_ref()
        .is_some_and(|m| m.action("promote").is_none())
    {
        r.step(
            "promote on a non-promotable agent",
            Action::Promote,
            good,
            0,
            t,
            &[ErrUnimplemented],
        );
    }

    let mut bad = case.bad.clone();
    if let Some(m) = &metadata {
        for p in m.params.iter().filter(|p| p.required) {
            let mut params = good.clone();
            params.remove(&p.name);
            bad.push(BadParams {
                label: format!("missing required `{}`", p.name),
                params,
                expect: case.missing_required.clone(),
            });
        }
    }
    for b in &bad {
        r.step(
            &format!("validate-all: {}", b.label),
            Action::Validate,
            &b.params,
            0,
            t,
            &b.expect,
        );
        r.step(
            &format!("start: {}", b.label),
            Action::Start,
            &b.params,
            0,
            t,
            &b.expect,
        );
        r.step(
            &format!("nothing runs after start: {}", b.label),
            Action::Monitor,
            good,
            0,
            t,
            &[NotRunning],
        );
        // A start that did something anyway must not leave it behind.
        execute(
            agent,
            &Request::new(Action::Stop, &case.instance, good.clone()).timeout(t),
        );
    }

    if let Some(short) = case.short_timeout {
        let res = r.step(
            &format!(
                "start with a {}ms timeout returns in time",
                short.as_millis()
            ),
            Action::Start,
            good,
            0,
            short,
            &[Success, OcfRc::ErrGeneric],
        );
        if res.rc == OcfRc::ErrGeneric
            && res.status != ExecStatus::TimedOut
            && let Some(s) = r.steps.last_mut()
        {
            s.passed = false;
            s.problem = Some("failed without timing out".into());
        }
        r.step(
            "stop after a timed-out start",
            Action::Stop,
            good,
            0,
            t,
            &[Success],
        );
        r.step(
            "monitor after stop (timed-out start)",
            Action::Monitor,
            good,
            0,
            t,
            &[NotRunning],
        );
    }

    Report {
        agent: name.to_owned(),
        steps: r.steps,
    }
}
