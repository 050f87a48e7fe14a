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

/// Renders the quorum status as text (`crmctl quorum status`), in corosync-quorumtool's terms.
pub fn render_quorum(r: &crate::control::QuorumReport) -> String {
    let s = &r.status;
    let mut out = String::new();
    let _ = writeln!(out, "Cluster: {}   Node: {} (id {})", r.cluster_name, r.name, r.node_id);
    match s.ring {
        Some(ring) => {
            let _ = writeln!(out, "Ring id: {ring}   Members: {}", s.members.len());
        }
        None => {
            let _ = writeln!(out, "Ring id: none (no view yet)");
        }
    }
    let _ = writeln!(out, "Quorate:          {}", if s.quorate { "Yes" } else { "No" });
    let _ = writeln!(out, "Expected votes:   {}", s.expected_votes);
    let _ = writeln!(out, "Highest expected: {}", s.highest_expected);
    let _ = writeln!(out, "Total votes:      {}", s.total_votes);
    let _ = writeln!(out, "Quorum:           {}", s.quorum);
    let _ = writeln!(out, "Flags:            {}", s.flags.join(" "));
    match s.device {
        Some((votes, true)) => {
            let _ = writeln!(out, "Arbiter:          {votes} vote(s), held by this partition");
        }
        Some((votes, false)) => {
            let _ = writeln!(out, "Arbiter:          {votes} vote(s), NOT held by this partition");
        }
        None => {
            let _ = writeln!(out, "Arbiter:          none configured");
        }
    }
    if let Some(a) = &r.arbiter {
        let _ = writeln!(
            out,
            "Arbiter link:     {} {}{}",
            a.address,
            if a.connected { "connected" } else { "NOT connected" },
            if a.has_vote { ", this node holds the vote" } else { "" }
        );
        if let Some(why) = &a.refused {
            let _ = writeln!(out, "Arbiter refused:  {why}");
        }
    }
    let _ = writeln!(out, "Members:");
    for (id, name, votes) in &r.nodes {
        let state = if s.members.contains(id) { "member" } else { "absent" };
        let _ = writeln!(out, "  {id:>3} {name:<16} {votes} vote(s)  {state}");
    }
    let _ = writeln!(out, "Why: {}", s.explanation);
    out
}
