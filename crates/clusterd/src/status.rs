//! Human-readable rendering of a node's status (`crmctl membership status`).

use std::fmt::Write;

use crate::control::NodeStatus;

/// Renders the status as text, one fact per line.
pub fn render_status(s: &NodeStatus) -> String {
    let name = |id: wire::NodeId| {
        s.names.iter().find(|(n, _)| *n == id).map_or_else(|| format!("node{id}"), |(_, name)| name.clone())
    };
    let m = &s.membership;
    let mut out = String::new();
    let _ = writeln!(out, "Cluster: {}   Node: {} (id {})   Phase: {:?}", s.cluster_name, s.name, m.node, m.phase);
    match m.ring {
        Some(r) => {
            let _ = writeln!(out, "Ring id: {r}   Members: {}", m.members.len());
        }
        None => {
            let _ = writeln!(out, "Ring id: none (no view yet)");
        }
    }
    for id in &m.members {
        let _ = writeln!(out, "  member {id} {}", name(*id));
    }
    if let Some(v) = &s.last_view {
        for j in &v.joined {
            let _ = writeln!(out, "  last change: node {j} ({}) joined", name(*j));
        }
        for (d, why) in &v.departed {
            let _ = writeln!(out, "  last change: node {d} ({}) {why}", name(*d));
        }
    }
    let _ = writeln!(out, "Links:");
    for (peer, links) in &m.links {
        for (i, l) in links.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {} link{i}: {}  packets {}  down {} times",
                name(*peer),
                if l.up { "up" } else { "DOWN" },
                l.packets_in,
                l.down_count
            );
        }
    }
    let c = &m.counters;
    let _ = writeln!(
        out,
        "Token: timeout {} ms, rotation {} us   Views: {}   Token losses: {}   Local stalls: {}",
        m.token_timeout.as_millis(),
        m.rotation.as_micros(),
        c.views,
        c.token_losses,
        c.stalls
    );
    let _ = writeln!(
        out,
        "Messages: delivered {}  retransmitted {}  pending {}  rejected {}",
        c.delivered, c.retransmits, m.pending, c.rejected
    );
    let t = &s.transport;
    let _ = writeln!(
        out,
        "Datagrams: in {}  out {}  dropped: malformed {}  unauthenticated {}  replayed {}  unknown source {}  other cluster or node {}  stale {}  send errors {}",
        t.datagrams_in,
        t.datagrams_out,
        t.malformed + c.malformed,
        t.auth_failures,
        t.replays,
        t.unknown_source,
        c.foreign,
        c.stale,
        t.send_errors
    );
    out
}
