//! Action creation and ordering: per-resource actions, collective pseudo actions, fencing,
//! and flag propagation along orderings until nothing changes.

use std::collections::BTreeSet;

use crate::cib::{OrderKind, Role};

use super::constraints::Constraints;
use super::unpack::{Kind, Requires, World};
use super::{Action, ActionKind, Edge};

pub(crate) const IMPLIES_THEN: u8 = 1;
pub(crate) const IMPLIES_FIRST: u8 = 2;
pub(crate) const RUNNABLE_LEFT: u8 = 4;
pub(crate) const RESTART: u8 = 8;
/// Asymmetric mandatory order: an unrunnable first blocks a then that is required.
pub(crate) const ASYMMETRIC: u8 = 16;
/// The first action is a clone's collective action judged on the then action's node only:
/// it implies the then action only when an instance there is required.
pub(crate) const NODE_LOCAL_FIRST: u8 = 32;
/// A required first action that cannot run blocks the then action.
pub(crate) const REQUIRED_FIRST_BLOCKS: u8 = 64;

pub(crate) struct Builder<'a> {
    pub(crate) w: &'a World,
    pub(crate) actions: Vec<Action>,
    pub(crate) edges: Vec<Edge>,
    /// Pseudo actions that are runnable when at least `min` of their inputs are.
    pub(crate) one_or_more: Vec<(usize, Vec<usize>, usize)>,
    /// Actions by (resource, kind).
    pub(crate) index: std::collections::BTreeMap<(usize, ActionKind), Vec<usize>>,
    /// Orderings out of and into each action (filled when propagation starts).
    pub(crate) edges_out: Vec<Vec<usize>>,
    pub(crate) edges_in: Vec<Vec<usize>>,
}

impl Builder<'_> {
    fn add(&mut self, a: Action) -> usize {
        let id = self.actions.len();
        if let Some(r) = a.rsc {
            self.index.entry((r, a.kind)).or_default().push(id);
        }
        self.actions.push(a);
        id
    }

    /// Adds an action (for passes outside this module).
    pub(crate) fn push_action(&mut self, a: Action) -> usize {
        self.add(a)
    }

    /// Adds a plain ordering (for passes outside this module).
    pub(crate) fn push_edge(&mut self, first: usize, then: usize) {
        self.edge(first, then, 0);
    }

    pub(crate) fn find(&self, rsc: usize, kind: ActionKind, node: Option<usize>) -> Option<usize> {
        self.index.get(&(rsc, kind))?.iter().copied().find(|&a| node.is_none() || self.actions[a].node == node)
    }

    fn edge(&mut self, first: usize, then: usize, flags: u8) {
        self.edges.push(Edge { first, then, flags });
    }

    fn new_action(&self, rsc: Option<usize>, node: Option<usize>, kind: ActionKind, optional: bool) -> Action {
        Action {
            id: self.actions.len(),
            rsc,
            node,
            kind,
            interval_ms: 0,
            optional,
            runnable: true,
            pseudo: false,
            reason: None,
            label: String::new(),
        }
    }

    pub(crate) fn build(&mut self, c: &Constraints) {
        let w = self.w;
        // Fencing.
        // Without quorum a node can still be fenced while it is in our membership (online).
        let can_fence = |online: bool| {
            w.props.fencing_enabled
                && (w.quorate || matches!(w.props.no_quorum_policy.as_str(), "ignore" | "fence") || online)
        };
        let mut fences = Vec::new();
        for (n, node) in w.nodes.iter().enumerate().rev() {
            if node.unclean && node.fence_reason.is_some() && can_fence(node.online) {
                let mut a = self.new_action(None, Some(n), ActionKind::Fence, false);
                a.reason = node.fence_reason.clone();
                a.label = format!("stonith-{}-{}", node.name, w.props.fencing_action);
                fences.push(self.add(a));
            }
        }
        let fenced = |n: usize, b: &Builder<'_>| fences.iter().any(|&f| b.actions[f].node == Some(n));
        // Per-leaf actions.
        for (l, r) in w.rscs.iter().enumerate() {
            if r.kind != Kind::Primitive {
                continue;
            }
            let managed = w.actionable(l);
            let next = r.assigned;
            let multi = r.running.len() > 1;
            let mut stop_ids = Vec::new();
            for &n in &r.running {
                let needed =
                    next != Some(n) || r.failed || multi || r.next_role == Role::Stopped || r.restart_on.contains(&n);
                let mut a = self.new_action(Some(l), Some(n), ActionKind::Stop, !needed);
                if w.nodes[n].unclean {
                    a.pseudo = true;
                    if !fenced(n, self) {
                        a.runnable = false;
                    }
                }
                if !managed {
                    a.runnable = false;
                    a.optional = true;
                }
                if next.is_none() && r.inhibited_on.is_none() {
                    a.reason = Some("node availability".into());
                } else if multi
                    && next != Some(n)
                    && r.meta.get("multiple-active").is_some_and(|v| v == "stop_unexpected")
                {
                    // With multiple-active=stop_unexpected only the unexpected copies stop,
                    // and Pacemaker names the cause.
                    a.reason = Some("being multiply active".into());
                }
                let id = self.add(a);
                if let Some(f) = fences.iter().copied().find(|&f| self.actions[f].node == Some(n)) {
                    self.edge(f, id, 0);
                }
                stop_ids.push((n, id));
                if r.role == Role::Promoted {
                    let keep = !needed && r.next_role == Role::Promoted && !r.demote_failed;
                    let mut d = self.new_action(Some(l), Some(n), ActionKind::Demote, keep);
                    if w.nodes[n].unclean {
                        d.pseudo = true;
                    }
                    if !managed {
                        d.runnable = false;
                        d.optional = true;
                    }
                    let did = self.add(d);
                    self.edge(did, id, IMPLIES_FIRST);
                }
            }
            if let Some(n) = next {
                let running_here = r.running.contains(&n);
                let restart = r.restart_on.contains(&n);
                let mut a = self.new_action(
                    Some(l),
                    Some(n),
                    ActionKind::Start,
                    running_here && !r.failed && !multi && !restart,
                );
                let node = &w.nodes[n];
                if !node.can_host() {
                    a.runnable = false;
                }
                if !managed {
                    a.runnable = running_here && !r.blocked && !r.failed;
                    a.optional = true;
                }
                let needs_quorum = r.requires != Requires::Nothing;
                let in_promotable = w.clone_of(l).is_some_and(|c| w.rscs[c].clone.promotable);
                let policy = w.props.no_quorum_policy.as_str();
                if !w.quorate && (needs_quorum || (policy == "demote" && !in_promotable)) {
                    match policy {
                        "ignore" => {}
                        "freeze" => {
                            if !running_here {
                                a.runnable = false;
                                a.reason = Some("quorum freeze".into());
                            }
                        }
                        "demote" if in_promotable => {
                            if !running_here {
                                a.runnable = false;
                                a.reason = Some("no quorum".into());
                            }
                        }
                        _ => {
                            a.runnable = false;
                            a.optional = false;
                            a.reason = Some("no quorum".into());
                        }
                    }
                }
                let sid = self.add(a);
                for &(sn, stop) in &stop_ids {
                    if sn == n && !managed {
                        // Nothing restarts an unmanaged resource: its start being wanted
                        // does not make its stop required.
                        self.edge(stop, sid, IMPLIES_THEN);
                    } else if sn == n {
                        self.edge(stop, sid, IMPLIES_THEN | IMPLIES_FIRST | RESTART);
                    } else {
                        self.edge(stop, sid, 0);
                    }
                }
                if r.requires == Requires::Fencing {
                    for &f in &fences {
                        self.edge(f, sid, 0);
                    }
                }
                // Recurring monitors for the role the resource will have.
                let mut role_monitors = Vec::new();
                let applies_to = |role: Option<Role>, to: Role| match role {
                    Some(Role::Promoted) => to == Role::Promoted,
                    Some(Role::Unpromoted) => to == Role::Unpromoted,
                    Some(Role::Stopped) => false,
                    Some(Role::Started) => to == Role::Started,
                    _ => to != Role::Promoted,
                };
                // Monitors of the current role keep running through a role change when the new
                // role's monitor has the same interval (it is the same operation).
                let current_intervals: BTreeSet<u64> = if running_here && r.role != r.next_role {
                    w.op_enabled_monitors(l)
                        .into_iter()
                        .filter(|&(_, ro)| applies_to(ro, r.role))
                        .map(|(i, _)| i)
                        .collect()
                } else {
                    BTreeSet::new()
                };
                // Resources the cluster may not act on get their monitors below.
                let monitors = if managed { w.op_enabled_monitors(l) } else { Vec::new() };
                for (interval, role) in monitors {
                    let applies = match role {
                        Some(Role::Promoted) => r.next_role == Role::Promoted,
                        Some(Role::Unpromoted) => r.next_role == Role::Unpromoted,
                        Some(Role::Stopped) => false,
                        // An explicit Started role is the role of a resource that is not
                        // promotable: an unpromoted instance does not have it.
                        Some(Role::Started) => r.next_role == Role::Started,
                        _ => r.next_role != Role::Promoted,
                    };
                    if applies {
                        // A recurring monitor not recorded since the resource last started
                        // there is scheduled even when the resource stays put.
                        let recorded = running_here && r.recurring_on.contains(&(n, interval));
                        let start_optional = self.actions[sid].optional && (recorded || !running_here);
                        let mut m = self.new_action(Some(l), Some(n), ActionKind::Monitor, start_optional);
                        m.interval_ms = interval;
                        let mid = self.add(m);
                        self.edge(sid, mid, IMPLIES_THEN | RUNNABLE_LEFT);
                        if !current_intervals.contains(&interval) {
                            role_monitors.push(mid);
                        }
                    }
                }
                // A change of role on this node (a promotion, or a demotion that keeps the
                // instance running) needs the monitor of the new role, after that change.
                if r.next_role == Role::Unpromoted
                    && let Some(d) = self.find(l, ActionKind::Demote, Some(n))
                {
                    for &mid in &role_monitors {
                        self.edge(d, mid, IMPLIES_THEN | RUNNABLE_LEFT);
                    }
                }
                if r.next_role == Role::Promoted {
                    let promoted_here = r.role == Role::Promoted && running_here && !r.failed && !r.demote_failed;
                    let mut p = self.new_action(Some(l), Some(n), ActionKind::Promote, promoted_here);
                    if !managed {
                        p.runnable = false;
                        p.optional = true;
                    }
                    if !w.quorate && needs_quorum && w.props.no_quorum_policy != "ignore" {
                        p.runnable = false;
                    }
                    let pid = self.add(p);
                    self.edge(sid, pid, IMPLIES_THEN | RUNNABLE_LEFT);
                    for &mid in &role_monitors {
                        self.edge(pid, mid, IMPLIES_THEN | RUNNABLE_LEFT);
                    }
                    // A demote on the same node, when required, means re-promotion.
                    if let Some(d) = self.find(l, ActionKind::Demote, Some(n)) {
                        self.edge(d, pid, IMPLIES_THEN);
                    }
                }
            } else if let Some(n) = r.inhibited_on {
                // An instance unassigned for want of an interleaving partner keeps the start
                // it would have had, unrunnable: stopping it still counts as a restart for
                // the clone's dependents.
                let mut a = self.new_action(Some(l), Some(n), ActionKind::Start, true);
                a.runnable = false;
                let sid = self.add(a);
                for &(sn, stop) in &stop_ids {
                    let flags = if sn == n { IMPLIES_THEN | IMPLIES_FIRST | RESTART } else { 0 };
                    self.edge(stop, sid, flags);
                }
            } else if r.running.is_empty() {
                continue;
            }
        }
        self.add_probes(c);
        self.add_stopped_monitors();
        self.add_unmanaged_monitors();
        // Inside a promotable clone, demotions happen before promotions.
        for (c, r) in w.rscs.iter().enumerate() {
            if r.kind != Kind::Clone || !r.clone.promotable {
                continue;
            }
            let demotes = self.leaf_actions(c, ActionKind::Demote);
            let promotes = self.leaf_actions(c, ActionKind::Promote);
            for &d in &demotes {
                for &p in &promotes {
                    if self.actions[d].rsc != self.actions[p].rsc {
                        self.edge(d, p, 0);
                    }
                }
            }
        }
        // Collective pseudo actions.
        for (g, r) in w.rscs.iter().enumerate() {
            if r.kind == Kind::Primitive {
                continue;
            }
            let mut ids = [0usize; 4];
            for (k, kind) in
                [ActionKind::Start, ActionKind::Running, ActionKind::Stop, ActionKind::Stopped].into_iter().enumerate()
            {
                let mut a = self.new_action(Some(g), None, kind, true);
                a.pseudo = true;
                ids[k] = self.add(a);
            }
            let [start, running, stop, stopped] = ids;
            for &ch in &r.children {
                for (kind, pre, post) in [(ActionKind::Start, start, running), (ActionKind::Stop, stop, stopped)] {
                    let child_actions: Vec<usize> = if w.rscs[ch].kind == Kind::Primitive {
                        self.all(ch, kind)
                    } else {
                        self.find(ch, kind, None).into_iter().collect()
                    };
                    let child_done: Vec<usize> = if w.rscs[ch].kind == Kind::Primitive {
                        child_actions.clone()
                    } else {
                        let dk = if kind == ActionKind::Start { ActionKind::Running } else { ActionKind::Stopped };
                        self.find(ch, dk, None).into_iter().collect()
                    };
                    for a in child_actions {
                        self.edge(pre, a, RUNNABLE_LEFT);
                    }
                    for a in child_done {
                        self.edge(a, post, 0);
                    }
                }
            }
            // Group members are ordered and depend on each other.
            if r.kind == Kind::Group {
                let members = r.children.clone();
                for pair in members.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    for sa in self.all(a, ActionKind::Start) {
                        for sb in self.all(b, ActionKind::Start) {
                            self.edge(sa, sb, IMPLIES_THEN | RUNNABLE_LEFT);
                        }
                    }
                    for tb in self.all(b, ActionKind::Stop) {
                        for ta in self.all(a, ActionKind::Stop) {
                            self.edge(tb, ta, IMPLIES_FIRST | RUNNABLE_LEFT);
                        }
                        // A later member restarts around an earlier member's start: it
                        // stops first, so a later member that cannot stop keeps the
                        // earlier one from starting on that node.
                        let node = self.actions[tb].node;
                        for sa in self.all(a, ActionKind::Start) {
                            if self.actions[sa].node == node {
                                self.edge(tb, sa, REQUIRED_FIRST_BLOCKS);
                            }
                        }
                    }
                }
            }
        }
        // An ordered clone starts its instances one after another, and stops them in the
        // reverse order.
        for r in w.rscs.iter().filter(|r| r.kind == Kind::Clone && r.clone.ordered) {
            let ends = |b: &Self, ch: usize, kind: ActionKind| -> (Vec<usize>, Vec<usize>) {
                if w.rscs[ch].kind == Kind::Primitive {
                    let a = b.all(ch, kind);
                    (a.clone(), a)
                } else {
                    let done = if kind == ActionKind::Start { ActionKind::Running } else { ActionKind::Stopped };
                    (b.find(ch, kind, None).into_iter().collect(), b.find(ch, done, None).into_iter().collect())
                }
            };
            for pair in r.children.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let (_, a_started) = ends(self, a, ActionKind::Start);
                let (b_start, _) = ends(self, b, ActionKind::Start);
                let (a_stop, _) = ends(self, a, ActionKind::Stop);
                let (_, b_stopped) = ends(self, b, ActionKind::Stop);
                for &x in &a_started {
                    for &y in &b_start {
                        self.edge(x, y, 0);
                    }
                }
                for &x in &b_stopped {
                    for &y in &a_stop {
                        self.edge(x, y, 0);
                    }
                }
            }
        }
        // Order constraints.
        for o in &c.orders {
            let sym = o.symmetrical && o.kind != OrderKind::Serialize;
            let mandatory = o.kind == OrderKind::Mandatory;
            let fa = o.first_action.as_str();
            let ta = o.then_action.as_str();
            let mut fwd = 0;
            if mandatory {
                fwd |= IMPLIES_THEN;
                if matches!(fa, "start" | "promote" | "stop" | "demote") {
                    fwd |= RUNNABLE_LEFT;
                }
                if !sym {
                    fwd = ASYMMETRIC;
                }
            }
            let interleave = w.rscs[o.first].kind == Kind::Clone
                && w.rscs[o.then].kind == Kind::Clone
                && w.rscs[o.then].clone.interleave
                // An ordering that needs only some instances of the first clone
                // (require-all=false or the clone's clone-min) relates whole clones in
                // both directions: it is never interleaved.
                && o.min_first.is_none()
                && w.rscs[o.first].clone.min == 0;
            if o.any_of.len() > 1 {
                let mut inputs = Vec::new();
                for &f in &o.any_of {
                    inputs.extend(self.first_side(f, fa));
                }
                let mut a = self.new_action(Some(o.first), None, ActionKind::OneOrMore, true);
                a.pseudo = true;
                a.label = format!("one-or-more:{}", o.id);
                let p = self.add(a);
                for &i in &inputs {
                    self.edge(i, p, 0);
                }
                self.one_or_more.push((p, inputs, 1));
                for t in self.then_side(o.then, ta) {
                    self.edge(p, t, fwd);
                }
            } else {
                self.order(o.first, fa, o.then, ta, fwd, o.min_first, interleave, &o.id);
            }
            if sym && let (Some(rf), Some(rt)) = (invert(fa), invert(ta)) {
                let back = if mandatory {
                    IMPLIES_FIRST | if matches!(rf, "stop" | "demote") { RUNNABLE_LEFT } else { 0 }
                } else {
                    0
                };
                self.order(o.then, rt, o.first, rf, back, None, interleave, &o.id);
            }
        }
        // Unclean nodes: starts elsewhere wait for fencing (already edged); stops on
        // unclean nodes become runnable only through fencing.
        self.add_reloads();
        self.propagate(c);
        self.drop_superseded_reloads();
        self.add_notifications();
    }

    /// A resource whose definition changed only in parameters its agent can take without a
    /// restart is reloaded where it runs and stays, before the monitors issued again there
    /// with the new parameters.
    fn add_reloads(&mut self) {
        let w = self.w;
        for (l, r) in w.rscs.iter().enumerate() {
            if r.kind != Kind::Primitive || r.reload_on.is_empty() || !w.actionable(l) || r.failed {
                continue;
            }
            let Some(n) = r.assigned else { continue };
            if !r.reload_on.contains(&n) || !r.running.contains(&n) || !w.nodes[n].can_host() {
                continue;
            }
            let reload = self.new_action(Some(l), Some(n), ActionKind::Reload, false);
            let id = self.add(reload);
            let monitors: Vec<usize> = self
                .all(l, ActionKind::Monitor)
                .into_iter()
                .filter(|&m| self.actions[m].node == Some(n) && self.actions[m].interval_ms > 0)
                .collect();
            for m in monitors {
                self.edge(id, m, 0);
            }
        }
    }

    /// A reload is dropped when the resource stops or restarts there anyway: the new start
    /// takes the new definition.
    fn drop_superseded_reloads(&mut self) {
        let reloads: Vec<usize> =
            (0..self.actions.len()).filter(|&a| self.actions[a].kind == ActionKind::Reload).collect();
        for a in reloads {
            let (Some(l), node) = (self.actions[a].rsc, self.actions[a].node) else { continue };
            let required = |k: ActionKind| self.find(l, k, node).is_some_and(|x| !self.actions[x].optional);
            if required(ActionKind::Stop) || required(ActionKind::Start) {
                self.actions[a].optional = true;
            }
        }
    }

    /// Start-up probes: a one-off monitor wherever a resource's state on an active node is
    /// unknown (no history there). Anonymous clones probe one instance per node (the one
    /// assigned there, else the first). A probe precedes the start of the resource (of the
    /// whole clone for instances); a probe that cannot run (the node is still pending)
    /// blocks that start when the resource runs nowhere, since it might be active there.
    fn add_probes(&mut self, c: &Constraints) {
        let w = self.w;
        let nodes: Vec<usize> = (0..w.nodes.len()).filter(|&n| w.nodes[n].online && !w.nodes[n].unclean).collect();
        for &t in &w.top {
            let leaves = w.leaves(t);
            let is_clone = w.rscs[t].kind == Kind::Clone;
            // A probe blocks the start only of something running nowhere.
            let clone_running_nowhere = leaves.iter().all(|&x| w.rscs[x].running.is_empty());
            let clone_start: Vec<usize> =
                if is_clone { self.find(t, ActionKind::Start, None).into_iter().collect() } else { Vec::new() };
            let anonymous = is_clone && !w.rscs[t].clone.unique;
            // Anonymous clones: where any instance is known, and which instance is placed where.
            let known: BTreeSet<usize> = if anonymous {
                leaves.iter().flat_map(|&l| w.rscs[l].known_on.iter().copied()).collect()
            } else {
                BTreeSet::new()
            };
            for &n in &nodes {
                let targets = if anonymous {
                    if known.contains(&n) {
                        continue;
                    }
                    let instances = &w.rscs[t].children;
                    let chosen = instances
                        .iter()
                        .copied()
                        .find(|&i| w.leaves(i).iter().any(|&l| w.rscs[l].assigned == Some(n)))
                        .or_else(|| {
                            instances.iter().copied().find(|&i| !w.leaves(i).iter().any(|&l| w.rscs[l].orphan))
                        });
                    chosen.map(|i| self.probe_targets(i, n, c)).unwrap_or_default()
                } else {
                    self.probe_targets(t, n, c)
                };
                let pending = w.nodes[n].pending;
                for l in targets {
                    let mut probe = self.new_action(Some(l), Some(n), ActionKind::Monitor, false);
                    probe.runnable = !pending;
                    let pid = self.add(probe);
                    let (running_nowhere, starts) = if is_clone {
                        (clone_running_nowhere, clone_start.clone())
                    } else {
                        (w.rscs[l].running.is_empty(), self.all(l, ActionKind::Start))
                    };
                    let flags = if pending && running_nowhere { RUNNABLE_LEFT } else { 0 };
                    for s in starts {
                        self.edge(pid, s, flags);
                    }
                    // The clone's own start is made later: order the probe before every
                    // instance start too (a pure ordering), so nothing starts before the
                    // cluster knows where the clone already runs.
                    if is_clone {
                        for s in self.leaf_actions(t, ActionKind::Start) {
                            self.edge(pid, s, 0);
                        }
                    }
                    // A clone whose state on a pending node is unknown starts no new
                    // instance anywhere: that node may already run one.
                    if is_clone && pending {
                        for s in self.leaf_actions(t, ActionKind::Start) {
                            let new_copy = match (self.actions[s].rsc, self.actions[s].node) {
                                (Some(r), Some(sn)) => !w.rscs[r].running.contains(&sn),
                                _ => false,
                            };
                            if new_copy {
                                self.edge(pid, s, RUNNABLE_LEFT);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The leaves under `r` (a primitive, group or unique clone instance tree) that need a
    /// probe on node `n`: those with no history there.
    /// Monitors configured for the Stopped role watch that a resource stays inactive: on
    /// every online node where it will not run, one must be active. It is scheduled where the
    /// resource stops in this transition (after the stop) and where none is recorded yet.
    fn add_stopped_monitors(&mut self) {
        let w = self.w;
        for (l, r) in w.rscs.iter().enumerate() {
            if r.kind != Kind::Primitive || !w.actionable(l) || r.orphan {
                continue;
            }
            let intervals: Vec<u64> = w
                .op_enabled_monitors(l)
                .into_iter()
                .filter(|&(_, role)| role == Some(Role::Stopped))
                .map(|(i, _)| i)
                .collect();
            if intervals.is_empty() {
                continue;
            }
            for n in 0..w.nodes.len() {
                let node = &w.nodes[n];
                if !node.online || node.unclean || r.assigned == Some(n) {
                    continue;
                }
                let stop = self.find(l, ActionKind::Stop, Some(n)).filter(|&s| !self.actions[s].optional);
                let probe = self
                    .all(l, ActionKind::Monitor)
                    .into_iter()
                    .find(|&p| self.actions[p].node == Some(n) && self.actions[p].interval_ms == 0);
                for &interval in &intervals {
                    if stop.is_none() && r.recurring_on.contains(&(n, interval)) {
                        continue;
                    }
                    if stop.is_none() && r.running.contains(&n) {
                        continue;
                    }
                    let mut m = self.new_action(Some(l), Some(n), ActionKind::Monitor, false);
                    m.interval_ms = interval;
                    let mid = self.add(m);
                    if let Some(s) = stop {
                        self.edge(s, mid, RUNNABLE_LEFT);
                    }
                    if let Some(p) = probe {
                        self.edge(p, mid, 0);
                    }
                }
            }
        }
    }

    /// A resource the cluster may not start or stop (unmanaged, or blocked by a failure) is
    /// still monitored where it runs, unless it is in maintenance: a recurring monitor of its
    /// current role that is not recorded there is scheduled.
    fn add_unmanaged_monitors(&mut self) {
        let w = self.w;
        for (l, r) in w.rscs.iter().enumerate() {
            if r.kind != Kind::Primitive || w.actionable(l) || r.orphan || r.running.len() != 1 {
                continue;
            }
            let in_maintenance = w.props.maintenance_mode
                || r.meta.get("maintenance").is_some_and(|v| super::unpack::truthy(v))
                || w.nodes[r.running[0]].maintenance;
            let n = r.running[0];
            if in_maintenance || !w.nodes[n].online || w.nodes[n].unclean {
                continue;
            }
            for (interval, role) in w.op_enabled_monitors(l) {
                let applies = match role {
                    Some(Role::Promoted) => r.role == Role::Promoted,
                    Some(Role::Unpromoted) => r.role == Role::Unpromoted,
                    Some(Role::Stopped) => false,
                    Some(Role::Started) => r.role == Role::Started,
                    _ => r.role != Role::Promoted,
                };
                if applies && !r.recurring_on.contains(&(n, interval)) {
                    let mut m = self.new_action(Some(l), Some(n), ActionKind::Monitor, false);
                    m.interval_ms = interval;
                    self.add(m);
                }
            }
        }
    }

    fn probe_targets(&self, r: usize, n: usize, c: &Constraints) -> Vec<usize> {
        let w = self.w;
        let rs = &w.rscs[r];
        // A location with resource-discovery=never (or exclusive elsewhere) means no probe.
        let mut a = Some(r);
        while let Some(x) = a {
            if c.no_discovery.contains(&(x, n)) {
                return Vec::new();
            }
            a = w.rscs[x].parent;
        }
        match rs.kind {
            Kind::Primitive => {
                // A resource living in a container is only ever where its container is:
                // it is never probed on its own.
                if rs.orphan || rs.known_on.contains(&n) || w.container_of(r).is_some() { Vec::new() } else { vec![r] }
            }
            _ => rs.children.iter().flat_map(|&ch| self.probe_targets(ch, n, c)).collect(),
        }
    }

    fn all(&self, r: usize, kind: ActionKind) -> Vec<usize> {
        self.index.get(&(r, kind)).cloned().unwrap_or_default()
    }

    /// Actions of `kind` on every leaf under `r`.
    fn leaf_actions(&self, r: usize, kind: ActionKind) -> Vec<usize> {
        self.w.leaves(r).iter().flat_map(|&l| self.all(l, kind)).collect()
    }

    /// The action(s) representing `task` of `r` as the first side of an ordering.
    fn first_side(&mut self, r: usize, task: &str) -> Vec<usize> {
        let kind = match task {
            "start" => ActionKind::Start,
            "stop" => ActionKind::Stop,
            "promote" => ActionKind::Promote,
            "demote" => ActionKind::Demote,
            _ => return Vec::new(),
        };
        if self.w.rscs[r].kind == Kind::Primitive {
            let v = self.all(r, kind);
            if v.is_empty() && kind == ActionKind::Start && !self.w.rscs[r].orphan {
                let mut a = self.new_action(Some(r), None, kind, true);
                a.runnable = false;
                let id = self.add(a);
                // Like every start, it follows the resource's stops ("stop then start"
                // implies the start): a resource that stops for good therefore has a
                // required but unrunnable start, which is what its dependents report
                // ("required X start").
                for stop in self.all(r, ActionKind::Stop) {
                    self.edge(stop, id, IMPLIES_THEN);
                }
                return vec![id];
            }
            return v;
        }
        let done = match kind {
            ActionKind::Start => ActionKind::Running,
            ActionKind::Stop => ActionKind::Stopped,
            _ => {
                // promote/demote of a collective: its leaves' actions.
                return self.w.leaves(r).iter().flat_map(|&l| self.all(l, kind)).collect();
            }
        };
        self.find(r, done, None).into_iter().collect()
    }

    /// Leaf actions representing `task` of `r` as the then side.
    fn then_side(&self, r: usize, task: &str) -> Vec<usize> {
        let kind = match task {
            "start" => ActionKind::Start,
            "stop" => ActionKind::Stop,
            "promote" => ActionKind::Promote,
            "demote" => ActionKind::Demote,
            _ => return Vec::new(),
        };
        let leaves = if matches!(kind, ActionKind::Start | ActionKind::Promote) {
            self.then_leaves(r)
        } else {
            self.w.leaves(r)
        };
        let mut v: Vec<usize> = leaves.iter().flat_map(|&l| self.all(l, kind)).collect();
        if self.w.rscs[r].kind != Kind::Primitive
            && let Some(p) = self.find(r, kind, None)
        {
            v.push(p);
        }
        v
    }

    /// The leaves a start or promote ordering reaches directly when `r` is its "then" side.
    /// Inside a cloned group only the group's first member is reached; the group's own
    /// ordering carries the effect on to the later members (so they report the member before
    /// them as the cause).
    fn then_leaves(&self, r: usize) -> Vec<usize> {
        let w = self.w;
        if w.rscs[r].kind == Kind::Clone {
            return w.rscs[r]
                .children
                .iter()
                .flat_map(|&i| match w.rscs[i].kind {
                    Kind::Group => w.rscs[i].children.first().copied().into_iter().collect(),
                    _ => w.leaves(i),
                })
                .collect();
        }
        w.leaves(r)
    }

    #[allow(clippy::too_many_arguments)]
    fn order(
        &mut self,
        f: usize,
        fa: &str,
        t: usize,
        ta: &str,
        flags: u8,
        min: Option<usize>,
        interleave: bool,
        id: &str,
    ) {
        if interleave {
            // Instance by instance, matched by node.
            let fi = self.w.rscs[f].children.clone();
            let ti = self.w.rscs[t].children.clone();
            for &b in &ti {
                let bn = self.w.rscs[b]
                    .assigned
                    .or_else(|| self.w.leaves(b).iter().find_map(|&l| self.w.rscs[l].running.first().copied()));
                for &a in &fi {
                    let an = self.w.rscs[a]
                        .assigned
                        .or_else(|| self.w.leaves(a).iter().find_map(|&l| self.w.rscs[l].running.first().copied()));
                    if an.is_some() && an == bn {
                        self.order(a, fa, b, ta, flags, None, false, id);
                    }
                }
            }
            return;
        }
        let mut firsts = self.first_side(f, fa);
        if let Some(min) = min.or_else(|| {
            let cm = self.w.rscs[f].clone.min;
            (self.w.rscs[f].kind == Kind::Clone && cm > 0).then_some(cm)
        }) && self.w.rscs[f].kind == Kind::Clone
        {
            // one-or-more: a pseudo action runnable when enough instances are.
            let kind = if fa == "start" { ActionKind::Start } else { ActionKind::Stop };
            let inputs: Vec<usize> = self.w.leaves(f).iter().flat_map(|&l| self.all(l, kind)).collect();
            let mut a = self.new_action(Some(f), None, ActionKind::OneOrMore, true);
            a.pseudo = true;
            a.label = format!("clone-one-or-more:{id}");
            let p = self.add(a);
            for &i in &inputs {
                self.edge(i, p, 0);
            }
            self.one_or_more.push((p, inputs, min.max(1)));
            firsts = vec![p];
        }
        let thens = self.then_side(t, ta);
        // When a clone is the "then" of an ordering with something that is not a clone,
        // Pacemaker judges the clone's action by its instances on the first action's node:
        // an instance required elsewhere does not make the first action required.
        let node_local = self.w.rscs[t].kind == Kind::Clone && self.w.rscs[f].kind != Kind::Clone;
        // Likewise a clone that comes first is judged on the then action's node.
        let first_collective = self.w.rscs[f].kind == Kind::Clone && self.w.rscs[t].kind != Kind::Clone;
        for &a in &firsts {
            for &b in &thens {
                let (na, nb) = (self.actions[a].node, self.actions[b].node);
                let elsewhere = node_local && na.is_some() && nb.is_some() && na != nb;
                let mut fl = if elsewhere { flags & !IMPLIES_FIRST } else { flags };
                if first_collective && nb.is_some() {
                    fl |= NODE_LOCAL_FIRST;
                }
                self.edge(a, b, fl);
            }
        }
    }

    fn describe(&self, a: usize) -> String {
        let act = &self.actions[a];
        if !act.label.is_empty() && act.kind == ActionKind::OneOrMore {
            return act.label.clone();
        }
        let rsc = act.rsc.map(|r| self.w.rscs[r].id.clone()).unwrap_or_default();
        format!("{rsc} {}", act.kind.task())
    }

    /// Flag propagation to a fixed point.
    fn set_reason(&mut self, target: usize, cause: usize, verb: &str, replace_required: bool) {
        if self.actions[target].rsc == self.actions[cause].rsc {
            return;
        }
        let cur = self.actions[target].reason.as_deref();
        if cur.is_none() || (replace_required && cur.is_some_and(|r| r.starts_with("required"))) {
            let text = format!("{verb} {}", self.describe(cause));
            self.actions[target].reason = Some(text);
        }
    }

    /// Flag propagation to a fixed point. Each ordering applies its implications in the
    /// order Pacemaker applies them (first implies then, restart, then implies first, then
    /// unrunnable first blocks then), and an action keeps the first reason it was given:
    /// that is what decides between "required X" and "unrunnable X" in the summary.
    fn propagate(&mut self, c: &Constraints) {
        let mut restarts: Vec<Vec<usize>> = vec![Vec::new(); self.actions.len()];
        let mut outs: Vec<Vec<usize>> = vec![Vec::new(); self.actions.len()];
        for (e, edge) in self.edges.iter().enumerate() {
            if edge.flags & RESTART != 0 {
                restarts[edge.then].push(e);
            }
            outs[edge.first].push(e);
        }
        self.edges_out = outs.clone();
        self.edges_in = vec![Vec::new(); self.actions.len()];
        for (e, edge) in self.edges.iter().enumerate() {
            self.edges_in[edge.then].push(e);
        }
        let idx = EdgeIndex { restarts, outs };
        for _ in 0..200 {
            let mut changed = self.update_collectives();
            for e in 0..self.edges.len() {
                let then = self.edges[e].then;
                let was_runnable = self.actions[then].runnable;
                changed |= self.apply_edge(e);
                if was_runnable && !self.actions[then].runnable {
                    self.became_unrunnable(then, c, &idx);
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Consequences of an action becoming unrunnable, applied at once (Pacemaker
    /// re-evaluates an action as soon as it changes, before other orderings can give the
    /// actions involved a reason): its own stop becomes required (and a required stop in
    /// turn makes the start required), and mandatory colocation dependents are blocked.
    fn became_unrunnable(&mut self, a: usize, c: &Constraints, idx: &EdgeIndex) {
        let was_optional = self.actions[a].optional;
        for &r in &idx.restarts[a] {
            while self.apply_edge(r) {}
        }
        // A member of a group or clone whose start just became required through its own
        // restart passes that on at once (so a later member is first required by this one,
        // then blocked).
        if was_optional
            && !self.actions[a].optional
            && self.actions[a].rsc.is_some_and(|r| self.w.rscs[r].parent.is_some())
        {
            for &e in &idx.outs[a] {
                let then = self.edges[e].then;
                let was_runnable = self.actions[then].runnable;
                self.apply_edge(e);
                if was_runnable && !self.actions[then].runnable {
                    self.became_unrunnable(then, c, idx);
                }
            }
        }
        self.block_colocation_dependents(a, c, idx);
    }

    /// A resource that cannot start (or be promoted) anywhere takes its mandatory
    /// colocation dependents with it: their starts (or promotions, for colocations with the
    /// promoted role) become unrunnable "due to colocation with" it. A collective counts as
    /// unable only when none of its children can.
    fn block_colocation_dependents(&mut self, a: usize, c: &Constraints, idx: &EdgeIndex) {
        let kind = self.actions[a].kind;
        if self.actions[a].runnable || !matches!(kind, ActionKind::Start | ActionKind::Promote) {
            return;
        }
        let Some(r) = self.actions[a].rsc else { return };
        let w = self.w;
        let top = w.top_of(r);
        for &ch in &w.rscs[top].children {
            let child_action = if w.rscs[ch].kind == Kind::Primitive {
                self.find(ch, kind, None)
            } else {
                w.leaves(ch).first().and_then(|&l| self.find(l, kind, None))
            };
            if child_action.is_none_or(|x| self.actions[x].runnable) {
                return;
            }
        }
        let reason_rsc = if w.rscs[top].kind == Kind::Group { top } else { r };
        let reason = format!("colocation with {}", w.rscs[reason_rsc].id);
        let deps: Vec<(usize, ActionKind)> = c
            .by_primary(top)
            .filter(|co| co.primary == top && co.score == crate::score::Score::INF)
            .filter(|co| kind == ActionKind::Start || co.prim_role == Some(Role::Promoted))
            .map(|co| {
                let task = if co.dep_role == Some(Role::Promoted) { ActionKind::Promote } else { ActionKind::Start };
                (co.dependent, task)
            })
            .collect();
        for (d, task) in deps {
            let mut targets = self.all(d, task);
            for l in w.leaves(d) {
                if l != d {
                    targets.extend(self.all(l, task));
                }
            }
            for t in targets {
                if self.actions[t].runnable {
                    self.actions[t].runnable = false;
                    if self.actions[t].reason.is_none() {
                        self.actions[t].reason = Some(reason.clone());
                    }
                    self.became_unrunnable(t, c, idx);
                }
            }
        }
    }

    /// Whether `first` counts as required for `then`: a collective action marked node-local
    /// counts only through its instances' actions on `then`'s node.
    fn required_for(&self, first: usize, then: usize, flags: u8) -> bool {
        if flags & NODE_LOCAL_FIRST == 0 {
            return !self.actions[first].optional;
        }
        // Judged live from the instances (like Pacemaker's collective action flags), not from
        // the collective action's own flag, which is only summarised between sweeps.
        let (Some(c), Some(node)) = (self.actions[first].rsc, self.actions[then].node) else {
            return !self.actions[first].optional;
        };
        let kind = match self.actions[first].kind {
            ActionKind::Running => ActionKind::Start,
            ActionKind::Stopped => ActionKind::Stop,
            k => k,
        };
        self.leaf_actions(c, kind).iter().any(|&x| !self.actions[x].optional && self.actions[x].node == Some(node))
    }

    /// A stop that just became required makes the stops that must directly precede it
    /// required at once, so they name it as their cause. This goes one step only: an
    /// action that changes has the orderings into it re-evaluated, but the earlier actions
    /// they changed are followed up later, in the regular sweep (by which time a stop
    /// further up may already be required by its own restart, without a cause).
    fn require_earlier_stops(&mut self, stop: usize) {
        let incoming: Vec<usize> = self
            .edges_in
            .get(stop)
            .into_iter()
            .flatten()
            .map(|&e| self.edges[e])
            .filter(|e| e.flags & IMPLIES_FIRST != 0)
            .map(|e| e.first)
            .collect();
        for f in incoming {
            if self.actions[f].optional && self.actions[f].kind == ActionKind::Stop {
                self.actions[f].optional = false;
                self.set_reason(f, stop, "required", false);
            }
        }
    }

    /// An action that just became required passes that on at once along the orderings
    /// out of it that imply their then action, depth first, so each names the action
    /// before it as its cause.
    fn require_following(&mut self, a: usize, depth: usize) {
        if depth > 64 {
            return;
        }
        let outs: Vec<(usize, u8)> = self
            .edges_out
            .get(a)
            .into_iter()
            .flatten()
            .map(|&e| self.edges[e])
            .filter(|e| e.flags & IMPLIES_THEN != 0)
            .map(|e| (e.then, e.flags))
            .collect();
        for (t, flags) in outs {
            if self.actions[t].optional && self.required_for(a, t, flags) {
                self.actions[t].optional = false;
                self.set_reason(t, a, "required", false);
                self.require_following(t, depth + 1);
            }
        }
    }

    fn apply_edge(&mut self, e: usize) -> bool {
        let Edge { first, then, flags } = self.edges[e];
        let mut changed = false;
        if flags & IMPLIES_THEN != 0 && self.required_for(first, then, flags) && self.actions[then].optional {
            self.actions[then].optional = false;
            self.set_reason(then, first, "required", false);
            changed = true;
            self.require_following(then, 0);
        }
        if flags & RESTART != 0 && !self.actions[then].runnable && self.actions[first].optional {
            self.actions[first].optional = false;
            changed = true;
            // A required start that cannot run stops the resource for good; a start that
            // was never required only gives up the resource's place, which its stop's
            // predecessors learn about later.
            if self.actions[first].kind == ActionKind::Stop && !self.actions[then].optional {
                self.require_earlier_stops(first);
            }
        }
        if flags & IMPLIES_FIRST != 0 && !self.actions[then].optional && self.actions[first].optional {
            self.actions[first].optional = false;
            self.set_reason(first, then, "required", false);
            changed = true;
            if self.actions[first].kind == ActionKind::Stop {
                self.require_earlier_stops(first);
            }
        }
        // A stop nobody needs yet is not blocked (and takes no cause) until it is required:
        // it then names whatever required it first.
        let unneeded_stop = self.actions[then].optional && self.actions[then].kind == ActionKind::Stop;
        let blocks = (flags & RUNNABLE_LEFT != 0 && !unneeded_stop)
            || (flags & ASYMMETRIC != 0 && !self.actions[then].optional)
            || (flags & REQUIRED_FIRST_BLOCKS != 0 && !self.actions[first].optional);
        if blocks && !self.actions[first].runnable && self.actions[then].runnable {
            self.actions[then].runnable = false;
            self.set_reason(then, first, "unrunnable", false);
            changed = true;
        }
        changed
    }

    /// Collective pseudo actions: "running" is runnable when its members' starts are (all
    /// of a group's, any of a clone's), a one-or-more action when enough inputs are; they
    /// required as soon as a member action is. A one-or-more action only counts runnable
    /// inputs and never becomes required, so it never forces its dependents to restart.
    fn update_collectives(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.actions.len() {
            let a = &self.actions[i];
            if a.kind != ActionKind::Running || !a.runnable {
                continue;
            }
            let Some(r) = a.rsc else { continue };
            let children = self.leaf_actions(r, ActionKind::Start);
            let runnable = if self.w.rscs[r].kind == Kind::Group {
                // A group is running only when every member starts (a member that will not
                // start at all makes it unrunnable too).
                self.w.leaves(r).iter().all(|&l| {
                    let starts = self.all(l, ActionKind::Start);
                    !starts.is_empty() && starts.iter().all(|&c| self.actions[c].runnable)
                })
            } else {
                children.iter().any(|&c| self.actions[c].runnable)
            };
            if !runnable {
                self.actions[i].runnable = false;
                changed = true;
            }
        }
        for k in 0..self.one_or_more.len() {
            let (p, inputs, min) = self.one_or_more[k].clone();
            let n = inputs.iter().filter(|&&x| self.actions[x].runnable).count();
            if n < min && self.actions[p].runnable {
                self.actions[p].runnable = false;
                changed = true;
            }
        }
        for i in 0..self.actions.len() {
            let a = &self.actions[i];
            if !a.optional || !matches!(a.kind, ActionKind::Running | ActionKind::Stopped) {
                continue;
            }
            let Some(r) = a.rsc else { continue };
            let want = if a.kind == ActionKind::Stopped { ActionKind::Stop } else { ActionKind::Start };
            let req = self.leaf_actions(r, want).iter().any(|&x| !self.actions[x].optional);
            if req {
                self.actions[i].optional = false;
                changed = true;
            }
        }
        changed
    }
}

/// Orderings by action, for following a change at once.
struct EdgeIndex {
    /// "stop then start" orderings into each start.
    restarts: Vec<Vec<usize>>,
    /// Orderings out of each action.
    outs: Vec<Vec<usize>>,
}

fn invert(task: &str) -> Option<&'static str> {
    Some(match task {
        "start" => "stop",
        "stop" => "start",
        "promote" => "demote",
        "demote" => "promote",
        _ => return None,
    })
}
