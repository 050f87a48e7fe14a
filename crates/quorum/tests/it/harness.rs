//! An ideal membership for quorum tests: views and messages delivered to every member of a
//! partition in one order.

use std::collections::BTreeMap;

use quorum::{Effect, Input, QuorumConfig, QuorumMsg, QuorumStatus, Votequorum};
use wire::{Duration, Instant, NodeId, RingId};

pub(crate) struct Cluster {
    pub(crate) nodes: BTreeMap<NodeId, Votequorum>,
    pub(crate) partitions: Vec<Vec<NodeId>>,
    seq: u64,
    pub(crate) now: Instant,
    cfg: QuorumConfig,
}

pub(crate) fn ids(list: &[u32]) -> Vec<NodeId> {
    list.iter().map(|&i| NodeId(i)).collect()
}

impl Cluster {
    pub(crate) fn new(cfg: &QuorumConfig, n: u32) -> Self {
        assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
        let nodes = (1..=n).map(|i| (NodeId(i), Votequorum::new(cfg.clone()))).collect();
        Cluster { nodes, partitions: Vec::new(), seq: 0, now: Instant::ZERO, cfg: cfg.clone() }
    }

    /// Installs a new view in every listed partition (nodes not listed are down), then delivers
    /// every member's broadcasts to every member of its partition, in member order.
    pub(crate) fn views(&mut self, partitions: &[&[u32]]) {
        self.views_with_leavers(partitions, &[]);
    }

    /// Nodes in no partition are down: they restart with a fresh state.
    pub(crate) fn views_with_leavers(&mut self, partitions: &[&[u32]], left: &[u32]) {
        let left = ids(left);
        self.partitions.clear();
        let up: Vec<NodeId> = partitions.iter().flat_map(|p| ids(p)).collect();
        for (id, node) in self.nodes.iter_mut() {
            if !up.contains(id) {
                *node = Votequorum::new(self.cfg.clone());
            }
        }
        for part in partitions {
            let members = ids(part);
            self.seq += 4;
            let ring = RingId::new(members[0], self.seq);
            let mut msgs = Vec::new();
            for m in &members {
                let mut out = Vec::new();
                let node = self.nodes.get_mut(m).expect("node exists");
                node.handle(self.now, Input::View { ring, members: &members, left: &left }, &mut out);
                msgs.extend(out.into_iter().filter_map(|e| match e {
                    Effect::Broadcast(msg) => Some((*m, msg)),
                    Effect::Changed(_) => None,
                }));
            }
            self.deliver(&members, msgs);
            self.partitions.push(members);
        }
    }

    pub(crate) fn deliver(&mut self, members: &[NodeId], msgs: Vec<(NodeId, QuorumMsg)>) {
        for (from, msg) in msgs {
            for m in members {
                let mut out = Vec::new();
                let node = self.nodes.get_mut(m).expect("node exists");
                node.handle(self.now, Input::Delivered { from, msg: msg.clone() }, &mut out);
            }
        }
    }

    /// Broadcasts an administrator's expected-votes change from `from` within its partition.
    pub(crate) fn set_expected(&mut self, from: u32, n: u32) -> Result<(), String> {
        let from = NodeId(from);
        self.nodes[&from].check_expected_votes(n)?;
        let part = self.partitions.iter().find(|p| p.contains(&from)).cloned().unwrap_or_default();
        self.deliver(&part, vec![(from, QuorumMsg::SetExpected { expected_votes: n })]);
        Ok(())
    }

    /// The cluster-wide `device add` commits: every up node takes the arbiter at the same point
    /// of the order; nodes started later read the rewritten configuration.
    pub(crate) fn add_device(&mut self, votes: u32) {
        for part in self.partitions.clone() {
            for m in &part {
                let mut out = Vec::new();
                self.nodes.get_mut(m).expect("node").handle(self.now, Input::DeviceAdded { votes }, &mut out);
            }
        }
        if self.cfg.device_votes.is_some() {
            return;
        }
        self.cfg.two_node = false;
        self.cfg.device_votes = Some(votes);
    }

    /// The arbiter client of `node` reports; the report is delivered to its partition.
    pub(crate) fn device(&mut self, node: u32, cast: bool) {
        let mut out = Vec::new();
        let now = self.now;
        let id = NodeId(node);
        self.nodes.get_mut(&id).expect("node").handle(now, Input::Device { cast }, &mut out);
        let msgs: Vec<(NodeId, QuorumMsg)> = out
            .into_iter()
            .filter_map(|e| match e {
                Effect::Broadcast(m) => Some((id, m)),
                Effect::Changed(_) => None,
            })
            .collect();
        let part = self.partitions.iter().find(|p| p.contains(&id)).cloned().unwrap_or_default();
        self.deliver(&part, msgs);
    }

    /// Every node's arbiter client reports `cast` for the partition it is in.
    pub(crate) fn device_all(&mut self, cast_for: impl Fn(&[NodeId]) -> bool) {
        for part in self.partitions.clone() {
            let cast = cast_for(&part);
            for m in &part {
                self.device(m.0, cast);
            }
        }
    }

    /// Advances time, waking nodes whose deadline passed.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for node in self.nodes.values_mut() {
            if node.next_wakeup().is_some_and(|t| t <= now) {
                let mut out = Vec::new();
                node.handle(now, Input::Wakeup, &mut out);
            }
        }
    }

    pub(crate) fn quorate(&self, node: u32) -> bool {
        self.nodes[&NodeId(node)].is_quorate()
    }

    pub(crate) fn status(&self, node: u32) -> QuorumStatus {
        self.nodes[&NodeId(node)].status()
    }

    /// Node ids of each quorate partition (judged by its first member).
    pub(crate) fn quorate_partitions(&self) -> Vec<Vec<NodeId>> {
        self.partitions.iter().filter(|p| p.iter().all(|n| self.nodes[n].is_quorate())).cloned().collect()
    }

    /// All members of one partition agree on quorate and the numbers.
    pub(crate) fn assert_partitions_agree(&self) {
        for p in &self.partitions {
            let first = self.nodes[&p[0]].status();
            for n in p {
                let s = self.nodes[n].status();
                assert_eq!((s.quorate, s.quorum), (first.quorate, first.quorum), "members of {p:?} disagree");
            }
        }
    }
}
