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
use crate::controller::{Outcome, RunEnd};
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
    /// A transition began (for the log).
    Started {
        /// Its number.
        number: u64,
        /// Summary lines.
        summary: Vec<String>,
        /// Actions that will execute.
        actions: usize,
    },
    /// A transition ended (for the log).
    Ended {
        /// Its number.
        number: u64,
        /// How.
        end: RunEnd,
    },
}

/// One node's controller.
pub struct NodeController {
    me: NodeId,
    dc: Dc,
    exec: ExecState,
    reports: Reports,
    next_token: u64,
    /// Fence records in flight: token → the order they confirm.
    fence_writes: BTreeMap<u64, FenceOrder>,
    out: Vec<CtlEffect>,
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
            out: Vec::new(),
            unix_now: 0,
        }
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
            ExecMsg::Cleanup { rsc, node } => {
                if let Some(change) = self.exec.cleanup(&rsc, node.as_deref()) {
                    let token = self.token();
                    self.exec.recording(token);
                    self.out.push(CtlEffect::Write { token, change });
                }
            }
        }
    }

    /// An agent run finished on this node.
    pub fn finished(&mut self, req: &ExecRequest, result: &RunResult, generation: u64, unix_now: i64) {
        if let Some(change) = self.exec.finished(req, result, generation, unix_now) {
            let token = self.token();
            self.exec.recording(token);
            self.out.push(CtlEffect::Write { token, change });
        }
    }

    /// A write asked for with [`CtlEffect::Write`] is on every member (`ok`), or did not happen.
    pub fn written(&mut self, now: Instant, token: u64, ok: bool) {
        if let Some(order) = self.fence_writes.remove(&token) {
            let outcome = if ok {
                Outcome::Ok
            } else {
                Outcome::Failed { reason: format!("the fence of {} could not be recorded", order.target) }
            };
            self.dc.fence_result(now, order.transition, order.action, outcome);
            return;
        }
        if let Some(ring) = self.exec.written(token, ok) {
            self.out.push(CtlEffect::Broadcast(ExecMsg::Reported { ring }));
        }
    }

    /// The fencer's answer to a [`CtlEffect::Fence`].
    pub fn fenced(&mut self, now: Instant, order: FenceOrder, result: Result<(), String>) {
        match result {
            Ok(()) => {
                let token = self.token();
                let change = CibChange::Fenced {
                    node_id: order.target_id.clone().unwrap_or_default(),
                    node_name: order.target.clone(),
                };
                self.fence_writes.insert(token, order);
                self.out.push(CtlEffect::Write { token, change });
            }
            Err(reason) => {
                self.dc.fence_result(now, order.transition, order.action, Outcome::Failed { reason });
            }
        }
    }

    /// Runs after every event: the history report when due, and the DC loop (acting only as
    /// the DC of a synchronized, quorate view whose members all reported).
    pub fn step(&mut self, now: Instant, unix_now: i64, doc: &Cib, synced: bool, quorate: bool, dc: Option<NodeId>) {
        self.unix_now = unix_now;
        if let Some((ring, change)) = self.exec.report_due(self.reports.ring(), synced, quorate) {
            let token = self.token();
            self.exec.reporting(token, ring);
            self.out.push(CtlEffect::Write { token, change });
        }
        let acting = quorate && synced && dc == Some(self.me) && self.reports.complete();
        let mut fx = Vec::new();
        self.dc.step(now, unix_now, doc, acting, quorate, &mut fx);
        self.dc_effects(fx);
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
                DcEffect::Fence(order) => CtlEffect::Fence(order),
                DcEffect::Started { number, summary, actions } => CtlEffect::Started { number, summary, actions },
                DcEffect::Ended { number, end } => CtlEffect::Ended { number, end },
            });
        }
    }
}
