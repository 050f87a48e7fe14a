//! The DC's controller loop, sans-IO: schedules on the replicated CIB, runs the transition with
//! [`GraphRun`], turns its dispatches into complete operation orders for the nodes' executors
//! and the fencer, and matches the results executors record in the status (by transition key)
//! back to the actions in flight.
//!
//! The driver calls [`Dc::step`] after every event with the current copy of the CIB and whether
//! this node may act (it is the DC, the copy is synchronized, the partition is quorate and every
//! member has reported its executor's history in this view). Rules:
//! - A transition is scheduled when the CIB differs from the one the last transition settled
//!   on (any change, including the results it recorded), or at the recheck time.
//! - While a transition runs, only its own results are awaited; a configuration change, a
//!   membership change ([`Dc::abort`]) or an unexpected result stops new dispatches, and the
//!   run ends once nothing is in flight; then the next transition starts from the status.
//! - Losing the right to act drops the run at once: whoever acts next schedules from the
//!   status the executors record, once no operation recorded there as pending still runs
//!   on a member (executors record each operation as pending when its order arrives).
//! - Results are read from the status only: an executor's record carries the transition key
//!   `action:transition:target_rc:dc`, unique to this DC's incarnation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wire::{Duration, Instant};

use crate::cib::{Cib, CibVersion, NvSet, OpConfig, Resource, ResourceKind, Role};
use crate::controller::{ActionState, Dispatch, GraphRun, Outcome, RunEnd};
use crate::scheduler::{ActionKind, Transition};

/// The timeout of an operation nobody configured (Pacemaker's default).
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the DC waits past an operation's timeout for its record before counting it as
/// timed out (the executor's own timeout fires first).
const RESULT_MARGIN: Duration = Duration::from_secs(10);
/// The default `stonith-timeout`.
const DEFAULT_FENCE_TIMEOUT: Duration = Duration::from_secs(60);

/// One operation for one node's executor: everything it needs to run the agent and record the
/// result where the policy engine reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// `action:transition:target_rc:dc`: recorded with the result.
    pub key: String,
    /// The node's id (`node_state id`).
    pub node_id: String,
    /// The node's name.
    pub node_name: String,
    /// The resource as recorded (a clone instance is `rsc:N`).
    pub rsc: String,
    /// Agent class (`ocf`, `native`, `systemd`, ...).
    pub class: String,
    /// OCF provider.
    pub provider: Option<String>,
    /// Agent type.
    pub agent: String,
    /// start, stop, monitor, promote, demote, notify.
    pub operation: String,
    /// Recurring interval (0: once).
    pub interval_ms: u64,
    /// The operation's timeout.
    pub timeout_ms: u64,
    /// Instance parameters.
    pub params: BTreeMap<String, String>,
    /// Meta attributes for the agent (`OCF_RESKEY_CRM_meta_*`).
    pub meta: BTreeMap<String, String>,
    /// The result that counts as success.
    pub target_rc: i32,
    /// The digest of the parameters (recorded with the result, so a later change of the
    /// definition is seen).
    pub op_digest: Option<String>,
}

impl ExecRequest {
    /// The agent's full name as the registry resolves it (`class:provider:type`).
    pub fn agent_name(&self) -> String {
        match &self.provider {
            Some(p) => format!("{}:{}:{}", self.class, p, self.agent),
            None => format!("{}:{}", self.class, self.agent),
        }
    }
}

/// An order to fence a node, for the fencer on the DC (or, when the DC itself is the target,
/// on the member it delegates to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceOrder {
    /// The action's index in the transition (for [`Dc::fence_result`]).
    pub action: usize,
    /// The transition it belongs to.
    pub transition: u64,
    /// The node's name.
    pub target: String,
    /// The node's id, when configured.
    pub target_id: Option<String>,
    /// `reboot` or `off` (`fencing-action`, formerly `stonith-action`).
    pub power: String,
    /// The whole request's time limit (`fencing-timeout`, formerly `stonith-timeout`).
    pub timeout: Duration,
}

/// What the DC asks the driver to do or tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DcEffect {
    /// Deliver to the node's executor.
    Execute(ExecRequest),
    /// Fence a node through the fencer; report with [`Dc::fence_result`].
    Fence(FenceOrder),
    /// A transition began.
    Started {
        /// Its number.
        number: u64,
        /// Pacemaker-style summary lines.
        summary: Vec<String>,
        /// Actions that will execute.
        actions: usize,
    },
    /// A transition ended.
    Ended {
        /// Its number.
        number: u64,
        /// How.
        end: RunEnd,
    },
}

/// What an action in flight waits for in the status.
#[derive(Clone, Debug)]
struct Awaited {
    node_id: String,
    rsc: String,
    key: String,
    target_rc: i32,
}

struct Run {
    number: u64,
    graph: GraphRun,
    transition: Transition,
    awaited: BTreeMap<usize, Awaited>,
    config: (u64, u64),
    /// Dispatches released by a fence result, issued at the next step.
    deferred: Vec<Dispatch>,
}

/// The DC's controller state.
pub struct Dc {
    uuid: String,
    number: u64,
    run: Option<Run>,
    /// The CIB version the last transition found nothing to do on.
    settled_on: Option<CibVersion>,
    /// When to schedule again even without a change (`cluster-recheck-interval`, failure
    /// timeouts).
    recheck_at: Option<Instant>,
    /// Failed fencing attempts in a row, and no transition before this time (the wait doubles
    /// with each failure, from 1 s up to a minute; a membership change resets it).
    fence_failures: u32,
    hold_until: Option<Instant>,
}

impl Dc {
    /// A controller whose transition keys end with `uuid` (unique to this incarnation).
    pub fn new(uuid: &str) -> Dc {
        Dc {
            uuid: uuid.to_string(),
            number: 0,
            run: None,
            settled_on: None,
            recheck_at: None,
            fence_failures: 0,
            hold_until: None,
        }
    }

    /// A transition is running.
    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    /// The number of the last transition started.
    pub fn transitions(&self) -> u64 {
        self.number
    }

    /// When [`Dc::step`] should run again without any event.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let run = self.run.as_ref().and_then(|r| r.graph.next_wakeup());
        [run, self.recheck_at, self.hold_until].into_iter().flatten().min()
    }

    /// Something outside changed (membership): stop dispatching; the run ends once nothing is
    /// in flight, and the next one schedules from the status.
    pub fn abort(&mut self, now: Instant, why: &str, out: &mut Vec<DcEffect>) {
        if let Some(run) = &mut self.run {
            let mut d = Vec::new();
            run.graph.abort(now, why, &mut d);
        }
        self.settled_on = None;
        self.fence_failures = 0;
        self.hold_until = None;
        self.finish(out);
    }

    /// The fencer's answer to a [`DcEffect::Fence`] (after the fence is recorded in the CIB).
    pub fn fence_result(&mut self, now: Instant, transition: u64, action: usize, outcome: Outcome) {
        if outcome == Outcome::Ok {
            self.fence_failures = 0;
        } else {
            self.fence_failures += 1;
            let wait = Duration::from_secs(1 << self.fence_failures.min(6).saturating_sub(1));
            self.hold_until = Some(now + wait);
        }
        if let Some(run) = self.run.as_mut().filter(|r| r.number == transition) {
            let mut d = Vec::new();
            run.graph.result(now, action, outcome, &mut d);
            // New dispatches are issued by the next step (which has the document).
            run.deferred.extend(d);
        }
    }

    /// An executor's record as it was applied to the CIB (every record, in the agreed order):
    /// the result of an action in flight, when its transition key is one of them. The status
    /// is read again at every step too; this catches a result that a later operation on the
    /// same resource replaced before the step.
    pub fn recorded(&mut self, now: Instant, r: &crate::replica::OpRecord) {
        let Some(run) = self.run.as_mut() else { return };
        let Some(key) = r.transition_key.as_deref() else { return };
        let Some((&i, a)) = run.awaited.iter().find(|(_, a)| a.key == key && a.node_id == r.node_id) else { return };
        if !matches!(run.graph.states()[i], ActionState::InFlight { .. }) || r.op_status == -1 {
            return;
        }
        let outcome = outcome_of(a, &r.operation, r.rc, r.op_status, r.exit_reason.as_deref());
        let mut d = Vec::new();
        run.graph.result(now, i, outcome, &mut d);
        run.deferred.extend(d);
    }

    /// Runs the loop once. `acting`: this node is the DC of a synchronized, quorate view whose
    /// members all reported their history. `unix_now` is the policy engine's clock.
    pub fn step(
        &mut self,
        now: Instant,
        unix_now: i64,
        doc: &Cib,
        acting: bool,
        quorate: bool,
        out: &mut Vec<DcEffect>,
    ) {
        // A fencing back-off that has run out: schedule again (whatever else changed).
        if self.hold_until.is_some_and(|t| now >= t) {
            self.hold_until = None;
            self.settled_on = None;
        }
        if !acting {
            self.hold_until = None;
            // Someone else (or nobody) acts now; results keep being recorded by the executors.
            self.run = None;
            self.settled_on = None;
            self.recheck_at = None;
            return;
        }
        if let Some(run) = &mut self.run {
            let mut d = std::mem::take(&mut run.deferred);
            if (doc.version.admin_epoch, doc.version.epoch) != run.config {
                run.graph.abort(now, "the configuration changed", &mut d);
            }
            let done: Vec<(usize, Outcome)> = run
                .awaited
                .iter()
                .filter(|(i, _)| matches!(run.graph.states()[**i], ActionState::InFlight { .. }))
                .filter_map(|(&i, a)| recorded_outcome(doc, a).map(|o| (i, o)))
                .collect();
            for (i, outcome) in done {
                run.graph.result(now, i, outcome, &mut d);
            }
            run.graph.wakeup(now, &mut d);
            run.issue(now, doc, &self.uuid, d, out);
            self.finish(out);
        }
        if self.run.is_some() {
            return;
        }
        if self.hold_until.is_some() {
            return;
        }
        let due = self.recheck_at.is_some_and(|t| now >= t);
        if self.settled_on == Some(doc.version) && !due {
            return;
        }
        if in_flight(doc) {
            // An earlier transition's operation still runs (this DC dropped that transition at
            // a view change, or another DC issued it): its result comes as a CIB change. A
            // recheck that fell due meanwhile waits for the next interval (a deadline left in
            // the past would wake the driver over and over).
            if due {
                self.recheck_at = Some(now + recheck_interval(doc));
            }
            return;
        }
        let transition = crate::schedule(doc, Some(quorate), unix_now);
        let timeouts: Vec<Duration> =
            transition.actions.iter().map(|a| action_timeout(doc, &transition, a) + RESULT_MARGIN).collect();
        let executes = transition.executable().filter(|a| !a.pseudo).count();
        self.recheck_at = Some(now + recheck_interval(doc));
        if executes == 0 {
            self.settled_on = Some(doc.version);
            return;
        }
        self.settled_on = None;
        self.number += 1;
        let number = self.number;
        out.push(DcEffect::Started { number, summary: transition.summary.clone(), actions: executes });
        let mut graph = GraphRun::with_timeouts(&transition, timeouts);
        let mut d = Vec::new();
        graph.poll(now, &mut d);
        let mut run = Run {
            number,
            graph,
            transition,
            awaited: BTreeMap::new(),
            config: (doc.version.admin_epoch, doc.version.epoch),
            deferred: Vec::new(),
        };
        run.issue(now, doc, &self.uuid, d, out);
        self.run = Some(run);
        self.finish(out);
    }

    fn finish(&mut self, out: &mut Vec<DcEffect>) {
        if let Some(end) = self.run.as_ref().and_then(|r| r.graph.ended().cloned()) {
            let number = self.run.as_ref().map_or(0, |r| r.number);
            self.run = None;
            out.push(DcEffect::Ended { number, end });
        }
    }
}

impl Run {
    /// Turns dispatches into orders; one that cannot be built fails its action at once (the
    /// run then ends and the next transition starts from the status).
    fn issue(&mut self, now: Instant, doc: &Cib, uuid: &str, mut d: Vec<Dispatch>, out: &mut Vec<DcEffect>) {
        while !d.is_empty() {
            let mut more = Vec::new();
            for x in d {
                match order(doc, &self.transition, self.number, uuid, x) {
                    Ok(o) => {
                        if let DcEffect::Execute(r) = &o {
                            self.awaited.insert(
                                action_of(&r.key),
                                Awaited {
                                    node_id: r.node_id.clone(),
                                    rsc: r.rsc.clone(),
                                    key: r.key.clone(),
                                    target_rc: r.target_rc,
                                },
                            );
                        }
                        out.push(o);
                    }
                    Err((action, reason)) => self.graph.result(now, action, Outcome::Failed { reason }, &mut more),
                }
            }
            d = more;
        }
    }
}

fn action_of(key: &str) -> usize {
    key.split(':').next().and_then(|a| a.parse().ok()).unwrap_or(usize::MAX)
}

/// Whether a one-shot operation (probes included) still runs on a member node (its executor
/// recorded it as pending): a new transition waits for its result, so that operations of two
/// transitions never overlap on one resource (a probe's result landing after a later start
/// began would hide that start). Pending records of nodes out of the membership do not count
/// (such a node is fenced, which clears them).
fn in_flight(doc: &Cib) -> bool {
    doc.status
        .iter()
        .filter(|s| s.in_ccm.as_deref().is_some_and(|v| v != "false" && v != "0"))
        .any(|s| s.resources.iter().any(|r| r.ops.iter().any(|o| o.op_status == -1 && o.interval_ms == 0)))
}

/// What the status says of an awaited action: nothing yet, or its outcome.
fn recorded_outcome(doc: &Cib, a: &Awaited) -> Option<Outcome> {
    let state = doc.status.iter().find(|s| s.id == a.node_id)?;
    let rsc = state.resources.iter().find(|r| r.id == a.rsc)?;
    let op = rsc.ops.iter().find(|o| o.extra.iter().any(|(k, v)| k == "transition-key" && *v == a.key))?;
    (op.op_status != -1).then(|| outcome_of(a, &op.operation, op.rc, op.op_status, op.exit_reason.as_deref()))
}

/// Whether a recorded result is the one the action expected.
fn outcome_of(a: &Awaited, operation: &str, rc: i32, op_status: i32, exit_reason: Option<&str>) -> Outcome {
    if op_status == 0 && rc == a.target_rc {
        return Outcome::Ok;
    }
    let mut reason = format!("{} {operation} on {}: rc={rc} (expected {})", a.rsc, a.node_id, a.target_rc);
    if op_status != 0 {
        reason += &format!(", op-status={op_status}");
    }
    if let Some(r) = exit_reason {
        reason += &format!(": {r}");
    }
    Outcome::Failed { reason }
}

/// A node's id by name: from `<nodes>`, else from the status.
fn node_id(doc: &Cib, name: &str) -> Option<String> {
    doc.config
        .nodes
        .iter()
        .find(|n| n.uname == name)
        .map(|n| n.id.clone())
        .or_else(|| doc.status.iter().find(|s| s.uname.as_deref() == Some(name)).map(|s| s.id.clone()))
}

/// Turns a graph dispatch into an order for an executor or the fencer, or says why it cannot.
fn order(doc: &Cib, t: &Transition, number: u64, uuid: &str, d: Dispatch) -> Result<DcEffect, (usize, String)> {
    match d {
        Dispatch::Fence { action, node } => Ok(DcEffect::Fence(FenceOrder {
            action,
            transition: number,
            target_id: node_id(doc, &node),
            target: node,
            power: match property(doc, "fencing-action").as_deref() {
                None => "reboot".into(),
                Some("poweroff") => "off".into(),
                Some(a) => a.into(),
            },
            timeout: property(doc, "fencing-timeout")
                .and_then(|v| crate::cib::xml::parse_duration_s(&v))
                .filter(|s| *s > 0)
                .map_or(DEFAULT_FENCE_TIMEOUT, |s| Duration::from_secs(s as u64)),
        })),
        Dispatch::Execute { action, rsc, node, task, interval_ms } => {
            let fail = |why: String| (action, why);
            let node_id = node_id(doc, &node).ok_or_else(|| fail(format!("node {node} has no id in the CIB")))?;
            let (prim, clone) = find_primitive(&doc.config.resources, &rsc)
                .ok_or_else(|| fail(format!("resource {rsc} is not configured")))?;
            let ResourceKind::Primitive { class, provider, agent } = &prim.kind else {
                return Err(fail(format!("{rsc} is not a primitive")));
            };
            let a = t.actions.get(action).ok_or_else(|| fail(format!("action {action} is not in the transition")))?;
            let target_rc = target_rc(prim, a.kind, interval_ms);
            let mut meta = BTreeMap::new();
            // An anonymous clone's copies are interchangeable: its executor and history know
            // the resource by its base name (the scheduler maps that history to an instance),
            // so one node never holds two histories of it.
            let recorded = match clone {
                Some(c) if !globally_unique(c) => base_name(&rsc).to_string(),
                _ => rsc.clone(),
            };
            if let Some(c) = clone {
                if let Some((_, n)) = rsc.rsplit_once(':') {
                    meta.insert("clone".to_string(), n.to_string());
                }
                for name in ["clone-max", "clone-node-max", "globally-unique", "notify", "promoted-max"] {
                    if let Some(v) = nv(&c.meta, name) {
                        meta.insert(name.replace('-', "_"), v);
                    }
                }
            }
            if a.kind == ActionKind::Notify
                && let Some((when, op)) = a.label.split_once('-')
            {
                meta.insert("notify_type".into(), when.into());
                meta.insert("notify_operation".into(), op.into());
            }
            let timeout = action_timeout(doc, t, a);
            let params = crate::digest::action_parameters(doc, &rsc, Some(&node), task, interval_ms)
                .map(|p| p.into_iter().filter(|(k, _)| !k.starts_with("CRM_meta_")).collect())
                .unwrap_or_else(|| flatten(&prim.params));
            let op_digest = crate::digest::action_digest(doc, &rsc, Some(&node), task, interval_ms);
            Ok(DcEffect::Execute(ExecRequest {
                key: format!("{action}:{number}:{target_rc}:{uuid}"),
                node_id,
                node_name: node,
                rsc: recorded,
                class: class.clone(),
                provider: provider.clone(),
                agent: agent.clone(),
                operation: task.to_string(),
                interval_ms,
                timeout_ms: timeout.as_millis(),
                params,
                meta,
                target_rc,
                op_digest,
            }))
        }
    }
}

/// The result that counts as success: 7 (not running) for a probe, 8 for a monitor of the
/// promoted role, else 0.
fn target_rc(prim: &Resource, kind: ActionKind, interval_ms: u64) -> i32 {
    match kind {
        ActionKind::Monitor if interval_ms == 0 => 7,
        ActionKind::Monitor
            if prim.ops.iter().any(|o| is_op(o, "monitor", interval_ms) && o.role == Some(Role::Promoted)) =>
        {
            8
        }
        _ => 0,
    }
}

fn is_op(o: &OpConfig, name: &str, interval_ms: u64) -> bool {
    o.name == name && o.interval_ms == interval_ms
}

/// An action's timeout: its configured op, else (for a probe) the shortest monitor's, else
/// `op_defaults`' timeout, else 20 s; fencing: `fencing-timeout` (`stonith-timeout`).
fn action_timeout(doc: &Cib, t: &Transition, a: &crate::Action) -> Duration {
    if a.kind == ActionKind::Fence {
        return property(doc, "fencing-timeout")
            .and_then(|v| crate::cib::xml::parse_duration_s(&v))
            .filter(|s| *s > 0)
            .map_or(DEFAULT_FENCE_TIMEOUT, |s| Duration::from_secs(s as u64));
    }
    let Some(prim) = a.rsc.and_then(|r| find_primitive(&doc.config.resources, t.resource_name(r))).map(|(p, _)| p)
    else {
        return DEFAULT_OP_TIMEOUT;
    };
    let task = a.kind.task();
    let configured = prim.ops.iter().find(|o| is_op(o, task, a.interval_ms)).and_then(|o| o.timeout_ms).or_else(|| {
        (a.kind == ActionKind::Monitor && a.interval_ms == 0)
            .then(|| prim.ops.iter().filter(|o| o.name == "monitor").min_by_key(|o| o.interval_ms)?.timeout_ms)
            .flatten()
    });
    configured
        .or_else(|| {
            doc.config
                .op_defaults
                .iter()
                .filter(|s| s.rule.is_none())
                .find_map(|s| s.pairs.iter().find(|p| p.name == "timeout")?.value.as_deref())
                .and_then(crate::cib::xml::parse_config_interval_ms)
        })
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_OP_TIMEOUT, Duration::from_millis)
}

/// `cluster-recheck-interval` (default 15 minutes; 0 disables).
fn recheck_interval(doc: &Cib) -> Duration {
    property(doc, "cluster-recheck-interval").and_then(|v| crate::cib::xml::parse_config_interval_ms(&v)).map_or(
        Duration::from_secs(900),
        |ms| {
            if ms == 0 { Duration::from_secs(86400 * 365) } else { Duration::from_millis(ms) }
        },
    )
}

/// A cluster option by its current name, whichever name (current or legacy) it is set under:
/// the CIB is written with current names, so a copy that went through the replica has
/// `fencing-timeout` where the administrator wrote `stonith-timeout`.
fn property(doc: &Cib, name: &str) -> Option<String> {
    doc.config
        .properties
        .iter()
        .filter(|s| s.rule.is_none())
        .find_map(|s| s.pairs.iter().find(|p| crate::cib::xml_modern(&p.name) == name).and_then(|p| p.value.clone()))
}

fn nv(sets: &[NvSet], name: &str) -> Option<String> {
    sets.iter().filter(|s| s.rule.is_none()).find_map(|s| s.pairs.iter().find(|p| p.name == name)?.value.clone())
}

/// Instance parameters: sets without rules, the first value of a name wins.
fn flatten(sets: &[NvSet]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in sets.iter().filter(|s| s.rule.is_none()) {
        for p in &s.pairs {
            if let Some(v) = &p.value {
                out.entry(p.name.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    out
}

/// `rsc` without a clone instance number (`rsc:N` → `rsc`).
fn base_name(rsc: &str) -> &str {
    match rsc.rsplit_once(':') {
        Some((b, n)) if n.parse::<u32>().is_ok() => b,
        _ => rsc,
    }
}

/// Whether a clone's instances are distinct (`globally-unique`; by default only when more than
/// one may run per node, as the scheduler reads it).
fn globally_unique(clone: &Resource) -> bool {
    match nv(&clone.meta, "globally-unique") {
        Some(v) => crate::scheduler::unpack::truthy(&v),
        None => nv(&clone.meta, "clone-node-max").and_then(|v| v.parse::<u32>().ok()).is_some_and(|n| n > 1),
    }
}

/// The primitive a recorded resource name (`rsc` or clone instance `rsc:N`) stands for, with
/// the clone around it.
pub fn find_primitive<'a>(resources: &'a [Resource], name: &str) -> Option<(&'a Resource, Option<&'a Resource>)> {
    let base = match name.rsplit_once(':') {
        Some((b, n)) if n.parse::<u32>().is_ok() => b,
        _ => name,
    };
    fn walk<'a>(
        rs: &'a [Resource],
        base: &str,
        clone: Option<&'a Resource>,
    ) -> Option<(&'a Resource, Option<&'a Resource>)> {
        for r in rs {
            match &r.kind {
                ResourceKind::Primitive { .. } if r.id == base => return Some((r, clone)),
                ResourceKind::Primitive { .. } => {}
                ResourceKind::Group { members } => {
                    if let Some(f) = walk(members, base, clone) {
                        return Some(f);
                    }
                }
                ResourceKind::Clone { child, .. } => {
                    if let Some(f) = walk(std::slice::from_ref(child.as_ref()), base, Some(r)) {
                        return Some(f);
                    }
                }
            }
        }
        None
    }
    walk(resources, base, None)
}
