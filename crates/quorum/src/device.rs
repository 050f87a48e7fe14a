//! The device client: what each node runs to lend the arbiter's vote to its partition.
//!
//! It reports every new view (and heuristics result) to the arbiter, heartbeats to renew a
//! held vote, and tells votequorum, once per view, whether the arbiter's vote is ours
//! ([`DeviceEffect::Cast`]). A vote is a lease counted from the send time of the request it
//! answers; it lapses by itself when renewals stop (arbiter lost, or this node was frozen), so
//! a node never believes in a vote the arbiter may already have given away.

use std::collections::BTreeMap;

use wire::{Duration, Instant, NodeId, RingId};

use crate::arbiter::{Algorithm, ArbiterMsg, ClientMsg, Heuristics, Vote};
use crate::config::TieBreaker;

/// Device client settings.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Cluster name (must match the client certificate).
    pub cluster: String,
    /// This node.
    pub node: NodeId,
    /// Configured nodes.
    pub nodes: Vec<NodeId>,
    /// Arbiter algorithm.
    pub algorithm: Algorithm,
    /// Tie-breaker rule.
    pub tie_breaker: TieBreaker,
    /// Heartbeat interval (renews the lease; keep it well under the lease).
    pub heartbeat: Duration,
    /// How long to wait for a definite answer about a new view before reporting "no vote".
    pub sync_timeout: Duration,
}

impl DeviceConfig {
    /// Defaults: 100 ms heartbeats, 2 s sync timeout.
    pub fn new(cluster: &str, node: NodeId, nodes: Vec<NodeId>, algorithm: Algorithm) -> Self {
        DeviceConfig {
            cluster: cluster.to_string(),
            node,
            nodes,
            algorithm,
            tie_breaker: TieBreaker::Lowest,
            heartbeat: Duration::from_millis(100),
            sync_timeout: Duration::from_secs(2),
        }
    }
}

/// Inputs.
#[derive(Clone, Debug)]
pub enum DeviceInput {
    /// The transport connected and authenticated.
    Connected,
    /// The transport is down.
    Disconnected,
    /// A message from the arbiter.
    Arbiter(ArbiterMsg),
    /// A new membership view.
    View {
        /// Ring id.
        ring: RingId,
        /// Members.
        members: Vec<NodeId>,
    },
    /// New heuristics result.
    Heuristics(Heuristics),
    /// Deadline passed.
    Wakeup,
}

/// Effects.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum DeviceEffect {
    /// Send to the arbiter.
    Send(ClientMsg),
    /// Tell votequorum whether the arbiter's vote is ours (for the current view).
    Cast(bool),
    /// The arbiter refused us: the reason names the fix.
    Refused(String),
}

/// The device client state.
#[derive(Debug)]
pub struct DeviceClient {
    cfg: DeviceConfig,
    connected: bool,
    seq: u64,
    sent_at: BTreeMap<u64, Instant>,
    view: Option<(RingId, Vec<NodeId>)>,
    heuristics: Heuristics,
    lease: Option<(RingId, Instant)>,
    seen: u64,
    next_heartbeat: Option<Instant>,
    /// Deadline for a definite answer about the current view, until reported.
    sync_deadline: Option<Instant>,
    reported: Option<(RingId, bool)>,
}

impl DeviceClient {
    /// A disconnected client.
    pub fn new(cfg: DeviceConfig) -> Self {
        DeviceClient {
            cfg,
            connected: false,
            seq: 0,
            sent_at: BTreeMap::new(),
            view: None,
            heuristics: Heuristics::Undefined,
            lease: None,
            seen: 0,
            next_heartbeat: None,
            sync_deadline: None,
            reported: None,
        }
    }

    /// Whether the arbiter's vote is currently ours.
    pub fn has_vote(&self, now: Instant) -> bool {
        match (&self.lease, &self.view) {
            (Some((ring, until)), Some((view_ring, _))) => ring == view_ring && now < *until,
            _ => false,
        }
    }

    /// The view this client last reported.
    pub fn ring(&self) -> Option<RingId> {
        self.view.as_ref().map(|v| v.0)
    }

    /// Next deadline.
    pub fn next_wakeup(&self) -> Option<Instant> {
        [self.next_heartbeat, self.lease.map(|l| l.1), self.sync_deadline].into_iter().flatten().min()
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: DeviceInput, out: &mut Vec<DeviceEffect>) {
        match input {
            DeviceInput::Connected => {
                self.connected = true;
                out.push(DeviceEffect::Send(ClientMsg::Hello {
                    cluster: self.cfg.cluster.clone(),
                    node: self.cfg.node,
                    nodes: self.cfg.nodes.clone(),
                    algorithm: self.cfg.algorithm,
                    tie_breaker: self.cfg.tie_breaker.clone(),
                }));
                self.send_membership(now, out);
                self.next_heartbeat = Some(now + self.cfg.heartbeat);
            }
            DeviceInput::Disconnected => {
                self.connected = false;
                self.next_heartbeat = None;
                self.sent_at.clear();
                // Without renewals the lease lapses; say "no vote" now rather than later.
                self.lease = None;
            }
            DeviceInput::Arbiter(msg) => self.on_arbiter(now, msg, out),
            DeviceInput::View { ring, members } => {
                self.view = Some((ring, members));
                self.sync_deadline = Some(now + self.cfg.sync_timeout);
                self.send_membership(now, out);
            }
            DeviceInput::Heuristics(h) => {
                if h != self.heuristics {
                    self.heuristics = h;
                    self.send_membership(now, out);
                }
            }
            DeviceInput::Wakeup => {
                if self.next_heartbeat.is_some_and(|t| now >= t) {
                    self.next_heartbeat = None;
                    if self.connected {
                        self.seq += 1;
                        self.sent_at.insert(self.seq, now);
                        out.push(DeviceEffect::Send(ClientMsg::Heartbeat { seq: self.seq, seen: self.seen }));
                        self.next_heartbeat = Some(now + self.cfg.heartbeat);
                    }
                }
                if self.lease.is_some_and(|l| now >= l.1) {
                    self.lease = None;
                }
                if self.sync_deadline.is_some_and(|t| now >= t) {
                    // No definite answer in time: report "no vote" so the partition stops waiting.
                    self.sync_deadline = None;
                    self.report(now, true, out);
                }
            }
        }
        self.trim();
        self.report(now, !self.connected, out);
    }

    fn send_membership(&mut self, now: Instant, out: &mut Vec<DeviceEffect>) {
        let (Some((ring, members)), true) = (self.view.clone(), self.connected) else { return };
        self.seq += 1;
        self.sent_at.insert(self.seq, now);
        out.push(DeviceEffect::Send(ClientMsg::Membership {
            seq: self.seq,
            ring,
            members,
            heuristics: self.heuristics,
        }));
    }

    fn on_arbiter(&mut self, now: Instant, msg: ArbiterMsg, out: &mut Vec<DeviceEffect>) {
        match msg {
            ArbiterMsg::Vote { seq, ring, vote, lease_ms, decision } => {
                self.seen = self.seen.max(decision);
                let current = self.view.as_ref().map(|v| v.0);
                match vote {
                    Vote::Ack if Some(ring) == current => {
                        // The lease counts from when we sent the request, never from now.
                        if let Some(&sent) = self.sent_at.get(&seq) {
                            let until = sent + Duration::from_millis(u64::from(lease_ms));
                            if until > now {
                                self.lease = Some((ring, until));
                                self.sync_deadline = None;
                            }
                        }
                    }
                    Vote::Nack => {
                        let held = self.lease.take().is_some();
                        if Some(ring) == current {
                            self.sync_deadline = None;
                            self.report(now, true, out);
                        }
                        // Tell the arbiter at once that the vote we held is released (only then:
                        // answering every Nack would ping-pong with the arbiter).
                        if held && self.connected {
                            self.seq += 1;
                            self.sent_at.insert(self.seq, now);
                            out.push(DeviceEffect::Send(ClientMsg::Heartbeat { seq: self.seq, seen: self.seen }));
                        }
                    }
                    _ => {}
                }
            }
            ArbiterMsg::Refused { reason } => {
                self.connected = false;
                self.next_heartbeat = None;
                self.lease = None;
                out.push(DeviceEffect::Refused(reason));
            }
        }
    }

    /// Reports the vote state to votequorum when it changed, or when a definite answer for
    /// the current view exists (an Ack, a Nack, a lapse, or `force`).
    fn report(&mut self, now: Instant, force: bool, out: &mut Vec<DeviceEffect>) {
        let Some((ring, _)) = self.view.clone() else { return };
        let cast = self.has_vote(now);
        let definite = cast || force || self.sync_deadline.is_none();
        let changed = self.reported != Some((ring, cast));
        if changed && definite {
            self.reported = Some((ring, cast));
            out.push(DeviceEffect::Cast(cast));
        }
    }

    fn trim(&mut self) {
        // Keep send times only for the most recent requests.
        while self.sent_at.len() > 64 {
            let Some(first) = self.sent_at.keys().next().copied() else { break };
            self.sent_at.remove(&first);
        }
    }
}
