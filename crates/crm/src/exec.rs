//! A node's executor bookkeeping, sans-IO: which operations to run for the DC's orders, which
//! results to record in the CIB, the history the node stands behind, and the per-view history
//! report that lets the DC act.
//!
//! The driver runs [`ExecAction::Run`] with the agent (on a thread, bounded by the timeout),
//! repeats a recurring monitor every interval until [`ExecAction::Cancel`], and feeds each
//! result to [`ExecState::finished`]; the [`CibChange`] it returns is written to the CIB.
//! Rules:
//! - stop, promote, demote and migrations cancel the resource's recurring monitors first;
//!   a recurring monitor ordered again replaces the running one.
//! - A recurring monitor is recorded when its result changes (the first result included).
//! - The history keeps the last result of each slot (`rsc_last_0`, `rsc_monitor_<ms>`,
//!   `rsc_last_failure_0`); a successful stop forgets the resource's recurring monitors.
//! - After each view change (or on regaining quorum) with a synchronized CIB, the history
//!   replaces the node's history in the CIB ([`CibChange::ReplaceHistory`]); once that is
//!   acknowledged the node announces `Reported` for the view. A record that could not be
//!   written makes a new report due.

use std::collections::BTreeMap;

use wire::{NodeId, RingId};

use crate::dc::ExecRequest;
use crate::replica::{CibChange, OpRecord};

/// What the driver must do for an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecAction {
    /// Run the operation (a recurring monitor: now, then every interval) under `generation`.
    Run {
        /// The order.
        req: Box<ExecRequest>,
        /// Identifies a recurring monitor's runs (0: a one-shot operation).
        generation: u64,
    },
    /// Stop repeating a recurring monitor.
    Cancel {
        /// Its generation.
        generation: u64,
    },
}

/// How one run of an operation ended, as the driver saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    /// The agent's exit code.
    pub rc: i32,
    /// 0 done, 2 timed out, 4 error (Pacemaker's op-status).
    pub op_status: i32,
    /// The agent's reason.
    pub reason: Option<String>,
    /// How long it ran.
    pub exec_ms: u64,
    /// The agent's promotion score for this node: `Some(Some(s))` sets `master-<rsc>`,
    /// `Some(None)` removes it, `None` leaves it.
    pub promotion: Option<Option<i64>>,
}

#[derive(Clone, Copy, Debug)]
struct Monitor {
    generation: u64,
    /// The last result recorded: (rc, op-status).
    recorded: Option<(i32, i32)>,
}

/// One node's executor bookkeeping.
#[derive(Debug)]
pub struct ExecState {
    me: NodeId,
    name: String,
    history: BTreeMap<String, OpRecord>,
    call_id: i64,
    next_generation: u64,
    monitors: BTreeMap<(String, u64), Monitor>,
    reported: Option<RingId>,
    reporting: Option<(u64, RingId)>,
    records: Vec<u64>,
    /// The last start (or promote) order of each resource running here, with its call id:
    /// what a local stop needs (agent and parameters).
    active: BTreeMap<String, (i64, ExecRequest)>,
    /// One-shot operations running, by (resource, operation): reported as pending with the
    /// history, so that a DC elected meanwhile sees a start in progress as a start.
    in_flight: BTreeMap<String, ExecRequest>,
    /// One-shot operations waiting for the one running on the same resource (an executor runs
    /// one operation per resource at a time).
    queued: BTreeMap<String, std::collections::VecDeque<ExecRequest>>,
    /// Runs released by a finished operation, for [`ExecState::next_runs`].
    ready: Vec<ExecAction>,
    /// Promotion scores last recorded, by resource (without the clone instance number).
    promotion: BTreeMap<String, Option<i64>>,
    /// Local stops still to run, in order (the partition lost quorum).
    local_stops: Vec<ExecRequest>,
    /// The local stop running.
    local_running: Option<String>,
}

impl ExecState {
    /// The executor of node `me` called `name`, knowing nothing yet (a fresh start).
    pub fn new(me: NodeId, name: &str) -> ExecState {
        ExecState {
            me,
            name: name.to_string(),
            history: BTreeMap::new(),
            call_id: 0,
            next_generation: 1,
            monitors: BTreeMap::new(),
            reported: None,
            reporting: None,
            records: Vec::new(),
            active: BTreeMap::new(),
            promotion: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            queued: BTreeMap::new(),
            ready: Vec::new(),
            local_stops: Vec::new(),
            local_running: None,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Resources this node runs, as far as its own results say.
    pub fn running(&self) -> Vec<String> {
        self.active.keys().cloned().collect()
    }

    /// The partition lost quorum and `no-quorum-policy` says stop: stops everything this node
    /// runs, one resource at a time, the most recently started first (the reverse of the start
    /// order keeps every ordering and colocation dependency), without the DC (no CIB change
    /// is possible without quorum; the results are reported with the history once quorate).
    pub fn stop_all(&mut self) -> Vec<ExecAction> {
        let mut out = Vec::new();
        let mut order: Vec<&(i64, ExecRequest)> = self.active.values().collect();
        order.sort_by_key(|(call, _)| std::cmp::Reverse(*call));
        self.local_stops = order
            .into_iter()
            .map(|(_, start)| ExecRequest {
                key: format!("0:0:0:no-quorum-{}", self.me.0),
                operation: "stop".into(),
                interval_ms: 0,
                target_rc: 0,
                ..start.clone()
            })
            .collect();
        self.local_running = None;
        out.extend(self.next_runs());
        out
    }

    /// Runs that may start now: operations that waited for their resource, and the next local
    /// stop once the previous one finished. Call after every [`ExecState::finished`].
    pub fn next_runs(&mut self) -> Vec<ExecAction> {
        if self.local_running.is_none() && !self.local_stops.is_empty() {
            let req = self.local_stops.remove(0);
            self.local_running = Some(req.rsc.clone());
            // Its recurring monitors end with it (not before: if quorum comes back first, the
            // resources not yet stopped keep being watched).
            let keys: Vec<(String, u64)> = self.monitors.keys().filter(|(r, _)| *r == req.rsc).cloned().collect();
            for k in keys {
                if let Some(m) = self.monitors.remove(&k) {
                    self.ready.push(ExecAction::Cancel { generation: m.generation });
                }
            }
            if let Some(run) = self.submit(req) {
                self.ready.push(run);
            }
        }
        std::mem::take(&mut self.ready)
    }

    /// A one-shot operation: runs now, or after the one running on the same resource.
    fn submit(&mut self, req: ExecRequest) -> Option<ExecAction> {
        if self.in_flight.contains_key(&req.rsc) {
            self.queued.entry(req.rsc.clone()).or_default().push_back(req);
            return None;
        }
        self.in_flight.insert(req.rsc.clone(), req.clone());
        Some(ExecAction::Run { req: Box::new(req), generation: 0 })
    }

    /// Nothing runs here and nothing is being stopped or recorded: a node shutting down may
    /// leave.
    pub fn idle(&self) -> bool {
        self.active.is_empty()
            && self.local_running.is_none()
            && self.local_stops.is_empty()
            && self.records.is_empty()
            && self.in_flight.is_empty()
    }

    /// Quorum is back: local stops not yet started are dropped (the DC decides again).
    pub fn quorum_regained(&mut self) {
        self.local_stops.clear();
    }

    /// Recurring monitors running.
    pub fn monitors(&self) -> usize {
        self.monitors.len()
    }

    /// A delivered order: what to run and cancel (nothing when it is for another node).
    pub fn order(&mut self, req: ExecRequest) -> Vec<ExecAction> {
        let mut out = Vec::new();
        if req.node_id != self.me.0.to_string() {
            return out;
        }
        if matches!(req.operation.as_str(), "stop" | "promote" | "demote" | "migrate_to" | "migrate_from") {
            let keys: Vec<(String, u64)> = self.monitors.keys().filter(|(r, _)| *r == req.rsc).cloned().collect();
            for k in keys {
                if let Some(m) = self.monitors.remove(&k) {
                    out.push(ExecAction::Cancel { generation: m.generation });
                }
            }
        }
        let mut generation = 0;
        if req.operation == "monitor" && req.interval_ms > 0 {
            generation = self.next_generation;
            self.next_generation += 1;
            let m = Monitor { generation, recorded: None };
            if let Some(old) = self.monitors.insert((req.rsc.clone(), req.interval_ms), m) {
                out.push(ExecAction::Cancel { generation: old.generation });
            }
        }
        if generation == 0 {
            out.extend(self.submit(req));
        } else {
            out.push(ExecAction::Run { req: Box::new(req), generation });
        }
        out
    }

    /// The record of an operation that begins now (`op-status` -1, pending), to write before
    /// its result: whoever schedules while it runs (another DC, or this one after a view
    /// change dropped its transition) then sees the resource as possibly active here instead
    /// of starting it elsewhere, and waits for it. Recurring monitors are not recorded as
    /// pending (they run until cancelled); nothing for another node's order.
    pub fn pending(&mut self, req: &ExecRequest, unix_now: i64) -> Option<CibChange> {
        if req.node_id != self.me.0.to_string() || req.interval_ms > 0 {
            return None;
        }
        self.call_id += 1;
        // Pacemaker's "unknown" result of an operation in progress.
        let pending = RunResult { rc: 193, op_status: -1, reason: None, exec_ms: 0, promotion: None };
        let record = self.op_record(req, &pending, self.call_id, unix_now);
        self.history.insert(format!("{}_last_0", req.rsc), record.clone());
        Some(CibChange::RecordOp(Box::new(record)))
    }

    /// A finished run: the change to write, if any (recurring monitors only when their result
    /// changed; nothing for a cancelled one). Record the write's id with
    /// [`ExecState::recording`].
    pub fn finished(&mut self, req: &ExecRequest, r: &RunResult, generation: u64, unix_now: i64) -> Vec<CibChange> {
        let mut out = Vec::new();
        if generation == 0 && self.in_flight.get(&req.rsc).is_some_and(|r| r.operation == req.operation) {
            self.in_flight.remove(&req.rsc);
            if let Some(next) = self.queued.get_mut(&req.rsc).and_then(|q| q.pop_front()) {
                self.in_flight.insert(next.rsc.clone(), next.clone());
                self.ready.push(ExecAction::Run { req: Box::new(next), generation: 0 });
            }
            self.queued.retain(|_, q| !q.is_empty());
        }
        if let Some(score) = r.promotion {
            // Scores belong to the resource, not to a clone instance (crm_master's rule).
            let base =
                req.rsc.rsplit_once(':').filter(|(_, n)| n.parse::<u32>().is_ok()).map_or(req.rsc.as_str(), |(b, _)| b);
            if self.promotion.get(base) != Some(&score) {
                self.promotion.insert(base.to_string(), score);
                out.push(CibChange::SetNodeAttribute {
                    node_id: req.node_id.clone(),
                    node_name: self.name.clone(),
                    name: format!("master-{base}"),
                    value: score.map(|s| s.to_string()),
                });
            }
        }
        out.extend(self.record(req, r, generation, unix_now));
        out
    }

    fn record(&mut self, req: &ExecRequest, r: &RunResult, generation: u64, unix_now: i64) -> Option<CibChange> {
        let ok = r.op_status == 0 && r.rc == req.target_rc;
        match req.operation.as_str() {
            "start" | "promote" | "demote" | "migrate_from" if ok => {
                self.active.insert(req.rsc.clone(), (self.call_id + 1, req.clone()));
            }
            "stop" if ok => {
                self.active.remove(&req.rsc);
            }
            "monitor" if req.interval_ms == 0 && r.op_status == 0 && r.rc == 7 => {
                self.active.remove(&req.rsc);
            }
            "monitor" if req.interval_ms == 0 && r.op_status == 0 && matches!(r.rc, 0 | 8) => {
                self.active.insert(req.rsc.clone(), (self.call_id + 1, req.clone()));
            }
            _ => {}
        }
        if self.local_running.as_deref() == Some(req.rsc.as_str()) && req.operation == "stop" && generation == 0 {
            self.local_running = None;
        }
        if generation != 0 {
            let m =
                self.monitors.get_mut(&(req.rsc.clone(), req.interval_ms)).filter(|m| m.generation == generation)?;
            if m.recorded == Some((r.rc, r.op_status)) {
                return None;
            }
            m.recorded = Some((r.rc, r.op_status));
        }
        self.call_id += 1;
        let record = self.op_record(req, r, self.call_id, unix_now);
        let probe_ok = req.operation == "monitor" && req.interval_ms == 0 && matches!(r.rc, 0 | 7 | 8);
        self.remember(&record, r.op_status == 0 && (r.rc == req.target_rc || probe_ok));
        Some(CibChange::RecordOp(Box::new(record)))
    }

    /// Forgets `rsc` (clone instances included) when `node` is this one or unset: the CIB change
    /// that removes it from this node's history and fail counts.
    pub fn cleanup(&mut self, rsc: &str, node: Option<&str>) -> Option<CibChange> {
        if node.is_some_and(|n| n != self.name) {
            return None;
        }
        self.history.retain(|_, r| !crate::replica::same_resource(&r.rsc, rsc));
        Some(CibChange::Cleanup { node_id: self.me.0.to_string(), rsc: rsc.to_string() })
    }

    /// The record of one result of `req` on this node.
    fn op_record(&self, req: &ExecRequest, r: &RunResult, call_id: i64, last_rc_change: i64) -> OpRecord {
        OpRecord {
            node_id: req.node_id.clone(),
            node_name: self.name.clone(),
            rsc: req.rsc.clone(),
            class: req.class.clone(),
            provider: req.provider.clone(),
            agent: req.agent.clone(),
            operation: req.operation.clone(),
            interval_ms: req.interval_ms,
            rc: r.rc,
            op_status: r.op_status,
            call_id,
            transition_key: Some(req.key.clone()),
            last_rc_change,
            exec_ms: r.exec_ms,
            exit_reason: r.reason.clone(),
            op_digest: req.op_digest.clone(),
        }
    }

    /// The record written by [`ExecState::finished`] went out as CIB write `id`.
    pub fn recording(&mut self, id: u64) {
        self.records.push(id);
    }

    fn remember(&mut self, r: &OpRecord, ok: bool) {
        let slot = if r.interval_ms > 0 {
            format!("{}_{}_{}", r.rsc, r.operation, r.interval_ms)
        } else {
            format!("{}_last_0", r.rsc)
        };
        if r.operation == "stop" && ok {
            let failure = format!("{}_last_failure_0", r.rsc);
            self.history.retain(|k, v| *k == failure || !(v.rsc == r.rsc && v.interval_ms > 0));
        }
        if !ok {
            self.history.insert(format!("{}_last_failure_0", r.rsc), r.clone());
        }
        self.history.insert(slot, r.clone());
    }

    /// The history write due now, if any: after a view change or once quorate again, with a
    /// synchronized CIB. Record the write's id with [`ExecState::reporting`].
    /// `shutdown`: this node is shutting down since then (recorded with the history).
    pub fn report_due(
        &self,
        ring: Option<RingId>,
        synced: bool,
        quorate: bool,
        shutdown: Option<i64>,
    ) -> Option<(RingId, CibChange)> {
        let ring = ring?;
        if !synced || !quorate || self.reported == Some(ring) || self.reporting.is_some_and(|(_, r)| r == ring) {
            return None;
        }
        let mut ops: Vec<OpRecord> = self.history.values().cloned().collect();
        ops.sort_by_key(|o| o.call_id);
        ops.dedup_by_key(|o| o.call_id);
        // Operations still running come last, as pending (Pacemaker's op-status -1).
        let pending = RunResult { rc: 193, op_status: -1, reason: None, exec_ms: 0, promotion: None };
        ops.extend(self.in_flight.values().map(|req| self.op_record(req, &pending, -1, 0)));
        let promotion =
            self.promotion.iter().filter_map(|(r, s)| Some((format!("master-{r}"), s.as_ref()?.to_string()))).collect();
        Some((
            ring,
            CibChange::ReplaceHistory {
                node_id: self.me.0.to_string(),
                node_name: self.name.clone(),
                ops,
                shutdown,
                promotion,
            },
        ))
    }

    /// The history write for `ring` went out as CIB write `id`.
    pub fn reporting(&mut self, id: u64, ring: RingId) {
        self.reporting = Some((id, ring));
    }

    /// A CIB write finished. Returns the view to announce `Reported` for, when it was the
    /// history write and it succeeded.
    pub fn written(&mut self, id: u64, ok: bool) -> Option<RingId> {
        if let Some((rid, ring)) = self.reporting
            && rid == id
        {
            self.reporting = None;
            if ok {
                self.reported = Some(ring);
                return Some(ring);
            }
            return None;
        }
        if let Some(i) = self.records.iter().position(|r| *r == id) {
            self.records.swap_remove(i);
            if !ok {
                // The next report carries it: the history has every result.
                self.reported = None;
            }
        }
        None
    }
}

/// Who has reported their history in the current view; the DC acts only once every member has.
#[derive(Clone, Debug, Default)]
pub struct Reports {
    ring: Option<RingId>,
    members: Vec<NodeId>,
    reported: std::collections::BTreeSet<NodeId>,
}

impl Reports {
    /// A new view: nobody has reported in it yet.
    pub fn view(&mut self, ring: RingId, members: &[NodeId]) {
        self.ring = Some(ring);
        self.members = members.to_vec();
        self.reported.clear();
    }

    /// The current view.
    pub fn ring(&self) -> Option<RingId> {
        self.ring
    }

    /// `from` announced its report for `ring`.
    pub fn reported(&mut self, from: NodeId, ring: RingId) {
        if self.ring == Some(ring) {
            self.reported.insert(from);
        }
    }

    /// The members of the current view.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// Every member of the current view has reported.
    pub fn complete(&self) -> bool {
        self.ring.is_some() && self.members.iter().all(|m| self.reported.contains(m))
    }
}

/// What travels between the DC and the executors, in the agreed order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExecMsg {
    /// The DC orders one operation on one node, in view `ring`. An order delivered in a later
    /// view is stale (ordered delivery may carry a message sent just before a view change into
    /// the next view, while the DC dropped the transition it belongs to): it is not run.
    Run {
        /// The view the DC issued it in.
        ring: RingId,
        /// The order.
        req: Box<ExecRequest>,
    },
    /// The sender's history is in the CIB for this view.
    Reported {
        /// The view.
        ring: RingId,
    },
    /// The DC says whether a transition is running (sent when that changes, and once it acts
    /// in a new view): `crmctl ... --wait` knows the cluster settled without guessing.
    DcState {
        /// A transition is running.
        busy: bool,
    },
    /// The DC cannot fence itself: it asks member `by` to fence it.
    FenceBy {
        /// The order (its target is the DC).
        order: Box<crate::dc::FenceOrder>,
        /// Who carries it out.
        by: NodeId,
    },
    /// A delegated fence ended (after the fence was recorded, when it succeeded).
    FenceDone {
        /// The order.
        order: Box<crate::dc::FenceOrder>,
        /// `None`: fenced; else why not.
        error: Option<String>,
    },
    /// Forget a resource's history and fail counts (on one node, by name, or on all).
    Cleanup {
        /// The resource (clone instances included).
        rsc: String,
        /// The node's name; `None`: every node.
        node: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: &str, interval_ms: u64) -> ExecRequest {
        ExecRequest {
            key: "1:1:0:x".into(),
            node_id: "1".into(),
            node_name: "n1".into(),
            rsc: "d".into(),
            class: "ocf".into(),
            provider: Some("heartbeat".into()),
            agent: "Dummy".into(),
            operation: op.into(),
            interval_ms,
            timeout_ms: 20_000,
            params: BTreeMap::new(),
            meta: BTreeMap::new(),
            target_rc: 0,
            op_digest: None,
        }
    }

    fn result(rc: i32) -> RunResult {
        RunResult { rc, op_status: 0, reason: None, exec_ms: 1, promotion: None }
    }

    #[test]
    fn a_recurring_monitor_is_recorded_only_when_its_result_changes() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let m = req("monitor", 1000);
        let [ExecAction::Run { generation, .. }] = ex.order(m.clone())[..] else { panic!("one run") };
        assert_eq!(ex.finished(&m, &result(0), generation, 1).len(), 1, "the first result is recorded");
        assert!(ex.finished(&m, &result(0), generation, 2).is_empty(), "the same result is not");
        assert_eq!(ex.finished(&m, &result(7), generation, 3).len(), 1, "a change is");
    }

    #[test]
    fn stop_cancels_the_monitors_and_late_results_of_a_cancelled_monitor_are_dropped() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let m = req("monitor", 1000);
        let [ExecAction::Run { generation, .. }] = ex.order(m.clone())[..] else { panic!("one run") };
        let acts = ex.order(req("stop", 0));
        assert_eq!(acts[0], ExecAction::Cancel { generation });
        assert_eq!(ex.monitors(), 0);
        assert!(ex.finished(&m, &result(7), generation, 3).is_empty(), "a cancelled monitor records nothing");
    }

    #[test]
    fn orders_for_other_nodes_are_ignored() {
        let mut ex = ExecState::new(NodeId(2), "n2");
        assert!(ex.order(req("start", 0)).is_empty());
    }

    #[test]
    fn the_history_is_reported_once_per_view_and_again_after_a_lost_record() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let ring = RingId::new(NodeId(1), 4);
        assert!(ex.report_due(Some(ring), false, true, None).is_none(), "not before the CIB is synchronized");
        assert!(ex.report_due(Some(ring), true, false, None).is_none(), "not without quorum");
        let start = req("start", 0);
        let change = ex.finished(&start, &result(0), 0, 1);
        assert!(matches!(change[..], [CibChange::RecordOp(_)]));
        ex.recording(7);
        let (r, CibChange::ReplaceHistory { ops, .. }) = ex.report_due(Some(ring), true, true, None).expect("due")
        else {
            panic!("a history")
        };
        assert_eq!(ops.len(), 1);
        ex.reporting(8, r);
        assert!(ex.report_due(Some(ring), true, true, None).is_none(), "one report in flight");
        assert_eq!(ex.written(8, true), Some(ring));
        assert!(ex.report_due(Some(ring), true, true, None).is_none(), "reported in this view");
        assert_eq!(ex.written(7, false), None);
        assert!(ex.report_due(Some(ring), true, true, None).is_some(), "a lost record makes a report due");
    }

    #[test]
    fn a_failure_stays_in_the_history_after_the_recovery() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let m = req("monitor", 1000);
        let [ExecAction::Run { generation, .. }] = ex.order(m.clone())[..] else { panic!("one run") };
        let _ = ex.finished(&m, &result(0), generation, 1);
        let _ = ex.finished(&m, &result(7), generation, 2);
        let _ = ex.order(req("stop", 0));
        let _ = ex.finished(&req("stop", 0), &result(0), 0, 3);
        let ring = RingId::new(NodeId(1), 4);
        let (_, CibChange::ReplaceHistory { ops, .. }) = ex.report_due(Some(ring), true, true, None).expect("due")
        else {
            panic!("a history")
        };
        let ops: Vec<(&str, u64, i32)> = ops.iter().map(|o| (o.operation.as_str(), o.interval_ms, o.rc)).collect();
        assert_eq!(ops, [("monitor", 1000, 7), ("stop", 0, 0)], "the failure and the stop; no monitor left");
    }

    #[test]
    fn without_quorum_everything_stops_one_at_a_time_in_reverse_start_order() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        for rsc in ["ip", "fs", "www"] {
            let mut r = req("start", 0);
            r.rsc = rsc.into();
            r.params.insert("p".into(), rsc.into());
            let _ = ex.order(r.clone());
            let _ = ex.finished(&r, &result(0), 0, 1);
        }
        let m = req("monitor", 1000);
        let _ = ex.order(m);
        let acts = ex.stop_all();
        assert!(
            matches!(&acts[..], [ExecAction::Run { req, .. }] if req.rsc == "www"),
            "the last started stops first, alone: {acts:?}"
        );
        let mut stopped = Vec::new();
        let mut next = acts.into_iter().find_map(|a| match a {
            ExecAction::Run { req, .. } => Some(req),
            ExecAction::Cancel { .. } => None,
        });
        while let Some(r) = next {
            assert_eq!((r.operation.as_str(), r.params.get("p").map(String::as_str)), ("stop", Some(r.rsc.as_str())));
            stopped.push(r.rsc.clone());
            assert!(ex.next_runs().is_empty(), "one at a time");
            let _ = ex.finished(&r, &result(0), 0, 2);
            next = ex.next_runs().into_iter().next().map(|a| match a {
                ExecAction::Run { req, .. } => req,
                ExecAction::Cancel { .. } => panic!("a run"),
            });
        }
        assert_eq!(stopped, ["www", "fs", "ip"]);
        assert!(ex.running().is_empty());
    }

    #[test]
    fn promotion_scores_are_recorded_per_resource_when_they_change() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let mut m = req("monitor", 0);
        m.rsc = "vol:1".into();
        let scored = |p| RunResult { promotion: Some(p), ..result(0) };
        let fx = ex.finished(&m, &scored(Some(10_000)), 0, 1);
        assert!(
            matches!(&fx[0], CibChange::SetNodeAttribute { name, value: Some(v), .. } if name == "master-vol" && v == "10000"),
            "{fx:?}"
        );
        assert_eq!(ex.finished(&m, &scored(Some(10_000)), 0, 2).len(), 1, "the same score is not written again");
        let fx = ex.finished(&m, &scored(None), 0, 3);
        assert!(matches!(&fx[0], CibChange::SetNodeAttribute { value: None, .. }), "{fx:?}");
    }

    #[test]
    fn an_operation_still_running_is_reported_as_pending() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let start = req("start", 0);
        let _ = ex.order(start.clone());
        let ring = RingId::new(NodeId(1), 4);
        let (_, CibChange::ReplaceHistory { ops, .. }) = ex.report_due(Some(ring), true, true, None).expect("due")
        else {
            panic!("a history")
        };
        assert_eq!(ops.len(), 1);
        assert_eq!((ops[0].operation.as_str(), ops[0].op_status, ops[0].call_id), ("start", -1, -1));
        let _ = ex.finished(&start, &result(0), 0, 1);
        let (_, CibChange::ReplaceHistory { ops, .. }) = ex.report_due(Some(ring), true, true, None).expect("due")
        else {
            panic!("a history")
        };
        assert_eq!((ops.len(), ops[0].op_status), (1, 0), "done: no longer pending");
    }

    #[test]
    fn operations_on_one_resource_run_one_at_a_time_in_order() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let start = req("start", 0);
        let stop = req("stop", 0);
        assert_eq!(ex.order(start.clone()).len(), 1, "the start runs");
        assert!(ex.order(stop.clone()).is_empty(), "the stop waits for the start");
        assert!(ex.next_runs().is_empty());
        let _ = ex.finished(&start, &result(0), 0, 1);
        let runs = ex.next_runs();
        assert!(matches!(&runs[..], [ExecAction::Run { req, .. }] if req.operation == "stop"), "{runs:?}");
        let mut other = req("start", 0);
        other.rsc = "other".into();
        assert_eq!(ex.order(other).len(), 1, "another resource does not wait");
    }
}
