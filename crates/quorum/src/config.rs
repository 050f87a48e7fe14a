//! Quorum configuration, validated with every problem reported at once.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use wire::{Duration, NodeId};

/// Which partition wins an exact 50 % split (`auto_tie_breaker_node`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TieBreaker {
    /// The partition holding the lowest node id of the last quorate view.
    #[default]
    Lowest,
    /// The partition holding the highest node id of the last quorate view.
    Highest,
    /// Node ids in priority order.
    List(Vec<NodeId>),
}

impl fmt::Display for TieBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TieBreaker::Lowest => f.write_str("lowest"),
            TieBreaker::Highest => f.write_str("highest"),
            TieBreaker::List(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                f.write_str(&ids.join(" "))
            }
        }
    }
}

/// The `quorum { }` section plus the nodelist's votes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumConfig {
    /// Votes of every configured node (`nodelist.node.X.quorum_votes`, default 1).
    pub node_votes: BTreeMap<NodeId, u32>,
    /// Explicit `expected_votes`; overrides the nodelist sum.
    pub expected_votes: Option<u32>,
    /// Quorum is 1 while at most two nodes are members; implies wait_for_all unless it is
    /// set explicitly to false.
    pub two_node: bool,
    /// Not quorate until all expected votes have been seen together once. `None`: follows `two_node`.
    pub wait_for_all: Option<bool>,
    /// Recompute expected votes from the members when nodes stay missing for `last_man_standing_window`.
    pub last_man_standing: bool,
    /// How long nodes must stay missing before last-man-standing lowers expected votes.
    pub last_man_standing_window: Duration,
    /// On an exact 50 % split, the half holding the tie-breaker node stays quorate.
    pub auto_tie_breaker: bool,
    /// The tie-breaker node rule.
    pub auto_tie_breaker_node: TieBreaker,
    /// A clean leave lowers expected votes.
    pub allow_downscale: bool,
    /// Votes of the arbiter (quorum device), if one is configured.
    pub device_votes: Option<u32>,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            node_votes: BTreeMap::new(),
            expected_votes: None,
            two_node: false,
            wait_for_all: None,
            last_man_standing: false,
            last_man_standing_window: Duration::from_millis(10_000),
            auto_tie_breaker: false,
            auto_tie_breaker_node: TieBreaker::Lowest,
            allow_downscale: false,
            device_votes: None,
        }
    }
}

/// One configuration problem, naming the field and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quorum.{field}: {problem}; {fix}")]
pub struct ConfigError {
    /// The offending setting.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

impl QuorumConfig {
    /// A config with `n` nodes of one vote each (ids 1..=n).
    pub fn with_nodes(n: u32) -> Self {
        QuorumConfig { node_votes: (1..=n).map(|i| (NodeId(i), 1)).collect(), ..QuorumConfig::default() }
    }

    /// Whether wait_for_all is in effect (explicit, or implied by two_node).
    pub fn wait_for_all_effective(&self) -> bool {
        self.wait_for_all.unwrap_or(self.two_node)
    }

    /// Expected votes from configuration alone: the explicit value, else the nodelist sum, plus
    /// the device's votes.
    pub fn configured_expected_votes(&self) -> u32 {
        let nodes = self.expected_votes.unwrap_or_else(|| self.node_votes.values().sum());
        nodes.saturating_add(self.device_votes.unwrap_or(0))
    }

    /// Checks the configuration, returning every problem found.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut err = |field: &'static str, problem: String, fix: &str| {
            errs.push(ConfigError { field, problem, fix: fix.to_string() })
        };
        if self.node_votes.is_empty() && self.expected_votes.is_none() {
            err(
                "expected_votes",
                "neither a nodelist nor expected_votes is configured".into(),
                "list the nodes or set quorum.expected_votes",
            );
        }
        if self.node_votes.contains_key(&NodeId(0)) {
            err("nodelist", "node id 0 is reserved".into(), "give every node an id of 1 or more");
        }
        if self.expected_votes == Some(0) {
            err("expected_votes", "0 expected votes".into(), "set it to at least 1, or remove it");
        }
        if self.two_node && self.node_votes.len() > 2 {
            err(
                "two_node",
                format!("two_node is set but the nodelist has {} nodes", self.node_votes.len()),
                "remove two_node (it is only for exactly two nodes), or use an arbiter",
            );
        }
        if self.two_node && self.node_votes.values().any(|&v| v != 1) {
            err("two_node", "two_node needs one vote per node".into(), "set quorum_votes to 1 on both nodes");
        }
        if self.two_node && self.device_votes.is_some() {
            err(
                "two_node",
                "two_node and an arbiter are both configured".into(),
                "remove two_node: the arbiter breaks ties",
            );
        }
        if self.last_man_standing && self.device_votes.is_some() {
            err(
                "last_man_standing",
                "last_man_standing cannot be combined with an arbiter".into(),
                "use the arbiter's lms algorithm instead",
            );
        }
        if self.auto_tie_breaker && self.device_votes.is_some() {
            err(
                "auto_tie_breaker",
                "auto_tie_breaker cannot be combined with an arbiter".into(),
                "remove auto_tie_breaker: the arbiter breaks ties",
            );
        }
        if self.last_man_standing && self.node_votes.values().any(|&v| v != 1) {
            err(
                "last_man_standing",
                "last_man_standing needs one vote per node".into(),
                "set quorum_votes to 1 on every node",
            );
        }
        if self.last_man_standing && self.last_man_standing_window == Duration::ZERO {
            err(
                "last_man_standing_window",
                "the window is 0 ms".into(),
                "use the default 10000 ms or another positive value",
            );
        }
        if let TieBreaker::List(ids) = &self.auto_tie_breaker_node {
            if ids.is_empty() {
                err("auto_tie_breaker_node", "the list is empty".into(), "use lowest, highest or a list of node ids");
            }
            for id in ids {
                if !self.node_votes.is_empty() && !self.node_votes.contains_key(id) {
                    err(
                        "auto_tie_breaker_node",
                        format!("node {id} is not in the nodelist"),
                        "list only configured node ids",
                    );
                }
            }
        }
        if self.device_votes == Some(0) {
            err("device.votes", "the arbiter has 0 votes".into(), "give it 1 vote (ffsplit) or nodes-1 votes (lms)");
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicting_options_are_all_reported_with_a_fix() {
        let cfg = QuorumConfig {
            two_node: true,
            device_votes: Some(1),
            auto_tie_breaker: true,
            last_man_standing: true,
            ..QuorumConfig::with_nodes(3)
        };
        let errs = cfg.validate().unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["two_node", "two_node", "last_man_standing", "auto_tie_breaker"]);
        assert_eq!(
            errs[0].to_string(),
            "quorum.two_node: two_node is set but the nodelist has 3 nodes; remove two_node (it is only for exactly two nodes), or use an arbiter"
        );
    }

    #[test]
    fn expected_votes_come_from_the_nodelist_or_the_override() {
        let mut cfg = QuorumConfig::with_nodes(4);
        assert_eq!(cfg.configured_expected_votes(), 4);
        cfg.device_votes = Some(1);
        assert_eq!(cfg.configured_expected_votes(), 5);
        cfg.expected_votes = Some(8);
        assert_eq!(cfg.configured_expected_votes(), 9);
        assert!(QuorumConfig::with_nodes(2).validate().is_ok());
        assert!(QuorumConfig { two_node: true, ..QuorumConfig::with_nodes(2) }.validate().is_ok());
        assert!(QuorumConfig { two_node: true, ..QuorumConfig::with_nodes(2) }.wait_for_all_effective());
        assert!(
            !QuorumConfig { two_node: true, wait_for_all: Some(false), ..QuorumConfig::with_nodes(2) }
                .wait_for_all_effective()
        );
    }
}
