//! The catalogue of this core's log events, logged in one place.

use wire::{LinkId, NodeId, RingId};

use crate::ring::View;

/// Everything the core logs. Levels: `info` for state changes, `warn` for degradation,
/// `debug` for protocol steps.
pub(crate) enum Event<'a> {
    ViewInstalled { node: NodeId, view: &'a View },
    Link { node: NodeId, peer: NodeId, link: LinkId, up: bool },
    Stall { node: NodeId, late_ms: u64 },
    Malformed { from: NodeId, link: LinkId, error: &'a wire::DecodeError },
    Left { node: NodeId },
    GatherOnJoin { node: NodeId, from: NodeId },
    GatherOnMerge { node: NodeId, from: NodeId, ring: RingId },
    GatherOnLeave { node: NodeId, from: NodeId },
    TokenLost { node: NodeId, ring: RingId, waited_ms: u64 },
    Committing { node: NodeId, ring: RingId, members: &'a [NodeId] },
    CommitTimedOut { node: NodeId },
}

impl Event<'_> {
    pub(crate) fn log(&self) {
        match self {
            Event::ViewInstalled { node, view } => {
                let members: Vec<String> = view.members.iter().map(|m| m.to_string()).collect();
                tracing::info!(node = %node, ring_id = %view.ring, members = %members.join(" "), "a new membership ({}) was formed", view.ring);
                for j in &view.joined {
                    tracing::info!(node = %node, ring_id = %view.ring, peer = %j, "node {j} joined");
                }
                for (d, why) in &view.departed {
                    tracing::warn!(node = %node, ring_id = %view.ring, peer = %d, "node {d} {why}");
                }
            }
            Event::Link { node, peer, link, up: true } => {
                tracing::info!(node = %node, %peer, %link, "link to node {peer} is up")
            }
            Event::Link { node, peer, link, up: false } => {
                tracing::warn!(node = %node, %peer, %link, "link to node {peer} is down")
            }
            Event::Stall { node, late_ms } => tracing::warn!(
                node = %node,
                late_ms,
                "this node was not scheduled for a while; restarting its timers instead of suspecting peers"
            ),
            Event::Malformed { from, link, error } => {
                tracing::debug!(%from, %link, %error, "dropped a malformed packet")
            }
            Event::Left { node } => tracing::info!(node = %node, "left the cluster"),
            Event::GatherOnJoin { node, from } => {
                tracing::info!(node = %node, %from, "a join arrived: gathering a new membership")
            }
            Event::GatherOnMerge { node, from, ring } => {
                tracing::info!(node = %node, %from, %ring, "another ring is reachable: gathering to merge")
            }
            Event::GatherOnLeave { node, from } => {
                tracing::info!(node = %node, %from, "a member leaves: gathering a new membership")
            }
            Event::TokenLost { node, ring, waited_ms } => {
                tracing::warn!(node = %node, %ring, waited_ms, "token lost: suspecting the ring and gathering")
            }
            Event::Committing { node, ring, members } => {
                tracing::debug!(node = %node, %ring, ?members, "members agree: committing a new ring")
            }
            Event::CommitTimedOut { node } => tracing::debug!(node = %node, "commit timed out: gathering again"),
        }
    }
}
