//! Timers and sizes of the ring, with documented defaults and validation.

use std::collections::BTreeSet;
use std::fmt;

use wire::{Duration, NodeId};

/// Everything the ring needs to know about its node and its cluster. Build with
/// [`Config::new`] (defaults for every timer), adjust fields, then [`Config::validate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// This node's id (must be listed in `nodes`).
    pub node_id: NodeId,
    /// Every configured node, this one included. Joins and merge probes go to all of them.
    pub nodes: Vec<NodeId>,
    /// Links per node (redundant rings); link ids are `0..links`. Default 2.
    pub links: u8,
    /// The cluster name; packets of another cluster are dropped and counted.
    pub cluster_name: String,
    /// Base token-loss timeout: with no token for this long (or the adaptive value, if higher), the
    /// ring is suspected and the members gather. Default 650 ms: above a 400 ms pause plus margin,
    /// low enough that a crash yields a new view in well under a second.
    pub token_timeout: Duration,
    /// The adaptive token timeout (`token_timeout_rotations` × the smoothed slowest recent token
    /// rotation) never exceeds this. Default 5 s.
    pub token_timeout_max: Duration,
    /// Token timeout in measured rotations (adaptive part). Default 40.
    pub token_timeout_rotations: u32,
    /// A forwarded token (or commit token) that the next node has not acknowledged is sent again
    /// after this, on every link. Default 20 ms.
    pub token_retransmit: Duration,
    /// On an idle ring the representative holds the token this long before passing it on, so an
    /// idle ring costs little CPU. Default 2 ms.
    pub token_hold: Duration,
    /// While gathering, a join is sent to every configured node at this interval. Default 20 ms.
    pub join_interval: Duration,
    /// While gathering, a member candidate that sent no join for this long since the gather began
    /// is suspected and put on the failed list: the live members agree quickly and do not wait for
    /// a crashed node. Default 100 ms.
    pub join_timeout: Duration,
    /// If the candidates have not agreed after this long, those whose joins still disagree are put
    /// on the failed list. Default 800 ms.
    pub consensus_timeout: Duration,
    /// A commit that does not complete within this returns the node to gathering. Default 200 ms.
    pub commit_timeout: Duration,
    /// The representative probes configured non-members at this interval so partitions merge
    /// after healing. Default 200 ms.
    pub merge_interval: Duration,
    /// After a node was declared failed, its probes and joins are ignored this long, so a node that
    /// cannot hear the ring does not make it re-form over and over. Default 1 s.
    pub merge_backoff: Duration,
    /// A timer that fires this much later than asked means this node was not scheduled (a pause,
    /// a stall or a clock jump): its own timers restart instead of blaming peers. Default 100 ms.
    pub stall_threshold: Duration,
    /// Each link to each peer is probed at this interval. Default 100 ms.
    pub link_ping_interval: Duration,
    /// A link to a peer that has been silent this long, or that the peer reports it cannot hear, is
    /// down (traffic moves to another link). Default 300 ms.
    pub link_timeout: Duration,
    /// Most messages in flight (sent but not yet received by every member). Default 256.
    pub window_size: u32,
    /// Most new messages one node sends per token visit. Default 64.
    pub max_messages_per_visit: u32,
    /// Largest payload accepted for broadcast. Default 64 KiB.
    pub max_message_bytes: usize,
    /// Most broadcasts queued while waiting for the token. Default 10 000.
    pub max_pending: usize,
    /// Most retransmission requests carried by the token. Default 64.
    pub retransmit_list_max: usize,
    /// Most payload bytes packed into one datagram (several messages per datagram). Default
    /// 32 KiB; set it below the transport's datagram size when that is small (QUIC: about 1200).
    pub batch_bytes: usize,
}

/// One configuration problem: which field, what is wrong, how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}; {fix}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

/// Every problem found, reported at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Defaults for every timer and size.
    pub fn new(node_id: NodeId, nodes: Vec<NodeId>, cluster_name: impl Into<String>) -> Self {
        Config {
            node_id,
            nodes,
            links: 2,
            cluster_name: cluster_name.into(),
            token_timeout: Duration::from_millis(650),
            token_timeout_max: Duration::from_secs(5),
            token_timeout_rotations: 40,
            token_retransmit: Duration::from_millis(20),
            token_hold: Duration::from_millis(2),
            join_interval: Duration::from_millis(20),
            join_timeout: Duration::from_millis(100),
            consensus_timeout: Duration::from_millis(800),
            commit_timeout: Duration::from_millis(200),
            merge_interval: Duration::from_millis(200),
            merge_backoff: Duration::from_secs(1),
            stall_threshold: Duration::from_millis(100),
            link_ping_interval: Duration::from_millis(100),
            link_timeout: Duration::from_millis(300),
            window_size: 256,
            max_messages_per_visit: 64,
            max_message_bytes: 64 * 1024,
            max_pending: 10_000,
            retransmit_list_max: 64,
            batch_bytes: 32 * 1024,
        }
    }

    /// Checks the configuration and returns every problem at once.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        let mut bad = |field: &'static str, problem: String, fix: &str| {
            errs.push(ConfigError { field, problem, fix: fix.to_string() })
        };
        let ms = |d: Duration| d.as_millis();
        let mut seen = BTreeSet::new();
        for n in &self.nodes {
            if n.0 == 0 {
                bad("nodes", "node id 0 is listed".into(), "give every node an id of 1 or more");
            }
            if !seen.insert(*n) {
                bad("nodes", format!("node id {n} is listed twice"), "give every node a distinct id");
            }
        }
        if !self.nodes.contains(&self.node_id) {
            bad(
                "node_id",
                format!("this node's id {} is not in the node list", self.node_id),
                "add this node to the node list or fix its id",
            );
        }
        if self.links == 0 || self.links > 8 {
            bad("links", format!("{} links configured", self.links), "configure between 1 and 8 links");
        }
        if self.cluster_name.is_empty() {
            bad("cluster_name", "the cluster name is empty".into(), "set a cluster name");
        }
        if self.token_timeout < Duration::from_millis(10) {
            bad("token_timeout", format!("{} ms is too short", ms(self.token_timeout)), "use at least 10 ms");
        }
        if self.token_timeout_max < self.token_timeout {
            bad(
                "token_timeout_max",
                format!("{} ms is below token_timeout ({} ms)", ms(self.token_timeout_max), ms(self.token_timeout)),
                "raise token_timeout_max to at least token_timeout",
            );
        }
        if self.token_retransmit.saturating_mul(4) > self.token_timeout || self.token_retransmit == Duration::ZERO {
            bad(
                "token_retransmit",
                format!(
                    "{} ms does not allow 4 retransmissions within token_timeout ({} ms)",
                    ms(self.token_retransmit),
                    ms(self.token_timeout)
                ),
                "set token_retransmit between 1 ms and a quarter of token_timeout",
            );
        }
        if self.token_hold >= self.token_retransmit {
            bad(
                "token_hold",
                format!("{} ms is not below token_retransmit ({} ms)", ms(self.token_hold), ms(self.token_retransmit)),
                "lower token_hold below token_retransmit",
            );
        }
        if self.join_interval == Duration::ZERO || self.join_interval.saturating_mul(2) > self.join_timeout {
            bad(
                "join_interval",
                format!(
                    "{} ms does not allow two joins within join_timeout ({} ms)",
                    ms(self.join_interval),
                    ms(self.join_timeout)
                ),
                "set join_interval between 1 ms and half of join_timeout",
            );
        }
        if self.consensus_timeout < self.token_timeout {
            bad(
                "consensus_timeout",
                format!("{} ms is below token_timeout ({} ms)", ms(self.consensus_timeout), ms(self.token_timeout)),
                "raise consensus_timeout to at least token_timeout (1.2 x is usual)",
            );
        }
        if self.join_timeout >= self.consensus_timeout {
            bad(
                "join_timeout",
                format!(
                    "{} ms is not below consensus_timeout ({} ms)",
                    ms(self.join_timeout),
                    ms(self.consensus_timeout)
                ),
                "lower join_timeout below consensus_timeout",
            );
        }
        if self.commit_timeout < self.token_retransmit.saturating_mul(2) {
            bad(
                "commit_timeout",
                format!("{} ms allows fewer than two token retransmissions", ms(self.commit_timeout)),
                "raise commit_timeout to at least twice token_retransmit",
            );
        }
        if self.merge_interval == Duration::ZERO {
            bad("merge_interval", "zero".into(), "use at least 1 ms");
        }
        if self.stall_threshold >= self.token_timeout || self.stall_threshold == Duration::ZERO {
            bad(
                "stall_threshold",
                format!("{} ms is not between 0 and token_timeout", ms(self.stall_threshold)),
                "set stall_threshold below token_timeout",
            );
        }
        if self.link_ping_interval == Duration::ZERO || self.link_ping_interval.saturating_mul(2) > self.link_timeout {
            bad(
                "link_ping_interval",
                format!(
                    "{} ms does not allow two probes within link_timeout ({} ms)",
                    ms(self.link_ping_interval),
                    ms(self.link_timeout)
                ),
                "set link_ping_interval at most half of link_timeout",
            );
        }
        if self.link_timeout > self.token_timeout {
            bad(
                "link_timeout",
                format!("{} ms is above token_timeout ({} ms)", ms(self.link_timeout), ms(self.token_timeout)),
                "lower link_timeout so a broken link fails over within one token timeout",
            );
        }
        if self.max_messages_per_visit == 0 || self.max_messages_per_visit > self.window_size {
            bad(
                "max_messages_per_visit",
                format!("{} is not between 1 and window_size ({})", self.max_messages_per_visit, self.window_size),
                "set max_messages_per_visit between 1 and window_size",
            );
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > (1 << 20) {
            bad(
                "max_message_bytes",
                format!("{} bytes is not between 1 and 1 MiB", self.max_message_bytes),
                "set max_message_bytes between 1 and 1048576",
            );
        }
        if self.max_pending == 0 {
            bad("max_pending", "zero".into(), "allow at least one queued broadcast");
        }
        if self.batch_bytes == 0 {
            bad("batch_bytes", "zero".into(), "allow at least one byte per datagram");
        }
        if self.retransmit_list_max == 0 {
            bad("retransmit_list_max", "zero".into(), "allow at least one retransmission request");
        }
        if errs.is_empty() { Ok(()) } else { Err(ConfigErrors(errs)) }
    }

    /// The token timeout in use for a measured rotation time.
    pub(crate) fn effective_token_timeout(&self, rotation: Duration) -> Duration {
        let adaptive = rotation.saturating_mul(u64::from(self.token_timeout_rotations));
        adaptive.max(self.token_timeout).min(self.token_timeout_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::new(NodeId(1), vec![NodeId(1), NodeId(2)], "c");
        c.validate().expect("defaults validate");
    }

    #[test]
    fn every_problem_is_reported_with_its_field_and_fix() {
        let mut c = Config::new(NodeId(3), vec![NodeId(1), NodeId(1)], "c");
        c.consensus_timeout = Duration::from_millis(100);
        let errs = c.validate().expect_err("invalid").0;
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        assert!(fields.contains(&"nodes"), "{fields:?}");
        assert!(fields.contains(&"node_id"), "{fields:?}");
        assert!(fields.contains(&"consensus_timeout"), "{fields:?}");
        let text = ConfigErrors(errs).to_string();
        assert!(text.contains("consensus_timeout: 100 ms is below token_timeout (650 ms); raise"), "{text}");
    }

    #[test]
    fn adaptive_timeout_grows_with_slow_rotations_and_is_capped() {
        let c = Config::new(NodeId(1), vec![NodeId(1)], "c");
        assert_eq!(c.effective_token_timeout(Duration::from_micros(300)), Duration::from_millis(650));
        assert_eq!(c.effective_token_timeout(Duration::from_millis(50)), Duration::from_secs(2));
        assert_eq!(c.effective_token_timeout(Duration::from_secs(1)), Duration::from_secs(5));
    }
}
