//! Validation of a parsed CIB: duplicate ids, dangling references, ordering loops.

use std::collections::{BTreeMap, BTreeSet};

use super::model::*;
use crate::error::Diagnostic;

fn collect_ids<'a>(r: &'a Resource, out: &mut Vec<&'a str>) {
    out.push(&r.id);
    match &r.kind {
        ResourceKind::Primitive { .. } => {}
        ResourceKind::Group { members } => members.iter().for_each(|m| collect_ids(m, out)),
        ResourceKind::Clone { child, .. } => collect_ids(child, out),
    }
}

/// Checks the configuration and returns every problem found (empty when valid).
pub fn validate(cib: &Cib) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let c = &cib.config;
    let mut ids = Vec::new();
    for r in &c.resources {
        collect_ids(r, &mut ids);
    }
    let mut seen = BTreeSet::new();
    for id in &ids {
        if !seen.insert(*id) {
            problems.push(Diagnostic {
                element: "resources".into(),
                id: (*id).into(),
                message: format!("resource id '{id}' is used more than once; rename one of them"),
            });
        }
    }
    let mut node_ids = BTreeSet::new();
    let mut node_names = BTreeSet::new();
    for n in &c.nodes {
        if !node_ids.insert(n.id.as_str()) {
            problems.push(Diagnostic {
                element: "node".into(),
                id: n.id.clone(),
                message: format!("node id '{}' is used more than once", n.id),
            });
        }
        node_names.insert(n.uname.as_str());
    }
    let mut cons_ids = BTreeSet::new();
    let known = |r: &str| seen.contains(r);
    let mut order_edges: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for k in &c.constraints {
        let (elem, id, refs): (&str, &str, Vec<(&str, &str)>) = match k {
            Constraint::Location(l) => {
                if let Some(n) = &l.node
                    && !node_names.contains(n.as_str())
                    && !c.nodes.is_empty()
                {
                    problems.push(Diagnostic {
                        element: "rsc_location".into(),
                        id: l.id.clone(),
                        message: format!("field node: unknown node '{n}'"),
                    });
                }
                let mut refs: Vec<(&str, &str)> = l.rsc.iter().map(|r| ("rsc", r.as_str())).collect();
                refs.extend(l.sets.iter().flat_map(|s| s.resources.iter().map(|r| ("resource_ref", r.as_str()))));
                ("rsc_location", &l.id, refs)
            }
            Constraint::Colocation(co) => {
                let mut refs: Vec<(&str, &str)> = co.rsc.iter().map(|r| ("rsc", r.as_str())).collect();
                refs.extend(co.with_rsc.iter().map(|r| ("with-rsc", r.as_str())));
                refs.extend(co.sets.iter().flat_map(|s| s.resources.iter().map(|r| ("resource_ref", r.as_str()))));
                ("rsc_colocation", &co.id, refs)
            }
            Constraint::Order(o) => {
                let mut refs: Vec<(&str, &str)> = o.first.iter().map(|r| ("first", r.as_str())).collect();
                refs.extend(o.then.iter().map(|r| ("then", r.as_str())));
                refs.extend(o.sets.iter().flat_map(|s| s.resources.iter().map(|r| ("resource_ref", r.as_str()))));
                if let (Some(f), Some(t)) = (&o.first, &o.then)
                    && o.kind == OrderKind::Mandatory
                {
                    let fa = o.first_action.as_deref().unwrap_or("start");
                    let ta = o.then_action.as_deref().unwrap_or(fa);
                    if fa == "start" && ta == "start" {
                        order_edges.entry(f.as_str()).or_default().push((t.as_str(), o.id.as_str()));
                    }
                }
                ("rsc_order", &o.id, refs)
            }
        };
        if !id.is_empty() && !cons_ids.insert(id.to_string()) {
            problems.push(Diagnostic {
                element: elem.into(),
                id: id.into(),
                message: format!("constraint id '{id}' is used more than once"),
            });
        }
        for (field, r) in refs {
            if !known(r) {
                problems.push(Diagnostic {
                    element: elem.into(),
                    id: id.into(),
                    message: format!("field {field}: unknown resource '{r}'"),
                });
            }
        }
    }
    // Mandatory start orderings must not form a cycle.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn dfs<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, Vec<(&'a str, &'a str)>>,
        state: &mut BTreeMap<&'a str, u8>,
        problems: &mut Vec<Diagnostic>,
    ) {
        state.insert(n, 1);
        for (t, id) in edges.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            match state.get(t).copied().unwrap_or(0) {
                0 => dfs(t, edges, state, problems),
                1 => problems.push(Diagnostic {
                    element: "rsc_order".into(),
                    id: (*id).into(),
                    message: format!("ordering loop: '{n}' then '{t}' closes a cycle of mandatory orderings"),
                }),
                _ => {}
            }
        }
        state.insert(n, 2);
    }
    for n in order_edges.keys().copied().collect::<Vec<_>>() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            dfs(n, &order_edges, &mut state, &mut problems);
        }
    }
    problems
}
