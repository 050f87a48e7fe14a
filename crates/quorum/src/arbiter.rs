//! The arbiter's decision logic (what `qnetd` runs) and its protocol messages.
//!
//! Each cluster node runs a device client ([`crate::device`]) connected to the arbiter. Clients
//! report their membership view (ring id and members) and heuristics result; the arbiter gives
//! its vote to at most one partition of each cluster.
//!
//! **Safety by leases.** A vote is a lease: an `Ack` is valid for `lease` from the moment the
//! client *sent* the request it answers, and is renewed by heartbeats. Before the arbiter
//! acknowledges another partition, every client outside it that held the vote must have
//! released it: either it answered after being told `Nack`, or its lease has run out by the
//! arbiter's clock (`last ack sent + lease + drift margin`, which is never earlier than the
//! client's own expiry). So a hung node that resumes finds its lease expired before it can act,
//! and the other side gets the vote within one lease (500 ms by default) of the hang: no 12 s
//! dead-client timer.
//!
//! **Algorithms.** `ffsplit`: the partition with more than half of the cluster's nodes wins; on
//! an exact half, the higher heuristics score, then more clients connected, then the partition
//! that held the vote (keep active), then the tie-breaker node. `lms` (last man standing): any
//! partition may win, best heuristics score first, then the largest, then keep active, then the
//! tie-breaker; a lone node that still reaches the arbiter keeps the cluster running.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use wire::{Duration, Instant, NodeId, RingId};

use crate::config::TieBreaker;

/// The `kind` byte of arbiter protocol frames.
pub const ARBITER_WIRE_KIND: u8 = 0x51;

/// How the arbiter picks a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// Fifty-fifty split: one vote, for even-sized clusters.
    Ffsplit,
    /// Last man standing: nodes-1 votes, a lone node can keep running.
    Lms,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Ffsplit => "ffsplit",
            Algorithm::Lms => "lms",
        })
    }
}

/// Result of a node's heuristics commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Heuristics {
    /// No heuristics configured, or not run yet.
    #[default]
    Undefined,
    /// Every command exited 0 in time.
    Pass,
    /// A command failed or timed out.
    Fail,
}

/// Messages from a device client to the arbiter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message on a connection. The identity (cluster, node) must match the one the
    /// transport authenticated.
    Hello {
        /// Cluster name.
        cluster: String,
        /// The sender.
        node: NodeId,
        /// Configured nodes of the cluster (every client must agree).
        nodes: Vec<NodeId>,
        /// Algorithm the cluster is configured for.
        algorithm: Algorithm,
        /// Tie-breaker rule.
        tie_breaker: TieBreaker,
    },
    /// The sender's current view and heuristics. `seq` numbers the client's requests.
    Membership {
        /// Request number.
        seq: u64,
        /// The view.
        ring: RingId,
        /// Its members.
        members: Vec<NodeId>,
        /// Heuristics result.
        heuristics: Heuristics,
    },
    /// Keep-alive; renews a held vote. `seen` is the newest arbiter decision number received.
    Heartbeat {
        /// Request number.
        seq: u64,
        /// Newest decision number the client has processed.
        seen: u64,
    },
}

/// The arbiter's answer about the vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vote {
    /// The vote is yours for `ring`, for the lease from your request's send time.
    Ack,
    /// You do not have the vote.
    Nack,
    /// Not decided yet (waiting for the partition to agree or for another side's lease).
    Wait,
}

/// Messages from the arbiter to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArbiterMsg {
    /// The vote for the client's current view, answering request `seq`.
    Vote {
        /// Request answered.
        seq: u64,
        /// The view the answer is about.
        ring: RingId,
        /// The answer.
        vote: Vote,
        /// Lease length (from the client's send time of request `seq`).
        lease_ms: u32,
        /// Decision number.
        decision: u64,
    },
    /// The connection is refused; the reason names the fix.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Identifies one client connection (assigned by the driver).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// Inputs to the arbiter.
#[derive(Clone, Debug)]
pub enum ArbiterInput {
    /// A transport connection was authenticated as (cluster, node).
    Connected {
        /// Connection.
        conn: ConnId,
        /// Cluster name from the client certificate.
        cluster: String,
        /// Node id from the client certificate.
        node: NodeId,
    },
    /// A message arrived.
    Message {
        /// Connection.
        conn: ConnId,
        /// The message.
        msg: ClientMsg,
    },
    /// The connection closed.
    Disconnected {
        /// Connection.
        conn: ConnId,
    },
    /// The deadline from [`Arbiter::next_wakeup`] passed.
    Wakeup,
}

/// Effects of the arbiter.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum ArbiterEffect {
    /// Send to a client.
    Send {
        /// Connection.
        conn: ConnId,
        /// Message.
        msg: ArbiterMsg,
    },
    /// Close a connection after sending a refusal.
    Close {
        /// Connection.
        conn: ConnId,
    },
    /// The vote of a cluster moved (for logs and status).
    VoteChanged {
        /// Cluster.
        cluster: String,
        /// The partition that now holds the vote, if any.
        holder: Option<Vec<NodeId>>,
    },
}

/// Arbiter settings.
#[derive(Clone, Debug)]
pub struct ArbiterConfig {
    /// Length of a vote lease.
    pub lease: Duration,
    /// Extra margin for clock drift between arbiter and clients (fraction of the lease, in ppm
    /// of the lease; 50_000 = 5 %).
    pub drift_margin_ppm: u64,
    /// Connections that send nothing for this long are dropped.
    pub idle_timeout: Duration,
    /// Most clients per cluster.
    pub max_clients_per_cluster: usize,
    /// A client silent for this long no longer holds a decision back (it is hung or gone;
    /// clients heartbeat every 100 ms).
    pub stale_after: Duration,
    /// Longest a partition waits for live clients outside it that still report a view
    /// overlapping it (the other side of a split not yet re-formed) before it may be chosen.
    pub settle_max: Duration,
}

impl Default for ArbiterConfig {
    fn default() -> Self {
        ArbiterConfig {
            lease: Duration::from_millis(500),
            drift_margin_ppm: 50_000,
            idle_timeout: Duration::from_secs(5),
            max_clients_per_cluster: 64,
            stale_after: Duration::from_millis(300),
            settle_max: Duration::from_millis(1000),
        }
    }
}

#[derive(Debug)]
struct Client {
    node: NodeId,
    cluster: String,
    hello: bool,
    view: Option<(RingId, Vec<NodeId>)>,
    heuristics: Heuristics,
    last_heard: Instant,
    /// The client may hold the vote until this arbiter time.
    lease_until: Option<Instant>,
    /// Decision number of the Nack that revokes its vote, if one was sent.
    revoked_at: Option<u64>,
}

#[derive(Debug)]
struct ClusterState {
    nodes: Vec<NodeId>,
    algorithm: Algorithm,
    tie_breaker: TieBreaker,
    /// The partition last given the vote (keep-active tie-breaker).
    holder: Option<Vec<NodeId>>,
}

/// One node's row in the arbiter's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientStatus {
    /// Node.
    pub node: NodeId,
    /// Its reported view.
    pub ring: Option<RingId>,
    /// Its reported members.
    pub members: Vec<NodeId>,
    /// Its heuristics.
    pub heuristics: Heuristics,
    /// Whether it currently may hold the vote.
    pub has_vote: bool,
}

/// One cluster in the arbiter's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub cluster: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Configured nodes.
    pub nodes: Vec<NodeId>,
    /// Connected clients.
    pub clients: Vec<ClientStatus>,
    /// Partition holding the vote.
    pub holder: Option<Vec<NodeId>>,
}

/// The arbiter state for every cluster it serves.
#[derive(Debug)]
pub struct Arbiter {
    cfg: ArbiterConfig,
    clients: BTreeMap<ConnId, Client>,
    clusters: BTreeMap<String, ClusterState>,
    decision: u64,
    /// Pending answers: client request seq per connection awaiting a decision.
    pending: BTreeMap<ConnId, u64>,
    /// When each candidate partition (cluster, view) first appeared.
    candidate_since: BTreeMap<(String, RingId), Instant>,
    /// When a held-back candidate must be looked at again, per cluster.
    settle_wakeup: BTreeMap<String, Instant>,
}

impl Arbiter {
    /// An arbiter serving no cluster yet (clusters appear as their clients connect).
    pub fn new(cfg: ArbiterConfig) -> Self {
        Arbiter {
            cfg,
            clients: BTreeMap::new(),
            clusters: BTreeMap::new(),
            decision: 0,
            pending: BTreeMap::new(),
            candidate_since: BTreeMap::new(),
            settle_wakeup: BTreeMap::new(),
        }
    }

    fn lease_with_margin(&self) -> Duration {
        self.cfg.lease + self.cfg.lease.mul_div(self.cfg.drift_margin_ppm, 1_000_000)
    }

    /// When the arbiter needs [`ArbiterInput::Wakeup`]: the next lease expiry or idle timeout.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let leases = self.clients.values().filter_map(|c| c.lease_until);
        let idle =
            self.clients.values().filter(|c| c.lease_until.is_none()).map(|c| c.last_heard + self.cfg.idle_timeout);
        leases.chain(idle).chain(self.settle_wakeup.values().copied()).min()
    }

    /// Status of every cluster.
    pub fn status(&self, now: Instant) -> Vec<ClusterStatus> {
        self.clusters
            .iter()
            .map(|(name, cl)| ClusterStatus {
                cluster: name.clone(),
                algorithm: cl.algorithm,
                nodes: cl.nodes.clone(),
                clients: self
                    .clients
                    .values()
                    .filter(|c| &c.cluster == name && c.hello)
                    .map(|c| ClientStatus {
                        node: c.node,
                        ring: c.view.as_ref().map(|v| v.0),
                        members: c.view.as_ref().map(|v| v.1.clone()).unwrap_or_default(),
                        heuristics: c.heuristics,
                        has_vote: c.lease_until.is_some_and(|t| t > now) && c.revoked_at.is_none(),
                    })
                    .collect(),
                holder: cl.holder.clone(),
            })
            .collect()
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: ArbiterInput, out: &mut Vec<ArbiterEffect>) {
        let cluster = match input {
            ArbiterInput::Connected { conn, cluster, node } => {
                self.clients.insert(
                    conn,
                    Client {
                        node,
                        cluster: cluster.clone(),
                        hello: false,
                        view: None,
                        heuristics: Heuristics::Undefined,
                        last_heard: now,
                        lease_until: None,
                        revoked_at: None,
                    },
                );
                None
            }
            ArbiterInput::Message { conn, msg } => self.on_message(now, conn, msg, out),
            ArbiterInput::Disconnected { conn } => {
                // A lost connection proves nothing about the node: its lease keeps counting.
                // Keep the record until the lease has run out, without the connection.
                self.pending.remove(&conn);
                match self.clients.get(&conn) {
                    Some(c) if c.lease_until.is_some_and(|t| t > now) => {
                        let cluster = c.cluster.clone();
                        if let Some(c) = self.clients.get_mut(&conn) {
                            c.hello = false;
                        }
                        Some(cluster)
                    }
                    Some(c) => {
                        let cluster = c.cluster.clone();
                        self.clients.remove(&conn);
                        Some(cluster)
                    }
                    None => None,
                }
            }
            ArbiterInput::Wakeup => {
                self.expire(now, out);
                let due: Vec<String> =
                    self.settle_wakeup.iter().filter(|(_, t)| **t <= now).map(|(c, _)| c.clone()).collect();
                for cluster in due {
                    self.settle_wakeup.remove(&cluster);
                    self.decide(now, &cluster, out);
                }
                None
            }
        };
        if let Some(cluster) = cluster {
            self.decide(now, &cluster, out);
        }
    }

    fn refuse(&mut self, conn: ConnId, reason: String, out: &mut Vec<ArbiterEffect>) {
        out.push(ArbiterEffect::Send { conn, msg: ArbiterMsg::Refused { reason } });
        out.push(ArbiterEffect::Close { conn });
        self.clients.remove(&conn);
        self.pending.remove(&conn);
    }

    fn on_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: ClientMsg,
        out: &mut Vec<ArbiterEffect>,
    ) -> Option<String> {
        let client = self.clients.get_mut(&conn)?;
        client.last_heard = now;
        match msg {
            ClientMsg::Hello { cluster, node, nodes, algorithm, tie_breaker } => {
                if cluster != client.cluster || node != client.node {
                    let reason = format!(
                        "hello says cluster {cluster:?} node {node} but the certificate is for cluster {:?} node {}; use this node's own certificate",
                        client.cluster, client.node
                    );
                    self.refuse(conn, reason, out);
                    return None;
                }
                if !nodes.contains(&node) {
                    self.refuse(conn, format!("node {node} is not in its own cluster's node list"), out);
                    return None;
                }
                let connected = self.clients.values().filter(|c| c.cluster == cluster && c.hello).count();
                if connected >= self.cfg.max_clients_per_cluster {
                    self.refuse(conn, format!("cluster {cluster:?} already has {connected} clients connected"), out);
                    return None;
                }
                // A second connection of the same node replaces the first; the old lease stays
                // accounted for on the old record until it expires.
                let dupes: Vec<ConnId> = self
                    .clients
                    .iter()
                    .filter(|(c, cl)| **c != conn && cl.cluster == cluster && cl.node == node && cl.hello)
                    .map(|(c, _)| *c)
                    .collect();
                for d in dupes {
                    if let Some(old) = self.clients.get_mut(&d) {
                        old.hello = false;
                    }
                    out.push(ArbiterEffect::Close { conn: d });
                }
                match self.clusters.get(&cluster) {
                    Some(cl)
                        if cl.nodes != sorted(&nodes) || cl.algorithm != algorithm || cl.tie_breaker != tie_breaker =>
                    {
                        let reason = format!(
                            "cluster {cluster:?} is registered with nodes {:?}, algorithm {}, tie-breaker {}; this node says {:?}, {}, {}: make the quorum device settings identical on every node",
                            cl.nodes,
                            cl.algorithm,
                            cl.tie_breaker,
                            sorted(&nodes),
                            algorithm,
                            tie_breaker
                        );
                        self.refuse(conn, reason, out);
                        return None;
                    }
                    Some(_) => {}
                    None => {
                        self.clusters.insert(
                            cluster.clone(),
                            ClusterState { nodes: sorted(&nodes), algorithm, tie_breaker, holder: None },
                        );
                    }
                }
                if let Some(c) = self.clients.get_mut(&conn) {
                    c.hello = true;
                }
                Some(cluster)
            }
            ClientMsg::Membership { seq, ring, members, heuristics } => {
                if !client.hello {
                    let reason = "membership before hello: send hello first".to_string();
                    self.refuse(conn, reason, out);
                    return None;
                }
                let members = sorted(&members);
                if !members.contains(&client.node) {
                    let reason = format!("node {} reports a view without itself", client.node);
                    self.refuse(conn, reason, out);
                    return None;
                }
                client.view = Some((ring, members));
                client.heuristics = heuristics;
                self.pending.insert(conn, seq);
                Some(client.cluster.clone())
            }
            ClientMsg::Heartbeat { seq, seen } => {
                if !client.hello {
                    return None;
                }
                if client.revoked_at.is_some_and(|d| seen >= d) {
                    // The client has processed its Nack: its vote is released.
                    client.lease_until = None;
                    client.revoked_at = None;
                }
                self.pending.insert(conn, seq);
                Some(client.cluster.clone())
            }
        }
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<ArbiterEffect>) {
        let mut touched = BTreeSet::new();
        let mut drop = Vec::new();
        for (conn, c) in self.clients.iter_mut() {
            if c.lease_until.is_some_and(|t| t <= now) {
                c.lease_until = None;
                c.revoked_at = None;
                touched.insert(c.cluster.clone());
            }
            if now.saturating_since(c.last_heard) >= self.cfg.idle_timeout && c.lease_until.is_none() {
                drop.push(*conn);
                touched.insert(c.cluster.clone());
            }
        }
        for conn in drop {
            if self.clients.get(&conn).is_some_and(|c| c.hello) {
                out.push(ArbiterEffect::Close { conn });
            }
            self.clients.remove(&conn);
            self.pending.remove(&conn);
        }
        for cluster in touched {
            self.decide(now, &cluster, out);
        }
    }

    /// Chooses the partition that should hold the vote, revokes it elsewhere, and answers
    /// pending requests.
    fn decide(&mut self, now: Instant, cluster: &str, out: &mut Vec<ArbiterEffect>) {
        if !self.clusters.contains_key(cluster) {
            return;
        }
        // Connected clients of this cluster, by reported view.
        let mut views: BTreeMap<(RingId, Vec<NodeId>), Vec<ConnId>> = BTreeMap::new();
        for (conn, c) in &self.clients {
            if c.cluster == cluster
                && c.hello
                && let Some(v) = &c.view
            {
                views.entry(v.clone()).or_default().push(*conn);
            }
        }
        // A partition is a candidate once every connected client among its members reports
        // exactly that view (no member still in transition).
        let mut candidates: Vec<Candidate> = Vec::new();
        for ((ring, members), conns) in &views {
            let member_clients: Vec<&Client> = self
                .clients
                .values()
                .filter(|c| c.cluster == cluster && c.hello && members.contains(&c.node))
                .collect();
            let agreed =
                member_clients.iter().all(|c| c.view.as_ref().is_some_and(|v| v.0 == *ring && &v.1 == members));
            if !agreed {
                continue;
            }
            let score = member_clients
                .iter()
                .map(|c| match c.heuristics {
                    Heuristics::Pass => 2i64,
                    Heuristics::Undefined => 1,
                    Heuristics::Fail => 0,
                })
                .sum::<i64>();
            candidates.push(Candidate { ring: *ring, members: members.clone(), conns: conns.clone(), score });
        }
        // Both halves of a split must be seen before choosing between them: a candidate waits
        // while a live client outside it still reports a view overlapping it, for at most
        // `settle_max` (hung or gone clients stop counting after `stale_after`).
        self.candidate_since.retain(|(c, ring), _| c != cluster || candidates.iter().any(|k| k.ring == *ring));
        self.settle_wakeup.remove(cluster);
        let mut wake: Option<Instant> = None;
        candidates.retain(|k| {
            let since = *self.candidate_since.entry((cluster.to_string(), k.ring)).or_insert(now);
            let settle_end = since + self.cfg.settle_max;
            if now >= settle_end {
                return true;
            }
            let blockers = self.clients.values().filter(|c| {
                c.cluster == cluster
                    && c.hello
                    && !k.members.contains(&c.node)
                    && now.saturating_since(c.last_heard) < self.cfg.stale_after
                    && c.view.as_ref().is_some_and(|v| v.1.iter().any(|n| k.members.contains(n)))
            });
            let mut held = false;
            for b in blockers {
                held = true;
                let t = (b.last_heard + self.cfg.stale_after).min(settle_end);
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
            !held
        });
        if let Some(w) = wake {
            self.settle_wakeup.insert(cluster.to_string(), w);
        }
        let Some(state) = self.clusters.get(cluster) else { return };
        let total = state.nodes.len();
        let winner = pick(state, total, &candidates).cloned();

        // Revoke the vote from every client outside the winner.
        let winner_members: Vec<NodeId> = winner.as_ref().map(|w| w.members.clone()).unwrap_or_default();
        let winner_ring = winner.as_ref().map(|w| w.ring);
        let mut blocked = false;
        let revoke: Vec<ConnId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.cluster == cluster)
            .filter(|(_, c)| c.lease_until.is_some_and(|t| t > now))
            .filter(|(_, c)| !(winner_members.contains(&c.node) && c.view.as_ref().map(|v| v.0) == winner_ring))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in revoke {
            blocked = true;
            let Some(c) = self.clients.get_mut(&conn) else { continue };
            if c.revoked_at.is_none() && c.hello {
                self.decision += 1;
                c.revoked_at = Some(self.decision);
                let ring = c.view.as_ref().map(|v| v.0).unwrap_or_default();
                let seq = self.pending.remove(&conn).unwrap_or(0);
                out.push(ArbiterEffect::Send {
                    conn,
                    msg: ArbiterMsg::Vote { seq, ring, vote: Vote::Nack, lease_ms: 0, decision: self.decision },
                });
            }
        }

        let lease = self.lease_with_margin();
        let lease_ms = u32::try_from(self.cfg.lease.as_millis()).unwrap_or(u32::MAX);
        // Answer every pending request.
        let pending: Vec<(ConnId, u64)> = self
            .pending
            .iter()
            .filter(|(conn, _)| self.clients.get(conn).is_some_and(|c| c.cluster == cluster))
            .map(|(c, s)| (*c, *s))
            .collect();
        let mut holder_changed = false;
        for (conn, seq) in pending {
            let Some(c) = self.clients.get_mut(&conn) else { continue };
            let Some((ring, _)) = c.view.clone() else { continue };
            let in_winner = winner.as_ref().is_some_and(|w| w.conns.contains(&conn));
            let vote = if in_winner && !blocked {
                c.lease_until = Some(now + lease);
                c.revoked_at = None;
                holder_changed = true;
                Vote::Ack
            } else if in_winner || (winner.is_none() && !candidates.iter().any(|k| k.conns.contains(&conn))) {
                Vote::Wait
            } else {
                Vote::Nack
            };
            if vote == Vote::Wait {
                // Keep it pending: answered when the decision can be made.
                continue;
            }
            self.pending.remove(&conn);
            self.decision += 1;
            let lease_ms = if vote == Vote::Ack { lease_ms } else { 0 };
            out.push(ArbiterEffect::Send {
                conn,
                msg: ArbiterMsg::Vote { seq, ring, vote, lease_ms, decision: self.decision },
            });
        }
        if holder_changed && let Some(state) = self.clusters.get_mut(cluster) {
            let new = winner.map(|w| w.members);
            if state.holder != new {
                state.holder = new.clone();
                out.push(ArbiterEffect::VoteChanged { cluster: cluster.to_string(), holder: new });
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Candidate {
    ring: RingId,
    members: Vec<NodeId>,
    conns: Vec<ConnId>,
    score: i64,
}

fn sorted(nodes: &[NodeId]) -> Vec<NodeId> {
    let mut v = nodes.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The partition that should have the vote, by the cluster's algorithm.
fn pick<'a>(state: &ClusterState, total: usize, candidates: &'a [Candidate]) -> Option<&'a Candidate> {
    let eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| match state.algorithm {
            Algorithm::Ffsplit => c.members.len() * 2 >= total,
            Algorithm::Lms => true,
        })
        .collect();
    let tie_rank = |c: &Candidate| -> i64 {
        match &state.tie_breaker {
            TieBreaker::Lowest => -(c.members.iter().min().map_or(i64::MAX, |n| i64::from(n.0))),
            TieBreaker::Highest => c.members.iter().max().map_or(i64::MIN, |n| i64::from(n.0)),
            TieBreaker::List(list) => -(list.iter().position(|n| c.members.contains(n)).map_or(i64::MAX, |p| p as i64)),
        }
    };
    let keep_active = |c: &Candidate| {
        state
            .holder
            .as_ref()
            .is_some_and(|h| h.iter().all(|n| c.members.contains(n)) || c.members.iter().all(|n| h.contains(n)))
    };
    let key = |c: &Candidate| {
        let majority = c.members.len() * 2 > total;
        match state.algorithm {
            Algorithm::Ffsplit => (majority as i64, c.score, c.conns.len() as i64, keep_active(c) as i64, tie_rank(c)),
            Algorithm::Lms => (c.score, c.members.len() as i64, keep_active(c) as i64, 0, tie_rank(c)),
        }
    };
    let best = eligible.iter().max_by_key(|c| key(c))?;
    // Two distinct partitions can only tie on every key if they have the same tie rank, which
    // means the same tie-breaker node: impossible for disjoint views. Refuse anyway.
    let ties = eligible.iter().filter(|c| key(c) == key(best)).count();
    if ties > 1 { None } else { Some(best) }
}
