//! The interface a sans-IO core implements to run in the simulator.

use wire::{Instant, LinkId, NodeId};

/// A protocol core as the simulator sees it.
///
/// The simulator calls exactly one `on_*` method per step, then [`SimNode::next_wakeup`]. A node
/// must not keep time of its own: `now` (its local clock, which may drift or jump) is the only time.
pub trait SimNode {
    /// What the node reports for checkers (views installed, messages delivered, roles taken...).
    type Note: Clone + std::fmt::Debug;

    /// Called once after the node is created or restarted.
    fn on_start(&mut self, now: Instant, out: &mut Outbox<Self::Note>);

    /// A datagram arrived from `from` on `link`.
    fn on_packet(&mut self, now: Instant, from: NodeId, link: LinkId, bytes: &[u8], out: &mut Outbox<Self::Note>);

    /// The deadline returned by [`SimNode::next_wakeup`] has passed (possibly late: after a pause).
    fn on_wakeup(&mut self, now: Instant, out: &mut Outbox<Self::Note>);

    /// The earliest local time at which the node wants [`SimNode::on_wakeup`], if any.
    fn next_wakeup(&self) -> Option<Instant>;
}

/// Effects a node produces during one step.
#[derive(Debug)]
pub struct Outbox<N> {
    pub(crate) sends: Vec<(NodeId, LinkId, Vec<u8>)>,
    pub(crate) persists: Vec<Vec<u8>>,
    pub(crate) notes: Vec<N>,
}

impl<N> Default for Outbox<N> {
    fn default() -> Self {
        Outbox { sends: Vec::new(), persists: Vec::new(), notes: Vec::new() }
    }
}

impl<N> Outbox<N> {
    /// Sends a datagram to `to` over `link`.
    pub fn send(&mut self, to: NodeId, link: LinkId, bytes: Vec<u8>) {
        self.sends.push((to, link, bytes));
    }

    /// Replaces the node's durable state with `bytes` (written and synced before the step ends;
    /// a restart with kept state hands back the last value).
    pub fn persist(&mut self, bytes: Vec<u8>) {
        self.persists.push(bytes);
    }

    /// Reports an observation to the checkers.
    pub fn note(&mut self, note: N) {
        self.notes.push(note);
    }
}
