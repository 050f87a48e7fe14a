//! The daemon's configuration: a TOML file (`deploy/blockrepld.toml` is the commented sample)
//! or the equivalent command-line flags, checked in one pass that reports every problem at
//! once, each naming the field and the fix.

use std::path::PathBuf;

use anyhow::bail;
use blockrepl::{AfterSb0Pri, AfterSb1Pri, Protocol};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// Everything one `blockrepld` needs to serve one volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaemonConfig {
    /// Volume name (status, file names).
    pub(crate) name: String,
    /// This node's id.
    pub(crate) node_id: u32,
    /// The peer's node id.
    pub(crate) peer_id: u32,
    /// Backing file or block device.
    pub(crate) backing: PathBuf,
    /// Directory of the metadata file `<name>.meta`.
    pub(crate) state_dir: PathBuf,
    /// File holding the pre-shared key of the replication link (at least 16 bytes).
    pub(crate) psk_file: PathBuf,
    /// Control socket (`crmctl volume …` talks to it).
    pub(crate) control_socket: PathBuf,
    /// Create the backing file and metadata with this size if they do not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) create_size_bytes: Option<u64>,
    /// With `create_size_bytes`: both copies start zero-filled in this generation (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) initial_generation: Option<String>,
    /// Become Primary at start.
    #[serde(default)]
    pub(crate) primary_at_start: bool,
    /// The replication link.
    #[serde(default)]
    pub(crate) link: LinkConfig,
    /// How the volume is exposed locally.
    #[serde(default)]
    pub(crate) frontends: FrontendConfig,
    /// Replication behaviour.
    #[serde(default)]
    pub(crate) replication: ReplicationConfig,
}

/// `[link]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LinkConfig {
    /// Address to accept the peer on (the lower node id listens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<String>,
    /// The peer's address (the higher node id dials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) peer_addr: Option<String>,
    /// Keep-alive interval.
    pub(crate) ping_interval_ms: u64,
    /// The link is declared dead after this long without traffic.
    pub(crate) timeout_ms: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig { listen: None, peer_addr: None, ping_interval_ms: 500, timeout_ms: 3000 }
    }
}

/// `[frontends]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FrontendConfig {
    /// Mount a FUSE directory exposing the volume as `<dir>/disk.img`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fuse_dir: Option<PathBuf>,
    /// Serve NBD on this unix socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nbd_unix_socket: Option<PathBuf>,
    /// Serve NBD on this TCP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nbd_tcp: Option<String>,
}

/// `[replication]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ReplicationConfig {
    /// "A", "B" or "C".
    pub(crate) protocol: String,
    /// Compare checksums before sending resync blocks.
    pub(crate) csums: bool,
    /// Split-brain policy with no Primary.
    pub(crate) after_sb_0pri: String,
    /// Split-brain policy with one Primary.
    pub(crate) after_sb_1pri: String,
    /// Resync rate cap without application I/O (0: unlimited).
    pub(crate) resync_rate_max_bytes_per_sec: u64,
    /// Resync rate floor while the application writes.
    pub(crate) resync_rate_min_bytes_per_sec: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            protocol: "C".into(),
            csums: false,
            after_sb_0pri: "disconnect".into(),
            after_sb_1pri: "disconnect".into(),
            resync_rate_max_bytes_per_sec: 0,
            resync_rate_min_bytes_per_sec: 4 << 20,
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
}

impl Kind {
    fn fits(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_str(),
            Kind::Int => v.as_integer().is_some_and(|i| i >= 0),
            Kind::Bool => v.is_bool(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "a non-negative integer",
            Kind::Bool => "true or false",
        }
    }
}

/// `(section, key, kind, required)`; section "" is the top level.
const FIELDS: &[(&str, &str, Kind, bool)] = &[
    ("", "name", Kind::Str, true),
    ("", "node_id", Kind::Int, true),
    ("", "peer_id", Kind::Int, true),
    ("", "backing", Kind::Str, true),
    ("", "state_dir", Kind::Str, true),
    ("", "psk_file", Kind::Str, true),
    ("", "control_socket", Kind::Str, true),
    ("", "create_size_bytes", Kind::Int, false),
    ("", "initial_generation", Kind::Str, false),
    ("", "primary_at_start", Kind::Bool, false),
    ("link", "listen", Kind::Str, false),
    ("link", "peer_addr", Kind::Str, false),
    ("link", "ping_interval_ms", Kind::Int, false),
    ("link", "timeout_ms", Kind::Int, false),
    ("frontends", "fuse_dir", Kind::Str, false),
    ("frontends", "nbd_unix_socket", Kind::Str, false),
    ("frontends", "nbd_tcp", Kind::Str, false),
    ("replication", "protocol", Kind::Str, false),
    ("replication", "csums", Kind::Bool, false),
    ("replication", "after_sb_0pri", Kind::Str, false),
    ("replication", "after_sb_1pri", Kind::Str, false),
    ("replication", "resync_rate_max_bytes_per_sec", Kind::Int, false),
    ("replication", "resync_rate_min_bytes_per_sec", Kind::Int, false),
];

const SECTIONS: &[&str] = &["link", "frontends", "replication"];

fn key_name(section: &str, key: &str) -> String {
    if section.is_empty() { key.to_string() } else { format!("{section}.{key}") }
}

/// Checks the table's shape against [`FIELDS`]: unknown keys, wrong types, missing required
/// fields — all of them.
fn shape_problems(t: &Table) -> Vec<String> {
    let mut problems = Vec::new();
    for (k, v) in t {
        if SECTIONS.contains(&k.as_str()) {
            let Some(sub) = v.as_table() else {
                problems.push(format!("{k}: expected a table; write it as a [{k}] section"));
                continue;
            };
            for (sk, sv) in sub {
                check_key(k, sk, sv, &mut problems);
            }
        } else {
            check_key("", k, v, &mut problems);
        }
    }
    for (section, key, _, required) in FIELDS {
        let present = if section.is_empty() {
            t.contains_key(*key)
        } else {
            t.get(*section).and_then(Value::as_table).is_some_and(|s| s.contains_key(*key))
        };
        if *required && !present {
            problems.push(format!("{}: missing; add it (see deploy/blockrepld.toml)", key_name(section, key)));
        }
    }
    problems
}

fn check_key(section: &str, key: &str, v: &Value, problems: &mut Vec<String>) {
    match FIELDS.iter().find(|(s, k, _, _)| *s == section && *k == key) {
        Some((_, _, kind, _)) => {
            if !kind.fits(v) {
                problems.push(format!(
                    "{}: expected {}, found {}; fix the value",
                    key_name(section, key),
                    kind.describe(),
                    v.type_str()
                ));
            }
        }
        None => {
            let known: Vec<&str> = FIELDS.iter().filter(|(s, _, _, _)| *s == section).map(|(_, k, _, _)| *k).collect();
            let elsewhere: Vec<String> = FIELDS
                .iter()
                .filter(|(s, k, _, _)| *k == key && *s != section)
                .map(|(s, k, _, _)| key_name(s, k))
                .collect();
            let fix = if let Some(e) = elsewhere.first() {
                format!("move it to {e}")
            } else if section.is_empty() {
                format!("remove it; known keys are {} and the sections [{}]", known.join(", "), SECTIONS.join("], ["))
            } else {
                format!("remove it; [{section}] knows {}", known.join(", "))
            };
            problems.push(format!("{}: unknown field; {fix}", key_name(section, key)));
        }
    }
}

impl DaemonConfig {
    /// Parses and checks a configuration file's text.
    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> anyhow::Result<DaemonConfig> {
        let table: Table = match text.parse() {
            Ok(t) => t,
            Err(e) => bail!("not valid TOML: {e}"),
        };
        Self::from_table(table)
    }

    /// Checks a table (from a file or from flags).
    pub(crate) fn from_table(table: Table) -> anyhow::Result<DaemonConfig> {
        let problems = shape_problems(&table);
        if !problems.is_empty() {
            return Err(report(problems));
        }
        let cfg: DaemonConfig = match table.try_into() {
            Ok(c) => c,
            Err(e) => return Err(report(vec![e.to_string().trim().to_string()])),
        };
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(report(problems));
        }
        Ok(cfg)
    }

    /// The effective configuration (defaults filled in), as TOML.
    pub(crate) fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// Meaning checks; every problem names the field and the fix.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.name.is_empty() || self.name.contains(['/', ' ']) {
            p.push(format!("name: {:?} must be non-empty without '/' or spaces; pick a name like \"r0\"", self.name));
        }
        if self.node_id == self.peer_id {
            p.push(format!("peer_id: equals node_id ({}); give the peer its own id", self.node_id));
        }
        if self.node_id < self.peer_id {
            if self.link.listen.is_none() {
                p.push("link.listen: required on the lower node id (it accepts the link); add e.g. listen = \"10.0.0.1:7789\"".into());
            }
            if self.link.peer_addr.is_some() {
                p.push("link.peer_addr: the lower node id listens and never dials; remove it".into());
            }
        } else if self.node_id > self.peer_id {
            if self.link.peer_addr.is_none() {
                p.push("link.peer_addr: required on the higher node id (it dials the link); add e.g. peer_addr = \"10.0.0.1:7789\"".into());
            }
            if self.link.listen.is_some() {
                p.push("link.listen: the higher node id dials and never listens; remove it".into());
            }
        }
        for (field, addr) in [
            ("link.listen", &self.link.listen),
            ("link.peer_addr", &self.link.peer_addr),
            ("frontends.nbd_tcp", &self.frontends.nbd_tcp),
        ] {
            if let Some(a) = addr
                && a.parse::<std::net::SocketAddr>().is_err()
            {
                p.push(format!("{field}: {a:?} is not an IP:port address; write e.g. \"10.0.0.1:7789\""));
            }
        }
        if let Some(size) = self.create_size_bytes
            && (size == 0 || !size.is_multiple_of(blockrepl::BLOCK_SIZE))
        {
            p.push(format!(
                "create_size_bytes: {size} must be a non-zero multiple of 4096; round it up to {}",
                size.div_ceil(4096).max(1) * 4096
            ));
        }
        if let Some(g) = &self.initial_generation {
            if u64::from_str_radix(g, 16).is_err() {
                p.push(format!(
                    "initial_generation: {g:?} is not hexadecimal; write e.g. \"b0\" (the same on both nodes)"
                ));
            }
            if self.create_size_bytes.is_none() {
                p.push("initial_generation: only applies with create_size_bytes (a new volume); add create_size_bytes or remove it".into());
            }
        }
        if self.link.ping_interval_ms == 0 {
            p.push("link.ping_interval_ms: must be at least 1; the default is 500".into());
        }
        if self.link.timeout_ms <= self.link.ping_interval_ms {
            p.push(format!(
                "link.timeout_ms: {} must exceed link.ping_interval_ms ({}); use a few intervals, e.g. {}",
                self.link.timeout_ms,
                self.link.ping_interval_ms,
                self.link.ping_interval_ms * 6
            ));
        }
        if let Err(e) = self.protocol() {
            p.push(e.to_string());
        }
        if let Err(e) = self.after_sb_0pri() {
            p.push(e.to_string());
        }
        if let Err(e) = self.after_sb_1pri() {
            p.push(e.to_string());
        }
        let r = &self.replication;
        if r.resync_rate_max_bytes_per_sec != 0 && r.resync_rate_min_bytes_per_sec > r.resync_rate_max_bytes_per_sec {
            p.push(format!(
                "replication.resync_rate_min_bytes_per_sec: {} exceeds resync_rate_max_bytes_per_sec ({}); lower the floor or raise the cap",
                r.resync_rate_min_bytes_per_sec, r.resync_rate_max_bytes_per_sec
            ));
        }
        p
    }

    pub(crate) fn protocol(&self) -> anyhow::Result<Protocol> {
        Ok(match self.replication.protocol.as_str() {
            "A" | "a" => Protocol::A,
            "B" | "b" => Protocol::B,
            "C" | "c" => Protocol::C,
            other => bail!("replication.protocol: {other:?} is not a protocol; use \"A\", \"B\" or \"C\""),
        })
    }

    pub(crate) fn after_sb_0pri(&self) -> anyhow::Result<AfterSb0Pri> {
        Ok(match self.replication.after_sb_0pri.as_str() {
            "disconnect" => AfterSb0Pri::Disconnect,
            "discard-zero-changes" => AfterSb0Pri::DiscardZeroChanges,
            "discard-least-changes" => AfterSb0Pri::DiscardLeastChanges,
            "discard-younger-primary" => AfterSb0Pri::DiscardYoungerPrimary,
            "discard-older-primary" => AfterSb0Pri::DiscardOlderPrimary,
            other => bail!(
                "replication.after_sb_0pri: {other:?} is not a policy; use disconnect, discard-zero-changes, discard-least-changes, discard-younger-primary or discard-older-primary"
            ),
        })
    }

    pub(crate) fn after_sb_1pri(&self) -> anyhow::Result<AfterSb1Pri> {
        Ok(match self.replication.after_sb_1pri.as_str() {
            "disconnect" => AfterSb1Pri::Disconnect,
            "consensus" => AfterSb1Pri::Consensus,
            "discard-secondary" => AfterSb1Pri::DiscardSecondary,
            other => bail!(
                "replication.after_sb_1pri: {other:?} is not a policy; use disconnect, consensus or discard-secondary"
            ),
        })
    }
}

fn report(problems: Vec<String>) -> anyhow::Error {
    let n = problems.len();
    let list: Vec<String> = problems.into_iter().map(|p| format!("  - {p}")).collect();
    anyhow::anyhow!("{n} configuration problem{}:\n{}", if n == 1 { "" } else { "s" }, list.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../deploy/blockrepld.toml");

    #[test]
    fn the_sample_file_parses_and_round_trips() {
        let cfg = DaemonConfig::parse(SAMPLE).unwrap();
        assert_eq!(cfg.name, "r0");
        assert_eq!(cfg.replication.protocol, "C");
        let again = DaemonConfig::parse(&cfg.to_toml()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_field_and_fix() {
        let text = r#"
name = "r0"
node_id = 1
peer_id = 1
backing = "/dev/shm/x"
state_dir = "/tmp/s"
psk_file = "/tmp/k"
colour = "blue"
create_size_bytes = 1000
[link]
listen = "nonsense"
timeout = 5
ping_interval_ms = "fast"
[replication]
protocol = "D"
"#;
        let e = format!("{:#}", DaemonConfig::parse(text).unwrap_err());
        for needle in [
            "colour: unknown field; remove it",
            "link.timeout: unknown field",
            "link.ping_interval_ms: expected a non-negative integer, found string",
            "control_socket: missing",
        ] {
            assert!(e.contains(needle), "{needle:?} not in\n{e}");
        }
        // Shape problems first; meaning problems once the shape is right.
        let text = text.replace("colour = \"blue\"\n", "control_socket = \"/tmp/c\"\n");
        let text = text.replace("timeout = 5\nping_interval_ms = \"fast\"\n", "");
        let e = format!("{:#}", DaemonConfig::parse(&text).unwrap_err());
        for needle in [
            "4 configuration problems",
            "peer_id: equals node_id",
            "link.listen: \"nonsense\" is not an IP:port",
            "create_size_bytes: 1000 must be a non-zero multiple of 4096; round it up to 4096",
            "replication.protocol: \"D\" is not a protocol",
        ] {
            assert!(e.contains(needle), "{needle:?} not in\n{e}");
        }
    }

    #[test]
    fn a_key_in_the_wrong_section_says_where_it_belongs() {
        let text = SAMPLE.replace("[link]", "protocol = \"C\"\n[link]");
        let e = format!("{:#}", DaemonConfig::parse(&text).unwrap_err());
        assert!(e.contains("protocol: unknown field; move it to replication.protocol"), "{e}");
    }
}
