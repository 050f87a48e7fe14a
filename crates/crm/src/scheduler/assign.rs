//! Placement: node scores from locations, stickiness, fail counts and colocations; resources
//! assigned in priority order, clone instances spread, promotion chosen.

use std::collections::{BTreeMap, BTreeSet};

use crate::cib::Role;
use crate::score::{INFINITY, Score};

use super::constraints::Constraints;
use super::unpack::{Kind, World};

pub(crate) struct Assigner<'a> {
    pub(crate) w: &'a mut World,
    pub(crate) c: &'a Constraints,
    /// Score explanations per top-level resource: (node, source, score).
    pub(crate) notes: BTreeMap<usize, Vec<(usize, String, Score)>>,
}

type Weights = BTreeMap<usize, Score>;

impl Assigner<'_> {
    fn ancestors_and_self(&self, r: usize) -> Vec<usize> {
        let mut v = vec![r];
        let mut cur = self.w.rscs[r].parent;
        while let Some(p) = cur {
            v.push(p);
            cur = self.w.rscs[p].parent;
        }
        v
    }

    /// Score of one leaf on one node, before colocations. `None`: not allowed.
    fn leaf_weight(&self, l: usize, n: usize, with_stickiness: bool) -> Option<Score> {
        let w = &self.w;
        let mut s = if w.props.symmetric { Some(Score::ZERO) } else { None };
        for a in self.ancestors_and_self(l) {
            for loc in self.c.locs_of(a).filter(|x| x.rsc == a && x.role.is_none()) {
                for &(node, sc) in &loc.scores {
                    if node == n {
                        s = Some(s.unwrap_or(Score::ZERO).plus(sc));
                    }
                }
            }
        }
        let mut s = s?;
        if self.ancestors_and_self(l).iter().any(|&a| w.rscs[a].banned_on.contains(&n)) {
            return Some(Score::NEG_INF);
        }
        let r = &w.rscs[l];
        if with_stickiness && r.running.contains(&n) && r.managed && !r.failed {
            s = s.plus(r.stickiness);
        }
        let (fc, _) = w.failcount(l, n);
        // A migration threshold of 0 disables it.
        if fc > 0 && r.migration_threshold > 0 && fc >= r.migration_threshold {
            s = Score::NEG_INF;
        }
        if r.failed && r.running.contains(&n) && r.migration_threshold == 1 {
            s = Score::NEG_INF;
        }
        Some(s)
    }

    /// Score of a unit (primitive, group, or clone instance) per node, before colocations.
    fn unit_weights(&self, u: usize, with_stickiness: bool) -> Weights {
        let leaves = self.w.leaves(u);
        let mut out = Weights::new();
        for n in 0..self.w.nodes.len() {
            let mut total: Option<Score> = None;
            let mut blocked = false;
            for (i, &l) in leaves.iter().enumerate() {
                // A group member is colocated with the one before it; with critical=false
                // that colocation has no influence, so neither it nor the members after it
                // pull the group.
                if i > 0 && self.w.rscs[l].meta.get("critical").is_some_and(|v| !super::unpack::truthy(v)) {
                    break;
                }
                match self.leaf_weight(l, n, with_stickiness) {
                    Some(s) => total = Some(total.unwrap_or(Score::ZERO).plus(s)),
                    None => {
                        if i == 0 {
                            blocked = true;
                        }
                    }
                }
            }
            if !blocked && let Some(t) = total {
                out.insert(n, t);
            }
        }
        // Groups: if the full sum leaves no node, fall back to the first member alone.
        if leaves.len() > 1 && !out.iter().any(|(&n, s)| s.value() >= 0 && self.w.nodes[n].can_host()) {
            let first = leaves[0];
            for n in 0..self.w.nodes.len() {
                if let Some(s) = self.leaf_weight(first, n, with_stickiness) {
                    out.insert(n, s);
                }
            }
        }
        out
    }

    /// Node scores for placing a primitive or group: its own scores, its colocations with
    /// primaries and its dependents' preferences. With `first_only`, a group counts only its
    /// first member and the group's own colocations.
    fn placement_weights(&mut self, r: usize, first_only: bool) -> Weights {
        let leaves = self.w.leaves(r);
        let mut weights = if first_only {
            (0..self.w.nodes.len()).filter_map(|n| Some((n, self.leaf_weight(leaves[0], n, true)?))).collect()
        } else {
            self.unit_weights(r, true)
        };
        self.apply_colocations(r, &mut weights, false);
        // Group members can be dependents too.
        let members = self.w.rscs[r].children.clone();
        let members = if first_only { members.into_iter().take(1).collect() } else { members };
        for m in members {
            self.apply_colocations(m, &mut weights, false);
        }
        if !first_only {
            let mut seen = BTreeSet::from([r]);
            self.merge_dependents(r, &mut weights, 1.0, 0, &mut seen);
        }
        weights
    }

    /// Nodes where a primary runs (optionally in a role), after its assignment.
    fn primary_nodes(&self, p: usize, role: Option<Role>) -> Vec<usize> {
        let w = &self.w;
        let mut nodes = Vec::new();
        if w.rscs[p].kind == Kind::Clone {
            for &i in &w.rscs[p].children {
                if let Some(n) = w.rscs[i].assigned {
                    let r = self.unit_role(i);
                    if role.is_none_or(|want| want == r) {
                        nodes.push(n);
                    }
                }
            }
        } else if let Some(n) = w.rscs[p].assigned {
            let r = self.unit_role(p);
            if role.is_none_or(|want| want == r) {
                nodes.push(n);
            }
        }
        nodes
    }

    fn unit_role(&self, u: usize) -> Role {
        let w = &self.w;
        w.leaves(u).first().map_or(Role::Stopped, |&l| w.rscs[l].next_role)
    }

    fn same_place(&self, attr: &str, a: usize, b: usize) -> bool {
        if attr == "#uname" {
            return a == b;
        }
        let va = self.w.nodes[a].attrs.get(attr);
        va.is_some() && va == self.w.nodes[b].attrs.get(attr)
    }

    /// Colocations in which `d` is the dependent, applied to `weights`.
    fn apply_colocations(&mut self, d: usize, weights: &mut Weights, for_promotion: bool) {
        let colocs: Vec<_> = self.c.by_dependent(d).filter(|c| c.dependent == d).cloned().collect();
        for co in colocs {
            if !for_promotion && co.dep_role.is_some_and(|r| r == Role::Promoted) {
                continue;
            }
            if for_promotion && co.dep_role != Some(Role::Promoted) {
                continue;
            }
            if co.score.value() == 0 {
                continue;
            }
            self.assign(co.primary);
            let pn = self.primary_nodes(co.primary, co.prim_role);
            let top = self.w.top_of(d);
            let mut work = weights.clone();
            let mut applied = Vec::new();
            for (&n, s) in work.iter_mut() {
                let here = pn.iter().any(|&p| self.same_place(&co.attr, p, n));
                let delta = if co.score.is_inf() {
                    if here { Score::ZERO } else { Score::NEG_INF }
                } else if co.score.is_neg_inf() {
                    if here { Score::NEG_INF } else { Score::ZERO }
                } else if here {
                    co.score
                } else {
                    Score::ZERO
                };
                if delta != Score::ZERO {
                    *s = s.plus(delta);
                    applied.push((n, delta));
                }
            }
            // A finite colocation that would leave nowhere to run is ignored.
            let mandatory = co.score.is_inf() || co.score.is_neg_inf();
            let any_left = work.iter().any(|(&n, s)| s.value() >= 0 && self.w.nodes[n].can_host());
            if mandatory || any_left || for_promotion {
                *weights = work;
                let name = format!("colocation {} with {}", co.id, self.w.rscs[co.primary].id);
                for (n, delta) in applied {
                    self.notes.entry(top).or_default().push((n, name.clone(), delta));
                }
            }
        }
    }

    /// Preferences of not-yet-assigned dependents pulled into a primary's weights.
    fn merge_dependents(&self, p: usize, weights: &mut Weights, factor: f64, depth: usize, seen: &mut BTreeSet<usize>) {
        if depth > 8 {
            return;
        }
        for co in self.c.by_primary(p).filter(|c| c.primary == p && c.influence) {
            let d = co.dependent;
            if seen.contains(&d) || !self.w.rscs[d].provisional || co.dep_role == Some(Role::Promoted) {
                continue;
            }
            if co.score.value() == 0 {
                continue;
            }
            let f = factor * co.score.value() as f64 / INFINITY as f64;
            let mut dw = if self.w.rscs[d].kind == Kind::Clone {
                let mut m = Weights::new();
                for &i in &self.w.rscs[d].children {
                    for (n, s) in self.unit_weights(i, true) {
                        let e = m.entry(n).or_insert(s);
                        if s > *e {
                            *e = s;
                        }
                    }
                }
                m
            } else {
                self.unit_weights(d, true)
            };
            seen.insert(d);
            self.merge_dependents(d, &mut dw, f.clamp(-1.0, 1.0), depth + 1, seen);
            // An anti-colocated dependent's dislikes count only when it could not run
            // anywhere the primary is not.
            let primary_nodes: BTreeSet<usize> =
                self.w.leaves(p).iter().flat_map(|&l| self.w.rscs[l].running.clone()).collect();
            let dependent_confined = dw
                .iter()
                .filter(|(n, s)| s.value() >= 0 && self.w.nodes[**n].can_host())
                .all(|(n, _)| primary_nodes.contains(n));
            let primary_is_clone = self.w.rscs[p].kind == Kind::Clone;
            let mut work = weights.clone();
            for (n, s) in work.iter_mut() {
                // With a node attribute, a node counts the dependent's best score among the
                // nodes sharing its value of that attribute.
                let ds = if co.attr == "#uname" {
                    dw.get(n).copied()
                } else {
                    dw.iter().filter(|(m, _)| self.same_place(&co.attr, *n, **m)).map(|(_, &x)| x).max()
                };
                let Some(ds) = ds else { continue };
                if f < 0.0 && ds.value() < 0 && !dependent_confined {
                    continue;
                }
                // Clones take only the non-negative preferences of their dependents.
                if primary_is_clone && ds.value() < 0 {
                    continue;
                }
                let add = if ds.is_neg_inf() || ds.is_inf() {
                    if f >= 1.0 - 1e-9 {
                        ds
                    } else if f <= -1.0 + 1e-9 {
                        Score::new(-ds.value())
                    } else {
                        Score::new((ds.value() as f64 * f) as i64)
                    }
                } else {
                    Score::new((ds.value() as f64 * f) as i64)
                };
                *s = s.plus(add);
            }
            if work.iter().any(|(&n, s)| s.value() >= 0 && self.w.nodes[n].can_host()) {
                *weights = work;
            }
        }
    }

    fn fits(&self, u: usize, n: usize) -> bool {
        if self.w.props.placement == "default" {
            return true;
        }
        let mut need: BTreeMap<&str, i64> = BTreeMap::new();
        for l in self.w.leaves(u) {
            for (k, v) in &self.w.rscs[l].utilization {
                *need.entry(k.as_str()).or_default() += v;
            }
        }
        let node = &self.w.nodes[n];
        need.iter().all(|(k, v)| node.free.get(*k).copied().unwrap_or(0) >= *v || *v <= 0)
    }

    /// The unit (top-level primitive or group) a colocation endpoint stands for, or `None`
    /// for clones and their instances (which are placed instance by instance).
    fn coloc_unit(&self, r: usize) -> Option<usize> {
        if self.w.rscs[r].kind == Kind::Clone || self.w.clone_of(r).is_some() {
            return None;
        }
        Some(self.w.top_of(r))
    }

    /// `u` and every unit tied to it by mandatory (+INFINITY) colocations that decide
    /// location, in either direction and transitively.
    fn colocated_units(&self, u: usize) -> BTreeSet<usize> {
        let mut set = BTreeSet::from([u]);
        let mut todo = vec![u];
        while let Some(x) = todo.pop() {
            let mut ends = vec![x];
            ends.extend(self.w.leaves(x));
            for e in ends {
                let links = self.c.by_dependent(e).chain(self.c.by_primary(e));
                for co in links {
                    if co.score != Score::INF || co.dep_role == Some(Role::Promoted) {
                        continue;
                    }
                    for other in [co.dependent, co.primary] {
                        if let Some(o) = self.coloc_unit(other)
                            && set.insert(o)
                        {
                            todo.push(o);
                        }
                    }
                }
            }
        }
        set
    }

    /// Whether node `n` has room for the still unassigned members of `units` together.
    fn fits_all(&self, units: &BTreeSet<usize>, n: usize) -> bool {
        let mut need: BTreeMap<&str, i64> = BTreeMap::new();
        for &u in units {
            for l in self.w.leaves(u) {
                if self.w.rscs[l].assigned.is_some() && !self.w.rscs[l].provisional {
                    continue;
                }
                for (k, v) in &self.w.rscs[l].utilization {
                    *need.entry(k.as_str()).or_default() += v;
                }
            }
        }
        let node = &self.w.nodes[n];
        need.iter().all(|(k, v)| node.free.get(*k).copied().unwrap_or(0) >= *v || *v <= 0)
    }

    /// Capacity check for placing `u`, and the node to prefer on a tie. With a utilization
    /// strategy, Pacemaker first looks for nodes with room for `u` and all unassigned
    /// resources mandatorily colocated with it, so that a colocated set is not split up or
    /// starved later. Only when no node has room for the whole set does it settle for room
    /// for `u` alone, and then prefers the node with the most free capacity.
    fn capacity_plan(&self, u: usize, weights: &Weights) -> (Box<dyn Fn(usize) -> bool + '_>, Option<usize>) {
        if self.w.props.placement == "default" {
            return (Box::new(|_| true), None);
        }
        let set = self.colocated_units(u);
        if set.len() > 1 {
            let usable: Vec<usize> = weights
                .iter()
                .filter(|&(&n, s)| s.value() >= 0 && self.w.nodes[n].can_host())
                .map(|(&n, _)| n)
                .collect();
            if usable.iter().any(|&n| self.fits_all(&set, n)) {
                return (Box::new(move |n| self.fits_all(&set, n)), None);
            }
            let mut most: Option<usize> = None;
            for n in usable {
                if most.is_none_or(|m| self.compare_capacity(n, m) == std::cmp::Ordering::Less) {
                    most = Some(n);
                }
            }
            return (Box::new(move |n| self.fits(u, n)), most);
        }
        // A group with room nowhere as a whole is placed member by member: it needs room for
        // its first member, and the members that do not fit after it stay stopped.
        if self.w.rscs[u].kind == Kind::Group {
            let usable: Vec<usize> = weights
                .iter()
                .filter(|&(&n, s)| s.value() >= 0 && self.w.nodes[n].can_host())
                .map(|(&n, _)| n)
                .collect();
            if !usable.iter().any(|&n| self.fits(u, n))
                && let Some(&first) = self.w.leaves(u).first()
            {
                let mut most: Option<usize> = None;
                for n in usable {
                    if most.is_none_or(|m| self.compare_capacity(n, m) == std::cmp::Ordering::Less) {
                        most = Some(n);
                    }
                }
                return (Box::new(move |n| self.fits(first, n)), most);
            }
        }
        (Box::new(move |n| self.fits(u, n)), None)
    }

    /// `Less` when node `a` has more free capacity than `b`: one vote per utilization
    /// attribute, for whichever node has more of it left.
    fn compare_capacity(&self, a: usize, b: usize) -> std::cmp::Ordering {
        let (fa, fb) = (&self.w.nodes[a].free, &self.w.nodes[b].free);
        let mut votes = 0i64;
        for k in fa.keys().chain(fb.keys().filter(|k| !fa.contains_key(*k))) {
            let (x, y) = (fa.get(k).copied().unwrap_or(0), fb.get(k).copied().unwrap_or(0));
            votes += (y - x).signum();
        }
        votes.cmp(&0)
    }

    /// Picks the best node for a unit from final weights.
    fn choose(
        &self,
        u: usize,
        weights: &Weights,
        extra_ok: &dyn Fn(usize) -> bool,
        prefer: Option<usize>,
    ) -> Option<usize> {
        let w = &self.w;
        let (room, most_capable) = self.capacity_plan(u, weights);
        let prefer = prefer.or(most_capable);
        let candidates: Vec<(usize, Score)> = weights
            .iter()
            .filter(|&(&n, s)| s.value() >= 0 && w.nodes[n].can_host() && extra_ok(n) && room(n))
            .map(|(&n, &s)| (n, s))
            .collect();
        let current: Option<usize> = w.leaves(u).iter().find_map(|&l| w.rscs[l].running.first().copied());
        let mut c = candidates;
        // Free capacity is compared attribute by attribute (votes), which need not be a total
        // order across three or more nodes: a merge sort keeps that well defined.
        merge_sort_by(&mut c, &|a: &(usize, Score), b: &(usize, Score)| {
            b.1.cmp(&a.1)
                .then_with(|| {
                    if w.props.placement == "balanced" {
                        self.compare_capacity(a.0, b.0)
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
                .then_with(|| {
                    if w.props.placement == "minimal" {
                        std::cmp::Ordering::Equal
                    } else {
                        w.nodes[a.0].count.cmp(&w.nodes[b.0].count)
                    }
                })
                .then_with(|| (Some(b.0) == current).cmp(&(Some(a.0) == current)))
                .then_with(|| natural_cmp(&w.nodes[a.0].name, &w.nodes[b.0].name))
        });
        let &(best, best_score) = c.first()?;
        if let Some(p) = prefer
            && c.iter().any(|&(n, s)| n == p && s == best_score)
        {
            return Some(p);
        }
        let unique_instance = w.clone_of(u).is_some_and(|cl| w.rscs[cl].clone.unique);
        if best_score.value() > 0
            && !unique_instance
            && let Some(cur) = current
            && c.iter().any(|&(n, s)| n == cur && s == best_score)
        {
            return Some(cur);
        }
        Some(best)
    }

    fn place_unit(&mut self, u: usize, n: Option<usize>) {
        let leaves = self.w.leaves(u);
        let Some(n) = n else {
            for l in leaves {
                self.w.rscs[l].assigned = None;
                self.w.rscs[l].provisional = false;
            }
            self.w.rscs[u].assigned = None;
            self.w.rscs[u].provisional = false;
            return;
        };
        self.w.rscs[u].assigned = Some(n);
        self.w.rscs[u].provisional = false;
        let mut ok = true;
        let is_group = self.w.rscs[u].kind == Kind::Group;
        for l in leaves {
            // A group member needs room for itself on the group's node.
            let room = !is_group || self.fits(l, n);
            let allowed = room
                && self.leaf_weight(l, n, false).is_some_and(|s| !s.is_neg_inf())
                && self.w.rscs[l].target_role != Some(Role::Stopped)
                && !self.w.rscs[l].orphan
                && (self.w.rscs[l].managed || self.w.rscs[l].running.contains(&n));
            if !allowed {
                ok = false;
            }
            // A failed, blocked member stays put, but later members cannot follow it.
            let stuck = self.w.blocked(l) && self.w.rscs[l].failed;
            if ok {
                self.w.rscs[l].assigned = Some(n);
                self.w.nodes[n].count += 1;
                let util = self.w.rscs[l].utilization.clone();
                if self.w.props.placement != "default" {
                    for (k, v) in util {
                        *self.w.nodes[n].free.entry(k).or_insert(0) -= v;
                    }
                }
            } else {
                self.w.rscs[l].assigned = None;
            }
            if stuck {
                ok = false;
            }
            self.w.rscs[l].provisional = false;
        }
    }

    /// Whether `r` must be stopped by its target role: the nearest target-role set on it or
    /// an ancestor decides (a clone instance's own, explicitly set target-role overrides the
    /// clone's), or the cluster stops everything.
    fn stopped_by_role(&self, r: usize) -> bool {
        let mut cur = Some(r);
        while let Some(x) = cur {
            if let Some(role) = self.w.rscs[x].target_role {
                return role == Role::Stopped || self.w.props.stop_all;
            }
            cur = self.w.rscs[x].parent;
        }
        self.w.props.stop_all
    }

    /// Assigns a resource (and, first, the primaries it depends on).
    pub(crate) fn assign(&mut self, r: usize) {
        let r = if self.w.rscs[r].parent.is_some()
            && self.w.rscs[r].kind == Kind::Primitive
            && self.w.clone_of(r).is_none()
        {
            self.w.rscs[r].parent.unwrap_or(r)
        } else {
            r
        };
        if !self.w.rscs[r].provisional || self.w.rscs[r].assigning {
            return;
        }
        self.w.rscs[r].assigning = true;
        match self.w.rscs[r].kind {
            Kind::Clone => self.assign_clone(r),
            _ => {
                let mut weights = self.placement_weights(r, false);
                let usable = |a: &Self, w: &Weights| w.iter().any(|(&n, s)| s.value() >= 0 && a.w.nodes[n].can_host());
                if self.w.rscs[r].kind == Kind::Group && self.w.leaves(r).len() > 1 && !usable(self, &weights) {
                    // Later members' preferences are merged into the first member's only
                    // when some node remains; otherwise they are rolled back and the group
                    // goes where its first member can, later members following if they may.
                    weights = self.placement_weights(r, true);
                }
                for (&n, &s) in &weights {
                    self.notes.entry(r).or_default().push((n, "total".into(), s));
                }
                let n = if self.stopped_by_role(r) {
                    None
                } else if !self.w.leaves(r).iter().all(|&l| self.w.rscs[l].managed && !self.w.blocked(l)) {
                    // Unmanaged and blocked resources stay where they are (for groups: where
                    // most members run).
                    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
                    for l in self.w.leaves(r) {
                        for &n in &self.w.rscs[l].running {
                            *counts.entry(n).or_default() += 1;
                        }
                    }
                    let top = counts.values().copied().max().unwrap_or(0);
                    let first_leaf_nodes: Vec<usize> =
                        self.w.leaves(r).iter().flat_map(|&l| self.w.rscs[l].running.clone()).collect();
                    first_leaf_nodes.into_iter().find(|n| counts.get(n) == Some(&top))
                } else {
                    self.choose(r, &weights, &|_| true, None)
                };
                // A node the group may not use (a mandatory colocation bans it) keeps only
                // its unmanaged or blocked members, which stay where they are; the others
                // cannot run.
                let banned = n.is_some_and(|x| weights.get(&x).is_some_and(|s| s.is_neg_inf()));
                if banned && self.w.rscs[r].kind == Kind::Group {
                    self.place_unit(r, None);
                    for l in self.w.leaves(r) {
                        let stuck = !self.w.rscs[l].managed || self.w.blocked(l);
                        if stuck && let Some(&cur) = self.w.rscs[l].running.first() {
                            self.w.rscs[l].assigned = Some(cur);
                        }
                    }
                } else {
                    self.place_unit(r, n);
                }
                for l in self.w.leaves(r) {
                    let rs = &mut self.w.rscs[l];
                    rs.next_role = if rs.assigned.is_some() { Role::Started } else { Role::Stopped };
                }
            }
        }
        self.w.rscs[r].assigning = false;
        self.w.rscs[r].provisional = false;
    }

    fn assign_clone(&mut self, c: usize) {
        let cfg = self.w.rscs[c].clone.clone();
        // Clone-level colocation adjustments, as a per-node delta.
        let mut base: Weights = (0..self.w.nodes.len()).map(|n| (n, Score::ZERO)).collect();
        self.apply_colocations(c, &mut base, false);
        let mut seen = BTreeSet::from([c]);
        let mut pulled = base.clone();
        self.merge_dependents(c, &mut pulled, 1.0, 0, &mut seen);
        let instances = self.w.rscs[c].children.clone();
        let stopped = self.w.props.stop_all;
        let avail = self.w.nodes.iter().filter(|n| n.can_host()).count().max(1);
        let optimal = (cfg.max / avail).max(1);
        let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
        let mut assigned = 0usize;
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let weights_of = |this: &Self, i: usize| -> Weights {
            let mut w = this.unit_weights(i, true);
            for (n, s) in w.iter_mut() {
                if let Some(&d) = pulled.get(n) {
                    *s = s.plus(d);
                }
            }
            w
        };
        let managed = self.w.leaves(c).iter().all(|&l| self.w.rscs[l].managed);
        // Instances currently running, in instance order, keep their node if possible.
        let mut order: Vec<usize> = instances.clone();
        order.sort_by_key(|&i| {
            let leaves = self.w.leaves(i);
            let active = leaves.iter().any(|&l| !self.w.rscs[l].running.is_empty());
            let failed = leaves.iter().any(|&l| self.w.rscs[l].failed);
            (!active, failed, self.w.rscs[i].instance)
        });
        let running_instances: Vec<usize> = instances
            .iter()
            .copied()
            .filter(|&i| self.w.leaves(i).iter().any(|&l| !self.w.rscs[l].running.is_empty()))
            .collect();
        let hosting: BTreeSet<usize> = running_instances
            .iter()
            .flat_map(|&i| self.w.leaves(i))
            .flat_map(|l| self.w.rscs[l].running.clone())
            .collect();
        let spare = cfg.max.saturating_sub(running_instances.len());
        // Instances whose own target role stops them (their own setting overrides the clone's).
        let stopped_instances: BTreeSet<usize> = instances
            .iter()
            .copied()
            .filter(|&i| stopped || self.w.leaves(i).iter().all(|&l| self.stopped_by_role(l)))
            .collect();
        {
            for &i in order.iter().filter(|i| !stopped_instances.contains(i)) {
                let leaves = self.w.leaves(i);
                let Some(cur) = leaves.iter().find_map(|&l| self.w.rscs[l].running.first().copied()) else {
                    continue;
                };
                if !managed {
                    self.place_unit(i, Some(cur));
                    *per_node.entry(cur).or_default() += 1;
                    assigned += 1;
                    done.insert(i);
                    continue;
                }
                if assigned >= cfg.max {
                    break;
                }
                let wts = weights_of(self, i);
                let count = per_node.get(&cur).copied().unwrap_or(0);
                // Kept unless better nodes would be left without an instance: spare
                // instances can cover better nodes, so only count those beyond the spares.
                let cur_score = wts.get(&cur).copied();
                let better = wts
                    .iter()
                    .filter(|&(&n, s)| {
                        n != cur
                            && s.value() >= 0
                            && Some(*s) > cur_score
                            && self.w.nodes[n].can_host()
                            && !hosting.contains(&n)
                    })
                    .count();
                let ok = cur_score.is_some_and(|s| s.value() >= 0)
                    && better <= spare
                    && self.w.nodes[cur].can_host()
                    && count < optimal.min(cfg.node_max)
                    && self.fits(i, cur);
                if ok {
                    self.place_unit(i, Some(cur));
                    *per_node.entry(cur).or_default() += 1;
                    assigned += 1;
                    done.insert(i);
                }
            }
        }
        // The rest are placed afresh. Copies of an anonymous clone are interchangeable, so
        // an instance that had to leave its node is placed only after the inactive ones: a
        // new node gets a fresh instance number and the displaced one stops.
        let mut fresh: Vec<usize> = instances.clone();
        if !cfg.unique {
            fresh.sort_by_key(|&i| self.w.leaves(i).iter().any(|&l| !self.w.rscs[l].running.is_empty()));
        }
        for &i in &fresh {
            if done.contains(&i) {
                continue;
            }
            // A removed (orphan) instance never takes one of the clone's places.
            let orphan = self.w.leaves(i).iter().any(|&l| self.w.rscs[l].orphan);
            if stopped_instances.contains(&i) || assigned >= cfg.max || !managed || orphan {
                self.place_unit(i, None);
                continue;
            }
            let wts = weights_of(self, i);
            let pn = per_node.clone();
            let node_max = cfg.node_max;
            let n = self.choose_fresh(i, &wts, &|n| pn.get(&n).copied().unwrap_or(0) < node_max);
            if let Some(n) = n {
                *per_node.entry(n).or_default() += 1;
                assigned += 1;
            }
            self.place_unit(i, n);
        }
        for &i in &instances {
            for l in self.w.leaves(i) {
                let rs = &mut self.w.rscs[l];
                rs.next_role = if rs.assigned.is_some() {
                    if cfg.promotable { Role::Unpromoted } else { Role::Started }
                } else {
                    Role::Stopped
                };
            }
        }
        for (&n, &s) in &pulled {
            self.notes.entry(c).or_default().push((n, "clone colocations".into(), s));
        }
        if cfg.promotable {
            self.promote(c);
        }
        self.w.rscs[c].provisional = false;
    }

    /// Node choice for an instance that is not running (no current-node preference).
    fn choose_fresh(&self, u: usize, weights: &Weights, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.choose(u, weights, ok, None)
    }

    fn promote(&mut self, c: usize) {
        let cfg = self.w.rscs[c].clone.clone();
        let instances = self.w.rscs[c].children.clone();
        let mut cands: Vec<(usize, Score, bool, usize)> = Vec::new();
        let no_promote = self.w.rscs[c].target_role == Some(Role::Unpromoted)
            || (!self.w.quorate && self.w.props.no_quorum_policy == "demote");
        // Colocations where the clone depends on something in the promoted role.
        let mut role_weights: Weights = (0..self.w.nodes.len()).map(|n| (n, Score::ZERO)).collect();
        self.apply_colocations(c, &mut role_weights, true);
        for &i in &instances {
            let Some(n) = self.w.rscs[i].assigned else {
                continue;
            };
            let leaves = self.w.leaves(i);
            let mut score = Score::ZERO;
            let mut any_attr = false;
            for &l in &leaves {
                let r = &self.w.rscs[l];
                let node = &self.w.nodes[n];
                // An instance known on this node under another history name (anonymous
                // instances are renumbered) reads the score recorded under that name.
                let history_name = r
                    .history_ids
                    .iter()
                    .rev()
                    .find(|(hn, id)| *hn == n && *id != r.id && node.attrs.contains_key(&format!("master-{id}")))
                    .map(|(_, id)| id);
                let v = history_name
                    .and_then(|id| node.attrs.get(&format!("master-{id}")))
                    .or_else(|| node.attrs.get(&format!("master-{}", r.id)))
                    .or_else(|| node.attrs.get(&format!("master-{}", r.base)))
                    .or_else(|| node.attrs.get(&format!("promotion-{}", r.base)));
                if let Some(v) = v {
                    any_attr = true;
                    score = score.plus(Score::parse(v).unwrap_or(Score::ZERO));
                }
            }
            let currently =
                leaves.iter().any(|&l| self.w.rscs[l].role == Role::Promoted && self.w.rscs[l].running.contains(&n));
            if !any_attr && !currently {
                score = Score::new(-1);
            }
            for a in
                std::iter::once(c).chain(instances.iter().copied().filter(|&x| x == i)).chain(leaves.iter().copied())
            {
                for loc in self.c.locs_of(a).filter(|x| x.role == Some(Role::Promoted)) {
                    for &(node, s) in &loc.scores {
                        if node == n {
                            score = score.plus(s);
                        }
                    }
                }
            }
            if let Some(&d) = role_weights.get(&n) {
                score = score.plus(d);
            }
            // Dependents colocated with our promoted role pull promotion to their node. So
            // does a resource colocated with the clone whatever its role, while it is still
            // to be placed: its node preferences tip the choice of which instance to promote.
            for co in self.c.by_primary(c).filter(|co| co.primary == c && co.prim_role != Some(Role::Unpromoted)) {
                let d = co.dependent;
                if co.prim_role.is_none() && (!self.w.rscs[d].provisional || self.w.rscs[d].kind == Kind::Clone) {
                    continue;
                }
                if !co.influence || co.score.value() == 0 {
                    continue;
                }
                if self.w.rscs[d].provisional {
                    // Not placed yet: its node preferences, scaled by the colocation score.
                    let dw = if self.w.rscs[d].kind == Kind::Clone {
                        let mut m = Weights::new();
                        for &i in &self.w.rscs[d].children {
                            for (nn, s) in self.unit_weights(i, true) {
                                let e = m.entry(nn).or_insert(s);
                                if s > *e {
                                    *e = s;
                                }
                            }
                        }
                        m
                    } else {
                        self.unit_weights(d, true)
                    };
                    // A dependent that may run on none of the nodes hosting an instance
                    // has no say in which of them is promoted.
                    let hosts = instances.iter().filter_map(|&x| self.w.rscs[x].assigned);
                    if !hosts.into_iter().any(|h| dw.get(&h).is_some_and(|s| s.value() >= 0)) {
                        continue;
                    }
                    let f = co.score.value() as f64 / INFINITY as f64;
                    if let Some(&ds) = dw.get(&n) {
                        let add = if (ds.is_neg_inf() || ds.is_inf()) && f.abs() >= 1.0 - 1e-9 {
                            if f > 0.0 { ds } else { Score::new(-ds.value()) }
                        } else {
                            Score::new((ds.value() as f64 * f) as i64)
                        };
                        if !(f < 0.0 && ds.value() < 0) {
                            score = score.plus(add);
                        }
                    }
                    continue;
                }
                let dn: Vec<usize> = if self.w.rscs[d].kind == Kind::Clone {
                    self.w.rscs[d].children.iter().filter_map(|&x| self.w.rscs[x].assigned).collect()
                } else {
                    self.w.rscs[d].assigned.into_iter().collect()
                };
                if dn.contains(&n) && !co.score.is_inf() {
                    score = score.plus(co.score);
                } else if co.score.is_neg_inf() && dn.contains(&n) {
                    score = Score::NEG_INF;
                }
            }
            if leaves.iter().any(|&l| self.w.rscs[l].failed && self.w.rscs[l].running.contains(&n))
                && leaves.iter().all(|&l| self.w.rscs[l].on_fail != super::unpack::OnFail::Demote)
            {
                // A failed instance is recovered before it may be promoted again.
            }
            if leaves.iter().any(|&l| self.w.rscs[l].assigned != Some(n)) {
                score = Score::NEG_INF;
            }
            cands.push((i, score, currently, self.w.rscs[i].instance.unwrap_or(0)));
        }
        cands.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.3.cmp(&b.3)));
        let mut promoted = 0usize;
        let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, score, _, _) in cands {
            let Some(n) = self.w.rscs[i].assigned else {
                continue;
            };
            let ok = !no_promote
                && score.value() >= 0
                && promoted < cfg.promoted_max
                && per_node.get(&n).copied().unwrap_or(0) < cfg.promoted_node_max;
            self.w.rscs[i].promotion = score;
            if ok {
                promoted += 1;
                *per_node.entry(n).or_default() += 1;
                for l in self.w.leaves(i) {
                    if self.w.rscs[l].assigned.is_some() {
                        self.w.rscs[l].next_role = Role::Promoted;
                    }
                }
            }
        }
    }

    /// Nodes where a mandatory (+INFINITY) colocation's primary of `r` (or of its members)
    /// may not run at all, judged from the primary's own node scores.
    fn banned_by_primaries(&self, r: usize) -> Vec<usize> {
        let mut ends = vec![r];
        ends.extend(self.w.rscs[r].children.iter().copied());
        let mut out = Vec::new();
        for e in ends {
            for co in self.c.by_dependent(e).filter(|c| c.dependent == e) {
                if co.score != Score::INF || co.dep_role.is_some() || co.prim_role.is_some() {
                    continue;
                }
                let Some(&probe) = self.w.leaves(co.primary).first() else { continue };
                for n in 0..self.w.nodes.len() {
                    if self.leaf_weight(probe, n, false).is_none_or(|s| s.is_neg_inf()) {
                        out.push(n);
                    }
                }
            }
        }
        out
    }

    /// Assigns every resource, in priority order.
    pub(crate) fn assign_all(&mut self) {
        // Processing order: priority, then scores on each other's current node, then scores
        // on every node, then configuration order.
        struct Key {
            priority: i64,
            current: Option<usize>,
            scores: Vec<i64>,
            r: usize,
        }
        let none = -INFINITY - 1;
        let mut keys: Vec<Key> = Vec::new();
        for &r in &self.w.top {
            let rs = &self.w.rscs[r];
            let (weights, running) = match rs.kind {
                Kind::Primitive => (self.unit_weights(r, true), rs.running.clone()),
                Kind::Group => {
                    let first = rs.children.first().copied().unwrap_or(r);
                    (self.unit_weights(first, true), self.w.rscs[first].running.clone())
                }
                Kind::Clone => {
                    let first = rs.children.first().copied().unwrap_or(r);
                    let l = self.w.leaves(first).first().copied().unwrap_or(first);
                    let m =
                        (0..self.w.nodes.len()).filter_map(|n| self.leaf_weight(l, n, false).map(|s| (n, s))).collect();
                    (m, Vec::new())
                }
            };
            // Like Pacemaker, the order looks at scores with mandatory colocations applied:
            // a node where a primary may not run at all is no good for its dependent either.
            let mut weights = weights;
            for n in self.banned_by_primaries(r) {
                weights.insert(n, Score::NEG_INF);
            }
            // A clone needs room for one instance per node, not for all of them.
            let fit_unit = if rs.kind == Kind::Clone { rs.children.first().copied().unwrap_or(r) } else { r };
            let current =
                (running.len() == 1 && self.w.nodes[running[0]].can_host() && self.fits(fit_unit, running[0]))
                    .then(|| running[0]);
            let scores = (0..self.w.nodes.len())
                .map(|n| {
                    if self.w.nodes[n].can_host() && self.fits(fit_unit, n) {
                        weights.get(&n).map_or(none, |s| s.value())
                    } else {
                        none
                    }
                })
                .collect();
            keys.push(Key { priority: rs.priority, current, scores, r });
        }
        let names: Vec<String> = self.w.nodes.iter().map(|n| n.name.clone()).collect();
        let default_strategy = self.w.props.placement == "default";
        let mut by_name: Vec<usize> = (0..names.len()).collect();
        by_name.sort_by(|&x, &y| natural_cmp(&names[x], &names[y]));
        let cmp = |a: &Key, b: &Key| -> std::cmp::Ordering {
            use std::cmp::Ordering::*;
            let o = b.priority.cmp(&a.priority);
            if o != Equal {
                return o;
            }
            if default_strategy {
                return Equal;
            }
            let ca = a.current.map_or(none, |n| a.scores[n]);
            let cb = b.current.map_or(none, |n| b.scores[n]);
            let o = cb.cmp(&ca);
            if o != Equal {
                return o;
            }
            for &n in &by_name {
                let o = b.scores[n].cmp(&a.scores[n]);
                if o != Equal {
                    return o;
                }
            }
            Equal
        };
        let sorted = merge_sort(keys, &cmp);
        for k in sorted {
            if std::env::var("CRM_DEBUG").is_ok() {
                eprintln!(
                    "assign {} prio {} cur {:?} scores {:?}",
                    self.w.rscs[k.r].id, k.priority, k.current, k.scores
                );
            }
            self.assign(k.r);
        }
        self.inhibit_uninterleaved();
    }

    /// Interleaved mandatory orderings between clones pair instances by node. A "then"
    /// instance placed on a node where no "first" instance is placed cannot become active
    /// there (Pacemaker unassigns it while ordering: its start cannot run and a running
    /// instance stops, without a node-availability reason). Repeated until nothing changes,
    /// since inhibited instances may leave later clones without partners.
    fn inhibit_uninterleaved(&mut self) {
        loop {
            let mut changed = false;
            for o in &self.c.orders {
                let (f, t) = (o.first, o.then);
                let w = &self.w;
                let interleaved = w.rscs[f].kind == Kind::Clone
                    && w.rscs[t].kind == Kind::Clone
                    && w.rscs[t].clone.interleave
                    && o.min_first.is_none()
                    && w.rscs[f].clone.min == 0;
                let up = matches!(o.first_action.as_str(), "start" | "promote")
                    && matches!(o.then_action.as_str(), "start" | "promote");
                if !interleaved || !up || o.kind != crate::cib::OrderKind::Mandatory {
                    continue;
                }
                let first_nodes: BTreeSet<usize> =
                    w.rscs[f].children.iter().filter_map(|&i| w.rscs[i].assigned).collect();
                let lonely: Vec<usize> = w.rscs[t]
                    .children
                    .iter()
                    .copied()
                    .filter(|&i| w.rscs[i].assigned.is_some_and(|n| !first_nodes.contains(&n)))
                    .collect();
                for i in lonely {
                    let was: Vec<(usize, Option<usize>)> =
                        self.w.leaves(i).into_iter().map(|l| (l, self.w.rscs[l].assigned)).collect();
                    self.place_unit(i, None);
                    for (l, n) in was {
                        self.w.rscs[l].next_role = Role::Stopped;
                        self.w.rscs[l].inhibited_on = n;
                    }
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }
}

/// A stable merge sort that tolerates comparators that are not total orders.
fn merge_sort<T>(mut v: Vec<T>, cmp: &dyn Fn(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
    if v.len() <= 1 {
        return v;
    }
    let right = v.split_off(v.len() / 2);
    let left = merge_sort(v, cmp);
    let right = merge_sort(right, cmp);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut l = left.into_iter().peekable();
    let mut r = right.into_iter().peekable();
    loop {
        match (l.peek(), r.peek()) {
            (Some(a), Some(b)) => {
                if cmp(b, a) == std::cmp::Ordering::Less {
                    out.extend(r.next());
                } else {
                    out.extend(l.next());
                }
            }
            (Some(_), None) => out.extend(l.next()),
            (None, Some(_)) => out.extend(r.next()),
            (None, None) => break,
        }
    }
    out
}

/// Compares names case-insensitively with digit runs compared as numbers (`node9` < `node10`).
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i]).unwrap_or("0").trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j]).unwrap_or("0").trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Equal {
                return o;
            }
        } else {
            let o = a[i].to_ascii_lowercase().cmp(&b[j].to_ascii_lowercase());
            if o != Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// A stable merge sort that tolerates comparisons that are not a total order (it never
/// panics; the result then depends only on the comparisons made).
fn merge_sort_by<T: Copy>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> std::cmp::Ordering) {
    if v.len() < 2 {
        return;
    }
    let mid = v.len() / 2;
    merge_sort_by(&mut v[..mid], cmp);
    merge_sort_by(&mut v[mid..], cmp);
    let mut out = Vec::with_capacity(v.len());
    let (mut i, mut j) = (0, mid);
    while i < mid && j < v.len() {
        if cmp(&v[j], &v[i]) == std::cmp::Ordering::Less {
            out.push(v[j]);
            j += 1;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&v[i..mid]);
    out.extend_from_slice(&v[j..]);
    v.copy_from_slice(&out);
}
