//! Unpacking: the CIB becomes the scheduler's working set (nodes, resource tree with clone
//! instances, current state derived from operation history).

use std::collections::{BTreeMap, BTreeSet};

use crate::cib::xml::{parse_duration_s, parse_interval_ms};
use crate::cib::*;
use crate::score::Score;

use super::rules::{self, RuleCtx};
use crate::cib::xml::parse_config_interval_ms;
use crate::digest::{Params, flatten_params};

/// What a resource needs before it may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requires {
    Nothing,
    Quorum,
    Fencing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Primitive,
    Group,
    Clone,
}

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum OnFail {
    Ignore,
    Demote,
    Restart,
    Stop,
    Block,
    Standby,
    Fence,
}

impl OnFail {
    fn parse(s: &str) -> Option<OnFail> {
        Some(match s.to_ascii_lowercase().as_str() {
            "ignore" => OnFail::Ignore,
            "demote" => OnFail::Demote,
            "restart" | "restart-container" => OnFail::Restart,
            "stop" => OnFail::Stop,
            "block" => OnFail::Block,
            "standby" => OnFail::Standby,
            "fence" | "stonith" => OnFail::Fence,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) online: bool,
    pub(crate) unclean: bool,
    pub(crate) pending: bool,
    pub(crate) standby: bool,
    pub(crate) standby_onfail: bool,
    pub(crate) maintenance: bool,
    pub(crate) shutdown: bool,
    pub(crate) fence_reason: Option<String>,
    pub(crate) attrs: BTreeMap<String, String>,
    /// Resources assigned so far (tie-breaking).
    pub(crate) count: usize,
    /// Utilization left (when placement-strategy is not default).
    pub(crate) free: BTreeMap<String, i64>,
}

impl Node {
    /// Whether resources may be placed here.
    pub(crate) fn can_host(&self) -> bool {
        self.online && !self.unclean && !self.standby && !self.pending && !self.shutdown && !self.maintenance
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct CloneCfg {
    pub(crate) max: usize,
    pub(crate) node_max: usize,
    pub(crate) promotable: bool,
    pub(crate) promoted_max: usize,
    pub(crate) promoted_node_max: usize,
    pub(crate) interleave: bool,
    pub(crate) ordered: bool,
    pub(crate) notify: bool,
    pub(crate) unique: bool,
    pub(crate) min: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Rsc {
    pub(crate) id: String,
    pub(crate) base: String,
    pub(crate) kind: Kind,
    pub(crate) parent: Option<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) class: String,
    pub(crate) provider: Option<String>,
    pub(crate) agent: String,
    pub(crate) meta: BTreeMap<String, String>,
    /// Instance attribute sets (agent parameters, possibly with rules per node), for
    /// location rules with `value-source="param"`.
    pub(crate) param_sets: Vec<NvSet>,
    pub(crate) utilization: BTreeMap<String, i64>,
    pub(crate) ops: Vec<OpConfig>,
    pub(crate) priority: i64,
    pub(crate) stickiness: Score,
    pub(crate) migration_threshold: i64,
    pub(crate) failure_timeout_s: i64,
    pub(crate) target_role: Option<Role>,
    pub(crate) managed: bool,
    pub(crate) requires: Requires,
    pub(crate) clone: CloneCfg,
    pub(crate) orphan: bool,
    pub(crate) instance: Option<usize>,
    // Current state (leaves).
    pub(crate) running: Vec<usize>,
    pub(crate) role: Role,
    pub(crate) failed: bool,
    pub(crate) on_fail: OnFail,
    pub(crate) blocked: bool,
    /// A promoted instance failed with on-fail=demote: it must be demoted (and may be
    /// promoted again), without a stop.
    pub(crate) demote_failed: bool,
    /// (node, interval) of recurring monitors recorded as done on a node after the
    /// resource's last successful start, stop, promote or demote there.
    pub(crate) recurring_on: BTreeSet<(usize, u64)>,
    pub(crate) pending: Option<String>,
    pub(crate) known_on: BTreeSet<usize>,
    /// History entry ids seen per node (anonymous clones may have several).
    pub(crate) history_ids: Vec<(usize, String)>,
    pub(crate) fail_stop_on: BTreeSet<usize>,
    /// Nodes where this resource must restart because a resource it contains failed there,
    /// or because its definition changed since it started there.
    pub(crate) restart_on: BTreeSet<usize>,
    /// Nodes where the resource's definition changed since it started there in parameters
    /// its agent can take by reloading only: it is reloaded there, unless it restarts anyway.
    pub(crate) reload_on: BTreeSet<usize>,
    /// Nodes whose history is obsolete (recorded for another agent): its failures and fail
    /// counts there no longer count.
    pub(crate) cleared_on: BTreeSet<usize>,
    /// Nodes this resource may not run on after hard or fatal errors.
    pub(crate) banned_on: BTreeSet<usize>,
    /// Unassigned after placement because an interleaved ordering found no partner: the
    /// node it had been placed on.
    pub(crate) inhibited_on: Option<usize>,
    // Placement.
    pub(crate) weights: BTreeMap<usize, Score>,
    pub(crate) assigned: Option<usize>,
    pub(crate) next_role: Role,
    pub(crate) provisional: bool,
    pub(crate) assigning: bool,
    pub(crate) promotion: Score,
}

/// Cluster-wide settings.
#[derive(Debug, Clone)]
pub(crate) struct Props {
    pub(crate) fencing_enabled: bool,
    pub(crate) fencing_action: String,
    pub(crate) symmetric: bool,
    pub(crate) no_quorum_policy: String,
    pub(crate) placement: String,
    pub(crate) maintenance_mode: bool,
    pub(crate) stop_all: bool,
    pub(crate) stop_orphans: bool,
    pub(crate) startup_fencing: bool,
    /// `node-pending-timeout` in seconds, when set and non-zero.
    pub(crate) node_pending_timeout_s: Option<i64>,
    pub(crate) have_fence_device: bool,
    /// `shutdown-lock`: resources of a cleanly shut down node stay locked to it.
    pub(crate) shutdown_lock: bool,
    /// `shutdown-lock-limit` in seconds (0: locks never expire).
    pub(crate) shutdown_lock_limit_s: i64,
}

pub(crate) struct World {
    pub(crate) nodes: Vec<Node>,
    pub(crate) rscs: Vec<Rsc>,
    /// Top-level resources in configuration order.
    pub(crate) top: Vec<usize>,
    pub(crate) props: Props,
    pub(crate) quorate: bool,
    pub(crate) now: i64,
    pub(crate) by_id: BTreeMap<String, usize>,
    pub(crate) rsc_defaults: Vec<NvSet>,
    pub(crate) op_defaults: Vec<NvSet>,
    /// Leaves per resource, filled once the resource tree is final.
    pub(crate) leaf_cache: Vec<Vec<usize>>,
}

pub(crate) fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1" | "y")
}

/// Flattens sets in precedence order (higher score first, then document order); first wins.
pub(crate) fn flatten(sets: &[NvSet], ctx: &RuleCtx<'_>, out: &mut BTreeMap<String, String>) {
    let mut order: Vec<&NvSet> = sets.iter().collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.score.unwrap_or(Score::ZERO)));
    for s in order {
        if let Some(r) = &s.rule
            && !rules::eval(r, ctx)
        {
            continue;
        }
        for p in &s.pairs {
            if let Some(v) = &p.value {
                out.entry(crate::cib::xml_modern(&p.name)).or_insert_with(|| v.clone());
            }
        }
    }
}

/// What the node_state says about a node's membership.
struct Membership {
    /// Since when the node is a cluster member: -1 unknown, 0 not a member.
    when_member: i64,
    /// Since when the node's controller is online: 0 offline.
    when_online: i64,
}

/// Node status as decided from its node_state: (online, unclean, pending, fence reason).
/// Follows Pacemaker's rules: a node that is shutting down is online while its controller
/// is; with fencing, a node that was seen but is not expected up is pending, one that left
/// the membership or lost its controller while expected up is fenced, and a node never
/// seen is fenced; without fencing, a node is simply online when member, online and joined.
fn node_online(
    ns: Option<&NodeState>,
    fencing: bool,
    startup_fencing: bool,
    shutdown: bool,
    terminate: bool,
    pending_timeout: Option<(i64, i64)>,
) -> (bool, bool, bool, Option<&'static str>) {
    let Some(ns) = ns else {
        if fencing && startup_fencing {
            return (false, true, false, Some("node is unclean"));
        }
        return (false, false, false, None);
    };
    let m = Membership {
        when_member: match ns.in_ccm.as_deref() {
            None => -1,
            // A boolean "member" counts as a member since now.
            Some(v) if truthy(v) => pending_timeout.map_or(1, |(_, now)| now.max(1)),
            Some(v) => v.parse::<i64>().unwrap_or(0).max(0),
        },
        when_online: match ns.crmd.as_deref() {
            Some(v) if v.eq_ignore_ascii_case("online") => 1,
            Some(v) => v.parse::<i64>().unwrap_or(0).max(0),
            None => 0,
        },
    };
    let join = ns.join.as_deref().unwrap_or("");
    let expected = ns.expected.as_deref();
    if !fencing {
        if m.when_member <= 0 {
            return (false, false, false, None);
        }
        if m.when_online > 0 {
            return (join == "member", false, join != "member" && join != "down", None);
        }
        // An unexpectedly down node cannot be fenced without fencing: its resources are
        // taken as stopped, like those of any offline node.
        return (false, false, false, None);
    }
    if shutdown {
        // A node shutting down cannot be fenced for being down; it is online while its
        // controller is.
        return (m.when_online > 0, false, false, None);
    }
    if m.when_member < 0 {
        return (false, true, false, Some("peer has not been seen by the cluster"));
    }
    let member = m.when_member > 0;
    if join == "nack" || join == "banned" {
        return (member, true, false, Some("peer failed Pacemaker membership criteria"));
    }
    if terminate {
        if m.when_member <= 0 && m.when_online <= 0 && join == "down" {
            return (false, false, false, None);
        }
        return (member, true, false, Some("fencing was requested"));
    }
    if expected.is_none_or(|e| e == "down") {
        let timed_out = pending_timeout
            .is_some_and(|(timeout, now)| member && m.when_online <= 0 && now >= m.when_member + timeout);
        if timed_out {
            return (member, true, false, Some("peer pending timed out on joining the process group"));
        }
        if member || m.when_online > 0 {
            return (member, false, true, None);
        }
        return (member, false, false, None);
    }
    if !member {
        return (false, true, false, Some("peer is no longer part of the cluster"));
    }
    if m.when_online <= 0 {
        return (true, true, false, Some("peer process is no longer available"));
    }
    match join {
        "member" => (true, false, false, None),
        "pending" | "down" => (true, false, true, None),
        _ => (true, true, false, Some("peer was in an unknown state")),
    }
}

impl World {
    pub(crate) fn build(cib: &Cib, quorum: Option<bool>, now: i64) -> World {
        let empty = BTreeMap::new();
        let ctx0 = RuleCtx::attrs(None, &empty);
        let mut props = BTreeMap::new();
        flatten(&cib.config.properties, &ctx0, &mut props);
        let p = |k: &str| props.get(k).map(String::as_str);
        let fencing_enabled = p("fencing-enabled").is_none_or(truthy);
        let have_fence_device = has_fence_device(&cib.config.resources);
        let props_s = Props {
            fencing_enabled,
            fencing_action: match p("fencing-action").unwrap_or("reboot") {
                "poweroff" => "off".to_string(),
                a => a.to_string(),
            },
            symmetric: p("symmetric-cluster").is_none_or(truthy),
            // "suicide" is the older name of "fence" (fence every node of the partition).
            no_quorum_policy: match p("no-quorum-policy").unwrap_or("stop").to_ascii_lowercase().as_str() {
                "suicide" => "fence".to_string(),
                other => other.to_string(),
            },
            placement: p("placement-strategy").unwrap_or("default").to_ascii_lowercase(),
            maintenance_mode: p("maintenance-mode").is_some_and(truthy),
            stop_all: p("stop-all-resources").is_some_and(truthy),
            stop_orphans: p("stop-removed-resources").is_none_or(truthy),
            startup_fencing: p("startup-fencing").is_none_or(truthy),
            node_pending_timeout_s: p("node-pending-timeout")
                .and_then(crate::cib::xml::parse_interval_ms)
                .map(|ms| (ms / 1000) as i64)
                .filter(|&s| s > 0),
            have_fence_device,
            shutdown_lock: p("shutdown-lock").is_some_and(truthy),
            shutdown_lock_limit_s: p("shutdown-lock-limit")
                .and_then(crate::cib::xml::parse_interval_ms)
                .map_or(0, |ms| (ms / 1000) as i64),
        };
        let quorate = quorum.unwrap_or(cib.have_quorum);
        let mut w = World {
            nodes: Vec::new(),
            rscs: Vec::new(),
            top: Vec::new(),
            props: props_s,
            quorate,
            now,
            by_id: BTreeMap::new(),
            rsc_defaults: cib.config.rsc_defaults.clone(),
            op_defaults: cib.config.op_defaults.clone(),
            leaf_cache: Vec::new(),
        };
        w.unpack_nodes(cib);
        if !w.quorate && w.props.no_quorum_policy == "fence" && cib.no_quorum_panic && w.props.fencing_enabled {
            for node in &mut w.nodes {
                if node.online && !node.unclean {
                    node.unclean = true;
                    node.fence_reason = Some("cluster does not have quorum".into());
                }
            }
        }
        for r in &cib.config.resources {
            let idx = w.unpack_rsc(r, None, None, &BTreeMap::new());
            w.top.push(idx);
        }
        w.unpack_status(cib);
        if w.props.shutdown_lock {
            w.apply_shutdown_locks(cib);
        }
        w.leaf_cache = (0..w.rscs.len())
            .map(|r| {
                let mut out = Vec::new();
                w.collect_leaves(r, &mut out);
                out
            })
            .collect();
        for i in 0..w.rscs.len() {
            let r = &w.rscs[i];
            if r.kind != Kind::Primitive || r.running.len() < 2 {
                continue;
            }
            match r.meta.get("multiple-active").map(String::as_str) {
                Some("block") => {
                    // The whole group is blocked along with its multiply active member.
                    let scope = match r.parent {
                        Some(p) if w.rscs[p].kind == Kind::Group => w.rscs[p].children.clone(),
                        _ => vec![i],
                    };
                    for m in scope {
                        w.rscs[m].blocked = true;
                    }
                }
                Some("stop_only") => w.rscs[i].target_role = Some(Role::Stopped),
                _ => {}
            }
        }
        w
    }

    fn unpack_nodes(&mut self, cib: &Cib) {
        let states: BTreeMap<&str, &NodeState> = cib.status.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut seen = BTreeSet::new();
        let mut configured: Vec<(String, String, Vec<NvSet>, Vec<NvSet>)> = cib
            .config
            .nodes
            .iter()
            .filter(|n| n.kind.as_deref().is_none_or(|k| k == "member" || k == "normal"))
            .map(|n| (n.id.clone(), n.uname.clone(), n.attributes.clone(), n.utilization.clone()))
            .collect();
        // node_state entries for nodes not in configuration still count.
        for s in &cib.status {
            if !cib.config.nodes.iter().any(|n| n.id == s.id) {
                configured.push((
                    s.id.clone(),
                    s.uname.clone().unwrap_or_else(|| s.id.clone()),
                    Vec::new(),
                    Vec::new(),
                ));
            }
        }
        for (id, name, attrs, util) in configured {
            if !seen.insert(id.clone()) {
                continue;
            }
            let ns = states.get(id.as_str()).copied();
            let mut a = BTreeMap::new();
            a.insert("#uname".to_string(), name.clone());
            a.insert("#id".to_string(), id.clone());
            a.insert("#kind".to_string(), "cluster".to_string());
            let no_attrs = BTreeMap::new();
            let ctx = RuleCtx::attrs(None, &no_attrs);
            if let Some(ns) = ns {
                let mut t = BTreeMap::new();
                flatten(&ns.transient, &ctx, &mut t);
                for (k, v) in t {
                    a.insert(k, v);
                }
            }
            let mut perm = BTreeMap::new();
            flatten(&attrs, &ctx, &mut perm);
            for (k, v) in perm {
                a.entry(k).or_insert(v);
            }
            if cib.dc_uuid.as_deref() == Some(id.as_str()) {
                a.insert("#is_dc".into(), "true".into());
            } else {
                a.insert("#is_dc".into(), "false".into());
            }
            let mut cap = BTreeMap::new();
            let mut u = BTreeMap::new();
            flatten(&util, &ctx, &mut u);
            if let Some(ns) = ns {
                let mut t = BTreeMap::new();
                flatten(&ns.transient_utilization, &ctx, &mut t);
                u.extend(t);
            }
            for (k, v) in u {
                if let Ok(n) = v.parse::<i64>() {
                    cap.insert(k, n);
                }
            }
            let standby = a.get("standby").is_some_and(|v| truthy(v));
            let maintenance = a.get("maintenance").is_some_and(|v| truthy(v));
            let shutdown = a.get("shutdown").is_some_and(|v| v != "0");
            let terminate = a.get("terminate").is_some_and(|v| truthy(v) || v.parse::<i64>().is_ok_and(|n| n > 0));
            let pending_timeout = self.props.node_pending_timeout_s.map(|t| (t, self.now));
            let (online, unclean, pending, reason) = node_online(
                ns,
                self.props.fencing_enabled,
                self.props.startup_fencing,
                shutdown,
                terminate,
                pending_timeout,
            );
            let node = Node {
                id,
                name,
                online,
                unclean,
                pending,
                standby,
                standby_onfail: false,
                maintenance,
                shutdown,
                fence_reason: reason.map(str::to_string),
                attrs: a,
                free: cap,
                count: 0,
            };
            self.nodes.push(node);
        }
    }

    fn rsc_meta(&self, r: &Resource, inherited: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let empty = BTreeMap::new();
        let ctx = RuleCtx::attrs(None, &empty);
        let mut m = BTreeMap::new();
        flatten(&r.meta, &ctx, &mut m);
        for (k, v) in inherited {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        m
    }

    fn unpack_rsc(
        &mut self,
        r: &Resource,
        parent: Option<usize>,
        instance: Option<usize>,
        inherited: &BTreeMap<String, String>,
    ) -> usize {
        let meta = self.rsc_meta(r, inherited);
        let suffix = instance.map(|i| format!(":{i}")).unwrap_or_default();
        let idx = self.rscs.len();
        let mut defaults = BTreeMap::new();
        let empty = BTreeMap::new();
        let (kind, class, provider, agent) = match &r.kind {
            ResourceKind::Primitive { class, provider, agent } => {
                (Kind::Primitive, class.clone(), provider.clone(), agent.clone())
            }
            ResourceKind::Group { .. } => (Kind::Group, String::new(), None, String::new()),
            ResourceKind::Clone { .. } => (Kind::Clone, String::new(), None, String::new()),
        };
        // Resource defaults may be limited by rules on the resource's agent.
        let mut ctx = RuleCtx::attrs(None, &empty);
        if kind == Kind::Primitive {
            ctx.rsc = Some((class.as_str(), provider.as_deref(), agent.as_str()));
        }
        flatten(&self.rsc_defaults, &ctx, &mut defaults);
        let get = |k: &str| meta.get(k).or_else(|| defaults.get(k)).map(String::as_str);
        let target_role = get("target-role").and_then(Role::parse);
        let managed = get("is-managed").is_none_or(truthy)
            && !self.props.maintenance_mode
            && !get("maintenance").is_some_and(truthy);
        let requires = match get("requires") {
            Some("nothing") => Requires::Nothing,
            Some("quorum") => Requires::Quorum,
            Some("fencing") | Some("unfencing") => Requires::Fencing,
            _ => {
                if class == "stonith" {
                    Requires::Quorum
                } else if self.props.fencing_enabled {
                    Requires::Fencing
                } else {
                    Requires::Quorum
                }
            }
        };
        let mut utilization = BTreeMap::new();
        let mut u = BTreeMap::new();
        flatten(&r.utilization, &RuleCtx::attrs(None, &empty), &mut u);
        for (k, v) in u {
            if let Ok(n) = v.parse::<i64>() {
                utilization.insert(k, n);
            }
        }
        let n_nodes = self.nodes.len().max(1);
        let mut clone = CloneCfg::default();
        if let ResourceKind::Clone { legacy_promotable, .. } = &r.kind {
            let num = |k: &str, alt: &str, d: usize| {
                get(k).or_else(|| get(alt)).and_then(|v| v.parse::<usize>().ok()).unwrap_or(d)
            };
            clone.max = num("clone-max", "clone-max", n_nodes);
            clone.node_max = num("clone-node-max", "clone-node-max", 1);
            clone.promotable = *legacy_promotable || get("promotable").is_some_and(truthy);
            clone.promoted_max = num("promoted-max", "master-max", 1);
            clone.promoted_node_max = num("promoted-node-max", "master-node-max", 1);
            clone.interleave = get("interleave").is_some_and(truthy);
            clone.ordered = get("ordered").is_some_and(truthy);
            clone.notify = get("notify").is_some_and(truthy);
            // Unset, instances are distinct exactly when one node may run several of them.
            clone.unique = get("globally-unique").map_or(clone.node_max > 1, truthy);
            clone.min = num("clone-min", "clone-min", 0);
        }
        let stickiness =
            get("resource-stickiness").or_else(|| get("default-resource-stickiness")).and_then(Score::parse).unwrap_or(
                if matches!(r.kind, ResourceKind::Clone { .. })
                    || parent.is_some_and(|p| self.rscs[p].kind == Kind::Clone)
                {
                    Score::new(1)
                } else {
                    Score::ZERO
                },
            );
        let rsc = Rsc {
            id: format!("{}{suffix}", r.id),
            base: r.id.clone(),
            kind,
            parent,
            children: Vec::new(),
            class,
            provider,
            agent,
            priority: get("priority").and_then(Score::parse).map_or(0, |s| s.value()),
            stickiness,
            migration_threshold: get("migration-threshold")
                .and_then(Score::parse)
                .map(|s| s.value())
                .unwrap_or(crate::score::INFINITY),
            failure_timeout_s: get("failure-timeout").and_then(parse_duration_s).unwrap_or(0),
            target_role,
            managed,
            requires,
            clone,
            orphan: false,
            instance,
            utilization,
            ops: r.ops.clone(),
            meta: meta.clone(),
            param_sets: r.params.clone(),
            // The run-time state (history, assignment) starts as for every resource.
            ..blank_rsc()
        };
        self.rscs.push(rsc);
        if instance.is_none() {
            self.by_id.insert(r.id.clone(), idx);
        }
        // Children inherit meta attributes of collectives.
        let mut inh = meta.clone();
        inh.remove("promotable");
        match &r.kind {
            ResourceKind::Primitive { .. } => {}
            ResourceKind::Group { members } => {
                for m in members {
                    let c = self.unpack_rsc(m, Some(idx), instance, &inh);
                    self.rscs[idx].children.push(c);
                }
            }
            ResourceKind::Clone { child, .. } => {
                for i in 0..self.rscs[idx].clone.max {
                    let c = self.unpack_rsc(child, Some(idx), Some(i), &inh);
                    self.rscs[idx].children.push(c);
                }
                self.by_id.insert(child.id.clone(), idx);
                if let ResourceKind::Group { members } = &child.kind {
                    for m in members {
                        self.by_id.entry(m.id.clone()).or_insert(idx);
                    }
                }
            }
        }
        idx
    }

    /// Whether fencing of node `n` is part of this transition.
    pub(crate) fn will_fence(&self, n: usize) -> bool {
        let node = &self.nodes[n];
        node.unclean
            && node.fence_reason.is_some()
            && self.props.fencing_enabled
            && (self.quorate || matches!(self.props.no_quorum_policy.as_str(), "ignore" | "fence"))
    }

    /// Blocked by a failure that fencing will not clear.
    pub(crate) fn blocked(&self, l: usize) -> bool {
        let r = &self.rscs[l];
        r.blocked && r.running.iter().any(|&n| !self.will_fence(n))
    }

    /// Whether the scheduler may act on a leaf: managed, not blocked by a failure (unless
    /// fencing its node clears the failure), and not on a node in maintenance.
    pub(crate) fn actionable(&self, l: usize) -> bool {
        let r = &self.rscs[l];
        let blocked = r.blocked && r.running.iter().any(|&n| !self.will_fence(n));
        r.managed && !blocked && !r.running.iter().any(|&n| self.nodes[n].maintenance)
    }

    /// Leaves (primitives) under `r`, in order.
    pub(crate) fn leaves(&self, r: usize) -> Vec<usize> {
        if let Some(v) = self.leaf_cache.get(r) {
            return v.clone();
        }
        let mut out = Vec::new();
        self.collect_leaves(r, &mut out);
        out
    }

    fn collect_leaves(&self, r: usize, out: &mut Vec<usize>) {
        if self.rscs[r].kind == Kind::Primitive {
            out.push(r);
        } else {
            for &c in &self.rscs[r].children {
                self.collect_leaves(c, out);
            }
        }
    }

    /// The top-level ancestor.
    pub(crate) fn top_of(&self, mut r: usize) -> usize {
        while let Some(p) = self.rscs[r].parent {
            r = p;
        }
        r
    }

    /// The clone this resource is an instance of (or a member of an instance of).
    pub(crate) fn clone_of(&self, r: usize) -> Option<usize> {
        let mut cur = self.rscs[r].parent;
        while let Some(p) = cur {
            if self.rscs[p].kind == Kind::Clone {
                return Some(p);
            }
            cur = self.rscs[p].parent;
        }
        None
    }

    fn unpack_status(&mut self, cib: &Cib) {
        let node_idx: BTreeMap<String, usize> = self.nodes.iter().enumerate().map(|(i, n)| (n.id.clone(), i)).collect();
        // Histories are read in document order, except that a node known to be down (out
        // of the membership with its controller gone, or any offline node when fencing is
        // disabled) is read after the others. That order decides which anonymous clone
        // instance number each node's copy gets: live nodes take the low numbers and a
        // surplus copy on a dead node becomes the orphan.
        let mut order: Vec<&NodeState> = cib.status.iter().collect();
        let fencing = self.props.fencing_enabled;
        order.sort_by_key(|ns| {
            let offline = node_idx.get(ns.id.as_str()).is_none_or(|&i| !self.nodes[i].online);
            let controller_up = ns.crmd.as_deref().is_some_and(|c| c != "offline");
            offline && (!fencing || !controller_up)
        });
        for ns in order {
            let Some(&n) = node_idx.get(ns.id.as_str()) else {
                continue;
            };
            // A cleanly offline node runs nothing, except one in maintenance: its
            // resources are left alone and still count as active there.
            if !self.nodes[n].online && !self.nodes[n].unclean && !self.nodes[n].maintenance {
                continue;
            }
            for lr in &ns.resources {
                self.unpack_lrm(n, lr);
            }
        }
    }

    /// With `shutdown-lock`, a resource active on a node that is shutting down cleanly, or
    /// recorded as stopped there by such a shutdown (`shutdown-lock` on its history), is
    /// locked to that node: it may run nowhere else until it starts there again, or until
    /// `shutdown-lock-limit` has passed since the shutdown. Fencing devices and clone
    /// instances are never locked.
    fn apply_shutdown_locks(&mut self, cib: &Cib) {
        let lockable = |w: &World, r: usize| {
            let rsc = &w.rscs[r];
            rsc.kind == Kind::Primitive
                && rsc.class != "stonith"
                && std::iter::successors(rsc.parent, |&a| w.rscs[a].parent).all(|a| w.rscs[a].kind != Kind::Clone)
        };
        let live =
            |w: &World, since: i64| w.props.shutdown_lock_limit_s <= 0 || w.now < since + w.props.shutdown_lock_limit_s;
        let mut locks: Vec<(usize, usize)> = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            if !node.shutdown || !node.online || node.unclean {
                continue;
            }
            let since = node.attrs.get("shutdown").and_then(|v| v.parse::<i64>().ok()).unwrap_or(self.now);
            if !live(self, since) {
                continue;
            }
            for r in 0..self.rscs.len() {
                if lockable(self, r) && self.rscs[r].running == [n] {
                    locks.push((r, n));
                }
            }
        }
        for ns in &cib.status {
            let Some(n) = self.nodes.iter().position(|x| x.id == ns.id) else {
                continue;
            };
            if self.nodes[n].unclean {
                continue;
            }
            // On a node still shutting down, a resource whose last operation there is a
            // successful stop made since the shutdown began was stopped by it: locked too.
            let node = &self.nodes[n];
            let shutting_since = (node.shutdown && node.online)
                .then(|| node.attrs.get("shutdown").and_then(|v| v.parse::<i64>().ok()))
                .flatten();
            for lr in &ns.resources {
                let stopped_by_shutdown = shutting_since.filter(|&since| {
                    lr.ops.iter().filter(|o| o.call_id >= 0).max_by_key(|o| o.call_id).is_some_and(|o| {
                        o.operation == "stop"
                            && o.rc == 0
                            && o.op_status == 0
                            && o.last_rc_change.is_some_and(|t| t >= since)
                    })
                });
                let (Some(since), Some(&r)) = (lr.shutdown_lock.or(stopped_by_shutdown), self.by_id.get(&lr.id)) else {
                    continue;
                };
                if lockable(self, r) && live(self, since) && self.rscs[r].running.iter().all(|&m| m == n) {
                    locks.push((r, n));
                }
            }
        }
        let count = self.nodes.len();
        for (r, n) in locks {
            self.rscs[r].banned_on.extend((0..count).filter(|&m| m != n));
        }
    }

    fn find_leaf(&mut self, n: usize, lr: &LrmResource, active: bool) -> Option<usize> {
        if let Some(&i) = self.by_id.get(&lr.id)
            && self.rscs[i].kind == Kind::Primitive
            && self.rscs[i].instance.is_none()
        {
            return Some(i);
        }
        let (base, num) = match lr.id.rsplit_once(':') {
            Some((b, n)) if n.parse::<usize>().is_ok() => (b.to_string(), n.parse::<usize>().ok()),
            _ => (lr.id.clone(), None),
        };
        let &clone = self.by_id.get(&base)?;
        if self.rscs[clone].kind != Kind::Clone {
            if self.rscs[clone].kind == Kind::Primitive && self.rscs[clone].instance.is_none() {
                return Some(clone);
            }
            return None;
        }
        let instances = self.rscs[clone].children.clone();
        let leaf_in =
            |w: &World, inst: usize| -> Option<usize> { w.leaves(inst).into_iter().find(|&l| w.rscs[l].base == base) };
        if self.rscs[clone].clone.unique
            && let Some(k) = num
        {
            return instances.get(k).and_then(|&i| leaf_in(self, i));
        }
        // Anonymous: an instance already known on this node, else the first instance
        // not active anywhere (for active history) or any inactive instance.
        for &i in &instances {
            if let Some(l) = leaf_in(self, i)
                && self.rscs[l].known_on.contains(&n)
            {
                // A second history of an anonymous clone on one node is an orphan.
                let other = self.rscs[l].history_ids.iter().any(|(hn, id)| *hn == n && *id != lr.id);
                if other && self.rscs[l].running.contains(&n) {
                    return None;
                }
                return Some(l);
            }
        }
        for &i in &instances {
            let on_node = self.leaves(i).iter().any(|&l| self.rscs[l].running.contains(&n));
            if on_node && let Some(l) = leaf_in(self, i) {
                if self.rscs[l].running.contains(&n) {
                    return None;
                }
                return Some(l);
            }
        }
        for &i in &instances {
            let any_active =
                self.leaves(i).iter().any(|&l| !self.rscs[l].running.is_empty() || self.rscs[l].pending.is_some());
            if !any_active
                && let Some(l) = leaf_in(self, i)
                && (active || !self.rscs[l].known_on.contains(&n))
            {
                return Some(l);
            }
        }
        let _ = active;
        None
    }

    fn op_on_fail(&self, r: usize, op: &LrmOp) -> OnFail {
        let rsc = &self.rscs[r];
        let op_config = rsc.ops.iter().find(|o| o.name == op.operation && o.interval_ms == op.interval_ms);
        // A monitor of the promoted role: configured for that role, or expected to find it.
        let promoted_monitor = op.operation == "monitor"
            && op.interval_ms > 0
            && (op_config.is_some_and(|o| o.role == Some(Role::Promoted)) || op.target_rc == Some(8) || op.rc == 8);
        let configured = op_config.and_then(|o| o.on_fail.as_deref()).and_then(OnFail::parse);
        let configured = configured.or_else(|| {
            let empty = BTreeMap::new();
            let mut d = BTreeMap::new();
            let mut ctx = RuleCtx::attrs(None, &empty);
            ctx.op = Some((op.operation.as_str(), op.interval_ms));
            flatten(&self.op_defaults, &ctx, &mut d);
            d.get("on-fail").and_then(|v| OnFail::parse(v))
        });
        if let Some(c) = configured {
            if c == OnFail::Fence && !self.props.fencing_enabled {
                return OnFail::Block;
            }
            // Demotion only answers a failed promote or a failed promoted-role monitor;
            // for any other operation it means restart.
            if c == OnFail::Demote && op.operation != "promote" && !promoted_monitor {
                return OnFail::Restart;
            }
            return c;
        }
        if op.operation == "stop" {
            if self.props.fencing_enabled && self.props.have_fence_device { OnFail::Fence } else { OnFail::Block }
        } else {
            OnFail::Restart
        }
    }

    /// A failed operation expires once it is older than the failure timeout and the
    /// resource has no unexpired fail count left on that node; expired failures are
    /// ignored, whatever the operation (a failed stop included).
    fn failure_expired(&self, r: usize, n: usize, op: &LrmOp) -> bool {
        let to = self.rscs[r].failure_timeout_s;
        to > 0 && op.last_rc_change.is_some_and(|t| self.now >= t + to) && self.failcount(r, n).0 == 0
    }

    /// Bans a resource after a hard (`Some(node)`) or fatal (`None`) error. An anonymous
    /// clone instance's ban applies to the whole clone.
    fn ban(&mut self, leaf: usize, node: Option<usize>) {
        let target = match self.clone_of(leaf) {
            Some(c) if !self.rscs[c].clone.unique => c,
            _ => leaf,
        };
        match node {
            Some(n) => {
                self.rscs[target].banned_on.insert(n);
            }
            None => self.rscs[target].banned_on.extend(0..self.nodes.len()),
        }
    }

    fn unpack_lrm(&mut self, n: usize, lr: &LrmResource) {
        let mut ops: Vec<&LrmOp> = lr.ops.iter().collect();
        // Equal call ids (a recurring monitor and its recorded failure) are ordered by when
        // their result last changed.
        ops.sort_by_key(|o| (o.call_id < 0, o.call_id, o.last_rc_change.unwrap_or(0)));
        // Decide activity first (for anonymous clone instance mapping).
        let found = self.find_leaf(n, lr, true);
        if std::env::var("CRM_DEBUG").is_ok() {
            eprintln!("history {} on {} -> {:?}", lr.id, self.nodes[n].name, found.map(|l| self.rscs[l].id.clone()));
        }
        let leaf = match found.or_else(|| self.spare_leaf_for_inactive(n, lr)) {
            Some(l) => l,
            None => {
                // More active instances than the clone allows: an orphan instance.
                let base = lr.id.split(':').next().unwrap_or(&lr.id).to_string();
                if let Some(&c) = self.by_id.get(&base)
                    && self.rscs[c].kind == Kind::Clone
                {
                    match self.orphan_instance(c, &base) {
                        Some(l) => l,
                        None => return,
                    }
                } else if self.by_id.contains_key(&lr.id) {
                    return;
                } else {
                    self.orphan_primitive(lr)
                }
            }
        };
        self.apply_history(n, leaf, lr);
    }

    /// For a history that leaves an anonymous clone's copy inactive on node `n` (a probe
    /// that found it stopped, or a completed stop), when every instance is active
    /// elsewhere: any instance neither running nor known on `n` takes the record. Such a
    /// history holds no instance, so it is no surplus (orphan) copy.
    fn spare_leaf_for_inactive(&self, n: usize, lr: &LrmResource) -> Option<usize> {
        let last = lr.ops.iter().filter(|o| o.operation != "notify").max_by_key(|o| o.call_id)?;
        let inactive = last.op_status == 0
            && ((last.operation == "monitor" && last.interval_ms == 0 && last.rc == 7)
                || (last.operation == "stop" && last.rc == 0));
        if !inactive {
            return None;
        }
        let base = lr.id.split(':').next().unwrap_or(&lr.id);
        let &c = self.by_id.get(base)?;
        if self.rscs[c].kind != Kind::Clone || self.rscs[c].clone.unique {
            return None;
        }
        self.rscs[c].children.iter().flat_map(|&i| self.leaves(i)).find(|&l| {
            let r = &self.rscs[l];
            r.base == base && !r.orphan && !r.running.contains(&n) && !r.known_on.contains(&n)
        })
    }

    /// A new, removed instance of an anonymous clone whose child is a primitive.
    fn orphan_instance(&mut self, c: usize, base: &str) -> Option<usize> {
        let template = *self.rscs[c].children.first()?;
        if self.rscs[template].kind != Kind::Primitive || self.rscs[template].base != base {
            return None;
        }
        let num = self.rscs[c].children.len();
        let mut r = self.rscs[template].clone();
        r.id = format!("{base}:{num}");
        r.instance = Some(num);
        r.orphan = true;
        r.running.clear();
        r.known_on.clear();
        r.role = Role::Stopped;
        r.failed = false;
        r.target_role = Some(Role::Stopped);
        let idx = self.rscs.len();
        self.rscs.push(r);
        self.rscs[c].children.push(idx);
        Some(idx)
    }

    fn orphan_primitive(&mut self, lr: &LrmResource) -> usize {
        let idx = self.rscs.len();
        let mut orphan = self.rscs.first().cloned().unwrap_or_else(blank_rsc);
        orphan.id = lr.id.clone();
        orphan.base = lr.id.clone();
        orphan.kind = Kind::Primitive;
        orphan.parent = None;
        orphan.children.clear();
        orphan.class = lr.class.clone().unwrap_or_default();
        orphan.provider = lr.provider.clone();
        orphan.agent = lr.agent.clone().unwrap_or_default();
        orphan.meta.clear();
        orphan.ops.clear();
        orphan.orphan = true;
        orphan.instance = None;
        // Resource defaults apply to an orphan as to any resource of its agent.
        let mut defaults = BTreeMap::new();
        let empty = BTreeMap::new();
        let mut ctx = RuleCtx::attrs(None, &empty);
        ctx.rsc = Some((orphan.class.as_str(), orphan.provider.as_deref(), orphan.agent.as_str()));
        flatten(&self.rsc_defaults, &ctx, &mut defaults);
        orphan.managed = !self.props.maintenance_mode
            && defaults.get("is-managed").is_none_or(|v| truthy(v))
            && !defaults.get("maintenance").is_some_and(|v| truthy(v));
        if self.props.stop_orphans {
            orphan.target_role = Some(Role::Stopped);
        } else {
            orphan.managed = false;
        }
        orphan.running.clear();
        orphan.known_on.clear();
        orphan.role = Role::Stopped;
        orphan.failed = false;
        orphan.priority = 0;
        orphan.stickiness = Score::ZERO;
        orphan.weights.clear();
        orphan.clone = CloneCfg::default();
        orphan.utilization.clear();
        orphan.requires = Requires::Quorum;
        self.rscs.push(orphan);
        self.by_id.insert(lr.id.clone(), idx);
        self.top.push(idx);
        idx
    }

    fn apply_history(&mut self, n: usize, leaf: usize, lr: &LrmResource) {
        let mut ops: Vec<&LrmOp> = lr.ops.iter().collect();
        // Equal call ids (a recurring monitor and its recorded failure) are ordered by when
        // their result last changed.
        ops.sort_by_key(|o| (o.call_id < 0, o.call_id, o.last_rc_change.unwrap_or(0)));
        let mut role = Role::Stopped;
        let mut failed = false;
        let mut on_fail = OnFail::Ignore;
        let mut pending = None;
        let mut stop_failed = false;
        let mut fence_reason = None;
        let mut failed_ops: BTreeSet<(String, u64)> = BTreeSet::new();
        let promotable = self.clone_of(leaf).is_some_and(|c| self.rscs[c].clone.promotable);
        let last_start_stop = ops
            .iter()
            .filter(|o| {
                matches!(o.operation.as_str(), "start" | "stop" | "promote" | "demote")
                    && o.call_id >= 0
                    && o.rc == 0
                    && o.op_status == 0
            })
            .map(|o| o.call_id)
            .max()
            .unwrap_or(-1);
        for o in &ops {
            if o.operation == "monitor" && o.interval_ms > 0 && o.op_status == 0 && o.call_id > last_start_stop {
                self.rscs[leaf].recurring_on.insert((n, o.interval_ms));
            }
        }
        for op in ops {
            let task = op.operation.as_str();
            if matches!(task, "notify" | "meta-data" | "cancel" | "validate-all") {
                continue;
            }
            if matches!(task, "reload" | "reload-agent") {
                // A reload runs on an active resource and leaves it active. (Its record may
                // replace the start's as the latest one-off operation.)
                if op.op_status == 0 && op.rc == 0 && role == Role::Stopped {
                    role = if promotable { Role::Unpromoted } else { Role::Started };
                }
                continue;
            }
            if op.op_status == -1 || op.call_id == -1 && op.op_status != 0 {
                // A monitor still in progress (a probe, or a recurring monitor left over from
                // before the resource stopped) says nothing about the resource's state: it is
                // not active there (nor pending), so it does not hold a clone instance.
                if task == "monitor" {
                    continue;
                }
                pending = Some(task.to_string());
                match task {
                    "start" | "migrate_to" | "migrate_from" => role = Role::Started,
                    "promote" => role = Role::Promoted,
                    "stop" if role == Role::Stopped => role = Role::Started,
                    "demote" => role = Role::Promoted,
                    _ => {}
                }
                continue;
            }
            if op.op_status == 1 {
                continue;
            }
            let expected = op.target_rc.unwrap_or(0);
            let probe = task == "monitor" && op.interval_ms == 0;
            let rc = match op.rc {
                190 => 0,
                191 => 8,
                x => x,
            };
            // A probe that finds the agent not installed is not a failure: the resource
            // is stopped there and may not run there. An execution error (status 4) is
            // judged by its exit code, so "not installed" counts whichever way it is
            // recorded.
            let not_installed = op.op_status == 7 || (matches!(op.op_status, 0 | 4) && rc == 5);
            if probe && not_installed {
                role = Role::Stopped;
                if !self.failure_expired(leaf, n, op) {
                    self.ban(leaf, Some(n));
                }
                continue;
            }
            let ok_exec = op.op_status == 0 || op.op_status == 4;
            let success =
                ok_exec && (rc == expected || (probe && matches!(rc, 0 | 7 | 8)) || (task != "monitor" && rc == 0));
            if success {
                match task {
                    "start" | "migrate_from" => {
                        role = if promotable { Role::Unpromoted } else { Role::Started };
                        // A later successful start clears a past failure whose handling was
                        // local to the resource (restart, block, demote).
                        if on_fail <= OnFail::Restart || on_fail == OnFail::Block {
                            failed = false;
                            stop_failed = false;
                            on_fail = OnFail::Ignore;
                        }
                    }
                    "migrate_to" => role = Role::Started,
                    "stop" => {
                        role = Role::Stopped;
                        if on_fail <= OnFail::Restart || on_fail == OnFail::Block {
                            failed = false;
                            on_fail = OnFail::Ignore;
                        }
                    }
                    "promote" => {
                        role = Role::Promoted;
                        if on_fail <= OnFail::Restart {
                            failed = false;
                            on_fail = OnFail::Ignore;
                        }
                    }
                    "demote" => {
                        role = Role::Unpromoted;
                        if on_fail == OnFail::Demote {
                            failed = false;
                            on_fail = OnFail::Ignore;
                        }
                    }
                    "monitor" => match rc {
                        7 => role = Role::Stopped,
                        8 => role = Role::Promoted,
                        _ => {
                            if role == Role::Stopped || role == Role::Promoted && op.interval_ms == 0 {
                                role = if promotable { Role::Unpromoted } else { Role::Started };
                            }
                        }
                    },
                    _ => {}
                }
                // A recurring monitor that succeeds again after its own failure clears a
                // past failure whose handling was only local (block, restart, demote).
                let recovered =
                    task == "monitor" && op.interval_ms > 0 && failed_ops.contains(&(task.to_string(), op.interval_ms));
                if recovered && matches!(on_fail, OnFail::Block | OnFail::Restart | OnFail::Demote | OnFail::Ignore) {
                    failed = false;
                    on_fail = OnFail::Ignore;
                }
                continue;
            }
            failed_ops.insert((task.to_string(), op.interval_ms));
            // A failure.
            if std::env::var("CRM_DEBUG").is_ok() {
                eprintln!(
                    "failure {} {} on {} expired={} now={} to={}",
                    op.id,
                    op.rc,
                    self.nodes[n].name,
                    self.failure_expired(leaf, n, op),
                    self.now,
                    self.rscs[leaf].failure_timeout_s
                );
            }
            if self.failure_expired(leaf, n, op) {
                // Expired failures are forgotten, but a failed recurring monitor still
                // means the resource is not known to be running well.
                if probe && rc == 7 {
                    role = Role::Stopped;
                }
                continue;
            }
            // Hard errors keep the resource off this node, fatal ones off every node.
            // An execution error (status 4) is classified by its exit code like a completed
            // operation.
            match (rc, op.op_status) {
                (_, 7) | (2 | 4 | 5, 0 | 4) => self.ban(leaf, Some(n)),
                (3, 0 | 4) if op.interval_ms == 0 => self.ban(leaf, Some(n)),
                (6, 0 | 4) => self.ban(leaf, None),
                _ => {}
            }
            let f = self.op_on_fail(leaf, op);
            match task {
                "stop" => {
                    role = if role == Role::Stopped { Role::Started } else { role };
                    if role == Role::Stopped {
                        role = Role::Started;
                    }
                    stop_failed = true;
                }
                "start" | "migrate_from" | "migrate_to" => {
                    role = if promotable { Role::Unpromoted } else { Role::Started };
                }
                "promote" => role = Role::Promoted,
                "demote" => role = Role::Unpromoted,
                "monitor" => {
                    if rc == 8 {
                        role = Role::Promoted;
                    } else if role == Role::Stopped {
                        role = if promotable { Role::Unpromoted } else { Role::Started };
                    }
                }
                _ => {}
            }
            if f == OnFail::Ignore {
                continue;
            }
            if f > on_fail || !failed {
                on_fail = f.max(on_fail);
            }
            failed = true;
            if f == OnFail::Fence {
                fence_reason = Some(format!("{} failed there", self.rscs[leaf].id));
            }
        }
        // History recorded for another agent than the one configured now belongs to an old
        // definition: once that resource is stopped there, the history is discarded, with
        // its failures and the fail counts they left on the node. Still active there, it
        // restarts (stopped as recorded, started as now configured).
        let rs = &self.rscs[leaf];
        let other_agent = |recorded: &Option<String>, now: &str| recorded.as_deref().is_some_and(|x| x != now);
        let changed_agent = !rs.orphan
            && (other_agent(&lr.class, &rs.class)
                || other_agent(&lr.agent, &rs.agent)
                || (lr.provider.is_some() && lr.provider != rs.provider));
        if changed_agent && role == Role::Stopped {
            failed = false;
            stop_failed = false;
            fence_reason = None;
            self.rscs[leaf].cleared_on.insert(n);
        } else if changed_agent {
            self.rscs[leaf].restart_on.insert(n);
        }
        // A resource living inside a container (meta attribute `container`) is recovered
        // by restarting its container there: a failure that would restart it restarts the
        // container too, and a failed stop is not fatal, since stopping the container stops
        // everything inside it (the resource then counts as stopped).
        if failed
            && (on_fail == OnFail::Restart || (stop_failed && matches!(on_fail, OnFail::Block | OnFail::Fence)))
            && let Some(c) = self.container_of(leaf)
        {
            self.rscs[c].restart_on.insert(n);
            if stop_failed {
                role = Role::Stopped;
                failed = false;
                fence_reason = None;
            } else {
                on_fail = OnFail::Restart;
                fence_reason = None;
            }
        }
        if role > Role::Stopped {
            let sorted: Vec<&LrmOp> = {
                let mut v: Vec<&LrmOp> = lr.ops.iter().collect();
                v.sort_by_key(|o| (o.call_id < 0, o.call_id, o.last_rc_change.unwrap_or(0)));
                v
            };
            self.check_digests(n, leaf, &sorted);
        }
        let r = &mut self.rscs[leaf];
        r.known_on.insert(n);
        r.history_ids.push((n, lr.id.clone()));
        if pending.is_some() {
            r.pending = pending;
        }
        if role > Role::Stopped {
            if !r.running.contains(&n) {
                r.running.push(n);
            }
            if role > r.role || r.role == Role::Stopped {
                r.role = role;
            }
            if failed && on_fail == OnFail::Demote && role == Role::Promoted {
                r.demote_failed = true;
            } else if failed {
                r.failed = true;
                r.on_fail = r.on_fail.max(on_fail);
                if on_fail == OnFail::Block {
                    r.blocked = true;
                }
            }
            if stop_failed && failed {
                r.fail_stop_on.insert(n);
            }
        } else if failed && on_fail == OnFail::Stop {
            // Already stopped there after a failure with on-fail=stop. Copies of an anonymous
            // clone are interchangeable, so the record may land on an instance that runs
            // elsewhere: for them the failure keeps the clone off this node instead.
            match self.clone_of(leaf) {
                Some(c) if !self.rscs[c].clone.unique => {
                    self.rscs[c].banned_on.insert(n);
                }
                _ => self.rscs[leaf].target_role = Some(Role::Stopped),
            }
        }
        if failed && on_fail == OnFail::Standby {
            self.nodes[n].standby = true;
            self.nodes[n].standby_onfail = true;
        }
        if let Some(reason) = fence_reason
            && role > Role::Stopped
            && failed
        {
            let node = &mut self.nodes[n];
            if !node.unclean {
                node.unclean = true;
                node.fence_reason = Some(reason);
            }
        }
        if role > Role::Stopped && failed && on_fail == OnFail::Stop {
            self.rscs[leaf].target_role = Some(Role::Stopped);
        }
    }

    /// The primitive a leaf lives in (its `container` meta attribute), if any.
    pub(crate) fn container_of(&self, leaf: usize) -> Option<usize> {
        if self.rscs[leaf].kind != Kind::Primitive {
            return None;
        }
        let name = self.rscs[leaf].meta.get("container")?;
        let &c = self.by_id.get(name)?;
        (c != leaf && self.rscs[c].kind == Kind::Primitive).then_some(c)
    }

    /// The fail count of a leaf on a node, honouring failure-timeout.
    pub(crate) fn failcount(&self, leaf: usize, n: usize) -> (i64, Option<i64>) {
        let r = &self.rscs[leaf];
        if r.cleared_on.contains(&n) {
            return (0, None);
        }
        let node = &self.nodes[n];
        let names = [r.id.clone(), r.base.clone()];
        let mut total = Score::ZERO;
        let mut last = None;
        for (k, v) in &node.attrs {
            for (prefix, is_count) in [("fail-count-", true), ("last-failure-", false)] {
                let Some(rest) = k.strip_prefix(prefix) else {
                    continue;
                };
                let name = rest.split('#').next().unwrap_or(rest);
                // An anonymous clone's fail counts may name any instance number.
                let anonymous = self.clone_of(leaf).is_some_and(|c| !self.rscs[c].clone.unique);
                let any_instance = anonymous
                    && name.rsplit_once(':').is_some_and(|(b, num)| b == r.base && num.parse::<u32>().is_ok());
                if !(names.iter().any(|x| x == name) || any_instance)
                    || (name == r.base
                        && r.id != r.base
                        && names[0] != name
                        && self.clone_of(leaf).is_some_and(|c| self.rscs[c].clone.unique))
                {
                    continue;
                }
                // Failures of operations with on-fail=ignore do not count.
                if let Some((op, interval)) = rest.split_once('#').and_then(|(_, k)| k.rsplit_once('_'))
                    && let Ok(ms) = interval.parse::<u64>()
                    && r.ops
                        .iter()
                        .any(|o| o.name == op && o.interval_ms == ms && o.on_fail.as_deref() == Some("ignore"))
                {
                    continue;
                }
                if is_count {
                    total = total.plus(Score::parse(v).unwrap_or(Score::ZERO));
                } else if let Ok(t) = v.parse::<i64>() {
                    last = Some(last.map_or(t, |l: i64| l.max(t)));
                }
            }
        }
        let to = r.failure_timeout_s;
        if to > 0
            && let Some(t) = last
            && self.now >= t + to
        {
            return (0, last);
        }
        (total.value(), last)
    }

    /// The primitive (or clone instance of one) with this id: `rsc:N` names an instance,
    /// a bare id the first instance of a cloned primitive.
    pub(crate) fn primitive_named(&self, id: &str) -> Option<usize> {
        let prim = |r: &&Rsc| r.kind == Kind::Primitive && !r.orphan;
        self.rscs
            .iter()
            .position(|r| prim(&r) && r.id == id)
            .or_else(|| self.rscs.iter().position(|r| prim(&r) && r.base == id))
    }

    /// The parameters an action of a primitive runs with on node `n` (see [`crate::digest`]):
    /// the operation's own parameters, then the resource's and its parents' (the nearest
    /// wins), and for a recurring operation its timeout as `CRM_meta_timeout`.
    pub(crate) fn action_params(&self, leaf: usize, n: Option<usize>, action: &str, interval_ms: u64) -> Params {
        // A reload gives the agent the parameters it would start with.
        let action = match action {
            "reload" | "reload-agent" => "start",
            a => a,
        };
        let empty = BTreeMap::new();
        let ctx = match n {
            Some(n) => RuleCtx::attrs(Some(self.nodes[n].name.as_str()), &self.nodes[n].attrs),
            None => RuleCtx::attrs(None, &empty),
        };
        let rs = &self.rscs[leaf];
        let op = rs.ops.iter().find(|o| o.name == action && o.interval_ms == interval_ms);
        let mut out = Params::new();
        if let Some(op) = op {
            for p in &op.params {
                if let Some(v) = &p.value {
                    out.insert(p.name.clone(), v.clone());
                }
            }
        }
        let mut at = Some(leaf);
        while let Some(r) = at {
            flatten_params(&self.rscs[r].param_sets, &ctx, &mut out);
            at = self.rscs[r].parent;
        }
        if interval_ms > 0 {
            let from_op = op.and_then(|o| {
                o.timeout_ms.or_else(|| {
                    o.meta
                        .iter()
                        .find(|p| p.name == "timeout")
                        .and_then(|p| p.value.as_deref())
                        .and_then(parse_config_interval_ms)
                })
            });
            let timeout = from_op.or_else(|| {
                let mut ctx = RuleCtx::attrs(None, &empty);
                ctx.op = Some((action, interval_ms));
                ctx.rsc = Some((rs.class.as_str(), rs.provider.as_deref(), rs.agent.as_str()));
                let mut d = BTreeMap::new();
                flatten(&self.op_defaults, &ctx, &mut d);
                d.get("timeout").and_then(|v| parse_config_interval_ms(v))
            });
            out.insert("CRM_meta_timeout".into(), timeout.unwrap_or(crate::digest::DEFAULT_TIMEOUT_MS).to_string());
        }
        out
    }

    /// Compares the history of an active resource on node `n` with its definition now
    /// (see [`crate::digest`]): a changed digest on the record of the operation that made it
    /// active there means a restart there; a changed digest on a recurring monitor's record
    /// means that monitor is issued again. Records without a digest change nothing.
    fn check_digests(&mut self, n: usize, leaf: usize, ops: &[&LrmOp]) {
        let rs = &self.rscs[leaf];
        if rs.orphan || !rs.managed || self.nodes[n].maintenance {
            return;
        }
        let fencing = rs.class == "stonith";
        let last_stop = ops
            .iter()
            .filter(|o| o.operation == "stop" && o.call_id >= 0 && o.op_status == 0 && o.rc == 0)
            .map(|o| o.call_id)
            .max();
        // The latest one-off record of what made the resource active here (or of a reload
        // that gave it its current parameters).
        let activating = ops.iter().rev().find(|o| {
            o.interval_ms == 0
                && !o.id.ends_with("_last_failure_0")
                && matches!(
                    o.operation.as_str(),
                    "start" | "migrate_from" | "promote" | "demote" | "monitor" | "reload" | "reload-agent"
                )
        });
        let (mut restart, mut reload) = (false, false);
        if let Some(op) = activating.filter(|o| o.attr("op-digest").is_some()) {
            let params = self.action_params(leaf, Some(n), &op.operation, 0);
            if let crate::digest::DigestCheck::Changed { reloadable } = crate::digest::check(op, &params, fencing) {
                // An agent in the middle of an operation, or one that failed it, cannot be
                // reloaded: it restarts.
                let completed = op.op_status == 0 && matches!(op.rc, 0 | 8);
                if reloadable && completed {
                    reload = true;
                } else {
                    restart = true;
                }
            }
        }
        // The latest record of each recurring operation still configured.
        let mut latest: BTreeMap<(String, u64), &LrmOp> = BTreeMap::new();
        for op in ops {
            if op.interval_ms == 0
                || op.id.ends_with("_last_failure_0")
                || last_stop.is_some_and(|s| op.call_id >= 0 && op.call_id < s)
            {
                continue;
            }
            latest.insert((op.operation.clone(), op.interval_ms), op);
        }
        let mut reissue = Vec::new();
        for ((task, interval), op) in latest {
            let configured = self.rscs[leaf].ops.iter().any(|o| o.name == task && o.interval_ms == interval);
            if !configured || op.attr("op-digest").is_none() {
                continue;
            }
            let params = self.action_params(leaf, Some(n), &task, interval);
            if crate::digest::check(op, &params, fencing).changed() {
                reissue.push(interval);
            }
        }
        let r = &mut self.rscs[leaf];
        if restart {
            r.restart_on.insert(n);
        } else if reload {
            r.reload_on.insert(n);
        }
        for i in reissue {
            r.recurring_on.remove(&(n, i));
        }
    }

    /// Effective op meta for a resource op (op_defaults merged).
    /// Enabled recurring monitors as (interval, role). Two monitors with the same interval
    /// would be one operation: such duplicates are a configuration error and none of them
    /// is scheduled.
    pub(crate) fn op_enabled_monitors(&self, r: usize) -> Vec<(u64, Option<Role>)> {
        let all: Vec<(u64, Option<Role>)> = self.rscs[r]
            .ops
            .iter()
            .filter(|o| o.name == "monitor" && o.interval_ms > 0 && o.enabled)
            .map(|o| (o.interval_ms, o.role))
            .collect();
        all.iter().copied().filter(|&(i, _)| all.iter().filter(|&&(j, _)| j == i).count() == 1).collect()
    }
}

fn has_fence_device(rs: &[Resource]) -> bool {
    rs.iter().any(|r| match &r.kind {
        ResourceKind::Primitive { class, .. } => class == "stonith",
        ResourceKind::Group { members } => has_fence_device(members),
        ResourceKind::Clone { child, .. } => has_fence_device(std::slice::from_ref(child)),
    })
}

fn blank_rsc() -> Rsc {
    Rsc {
        id: String::new(),
        base: String::new(),
        kind: Kind::Primitive,
        parent: None,
        children: Vec::new(),
        class: String::new(),
        provider: None,
        agent: String::new(),
        meta: BTreeMap::new(),
        param_sets: Vec::new(),
        utilization: BTreeMap::new(),
        ops: Vec::new(),
        priority: 0,
        stickiness: Score::ZERO,
        migration_threshold: crate::score::INFINITY,
        failure_timeout_s: 0,
        target_role: None,
        managed: true,
        requires: Requires::Quorum,
        clone: CloneCfg::default(),
        orphan: false,
        instance: None,
        running: Vec::new(),
        role: Role::Stopped,
        failed: false,
        on_fail: OnFail::Ignore,
        blocked: false,
        demote_failed: false,
        recurring_on: BTreeSet::new(),
        pending: None,
        known_on: BTreeSet::new(),
        banned_on: BTreeSet::new(),
        inhibited_on: None,
        history_ids: Vec::new(),
        fail_stop_on: BTreeSet::new(),
        restart_on: BTreeSet::new(),
        reload_on: BTreeSet::new(),
        cleared_on: BTreeSet::new(),
        weights: BTreeMap::new(),
        assigned: None,
        next_role: Role::Unknown,
        provisional: true,
        assigning: false,
        promotion: Score::ZERO,
    }
}

#[allow(dead_code)]
pub(crate) fn interval_of(s: &str) -> u64 {
    parse_interval_ms(s).unwrap_or(0)
}
