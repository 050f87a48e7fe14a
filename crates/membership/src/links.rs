//! Per-peer, per-link liveness: probes, "they hear us" feedback, best-link choice.

use std::collections::BTreeMap;

use wire::{Duration, Instant, LinkId, NodeId};

/// What one link to one peer looks like from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkState {
    /// Usable both ways (heard recently, and the peer says it hears us).
    pub up: bool,
    /// When a packet last arrived from the peer on this link.
    pub heard_at: Option<Instant>,
    /// The peer's last probe said it hears us on this link.
    pub they_hear_us: bool,
    /// Packets received on this link from this peer.
    pub packets_in: u64,
    /// Times the link went down.
    pub down_count: u64,
}

#[derive(Debug)]
pub(crate) struct Links {
    links: u8,
    peers: BTreeMap<NodeId, Vec<LinkState>>,
    pub(crate) next_ping: Instant,
}

impl Links {
    pub(crate) fn new(me: NodeId, nodes: &[NodeId], links: u8) -> Self {
        let peers =
            nodes.iter().filter(|&&n| n != me).map(|&n| (n, vec![LinkState::default(); links as usize])).collect();
        Links { links, peers, next_ping: Instant::ZERO }
    }

    pub(crate) fn link_ids(&self) -> impl Iterator<Item = LinkId> + use<> {
        (0..self.links).map(LinkId)
    }

    pub(crate) fn peers(&self) -> impl Iterator<Item = (&NodeId, &Vec<LinkState>)> {
        self.peers.iter()
    }

    /// A packet arrived from `peer` on `link`.
    pub(crate) fn heard(&mut self, now: Instant, peer: NodeId, link: LinkId) {
        if let Some(l) = self.peers.get_mut(&peer).and_then(|v| v.get_mut(link.0 as usize)) {
            l.heard_at = Some(now);
            l.packets_in += 1;
        }
    }

    pub(crate) fn ping(&mut self, peer: NodeId, link: LinkId, hear: bool) {
        if let Some(l) = self.peers.get_mut(&peer).and_then(|v| v.get_mut(link.0 as usize)) {
            l.they_hear_us = hear;
        }
    }

    /// Do we hear `peer` on `link` (for the probe we send)?
    pub(crate) fn hears(&self, now: Instant, peer: NodeId, link: LinkId, timeout: Duration) -> bool {
        self.peers
            .get(&peer)
            .and_then(|v| v.get(link.0 as usize))
            .and_then(|l| l.heard_at)
            .is_some_and(|t| now - t < timeout)
    }

    /// Re-evaluates every link; returns the ones whose state changed.
    pub(crate) fn evaluate(&mut self, now: Instant, timeout: Duration) -> Vec<(NodeId, LinkId, bool)> {
        let mut changed = Vec::new();
        for (&peer, v) in self.peers.iter_mut() {
            for (i, l) in v.iter_mut().enumerate() {
                let up = l.they_hear_us && l.heard_at.is_some_and(|t| now - t < timeout);
                if up != l.up {
                    l.up = up;
                    if !up {
                        l.down_count += 1;
                    }
                    changed.push((peer, LinkId(i as u8), up));
                }
            }
        }
        changed
    }

    /// Forgives silence after a local stall: every link counts as heard now.
    pub(crate) fn forgive(&mut self, now: Instant) {
        for v in self.peers.values_mut() {
            for l in v.iter_mut() {
                if l.heard_at.is_some() {
                    l.heard_at = Some(now);
                }
            }
        }
    }

    /// The link to use for `peer`: the lowest-numbered link that is up; else the one heard most
    /// recently; else link 0.
    pub(crate) fn best(&self, peer: NodeId) -> LinkId {
        let Some(v) = self.peers.get(&peer) else { return LinkId(0) };
        if let Some(i) = v.iter().position(|l| l.up) {
            return LinkId(i as u8);
        }
        v.iter()
            .enumerate()
            .filter_map(|(i, l)| l.heard_at.map(|t| (t, std::cmp::Reverse(i))))
            .max()
            .map_or(LinkId(0), |(_, std::cmp::Reverse(i))| LinkId(i as u8))
    }

    /// The earliest time at which some link that is up would time out.
    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|v| v.iter())
            .filter(|l| l.up)
            .filter_map(|l| l.heard_at.map(|t| t + timeout))
            .min()
    }
}
