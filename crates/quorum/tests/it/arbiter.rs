//! The arbiter and its device clients together, on a small deterministic message bus with
//! latency, hangs, disconnects and time. Checks the decision rules, the time to a decision
//! after a crash or a hang, and (as a property) that two views never hold the vote at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use quorum::arbiter::{
    Algorithm, Arbiter, ArbiterConfig, ArbiterEffect, ArbiterInput, ArbiterMsg, ClientMsg, ConnId, Heuristics,
};
use quorum::device::{DeviceClient, DeviceConfig, DeviceEffect, DeviceInput};
use wire::{Duration, Instant, NodeId, RingId};

const LATENCY: Duration = Duration::from_micros(200);

enum Msg {
    ToArbiter(u32, ClientMsg),
    ToClient(u32, ArbiterMsg),
}

struct Bus {
    now: Instant,
    arbiter: Arbiter,
    clients: BTreeMap<u32, DeviceClient>,
    connected: BTreeSet<u32>,
    hung: BTreeSet<u32>,
    /// Messages in flight: (delivery time, message).
    flight: VecDeque<(Instant, Msg)>,
    /// Messages held for a hung client.
    held: BTreeMap<u32, Vec<ArbiterMsg>>,
    cast: BTreeMap<u32, bool>,
    refused: Vec<String>,
    ring_seq: u64,
}

impl Bus {
    fn new(n: u32, algorithm: Algorithm) -> Bus {
        let nodes: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let clients = (1..=n)
            .map(|i| (i, DeviceClient::new(DeviceConfig::new("alpha", NodeId(i), nodes.clone(), algorithm))))
            .collect();
        let mut bus = Bus {
            now: Instant::from_nanos(1_000_000_000),
            arbiter: Arbiter::new(ArbiterConfig::default()),
            clients,
            connected: BTreeSet::new(),
            hung: BTreeSet::new(),
            flight: VecDeque::new(),
            held: BTreeMap::new(),
            cast: BTreeMap::new(),
            refused: Vec::new(),
            ring_seq: 0,
        };
        for i in 1..=n {
            bus.connect(i);
        }
        bus
    }

    fn connect(&mut self, i: u32) {
        let mut out = Vec::new();
        self.arbiter.handle(
            self.now,
            ArbiterInput::Connected { conn: ConnId(u64::from(i)), cluster: "alpha".into(), node: NodeId(i) },
            &mut out,
        );
        self.arbiter_effects(out);
        self.connected.insert(i);
        self.client_input(i, DeviceInput::Connected);
    }

    fn disconnect(&mut self, i: u32) {
        self.connected.remove(&i);
        let mut out = Vec::new();
        self.arbiter.handle(self.now, ArbiterInput::Disconnected { conn: ConnId(u64::from(i)) }, &mut out);
        self.arbiter_effects(out);
        if !self.hung.contains(&i) {
            self.client_input(i, DeviceInput::Disconnected);
        }
    }

    fn client_input(&mut self, i: u32, input: DeviceInput) {
        if self.hung.contains(&i) {
            return;
        }
        let mut out = Vec::new();
        let now = self.now;
        self.clients.get_mut(&i).expect("client").handle(now, input, &mut out);
        for e in out {
            match e {
                DeviceEffect::Send(m) => {
                    if self.connected.contains(&i) {
                        self.flight.push_back((now + LATENCY, Msg::ToArbiter(i, m)));
                    }
                }
                DeviceEffect::Cast(c) => {
                    self.cast.insert(i, c);
                }
                DeviceEffect::Refused(r) => self.refused.push(r),
            }
        }
    }

    fn arbiter_effects(&mut self, out: Vec<ArbiterEffect>) {
        for e in out {
            match e {
                ArbiterEffect::Send { conn, msg } => {
                    let i = conn.0 as u32;
                    if self.connected.contains(&i) {
                        self.flight.push_back((self.now + LATENCY, Msg::ToClient(i, msg)));
                    }
                }
                ArbiterEffect::Close { conn } => {
                    self.connected.remove(&(conn.0 as u32));
                }
                ArbiterEffect::VoteChanged { .. } => {}
            }
        }
    }

    /// Installs views: each group is a partition with a fresh ring id.
    fn views(&mut self, groups: &[&[u32]]) {
        for g in groups {
            self.ring_seq += 4;
            let ring = RingId::new(NodeId(g[0]), self.ring_seq);
            let members: Vec<NodeId> = g.iter().map(|&i| NodeId(i)).collect();
            for &i in *g {
                self.client_input(i, DeviceInput::View { ring, members: members.clone() });
            }
        }
    }

    fn step_to(&mut self, until: Instant) {
        loop {
            let next_msg = self.flight.iter().map(|(t, _)| *t).min();
            let next_arb = self.arbiter.next_wakeup();
            let next_client =
                self.clients.iter().filter(|(i, _)| !self.hung.contains(i)).filter_map(|(_, c)| c.next_wakeup()).min();
            let Some(t) = [next_msg, next_arb, next_client].into_iter().flatten().min() else { break };
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            if next_msg == Some(t) {
                let pos = self.flight.iter().position(|(at, _)| *at == t).expect("message due");
                let (_, msg) = self.flight.remove(pos).expect("present");
                match msg {
                    Msg::ToArbiter(i, m) => {
                        if self.connected.contains(&i) {
                            let mut out = Vec::new();
                            self.arbiter.handle(
                                self.now,
                                ArbiterInput::Message { conn: ConnId(u64::from(i)), msg: m },
                                &mut out,
                            );
                            self.arbiter_effects(out);
                        }
                    }
                    Msg::ToClient(i, m) => {
                        if self.hung.contains(&i) {
                            self.held.entry(i).or_default().push(m);
                        } else {
                            self.client_input(i, DeviceInput::Arbiter(m));
                        }
                    }
                }
            } else if next_arb == Some(t) {
                let mut out = Vec::new();
                self.arbiter.handle(self.now, ArbiterInput::Wakeup, &mut out);
                self.arbiter_effects(out);
            } else {
                let ids: Vec<u32> = self
                    .clients
                    .iter()
                    .filter(|(i, c)| !self.hung.contains(i) && c.next_wakeup() == Some(t))
                    .map(|(i, _)| *i)
                    .collect();
                for i in ids {
                    self.client_input(i, DeviceInput::Wakeup);
                }
            }
            self.check_one_view_holds_the_vote();
        }
        self.now = self.now.max(until);
    }

    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        self.step_to(until);
    }

    /// Runs until `cond` holds; returns the time it took (panics after 5 s).
    fn time_until(&mut self, mut cond: impl FnMut(&Bus) -> bool) -> Duration {
        let start = self.now;
        while !cond(self) {
            assert!(self.now - start < Duration::from_secs(5), "not reached within 5 s");
            self.run(Duration::from_millis(1));
        }
        self.now - start
    }

    fn has_vote(&self, i: u32) -> bool {
        !self.hung.contains(&i) && self.clients[&i].has_vote(self.now)
    }

    fn hang(&mut self, i: u32) {
        self.hung.insert(i);
    }

    fn resume(&mut self, i: u32) {
        self.hung.remove(&i);
        // After a pause, the node's own timers fire first (its lease lapses), then its
        // socket's buffered messages are read.
        self.client_input(i, DeviceInput::Wakeup);
        for m in self.held.remove(&i).unwrap_or_default() {
            self.client_input(i, DeviceInput::Arbiter(m));
        }
        self.check_one_view_holds_the_vote();
    }

    /// The safety property: all clients that believe they hold the vote are in one view.
    fn check_one_view_holds_the_vote(&self) {
        let holders: BTreeSet<RingId> = self
            .clients
            .iter()
            .filter(|(i, c)| !self.hung.contains(i) && c.has_vote(self.now))
            .filter_map(|(_, c)| c.ring())
            .collect();
        assert!(holders.len() <= 1, "two views hold the arbiter's vote at {}: {holders:?}", self.now);
    }
}

#[test]
fn a_whole_cluster_gets_the_vote() {
    let mut bus = Bus::new(2, Algorithm::Ffsplit);
    bus.views(&[&[1, 2]]);
    bus.run(Duration::from_millis(10));
    assert!(bus.has_vote(1) && bus.has_vote(2));
    assert_eq!(bus.cast.get(&1), Some(&true));
    // Heartbeats keep renewing the lease.
    bus.run(Duration::from_secs(3));
    assert!(bus.has_vote(1) && bus.has_vote(2));
}

#[test]
fn after_a_crash_the_survivor_gets_the_vote_within_one_lease() {
    let mut bus = Bus::new(2, Algorithm::Ffsplit);
    bus.views(&[&[1, 2]]);
    bus.run(Duration::from_secs(1));
    bus.hang(2); // a crash: it never speaks again...
    bus.disconnect(2); // ...and its connection closes.
    bus.views(&[&[1]]);
    let took = bus.time_until(|b| b.has_vote(1));
    eprintln!("crash: survivor got the vote after {took}");
    assert!(took <= Duration::from_millis(600), "{took}");
}

#[test]
fn after_a_hang_the_other_side_gets_the_vote_within_one_lease_and_the_hung_node_resumes_without_it() {
    let mut bus = Bus::new(2, Algorithm::Ffsplit);
    bus.views(&[&[1, 2]]);
    bus.run(Duration::from_secs(1));
    bus.hang(2); // SIGSTOP: the connection stays open, nothing is sent.
    bus.views(&[&[1]]);
    let took = bus.time_until(|b| b.has_vote(1));
    eprintln!("hang: other side got the vote after {took}");
    assert!(took <= Duration::from_millis(600), "{took}");
    bus.run(Duration::from_secs(2));
    bus.resume(2);
    assert!(!bus.has_vote(2), "the frozen node's lease lapsed while it was frozen");
    assert_eq!(bus.cast.get(&2), Some(&false));
}

#[test]
fn an_even_split_goes_to_the_tie_breaker_side_and_the_loser_releases_at_once() {
    let mut bus = Bus::new(2, Algorithm::Ffsplit);
    bus.views(&[&[1, 2]]);
    bus.run(Duration::from_secs(1));
    bus.views(&[&[1], &[2]]);
    let took = bus.time_until(|b| b.has_vote(1));
    assert!(took < Duration::from_millis(50), "the loser answered its Nack, no lease wait: {took}");
    assert!(!bus.has_vote(2));
    assert_eq!(bus.cast.get(&2), Some(&false));
}

#[test]
fn heuristics_beat_the_tie_breaker() {
    let mut bus = Bus::new(2, Algorithm::Ffsplit);
    bus.client_input(1, DeviceInput::Heuristics(Heuristics::Fail));
    bus.client_input(2, DeviceInput::Heuristics(Heuristics::Pass));
    bus.views(&[&[1, 2]]);
    bus.run(Duration::from_secs(1));
    bus.views(&[&[1], &[2]]);
    bus.run(Duration::from_secs(1));
    assert!(bus.has_vote(2) && !bus.has_vote(1));
}

#[test]
fn ffsplit_gives_a_majority_the_vote_and_refuses_minorities() {
    let mut bus = Bus::new(4, Algorithm::Ffsplit);
    bus.views(&[&[1, 2, 3, 4]]);
    bus.run(Duration::from_secs(1));
    bus.views(&[&[1], &[2, 3, 4]]);
    bus.run(Duration::from_secs(1));
    assert!(bus.has_vote(2) && bus.has_vote(3) && bus.has_vote(4) && !bus.has_vote(1));
    bus.views(&[&[1], &[2], &[3, 4]]);
    bus.run(Duration::from_secs(1));
    assert!(bus.has_vote(3), "{{3,4}} is half of 4 and the only half");
    assert!(!bus.has_vote(1) && !bus.has_vote(2));
}

#[test]
fn lms_lets_the_last_node_standing_keep_the_vote() {
    let mut bus = Bus::new(3, Algorithm::Lms);
    bus.views(&[&[1, 2, 3]]);
    bus.run(Duration::from_secs(1));
    for n in [3, 2] {
        bus.hang(n);
        bus.disconnect(n);
    }
    bus.views(&[&[1]]);
    bus.run(Duration::from_secs(1));
    assert!(bus.has_vote(1));
    // A 1:2 split in lms goes to the larger side.
    let mut bus = Bus::new(3, Algorithm::Lms);
    bus.views(&[&[1, 2, 3]]);
    bus.run(Duration::from_secs(1));
    bus.views(&[&[1], &[2, 3]]);
    bus.run(Duration::from_secs(1));
    assert!(bus.has_vote(2) && bus.has_vote(3) && !bus.has_vote(1));
}

#[test]
fn losing_the_arbiter_reports_no_vote_and_the_restarted_arbiter_gives_it_back() {
    let mut bus = Bus::new(2, Algorithm::Ffsplit);
    bus.views(&[&[1, 2]]);
    bus.run(Duration::from_secs(1));
    bus.disconnect(1);
    bus.disconnect(2);
    bus.run(Duration::from_millis(10));
    assert_eq!((bus.cast.get(&1), bus.cast.get(&2)), (Some(&false), Some(&false)));
    bus.arbiter = Arbiter::new(ArbiterConfig::default());
    bus.connect(1);
    bus.connect(2);
    bus.run(Duration::from_millis(50));
    assert!(bus.has_vote(1) && bus.has_vote(2));
}

#[test]
fn wrong_identity_and_mismatched_settings_are_refused_with_a_fix() {
    let mut arbiter = Arbiter::new(ArbiterConfig::default());
    let mut out = Vec::new();
    let now = Instant::ZERO;
    arbiter.handle(
        now,
        ArbiterInput::Connected { conn: ConnId(1), cluster: "alpha".into(), node: NodeId(1) },
        &mut out,
    );
    let hello = |cluster: &str, node: u32, nodes: &[u32], algorithm| ClientMsg::Hello {
        cluster: cluster.into(),
        node: NodeId(node),
        nodes: nodes.iter().map(|&i| NodeId(i)).collect(),
        algorithm,
        tie_breaker: quorum::TieBreaker::Lowest,
    };
    arbiter.handle(
        now,
        ArbiterInput::Message { conn: ConnId(1), msg: hello("alpha", 2, &[1, 2], Algorithm::Ffsplit) },
        &mut out,
    );
    let refusal = out.iter().find_map(|e| match e {
        ArbiterEffect::Send { msg: ArbiterMsg::Refused { reason }, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        refusal.as_deref().is_some_and(|r| r.contains("certificate is for cluster \"alpha\" node 1")),
        "{refusal:?}"
    );
    assert!(out.contains(&ArbiterEffect::Close { conn: ConnId(1) }));

    out.clear();
    for (conn, node, algorithm) in [(2, 1, Algorithm::Ffsplit), (3, 2, Algorithm::Lms)] {
        arbiter.handle(
            now,
            ArbiterInput::Connected { conn: ConnId(conn), cluster: "alpha".into(), node: NodeId(node) },
            &mut out,
        );
        arbiter.handle(
            now,
            ArbiterInput::Message { conn: ConnId(conn), msg: hello("alpha", node, &[1, 2], algorithm) },
            &mut out,
        );
    }
    let refusal = out.iter().find_map(|e| match e {
        ArbiterEffect::Send { conn: ConnId(3), msg: ArbiterMsg::Refused { reason } } => Some(reason.clone()),
        _ => None,
    });
    assert!(refusal.as_deref().is_some_and(|r| r.contains("make the quorum device settings identical")), "{refusal:?}");
    // A membership before hello is refused, and the vote never goes to such a client.
    out.clear();
    arbiter.handle(now, ArbiterInput::Connected { conn: ConnId(4), cluster: "beta".into(), node: NodeId(1) }, &mut out);
    let membership = ClientMsg::Membership {
        seq: 1,
        ring: RingId::new(NodeId(1), 4),
        members: vec![NodeId(1)],
        heuristics: Heuristics::Undefined,
    };
    arbiter.handle(now, ArbiterInput::Message { conn: ConnId(4), msg: membership }, &mut out);
    assert!(out.iter().all(|e| !matches!(e, ArbiterEffect::Send { msg: ArbiterMsg::Vote { .. }, .. })));
}

#[test]
fn the_arbiter_serves_many_clusters_apart() {
    let mut bus = Bus::new(2, Algorithm::Ffsplit);
    let mut out = Vec::new();
    for conn in [11u64, 12] {
        bus.arbiter.handle(
            bus.now,
            ArbiterInput::Connected { conn: ConnId(conn), cluster: "beta".into(), node: NodeId(conn as u32 - 10) },
            &mut out,
        );
    }
    bus.views(&[&[1, 2]]);
    bus.run(Duration::from_millis(20));
    let status = bus.arbiter.status(bus.now);
    assert_eq!(status.iter().map(|c| c.cluster.as_str()).collect::<Vec<_>>(), ["alpha"], "beta has not said hello yet");
    assert!(bus.has_vote(1));
}

#[derive(Clone, Debug)]
enum Step {
    Views(Vec<u8>),
    Hang(u32),
    Resume(u32),
    Disconnect(u32),
    Reconnect(u32),
    Wait(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => proptest::collection::vec(0u8..3, 4).prop_map(Step::Views),
        1 => (1u32..=4).prop_map(Step::Hang),
        2 => (1u32..=4).prop_map(Step::Resume),
        1 => (1u32..=4).prop_map(Step::Disconnect),
        1 => (1u32..=4).prop_map(Step::Reconnect),
        4 => (1u16..1500).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    /// Whatever happens (splits, hangs, disconnects), two different views never both believe
    /// they hold the arbiter's vote. Checked after every event by the bus.
    #[test]
    fn two_views_never_hold_the_vote_at_once(lms in any::<bool>(), steps in proptest::collection::vec(step(), 1..40)) {
        let mut bus = Bus::new(4, if lms { Algorithm::Lms } else { Algorithm::Ffsplit });
        bus.views(&[&[1, 2, 3, 4]]);
        bus.run(Duration::from_millis(100));
        for s in steps {
            match s {
                Step::Views(groups) => {
                    let mut parts: Vec<Vec<u32>> = vec![Vec::new(); 3];
                    for (i, g) in groups.iter().enumerate() {
                        parts[*g as usize].push(i as u32 + 1);
                    }
                    let parts: Vec<&[u32]> = parts.iter().filter(|p| !p.is_empty()).map(Vec::as_slice).collect();
                    bus.views(&parts);
                }
                Step::Hang(i) => bus.hang(i),
                Step::Resume(i) => if bus.hung.contains(&i) { bus.resume(i) },
                Step::Disconnect(i) => if bus.connected.contains(&i) { bus.disconnect(i) },
                Step::Reconnect(i) => if !bus.connected.contains(&i) && !bus.hung.contains(&i) { bus.connect(i) },
                Step::Wait(ms) => bus.run(Duration::from_millis(u64::from(ms))),
            }
        }
    }
}

#[test]
fn the_half_that_reports_its_split_first_waits_for_the_other_half_before_the_tie_breaker_decides() {
    let mut bus = Bus::new(4, Algorithm::Ffsplit);
    bus.views(&[&[1, 2, 3, 4]]);
    bus.run(Duration::from_secs(1));
    // {3,4} re-forms first; 1 and 2 still (alive) report the old view.
    bus.views(&[&[3, 4]]);
    bus.run(Duration::from_millis(150));
    assert!(!bus.has_vote(3) && !bus.has_vote(4), "the first half to report must not win by speed");
    bus.views(&[&[1, 2]]);
    let took = bus.time_until(|b| b.has_vote(1) && b.has_vote(2));
    assert!(took < Duration::from_millis(600), "{took:?}");
    bus.run(Duration::from_secs(1));
    assert!(bus.has_vote(1) && !bus.has_vote(3) && !bus.has_vote(4));
}
