//! Constraints resolved against the working set: locations per node, colocations and
//! orderings between resource indices (resource sets expanded).

use std::collections::{BTreeMap, BTreeSet};

use crate::cib::{Cib, Constraint, OrderKind, Role};
use crate::score::Score;

use super::rules::{self, RuleCtx};
use super::unpack::{World, flatten};

#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub(crate) id: String,
    pub(crate) rsc: usize,
    pub(crate) role: Option<Role>,
    pub(crate) scores: Vec<(usize, Score)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Coloc {
    pub(crate) id: String,
    pub(crate) dependent: usize,
    pub(crate) primary: usize,
    pub(crate) score: Score,
    pub(crate) dep_role: Option<Role>,
    pub(crate) prim_role: Option<Role>,
    pub(crate) attr: String,
    pub(crate) influence: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Ord {
    pub(crate) id: String,
    pub(crate) first: usize,
    pub(crate) first_action: String,
    pub(crate) then: usize,
    pub(crate) then_action: String,
    pub(crate) kind: OrderKind,
    pub(crate) symmetrical: bool,
    /// Minimum number of first instances needed (clone-min / require-all=false).
    pub(crate) min_first: Option<usize>,
    /// With require-all=false sets: any one of these firsts is enough.
    pub(crate) any_of: Vec<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct Constraints {
    pub(crate) locs: Vec<Loc>,
    pub(crate) colocs: Vec<Coloc>,
    pub(crate) orders: Vec<Ord>,
    /// (resource, node) pairs where a location's `resource-discovery` forbids probing.
    pub(crate) no_discovery: BTreeSet<(usize, usize)>,
    loc_index: std::collections::BTreeMap<usize, Vec<usize>>,
    dep_index: std::collections::BTreeMap<usize, Vec<usize>>,
    prim_index: std::collections::BTreeMap<usize, Vec<usize>>,
}

impl Constraints {
    fn build_index(&mut self) {
        for (i, l) in self.locs.iter().enumerate() {
            self.loc_index.entry(l.rsc).or_default().push(i);
        }
        for (i, c) in self.colocs.iter().enumerate() {
            self.dep_index.entry(c.dependent).or_default().push(i);
            self.prim_index.entry(c.primary).or_default().push(i);
        }
    }

    /// Location constraints on one resource.
    pub(crate) fn locs_of(&self, r: usize) -> impl Iterator<Item = &Loc> {
        self.loc_index.get(&r).into_iter().flatten().map(|&i| &self.locs[i])
    }

    /// Colocations in which `r` is the dependent.
    pub(crate) fn by_dependent(&self, r: usize) -> impl Iterator<Item = &Coloc> {
        self.dep_index.get(&r).into_iter().flatten().map(|&i| &self.colocs[i])
    }

    /// Colocations in which `r` is the primary.
    pub(crate) fn by_primary(&self, r: usize) -> impl Iterator<Item = &Coloc> {
        self.prim_index.get(&r).into_iter().flatten().map(|&i| &self.colocs[i])
    }
}

fn role_norm(r: Option<Role>) -> Option<Role> {
    match r {
        Some(Role::Started) | Some(Role::Unknown) | None => None,
        x => x,
    }
}

/// Resources a location's `rsc-pattern` applies to: a regular expression matched against
/// top-level resource names, or, when it starts with `!`, the names it does not match. An
/// invalid pattern applies to nothing.
fn pattern_targets(w: &World, pat: &str) -> Vec<usize> {
    let (invert, pat) = match pat.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pat),
    };
    let Ok(re) = regex::Regex::new(pat) else {
        return Vec::new();
    };
    w.top.iter().copied().filter(|&t| re.is_match(&w.rscs[t].id) != invert).collect()
}

pub(crate) fn unpack(w: &World, cib: &Cib) -> Constraints {
    let mut out = Constraints::default();
    let lookup = |id: &str| w.by_id.get(id).copied();
    // Nodes a resource may run on when some location marks discovery exclusive for it.
    let mut exclusive: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for c in &cib.config.constraints {
        match c {
            Constraint::Location(l) => {
                let mut targets = Vec::new();
                if let Some(r) = &l.rsc {
                    targets.extend(lookup(r));
                }
                if let Some(p) = &l.rsc_pattern {
                    targets.extend(pattern_targets(w, p));
                }
                for s in &l.sets {
                    targets.extend(s.resources.iter().filter_map(|r| lookup(r)));
                }
                for rsc in targets {
                    let mut scores = Vec::new();
                    let mut role = role_norm(l.role);
                    if let Some(node) = &l.node
                        && let Some(n) = w.nodes.iter().position(|x| &x.name == node)
                    {
                        scores.push((n, l.score.unwrap_or(Score::ZERO)));
                    }
                    for rule in &l.rules {
                        if rule.role.is_some() {
                            role = role_norm(rule.role);
                        }
                        for (n, node) in w.nodes.iter().enumerate() {
                            // The resource's parameters as they apply on this node.
                            let mut params = std::collections::BTreeMap::new();
                            flatten(
                                &w.rscs[rsc].param_sets,
                                &RuleCtx::attrs(Some(&node.name), &node.attrs),
                                &mut params,
                            );
                            let mut ctx = RuleCtx::attrs(Some(&node.name), &node.attrs);
                            ctx.rsc_attrs = Some((&params, &w.rscs[rsc].meta));
                            if rules::eval(rule, &ctx) {
                                let s = if let Some(a) = &rule.score_attribute {
                                    match node.attrs.get(a).and_then(|v| Score::parse(v)) {
                                        Some(s) => s,
                                        None => continue,
                                    }
                                } else {
                                    rule.score.unwrap_or(Score::ZERO)
                                };
                                scores.push((n, s));
                            }
                        }
                    }
                    match l.resource_discovery.as_deref() {
                        Some("exclusive") => exclusive.entry(rsc).or_default().extend(scores.iter().map(|&(n, _)| n)),
                        Some("never") => out.no_discovery.extend(scores.iter().map(|&(n, _)| (rsc, n))),
                        _ => {}
                    }
                    out.locs.push(Loc { id: l.id.clone(), rsc, role, scores });
                }
            }
            Constraint::Colocation(co) => {
                let attr = co.node_attribute.clone().unwrap_or_else(|| "#uname".into());
                let mut push = |dep: usize, prim: usize, score: Score, dr: Option<Role>, pr: Option<Role>| {
                    if dep == prim {
                        return;
                    }
                    // Without an explicit influence, the dependent's `critical` meta
                    // attribute (default true) decides.
                    let influence = co
                        .influence
                        .unwrap_or_else(|| w.rscs[dep].meta.get("critical").is_none_or(|v| super::unpack::truthy(v)));
                    out.colocs.push(Coloc {
                        id: co.id.clone(),
                        dependent: dep,
                        primary: prim,
                        score,
                        dep_role: role_norm(dr),
                        prim_role: role_norm(pr),
                        attr: attr.clone(),
                        influence,
                    });
                };
                if co.sets.is_empty() {
                    if let (Some(d), Some(p)) =
                        (co.rsc.as_deref().and_then(lookup), co.with_rsc.as_deref().and_then(lookup))
                    {
                        push(d, p, co.score, co.rsc_role, co.with_rsc_role);
                    }
                    continue;
                }
                let sets: Vec<(Vec<usize>, bool, Option<Role>, Score)> = co
                    .sets
                    .iter()
                    .map(|s| {
                        (
                            s.resources.iter().filter_map(|r| lookup(r)).collect(),
                            s.sequential,
                            s.role,
                            s.score.unwrap_or(co.score),
                        )
                    })
                    .collect();
                for (members, seq, role, score) in &sets {
                    if score.value() < 0 {
                        // Anti-colocation within a set: every member avoids every member
                        // before it, sequential or not (the only way nobody in the set runs
                        // with anybody else in it).
                        for (i, &a) in members.iter().enumerate() {
                            for &b in &members[i + 1..] {
                                push(b, a, *score, *role, *role);
                            }
                        }
                    } else if *seq {
                        for pair in members.windows(2) {
                            push(pair[1], pair[0], *score, *role, *role);
                        }
                    }
                }
                for pair in sets.windows(2) {
                    let (s1, seq1, r1, _) = &pair[0];
                    let (s2, seq2, r2, _) = &pair[1];
                    let deps: Vec<usize> = if *seq1 { s1.first().copied().into_iter().collect() } else { s1.clone() };
                    let prims: Vec<usize> = if *seq2 { s2.last().copied().into_iter().collect() } else { s2.clone() };
                    for &d in &deps {
                        for &p in &prims {
                            push(d, p, co.score, *r1, *r2);
                        }
                    }
                }
            }
            Constraint::Order(o) => {
                let symmetrical = o.symmetrical.unwrap_or(o.kind != OrderKind::Serialize);
                let push = |f: usize, fa: &str, t: usize, ta: &str, min: Option<usize>, out: &mut Constraints| {
                    if f == t && fa == ta {
                        return;
                    }
                    out.orders.push(Ord {
                        id: o.id.clone(),
                        first: f,
                        first_action: fa.to_string(),
                        then: t,
                        then_action: ta.to_string(),
                        kind: o.kind,
                        symmetrical,
                        min_first: min,
                        any_of: Vec::new(),
                    });
                };
                if o.sets.is_empty() {
                    if let (Some(f), Some(t)) =
                        (o.first.as_deref().and_then(lookup), o.then.as_deref().and_then(lookup))
                    {
                        let fa = o.first_action.clone().unwrap_or_else(|| "start".into());
                        let ta = o.then_action.clone().unwrap_or_else(|| fa.clone());
                        let min = if !o.require_all { Some(1) } else { None };
                        push(f, &fa, t, &ta, min, &mut out);
                    }
                    continue;
                }
                let sets: Vec<(Vec<usize>, bool, bool, String)> = o
                    .sets
                    .iter()
                    .map(|s| {
                        (
                            s.resources.iter().filter_map(|r| lookup(r)).collect(),
                            s.sequential,
                            s.require_all,
                            s.action.clone().unwrap_or_else(|| "start".into()),
                        )
                    })
                    .collect();
                for (members, seq, _, action) in &sets {
                    if *seq {
                        for pair in members.windows(2) {
                            push(pair[0], action, pair[1], action, None, &mut out);
                        }
                    }
                }
                for pair in sets.windows(2) {
                    let (s1, seq1, req1, a1) = &pair[0];
                    let (s2, seq2, _, a2) = &pair[1];
                    let thens: Vec<usize> = if *seq2 { s2.first().copied().into_iter().collect() } else { s2.clone() };
                    if !*req1 {
                        if let Some(&f0) = s1.first() {
                            for &t in &thens {
                                let before = out.orders.len();
                                push(f0, a1, t, a2, None, &mut out);
                                if out.orders.len() > before
                                    && let Some(o) = out.orders.last_mut()
                                {
                                    o.any_of = s1.clone();
                                }
                            }
                        }
                        continue;
                    }
                    let firsts: Vec<usize> = if *seq1 { s1.last().copied().into_iter().collect() } else { s1.clone() };
                    for &f in &firsts {
                        for &t in &thens {
                            push(f, a1, t, a2, None, &mut out);
                        }
                    }
                }
            }
        }
    }
    // A resource living in a container (meta attribute `container`) runs where its
    // container runs and only while it runs: it is colocated with it and ordered after it.
    // Within one group the group's own ordering already says so.
    for (l, r) in w.rscs.iter().enumerate() {
        let Some(c) = w.container_of(l) else { continue };
        if (r.parent.is_some() && r.parent == w.rscs[c].parent) || w.clone_of(l).is_some() {
            continue;
        }
        let dependent = w.top_of(l);
        out.colocs.push(Coloc {
            id: format!("{}-with-container", r.id),
            dependent,
            primary: c,
            score: Score::INF,
            dep_role: None,
            prim_role: None,
            attr: "#uname".into(),
            influence: true,
        });
        out.orders.push(Ord {
            id: format!("{}-after-container", r.id),
            first: c,
            first_action: "start".into(),
            then: l,
            then_action: "start".into(),
            kind: OrderKind::Mandatory,
            symmetrical: true,
            min_first: None,
            any_of: Vec::new(),
        });
    }
    // Exclusive discovery: a resource is allowed only on the nodes of its exclusive locations.
    for (rsc, allowed) in exclusive {
        let scores: Vec<(usize, Score)> =
            (0..w.nodes.len()).filter(|n| !allowed.contains(n)).map(|n| (n, Score::NEG_INF)).collect();
        out.no_discovery.extend(scores.iter().map(|&(n, _)| (rsc, n)));
        out.locs.push(Loc { id: format!("{}-exclusive-discovery", w.rscs[rsc].id), rsc, role: None, scores });
    }
    out.build_index();
    out
}
