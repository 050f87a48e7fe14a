//! The node-local TOML configuration (`/etc/clusterd/clusterd.toml`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wire::{Duration, NodeId};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// This node's id (must appear in `nodes`).
    pub node_id: u32,
    /// The cluster's name: nodes of another cluster are refused.
    pub cluster_name: String,
    /// How ring traffic travels: `udp` (sealed with the authkey) or `quic` (mutual TLS).
    #[serde(default)]
    pub transport: Transport,
    /// The shared cluster key for `transport = "udp"` (`clusterd gen-key` makes one; copy it to
    /// every node, mode 0600).
    #[serde(default)]
    pub authkey: Option<PathBuf>,
    /// Certificates for `transport = "quic"` (`clusterd gen-certs` makes them).
    #[serde(default)]
    pub tls: Option<TlsPaths>,
    /// Runtime directory (the status socket). Overridden by `--run-dir`.
    #[serde(default = "defaults::run_dir")]
    pub run_dir: PathBuf,
    /// State directory (the ring sequence number). Overridden by `--state-dir`.
    #[serde(default = "defaults::state_dir")]
    pub state_dir: PathBuf,
    /// Every node of the cluster, this one included.
    pub nodes: Vec<NodeEntry>,
    /// Membership timers; every field is optional.
    #[serde(default)]
    pub totem: Totem,
    /// Quorum (votequorum) options; every field is optional.
    #[serde(default)]
    pub quorum: QuorumSection,
    /// Where this node's executor finds agents and keeps their state; every field is optional.
    #[serde(default)]
    pub executor: ExecutorSection,
}

/// The `[executor]` section: how this node runs resource agents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorSection {
    /// The OCF tree (`resource.d/PROVIDER/TYPE`).
    pub ocf_root: PathBuf,
    /// The agents' state directory (`HA_RSCTMP`): where `ocf:heartbeat:Dummy` and others keep
    /// their state files.
    pub rsctmp: PathBuf,
    /// On stop, how long the cluster may take to move this node's resources away before the
    /// node stops them itself (Pacemaker's `shutdown-escalation`), in seconds.
    pub shutdown_escalation_s: u64,
}

impl Default for ExecutorSection {
    fn default() -> Self {
        ExecutorSection {
            ocf_root: PathBuf::from(agents::OCF_ROOT),
            rsctmp: PathBuf::from("/run/resource-agents"),
            shutdown_escalation_s: 120,
        }
    }
}

/// The `[quorum]` section: votequorum's options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuorumSection {
    /// Votes of nodes by name; nodes not listed have 1 vote.
    pub votes: BTreeMap<String, u32>,
    /// Overrides the sum of the nodes' votes.
    pub expected_votes: Option<u32>,
    /// Exactly two nodes: one node alone is quorate (implies wait_for_all).
    pub two_node: bool,
    /// Not quorate until every node has been seen together once (default: follows two_node).
    pub wait_for_all: Option<bool>,
    /// Lower expected votes when nodes stay missing for `last_man_standing_window_ms`.
    pub last_man_standing: bool,
    /// How long nodes must stay missing before last_man_standing lowers expected votes.
    pub last_man_standing_window_ms: u64,
    /// On an exact 50 % split, the half holding the tie-breaker node stays quorate.
    pub auto_tie_breaker: bool,
    /// `lowest`, `highest`, or node ids in priority order separated by spaces (`"3 1 2"`).
    pub auto_tie_breaker_node: String,
    /// A clean leave lowers expected votes.
    pub allow_downscale: bool,
    /// The arbiter (`qnetd`), if one is used.
    pub device: Option<DeviceSection>,
}

/// `[quorum.device]`: this node's connection to the arbiter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// The arbiter's host name or address.
    pub host: String,
    /// Its port.
    #[serde(default = "defaults::device_port")]
    pub port: u16,
    /// `ffsplit` (one vote, for even-sized clusters) or `lms` (nodes-1 votes).
    #[serde(default = "defaults::algorithm")]
    pub algorithm: String,
    /// Which side wins a tie at the arbiter: `lowest`, `highest`, or a node id.
    #[serde(default = "defaults::tie_breaker")]
    pub tie_breaker: String,
    /// The arbiter's votes (default: 1 for ffsplit, nodes-1 for lms).
    pub votes: Option<u32>,
    /// The arbiter CA and this node's client certificate (named `node<id>.<cluster>`) and key.
    pub tls: TlsPaths,
    /// Commands run (with `sh -c`) every `heuristics_interval_ms`; all must exit 0 in time for
    /// the node to pass. The arbiter prefers a partition whose heuristics pass.
    #[serde(default)]
    pub heuristics: Vec<HeuristicCommand>,
    /// How often the heuristics run.
    #[serde(default = "defaults::heuristics_interval")]
    pub heuristics_interval_ms: u64,
}

/// One heuristics command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeuristicCommand {
    /// The command line (run with `sh -c`).
    pub command: String,
    /// It fails when it runs longer than this.
    #[serde(default = "defaults::heuristics_timeout")]
    pub timeout_ms: u64,
}

impl DeviceSection {
    /// The algorithm, or the problem naming the field.
    pub fn algorithm(&self) -> Result<quorum::arbiter::Algorithm, String> {
        match self.algorithm.as_str() {
            "ffsplit" => Ok(quorum::arbiter::Algorithm::Ffsplit),
            "lms" => Ok(quorum::arbiter::Algorithm::Lms),
            other => Err(format!("quorum.device.algorithm: {other:?} is unknown; use \"ffsplit\" or \"lms\"")),
        }
    }

    /// The tie-breaker, or the problem naming the field.
    pub fn tie_breaker(&self) -> Result<quorum::TieBreaker, String> {
        match self.tie_breaker.trim() {
            "lowest" => Ok(quorum::TieBreaker::Lowest),
            "highest" => Ok(quorum::TieBreaker::Highest),
            id => id
                .parse::<u32>()
                .map(|n| quorum::TieBreaker::List(vec![NodeId(n)]))
                .map_err(|_| format!("quorum.device.tie_breaker: {id:?} is not lowest, highest or a node id")),
        }
    }
}

impl Default for QuorumSection {
    fn default() -> Self {
        QuorumSection {
            votes: BTreeMap::new(),
            expected_votes: None,
            two_node: false,
            wait_for_all: None,
            last_man_standing: false,
            last_man_standing_window_ms: 10_000,
            auto_tie_breaker: false,
            auto_tie_breaker_node: "lowest".into(),
            allow_downscale: false,
            device: None,
        }
    }
}

/// The transport of ring traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP datagrams sealed with ChaCha20-Poly1305 under keys derived from the authkey.
    Udp,
    /// QUIC datagrams (and streams for large frames) with mutual TLS from the cluster CA.
    #[default]
    Quic,
}

/// PEM files for the QUIC transport.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This node's certificate (issued by the CA for `node<id>`).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// One node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// Its id (1 or more, unique).
    pub id: u32,
    /// Its name (unique).
    pub name: String,
    /// Its address on each link, link 0 first (every node has the same number of links).
    pub links: Vec<SocketAddr>,
}

/// Membership timers in milliseconds and sizes; see `membership::Config` for what each does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct Totem {
    pub token_timeout_ms: u64,
    pub token_timeout_max_ms: u64,
    pub token_retransmit_ms: u64,
    pub token_hold_ms: u64,
    pub join_interval_ms: u64,
    pub join_timeout_ms: u64,
    pub consensus_timeout_ms: u64,
    pub commit_timeout_ms: u64,
    pub merge_interval_ms: u64,
    pub merge_backoff_ms: u64,
    pub stall_threshold_ms: u64,
    pub link_ping_interval_ms: u64,
    pub link_timeout_ms: u64,
    pub window_size: u32,
    pub max_messages_per_visit: u32,
    pub max_message_bytes: usize,
}

impl Default for Totem {
    fn default() -> Self {
        let d = membership::Config::new(NodeId(1), vec![NodeId(1)], "x");
        Totem {
            token_timeout_ms: d.token_timeout.as_millis(),
            token_timeout_max_ms: d.token_timeout_max.as_millis(),
            token_retransmit_ms: d.token_retransmit.as_millis(),
            token_hold_ms: d.token_hold.as_millis(),
            join_interval_ms: d.join_interval.as_millis(),
            join_timeout_ms: d.join_timeout.as_millis(),
            consensus_timeout_ms: d.consensus_timeout.as_millis(),
            commit_timeout_ms: d.commit_timeout.as_millis(),
            merge_interval_ms: d.merge_interval.as_millis(),
            merge_backoff_ms: d.merge_backoff.as_millis(),
            stall_threshold_ms: d.stall_threshold.as_millis(),
            link_ping_interval_ms: d.link_ping_interval.as_millis(),
            link_timeout_ms: d.link_timeout.as_millis(),
            window_size: d.window_size,
            max_messages_per_visit: d.max_messages_per_visit,
            // Every message must fit one datagram with room for headers.
            max_message_bytes: 60 * 1024,
        }
    }
}

mod defaults {
    use std::path::PathBuf;
    pub(super) fn run_dir() -> PathBuf {
        PathBuf::from("/run/clusterd")
    }
    pub(super) fn state_dir() -> PathBuf {
        PathBuf::from("/var/lib/clusterd")
    }
    pub(super) fn device_port() -> u16 {
        5403
    }
    pub(super) fn algorithm() -> String {
        "ffsplit".into()
    }
    pub(super) fn tie_breaker() -> String {
        "lowest".into()
    }
    pub(super) fn heuristics_interval() -> u64 {
        3000
    }
    pub(super) fn heuristics_timeout() -> u64 {
        5000
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the line and the key).
        message: String,
    },
    /// The values are inconsistent; every problem is listed.
    #[error("{path}: invalid configuration:\n{}", .problems.join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per problem: field, problem, fix.
        problems: Vec<String>,
    },
}

impl FileConfig {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let cfg = Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })?;
        cfg.validate().map_err(|problems| ConfigError::Invalid { path: path.to_path_buf(), problems })?;
        Ok(cfg)
    }

    /// Parses TOML text (no validation).
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Every problem at once, each naming the field and the fix.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let links = self.nodes.first().map_or(0, |n| n.links.len());
        for n in &self.nodes {
            if !ids.insert(n.id) {
                problems.push(format!("nodes: node id {} is used twice; give every node a distinct id", n.id));
            }
            if !names.insert(n.name.clone()) {
                problems.push(format!("nodes: node name {:?} is used twice; give every node a distinct name", n.name));
            }
            if n.links.is_empty() {
                problems
                    .push(format!("nodes.{}.links: no link address; list at least one (two for redundancy)", n.name));
            }
            if n.links.len() != links {
                problems.push(format!(
                    "nodes.{}.links: {} links, but node {} has {links}; give every node the same number of links",
                    n.name,
                    n.links.len(),
                    self.nodes[0].name
                ));
            }
            for a in &n.links {
                if !addrs.insert(*a) {
                    problems.push(format!(
                        "nodes.{}.links: address {a} is used twice; give every link its own address",
                        n.name
                    ));
                }
            }
        }
        match self.transport {
            Transport::Udp if self.authkey.is_none() => problems.push(
                "authkey: missing; transport \"udp\" needs the cluster key (make one with `clusterd gen-key`)".into(),
            ),
            Transport::Quic if self.tls.is_none() => problems.push(
                "tls: missing; transport \"quic\" needs [tls] ca, cert and key (make them with `clusterd gen-certs`)"
                    .into(),
            ),
            _ => {}
        }
        if self.nodes.is_empty() {
            problems.push("nodes: the node list is empty; list every node of the cluster".into());
        }
        match self.membership_config() {
            Ok(c) => {
                if let Err(errs) = c.validate() {
                    for e in errs.0 {
                        let field = match e.field {
                            "node_id"
                            | "nodes"
                            | "links"
                            | "cluster_name"
                            | "window_size"
                            | "max_messages_per_visit"
                            | "max_message_bytes" => e.field.to_string(),
                            f if f.starts_with("max_") || f.starts_with("retransmit") => format!("totem.{f}"),
                            f => format!("totem.{f}_ms"),
                        };
                        problems.push(format!("{field}: {}; {}", e.problem, e.fix));
                    }
                }
            }
            Err(p) => problems.push(p),
        }
        match self.quorum_config() {
            Ok(q) => {
                if let Err(errs) = q.validate() {
                    problems.extend(errs.iter().map(ToString::to_string));
                }
            }
            Err(p) => problems.extend(p),
        }
        if self.totem.max_message_bytes > 60 * 1024 {
            problems.push(format!(
                "totem.max_message_bytes: {} does not fit one datagram; use at most 61440",
                self.totem.max_message_bytes
            ));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// The core's configuration.
    pub fn membership_config(&self) -> Result<membership::Config, String> {
        let links = self.nodes.first().map_or(0, |n| n.links.len());
        let links = u8::try_from(links).map_err(|_| "nodes.links: more than 255 links; use at most 8".to_string())?;
        let t = &self.totem;
        let ms = Duration::from_millis;
        let mut c = membership::Config::new(
            NodeId(self.node_id),
            self.nodes.iter().map(|n| NodeId(n.id)).collect(),
            self.cluster_name.clone(),
        );
        c.links = links;
        c.token_timeout = ms(t.token_timeout_ms);
        c.token_timeout_max = ms(t.token_timeout_max_ms);
        c.token_retransmit = ms(t.token_retransmit_ms);
        c.token_hold = ms(t.token_hold_ms);
        c.join_interval = ms(t.join_interval_ms);
        c.join_timeout = ms(t.join_timeout_ms);
        c.consensus_timeout = ms(t.consensus_timeout_ms);
        c.commit_timeout = ms(t.commit_timeout_ms);
        c.merge_interval = ms(t.merge_interval_ms);
        c.merge_backoff = ms(t.merge_backoff_ms);
        c.stall_threshold = ms(t.stall_threshold_ms);
        c.link_ping_interval = ms(t.link_ping_interval_ms);
        c.link_timeout = ms(t.link_timeout_ms);
        c.window_size = t.window_size;
        c.max_messages_per_visit = t.max_messages_per_visit;
        c.max_message_bytes = t.max_message_bytes;
        if self.transport == Transport::Quic {
            // One message per QUIC datagram (about 1400 bytes on a 1500-byte MTU path); larger
            // frames go on streams.
            c.batch_bytes = 1100;
        }
        Ok(c)
    }

    /// Votequorum's configuration, from `[quorum]` and the node list.
    pub fn quorum_config(&self) -> Result<quorum::QuorumConfig, Vec<String>> {
        let q = &self.quorum;
        let mut problems = Vec::new();
        for name in q.votes.keys() {
            if !self.nodes.iter().any(|n| &n.name == name) {
                problems.push(format!("quorum.votes.{name}: no node of that name; use the names in [[nodes]]"));
            }
        }
        let tie = match q.auto_tie_breaker_node.trim() {
            "lowest" => quorum::TieBreaker::Lowest,
            "highest" => quorum::TieBreaker::Highest,
            list => {
                let mut ids = Vec::new();
                for word in list.split_whitespace() {
                    match word.parse::<u32>() {
                        Ok(id) => ids.push(NodeId(id)),
                        Err(_) => problems.push(format!(
                            "quorum.auto_tie_breaker_node: {word:?} is not a node id; use lowest, highest or node ids separated by spaces"
                        )),
                    }
                }
                quorum::TieBreaker::List(ids)
            }
        };
        let mut device_votes = None;
        if let Some(d) = &q.device {
            match d.algorithm() {
                Ok(a) => {
                    let default = match a {
                        quorum::arbiter::Algorithm::Ffsplit => 1,
                        quorum::arbiter::Algorithm::Lms => (self.nodes.len() as u32).saturating_sub(1).max(1),
                    };
                    device_votes = Some(d.votes.unwrap_or(default));
                }
                Err(p) => problems.push(p),
            }
            if let Err(p) = d.tie_breaker() {
                problems.push(p);
            }
            if d.host.trim().is_empty() {
                problems.push("quorum.device.host: empty; give the arbiter's host name or address".into());
            }
            if !crate::quic::valid_label(&self.cluster_name) {
                problems.push(format!(
                    "cluster_name: {:?} cannot appear in the arbiter certificate name; use letters, digits and '-'",
                    self.cluster_name
                ));
            }
            for (i, h) in d.heuristics.iter().enumerate() {
                if h.command.trim().is_empty() || h.timeout_ms == 0 {
                    problems.push(format!("quorum.device.heuristics[{i}]: needs a command and a positive timeout_ms"));
                }
            }
            if d.heuristics_interval_ms < 100 {
                problems.push("quorum.device.heuristics_interval_ms: below 100 ms; use at least 100".into());
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(quorum::QuorumConfig {
            node_votes: self.nodes.iter().map(|n| (NodeId(n.id), q.votes.get(&n.name).copied().unwrap_or(1))).collect(),
            expected_votes: q.expected_votes,
            two_node: q.two_node,
            wait_for_all: q.wait_for_all,
            last_man_standing: q.last_man_standing,
            last_man_standing_window: Duration::from_millis(q.last_man_standing_window_ms),
            auto_tie_breaker: q.auto_tie_breaker,
            auto_tie_breaker_node: tie,
            allow_downscale: q.allow_downscale,
            device_votes,
        })
    }

    /// `text` with a `[quorum.device]` section added, everything else (comments included) kept.
    /// An arbiter breaks ties, so `two_node` is turned off, and with it the wait_for_all it
    /// implied (pcs does the same; an explicit wait_for_all stays). The result is parsed and
    /// validated before it is returned.
    pub fn add_device_section(text: &str, device: &DeviceSection) -> Result<String, Vec<String>> {
        let cfg = Self::parse(text).map_err(|e| vec![e])?;
        if cfg.quorum.device.is_some() {
            return Err(vec!["quorum.device: an arbiter is already configured; remove the section first".into()]);
        }
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| vec![e.to_string()])?;
        let section = toml::to_string(device).map_err(|e| vec![e.to_string()])?;
        let section: toml_edit::DocumentMut = section.parse().map_err(|e: toml_edit::TomlError| vec![e.to_string()])?;
        let mut table = section.as_table().clone();
        table.decor_mut().set_prefix("\n# Added by `crmctl quorum device add`.\n");
        let quorum = doc
            .entry("quorum")
            .or_insert_with(|| {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                toml_edit::Item::Table(t)
            })
            .as_table_mut()
            .ok_or_else(|| vec!["quorum: is not a table".to_string()])?;
        if cfg.quorum.two_node {
            // The value changes; the comments around it stay.
            if let Some(item) = quorum.get_mut("two_node") {
                *item = toml_edit::value(false);
            }
            let note = "# two_node was turned off by `crmctl quorum device add`: the arbiter breaks ties.\n";
            let prefix = table.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
            table.decor_mut().set_prefix(format!("{prefix}{note}"));
        }
        quorum.insert("device", toml_edit::Item::Table(table));
        let out = doc.to_string();
        let new = Self::parse(&out).map_err(|e| vec![e])?;
        new.validate()?;
        Ok(out)
    }

    /// `text` without its `[quorum.device]` section, everything else (comments included) kept.
    /// A two-node cluster gets `two_node` back (pcs does the same), so that one node alone stays
    /// quorate and fencing decides a split. Parsed and validated before it is returned.
    pub fn remove_device_section(text: &str) -> Result<String, Vec<String>> {
        let cfg = Self::parse(text).map_err(|e| vec![e])?;
        if cfg.quorum.device.is_none() {
            return Err(vec!["quorum.device: no arbiter is configured".into()]);
        }
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| vec![e.to_string()])?;
        let quorum = doc
            .get_mut("quorum")
            .and_then(|q| q.as_table_mut())
            .ok_or_else(|| vec!["quorum: is not a table".to_string()])?;
        quorum.remove("device");
        if cfg.nodes.len() == 2 && !cfg.quorum.two_node {
            if let Some(item) = quorum.get_mut("two_node") {
                *item = toml_edit::value(true);
            } else {
                quorum.insert("two_node", toml_edit::value(true));
            }
            if let Some(mut key) = quorum.key_mut("two_node") {
                let before = key.leaf_decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
                key.leaf_decor_mut().set_prefix(format!(
                    "{before}# Set by `crmctl quorum device remove`: without the arbiter, one node alone stays quorate\n# and fencing decides a split.\n"
                ));
            }
        }
        let out = doc.to_string();
        let new = Self::parse(&out).map_err(|e| vec![e])?;
        new.validate()?;
        Ok(out)
    }

    /// The configured entry of `id`.
    pub fn node(&self, id: u32) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The effective configuration as TOML (for `--check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 1
cluster_name = "alpha"
transport = "udp"
authkey = "/etc/clusterd/authkey"
[[nodes]]
id = 1
name = "a"
links = ["10.0.0.1:5405", "10.1.0.1:5405"]
[[nodes]]
id = 2
name = "b"
links = ["10.0.0.2:5405", "10.1.0.2:5405"]
"#;

    #[test]
    fn a_minimal_file_gets_defaults() {
        let c = FileConfig::parse(GOOD).expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.totem.token_timeout_ms, 650);
        assert_eq!(c.run_dir, PathBuf::from("/run/clusterd"));
        assert_eq!(c.membership_config().expect("converts").links, 2);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = FileConfig::parse(&format!("{GOOD}\n[totem]\ntoken_timout_ms = 5\n")).expect_err("typo");
        assert!(err.contains("token_timout_ms"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_inconsistent_timers_are_all_reported() {
        let text = GOOD.replace("id = 2", "id = 1") + "\n[totem]\nconsensus_timeout_ms = 100\n";
        let c = FileConfig::parse(&text).expect("parses");
        let problems = c.validate().expect_err("invalid");
        let all = problems.join("\n");
        assert!(all.contains("node id 1 is used twice"), "{all}");
        assert!(all.contains("totem.consensus_timeout_ms: 100 ms is below token_timeout"), "{all}");
    }

    #[test]
    fn quorum_options_are_checked_naming_the_field() {
        let text = format!(
            "{GOOD}\n[quorum]\ntwo_node = true\nauto_tie_breaker_node = \"1 x\"\nvotes = {{ a = 2, zz = 1 }}\n"
        );
        let c = FileConfig::parse(&text).expect("parses");
        let all = c.validate().expect_err("invalid").join("\n");
        assert!(all.contains("quorum.votes.zz: no node of that name"), "{all}");
        assert!(all.contains("quorum.auto_tie_breaker_node: \"x\" is not a node id"), "{all}");
        let text = format!("{GOOD}\n[quorum]\ntwo_node = true\nvotes = {{ a = 2 }}\n");
        let all = FileConfig::parse(&text).expect("parses").validate().expect_err("invalid").join("\n");
        assert!(all.contains("quorum.two_node: two_node needs one vote per node"), "{all}");
        let text = format!("{GOOD}\n[quorum]\ntwo_node = true\n");
        let c = FileConfig::parse(&text).expect("parses");
        c.validate().expect("valid");
        let q = c.quorum_config().expect("converts");
        assert!(q.two_node && q.wait_for_all_effective());
        assert_eq!(q.configured_expected_votes(), 2);
    }
}
