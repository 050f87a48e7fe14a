//! The replicated CIB inside clusterd: runs the sans-IO [`crm::replica::Replica`] on membership's
//! views, ordered deliveries (mux tag 3) and stability reports, persists its copy atomically in
//! the state directory, and answers `crmctl config ...` requests. Writes need quorum and are
//! answered only once every member of the view has the change.
//!
//! The DC (the one recorded in the synchronized CIB while it is a member, else the lowest node id
//! of the view; every member computes the same from the same copy) records itself and
//! membership in the CIB's status: members as online, nodes that left cleanly as down, and
//! nodes lost without leaving as expected-up-but-gone, which the policy engine fences before
//! their resources move.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crm::cib::Cib;
use crm::replica::{CibChange, Effect, Input, Membership as Mstate, Replica, ReplicaMsg};
use membership::Membership;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use wire::{NodeId, RingId};

use crate::control::Response;
use crate::node::NodeError;

/// The file holding this node's copy (with its lineage).
pub(crate) const CIB_FILE: &str = "cib.state";

/// What `crmctl config export` and `crmctl simulate --live` get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CibReport {
    /// The whole CIB as Pacemaker XML (configuration and status).
    pub xml: String,
    /// admin_epoch, epoch, num_updates.
    pub version: (u64, u64, u64),
    /// The members agree on this copy (false right after a membership change).
    pub synced: bool,
    /// The partition is quorate (changes are accepted).
    pub quorate: bool,
    /// The DC's name.
    pub dc: Option<String>,
    /// The DC runs a transition (as it last said; `None`: not known yet in this view).
    #[serde(default)]
    pub transition_running: Option<bool>,
}

/// The CIB service of one node.
pub(crate) struct CibService {
    replica: Replica<Cib>,
    path: PathBuf,
    me: NodeId,
    next_id: u64,
    replies: BTreeMap<u64, oneshot::Sender<Response>>,
    fx: Vec<Effect<CibChange>>,
    /// Configured nodes: id → name.
    names: BTreeMap<NodeId, String>,
    members: Vec<NodeId>,
    /// What this node knows of each node's membership since it started.
    known: BTreeMap<NodeId, Mstate>,
    /// The DC's membership write in flight.
    dc_write: Option<u64>,
    /// Something the DC's duties depend on changed since they last ran (they run after every
    /// event of the daemon's loop, so they must cost nothing otherwise).
    duty_due: bool,
    last_quorate: bool,
    /// Writes made by this daemon's own services (executor, controller), by id.
    internal: std::collections::BTreeSet<u64>,
    /// Their outcomes, for [`CibService::take_written`].
    written: Vec<(u64, Result<(), String>)>,
    /// Operation records applied since [`CibService::take_applied`] last ran.
    applied: Vec<crm::replica::OpRecord>,
}

impl CibService {
    /// The persisted copy from `state_dir`, or an empty CIB on a first start.
    pub(crate) fn load(state_dir: &Path, me: NodeId, names: BTreeMap<NodeId, String>) -> Result<CibService, NodeError> {
        let path = state_dir.join(CIB_FILE);
        let replica = match std::fs::read(&path) {
            Ok(bytes) => Replica::restore(me, &bytes).map_err(|e| NodeError::State {
                path: path.clone(),
                message: format!(
                    "{e}; move the file away to start from the other nodes' copy (it is replaced at the next synchronization)"
                ),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Replica::new(me, Cib::default()),
            Err(e) => return Err(NodeError::State { path, message: e.to_string() }),
        };
        Ok(CibService {
            replica,
            path,
            me,
            next_id: 0,
            replies: BTreeMap::new(),
            fx: Vec::new(),
            names,
            members: Vec::new(),
            known: BTreeMap::new(),
            dc_write: None,
            duty_due: true,
            last_quorate: false,
            internal: Default::default(),
            written: Vec::new(),
            applied: Vec::new(),
        })
    }

    /// A new view; `left` are the nodes that left cleanly since the previous one.
    pub(crate) fn view(&mut self, ring: RingId, members: &[NodeId], left: &[NodeId]) {
        for gone in self.members.iter().filter(|n| !members.contains(n)) {
            self.known.insert(*gone, if left.contains(gone) { Mstate::Left } else { Mstate::Lost });
        }
        for m in members {
            self.known.insert(*m, Mstate::Member);
        }
        self.members = members.to_vec();
        self.dc_write = None;
        self.duty_due = true;
        self.replica.handle(Input::View { ring, members }, &mut self.fx);
    }

    /// The DC of the current view: every member computes the same from the synchronized CIB.
    pub(crate) fn dc(&self) -> Option<NodeId> {
        crm::replica::dc_of(self.replica.is_synced().then(|| self.replica.document()), &self.members)
    }

    /// The DC's duties, run after every event: record membership changes in the status.
    pub(crate) fn duty(&mut self, quorate: bool) {
        if quorate != self.last_quorate {
            self.last_quorate = quorate;
            self.duty_due = true;
        }
        if !self.duty_due {
            return;
        }
        self.duty_due = false;
        if !quorate || !self.replica.is_synced() || self.dc() != Some(self.me) || self.dc_write.is_some() {
            return;
        }
        let names = &self.names;
        let Some(change) = crm::replica::membership_change(self.replica.document(), self.me, &self.known, |id| {
            names.get(&id).cloned()
        }) else {
            return;
        };
        self.next_id += 1;
        let id = self.next_id;
        self.dc_write = Some(id);
        self.replica.handle(Input::Write { id, change, quorate }, &mut self.fx);
    }

    /// A delivered CIB message.
    pub(crate) fn delivered(&mut self, from: NodeId, seq: u64, msg: ReplicaMsg<CibChange>) {
        let record = match &msg {
            ReplicaMsg::Change { change: CibChange::RecordOp(r), .. } => Some((**r).clone()),
            _ => None,
        };
        let before = self.replica.document().version;
        self.replica.handle(Input::Delivered { from, seq, msg }, &mut self.fx);
        if let Some(r) = record
            && self.replica.document().version != before
        {
            self.applied.push(r);
        }
    }

    /// Operation records applied since the last call, in the agreed order.
    pub(crate) fn take_applied(&mut self) -> Vec<crm::replica::OpRecord> {
        std::mem::take(&mut self.applied)
    }

    /// Membership: every member has everything up to `upto`.
    pub(crate) fn stable(&mut self, ring: RingId, upto: u64) {
        self.replica.handle(Input::Stable { ring, upto }, &mut self.fx);
    }

    /// A client's change; answered on `reply` once every member has it (or at once, refused).
    pub(crate) fn write(&mut self, change: CibChange, quorate: bool, reply: oneshot::Sender<Response>) {
        self.next_id += 1;
        let id = self.next_id;
        self.replies.insert(id, reply);
        self.replica.handle(Input::Write { id, change, quorate }, &mut self.fx);
    }

    /// A change made by this daemon (the executor's records, the DC's fencing records); its
    /// outcome comes back through [`CibService::take_written`] under the returned id.
    pub(crate) fn write_internal(&mut self, change: CibChange, quorate: bool) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.internal.insert(id);
        self.replica.handle(Input::Write { id, change, quorate }, &mut self.fx);
        id
    }

    /// Outcomes of internal writes since the last call (Ok once every member has the change).
    pub(crate) fn take_written(&mut self) -> Vec<(u64, Result<(), String>)> {
        std::mem::take(&mut self.written)
    }

    /// The copy as it is.
    pub(crate) fn document(&self) -> &Cib {
        self.replica.document()
    }

    /// The members agree on the copy (since the last view change).
    pub(crate) fn is_synced(&self) -> bool {
        self.replica.is_synced()
    }

    /// The copy as it is now.
    pub(crate) fn report(&self, quorate: bool) -> CibReport {
        let doc = self.replica.document();
        let mut cib = doc.clone();
        cib.have_quorum = quorate;
        let dc = self.dc();
        cib.dc_uuid = dc.map(|d| d.0.to_string());
        let v = doc.version;
        CibReport {
            xml: crm::cib::to_xml(&cib),
            version: (v.admin_epoch, v.epoch, v.num_updates),
            synced: self.replica.is_synced(),
            quorate,
            dc: dc.and_then(|d| self.names.get(&d).cloned()),
            transition_running: None,
        }
    }

    /// Runs the replica's effects: multicasts into `core`, persists, answers clients.
    pub(crate) fn drain(
        &mut self,
        core: &mut Membership,
        now: wire::Instant,
        fx: &mut Vec<membership::Effect>,
    ) -> Result<(), NodeError> {
        for e in std::mem::take(&mut self.fx) {
            match e {
                Effect::Broadcast(m) => core.handle(now, membership::Input::Broadcast(crate::mux::cib(&m)), fx),
                Effect::Persist(bytes) => {
                    if let Err(e) = durable::write_atomic(&self.path, &bytes, 0o600) {
                        // Acknowledging changes that are not on disk would be a lie: stop (the
                        // service manager restarts us; the other members keep the CIB).
                        tracing::error!(path = %self.path.display(), error = %e, "cannot write the CIB; stopping");
                        return Err(NodeError::State { path: self.path.clone(), message: e.to_string() });
                    }
                }
                Effect::Reply { id, result } if self.dc_write == Some(id) => {
                    // Done, or to be tried again at the next event (a view change re-does it).
                    if let Err(e) = &result {
                        tracing::debug!(node = %self.me, error = %e, "recording membership in the CIB did not complete");
                    }
                    self.dc_write = None;
                    self.duty_due = true;
                }
                Effect::Reply { id, result } if self.internal.remove(&id) => {
                    self.written.push((id, result.map(|_| ()).map_err(|e| e.to_string())));
                }
                Effect::Reply { id, result } => {
                    if let Some(tx) = self.replies.remove(&id) {
                        let _ = tx.send(match result {
                            Ok(v) => Response::Done(format!(
                                "changed on every node: CIB version {}.{}.{}",
                                v.admin_epoch, v.epoch, v.num_updates
                            )),
                            Err(e) => Response::Error(e.to_string()),
                        });
                    }
                }
                Effect::Changed(v) => {
                    self.duty_due = true;
                    tracing::debug!(node = %self.me, version = %format!("{}.{}.{}", v.admin_epoch, v.epoch, v.num_updates), "CIB changed");
                }
                Effect::Synced(v) => {
                    self.duty_due = true;
                    tracing::info!(node = %self.me, version = %format!("{}.{}.{}", v.admin_epoch, v.epoch, v.num_updates), "CIB synchronized with the members of this view");
                }
            }
        }
        Ok(())
    }
}
