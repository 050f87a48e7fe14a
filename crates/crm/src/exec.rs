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
        }
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
        out.push(ExecAction::Run { req: Box::new(req), generation });
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
        let record = OpRecord {
            node_id: req.node_id.clone(),
            node_name: self.name.clone(),
            rsc: req.rsc.clone(),
            class: req.class.clone(),
            provider: req.provider.clone(),
            agent: req.agent.clone(),
            operation: req.operation.clone(),
            interval_ms: req.interval_ms,
            // Pacemaker's "unknown" result of an operation in progress.
            rc: 193,
            op_status: -1,
            call_id: self.call_id,
            transition_key: Some(req.key.clone()),
            last_rc_change: unix_now,
            exec_ms: 0,
            exit_reason: None,
        };
        self.history.insert(format!("{}_last_0", req.rsc), record.clone());
        Some(CibChange::RecordOp(Box::new(record)))
    }

    /// A finished run: the change to write, if any (recurring monitors only when their result
    /// changed; nothing for a cancelled one). Record the write's id with
    /// [`ExecState::recording`].
    pub fn finished(&mut self, req: &ExecRequest, r: &RunResult, generation: u64, unix_now: i64) -> Option<CibChange> {
        if generation != 0 {
            let m =
                self.monitors.get_mut(&(req.rsc.clone(), req.interval_ms)).filter(|m| m.generation == generation)?;
            if m.recorded == Some((r.rc, r.op_status)) {
                return None;
            }
            m.recorded = Some((r.rc, r.op_status));
        }
        self.call_id += 1;
        let record = OpRecord {
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
            call_id: self.call_id,
            transition_key: Some(req.key.clone()),
            last_rc_change: unix_now,
            exec_ms: r.exec_ms,
            exit_reason: r.reason.clone(),
        };
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
    pub fn report_due(&self, ring: Option<RingId>, synced: bool, quorate: bool) -> Option<(RingId, CibChange)> {
        let ring = ring?;
        if !synced || !quorate || self.reported == Some(ring) || self.reporting.is_some_and(|(_, r)| r == ring) {
            return None;
        }
        let mut ops: Vec<OpRecord> = self.history.values().cloned().collect();
        ops.sort_by_key(|o| o.call_id);
        ops.dedup_by_key(|o| o.call_id);
        Some((ring, CibChange::ReplaceHistory { node_id: self.me.0.to_string(), node_name: self.name.clone(), ops }))
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
        }
    }

    fn result(rc: i32) -> RunResult {
        RunResult { rc, op_status: 0, reason: None, exec_ms: 1 }
    }

    #[test]
    fn a_recurring_monitor_is_recorded_only_when_its_result_changes() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let m = req("monitor", 1000);
        let [ExecAction::Run { generation, .. }] = ex.order(m.clone())[..] else { panic!("one run") };
        assert!(ex.finished(&m, &result(0), generation, 1).is_some(), "the first result is recorded");
        assert!(ex.finished(&m, &result(0), generation, 2).is_none(), "the same result is not");
        assert!(ex.finished(&m, &result(7), generation, 3).is_some(), "a change is");
    }

    #[test]
    fn stop_cancels_the_monitors_and_late_results_of_a_cancelled_monitor_are_dropped() {
        let mut ex = ExecState::new(NodeId(1), "n1");
        let m = req("monitor", 1000);
        let [ExecAction::Run { generation, .. }] = ex.order(m.clone())[..] else { panic!("one run") };
        let acts = ex.order(req("stop", 0));
        assert_eq!(acts[0], ExecAction::Cancel { generation });
        assert_eq!(ex.monitors(), 0);
        assert!(ex.finished(&m, &result(7), generation, 3).is_none(), "a cancelled monitor records nothing");
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
        assert!(ex.report_due(Some(ring), false, true).is_none(), "not before the CIB is synchronized");
        assert!(ex.report_due(Some(ring), true, false).is_none(), "not without quorum");
        let start = req("start", 0);
        let change = ex.finished(&start, &result(0), 0, 1).expect("recorded");
        assert!(matches!(change, CibChange::RecordOp(_)));
        ex.recording(7);
        let (r, CibChange::ReplaceHistory { ops, .. }) = ex.report_due(Some(ring), true, true).expect("due") else {
            panic!("a history")
        };
        assert_eq!(ops.len(), 1);
        ex.reporting(8, r);
        assert!(ex.report_due(Some(ring), true, true).is_none(), "one report in flight");
        assert_eq!(ex.written(8, true), Some(ring));
        assert!(ex.report_due(Some(ring), true, true).is_none(), "reported in this view");
        assert_eq!(ex.written(7, false), None);
        assert!(ex.report_due(Some(ring), true, true).is_some(), "a lost record makes a report due");
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
        let (_, CibChange::ReplaceHistory { ops, .. }) = ex.report_due(Some(ring), true, true).expect("due") else {
            panic!("a history")
        };
        let ops: Vec<(&str, u64, i32)> = ops.iter().map(|o| (o.operation.as_str(), o.interval_ms, o.rc)).collect();
        assert_eq!(ops, [("monitor", 1000, 7), ("stop", 0, 0)], "the failure and the stop; no monitor left");
    }
}
