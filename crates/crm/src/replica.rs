//! The replicated CIB: every member of a view holds the whole document, changes travel in
//! membership's ordered delivery and every member applies them at the same point of the order.
//!
//! After each view change the members exchange their versions ([`ReplicaMsg::Offer`]); once all
//! offers are in, the member with the newest copy multicasts it whole ([`ReplicaMsg::Full`])
//! unless everyone already holds the same bytes, and every member adopts it at that same point.
//! Changes are accepted only between that point and the next view change, only from a member
//! of a quorate partition, and only for the view they were sent in, so every member accepts or
//! rejects each change alike.
//!
//! "Newest" is not the highest version alone: a node cut off from its view can still apply its
//! own last changes (it delivers them before it learns the others are gone) and so reach a high
//! version on a dead branch, while the rest of the cluster acknowledged other changes. Each copy
//! therefore carries its lineage: the ring in which it last applied a change ([`Rank`]). Changes
//! are only made in quorate views, with majority quorum two quorate views share a member, and
//! ring ids grow, so the copy from the latest ring descends from every acknowledged change; the
//! version only orders copies of the same ring (a longer prefix of one total order).
//! `admin_epoch` still overrides everything, as in Pacemaker. (With an arbiter or two_node,
//! quorate views need not share a member: see docs/cib.md.)
//!
//! A write is acknowledged ([`Effect::Reply`] with `Ok`) only once membership reports it stable
//! (every member of the view has received it; whichever members survive a failure deliver it),
//! and after the new document was handed to the driver for persisting. A view change between
//! delivery and stability answers "indeterminate" instead: never a false acknowledgement.
//!
//! Sans-IO: the driver feeds views, deliveries and stability reports from membership, and runs
//! the effects (multicast, persist, answer the client).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wire::{NodeId, RingId};

use crate::cib::{Cib, CibVersion, NodeState};

/// The `wire` frame kind of [`ReplicaMsg`] (inside ordered delivery).
pub const REPLICA_WIRE_KIND: u8 = 0x60;

/// Largest piece of a whole document in one message, by default (membership's largest message
/// is 60 KiB by default; the envelope and the other fields fit in the rest).
pub const DEFAULT_PIECE_BYTES: usize = 48 * 1024;

/// How much larger than a document piece one change may be.
const CHANGE_SLACK: usize = 8 * 1024;

/// Which version counter a change moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The configuration changed: `epoch` + 1, `num_updates` back to 0.
    Config,
    /// Only the status changed: `num_updates` + 1.
    Status,
}

/// A document the replica keeps identical on every member.
pub trait Document: Clone + fmt::Debug {
    /// A change, as it travels between members.
    type Change: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// The version triple.
    fn version(&self) -> CibVersion;
    /// Sets the version triple.
    fn set_version(&mut self, v: CibVersion);
    /// Applies `change`; deterministic (every member gets the same result from the same
    /// document). On error the document is left as it was.
    fn apply(&mut self, change: &Self::Change) -> Result<ChangeKind, String>;
    /// The bytes to persist and to send whole.
    fn encode(&self) -> Vec<u8>;
    /// The inverse of [`Document::encode`].
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

/// How copies are ranked at synchronization: `admin_epoch`, then the ring of the last change
/// (lineage), then `epoch`, then `num_updates`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rank {
    /// Administrators' override.
    pub admin_epoch: u64,
    /// The ring in which this copy last applied a change (none: never changed here).
    pub changed_in: Option<RingId>,
    /// Configuration changes.
    pub epoch: u64,
    /// Status changes.
    pub num_updates: u64,
}

impl Rank {
    fn of(v: CibVersion, changed_in: Option<RingId>) -> Rank {
        Rank { admin_epoch: v.admin_epoch, changed_in, epoch: v.epoch, num_updates: v.num_updates }
    }
}

/// What a replica persists: the document and its lineage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Saved {
    changed_in: Option<RingId>,
    doc: Vec<u8>,
}

/// The `wire` frame kind of a replica's persisted state.
const SAVED_WIRE_KIND: u8 = 0x61;

/// Messages between replicas, in ordered delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaMsg<C> {
    /// After a view change: the sender's version and a digest of its document.
    Offer {
        /// The view.
        ring: RingId,
        /// The sender's copy's rank.
        rank: Rank,
        /// FNV-1a of the encoded document.
        digest: u64,
    },
    /// The newest document, from the member chosen by the offers, in `parts` pieces (a
    /// document may be larger than one message).
    Full {
        /// The view.
        ring: RingId,
        /// Its lineage.
        changed_in: Option<RingId>,
        /// This piece's number, from 0.
        part: u32,
        /// How many pieces.
        parts: u32,
        /// A piece of the encoded document.
        bytes: Vec<u8>,
    },
    /// A change, to be applied by every member at this point of the order.
    Change {
        /// The view it was sent in.
        ring: RingId,
        /// The sender's request id.
        id: u64,
        /// The change.
        change: C,
    },
}

/// Why a write was not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The partition may not change the cluster's configuration.
    #[error("this partition is not quorate; changes need quorum (see `crmctl quorum status`)")]
    NotQuorate,
    /// The members are exchanging their copies after a view change.
    #[error("the cluster is synchronizing its configuration after a membership change; retry in a moment")]
    Syncing,
    /// The change does not apply; nothing changed anywhere.
    #[error("refused, nothing changed: {0}")]
    Rejected(String),
    /// The view changed after the change was applied here but before every member confirmed it.
    #[error(
        "the membership changed before every node confirmed the change; it may or may not be in effect: check the configuration before retrying"
    )]
    Indeterminate,
}

/// Inputs.
#[derive(Debug)]
pub enum Input<'a, C> {
    /// A new view from membership (after every old-view delivery).
    View {
        /// Its id.
        ring: RingId,
        /// Its members.
        members: &'a [NodeId],
    },
    /// A replica message delivered by membership.
    Delivered {
        /// Who multicast it.
        from: NodeId,
        /// Its sequence number in the view it was delivered in.
        seq: u64,
        /// The message.
        msg: ReplicaMsg<C>,
    },
    /// Membership: every member of `ring` has received everything up to `upto`.
    Stable {
        /// The view.
        ring: RingId,
        /// Sequence number.
        upto: u64,
    },
    /// A local client asks for `change`; `id` must be unique on this node. `quorate`: the
    /// partition's quorum state now.
    Write {
        /// Request id.
        id: u64,
        /// The change.
        change: C,
        /// Whether the partition is quorate.
        quorate: bool,
    },
}

/// Effects for the driver, in order.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub enum Effect<C> {
    /// Multicast in ordered delivery.
    Broadcast(ReplicaMsg<C>),
    /// Write these bytes durably before running later effects; hand them back to
    /// [`Replica::restore`] after a restart.
    Persist(Vec<u8>),
    /// Answer request `id`.
    Reply {
        /// Request id.
        id: u64,
        /// The version the change made, or why not.
        result: Result<CibVersion, WriteError>,
    },
    /// The document changed (a change applied, or a newer copy adopted).
    Changed(CibVersion),
    /// The members agree on one document for this view; changes are accepted from now on.
    Synced(CibVersion),
}

#[derive(Debug)]
enum SyncState {
    /// No view yet.
    NoView,
    /// Waiting for every member's offer.
    Gathering(BTreeMap<NodeId, (Rank, u64)>),
    /// Waiting for `from`'s whole document (the pieces received so far).
    Awaiting { from: NodeId, got: Vec<u8>, next: u32 },
    /// One document everywhere: changes are applied.
    Synced,
}

#[derive(Debug)]
enum Pending {
    /// Multicast, not delivered yet.
    Sent,
    /// Applied at (ring, seq); acknowledged once stable.
    Applied { ring: RingId, seq: u64, version: CibVersion },
}

/// One member's replica.
#[derive(Debug)]
pub struct Replica<D: Document> {
    me: NodeId,
    doc: D,
    changed_in: Option<RingId>,
    ring: Option<RingId>,
    members: Vec<NodeId>,
    sync: SyncState,
    stable: u64,
    pending: BTreeMap<u64, Pending>,
    piece_bytes: usize,
}

/// FNV-1a, 64 bit: a digest to compare copies (not a security measure).
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl<D: Document> Replica<D> {
    /// A replica starting from `doc`, a copy with no lineage (a new cluster's first document):
    /// any copy that has seen a change ranks above it.
    pub fn new(me: NodeId, doc: D) -> Self {
        Replica {
            me,
            doc,
            changed_in: None,
            ring: None,
            members: Vec::new(),
            sync: SyncState::NoView,
            stable: 0,
            pending: BTreeMap::new(),
            piece_bytes: DEFAULT_PIECE_BYTES,
        }
    }

    /// Sends whole documents in pieces of at most `bytes` (to fit membership's largest message).
    pub fn with_piece_bytes(mut self, bytes: usize) -> Self {
        self.piece_bytes = bytes.max(1);
        self
    }

    /// A replica from what [`Effect::Persist`] wrote before a restart.
    pub fn restore(me: NodeId, bytes: &[u8]) -> Result<Self, String> {
        let saved: Saved = wire::decode(SAVED_WIRE_KIND, bytes).map_err(|e| e.to_string())?;
        let doc = D::decode(&saved.doc)?;
        let mut r = Replica::new(me, doc);
        r.changed_in = saved.changed_in;
        Ok(r)
    }

    /// This copy's rank.
    pub fn rank(&self) -> Rank {
        Rank::of(self.doc.version(), self.changed_in)
    }

    fn persist(&self, doc: Vec<u8>, out: &mut Vec<Effect<D::Change>>) {
        let saved = Saved { changed_in: self.changed_in, doc };
        // Encoding a plain struct into a vector cannot fail.
        out.push(Effect::Persist(wire::encode(SAVED_WIRE_KIND, &saved).unwrap_or_default()));
    }

    /// The current document (authoritative only while [`Replica::is_synced`]).
    pub fn document(&self) -> &D {
        &self.doc
    }

    /// Whether the members agree on one document for the current view.
    pub fn is_synced(&self) -> bool {
        matches!(self.sync, SyncState::Synced)
    }

    /// Feeds one input.
    pub fn handle(&mut self, input: Input<'_, D::Change>, out: &mut Vec<Effect<D::Change>>) {
        match input {
            Input::View { ring, members } => self.on_view(ring, members, out),
            Input::Delivered { from, seq, msg } => self.on_delivered(from, seq, msg, out),
            Input::Stable { ring, upto } => {
                if Some(ring) == self.ring {
                    self.stable = self.stable.max(upto);
                    self.ack_stable(out);
                }
            }
            Input::Write { id, change, quorate } => {
                let refuse = if !quorate {
                    Some(WriteError::NotQuorate)
                } else if !self.is_synced() {
                    Some(WriteError::Syncing)
                } else {
                    None
                };
                match (refuse, self.ring) {
                    (None, Some(ring)) => {
                        let msg = ReplicaMsg::Change { ring, id, change };
                        let size = wire::encode(REPLICA_WIRE_KIND, &msg).map_or(usize::MAX, |b| b.len());
                        if size > self.piece_bytes + CHANGE_SLACK {
                            let why = format!(
                                "the change takes {size} bytes; one change may take at most {} (split it into smaller changes)",
                                self.piece_bytes + CHANGE_SLACK
                            );
                            out.push(Effect::Reply { id, result: Err(WriteError::Rejected(why)) });
                            return;
                        }
                        self.pending.insert(id, Pending::Sent);
                        out.push(Effect::Broadcast(msg));
                    }
                    (e, _) => out.push(Effect::Reply { id, result: Err(e.unwrap_or(WriteError::Syncing)) }),
                }
            }
        }
    }

    fn on_view(&mut self, ring: RingId, members: &[NodeId], out: &mut Vec<Effect<D::Change>>) {
        // Applied but not confirmed by every member of the old view: indeterminate.
        let unconfirmed: Vec<u64> =
            self.pending.iter().filter(|(_, p)| matches!(p, Pending::Applied { .. })).map(|(id, _)| *id).collect();
        for id in unconfirmed {
            self.pending.remove(&id);
            out.push(Effect::Reply { id, result: Err(WriteError::Indeterminate) });
        }
        let mut members = members.to_vec();
        members.sort();
        members.dedup();
        self.ring = Some(ring);
        self.members = members;
        self.stable = 0;
        self.sync = SyncState::Gathering(BTreeMap::new());
        let bytes = self.doc.encode();
        out.push(Effect::Broadcast(ReplicaMsg::Offer { ring, rank: self.rank(), digest: digest(&bytes) }));
    }

    fn on_delivered(&mut self, from: NodeId, seq: u64, msg: ReplicaMsg<D::Change>, out: &mut Vec<Effect<D::Change>>) {
        let current = self.ring;
        match msg {
            ReplicaMsg::Offer { ring, rank, digest: d } => {
                if Some(ring) != current || !self.members.contains(&from) {
                    return;
                }
                let SyncState::Gathering(offers) = &mut self.sync else { return };
                offers.insert(from, (rank, d));
                if !self.members.iter().all(|m| offers.contains_key(m)) {
                    return;
                }
                let offers = std::mem::take(offers);
                // The highest rank; among equals (same lineage and version: the same bytes) the
                // lowest node id (offers iterate by id).
                let Some((&source, &(best, best_digest))) =
                    offers.iter().max_by(|a, b| a.1.0.cmp(&b.1.0).then_with(|| b.0.cmp(a.0)))
                else {
                    return;
                };
                if offers.values().all(|&(v, dg)| v == best && dg == best_digest) {
                    self.sync = SyncState::Synced;
                    out.push(Effect::Synced(self.doc.version()));
                } else {
                    self.sync = SyncState::Awaiting { from: source, got: Vec::new(), next: 0 };
                    if source == self.me {
                        let changed_in = self.changed_in;
                        let doc = self.doc.encode();
                        let pieces: Vec<&[u8]> =
                            if doc.is_empty() { vec![&[][..]] } else { doc.chunks(self.piece_bytes).collect() };
                        let parts = pieces.len() as u32;
                        for (part, bytes) in pieces.into_iter().enumerate() {
                            let bytes = bytes.to_vec();
                            out.push(Effect::Broadcast(ReplicaMsg::Full {
                                ring,
                                changed_in,
                                part: part as u32,
                                parts,
                                bytes,
                            }));
                        }
                    }
                }
            }
            ReplicaMsg::Full { ring, changed_in, part, parts, bytes } => {
                if Some(ring) != current {
                    return;
                }
                let SyncState::Awaiting { from: source, got, next } = &mut self.sync else { return };
                if from != *source || part != *next {
                    return;
                }
                got.extend_from_slice(&bytes);
                *next += 1;
                if *next < parts {
                    return;
                }
                let doc = std::mem::take(got);
                // A copy that does not decode cannot be adopted; the view stays unsynced (every
                // member alike) and the next view change tries again.
                let Ok(newer) = D::decode(&doc) else { return };
                if doc != self.doc.encode() || changed_in != self.changed_in {
                    self.doc = newer;
                    self.changed_in = changed_in;
                    self.persist(doc, out);
                    out.push(Effect::Changed(self.doc.version()));
                }
                self.sync = SyncState::Synced;
                out.push(Effect::Synced(self.doc.version()));
            }
            ReplicaMsg::Change { ring, id, change } => {
                let mine = from == self.me && self.pending.contains_key(&id);
                if Some(ring) != current || !self.is_synced() {
                    if mine {
                        self.pending.remove(&id);
                        out.push(Effect::Reply { id, result: Err(WriteError::Syncing) });
                    }
                    return;
                }
                let Some(ring) = current else { return };
                let mut next = self.doc.clone();
                match next.apply(&change) {
                    Ok(kind) => {
                        let mut v = self.doc.version();
                        match kind {
                            ChangeKind::Config => {
                                v.epoch += 1;
                                v.num_updates = 0;
                            }
                            ChangeKind::Status => v.num_updates += 1,
                        }
                        next.set_version(v);
                        self.doc = next;
                        self.changed_in = Some(ring);
                        self.persist(self.doc.encode(), out);
                        out.push(Effect::Changed(v));
                        if mine {
                            self.pending.insert(id, Pending::Applied { ring, seq, version: v });
                            self.ack_stable(out);
                        }
                    }
                    Err(e) => {
                        if mine {
                            self.pending.remove(&id);
                            out.push(Effect::Reply { id, result: Err(WriteError::Rejected(e)) });
                        }
                    }
                }
            }
        }
    }

    fn ack_stable(&mut self, out: &mut Vec<Effect<D::Change>>) {
        let done: Vec<(u64, CibVersion)> = self
            .pending
            .iter()
            .filter_map(|(id, p)| match p {
                Pending::Applied { ring, seq, version } if Some(*ring) == self.ring && *seq <= self.stable => {
                    Some((*id, *version))
                }
                _ => None,
            })
            .collect();
        for (id, version) in done {
            self.pending.remove(&id);
            out.push(Effect::Reply { id, result: Ok(version) });
        }
    }
}

/// A change to the CIB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CibChange {
    /// Replace the whole `<configuration>` element (checked: it must parse and validate).
    ReplaceConfiguration {
        /// The `<configuration>...</configuration>` XML.
        xml: String,
        /// Refuse unless the document is still at this configuration epoch (lost-update guard:
        /// the client read the configuration at this epoch). `None`: unconditionally.
        if_epoch: Option<u64>,
    },
    /// Replace (or add) one node's `<node_state>` (its operation history and attributes).
    SetNodeState {
        /// The `<node_state ...>...</node_state>` XML.
        xml: String,
    },
    /// An executor records the result of an operation in its node's history (Pacemaker's
    /// `lrm_rsc_op`): the last non-recurring operation as `<rsc>_last_0` (a failure also as
    /// `<rsc>_last_failure_0`), a recurring monitor as `<rsc>_monitor_<interval>`; a successful
    /// stop ends the resource's recurring monitors there.
    RecordOp(Box<OpRecord>),
    /// The DC records cluster membership: each node's `node_state` membership fields change,
    /// its operation history stays; nodes not yet in `<nodes>` are added there. With `dc`, the
    /// DC also records itself (`dc-uuid`): it stays DC while it remains a member.
    SetMembership {
        /// (node id, node name, state).
        nodes: Vec<(String, String, Membership)>,
        /// The DC's node id.
        dc: Option<String>,
    },
    /// A node's executor states what it knows (after joining a view, or starting): its
    /// operation history is replaced by `ops` (the last result of each operation), so the
    /// policy engine never works from a history the node no longer stands behind; an empty
    /// list (a fresh start) makes it probe.
    ReplaceHistory {
        /// The node's id.
        node_id: String,
        /// The node's name.
        node_name: String,
        /// Every operation result it knows, in the order they were recorded.
        ops: Vec<OpRecord>,
        /// The node is shutting down since then (Unix seconds): its `shutdown` attribute,
        /// which makes the policy engine move everything away; `None` clears it.
        shutdown: Option<i64>,
        /// The promotion scores its agents set (`master-<rsc>`, value); any other `master-*`
        /// attribute of the node is removed (it belongs to an earlier life of the node).
        promotion: Vec<(String, String)>,
    },
    /// Sets (or with `None` removes) one of a node's transient attributes (promotion scores
    /// `master-<rsc>` from agents, `crmctl node attribute --lifetime reboot`).
    SetNodeAttribute {
        /// The node's id.
        node_id: String,
        /// The node's name.
        node_name: String,
        /// The attribute.
        name: String,
        /// Its value; `None` removes it.
        value: Option<String>,
    },
    /// A node starts (or stops) shutting down: its `shutdown` transient attribute.
    SetShutdown {
        /// The node's id.
        node_id: String,
        /// The node's name.
        node_name: String,
        /// Since when (Unix seconds); `None` clears it.
        since: Option<i64>,
    },
    /// A node's executor forgets a resource (`crmctl resource cleanup`): its operation history
    /// on that node (clone instances `rsc:N` included) and its fail counts there are removed,
    /// so the policy engine probes it again.
    Cleanup {
        /// The node's id.
        node_id: String,
        /// The resource.
        rsc: String,
    },
    /// The DC records a confirmed fence: the node is down cleanly, its operation history and
    /// transient attributes are gone (nothing runs there any more).
    Fenced {
        /// The node's id.
        node_id: String,
        /// The node's name.
        node_name: String,
    },
}

/// One operation result, as [`CibChange::RecordOp`] records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// The node's id (`node_state id`).
    pub node_id: String,
    /// The node's name.
    pub node_name: String,
    /// Resource id (for a clone instance, `rsc:N`).
    pub rsc: String,
    /// Agent class, provider and type.
    pub class: String,
    /// OCF provider.
    pub provider: Option<String>,
    /// Agent type.
    pub agent: String,
    /// start, stop, monitor, promote, demote, ...
    pub operation: String,
    /// Recurring interval (0: one-shot).
    pub interval_ms: u64,
    /// The agent's exit code.
    pub rc: i32,
    /// 0 done, -1 pending, 1 cancelled, 2 timed out, 4 error (Pacemaker's op-status).
    pub op_status: i32,
    /// The executor's call number on that node.
    pub call_id: i64,
    /// `action:transition:target_rc:dc` of the transition that asked for it, if any.
    pub transition_key: Option<String>,
    /// When the result changed (Unix seconds).
    pub last_rc_change: i64,
    /// How long it ran.
    pub exec_ms: u64,
    /// The agent's reason, on failure.
    pub exit_reason: Option<String>,
    /// The digest of the parameters the operation ran with ([`crate::digest::action_digest`]),
    /// recorded as `op-digest`: the scheduler compares it with the resource's parameters now
    /// to find definition changes. `None` records no digest (no change is ever inferred).
    pub op_digest: Option<String>,
}

/// A node's membership as the DC records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Membership {
    /// In the view, its controller running.
    Member,
    /// Left cleanly (shut down on purpose): nothing to fence.
    Left,
    /// Gone without leaving (crashed, cut off, hung) while expected up: to be fenced before its
    /// resources move.
    Lost,
}

impl Membership {
    /// `(in_ccm, crmd, join, expected)` as Pacemaker writes them.
    fn fields(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Membership::Member => ("true", "online", "member", "member"),
            Membership::Left => ("false", "offline", "down", "down"),
            Membership::Lost => ("false", "offline", "down", "member"),
        }
    }

    /// Whether `state` already records this. A lost node recorded as down cleanly has been
    /// fenced since ([`CibChange::Fenced`]): that record stands until it is a member again.
    pub fn recorded_in(self, state: &NodeState) -> bool {
        if self == Membership::Lost && Membership::Left.recorded_in(state) {
            return true;
        }
        let (ccm, crmd, join, expected) = self.fields();
        state.in_ccm.as_deref() == Some(ccm)
            && state.crmd.as_deref() == Some(crmd)
            && state.join.as_deref() == Some(join)
            && state.expected.as_deref() == Some(expected)
    }
}

/// Parses `<cib><configuration/>...<status>{status}</status></cib>` around a fragment.
fn parse_fragment(configuration: &str, status: &str) -> Result<Cib, String> {
    let text = format!("<cib><configuration>{configuration}</configuration><status>{status}</status></cib>");
    crate::cib::parse_cib(&text).map(|(c, _)| c).map_err(|e| e.to_string())
}

fn inner_of<'a>(xml: &'a str, tag: &str) -> Result<&'a str, String> {
    let t = xml.trim();
    let open_end = t.find('>').ok_or_else(|| format!("expected a <{tag}> element"))?;
    if !t.starts_with(&format!("<{tag}")) {
        return Err(format!("expected a <{tag}> element"));
    }
    if t[..=open_end].ends_with("/>") {
        return Ok("");
    }
    let close = format!("</{tag}>");
    let inner = t[open_end + 1..].strip_suffix(&close).ok_or_else(|| format!("<{tag}> is not closed at the end"))?;
    Ok(inner)
}

impl Document for Cib {
    type Change = CibChange;

    fn version(&self) -> CibVersion {
        self.version
    }

    fn set_version(&mut self, v: CibVersion) {
        self.version = v;
    }

    fn apply(&mut self, change: &CibChange) -> Result<ChangeKind, String> {
        match change {
            CibChange::ReplaceConfiguration { xml, if_epoch } => {
                if let Some(e) = if_epoch
                    && *e != self.version.epoch
                {
                    return Err(format!(
                        "the configuration changed meanwhile (epoch {} now, {e} when read); read it again and redo the change",
                        self.version.epoch
                    ));
                }
                let parsed = parse_fragment(inner_of(xml, "configuration")?, "")?;
                let mut next = self.clone();
                next.config = parsed.config;
                let problems: Vec<String> = crate::cib::validate(&next).iter().map(ToString::to_string).collect();
                if !problems.is_empty() {
                    return Err(problems.join("; "));
                }
                *self = next;
                Ok(ChangeKind::Config)
            }
            CibChange::SetNodeState { xml } => {
                let parsed = parse_fragment("", xml)?;
                let [state]: [NodeState; 1] =
                    parsed.status.try_into().map_err(|_| "expected exactly one <node_state> element".to_string())?;
                if state.id.is_empty() {
                    return Err("node_state: the id attribute is missing".into());
                }
                match self.status.iter_mut().find(|s| s.id == state.id) {
                    Some(s) => *s = state,
                    None => self.status.push(state),
                }
                Ok(ChangeKind::Status)
            }
            CibChange::RecordOp(r) => {
                record_op(self, r)?;
                Ok(ChangeKind::Status)
            }
            CibChange::ReplaceHistory { node_id, node_name, ops, shutdown, promotion } => {
                if node_id.is_empty() || node_name.is_empty() {
                    return Err("a node needs an id and a name".into());
                }
                if let Some(o) = ops.iter().find(|o| &o.node_id != node_id) {
                    return Err(format!("an operation of node {} in the history of node {node_id}", o.node_id));
                }
                let mut next = self.clone();
                if let Some(state) = next.status.iter_mut().find(|s| &s.id == node_id) {
                    state.resources.clear();
                }
                for o in ops {
                    record_op_history(&mut next, o)?;
                }
                set_shutdown(&mut next, node_id, node_name, *shutdown);
                if let Some(state) = next.status.iter_mut().find(|s| &s.id == node_id) {
                    for set in &mut state.transient {
                        set.pairs.retain(|p| !p.name.starts_with("master-"));
                    }
                }
                for (name, value) in promotion {
                    if !name.starts_with("master-") {
                        return Err(format!("{name} is not a promotion score (master-<rsc>)"));
                    }
                    set_transient(&mut next, node_id, node_name, name, Some(value.clone()));
                }
                *self = next;
                Ok(ChangeKind::Status)
            }
            CibChange::SetNodeAttribute { node_id, node_name, name, value } => {
                if node_id.is_empty() || node_name.is_empty() || name.is_empty() {
                    return Err("a node attribute needs a node id, a node name and a name".into());
                }
                set_transient(self, node_id, node_name, name, value.clone());
                Ok(ChangeKind::Status)
            }
            CibChange::SetShutdown { node_id, node_name, since } => {
                if node_id.is_empty() || node_name.is_empty() {
                    return Err("a node needs an id and a name".into());
                }
                set_shutdown(self, node_id, node_name, *since);
                Ok(ChangeKind::Status)
            }
            CibChange::Cleanup { node_id, rsc } => {
                if rsc.is_empty() {
                    return Err("cleanup needs a resource".into());
                }
                let Some(state) = self.status.iter_mut().find(|s| &s.id == node_id) else {
                    return Ok(ChangeKind::Status);
                };
                state.resources.retain(|r| !same_resource(&r.id, rsc));
                for set in &mut state.transient {
                    set.pairs.retain(|p| {
                        let named = ["fail-count-", "last-failure-"]
                            .iter()
                            .find_map(|prefix| p.name.strip_prefix(prefix))
                            .map(|rest| rest.split('#').next().unwrap_or(rest));
                        !named.is_some_and(|n| same_resource(n, rsc))
                    });
                }
                Ok(ChangeKind::Status)
            }
            CibChange::Fenced { node_id, node_name } => {
                if node_id.is_empty() || node_name.is_empty() {
                    return Err("a fenced node needs an id and a name".into());
                }
                let state = node_state_mut(self, node_id, node_name);
                let (ccm, crmd, join, expected) = Membership::Left.fields();
                state.in_ccm = Some(ccm.into());
                state.crmd = Some(crmd.into());
                state.join = Some(join.into());
                state.expected = Some(expected.into());
                state.resources.clear();
                state.transient.clear();
                Ok(ChangeKind::Status)
            }
            CibChange::SetMembership { nodes, dc } => {
                let mut kind = ChangeKind::Status;
                if let Some(dc) = dc {
                    self.dc_uuid = Some(dc.clone());
                }
                for (id, uname, m) in nodes {
                    if id.is_empty() || uname.is_empty() {
                        return Err("a node needs an id and a name".into());
                    }
                    if !self.config.nodes.iter().any(|n| &n.id == id) {
                        self.config.nodes.push(crate::cib::NodeConfig {
                            id: id.clone(),
                            uname: uname.clone(),
                            ..Default::default()
                        });
                        kind = ChangeKind::Config;
                    }
                    let (ccm, crmd, join, expected) = m.fields();
                    let state = match self.status.iter_mut().position(|s| &s.id == id) {
                        Some(i) => &mut self.status[i],
                        None => {
                            self.status.push(NodeState { id: id.clone(), ..Default::default() });
                            let last = self.status.len() - 1;
                            &mut self.status[last]
                        }
                    };
                    state.uname = Some(uname.clone());
                    state.in_ccm = Some(ccm.into());
                    state.crmd = Some(crmd.into());
                    state.join = Some(join.into());
                    state.expected = Some(expected.into());
                }
                Ok(kind)
            }
        }
    }

    fn encode(&self) -> Vec<u8> {
        crate::cib::to_xml(self).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        crate::cib::parse_cib(text).map(|(c, _)| c).map_err(|e| e.to_string())
    }
}

/// The `<configuration>` element of `text`: a whole Pacemaker CIB (its configuration is taken,
/// in this project's canonical form) or a bare `<configuration>` element (taken as it is).
pub fn configuration_of(text: &str) -> Result<String, String> {
    let mut t = text.trim();
    // Leading XML declaration and comments are not part of the element.
    loop {
        if t.starts_with("<?") {
            t = t.find("?>").map_or(t, |i| t[i + 2..].trim_start());
        } else if t.starts_with("<!--") {
            t = t.find("-->").map_or(t, |i| t[i + 3..].trim_start());
        } else {
            break;
        }
    }
    if t.starts_with("<configuration") {
        return Ok(t.to_string());
    }
    let (cib, _) = crate::cib::parse_cib(t).map_err(|e| e.to_string())?;
    let xml = crate::cib::to_xml(&cib);
    let start = xml.find("<configuration").ok_or("the CIB has no <configuration> element")?;
    let end = xml.rfind("</configuration>").ok_or("the CIB has no <configuration> element")?;
    Ok(xml[start..end + "</configuration>".len()].to_string())
}

/// Checks a `<configuration>` element the way a replica will when the change arrives, and
/// says in a few words what it holds.
pub fn check_configuration(configuration: &str) -> Result<String, String> {
    let mut cib = Cib::default();
    cib.apply(&CibChange::ReplaceConfiguration { xml: configuration.to_string(), if_epoch: None })?;
    let c = &cib.config;
    Ok(format!(
        "{} node{}, {} resource{}, {} constraint{}",
        c.nodes.len(),
        if c.nodes.len() == 1 { "" } else { "s" },
        c.resources.len(),
        if c.resources.len() == 1 { "" } else { "s" },
        c.constraints.len(),
        if c.constraints.len() == 1 { "" } else { "s" }
    ))
}

/// Sets or clears a node's `shutdown` transient attribute.
fn set_shutdown(cib: &mut Cib, node_id: &str, node_name: &str, since: Option<i64>) {
    set_transient(cib, node_id, node_name, "shutdown", since.map(|t| t.to_string()));
}

/// Sets or removes one transient attribute of a node.
fn set_transient(cib: &mut Cib, node_id: &str, node_name: &str, name: &str, value: Option<String>) {
    let state = node_state_mut(cib, node_id, node_name);
    match value {
        Some(v) => {
            if state.transient.is_empty() {
                state.transient.push(crate::cib::NvSet { id: format!("status-{node_id}"), ..Default::default() });
            }
            let set = &mut state.transient[0];
            match set.pairs.iter_mut().find(|p| p.name == name) {
                Some(p) => p.value = Some(v),
                None => set.pairs.push(crate::cib::NvPair {
                    id: format!("status-{node_id}-{name}"),
                    name: name.to_string(),
                    value: Some(v),
                }),
            }
        }
        None => {
            for set in &mut state.transient {
                set.pairs.retain(|p| p.name != name);
            }
        }
    }
}

/// The DC of a view: the one recorded in the synchronized CIB (`dc-uuid`) while it is a member
/// (a DC stays DC across membership changes that keep it), else the lowest node id of the view.
/// Every member computes the same from the same copy. `doc` is `None` while unsynchronized.
pub fn dc_of(doc: Option<&Cib>, members: &[wire::NodeId]) -> Option<wire::NodeId> {
    let recorded = doc.and_then(|d| d.dc_uuid.as_deref()).and_then(|d| d.parse().ok()).map(wire::NodeId);
    match recorded {
        Some(r) if members.contains(&r) => Some(r),
        _ => members.iter().min().copied(),
    }
}

/// What the DC `me` must record of membership now: the nodes whose `node_state` does not
/// say what `known` says (or that are missing from `<nodes>`), and itself as DC if not yet
/// recorded; `None` when the CIB already says it all. A lost node recorded as down cleanly
/// since (fenced) stays so until it is a member again.
pub fn membership_change(
    doc: &Cib,
    me: wire::NodeId,
    known: &BTreeMap<wire::NodeId, Membership>,
    name_of: impl Fn(wire::NodeId) -> Option<String>,
) -> Option<CibChange> {
    let me_id = me.0.to_string();
    let dc_recorded = doc.dc_uuid.as_deref() == Some(me_id.as_str());
    let nodes: Vec<(String, String, Membership)> = known
        .iter()
        .filter_map(|(id, m)| {
            let key = id.0.to_string();
            let recorded = doc.status.iter().find(|s| s.id == key).is_some_and(|s| m.recorded_in(s));
            let in_config = doc.config.nodes.iter().any(|n| n.id == key);
            (!recorded || !in_config).then(|| Some((key, name_of(*id)?, *m))).flatten()
        })
        .collect();
    if nodes.is_empty() && dc_recorded {
        return None;
    }
    Some(CibChange::SetMembership { nodes, dc: (!dc_recorded).then_some(me_id) })
}

/// `id` names `rsc` or one of its clone instances (`rsc:N`).
pub fn same_resource(id: &str, rsc: &str) -> bool {
    id == rsc || id.strip_prefix(rsc).and_then(|r| r.strip_prefix(':')).is_some_and(|n| n.parse::<u32>().is_ok())
}

fn node_state_mut<'a>(cib: &'a mut Cib, id: &str, name: &str) -> &'a mut NodeState {
    match cib.status.iter().position(|s| s.id == id) {
        Some(i) => &mut cib.status[i],
        None => {
            cib.status.push(NodeState { id: id.to_string(), uname: Some(name.to_string()), ..Default::default() });
            let last = cib.status.len() - 1;
            &mut cib.status[last]
        }
    }
}

/// Records a new result: the history entry, and for a failure the node's fail count for the
/// operation (`fail-count-<rsc>#<op>_<interval>`, INFINITY for a failed start while
/// `start-failure-is-fatal` holds, as it does by default) and `last-failure-...`.
fn record_op(cib: &mut Cib, r: &OpRecord) -> Result<(), String> {
    let fatal_start = !cib.config.properties.iter().filter(|s| s.rule.is_none()).any(|s| {
        s.pairs.iter().any(|p| {
            p.name == "start-failure-is-fatal"
                && p.value
                    .as_deref()
                    .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "false" | "no" | "off" | "0" | "n"))
        })
    });
    record_op_history(cib, r)?;
    let probe = r.operation == "monitor" && r.interval_ms == 0;
    let expected =
        r.transition_key.as_deref().and_then(|k| k.split(':').nth(2)).and_then(|v| v.parse().ok()).unwrap_or(0);
    let failed = match r.op_status {
        -1 => false,
        0 if probe => !matches!(r.rc, 0 | 7 | 8),
        0 => r.rc != expected,
        _ => true,
    };
    if !failed {
        return Ok(());
    }
    let state = node_state_mut(cib, &r.node_id, &r.node_name);
    if state.transient.is_empty() {
        state.transient.push(crate::cib::NvSet { id: format!("status-{}", r.node_id), ..Default::default() });
    }
    let set = &mut state.transient[0];
    let suffix = format!("{}#{}_{}", r.rsc, r.operation, r.interval_ms);
    let count_name = format!("fail-count-{suffix}");
    let old =
        set.pairs.iter().find(|p| p.name == count_name).and_then(|p| p.value.as_deref()).and_then(crate::Score::parse);
    let count = if r.operation == "start" && fatal_start {
        crate::Score::INF
    } else {
        old.unwrap_or(crate::Score::ZERO).plus(crate::Score::new(1))
    };
    for (name, value) in
        [(count_name, count.to_string()), (format!("last-failure-{suffix}"), r.last_rc_change.to_string())]
    {
        match set.pairs.iter_mut().find(|p| p.name == name) {
            Some(p) => p.value = Some(value),
            None => set.pairs.push(crate::cib::NvPair {
                id: format!("status-{}-{name}", r.node_id),
                name,
                value: Some(value),
            }),
        }
    }
    Ok(())
}

/// Writes a result into the node's operation history.
fn record_op_history(cib: &mut Cib, r: &OpRecord) -> Result<(), String> {
    if r.node_id.is_empty() || r.rsc.is_empty() || r.operation.is_empty() {
        return Err("an operation record needs a node id, a resource and an operation".into());
    }
    let state = node_state_mut(cib, &r.node_id, &r.node_name);
    let res = match state.resources.iter().position(|x| x.id == r.rsc) {
        Some(i) => &mut state.resources[i],
        None => {
            state.resources.push(crate::cib::LrmResource { id: r.rsc.clone(), ..Default::default() });
            let last = state.resources.len() - 1;
            &mut state.resources[last]
        }
    };
    res.class = Some(r.class.clone());
    res.provider = r.provider.clone();
    res.agent = Some(r.agent.clone());
    let target_rc = r.transition_key.as_deref().and_then(|k| k.split(':').nth(2)).and_then(|v| v.parse().ok());
    let make = |id: String| {
        let mut extra = vec![("exec-time".to_string(), r.exec_ms.to_string())];
        if let Some(k) = &r.transition_key {
            extra.push(("transition-key".to_string(), k.clone()));
        }
        if let Some(d) = &r.op_digest {
            extra.push(("op-digest".to_string(), d.clone()));
        }
        crate::cib::LrmOp {
            id,
            operation: r.operation.clone(),
            interval_ms: r.interval_ms,
            rc: r.rc,
            op_status: r.op_status,
            call_id: r.call_id,
            target_rc,
            last_rc_change: Some(r.last_rc_change),
            exit_reason: r.exit_reason.clone(),
            on_node: Some(r.node_name.clone()),
            extra,
        }
    };
    let put = |ops: &mut Vec<crate::cib::LrmOp>, op: crate::cib::LrmOp| match ops.iter().position(|o| o.id == op.id) {
        Some(i) => ops[i] = op,
        None => ops.push(op),
    };
    let expected = target_rc.unwrap_or(0);
    let failed = r.op_status != 0 || (r.rc != expected && !(r.operation == "monitor" && r.interval_ms == 0));
    if r.interval_ms > 0 {
        put(&mut res.ops, make(format!("{}_{}_{}", r.rsc, r.operation, r.interval_ms)));
    } else {
        put(&mut res.ops, make(format!("{}_last_0", r.rsc)));
        if r.operation == "stop" && r.rc == 0 && r.op_status == 0 {
            let failure = format!("{}_last_failure_0", r.rsc);
            res.ops.retain(|o| o.interval_ms == 0 || o.id == failure);
        }
    }
    if failed && r.op_status != -1 {
        put(&mut res.ops, make(format!("{}_last_failure_0", r.rsc)));
    }
    Ok(())
}
