//! `crm_simulate`-style output: current status, Transition Summary, scores, and `explain`.

use std::fmt::Write;

use crate::cib::{Cib, LrmOp, LrmResource, NodeState, parse_cib};
use crate::error::CibError;
use crate::scheduler::{Transition, schedule};

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
        let id = cib
            .config
            .nodes
            .iter()
            .find(|x| &x.uname == n)
            .map(|x| x.id.clone())
            .ok_or_else(|| CibError::Invalid {
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
        let (lhs, rc) = spec
            .rsplit_once('=')
            .ok_or_else(|| bad("expected RSC_OP@NODE=RC"))?;
        let (key, node) = lhs
            .rsplit_once('@')
            .ok_or_else(|| bad("expected RSC_OP@NODE=RC"))?;
        let rc: i32 = rc.parse().map_err(|_| bad("RC must be a number"))?;
        let mut parts: Vec<&str> = key.rsplitn(3, '_').collect();
        parts.reverse();
        let (rsc, op, interval) = match parts.as_slice() {
            [r, o, i] if i.parse::<u64>().is_ok() => {
                (r.to_string(), o.to_string(), i.parse::<u64>().unwrap_or(0))
            }
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
                cib.status.push(NodeState {
                    id: id.clone(),
                    uname: Some(node.into()),
                    ..NodeState::default()
                });
                cib.status.last_mut().ok_or_else(|| bad("internal"))?
            }
        };
        let lr = match ns.resources.iter().position(|r| r.id == rsc) {
            Some(i) => &mut ns.resources[i],
            None => {
                ns.resources.push(LrmResource {
                    id: rsc.clone(),
                    ..LrmResource::default()
                });
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
    Ok(Simulation {
        cib,
        transition,
        warnings,
    })
}

/// Formats the Transition Summary section.
pub fn format_summary(t: &Transition) -> String {
    let mut s = String::from("Transition Summary:\n");
    for l in &t.summary {
        let _ = writeln!(s, "  * {l}");
    }
    s
}

/// Formats the current cluster status section (nodes and resources).
pub fn format_status(cib: &Cib, t: &Transition) -> String {
    let mut s = String::from("Current cluster status:\n  * Node List:\n");
    let names: Vec<String> = cib.config.nodes.iter().map(|n| n.uname.clone()).collect();
    let _ = writeln!(s, "    * Nodes: [ {} ]", names.join(" "));
    s.push_str("\n  * Full List of Resources:\n");
    for (rsc, node, role) in &t.placement {
        let _ = writeln!(
            s,
            "    * {rsc}\t-> {} ({})",
            node.as_deref().unwrap_or("Stopped"),
            role.as_str()
        );
    }
    s
}

/// Formats allocation scores.
pub fn format_scores(t: &Transition) -> String {
    let mut s = String::new();
    for (r, n, sc) in &t.scores {
        let _ = writeln!(
            s,
            "pcmk__primitive_assign: {r} allocation score on {n}: {sc}"
        );
    }
    s
}

/// Explains a resource's placement in plain words.
pub fn explain(t: &Transition, rsc: &str) -> Option<String> {
    let (_, node, role) = t
        .placement
        .iter()
        .find(|(r, _, _)| r == rsc || r.split(':').next() == Some(rsc))?;
    let mut s = String::new();
    match node {
        Some(n) => {
            let _ = writeln!(s, "{rsc} is placed on {n} in role {}.", role.as_str());
        }
        None => {
            let _ = writeln!(s, "{rsc} cannot run anywhere and will be stopped.");
        }
    }
    let notes = t.notes.get(rsc);
    if let Some(notes) = notes {
        let _ = writeln!(s, "Score contributions:");
        for (n, what, sc) in notes.iter().filter(|x| x.1 != "total") {
            let _ = writeln!(s, "  on {n}: {what}: {sc}");
        }
        let _ = writeln!(s, "Final node scores:");
        for (n, what, sc) in notes.iter().filter(|x| x.1 == "total") {
            let _ = what;
            let _ = writeln!(s, "  {n}: {sc}");
        }
    }
    Some(s)
}
