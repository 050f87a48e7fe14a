//! Cluster membership: a token ring in the spirit of Totem SRP.
//!
//! Nodes agree on *views* (a ring id and an ordered member list) through a gather → commit →
//! operational protocol, and multicast messages in one total order inside each view with
//! extended virtual synchrony: members that move together from one view to the next deliver
//! exactly the same messages of the old view, before the new view is reported. Failure detection
//! is fast (token loss, then silent candidates are excluded after a short join timeout instead of
//! always waiting for the consensus timer) and hard to fool (a node that was not scheduled
//! notices it from its own late timers and restarts them instead of blaming peers; the token
//! timeout adapts to measured rotations). Each node has several links; tokens that are not
//! acknowledged are re-sent on every link, so a link failure alone never changes the view.
//!
//! The core is sans-IO: call [`Membership::handle`] with `now` and an [`Input`], execute the
//! [`Effect`]s, and call again at [`Membership::next_wakeup`]. It never touches sockets, files,
//! clocks, threads or a global RNG, and must never depend on tokio or any transport: the
//! `clusterd` driver and the simulator both run it unchanged. The protocol is described in
//! `docs/membership.md`.

mod config;
mod links;
mod packet;
mod ring;

pub use config::{Config, ConfigError, ConfigErrors};
pub use links::LinkState;
pub use packet::KIND;
pub use ring::{Counters, Departure, Effect, Input, Membership, PersistedState, Phase, Status, View};

use wire::{LinkId, NodeId};

/// The one place view changes are logged, in plain words.
fn log_view(node: NodeId, view: &View) {
    let members: Vec<String> = view.members.iter().map(|m| m.to_string()).collect();
    tracing::info!(node = %node, ring_id = %view.ring, members = %members.join(" "), "a new membership ({}) was formed", view.ring);
    for j in &view.joined {
        tracing::info!(node = %node, ring_id = %view.ring, peer = %j, "node {j} joined");
    }
    for (d, why) in &view.departed {
        tracing::warn!(node = %node, ring_id = %view.ring, peer = %d, "node {d} {why}");
    }
}

fn log_link(node: NodeId, peer: NodeId, link: LinkId, up: bool) {
    if up {
        tracing::info!(node = %node, %peer, %link, "link to node {peer} is up");
    } else {
        tracing::warn!(node = %node, %peer, %link, "link to node {peer} is down");
    }
}
