//! A fence device as the fencer sees it: which nodes it can fence (`pcmk_host_list`,
//! `pcmk_host_map`, `pcmk_host_check`) and how long to wait first (`pcmk_delay_base`,
//! `pcmk_delay_max`).

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use wire::Duration;

use crate::agent::AgentError;
use crate::params::{Params, parse_duration};

/// How the fencer decides whether a device can fence a node (`pcmk_host_check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostCheck {
    /// The node is in `pcmk_host_list` or `pcmk_host_map`.
    StaticList,
    /// The node's plug is in the device's `list` output.
    DynamicList,
    /// The device answers `status` for the node's plug.
    Status,
    /// Every device can fence every node.
    None,
}

/// The fencer's view of one device.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Device id (unique in the cluster).
    pub id: String,
    /// Parameters for the agent (the `pcmk_*` keys included; agents ignore them).
    pub params: Params,
    host_list: BTreeSet<String>,
    host_map: BTreeMap<String, Vec<String>>,
    /// The host check in force.
    pub check: HostCheck,
    delay_base: DelayBase,
    delay_max: Duration,
    /// Devices with a lower value are tried first among implicit levels.
    pub priority: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DelayBase {
    Static(Duration),
    PerNode(BTreeMap<String, Duration>),
}

fn bad(field: &str, problem: impl Into<String>) -> AgentError {
    AgentError::Config {
        field: field.into(),
        problem: problem.into(),
    }
}

fn wire_duration(field: &str, s: &str) -> Result<Duration, AgentError> {
    parse_duration(s)
        .map(Duration::from)
        .ok_or_else(|| bad(field, format!("`{s}` is not a duration; use e.g. 5s")))
}

/// Parses `node1:1;node2:2,3` (also `=` for `:`, and spaces between entries).
pub fn parse_host_map(s: &str) -> Result<BTreeMap<String, Vec<String>>, AgentError> {
    let mut map = BTreeMap::new();
    for entry in s.split([';', ' ', '\t', '\n']).filter(|e| !e.is_empty()) {
        let (node, plugs) = entry.split_once([':', '=']).ok_or_else(|| {
            bad(
                "pcmk_host_map",
                format!("entry `{entry}` is not node:plug (e.g. node1:1;node2:2,3)"),
            )
        })?;
        let plugs: Vec<String> = plugs
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if node.is_empty() || plugs.is_empty() {
            return Err(bad(
                "pcmk_host_map",
                format!("entry `{entry}` needs a node name and at least one plug"),
            ));
        }
        map.insert(node.to_owned(), plugs);
    }
    Ok(map)
}

fn parse_delay_base(s: &str) -> Result<DelayBase, AgentError> {
    if !s.contains([':', '=']) {
        return Ok(DelayBase::Static(wire_duration("pcmk_delay_base", s)?));
    }
    let mut m = BTreeMap::new();
    for entry in s.split([';', ' ', ',']).filter(|e| !e.is_empty()) {
        let (node, d) = entry.split_once([':', '=']).ok_or_else(|| {
            bad(
                "pcmk_delay_base",
                format!("entry `{entry}` is not node:delay (e.g. node1:0s;node2:5s)"),
            )
        })?;
        m.insert(node.to_owned(), wire_duration("pcmk_delay_base", d)?);
    }
    Ok(DelayBase::PerNode(m))
}

impl DeviceConfig {
    /// Reads the `pcmk_*` keys of a device. `supports_list` (from the agent's metadata)
    /// picks the default host check when no list or map is given.
    pub fn new(id: &str, params: Params, supports_list: bool) -> Result<DeviceConfig, AgentError> {
        let host_list: BTreeSet<String> = params
            .get(&["pcmk_host_list"])
            .unwrap_or("")
            .split([' ', ',', ';', '\t'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let host_map = parse_host_map(params.get(&["pcmk_host_map"]).unwrap_or(""))?;
        let check = match params.get(&["pcmk_host_check"]) {
            None | Some("") if !host_list.is_empty() || !host_map.is_empty() => {
                HostCheck::StaticList
            }
            None | Some("") if supports_list => HostCheck::DynamicList,
            None | Some("") => HostCheck::Status,
            Some("static-list") => HostCheck::StaticList,
            Some("dynamic-list") => HostCheck::DynamicList,
            Some("status") => HostCheck::Status,
            Some("none") => HostCheck::None,
            Some(other) => {
                return Err(bad(
                    "pcmk_host_check",
                    format!("`{other}` is not one of static-list, dynamic-list, status, none"),
                ));
            }
        };
        if check == HostCheck::StaticList && host_list.is_empty() && host_map.is_empty() {
            return Err(bad(
                "pcmk_host_list",
                "pcmk_host_check=static-list needs pcmk_host_list or pcmk_host_map",
            ));
        }
        let delay_base = parse_delay_base(params.get(&["pcmk_delay_base"]).unwrap_or("0s"))?;
        let delay_max = wire_duration(
            "pcmk_delay_max",
            params.get(&["pcmk_delay_max"]).unwrap_or("0s"),
        )?;
        let priority = params.number(&["priority"], 0i64)?;
        Ok(DeviceConfig {
            id: id.to_owned(),
            params,
            host_list,
            host_map,
            check,
            delay_base,
            delay_max,
            priority,
        })
    }

    /// The plugs to act on for `target`: its `pcmk_host_map` entry, else the node name.
    pub fn plugs_for(&self, target: &str) -> Vec<String> {
        self.host_map
            .get(target)
            .cloned()
            .unwrap_or_else(|| vec![target.to_owned()])
    }

    /// True when the static configuration names `target`.
    pub fn statically_lists(&self, target: &str) -> bool {
        self.host_list.contains(target) || self.host_map.contains_key(target)
    }

    /// The delay before this device's first fencing action against `target`:
    /// `pcmk_delay_base` (static or per node) plus a random part that keeps the sum at or
    /// under `pcmk_delay_max`.
    pub fn delay_for(&self, target: &str, rng: &mut impl Rng) -> Duration {
        let base = match &self.delay_base {
            DelayBase::Static(d) => *d,
            DelayBase::PerNode(m) => m.get(target).copied().unwrap_or(Duration::ZERO),
        };
        if self.delay_max <= base {
            return base;
        }
        let span = (self.delay_max - base).as_millis();
        base + Duration::from_millis(rng.random_range(0..=span))
    }
}

/// Pacemaker's `priority-fencing-delay`: in a split where this partition lacks the
/// majority, fencing the lost node with the highest total resource priority waits `delay`,
/// so that the more important node wins a fence race. `lost` holds the priorities of all
/// nodes lost together with `target`.
pub fn priority_fencing_delay(
    delay: Duration,
    target_priority: i64,
    lost: &[i64],
    partition_has_majority: bool,
) -> Duration {
    let highest = lost.iter().copied().max().unwrap_or(i64::MIN);
    if partition_has_majority || delay == Duration::ZERO || target_priority < highest {
        return Duration::ZERO;
    }
    // A tie among several lost nodes gives no one an advantage.
    if lost.iter().filter(|p| **p == highest).count() > 1 {
        return Duration::ZERO;
    }
    delay
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn dev(words: &[&str], supports_list: bool) -> Result<DeviceConfig, AgentError> {
        DeviceConfig::new("d", Params::from_words(words).unwrap(), supports_list)
    }

    #[test]
    fn host_map_accepts_pacemaker_syntax() {
        let m = parse_host_map("node1:1;node2:2,3 node3=vm3").unwrap();
        assert_eq!(m["node2"], vec!["2", "3"]);
        assert_eq!(m["node3"], vec!["vm3"]);
        assert!(parse_host_map("node1").is_err());
        assert!(parse_host_map("node1:").is_err());
        let d = dev(&["pcmk_host_map=node1:vm1"], true).unwrap();
        assert_eq!(d.check, HostCheck::StaticList);
        assert_eq!(d.plugs_for("node1"), vec!["vm1"]);
        assert_eq!(d.plugs_for("node9"), vec!["node9"]);
        assert!(!d.statically_lists("node9"));
    }

    #[test]
    fn host_check_defaults_follow_pacemaker() {
        assert_eq!(
            dev(&["pcmk_host_list=a,b"], true).unwrap().check,
            HostCheck::StaticList
        );
        assert_eq!(dev(&[], true).unwrap().check, HostCheck::DynamicList);
        assert_eq!(dev(&[], false).unwrap().check, HostCheck::Status);
        assert_eq!(
            dev(&["pcmk_host_check=none"], false).unwrap().check,
            HostCheck::None
        );
        let e = dev(&["pcmk_host_check=static-list"], false).unwrap_err();
        assert!(e.to_string().contains("pcmk_host_list"), "{e}");
        assert!(dev(&["pcmk_host_check=sometimes"], false).is_err());
    }

    #[test]
    fn delays_stay_between_base_and_max() {
        let mut rng = SmallRng::seed_from_u64(7);
        let d = dev(&["pcmk_delay_base=2s", "pcmk_delay_max=5s"], true).unwrap();
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let x = d.delay_for("n", &mut rng);
            assert!(
                x >= Duration::from_secs(2) && x <= Duration::from_secs(5),
                "{x}"
            );
            seen.insert(x.as_millis() / 1000);
        }
        assert!(seen.len() >= 3, "delay is not random: {seen:?}");
        let d = dev(&["pcmk_delay_base=node1:0s;node2:10s"], true).unwrap();
        assert_eq!(d.delay_for("node1", &mut rng), Duration::ZERO);
        assert_eq!(d.delay_for("node2", &mut rng), Duration::from_secs(10));
        assert!(dev(&["pcmk_delay_max=soon"], true).is_err());
    }

    #[test]
    fn priority_delay_protects_the_more_important_node() {
        let d = Duration::from_secs(15);
        assert_eq!(priority_fencing_delay(d, 10, &[10], false), d);
        assert_eq!(priority_fencing_delay(d, 10, &[10], true), Duration::ZERO);
        assert_eq!(
            priority_fencing_delay(d, 1, &[1, 10], false),
            Duration::ZERO
        );
        assert_eq!(priority_fencing_delay(d, 5, &[5, 5], false), Duration::ZERO);
    }
}
