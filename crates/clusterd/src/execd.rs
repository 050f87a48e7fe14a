//! This node's executor: runs the operations the DC orders (delivered in the agreed order, mux
//! tag 4) with the resource agents, each on a blocking thread bounded by its timeout, and
//! records every result itself in the replicated CIB (`CibChange::RecordOp`, with the DC's
//! transition key), as Pacemaker's executors do. Recurring monitors run here on their own
//! timer and are recorded again only when their result changes; stop, promote and demote
//! cancel a resource's recurring monitors first.
//!
//! The executor keeps the last result of each operation in memory. After every view change
//! (and whenever its partition becomes quorate again) it replaces its node's history in the CIB
//! with what it knows (`CibChange::ReplaceHistory`) and then announces `Reported`: the DC acts
//! only once every member has, so the policy engine never works from a history no node stands
//! behind. After a restart the list is empty, so the policy engine probes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crm::dc::ExecRequest;
use crm::replica::{CibChange, OpRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use wire::{NodeId, RingId};

/// Wire kind of [`ExecMsg`].
pub(crate) const EXEC_WIRE_KIND: u8 = 0x62;

/// What travels between the DC and the executors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ExecMsg {
    /// The DC orders one operation on one node.
    Run(Box<ExecRequest>),
    /// The sender's history is in the CIB for this view.
    Reported {
        /// The view.
        ring: RingId,
    },
}

/// An agent's result, back from its thread.
#[derive(Debug)]
pub(crate) struct Finished {
    req: ExecRequest,
    result: agents::OpResult,
    /// The recurring monitor's generation (0 for one-shot operations).
    generation: u64,
}

struct Monitor {
    generation: u64,
    task: tokio::task::JoinHandle<()>,
    /// The last result recorded: (rc, op-status).
    recorded: Option<(i32, i32)>,
}

/// One node's executor.
pub(crate) struct Executor {
    me: NodeId,
    name: String,
    registry: Arc<agents::Registry>,
    done: mpsc::UnboundedSender<Finished>,
    /// The last result of each operation slot (`rsc_last_0`, `rsc_monitor_10000`,
    /// `rsc_last_failure_0`), replayed in call order.
    history: BTreeMap<String, OpRecord>,
    call_id: i64,
    next_generation: u64,
    monitors: BTreeMap<(String, u64), Monitor>,
    /// The view this node's history was last reported in; `None`: report again.
    reported: Option<RingId>,
    /// The history write in flight (CIB write id, the view it is for).
    reporting: Option<(u64, RingId)>,
}

impl Executor {
    /// An executor for node `me` called `name`; finished operations arrive on the returned
    /// receiver and go to [`Executor::finished`].
    pub(crate) fn new(
        me: NodeId,
        name: &str,
        ocf_root: &Path,
        rsctmp: &Path,
    ) -> (Executor, mpsc::UnboundedReceiver<Finished>) {
        // The agents' state directory must exist (Dummy and others refuse to start otherwise).
        if let Err(e) = std::fs::create_dir_all(rsctmp) {
            tracing::warn!(node = %me, dir = %rsctmp.display(), error = %e, "cannot create the agents' state directory");
        }
        let env = BTreeMap::from([("HA_RSCTMP".to_string(), rsctmp.display().to_string())]);
        let registry = Arc::new(agents::Registry::new(ocf_root).with_env(env));
        let (done, rx) = mpsc::unbounded_channel();
        let ex = Executor {
            me,
            name: name.to_string(),
            registry,
            done,
            history: BTreeMap::new(),
            call_id: 0,
            next_generation: 1,
            monitors: BTreeMap::new(),
            reported: None,
            reporting: None,
        };
        (ex, rx)
    }

    /// A delivered order: runs it when it is for this node.
    pub(crate) fn order(&mut self, req: ExecRequest) {
        if req.node_id != self.me.0.to_string() {
            return;
        }
        tracing::info!(node = %self.me, rsc = %req.rsc, op = %req.operation, interval_ms = req.interval_ms, key = %req.key, "executing");
        if matches!(req.operation.as_str(), "stop" | "promote" | "demote" | "migrate_to" | "migrate_from") {
            self.cancel_monitors(&req.rsc);
        }
        if req.operation == "monitor" && req.interval_ms > 0 {
            let generation = self.next_generation;
            self.next_generation += 1;
            let task = tokio::spawn(monitor_loop(self.registry.clone(), req.clone(), generation, self.done.clone()));
            if let Some(old) =
                self.monitors.insert((req.rsc.clone(), req.interval_ms), Monitor { generation, task, recorded: None })
            {
                old.task.abort();
            }
            return;
        }
        let (registry, done) = (self.registry.clone(), self.done.clone());
        tokio::spawn(async move {
            let result = run_agent(registry, &req).await;
            let _ = done.send(Finished { req, result, generation: 0 });
        });
    }

    fn cancel_monitors(&mut self, rsc: &str) {
        let keys: Vec<(String, u64)> = self.monitors.keys().filter(|(r, _)| r == rsc).cloned().collect();
        for k in keys {
            if let Some(m) = self.monitors.remove(&k) {
                m.task.abort();
            }
        }
    }

    /// A finished operation: the record to write, if any (recurring monitors only when their
    /// result changed).
    pub(crate) fn finished(&mut self, f: Finished, unix_now: i64) -> Option<CibChange> {
        let Finished { req, result, generation } = f;
        let rc = i32::from(result.rc.code());
        let op_status = match result.status {
            agents::ExecStatus::Done => 0,
            agents::ExecStatus::TimedOut => 2,
        };
        if generation != 0 {
            let m =
                self.monitors.get_mut(&(req.rsc.clone(), req.interval_ms)).filter(|m| m.generation == generation)?;
            if m.recorded == Some((rc, op_status)) {
                return None;
            }
            if m.recorded.is_some() {
                tracing::warn!(node = %self.me, rsc = %req.rsc, interval_ms = req.interval_ms, rc, reason = ?result.reason, "recurring monitor result changed");
            }
            m.recorded = Some((rc, op_status));
        }
        let ok = op_status == 0 && rc == req.target_rc;
        if ok {
            tracing::info!(node = %self.me, rsc = %req.rsc, op = %req.operation, rc, ms = result.elapsed.as_millis() as u64, "done");
        } else {
            tracing::warn!(node = %self.me, rsc = %req.rsc, op = %req.operation, rc, expected = req.target_rc, reason = ?result.reason, ms = result.elapsed.as_millis() as u64, "operation result is not the expected one");
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
            rc,
            op_status,
            call_id: self.call_id,
            transition_key: Some(req.key.clone()),
            last_rc_change: unix_now,
            exec_ms: result.elapsed.as_millis() as u64,
            exit_reason: result.reason.clone(),
        };
        self.remember(&record, ok || (req.operation == "monitor" && req.interval_ms == 0 && matches!(rc, 0 | 7 | 8)));
        Some(CibChange::RecordOp(Box::new(record)))
    }

    fn remember(&mut self, r: &OpRecord, ok: bool) {
        let slot = if r.interval_ms > 0 {
            format!("{}_{}_{}", r.rsc, r.operation, r.interval_ms)
        } else {
            format!("{}_last_0", r.rsc)
        };
        if r.operation == "stop" && ok {
            let prefix = format!("{}_", r.rsc);
            let failure = format!("{}_last_failure_0", r.rsc);
            self.history
                .retain(|k, v| !(k.starts_with(&prefix) && v.rsc == r.rsc && v.interval_ms > 0) || *k == failure);
        }
        if !ok {
            self.history.insert(format!("{}_last_failure_0", r.rsc), r.clone());
        }
        self.history.insert(slot, r.clone());
    }

    /// What this node's history write should be now, if one is due: after a view change or
    /// once quorate again, with a synchronized CIB.
    pub(crate) fn report_due(
        &mut self,
        ring: Option<RingId>,
        synced: bool,
        quorate: bool,
    ) -> Option<(RingId, CibChange)> {
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
    pub(crate) fn reporting(&mut self, id: u64, ring: RingId) {
        self.reporting = Some((id, ring));
    }

    /// A CIB write finished. Returns the view to announce `Reported` for, when it was the
    /// history write and it succeeded. A failed record makes the next report due.
    pub(crate) fn written(&mut self, id: u64, result: &Result<(), String>, records: &mut Vec<u64>) -> Option<RingId> {
        if let Some((rid, ring)) = self.reporting
            && rid == id
        {
            self.reporting = None;
            return match result {
                Ok(()) => {
                    self.reported = Some(ring);
                    Some(ring)
                }
                Err(e) => {
                    tracing::debug!(node = %self.me, error = %e, "history not recorded; again in the next view");
                    None
                }
            };
        }
        if let Some(i) = records.iter().position(|r| *r == id) {
            records.swap_remove(i);
            if let Err(e) = result {
                // The next report carries it (the history has every result).
                tracing::info!(node = %self.me, error = %e, "an operation result was not recorded; it will be with this node's history");
                self.reported = None;
            }
        }
        None
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        for m in self.monitors.values() {
            m.task.abort();
        }
    }
}

/// Runs an agent action on a blocking thread.
async fn run_agent(registry: Arc<agents::Registry>, req: &ExecRequest) -> agents::OpResult {
    let req = req.clone();
    let name = req.agent_name();
    let timeout = std::time::Duration::from_millis(req.timeout_ms.max(1));
    let joined = tokio::task::spawn_blocking(move || {
        let action: agents::Action = match req.operation.parse() {
            Ok(a) => a,
            Err(e) => return failed(agents::OcfRc::ErrUnimplemented, e.to_string(), timeout),
        };
        let agent = match registry.get(&name) {
            Ok(a) => a,
            Err(e) => return failed(agents::OcfRc::ErrInstalled, e.to_string(), timeout),
        };
        let mut r = agents::Request::new(action, &req.rsc, req.params.clone()).timeout(timeout);
        r.meta = req.meta.clone();
        r.meta.insert("on_node".into(), req.node_name.clone());
        r.interval = std::time::Duration::from_millis(req.interval_ms);
        agents::execute(agent.as_ref(), &r)
    })
    .await;
    joined.unwrap_or_else(|e| failed(agents::OcfRc::ErrGeneric, format!("the agent's thread failed: {e}"), timeout))
}

fn failed(rc: agents::OcfRc, reason: String, timeout: std::time::Duration) -> agents::OpResult {
    agents::OpResult {
        action: agents::Action::Monitor,
        rc,
        status: agents::ExecStatus::Done,
        reason: Some(reason),
        output: String::new(),
        elapsed: std::time::Duration::ZERO,
        timeout,
    }
}

/// A recurring monitor: runs now, then every interval, until aborted.
async fn monitor_loop(
    registry: Arc<agents::Registry>,
    req: ExecRequest,
    generation: u64,
    done: mpsc::UnboundedSender<Finished>,
) {
    let interval = std::time::Duration::from_millis(req.interval_ms);
    loop {
        let result = run_agent(registry.clone(), &req).await;
        if done.send(Finished { req: req.clone(), result, generation }).is_err() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}
