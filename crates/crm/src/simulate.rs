//! `crm_simulate`-style output: current status, Transition Summary, scores, and `explain`.

use std::fmt::Write;

use crate::cib::{Cib, LrmOp, LrmResource, NodeState, parse_cib};
use crate::error::CibError;
use crate::score::Score;
use std::collections::BTreeMap;

use crate::cib::Role;
use crate::scheduler::{ClusterView, RscView, Transition, schedule};

/// Simulation inputs beyond the CIB.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Nodes to treat as failed (lost from the cluster).
    pub node_fail: Vec<String>,
    /// Injected op results: `RSC_OP_INTERVAL@NODE=RC` or `RSC_OP@NODE=RC`.
    pub op_fail: Vec<String>,
    /// Print allocation scores.
    pub scores: bool,
    /// Override quorum.
    pub quorum: Option<bool>,
    /// "Now" in Unix seconds when the CIB has no execution-date.
    pub now: i64,
}

/// A simulation result, ready to print.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The CIB after injections.
    pub cib: Cib,
    /// The scheduler's output.
    pub transition: Transition,
    /// Importer warnings.
    pub warnings: Vec<crate::Diagnostic>,
}

/// Applies injections to a CIB.
pub fn inject(cib: &mut Cib, opts: &SimOptions) -> Result<(), CibError> {
    for n in &opts.node_fail {
        let id =
            cib.config.nodes.iter().find(|x| &x.uname == n).map(|x| x.id.clone()).ok_or_else(|| CibError::Invalid {
                element: "node".into(),
                id: n.clone(),
                field: "--node-fail".into(),
                problem: format!("no node named '{n}'"),
            })?;
        if let Some(ns) = cib.status.iter_mut().find(|s| s.id == id) {
            ns.in_ccm = Some("false".into());
            ns.crmd = Some("offline".into());
            ns.expected = Some("member".into());
        }
    }
    for spec in &opts.op_fail {
        let bad = |p: &str| CibError::Invalid {
            element: "op-fail".into(),
            id: spec.clone(),
            field: "--op-fail".into(),
            problem: p.into(),
        };
        let (lhs, rc) = spec.rsplit_once('=').ok_or_else(|| bad("expected RSC_OP@NODE=RC"))?;
        let (key, node) = lhs.rsplit_once('@').ok_or_else(|| bad("expected RSC_OP@NODE=RC"))?;
        let rc: i32 = rc.parse().map_err(|_| bad("RC must be a number"))?;
        let mut parts: Vec<&str> = key.rsplitn(3, '_').collect();
        parts.reverse();
        let (rsc, op, interval) = match parts.as_slice() {
            [r, o, i] if i.parse::<u64>().is_ok() => (r.to_string(), o.to_string(), i.parse::<u64>().unwrap_or(0)),
            [r, o, i] => (format!("{r}_{o}"), i.to_string(), 0),
            [r, o] => (r.to_string(), o.to_string(), 0),
            _ => return Err(bad("expected RSC_OP@NODE=RC")),
        };
        let id = cib
            .config
            .nodes
            .iter()
            .find(|x| x.uname == node)
            .map(|x| x.id.clone())
            .ok_or_else(|| bad("unknown node"))?;
        let ns = match cib.status.iter().position(|s| s.id == id) {
            Some(i) => &mut cib.status[i],
            None => {
                cib.status.push(NodeState { id: id.clone(), uname: Some(node.into()), ..NodeState::default() });
                cib.status.last_mut().ok_or_else(|| bad("internal"))?
            }
        };
        let lr = match ns.resources.iter().position(|r| r.id == rsc) {
            Some(i) => &mut ns.resources[i],
            None => {
                ns.resources.push(LrmResource { id: rsc.clone(), ..LrmResource::default() });
                ns.resources.last_mut().ok_or_else(|| bad("internal"))?
            }
        };
        let call = lr.ops.iter().map(|o| o.call_id).max().unwrap_or(0) + 1;
        lr.ops.push(LrmOp {
            id: format!("{rsc}_{op}_{interval}"),
            operation: op,
            interval_ms: interval,
            rc,
            op_status: if rc == 0 { 0 } else { 4 },
            call_id: call,
            target_rc: Some(0),
            last_rc_change: Some(opts.now),
            ..LrmOp::default()
        });
    }
    Ok(())
}

/// Parses, injects and schedules.
pub fn simulate(xml: &str, opts: &SimOptions) -> Result<Simulation, CibError> {
    let (mut cib, warnings) = parse_cib(xml)?;
    inject(&mut cib, opts)?;
    let now = cib.execution_date.unwrap_or(opts.now);
    let transition = schedule(&cib, opts.quorum, now);
    Ok(Simulation { cib, transition, warnings })
}

/// Formats the Transition Summary section.
pub fn format_summary(t: &Transition) -> String {
    let mut s = String::from("Transition Summary:\n");
    for l in &t.summary {
        let _ = writeln!(s, "  * {l}");
    }
    s
}

fn role_word(r: Role) -> &'static str {
    match r {
        Role::Promoted => "Promoted",
        Role::Unpromoted => "Unpromoted",
        Role::Stopped | Role::Unknown => "Stopped",
        Role::Started => "Started",
    }
}

fn primitive_line(v: &RscView) -> String {
    let mut state = if v.nodes.is_empty() {
        "Stopped".to_string()
    } else if v.failed {
        format!("FAILED {}", v.nodes.join(" "))
    } else if v.nodes.len() > 1 {
        format!("{} [ {} ]", role_word(v.role), v.nodes.join(" "))
    } else {
        format!("{} {}", role_word(v.role), v.nodes[0])
    };
    if v.disabled {
        state.push_str(" (disabled)");
    }
    if v.unmanaged {
        state.push_str(" (unmanaged)");
    }
    format!("{}\t({}):\t {state}", v.id, v.agent)
}

fn format_rsc(out: &mut String, v: &RscView, depth: usize) {
    let pad = "  ".repeat(depth + 2);
    match v.kind {
        "primitive" => {
            let _ = writeln!(out, "{pad}* {}", primitive_line(v));
        }
        "group" => {
            let _ = writeln!(out, "{pad}* Resource Group: {}:", v.id);
            for c in &v.children {
                format_rsc(out, c, depth + 1);
            }
        }
        _ => {
            let child = v.children.first().map_or(String::new(), |c| c.id.split(':').next().unwrap_or("").to_string());
            let flags = if v.flags.is_empty() { String::new() } else { format!(" ({})", v.flags.join(", ")) };
            let _ = writeln!(out, "{pad}* Clone Set: {} [{child}]{flags}:", v.id);
            let simple = v.children.iter().all(|c| c.kind == "primitive" && !c.failed && c.nodes.len() <= 1);
            if simple && !v.flags.contains(&"unique") {
                let mut by_role: BTreeMap<&str, Vec<String>> = BTreeMap::new();
                for c in &v.children {
                    if let Some(n) = c.nodes.first() {
                        by_role.entry(role_word(c.role)).or_default().push(n.clone());
                    }
                }
                for role in ["Promoted", "Unpromoted", "Started"] {
                    if let Some(nodes) = by_role.get(role) {
                        let _ = writeln!(out, "{pad}  * {role}: [ {} ]", nodes.join(" "));
                    }
                }
            } else {
                for c in &v.children {
                    format_rsc(out, c, depth + 1);
                }
            }
        }
    }
}

/// Formats a cluster view the way `crm_simulate` lays out a status section.
pub fn format_view(title: &str, v: &ClusterView) -> String {
    let mut s = format!("{title}:\n  * Node List:\n");
    let mut online = Vec::new();
    let mut offline = Vec::new();
    for n in &v.nodes {
        match n.state.as_str() {
            "online" => online.push(n.name.clone()),
            "OFFLINE" => offline.push(n.name.clone()),
            other => {
                let _ = writeln!(s, "    * Node {}: {other}", n.name);
            }
        }
    }
    if !online.is_empty() {
        let _ = writeln!(s, "    * Online: [ {} ]", online.join(" "));
    }
    if !offline.is_empty() {
        let _ = writeln!(s, "    * OFFLINE: [ {} ]", offline.join(" "));
    }
    s.push_str("\n  * Full List of Resources:\n");
    for r in &v.resources {
        format_rsc(&mut s, r, 0);
    }
    s
}

/// Formats the current cluster status section.
pub fn format_status(t: &Transition) -> String {
    format_view("Current cluster status", &t.current)
}

/// `crm_mon`'s failure sections for a live CIB: "Migration Summary" (fail counts per node and
/// resource) and "Failed Resource Actions" (each resource's last failure per node). Empty when
/// nothing failed.
pub fn format_failures(cib: &Cib) -> String {
    let rc_name = |rc: i32| match rc {
        0 => "ok",
        1 => "error",
        2 => "invalid parameter",
        3 => "unimplemented feature",
        4 => "insufficient privileges",
        5 => "not installed",
        6 => "not configured",
        7 => "not running",
        8 => "promoted",
        9 => "promoted (failed)",
        _ => "unknown",
    };
    let status_name = |s: i32| match s {
        0 => "complete",
        1 => "cancelled",
        2 => "Timed Out",
        3 => "not supported",
        4 => "error",
        -1 => "pending",
        _ => "unknown",
    };
    let mut counts = String::new();
    let mut failed = String::new();
    for state in &cib.status {
        let node = state.uname.clone().unwrap_or_else(|| state.id.clone());
        let pairs: Vec<(&str, &str)> = state
            .transient
            .iter()
            .flat_map(|set| &set.pairs)
            .filter_map(|p| Some((p.name.strip_prefix("fail-count-")?, p.value.as_deref()?)))
            .collect();
        if !pairs.is_empty() {
            counts += &format!("  * Node: {node}:\n");
            for (what, n) in pairs {
                let (rsc, op) = what.split_once('#').unwrap_or((what, ""));
                counts += &format!("    * {rsc}: fail-count={n} ({op})\n");
            }
        }
        for r in &state.resources {
            for op in r.ops.iter().filter(|o| o.id.ends_with("_last_failure_0")) {
                let name = if op.interval_ms > 0 {
                    format!("{}_{}_{}", r.id, op.operation, op.interval_ms)
                } else {
                    format!("{}_{}_0", r.id, op.operation)
                };
                failed += &format!(
                    "  * {name} on {node} '{}' ({}): call={}, status='{}'",
                    rc_name(op.rc),
                    op.rc,
                    op.call_id,
                    status_name(op.op_status)
                );
                if let Some(reason) = &op.exit_reason {
                    failed += &format!(", exitreason='{reason}'");
                }
                if let Some(t) = op.last_rc_change {
                    failed += &format!(", last-rc-change={t}");
                }
                failed += "\n";
            }
        }
    }
    let mut out = String::new();
    if !counts.is_empty() {
        out += &format!("Migration Summary:\n{counts}\n");
    }
    if !failed.is_empty() {
        out += &format!("Failed Resource Actions:\n{failed}\n");
    }
    out
}

/// Formats the executed actions in one valid order (a topological order of the graph).
pub fn format_actions(t: &Transition) -> String {
    let n = t.actions.len();
    let live: Vec<bool> = t.actions.iter().map(|a| !a.optional && a.runnable).collect();
    let mut indeg = vec![0usize; n];
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &t.edges {
        if live[e.first] && live[e.then] {
            next[e.first].push(e.then);
            indeg[e.then] += 1;
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| live[i] && indeg[i] == 0).collect();
    let mut s = String::from("Executing Cluster Transition:\n");
    while let Some(&i) = ready.iter().next() {
        ready.remove(&i);
        let a = &t.actions[i];
        let rsc = a.rsc.map_or("", |r| t.resource_name(r));
        let node = a.node.map_or("", |x| t.node_name(x));
        let task = match (a.kind, a.interval_ms) {
            (crate::ActionKind::Monitor, 0) => "monitor".to_string(),
            (crate::ActionKind::Monitor, i) => format!("monitor={i}"),
            (k, _) => k.task().to_string(),
        };
        match a.kind {
            crate::ActionKind::Fence => {
                // The label is `stonith-NODE-ACTION`; the action is its last part.
                let action = a.label.rsplit('-').next().filter(|x| !x.is_empty()).unwrap_or("reboot");
                let _ = writeln!(s, "  * Fencing {node} ({action})");
            }
            crate::ActionKind::Notify if a.pseudo => {
                let _ = writeln!(s, "  * Pseudo action:   {rsc}_{}_0", a.label);
            }
            _ if a.pseudo => {
                let _ = writeln!(s, "  * Pseudo action:   {rsc}_{task}_0");
            }
            _ => {
                let _ = writeln!(s, "  * Resource action: {rsc:<15} {task} on {node}");
            }
        }
        for &j in &next[i] {
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.insert(j);
            }
        }
    }
    s
}

/// Formats the cluster status expected after the transition.
pub fn format_revised(t: &Transition) -> String {
    format_view("Revised Cluster Status", &t.revised)
}

/// Formats allocation scores.
pub fn format_scores(t: &Transition) -> String {
    let mut s = String::new();
    for (r, n, sc) in &t.scores {
        let _ = writeln!(s, "pcmk__primitive_assign: {r} allocation score on {n}: {sc}");
    }
    s
}

/// Explains a resource's placement in plain words.
pub fn explain(t: &Transition, rsc: &str) -> Option<String> {
    // The resource and the collectives it belongs to (group, clone), outermost first.
    let mut path = Vec::new();
    if !find_path(&t.revised.resources, rsc, &mut path) {
        return None;
    }
    let target = path.last()?;
    let mut s = String::new();
    let now = find_view(&t.current.resources, &target.id);
    let placed_on = |v: &RscView| -> Vec<String> {
        let mut nodes = Vec::new();
        collect_nodes(v, &mut nodes);
        nodes.sort();
        nodes.dedup();
        nodes
    };
    let after = placed_on(target);
    let before = now.map(placed_on).unwrap_or_default();
    let words = |n: &[String]| if n.is_empty() { "nowhere".to_string() } else { n.join(", ") };
    if target.kind == "primitive" {
        let _ = writeln!(
            s,
            "{} ({}) runs on {} now and will run on {} ({}).",
            target.id,
            target.agent,
            words(&before),
            words(&after),
            target.role.as_str()
        );
    } else {
        let _ = writeln!(
            s,
            "{} {} runs on {} now and will run on {}.",
            target.kind,
            target.id,
            words(&before),
            words(&after)
        );
    }
    if target.disabled {
        let _ = writeln!(s, "  It is disabled (target-role=Stopped).");
    }
    if target.unmanaged {
        let _ = writeln!(s, "  It is not managed by the cluster: it stays where it is.");
    }
    // Scores are kept for the unit that is placed: a group as a whole, a clone per instance.
    for v in path.iter().rev() {
        let key = v.id.split(':').next().unwrap_or(&v.id);
        let Some(notes) = t.notes.get(&v.id).or_else(|| t.notes.get(key)) else { continue };
        if v.id != target.id {
            let _ = writeln!(s, "  It is placed as part of {} {}, whose scores decide:", v.kind, v.id);
        }
        let mut nodes: Vec<&str> = notes.iter().map(|(n, _, _)| n.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            let total = notes.iter().find(|(n, what, _)| n == node && what == "total").map(|x| x.2);
            let parts: Vec<(&str, Score)> = notes
                .iter()
                .filter(|(n, what, _)| n == node && what != "total")
                .map(|(_, w, sc)| (w.as_str(), *sc))
                .collect();
            let _ = match total {
                Some(total) => writeln!(s, "    {node}: {total}"),
                None => writeln!(s, "    {node}:"),
            };
            let mut listed = Score::ZERO;
            for (what, sc) in &parts {
                listed = listed.plus(*sc);
                let _ = writeln!(s, "      {:>10}  {what}", signed(*sc));
            }
            let finite = |x: Score| !x.is_inf() && !x.is_neg_inf();
            if let Some(total) = total
                && total != listed
                && finite(total)
                && finite(listed)
            {
                let rest = Score::new(total.value() - listed.value());
                let _ = writeln!(s, "      {:>10}  stickiness, fail counts, utilization and node state", signed(rest));
            }
        }
        break;
    }
    Some(s)
}

fn collect_nodes(v: &RscView, out: &mut Vec<String>) {
    out.extend(v.nodes.iter().cloned());
    for c in &v.children {
        collect_nodes(c, out);
    }
}

fn signed(sc: Score) -> String {
    if sc.value() > 0 { format!("+{sc}") } else { sc.to_string() }
}

fn find_path<'a>(list: &'a [RscView], rsc: &str, path: &mut Vec<&'a RscView>) -> bool {
    for v in list {
        path.push(v);
        if v.id == rsc || find_path(&v.children, rsc, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_view<'a>(list: &'a [RscView], id: &str) -> Option<&'a RscView> {
    list.iter().find_map(|v| if v.id == id { Some(v) } else { find_view(&v.children, id) })
}
