//! The ring: gather, commit (with recovery folded into the commit token), operational.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use wire::{Duration, Instant, LinkId, NodeId, RingId};

use crate::config::Config;
use crate::events::Event;
use crate::links::{LinkState, Links};
use crate::packet::{self, Body, CommitToken, Join, Mcast, MemberInfo, Packet, Token};

/// An input to [`Membership::handle`].
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram from `from` (authenticated by the transport) on `link`.
    Datagram {
        /// The authenticated sender.
        from: NodeId,
        /// The link it arrived on.
        link: LinkId,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The deadline of [`Membership::next_wakeup`] has passed (possibly late).
    Wakeup,
    /// Multicast `payload` in total order to the current view (queued until the token comes).
    Broadcast(Vec<u8>),
    /// Leave the cluster cleanly: peers re-form at once; this node delivers nothing afterwards.
    Leave,
}

/// Something the driver must do. Execute them in order (a `Persist` before the `Transmit`s that
/// follow it).
#[must_use]
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send a datagram.
    Transmit {
        /// Receiver.
        to: NodeId,
        /// Link to send it on.
        link: LinkId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A message delivered in total order.
    Deliver {
        /// The ring (view) it was sent in.
        ring: RingId,
        /// The node that broadcast it.
        sender: NodeId,
        /// Its sequence number in that ring.
        seq: u64,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A new view was installed. Every old-view message this node will ever deliver has been
    /// delivered before this effect.
    ViewChanged(View),
    /// Write this durably before sending anything else.
    Persist(PersistedState),
    /// Every member of `ring` has received every message of it up to `upto`, and this node has
    /// delivered them: whichever members survive a failure deliver them too (the basis of a
    /// durable acknowledgement, "safe" delivery in Totem's terms).
    Stable {
        /// The ring.
        ring: RingId,
        /// The highest sequence number received by all.
        upto: u64,
    },
    /// A link to a peer changed state.
    LinkStatus {
        /// The peer.
        peer: NodeId,
        /// The link.
        link: LinkId,
        /// Up or down.
        up: bool,
    },
}

/// An agreed view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// Its id.
    pub ring: RingId,
    /// Members in ring order (ascending node id).
    pub members: Vec<NodeId>,
    /// The view this node had before, if any.
    pub prev_ring: Option<RingId>,
    /// Members that came here from `prev_ring` together with this node (the transitional
    /// configuration): they delivered exactly the same messages of `prev_ring`.
    pub transitional: Vec<NodeId>,
    /// Nodes that were not in `prev_ring` (this node excepted).
    pub joined: Vec<NodeId>,
    /// Members of `prev_ring` that are gone, and why.
    pub departed: Vec<(NodeId, Departure)>,
}

/// Why a node is no longer a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Departure {
    /// It announced a clean leave.
    Left,
    /// It sent no join while the members gathered (crashed, paused or cut off).
    Silent,
    /// Its joins kept disagreeing until the consensus timeout (asymmetric connectivity).
    NoAgreement,
    /// It declared this node failed (it cannot hear us).
    ExcludedUs,
    /// Another member reported it failed.
    ReportedBy(NodeId),
    /// It formed or joined another ring without us.
    Elsewhere,
}

impl std::fmt::Display for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Departure::Left => write!(f, "left cleanly"),
            Departure::Silent => write!(f, "failed: sent nothing while the members gathered"),
            Departure::NoAgreement => write!(f, "failed: could not agree on the membership in time"),
            Departure::ExcludedUs => write!(f, "failed: it could not hear this node"),
            Departure::ReportedBy(n) => write!(f, "failed: reported unreachable by node {n}"),
            Departure::Elsewhere => write!(f, "failed: it went into another partition"),
        }
    }
}

/// What survives a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Highest ring sequence number used or seen, so ring ids keep growing.
    pub ring_seq: u64,
}

const PERSIST_KIND: u8 = 17;

impl PersistedState {
    /// The durable encoding (a checksummed `wire` frame).
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(PERSIST_KIND, self).unwrap_or_default()
    }

    /// Decodes [`PersistedState::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, wire::DecodeError> {
        wire::decode(PERSIST_KIND, bytes)
    }
}

/// The protocol phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Looking for members.
    Gather,
    /// A new ring is being committed.
    Commit,
    /// A view is installed and the token circulates.
    Operational,
    /// Left the cluster.
    Left,
}

/// Counters for the status report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Datagrams handled.
    pub packets_in: u64,
    /// Datagrams sent.
    pub packets_out: u64,
    /// Datagrams that did not decode (dropped).
    pub malformed: u64,
    /// Datagrams of another cluster or from an unknown node (dropped).
    pub foreign: u64,
    /// Tokens or messages of a ring other than ours (dropped).
    pub stale: u64,
    /// Tokens processed.
    pub tokens: u64,
    /// Tokens sent again for lack of an acknowledgement.
    pub token_retransmits: u64,
    /// Messages sent again on request.
    pub retransmits: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Views installed.
    pub views: u64,
    /// Token losses detected.
    pub token_losses: u64,
    /// Local stalls detected (pauses, clock jumps): peers were not blamed.
    pub stalls: u64,
    /// Broadcasts refused because the queue was full or the payload too big.
    pub rejected: u64,
}

/// A snapshot for `crmctl membership status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub node: NodeId,
    /// The phase.
    pub phase: Phase,
    /// The installed view, if any.
    pub ring: Option<RingId>,
    /// Its members.
    pub members: Vec<NodeId>,
    /// Per peer, per link state.
    pub links: Vec<(NodeId, Vec<LinkState>)>,
    /// The token timeout in use (adaptive).
    pub token_timeout: Duration,
    /// Smoothed token rotation time.
    pub rotation: Duration,
    /// Broadcasts queued.
    pub pending: usize,
    /// Counters.
    pub counters: Counters,
}

#[derive(Debug)]
struct Gather {
    start: Instant,
    /// When each candidate became one (the silence deadline counts from here).
    added: BTreeMap<NodeId, Instant>,
    proc_set: BTreeSet<NodeId>,
    fail_set: BTreeMap<NodeId, Departure>,
    joins: BTreeMap<NodeId, Join>,
    next_join: Instant,
    consensus_deadline: Instant,
}

#[derive(Debug)]
struct Committing {
    ring: RingId,
    members: Vec<NodeId>,
    deadline: Instant,
    /// Old-ring messages to deliver when the ring is installed, frozen when contributing.
    snapshot: BTreeMap<u64, Mcast>,
    /// Departure reasons from the gather, for the view report.
    reasons: BTreeMap<NodeId, Departure>,
    /// Old-ring messages received from other members during the commit.
    recovered: BTreeMap<u64, Mcast>,
    /// Old-ring messages this node must have before installing, and whom to ask for each.
    need: BTreeMap<u64, NodeId>,
    /// The last rotation's token, held until `need` is met.
    hold: Option<CommitToken>,
    /// The second rotation has been seen (recovery planned).
    planned: bool,
    next_request: Instant,
}

#[derive(Debug)]
struct Outstanding {
    to: NodeId,
    ring: RingId,
    token_seq: u64,
    commit: bool,
    bytes: Vec<u8>,
    next: Instant,
}

/// The membership and ordered-delivery core of one node.
#[derive(Debug)]
pub struct Membership {
    cfg: Config,
    me: NodeId,
    cluster: u32,
    phase: Phase,
    /// Highest ring seq used or seen.
    max_seq: u64,
    /// Without a disk, the first ring this node forms skips ahead by a random amount: it may have
    /// formed rings before its disk was lost, and must not reuse one of their ids.
    fresh_jump: u64,
    /// The installed ring (or the pre-boot placeholder with no members).
    ring: RingId,
    members: Vec<NodeId>,
    installed: bool,
    // Ordered delivery within `ring`.
    held: BTreeMap<u64, Mcast>,
    delivered: u64,
    aru: u64,
    stable: u64,
    pending: VecDeque<Vec<u8>>,
    // Token.
    last_token_seq: u64,
    token_at: Instant,
    rotation: Duration,
    outstanding: Option<Outstanding>,
    held_token: Option<(Instant, Token)>,
    /// Rep of a new ring: the commit token's last rotation has not come back yet.
    awaiting_last_rotation: bool,
    /// The previous ring's messages, kept after installing to answer late recovery requests.
    prev_store: Option<(RingId, BTreeMap<u64, Mcast>)>,
    gather: Option<Gather>,
    commit: Option<Committing>,
    links: Links,
    next_merge: Instant,
    backoff: BTreeMap<NodeId, Instant>,
    leaving: BTreeSet<NodeId>,
    expected_wakeup: Option<Instant>,
    started: bool,
    counters: Counters,
}

/// Splits messages into groups of at most `batch_bytes` of payload (a single larger message
/// goes alone), one group per datagram.
fn chunk_messages(msgs: Vec<Mcast>, batch_bytes: usize) -> Vec<Vec<Mcast>> {
    let mut chunks = Vec::new();
    let mut chunk: Vec<Mcast> = Vec::new();
    let mut size = 0;
    for m in msgs {
        if !chunk.is_empty() && size + m.payload.len() > batch_bytes {
            chunks.push(std::mem::take(&mut chunk));
            size = 0;
        }
        size += m.payload.len();
        chunk.push(m);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Membership {
    /// A node that starts gathering on its first [`Membership::handle`] call. `persisted` is the
    /// last [`Effect::Persist`] written, if any. Without it (a new or wiped disk) every ring this
    /// node forms skips ahead by an amount drawn from `seed` (up to 2^34), so a representative
    /// whose disk was lost does not reuse a ring id it formed before, even when every other
    /// member of that ring lost its disk too (skipping only once let the second ring it formed
    /// land on `max + 4` again).
    /// `cfg` must have passed [`Config::validate`].
    pub fn new(cfg: Config, persisted: Option<PersistedState>, seed: u64) -> Self {
        let me = cfg.node_id;
        let (max_seq, fresh_jump) = match persisted {
            Some(p) => (p.ring_seq, 0),
            None => (0, (splitmix(seed) >> 30) & !3),
        };
        let links = Links::new(me, &cfg.nodes, cfg.links);
        Membership {
            cluster: packet::cluster_tag(&cfg.cluster_name),
            me,
            phase: Phase::Gather,
            max_seq,
            fresh_jump,
            ring: RingId::new(me, 0),
            members: Vec::new(),
            installed: false,
            held: BTreeMap::new(),
            delivered: 0,
            aru: 0,
            stable: 0,
            pending: VecDeque::new(),
            last_token_seq: 0,
            token_at: Instant::ZERO,
            rotation: Duration::ZERO,
            outstanding: None,
            held_token: None,
            awaiting_last_rotation: false,
            prev_store: None,
            gather: None,
            commit: None,
            links,
            next_merge: Instant::ZERO,
            backoff: BTreeMap::new(),
            leaving: BTreeSet::new(),
            expected_wakeup: None,
            started: false,
            counters: Counters::default(),
            cfg,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The installed view's ring id and members, if a view is installed.
    pub fn view(&self) -> Option<(RingId, &[NodeId])> {
        (self.installed && self.phase != Phase::Left).then_some((self.ring, &self.members[..]))
    }

    /// Broadcasts queued and not yet sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// A status snapshot.
    pub fn status(&self) -> Status {
        Status {
            node: self.me,
            phase: self.phase,
            ring: self.installed.then_some(self.ring),
            members: self.members.clone(),
            links: self.links.peers().map(|(p, v)| (*p, v.clone())).collect(),
            token_timeout: self.token_timeout(),
            rotation: self.rotation,
            pending: self.pending.len(),
            counters: self.counters,
        }
    }

    fn token_timeout(&self) -> Duration {
        self.cfg.effective_token_timeout(self.rotation)
    }

    /// Call on every input. Afterwards call [`Membership::next_wakeup`] again: it may have moved.
    pub fn handle(&mut self, now: Instant, input: Input<'_>, out: &mut Vec<Effect>) {
        if self.phase == Phase::Left {
            return;
        }
        if !self.started {
            self.started = true;
            self.links.next_ping = now;
            self.next_merge = now;
            let all: BTreeSet<NodeId> = self.cfg.nodes.iter().copied().collect();
            self.enter_gather(now, all, BTreeMap::new(), out);
        } else {
            self.detect_stall(now);
        }
        match input {
            Input::Datagram { from, link, bytes } => self.on_datagram(now, from, link, bytes, out),
            Input::Wakeup => {}
            Input::Broadcast(payload) => self.on_broadcast(now, payload, out),
            Input::Leave => {
                self.leave(out);
                return;
            }
        }
        self.on_timers(now, out);
        self.expected_wakeup = self.next_wakeup();
    }

    /// The earliest time this node needs [`Input::Wakeup`], if any.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.phase == Phase::Left {
            return None;
        }
        if !self.started {
            return Some(Instant::ZERO);
        }
        let mut t = vec![self.links.next_ping];
        if let Some(e) = self.links.next_expiry(self.cfg.link_timeout) {
            t.push(e);
        }
        if let Some(o) = &self.outstanding {
            t.push(o.next);
        }
        if let Some((at, _)) = &self.held_token {
            t.push(*at);
        }
        match self.phase {
            Phase::Gather => {
                if let Some(g) = &self.gather {
                    t.push(g.next_join);
                    t.push(g.consensus_deadline);
                    for n in Self::candidates(g) {
                        if n != self.me && !g.joins.contains_key(&n) {
                            let since = g.added.get(&n).copied().unwrap_or(g.start).max(g.start);
                            t.push(since + self.cfg.join_timeout);
                        }
                    }
                }
            }
            Phase::Commit => {
                if let Some(c) = &self.commit {
                    t.push(c.deadline);
                    if c.planned && !c.need.is_empty() {
                        t.push(c.next_request);
                    }
                }
            }
            Phase::Operational => {
                if self.members.len() > 1 {
                    t.push(self.token_at + self.token_timeout());
                }
                if self.is_rep() {
                    t.push(self.next_merge);
                }
            }
            Phase::Left => {}
        }
        t.into_iter().min()
    }

    fn is_rep(&self) -> bool {
        self.members.first() == Some(&self.me)
    }

    // ----- stalls ------------------------------------------------------------------------

    /// A call far later than the deadline we asked for means this node did not run (SIGSTOP, an
    /// overloaded CPU, a VM pause, a clock jump). Nobody else is to blame: restart our own
    /// failure timers from now.
    fn detect_stall(&mut self, now: Instant) {
        let Some(expected) = self.expected_wakeup else { return };
        if now <= expected + self.cfg.stall_threshold {
            return;
        }
        let late = now - expected;
        self.counters.stalls += 1;
        Event::Stall { node: self.me, late_ms: late.as_millis() }.log();
        self.token_at = now;
        if let Some(g) = &mut self.gather {
            g.start = now;
            g.joins.clear();
            g.consensus_deadline = now + self.cfg.consensus_timeout;
        }
        if let Some(c) = &mut self.commit {
            c.deadline = now + self.cfg.commit_timeout;
        }
        self.links.forgive(now);
        self.expected_wakeup = None;
    }

    // ----- sending -----------------------------------------------------------------------

    fn send(&mut self, to: NodeId, link: LinkId, body: Body, out: &mut Vec<Effect>) {
        let bytes = packet::encode(&Packet { cluster: self.cluster, body });
        self.counters.packets_out += 1;
        out.push(Effect::Transmit { to, link, bytes });
    }

    fn send_best(&mut self, to: NodeId, body: Body, out: &mut Vec<Effect>) {
        let link = self.links.best(to);
        self.send(to, link, body, out);
    }

    fn send_all_links(&mut self, to: NodeId, bytes: &[u8], out: &mut Vec<Effect>) {
        for link in self.links.link_ids() {
            self.counters.packets_out += 1;
            out.push(Effect::Transmit { to, link, bytes: bytes.to_vec() });
        }
    }

    /// Sends a token (or commit token) to `to` and keeps it for retransmission until acknowledged.
    fn send_token(&mut self, now: Instant, to: NodeId, body: Body, out: &mut Vec<Effect>) {
        let (ring, token_seq, commit) = match &body {
            Body::Commit(c) => (c.ring, c.hop, true),
            Body::Token(t) => (t.ring, t.token_seq, false),
            _ => return,
        };
        let bytes = packet::encode(&Packet { cluster: self.cluster, body });
        let link = self.links.best(to);
        self.counters.packets_out += 1;
        out.push(Effect::Transmit { to, link, bytes: bytes.clone() });
        self.outstanding =
            Some(Outstanding { to, ring, token_seq, commit, bytes, next: now + self.cfg.token_retransmit });
    }

    fn next_member(&self, members: &[NodeId]) -> NodeId {
        let i = members.iter().position(|&m| m == self.me).unwrap_or(0);
        members[(i + 1) % members.len()]
    }

    // ----- inputs ------------------------------------------------------------------------

    fn on_datagram(&mut self, now: Instant, from: NodeId, link: LinkId, bytes: &[u8], out: &mut Vec<Effect>) {
        self.counters.packets_in += 1;
        let p = match packet::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.counters.malformed += 1;
                Event::Malformed { from, link, error: &e }.log();
                return;
            }
        };
        if p.cluster != self.cluster || from == self.me || !self.cfg.nodes.contains(&from) {
            self.counters.foreign += 1;
            return;
        }
        self.links.heard(now, from, link);
        match p.body {
            Body::Ping { hear } => self.links.ping(from, link, hear),
            Body::Mcast(m) => self.on_mcast(m, out),
            Body::Recover(ms) => self.on_recover(now, ms, out),
            Body::RecoverRequest { ring, seqs } => self.on_recover_request(from, ring, seqs, out),
            Body::Mcasts(ms) => {
                for m in ms {
                    self.on_mcast(m, out);
                }
            }
            Body::Token(t) => self.on_token(now, from, link, t, out),
            Body::Ack { ring, token_seq, commit } => {
                if self
                    .outstanding
                    .as_ref()
                    .is_some_and(|o| o.to == from && o.ring == ring && o.token_seq == token_seq && o.commit == commit)
                {
                    self.outstanding = None;
                }
            }
            Body::Join(j) => self.on_join(now, from, j, out),
            Body::Commit(c) => self.on_commit(now, from, link, c, out),
            Body::MergeDetect { ring } => self.on_merge_detect(now, from, ring, out),
            Body::Leave { ring } => self.on_leave(now, from, ring, out),
        }
    }

    fn on_broadcast(&mut self, now: Instant, payload: Vec<u8>, out: &mut Vec<Effect>) {
        if payload.len() > self.cfg.max_message_bytes || self.pending.len() >= self.cfg.max_pending {
            self.counters.rejected += 1;
            return;
        }
        self.pending.push_back(payload);
        if self.phase == Phase::Operational && self.installed {
            if self.members.len() == 1 {
                // A ring of one needs no token.
                while let Some(payload) = self.pending.pop_front() {
                    let seq = self.aru + 1;
                    self.held.insert(seq, Mcast { ring: self.ring, seq, origin: self.me, payload });
                    self.advance(out);
                }
                self.free_upto(self.delivered, out);
            } else if let Some((_, tok)) = self.held_token.take() {
                // The held token goes on at once when there is something to send.
                self.pass_token(now, tok, out);
            }
        }
    }

    fn leave(&mut self, out: &mut Vec<Effect>) {
        if self.installed {
            let ring = self.ring;
            for m in self.members.clone() {
                if m != self.me {
                    let bytes = packet::encode(&Packet { cluster: self.cluster, body: Body::Leave { ring } });
                    self.send_all_links(m, &bytes, out);
                }
            }
        }
        Event::Left { node: self.me }.log();
        self.phase = Phase::Left;
        self.gather = None;
        self.commit = None;
        self.outstanding = None;
        self.held_token = None;
        self.pending.clear();
    }

    // ----- ordered delivery --------------------------------------------------------------

    fn on_mcast(&mut self, m: Mcast, out: &mut Vec<Effect>) {
        if m.ring != self.ring || !self.installed || self.phase == Phase::Commit {
            self.counters.stale += 1;
            return;
        }
        if m.seq <= self.delivered || m.seq <= self.stable || self.held.contains_key(&m.seq) {
            return;
        }
        self.held.insert(m.seq, m);
        self.advance(out);
    }

    /// Advances the contiguous-receipt point and, when operational, delivers.
    fn advance(&mut self, out: &mut Vec<Effect>) {
        while self.held.contains_key(&(self.aru + 1)) {
            self.aru += 1;
        }
        if self.phase != Phase::Operational {
            return;
        }
        while self.delivered < self.aru {
            self.delivered += 1;
            if let Some(m) = self.held.get(&self.delivered) {
                self.counters.delivered += 1;
                out.push(Effect::Deliver { ring: m.ring, sender: m.origin, seq: m.seq, payload: m.payload.clone() });
            }
        }
    }

    /// Frees what every member has received (and this node has delivered), and reports it.
    fn free_upto(&mut self, upto: u64, out: &mut Vec<Effect>) {
        let upto = upto.min(self.delivered);
        while let Some((&s, _)) = self.held.first_key_value() {
            if s > upto {
                break;
            }
            self.held.pop_first();
        }
        if upto > self.stable {
            self.stable = upto;
            out.push(Effect::Stable { ring: self.ring, upto });
        }
    }

    // ----- the token ---------------------------------------------------------------------

    fn on_token(&mut self, now: Instant, from: NodeId, link: LinkId, tok: Token, out: &mut Vec<Effect>) {
        if self.phase != Phase::Operational || tok.ring != self.ring || !self.members.contains(&from) {
            self.counters.stale += 1;
            return;
        }
        let (ring, token_seq) = (tok.ring, tok.token_seq);
        self.send(from, link, Body::Ack { ring, token_seq, commit: false }, out);
        if tok.token_seq <= self.last_token_seq {
            return;
        }
        self.awaiting_last_rotation = false;
        self.last_token_seq = tok.token_seq;
        self.outstanding = None;
        let since = now - self.token_at;
        // Smoothed rotation (1/8 gain), but a slow rotation counts at once.
        self.rotation =
            if since > self.rotation { since } else { (self.rotation.saturating_mul(7) + since).mul_div(1, 8) };
        self.token_at = now;
        self.counters.tokens += 1;
        self.process_token(now, tok, out);
    }

    fn process_token(&mut self, now: Instant, mut tok: Token, out: &mut Vec<Effect>) {
        // 1. Serve retransmission requests (on every link: the best one may be failing).
        let mut rtr = Vec::new();
        let mut busy = !tok.rtr.is_empty() || !self.pending.is_empty();
        let mut again = Vec::new();
        for s in std::mem::take(&mut tok.rtr) {
            if let Some(m) = self.held.get(&s) {
                self.counters.retransmits += 1;
                again.push(m.clone());
            } else {
                rtr.push(s);
            }
        }
        self.multicast(again, true, out);
        // 2. New messages, within the flow-control window.
        self.send_new(&mut tok, out);
        // 3. Ask for what we miss.
        let mut s = self.aru + 1;
        while s <= tok.seq && rtr.len() < self.cfg.retransmit_list_max {
            if !self.held.contains_key(&s) && !rtr.contains(&s) {
                rtr.push(s);
            }
            s += 1;
        }
        rtr.sort_unstable();
        busy |= !rtr.is_empty();
        tok.rtr = rtr;
        // 4. Our "all received up to", then free what every member has.
        match tok.arus.iter_mut().find(|(n, _)| *n == self.me) {
            Some(e) => e.1 = self.aru,
            None => tok.arus.push((self.me, self.aru)),
        }
        let stable = self.token_stable(&tok);
        busy |= stable < tok.seq;
        self.free_upto(stable, out);
        tok.quiet = if busy { 0 } else { tok.quiet.saturating_add(1) };
        // 5. Pass it on (the representative holds an idle token for a moment).
        if self.is_rep() && tok.quiet as usize >= self.members.len() {
            self.held_token = Some((now + self.cfg.token_hold, tok));
        } else {
            self.pass_token(now, tok, out);
        }
    }

    /// The lowest "all received up to" any member wrote on the token (0 until all have).
    fn token_stable(&self, tok: &Token) -> u64 {
        let mut min = u64::MAX;
        for m in &self.members {
            match tok.arus.iter().find(|(n, _)| n == m) {
                Some((_, a)) => min = min.min(*a),
                None => return 0,
            }
        }
        if min == u64::MAX { 0 } else { min }
    }

    fn pass_token(&mut self, now: Instant, mut tok: Token, out: &mut Vec<Effect>) {
        if !self.pending.is_empty() {
            // Released early because of new broadcasts: send them first.
            tok.quiet = 0;
            self.process_pending_only(&mut tok, out);
        }
        tok.token_seq += 1;
        let next = self.next_member(&self.members.clone());
        self.send_token(now, next, Body::Token(tok), out);
    }

    /// Assigns sequence numbers to queued broadcasts, within the flow-control window, and
    /// multicasts them.
    fn send_new(&mut self, tok: &mut Token, out: &mut Vec<Effect>) {
        let stable = self.token_stable(tok);
        let in_flight = tok.seq.saturating_sub(stable);
        let room =
            u64::from(self.cfg.window_size).saturating_sub(in_flight).min(u64::from(self.cfg.max_messages_per_visit));
        let mut batch = Vec::new();
        for _ in 0..room {
            let Some(payload) = self.pending.pop_front() else { break };
            tok.seq += 1;
            let m = Mcast { ring: self.ring, seq: tok.seq, origin: self.me, payload };
            self.held.insert(m.seq, m.clone());
            batch.push(m);
        }
        self.multicast(batch, false, out);
        self.advance(out);
    }

    /// Sends messages to every other member, packed several to a datagram (up to
    /// `batch_bytes` of payload), on the best link or on every link.
    fn multicast(&mut self, msgs: Vec<Mcast>, all_links: bool, out: &mut Vec<Effect>) {
        let chunks = chunk_messages(msgs, self.cfg.batch_bytes);
        let members = self.members.clone();
        for c in chunks {
            let body = match <[Mcast; 1]>::try_from(c) {
                Ok([m]) => Body::Mcast(m),
                Err(c) => Body::Mcasts(c),
            };
            let bytes = packet::encode(&Packet { cluster: self.cluster, body });
            for &to in &members {
                if to == self.me {
                    continue;
                }
                if all_links {
                    self.send_all_links(to, &bytes, out);
                } else {
                    let link = self.links.best(to);
                    self.counters.packets_out += 1;
                    out.push(Effect::Transmit { to, link, bytes: bytes.clone() });
                }
            }
        }
    }

    fn process_pending_only(&mut self, tok: &mut Token, out: &mut Vec<Effect>) {
        self.send_new(tok, out);
        if let Some(e) = tok.arus.iter_mut().find(|(n, _)| *n == self.me) {
            e.1 = self.aru;
        }
    }

    // ----- gather ------------------------------------------------------------------------

    fn enter_gather(
        &mut self,
        now: Instant,
        proc_set: BTreeSet<NodeId>,
        fail_set: BTreeMap<NodeId, Departure>,
        out: &mut Vec<Effect>,
    ) {
        let mut proc_set = proc_set;
        proc_set.insert(self.me);
        self.phase = Phase::Gather;
        self.commit = None;
        self.outstanding = None;
        self.held_token = None;
        self.awaiting_last_rotation = false;
        let added = proc_set.iter().map(|&n| (n, now)).collect();
        self.gather = Some(Gather {
            start: now,
            added,
            proc_set,
            fail_set,
            joins: BTreeMap::new(),
            next_join: now,
            consensus_deadline: now + self.cfg.consensus_timeout,
        });
        self.send_join(now, out);
    }

    fn send_join(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let Some(g) = &mut self.gather else { return };
        g.next_join = now + self.cfg.join_interval;
        let join = Join {
            ring: self.ring,
            max_seq: self.max_seq,
            proc_set: g.proc_set.iter().copied().collect(),
            fail_set: g.fail_set.keys().copied().collect(),
        };
        let bytes = packet::encode(&Packet { cluster: self.cluster, body: Body::Join(join) });
        for n in self.cfg.nodes.clone() {
            if n != self.me {
                let link = self.links.best(n);
                self.counters.packets_out += 1;
                out.push(Effect::Transmit { to: n, link, bytes: bytes.clone() });
            }
        }
    }

    fn backed_off(&self, now: Instant, n: NodeId) -> bool {
        self.backoff.get(&n).is_some_and(|&until| now < until)
    }

    fn on_join(&mut self, now: Instant, from: NodeId, j: Join, out: &mut Vec<Effect>) {
        self.max_seq = self.max_seq.max(j.max_seq);
        match self.phase {
            Phase::Operational => {
                let member = self.members.contains(&from);
                let names_us = j.proc_set.contains(&self.me);
                let trigger = if member {
                    // A member gathering from our ring; older rings are stale joins.
                    j.ring >= self.ring && (j.ring == self.ring || names_us)
                } else {
                    names_us && !self.backed_off(now, from)
                };
                if !trigger {
                    return;
                }
                Event::GatherOnJoin { node: self.me, from }.log();
                let proc_set = self.members.iter().copied().collect();
                self.enter_gather(now, proc_set, BTreeMap::new(), out);
                self.gather_join(now, from, j, out);
            }
            Phase::Gather => self.gather_join(now, from, j, out),
            Phase::Commit | Phase::Left => {}
        }
    }

    fn gather_join(&mut self, now: Instant, from: NodeId, j: Join, out: &mut Vec<Effect>) {
        let me = self.me;
        let Some(g) = &mut self.gather else { return };
        if g.fail_set.contains_key(&from) {
            return;
        }
        let mut changed = false;
        if j.fail_set.contains(&me) {
            g.fail_set.insert(from, Departure::ExcludedUs);
            changed = true;
        } else {
            // Only nodes we have not ourselves backed off from are added as candidates.
            for n in j.proc_set.iter().copied().chain([from]) {
                if self.cfg.nodes.contains(&n) && g.proc_set.insert(n) {
                    g.added.insert(n, now);
                    changed = true;
                }
            }
            for &n in &j.fail_set {
                if n != me && self.cfg.nodes.contains(&n) && !g.fail_set.contains_key(&n) {
                    g.fail_set.insert(n, Departure::ReportedBy(from));
                    changed = true;
                }
            }
            g.joins.insert(from, j);
        }
        if changed {
            self.send_join(now, out);
        }
        self.check_consensus(now, out);
    }

    fn candidates(g: &Gather) -> Vec<NodeId> {
        g.proc_set.iter().copied().filter(|n| !g.fail_set.contains_key(n)).collect()
    }

    fn check_consensus(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let Some(g) = &self.gather else { return };
        let members = Self::candidates(g);
        let proc_v: Vec<NodeId> = g.proc_set.iter().copied().collect();
        let fail_v: Vec<NodeId> = g.fail_set.keys().copied().collect();
        let agreed = members
            .iter()
            .filter(|&&m| m != self.me)
            .all(|m| g.joins.get(m).is_some_and(|j| j.proc_set == proc_v && j.fail_set == fail_v));
        if !agreed || members.first() != Some(&self.me) {
            return;
        }
        // We represent the new ring: create the commit token.
        let seq = g.joins.values().map(|j| j.max_seq).chain([self.max_seq]).max().unwrap_or(0) + 4 + self.fresh_jump;
        self.max_seq = seq;
        out.push(Effect::Persist(PersistedState { ring_seq: seq }));
        let ring = RingId::new(self.me, seq);
        Event::Committing { node: self.me, ring, members: &members }.log();
        let mut ct = CommitToken { ring, members: members.clone(), rotation: 1, hop: 0, infos: Vec::new() };
        self.contribute(now, &mut ct);
        if members.len() == 1 {
            self.install(now, &ct, out);
            return;
        }
        self.forward_commit(now, ct, out);
    }

    /// Adds what this node brings from its old ring to a commit token (which messages it holds),
    /// and freezes its old-ring state: nothing of the old ring is received after this except
    /// recovery messages.
    fn contribute(&mut self, now: Instant, ct: &mut CommitToken) {
        let reasons = self.gather.take().map(|g| g.fail_set).unwrap_or_default();
        let old = self.ring;
        let snapshot = if self.installed { std::mem::take(&mut self.held) } else { BTreeMap::new() };
        ct.infos.push(MemberInfo {
            node: self.me,
            old_ring: old,
            delivered: self.delivered,
            have: snapshot.keys().copied().collect(),
        });
        self.phase = Phase::Commit;
        self.commit = Some(Committing {
            ring: ct.ring,
            members: ct.members.clone(),
            deadline: now + self.cfg.commit_timeout,
            snapshot,
            reasons,
            recovered: BTreeMap::new(),
            need: BTreeMap::new(),
            hold: None,
            planned: false,
            next_request: now,
        });
    }

    /// Second rotation: every member now knows what every other member of its old ring holds.
    /// Sends the messages others lack (the lowest-id holder sends each), and notes what this
    /// node lacks and whom to ask for it.
    fn plan_recovery(&mut self, now: Instant, ct: &CommitToken, out: &mut Vec<Effect>) {
        let me = self.me;
        let old = self.ring;
        let Some(c) = &mut self.commit else { return };
        c.deadline = now + self.cfg.commit_timeout;
        c.planned = true;
        if !self.installed {
            return;
        }
        let group: Vec<&MemberInfo> = ct.infos.iter().filter(|i| i.old_ring == old).collect();
        let mut first_holder: BTreeMap<u64, NodeId> = BTreeMap::new();
        for i in &group {
            for &s in &i.have {
                let h = first_holder.entry(s).or_insert(i.node);
                *h = (*h).min(i.node);
            }
        }
        c.need = first_holder
            .iter()
            .filter(|&(s, _)| *s > self.delivered && !c.snapshot.contains_key(s) && !c.recovered.contains_key(s))
            .map(|(&s, &h)| (s, h))
            .collect();
        c.next_request = now + self.cfg.token_retransmit;
        let mut sends: Vec<(NodeId, Vec<Mcast>)> = Vec::new();
        for i in &group {
            if i.node == me {
                continue;
            }
            let msgs: Vec<Mcast> = c
                .snapshot
                .range(i.delivered + 1..)
                .filter(|(s, _)| first_holder.get(s) == Some(&me) && i.have.binary_search(s).is_err())
                .map(|(_, m)| m.clone())
                .collect();
            if !msgs.is_empty() {
                sends.push((i.node, msgs));
            }
        }
        for (to, msgs) in sends {
            self.send_recovery(to, msgs, out);
        }
    }

    fn send_recovery(&mut self, to: NodeId, msgs: Vec<Mcast>, out: &mut Vec<Effect>) {
        for chunk in chunk_messages(msgs, self.cfg.batch_bytes) {
            let bytes = packet::encode(&Packet { cluster: self.cluster, body: Body::Recover(chunk) });
            self.send_all_links(to, &bytes, out);
        }
    }

    fn on_recover(&mut self, now: Instant, msgs: Vec<Mcast>, out: &mut Vec<Effect>) {
        let old = self.ring;
        let Some(c) = &mut self.commit else { return };
        for m in msgs {
            if m.ring == old && !c.snapshot.contains_key(&m.seq) {
                c.need.remove(&m.seq);
                c.recovered.entry(m.seq).or_insert(m);
            }
        }
        self.try_finish_commit(now, out);
    }

    fn on_recover_request(&mut self, from: NodeId, ring: RingId, seqs: Vec<u64>, out: &mut Vec<Effect>) {
        let mut msgs = Vec::new();
        let lookup = |s: u64| -> Option<Mcast> {
            if let Some(c) = &self.commit
                && ring == self.ring
            {
                return c.snapshot.get(&s).or_else(|| c.recovered.get(&s)).cloned();
            }
            match &self.prev_store {
                Some((r, store)) if *r == ring => store.get(&s).cloned(),
                _ => None,
            }
        };
        for s in seqs.into_iter().take(self.cfg.window_size as usize) {
            if let Some(m) = lookup(s) {
                msgs.push(m);
            }
        }
        if !msgs.is_empty() {
            self.counters.retransmits += msgs.len() as u64;
            self.send_recovery(from, msgs, out);
        }
    }

    /// Installs and passes on the held commit token once nothing is missing.
    fn try_finish_commit(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let Some(c) = &mut self.commit else { return };
        if !c.need.is_empty() || c.hold.is_none() {
            return;
        }
        let Some(ct) = c.hold.take() else { return };
        self.install(now, &ct, out);
        if ct.ring.rep == self.me {
            self.awaiting_last_rotation = true;
        }
        self.forward_commit(now, ct, out);
    }

    fn forward_commit(&mut self, now: Instant, mut ct: CommitToken, out: &mut Vec<Effect>) {
        ct.hop += 1;
        let next = self.next_member(&ct.members);
        self.send_token(now, next, Body::Commit(ct), out);
    }

    fn on_commit(&mut self, now: Instant, from: NodeId, link: LinkId, ct: CommitToken, out: &mut Vec<Effect>) {
        if !ct.members.contains(&self.me) || !ct.members.contains(&from) {
            self.counters.stale += 1;
            return;
        }
        self.send(from, link, Body::Ack { ring: ct.ring, token_seq: ct.hop, commit: true }, out);
        let rep = ct.ring.rep == self.me;
        let committing = self.phase == Phase::Commit && self.commit.as_ref().is_some_and(|c| c.ring == ct.ring);
        match ct.rotation {
            // First rotation: each member contributes; back at the representative it turns into
            // the second.
            1 if rep => {
                if committing && ct.infos.len() == ct.members.len() && self.commit.as_ref().is_some_and(|c| !c.planned)
                {
                    let mut ct = ct;
                    ct.rotation = 2;
                    self.plan_recovery(now, &ct, out);
                    self.forward_commit(now, ct, out);
                }
            }
            1 => {
                let Some(g) = &self.gather else { return };
                if self.phase != Phase::Gather || Self::candidates(g) != ct.members || ct.ring.seq <= self.ring.seq {
                    return;
                }
                self.max_seq = self.max_seq.max(ct.ring.seq);
                let mut ct = ct;
                self.contribute(now, &mut ct);
                self.forward_commit(now, ct, out);
            }
            // Second rotation: recovery of old-ring messages; back at the representative it
            // turns into the third, which each member holds until it has what it lacks, then
            // installs the ring and passes on.
            2 if rep => {
                if committing && self.commit.as_ref().is_some_and(|c| c.planned && c.hold.is_none()) {
                    let mut ct = ct;
                    ct.rotation = 3;
                    if let Some(c) = &mut self.commit {
                        c.deadline = now + self.cfg.commit_timeout;
                        c.hold = Some(ct);
                    }
                    self.try_finish_commit(now, out);
                }
            }
            2 => {
                if committing && self.commit.as_ref().is_some_and(|c| !c.planned) {
                    self.plan_recovery(now, &ct, out);
                    self.forward_commit(now, ct, out);
                }
            }
            3 if rep => {
                if self.awaiting_last_rotation && self.ring == ct.ring && self.phase == Phase::Operational {
                    self.awaiting_last_rotation = false;
                    self.outstanding = None;
                    let tok =
                        Token { ring: self.ring, token_seq: 0, seq: 0, arus: Vec::new(), rtr: Vec::new(), quiet: 0 };
                    self.token_at = now;
                    self.process_token(now, tok, out);
                }
            }
            _ => {
                if committing && self.commit.as_ref().is_some_and(|c| c.planned && c.hold.is_none()) {
                    if let Some(c) = &mut self.commit {
                        c.deadline = now + self.cfg.commit_timeout;
                        c.hold = Some(ct);
                    }
                    self.try_finish_commit(now, out);
                }
            }
        }
    }

    /// Installs the ring of a complete commit token: delivers the old ring's messages this node's
    /// group agreed on (the union of what its members hold, in order, skipping holes nobody can
    /// fill), then reports the new view.
    fn install(&mut self, now: Instant, ct: &CommitToken, out: &mut Vec<Effect>) {
        let Some(c) = self.commit.take() else { return };
        let old = self.ring;
        let old_members = std::mem::take(&mut self.members);
        let was_installed = self.installed;
        if was_installed {
            let mut all = c.snapshot;
            all.extend(c.recovered);
            for (_, m) in all.range(self.delivered + 1..) {
                self.counters.delivered += 1;
                out.push(Effect::Deliver { ring: m.ring, sender: m.origin, seq: m.seq, payload: m.payload.clone() });
            }
            self.prev_store = Some((old, all));
        } else {
            self.prev_store = None;
        }
        self.ring = ct.ring;
        self.members = ct.members.clone();
        self.installed = true;
        self.phase = Phase::Operational;
        self.held.clear();
        self.delivered = 0;
        self.aru = 0;
        self.stable = 0;
        self.last_token_seq = 0;
        self.token_at = now;
        self.rotation = Duration::ZERO;
        self.outstanding = None;
        self.held_token = None;
        self.next_merge = now + self.cfg.merge_interval;
        self.max_seq = self.max_seq.max(ct.ring.seq);
        out.push(Effect::Persist(PersistedState { ring_seq: self.max_seq }));
        let transitional: Vec<NodeId> = if was_installed {
            ct.infos.iter().filter(|i| i.old_ring == old).map(|i| i.node).collect::<BTreeSet<_>>().into_iter().collect()
        } else {
            Vec::new()
        };
        let joined: Vec<NodeId> =
            self.members.iter().copied().filter(|n| !old_members.contains(n) && *n != self.me).collect();
        let mut departed = Vec::new();
        for &n in &old_members {
            if self.members.contains(&n) {
                continue;
            }
            let why = if self.leaving.contains(&n) {
                Departure::Left
            } else {
                c.reasons.get(&n).copied().unwrap_or(Departure::Elsewhere)
            };
            departed.push((n, why));
            if why != Departure::Left {
                self.backoff.insert(n, now + self.cfg.merge_backoff);
            }
        }
        self.leaving.clear();
        self.counters.views += 1;
        let view = View {
            ring: self.ring,
            members: self.members.clone(),
            prev_ring: was_installed.then_some(old),
            transitional,
            joined,
            departed,
        };
        Event::ViewInstalled { node: self.me, view: &view }.log();
        out.push(Effect::ViewChanged(view));
        if self.members.len() == 1 {
            // Queued broadcasts of a ring of one are delivered at once.
            while let Some(payload) = self.pending.pop_front() {
                let seq = self.aru + 1;
                self.held.insert(seq, Mcast { ring: self.ring, seq, origin: self.me, payload });
                self.advance(out);
            }
            self.free_upto(self.delivered, out);
        }
    }

    fn on_merge_detect(&mut self, now: Instant, from: NodeId, ring: RingId, out: &mut Vec<Effect>) {
        if self.members.contains(&from) && ring == self.ring {
            return;
        }
        match self.phase {
            Phase::Operational => {
                if self.members.contains(&from) || self.backed_off(now, from) {
                    return;
                }
                Event::GatherOnMerge { node: self.me, from, ring }.log();
                let mut proc_set: BTreeSet<NodeId> = self.members.iter().copied().collect();
                proc_set.insert(from);
                self.enter_gather(now, proc_set, BTreeMap::new(), out);
            }
            Phase::Gather => {
                let Some(g) = &mut self.gather else { return };
                if !g.fail_set.contains_key(&from) && g.proc_set.insert(from) {
                    g.added.insert(from, now);
                    self.send_join(now, out);
                }
            }
            _ => {}
        }
    }

    fn on_leave(&mut self, now: Instant, from: NodeId, ring: RingId, out: &mut Vec<Effect>) {
        if ring != self.ring || !self.members.contains(&from) {
            return;
        }
        self.leaving.insert(from);
        match self.phase {
            Phase::Operational => {
                Event::GatherOnLeave { node: self.me, from }.log();
                let proc_set = self.members.iter().copied().collect();
                let fail = BTreeMap::from([(from, Departure::Left)]);
                self.enter_gather(now, proc_set, fail, out);
            }
            Phase::Gather => {
                if let Some(g) = &mut self.gather {
                    g.fail_set.insert(from, Departure::Left);
                }
                self.send_join(now, out);
                self.check_consensus(now, out);
            }
            _ => {}
        }
    }

    // ----- timers ------------------------------------------------------------------------

    fn on_timers(&mut self, now: Instant, out: &mut Vec<Effect>) {
        // Link probes and link state.
        if now >= self.links.next_ping {
            self.links.next_ping = now + self.cfg.link_ping_interval;
            let peers: Vec<NodeId> = self.links.peers().map(|(p, _)| *p).collect();
            for p in peers {
                for link in self.links.link_ids() {
                    let hear = self.links.hears(now, p, link, self.cfg.link_timeout);
                    self.send(p, link, Body::Ping { hear }, out);
                }
            }
        }
        for (peer, link, up) in self.links.evaluate(now, self.cfg.link_timeout) {
            Event::Link { node: self.me, peer, link, up }.log();
            out.push(Effect::LinkStatus { peer, link, up });
        }
        // Token (or commit token) retransmission, on every link.
        if let Some(o) = &mut self.outstanding
            && now >= o.next
        {
            o.next = now + self.cfg.token_retransmit;
            let (to, bytes) = (o.to, o.bytes.clone());
            self.counters.token_retransmits += 1;
            self.send_all_links(to, &bytes, out);
        }
        if let Some((at, _)) = &self.held_token
            && now >= *at
            && let Some((_, tok)) = self.held_token.take()
        {
            self.pass_token(now, tok, out);
        }
        match self.phase {
            Phase::Operational => {
                if self.members.len() > 1 {
                    let timeout = self.token_timeout();
                    if now >= self.token_at + timeout {
                        self.counters.token_losses += 1;
                        Event::TokenLost {
                            node: self.me,
                            ring: self.ring,
                            waited_ms: (now - self.token_at).as_millis(),
                        }
                        .log();
                        let proc_set = self.members.iter().copied().collect();
                        self.enter_gather(now, proc_set, BTreeMap::new(), out);
                    }
                }
                if self.phase == Phase::Operational && self.is_rep() && now >= self.next_merge {
                    self.next_merge = now + self.cfg.merge_interval;
                    let ring = self.ring;
                    for n in self.cfg.nodes.clone() {
                        if !self.members.contains(&n) {
                            self.send_best(n, Body::MergeDetect { ring }, out);
                        }
                    }
                }
            }
            Phase::Commit => {
                self.request_missing(now, out);
                if self.commit.as_ref().is_some_and(|c| now >= c.deadline) {
                    Event::CommitTimedOut { node: self.me }.log();
                    // Back to gathering in the old ring, with the old messages.
                    if let Some(c) = self.commit.take() {
                        self.held = c.snapshot;
                        self.held.extend(c.recovered);
                        let mut proc_set: BTreeSet<NodeId> = c.reasons.keys().copied().collect();
                        proc_set.extend(self.members.iter().copied());
                        proc_set.extend(c.members.iter().copied());
                        self.enter_gather(now, proc_set, c.reasons, out);
                    }
                }
            }
            Phase::Gather => self.gather_timers(now, out),
            Phase::Left => {}
        }
    }

    /// Asks the holders again for old-ring messages still missing.
    fn request_missing(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let ring = self.ring;
        let retransmit = self.cfg.token_retransmit;
        let Some(c) = &mut self.commit else { return };
        if c.need.is_empty() || now < c.next_request || !c.planned {
            return;
        }
        c.next_request = now + retransmit;
        let mut by_holder: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
        for (&s, &h) in &c.need {
            by_holder.entry(h).or_default().push(s);
        }
        for (h, seqs) in by_holder {
            let bytes = packet::encode(&Packet { cluster: self.cluster, body: Body::RecoverRequest { ring, seqs } });
            self.send_all_links(h, &bytes, out);
        }
    }

    fn gather_timers(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let me = self.me;
        let (join_timeout, consensus_timeout) = (self.cfg.join_timeout, self.cfg.consensus_timeout);
        let Some(g) = &mut self.gather else { return };
        let mut changed = false;
        for n in Self::candidates(g) {
            let since = g.added.get(&n).copied().unwrap_or(g.start).max(g.start);
            if n != me && !g.joins.contains_key(&n) && now >= since + join_timeout {
                g.fail_set.insert(n, Departure::Silent);
                changed = true;
            }
        }
        if now >= g.consensus_deadline {
            let proc_v: Vec<NodeId> = g.proc_set.iter().copied().collect();
            for n in Self::candidates(g) {
                if n == me {
                    continue;
                }
                let fail_v: Vec<NodeId> = g.fail_set.keys().copied().collect();
                let agrees = g.joins.get(&n).is_some_and(|j| j.proc_set == proc_v && j.fail_set == fail_v);
                if !agrees {
                    g.fail_set.insert(n, Departure::NoAgreement);
                    changed = true;
                }
            }
            g.consensus_deadline = now + consensus_timeout;
        }
        if changed || now >= g.next_join {
            self.send_join(now, out);
        }
        if changed {
            self.check_consensus(now, out);
        }
    }
}
