//! One node's controller, sans-IO: its executor's bookkeeping, the history reports, and the DC
//! loop while it is the DC, tied together the same way in the daemon and in the simulator.
//!
//! The driver feeds views, deliveries (tag of [`ExecMsg`]), finished agent runs, the outcome of
//! the CIB writes it was asked for, and fencing results, calls [`NodeController::step`] after
//! every event with the current CIB, and carries out the [`CtlEffect`]s. Fencing: a
//! [`FenceOrder`] goes to the fencer; a confirmed fence is written to the CIB as
//! [`CibChange::Fenced`] and only once every member has that record does the transition
//! count the fence as done (so nothing moves before the record of the fence is everywhere).

use std::collections::BTreeMap;

use wire::{Instant, NodeId, RingId};

use crate::cib::Cib;
use crate::controller::Outcome;
use crate::dc::{Dc, DcEffect, ExecRequest, FenceOrder};
use crate::exec::{ExecAction, ExecMsg, ExecState, Reports, RunResult};
use crate::replica::CibChange;

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtlEffect {
    /// Multicast in the agreed order.
    Broadcast(ExecMsg),
    /// Run or cancel an agent operation on this node.
    Exec(ExecAction),
    /// Write to the CIB; report the outcome with [`NodeController::written`] and `token`.
    Write {
        /// Names this write in [`NodeController::written`].
        token: u64,
        /// The change.
        change: CibChange,
    },
    /// Fence a node; report with [`NodeController::fenced`].
    Fence(FenceOrder),
    /// The partition lost quorum: this node stops what it runs (for the log).
    QuorumLost {
        /// `no-quorum-policy`.
        policy: String,
        /// What it runs.
        stopping: Vec<String>,
    },
    /// A transition began or ended (for the log): [`DcEffect::Started`] or
    /// [`DcEffect::Ended`].
    Transition(DcEffect),
}

/// One node's controller.
pub struct NodeController {
    me: NodeId,
    dc: Dc,
    exec: ExecState,
    reports: Reports,
    next_token: u64,
    /// Fence records in flight: token → the order they confirm, and whether another node's
    /// DC delegated it (then the result goes back to it by message).
    fence_writes: BTreeMap<u64, (FenceOrder, bool)>,
    /// Fences this node carries out for a DC that is their target.
    delegated: Vec<FenceOrder>,
    out: Vec<CtlEffect>,
    /// The partition was quorate at the last step.
    was_quorate: bool,
    /// What the DC of this view last said of its transitions (`None`: not yet said).
    dc_busy: Option<bool>,
    /// What this node, as DC, last said in this view.
    announced: Option<bool>,
    /// The time of the last step (for results that arrive by message).
    last_now: Instant,
    /// Shutting down since then (Unix seconds).
    shutdown: Option<i64>,
    /// Local stops were ordered for the shutdown.
    stopping_locally: bool,
    /// The policy engine's clock at the last step (for pending records).
    unix_now: i64,
}

impl NodeController {
    /// The controller of node `me` called `name`; `uuid` makes its transition keys unique to
    /// this incarnation.
    pub fn new(me: NodeId, name: &str, uuid: &str) -> NodeController {
        NodeController {
            me,
            dc: Dc::new(uuid),
            exec: ExecState::new(me, name),
            reports: Reports::default(),
            next_token: 0,
            fence_writes: BTreeMap::new(),
            delegated: Vec::new(),
            out: Vec::new(),
            was_quorate: false,
            dc_busy: None,
            announced: None,
            last_now: Instant::ZERO,
            shutdown: None,
            stopping_locally: false,
            unix_now: 0,
        }
    }

    /// Whether the DC of this view runs a transition, as it last said (`None`: not said yet in
    /// this view, or no DC acts).
    pub fn dc_busy(&self) -> Option<bool> {
        self.dc_busy
    }

    /// The DC loop (for status and wakeups).
    pub fn dc(&self) -> &Dc {
        &self.dc
    }

    /// The executor's bookkeeping.
    pub fn exec(&self) -> &ExecState {
        &self.exec
    }

    /// When to call [`NodeController::step`] without an event.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.dc.next_wakeup()
    }

    /// A new view.
    pub fn view(&mut self, now: Instant, ring: RingId, members: &[NodeId]) {
        self.reports.view(ring, members);
        self.dc_busy = None;
        self.announced = None;
        let mut fx = Vec::new();
        self.dc.abort(now, "the membership changed", &mut fx);
        self.dc_effects(fx);
    }

    /// A delivered [`ExecMsg`].
    pub fn delivered(&mut self, from: NodeId, msg: ExecMsg) {
        match msg {
            ExecMsg::Run { ring, req } => {
                if self.reports.ring() != Some(ring) {
                    // Issued in an earlier view: its transition is gone (the DC drops it at
                    // every view change), and whoever acts now schedules afresh.
                    return;
                }
                if let Some(change) = self.exec.pending(&req, self.unix_now) {
                    let token = self.token();
                    self.exec.recording(token);
                    self.out.push(CtlEffect::Write { token, change });
                }
                let acts = self.exec.order(*req);
                self.out.extend(acts.into_iter().map(CtlEffect::Exec));
            }
            ExecMsg::Reported { ring } => self.reports.reported(from, ring),
            ExecMsg::DcState { busy } => self.dc_busy = Some(busy),
            ExecMsg::FenceBy { order, by } => {
                if by == self.me {
                    self.delegated.push((*order).clone());
                    self.out.push(CtlEffect::Fence(*order));
                }
            }
            ExecMsg::FenceDone { order, error } => {
                // Only the DC that asked has a run with that transition; others ignore it.
                let outcome = match error {
                    None => Outcome::Ok,
                    Some(reason) => Outcome::Failed { reason },
                };
                self.dc.fence_result(self.last_now, order.transition, order.action, outcome);
            }
            ExecMsg::Cleanup { rsc, node } => {
                if let Some(change) = self.exec.cleanup(&rsc, node.as_deref()) {
                    let token = self.token();
                    self.exec.recording(token);
                    self.out.push(CtlEffect::Write { token, change });
                }
            }
        }
    }

    /// An operation record was applied to the CIB (any node's, in the agreed order).
    pub fn recorded(&mut self, now: Instant, r: &crate::replica::OpRecord) {
        self.dc.recorded(now, r);
    }

    /// An agent run finished on this node.
    pub fn finished(&mut self, req: &ExecRequest, result: &RunResult, generation: u64, unix_now: i64) {
        for change in self.exec.finished(req, result, generation, unix_now) {
            let token = self.token();
            self.exec.recording(token);
            self.out.push(CtlEffect::Write { token, change });
        }
        for next in self.exec.next_runs() {
            self.out.push(CtlEffect::Exec(next));
        }
    }

    /// A write asked for with [`CtlEffect::Write`] is on every member (`ok`), or did not happen.
    pub fn written(&mut self, now: Instant, token: u64, ok: bool) {
        if let Some((order, delegated)) = self.fence_writes.remove(&token) {
            let error = (!ok).then(|| format!("the fence of {} could not be recorded", order.target));
            if delegated {
                self.out.push(CtlEffect::Broadcast(ExecMsg::FenceDone { order: Box::new(order), error }));
            } else {
                let outcome = error.map_or(Outcome::Ok, |reason| Outcome::Failed { reason });
                self.dc.fence_result(now, order.transition, order.action, outcome);
            }
            return;
        }
        if let Some(ring) = self.exec.written(token, ok) {
            self.out.push(CtlEffect::Broadcast(ExecMsg::Reported { ring }));
        }
    }

    /// The fencer's answer to a [`CtlEffect::Fence`].
    pub fn fenced(&mut self, now: Instant, order: FenceOrder, result: Result<(), String>) {
        let delegated = match self.delegated.iter().position(|o| *o == order) {
            Some(i) => {
                self.delegated.remove(i);
                true
            }
            None => false,
        };
        let failed = |this: &mut Self, order: FenceOrder, reason: String| {
            if delegated {
                this.out.push(CtlEffect::Broadcast(ExecMsg::FenceDone { order: Box::new(order), error: Some(reason) }));
            } else {
                this.dc.fence_result(now, order.transition, order.action, Outcome::Failed { reason });
            }
        };
        match (result, order.target_id.clone()) {
            (Ok(()), None) => {
                let reason = format!("{} was fenced but has no node id to record it under", order.target);
                failed(self, order, reason);
            }
            (Ok(()), Some(node_id)) => {
                let token = self.token();
                let change = CibChange::Fenced { node_id, node_name: order.target.clone() };
                self.fence_writes.insert(token, (order, delegated));
                self.out.push(CtlEffect::Write { token, change });
            }
            (Err(reason), _) => failed(self, order, reason),
        }
    }

    /// Runs after every event: the history report when due, and the DC loop (acting only as
    /// the DC of a synchronized, quorate view whose members all reported).
    pub fn step(&mut self, now: Instant, unix_now: i64, doc: &Cib, synced: bool, quorate: bool, dc: Option<NodeId>) {
        self.last_now = now;
        self.unix_now = unix_now;
        if quorate != self.was_quorate {
            self.was_quorate = quorate;
            if quorate {
                self.exec.quorum_regained();
            } else {
                let policy = no_quorum_policy(doc);
                if matches!(policy.as_str(), "stop" | "suicide" | "fence" | "demote") {
                    let acts = self.exec.stop_all();
                    if !acts.is_empty() {
                        self.out.push(CtlEffect::QuorumLost { policy, stopping: self.exec.running() });
                    }
                    self.out.extend(acts.into_iter().map(CtlEffect::Exec));
                }
            }
        }
        if self.shutdown.is_some() && !quorate && !self.stopping_locally {
            self.stop_locally();
        }
        if let Some((ring, change)) = self.exec.report_due(self.reports.ring(), synced, quorate, self.shutdown) {
            let token = self.token();
            self.exec.reporting(token, ring);
            self.out.push(CtlEffect::Write { token, change });
        }
        let acting = quorate && synced && dc == Some(self.me) && self.reports.complete();
        let mut fx = Vec::new();
        self.dc.step(now, unix_now, doc, acting, quorate, &mut fx);
        self.dc_effects(fx);
        if !acting {
            self.announced = None;
        } else if self.announced != Some(self.dc.running()) {
            self.announced = Some(self.dc.running());
            self.out.push(CtlEffect::Broadcast(ExecMsg::DcState { busy: self.dc.running() }));
        }
    }

    /// This node is to shut down: with quorum, its `shutdown` attribute makes the DC move
    /// everything away (in order, as the policy engine plans it); without, it stops what it runs
    /// by itself. Leave once [`NodeController::may_leave`] says so.
    pub fn shutdown(&mut self, unix_now: i64, synced: bool, quorate: bool) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(unix_now);
        if quorate && synced {
            let token = self.token();
            let change = CibChange::SetShutdown {
                node_id: self.me.0.to_string(),
                node_name: self.exec.name().to_string(),
                since: Some(unix_now),
            };
            self.exec.recording(token);
            self.out.push(CtlEffect::Write { token, change });
        } else {
            self.stop_locally();
        }
    }

    /// The shutdown took too long: stop everything here without the DC.
    pub fn shutdown_escalate(&mut self) {
        if !self.stopping_locally {
            self.stop_locally();
        }
    }

    fn stop_locally(&mut self) {
        self.stopping_locally = true;
        let acts = self.exec.stop_all();
        self.out.extend(acts.into_iter().map(CtlEffect::Exec));
    }

    /// Shutting down and nothing runs here any more (and every result is recorded where that
    /// is possible): the node may leave the cluster.
    pub fn may_leave(&self) -> bool {
        self.shutdown.is_some() && self.exec.idle()
    }

    /// What to do, in order.
    pub fn drain(&mut self) -> Vec<CtlEffect> {
        std::mem::take(&mut self.out)
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn dc_effects(&mut self, fx: Vec<DcEffect>) {
        for e in fx {
            self.out.push(match e {
                DcEffect::Execute(req) => match self.reports.ring() {
                    Some(ring) => CtlEffect::Broadcast(ExecMsg::Run { ring, req: Box::new(req) }),
                    // The DC acts only in a view; without one there is nobody to order.
                    None => continue,
                },
                DcEffect::Fence(order) if order.target == self.exec.name() => {
                    // A node never fences itself: another member does it for this DC.
                    match self.reports.members().iter().copied().filter(|m| *m != self.me).min() {
                        Some(by) => CtlEffect::Broadcast(ExecMsg::FenceBy { order: Box::new(order), by }),
                        None => {
                            let reason = format!("{} is alone: no other member can fence it", order.target);
                            self.dc.fence_result(
                                self.last_now,
                                order.transition,
                                order.action,
                                Outcome::Failed { reason },
                            );
                            continue;
                        }
                    }
                }
                DcEffect::Fence(order) => CtlEffect::Fence(order),
                other @ (DcEffect::Started { .. } | DcEffect::Ended { .. }) => CtlEffect::Transition(other),
            });
        }
    }
}

/// `no-quorum-policy` (default `stop`).
fn no_quorum_policy(doc: &Cib) -> String {
    doc.config
        .properties
        .iter()
        .filter(|s| s.rule.is_none())
        .find_map(|s| s.pairs.iter().find(|p| p.name == "no-quorum-policy")?.value.clone())
        .unwrap_or_else(|| "stop".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Duration;

    fn order() -> FenceOrder {
        FenceOrder {
            action: 3,
            transition: 7,
            target: "node1".into(),
            target_id: Some("1".into()),
            power: "reboot".into(),
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_dc_that_must_be_fenced_asks_another_member_who_records_it_and_answers() {
        let ring = RingId::new(NodeId(1), 4);
        let mut dc = NodeController::new(NodeId(1), "node1", "a");
        dc.view(Instant::ZERO, ring, &[NodeId(1), NodeId(2), NodeId(3)]);
        let _ = dc.drain();
        dc.dc_effects(vec![DcEffect::Fence(order())]);
        let fx = dc.drain();
        assert!(
            matches!(&fx[..], [CtlEffect::Broadcast(ExecMsg::FenceBy { by, .. })] if *by == NodeId(2)),
            "the lowest other member is asked: {fx:?}"
        );
        // Node 3 is not asked; node 2 fences, records it, and answers once recorded.
        let mut n3 = NodeController::new(NodeId(3), "node3", "c");
        n3.delivered(NodeId(1), ExecMsg::FenceBy { order: Box::new(order()), by: NodeId(2) });
        assert!(n3.drain().is_empty());
        let mut n2 = NodeController::new(NodeId(2), "node2", "b");
        n2.delivered(NodeId(1), ExecMsg::FenceBy { order: Box::new(order()), by: NodeId(2) });
        assert!(matches!(&n2.drain()[..], [CtlEffect::Fence(o)] if *o == order()));
        n2.fenced(Instant::ZERO, order(), Ok(()));
        let fx = n2.drain();
        let [CtlEffect::Write { token, change: CibChange::Fenced { node_id, .. } }] = &fx[..] else {
            panic!("the fence is recorded first: {fx:?}")
        };
        assert_eq!(node_id, "1");
        n2.written(Instant::ZERO, *token, true);
        assert!(matches!(&n2.drain()[..], [CtlEffect::Broadcast(ExecMsg::FenceDone { error: None, .. })]));
        // A failure goes back too, without a record.
        n2.delivered(NodeId(1), ExecMsg::FenceBy { order: Box::new(order()), by: NodeId(2) });
        let _ = n2.drain();
        n2.fenced(Instant::ZERO, order(), Err("the BMC did not answer".into()));
        assert!(matches!(&n2.drain()[..], [CtlEffect::Broadcast(ExecMsg::FenceDone { error: Some(_), .. })]));
    }

    #[test]
    fn a_dc_alone_cannot_have_itself_fenced() {
        let mut dc = NodeController::new(NodeId(1), "node1", "a");
        dc.view(Instant::ZERO, RingId::new(NodeId(1), 4), &[NodeId(1)]);
        let _ = dc.drain();
        dc.dc_effects(vec![DcEffect::Fence(order())]);
        assert!(dc.drain().is_empty(), "nothing is sent; the order fails at once");
    }
}
