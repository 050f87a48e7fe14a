//! Votequorum: the quorum calculation every member runs on the agreed view.
//!
//! Inputs come in the order membership delivers them (views and messages share one total
//! order), so every member of a view computes the same answer. On each view a member
//! broadcasts its [`NodeInfo`]; a partition only *gains* quorum once every member's information
//! for that view has arrived, while losing quorum takes effect at once.
//!
//! The arithmetic (OpenVMS style, as votequorum does):
//! ```text
//! TV = votes of the members (+ the arbiter's votes while this node's device casts them)
//! EV = max(our expected votes, every member's expected votes, TV)   never falls on its own
//! quorum = max(EV/2 + 1, TV/2 + 1), and not below the previous quorum unless lowered on purpose
//! two_node with at most two members: quorum = 1
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use wire::{Instant, NodeId, RingId};

use crate::config::{QuorumConfig, TieBreaker};

/// The `wire` frame kind of [`QuorumMsg`] inside ordered delivery.
pub const QUORUM_WIRE_KIND: u8 = 0x50;

/// What a member tells the others after each view change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The view this information belongs to.
    pub ring: RingId,
    /// The sender's expected votes.
    pub expected_votes: u32,
    /// The sender was quorate before this view.
    pub quorate: bool,
    /// The sender is still waiting for all nodes (wait_for_all).
    pub waiting_for_all: bool,
    /// The sender's quorum before this view (quorum never falls on its own).
    pub quorum: u32,
    /// The last quorate view the sender was in, and its members (tie-breaking history).
    pub last_quorate: Option<(RingId, Vec<NodeId>)>,
}

/// Messages exchanged over ordered delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuorumMsg {
    /// Per-view node information.
    Info(NodeInfo),
    /// A member's arbiter client reports, for this view, whether the arbiter gives it its vote.
    /// The partition counts the arbiter's votes only when every member reports `cast`.
    Device {
        /// The view the report is for.
        ring: RingId,
        /// The arbiter gives its vote.
        cast: bool,
    },
    /// An administrator changed expected votes (`crmctl quorum expected-votes N`).
    SetExpected {
        /// The new value.
        expected_votes: u32,
    },
}

/// Inputs, in delivery order.
#[derive(Clone, Debug)]
pub enum Input<'a> {
    /// A new agreed view. `left` are nodes that left cleanly since the previous view.
    View {
        /// The view's id.
        ring: RingId,
        /// Its members.
        members: &'a [NodeId],
        /// Members of the previous view that left cleanly (shutdown), not failed.
        left: &'a [NodeId],
    },
    /// A quorum message delivered by membership.
    Delivered {
        /// Sender.
        from: NodeId,
        /// The message.
        msg: QuorumMsg,
    },
    /// This node's arbiter client says whether the arbiter gives this partition its vote
    /// (broadcast to the members, counted once all agree).
    Device {
        /// True while the arbiter gives us its vote.
        cast: bool,
    },
    /// An arbiter with `votes` was added to the cluster at run time. Must be fed at the same
    /// point of the agreed order on every member (the driver does it when the cluster-wide
    /// `device add` commits). `two_node` is turned off (the arbiter breaks ties) and with it the
    /// wait_for_all it implied (an explicit wait_for_all stays), as pcs does; expected votes grow
    /// by `votes`. Ignored when an arbiter is already configured.
    DeviceAdded {
        /// The arbiter's votes.
        votes: u32,
    },
    /// The arbiter was removed at run time (fed like [`Input::DeviceAdded`]). Expected votes
    /// shrink by its votes; `two_node` (for a two-node cluster) is turned back on.
    DeviceRemoved {
        /// Whether the configuration now has two_node.
        two_node: bool,
    },
    /// The deadline from [`Votequorum::next_wakeup`] passed.
    Wakeup,
}

/// Effects for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Effect {
    /// Send to all members through ordered delivery.
    Broadcast(QuorumMsg),
    /// The quorum state changed (quorate flag or any number).
    Changed(QuorumStatus),
}

/// A snapshot for status output and for the layers above.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// The view.
    pub ring: Option<RingId>,
    /// Its members.
    pub members: Vec<NodeId>,
    /// Whether this partition may act.
    pub quorate: bool,
    /// Expected votes.
    pub expected_votes: u32,
    /// Highest expected votes among members.
    pub highest_expected: u32,
    /// Votes present.
    pub total_votes: u32,
    /// Votes needed.
    pub quorum: u32,
    /// Flags in corosync-quorumtool's words (`2Node Quorate WaitForAll ...`).
    pub flags: Vec<String>,
    /// Arbiter votes and whether this partition has them.
    pub device: Option<(u32, bool)>,
    /// Why quorate or not, and what would restore quorum, in plain words.
    pub explanation: String,
}

/// The votequorum state of one node.
#[derive(Debug)]
pub struct Votequorum {
    cfg: QuorumConfig,
    ring: Option<RingId>,
    members: Vec<NodeId>,
    info: BTreeMap<NodeId, NodeInfo>,
    expected_votes: u32,
    quorum: u32,
    quorate: bool,
    waiting_for_all: bool,
    last_quorate: Option<(RingId, Vec<NodeId>)>,
    device_reports: BTreeMap<NodeId, bool>,
    device_cast: bool,
    lms_deadline: Option<Instant>,
    last_status: Option<QuorumStatus>,
}

impl Votequorum {
    /// A node's quorum state at start: not quorate, no view yet. `cfg` must have passed
    /// [`QuorumConfig::validate`].
    pub fn new(cfg: QuorumConfig) -> Self {
        let expected_votes = cfg.configured_expected_votes();
        let waiting_for_all = cfg.wait_for_all_effective();
        Votequorum {
            cfg,
            ring: None,
            members: Vec::new(),
            info: BTreeMap::new(),
            expected_votes,
            quorum: 0,
            quorate: false,
            waiting_for_all,
            last_quorate: None,
            device_reports: BTreeMap::new(),
            device_cast: false,
            lms_deadline: None,
            last_status: None,
        }
    }

    /// Whether this partition is quorate.
    pub fn is_quorate(&self) -> bool {
        self.quorate
    }

    /// The current status.
    pub fn status(&self) -> QuorumStatus {
        let tv = self.total_votes();
        let mut flags = Vec::new();
        if self.two_node_active() {
            flags.push("2Node".to_string());
        }
        if self.quorate {
            flags.push("Quorate".to_string());
        }
        if self.cfg.wait_for_all_effective() {
            flags.push("WaitForAll".to_string());
        }
        if self.cfg.last_man_standing {
            flags.push("LastManStanding".to_string());
        }
        if self.cfg.auto_tie_breaker {
            flags.push("AutoTieBreaker".to_string());
        }
        if self.cfg.allow_downscale {
            flags.push("AllowDownscale".to_string());
        }
        if self.cfg.device_votes.is_some() {
            flags.push("Qdevice".to_string());
        }
        QuorumStatus {
            ring: self.ring,
            members: self.members.clone(),
            quorate: self.quorate,
            expected_votes: self.expected_votes,
            highest_expected: self.highest_expected(),
            total_votes: tv,
            quorum: self.quorum,
            flags,
            device: self.cfg.device_votes.map(|v| (v, self.device_cast)),
            explanation: self.explain(tv),
        }
    }

    /// Checks a runtime expected-votes change before it is broadcast.
    pub fn check_expected_votes(&self, n: u32) -> Result<(), String> {
        let tv = self.total_votes();
        if n == 0 {
            return Err("expected votes must be at least 1".into());
        }
        if n < tv {
            return Err(format!("{n} is below the {tv} votes present; use at least {tv}"));
        }
        Ok(())
    }

    /// The earliest time this node needs [`Input::Wakeup`].
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.lms_deadline
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input<'_>, out: &mut Vec<Effect>) {
        match input {
            Input::View { ring, members, left } => self.on_view(now, ring, members, left, out),
            Input::Delivered { from, msg } => self.on_message(now, from, msg),
            Input::Device { cast } => {
                if let (Some(ring), Some(_)) = (self.ring, self.cfg.device_votes) {
                    out.push(Effect::Broadcast(QuorumMsg::Device { ring, cast }));
                }
            }
            Input::DeviceAdded { votes } => self.on_device_added(now, votes),
            Input::DeviceRemoved { two_node } => self.on_device_removed(now, two_node),
            Input::Wakeup => self.on_wakeup(now),
        }
        self.report(out);
    }

    fn on_view(&mut self, now: Instant, ring: RingId, members: &[NodeId], left: &[NodeId], out: &mut Vec<Effect>) {
        let mut sorted: Vec<NodeId> = members.to_vec();
        sorted.sort();
        sorted.dedup();
        self.ring = Some(ring);
        self.members = sorted;
        self.info.retain(|_, i| i.ring == ring);
        // The arbiter's vote must be confirmed again for the new view.
        self.device_reports.clear();
        self.device_cast = false;
        if self.cfg.allow_downscale {
            let gone: u32 = left.iter().filter(|n| !self.members.contains(n)).map(|n| self.votes_of(*n)).sum();
            let floor = self.cfg.configured_expected_votes();
            self.expected_votes = self.expected_votes.saturating_sub(gone).max(floor);
        }
        out.push(Effect::Broadcast(QuorumMsg::Info(NodeInfo {
            ring,
            expected_votes: self.expected_votes,
            quorate: self.quorate,
            waiting_for_all: self.waiting_for_all,
            quorum: self.quorum,
            last_quorate: self.last_quorate.clone(),
        })));
        // Any membership change restarts the last-man-standing window.
        self.lms_deadline = None;
        self.recalculate(now, false);
    }

    fn on_message(&mut self, now: Instant, from: NodeId, msg: QuorumMsg) {
        match msg {
            QuorumMsg::Info(info) => {
                if Some(info.ring) != self.ring || !self.members.contains(&from) {
                    return;
                }
                self.info.insert(from, info);
                if self.members.iter().all(|n| self.info.contains_key(n)) {
                    self.merge_partition_state();
                }
                self.recalculate(now, false);
            }
            QuorumMsg::Device { ring, cast } => {
                if Some(ring) != self.ring || !self.members.contains(&from) || self.cfg.device_votes.is_none() {
                    return;
                }
                self.device_reports.insert(from, cast);
                self.device_cast = self.members.iter().all(|m| self.device_reports.get(m) == Some(&true));
                self.recalculate(now, false);
            }
            QuorumMsg::SetExpected { expected_votes } => {
                let tv = self.total_votes();
                self.expected_votes = expected_votes.max(tv).max(1);
                for info in self.info.values_mut() {
                    info.expected_votes = self.expected_votes;
                }
                self.recalculate(now, true);
            }
        }
    }

    fn on_device_added(&mut self, now: Instant, votes: u32) {
        if self.cfg.device_votes.is_some() || votes == 0 {
            return;
        }
        // The arbiter breaks ties now; wait_for_all stays only where it was set explicitly.
        self.cfg.two_node = false;
        if !self.cfg.wait_for_all_effective() {
            self.waiting_for_all = false;
        }
        self.cfg.device_votes = Some(votes);
        self.expected_votes = self.expected_votes.saturating_add(votes);
        for info in self.info.values_mut() {
            info.expected_votes = info.expected_votes.saturating_add(votes);
        }
        // The arbiter's vote counts once every member reports it for this view.
        self.device_reports.clear();
        self.device_cast = false;
        self.recalculate(now, true);
    }

    fn on_device_removed(&mut self, now: Instant, two_node: bool) {
        let Some(votes) = self.cfg.device_votes.take() else { return };
        self.expected_votes = self.expected_votes.saturating_sub(votes).max(1);
        for info in self.info.values_mut() {
            info.expected_votes = info.expected_votes.saturating_sub(votes).max(1);
        }
        self.device_reports.clear();
        self.device_cast = false;
        if two_node && self.cfg.node_votes.len() == 2 {
            self.cfg.two_node = true;
        }
        self.recalculate(now, true);
    }

    fn on_wakeup(&mut self, now: Instant) {
        let Some(deadline) = self.lms_deadline else { return };
        if now < deadline {
            return;
        }
        self.lms_deadline = None;
        let tv = self.total_votes();
        if self.quorate && tv < self.expected_votes {
            // Last man standing: the missing nodes are not coming back soon; shrink.
            self.expected_votes = tv;
            for info in self.info.values_mut() {
                info.expected_votes = tv;
            }
            self.recalculate(now, true);
        }
    }

    fn votes_of(&self, n: NodeId) -> u32 {
        self.cfg.node_votes.get(&n).copied().unwrap_or(1)
    }

    fn total_votes(&self) -> u32 {
        let nodes: u32 = self.members.iter().map(|&n| self.votes_of(n)).sum();
        let device = if self.device_cast { self.cfg.device_votes.unwrap_or(0) } else { 0 };
        nodes + device
    }

    fn highest_expected(&self) -> u32 {
        self.info
            .iter()
            .filter(|(n, _)| self.members.contains(n))
            .map(|(_, i)| i.expected_votes)
            .chain([self.expected_votes])
            .max()
            .unwrap_or(self.expected_votes)
    }

    /// Every member's information (and, with an arbiter, its arbiter report) for this view is in.
    fn all_info_in(&self) -> bool {
        self.members.iter().all(|n| self.info.contains_key(n))
            && (self.cfg.device_votes.is_none() || self.members.iter().all(|n| self.device_reports.contains_key(n)))
    }

    /// Once every member's information is in, adopt the partition-wide view of the history
    /// (expected votes, quorum floor, wait_for_all, last quorate view), so that every member
    /// computes the same answer from the same inputs.
    fn merge_partition_state(&mut self) {
        let infos: Vec<&NodeInfo> = self.members.iter().filter_map(|n| self.info.get(n)).collect();
        self.expected_votes = infos.iter().map(|i| i.expected_votes).max().unwrap_or(self.expected_votes);
        self.quorum = infos.iter().map(|i| i.quorum).max().unwrap_or(self.quorum);
        if self.cfg.wait_for_all_effective() {
            // Joining a partition that was already quorate clears the wait; otherwise it holds.
            self.waiting_for_all = !infos.iter().any(|i| i.quorate && !i.waiting_for_all);
        }
        self.last_quorate = infos
            .iter()
            .filter_map(|i| i.last_quorate.clone())
            .max_by_key(|(ring, _)| *ring)
            .or(self.last_quorate.take());
    }

    fn two_node_active(&self) -> bool {
        self.cfg.two_node && self.members.len() <= 2
    }

    fn recalculate(&mut self, now: Instant, allow_decrease: bool) {
        let tv = self.total_votes();
        if tv > self.expected_votes {
            self.expected_votes = tv;
        }
        let ev = self.highest_expected().max(self.expected_votes);
        let mut quorum = (ev / 2 + 1).max(tv / 2 + 1);
        if !allow_decrease {
            quorum = quorum.max(self.quorum);
        }
        if self.two_node_active() {
            quorum = 1;
        }
        self.quorum = quorum;

        let mut quorate = self.decide(tv, ev);
        // Gaining quorum needs every member's information for this view; losing it does not.
        if quorate && !self.quorate && !self.all_info_in() {
            quorate = false;
        }
        if quorate && let Some(ring) = self.ring {
            self.last_quorate = Some((ring, self.members.clone()));
        }
        if self.cfg.wait_for_all_effective() && (quorate || self.all_info_in()) {
            // Re-arms when the partition is inquorate; clears once quorate.
            self.waiting_for_all = !quorate;
        }
        self.quorate = quorate;

        if self.cfg.last_man_standing && quorate && tv < ev {
            if self.lms_deadline.is_none() {
                self.lms_deadline = Some(now + self.cfg.last_man_standing_window);
            }
        } else {
            self.lms_deadline = None;
        }
    }

    fn decide(&self, tv: u32, ev: u32) -> bool {
        if self.members.is_empty() {
            return false;
        }
        if self.cfg.wait_for_all_effective() && self.waiting_for_all && tv < ev {
            return false;
        }
        if tv >= self.quorum {
            return true;
        }
        // Exact 50 % split with auto_tie_breaker, when the other half cannot hold quorum.
        if self.cfg.auto_tie_breaker && ev.is_multiple_of(2) && tv == ev / 2 {
            let missing = self.last_quorate_members().iter().filter(|n| !self.members.contains(n)).count() as u32;
            if missing < self.quorum && self.holds_tie_breaker() {
                return true;
            }
        }
        false
    }

    fn last_quorate_members(&self) -> &[NodeId] {
        self.last_quorate.as_ref().map_or(&[], |(_, m)| m.as_slice())
    }

    fn holds_tie_breaker(&self) -> bool {
        // Lowest/highest id of the last quorate view (of the configured nodes before any).
        let last = self.last_quorate_members();
        match &self.cfg.auto_tie_breaker_node {
            TieBreaker::Lowest => {
                let lowest = last.iter().min().or_else(|| self.cfg.node_votes.keys().next()).copied();
                lowest.is_some_and(|n| self.members.contains(&n))
            }
            TieBreaker::Highest => {
                let highest = last.iter().max().or_else(|| self.cfg.node_votes.keys().next_back()).copied();
                highest.is_some_and(|n| self.members.contains(&n))
            }
            TieBreaker::List(list) => {
                // The first listed node present here wins, unless a node listed before it was in
                // the last quorate view and may now be on the other side.
                for (i, n) in list.iter().enumerate() {
                    if self.members.contains(n) {
                        return !list[..i].iter().any(|p| last.contains(p));
                    }
                }
                false
            }
        }
    }

    fn explain(&self, tv: u32) -> String {
        if self.members.is_empty() {
            return "no membership view yet".into();
        }
        let ev = self.highest_expected().max(self.expected_votes);
        let present: BTreeSet<NodeId> = self.members.iter().copied().collect();
        let missing: Vec<(NodeId, u32)> =
            self.cfg.node_votes.iter().filter(|(n, _)| !present.contains(n)).map(|(n, v)| (*n, *v)).collect();
        let missing_words = |list: &[(NodeId, u32)]| -> String {
            list.iter()
                .map(|(n, v)| format!("node {n} ({v} vote{})", if *v == 1 { "" } else { "s" }))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.quorate {
            let mut s = format!("quorate: {tv} of {ev} expected votes present, {} needed", self.quorum);
            if self.two_node_active() && self.members.len() < 2 {
                s.push_str(" (two_node: the surviving node keeps quorum; fencing decides a split)");
            }
            return s;
        }
        if self.cfg.wait_for_all_effective() && self.waiting_for_all && tv < ev {
            return format!(
                "not quorate: wait_for_all: every node must be seen together once after a start or a loss of quorum; missing {}",
                missing_words(&missing)
            );
        }
        if !self.all_info_in() {
            return "not quorate yet: exchanging vote information with the new members (and the arbiter's answer)"
                .into();
        }
        let short = self.quorum.saturating_sub(tv);
        let mut options: Vec<String> = Vec::new();
        if !missing.is_empty() {
            options.push(missing_words(&missing));
        }
        if let (Some(v), false) = (self.cfg.device_votes, self.device_cast) {
            options.push(format!("the arbiter ({v} vote{})", if v == 1 { "" } else { "s" }));
        }
        format!(
            "not quorate: {tv} of {ev} expected votes present, {} needed; {short} more vote{} would restore quorum: {}",
            self.quorum,
            if short == 1 { "" } else { "s" },
            if options.is_empty() { "none configured".to_string() } else { options.join(", or ") }
        )
    }

    fn report(&mut self, out: &mut Vec<Effect>) {
        let status = self.status();
        if self.last_status.as_ref() != Some(&status) {
            self.last_status = Some(status.clone());
            out.push(Effect::Changed(status));
        }
    }
}
