//! The policy engine: `schedule(&cib, quorum, now)` → a transition graph plus the
//! Transition Summary. Phases: unpack, constraints, assignment (with promotion), actions and
//! ordering, summary.

mod actions;
mod assign;
mod constraints;
mod notify;
pub(crate) mod rules;
pub(crate) mod unpack;
mod view;

pub use view::{ClusterView, NodeView, RscView};

use std::collections::BTreeMap;

use crate::cib::{Cib, Role};
use crate::score::Score;

use unpack::{Kind, World};

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    /// Start a resource.
    Start,
    /// Stop a resource.
    Stop,
    /// Promote a resource.
    Promote,
    /// Demote a resource.
    Demote,
    /// Recurring or one-off monitor.
    Monitor,
    /// Fence a node.
    Fence,
    /// Pseudo: a collective finished starting.
    Running,
    /// Pseudo: a collective finished stopping.
    Stopped,
    /// Pseudo: enough instances of a clone are runnable.
    OneOrMore,
    /// Clone notification: to an instance on a node, or a pseudo action bracketing a
    /// round of notifications (see the action's label).
    Notify,
    /// Reload an active resource's agent with its changed parameters (all of them ones the
    /// agent can take without a restart): `reload-agent`.
    Reload,
}

impl ActionKind {
    /// The task name as Pacemaker spells it.
    pub fn task(self) -> &'static str {
        match self {
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::Promote => "promote",
            ActionKind::Demote => "demote",
            ActionKind::Monitor => "monitor",
            ActionKind::Fence => "fence",
            ActionKind::Running => "running",
            ActionKind::Stopped => "stopped",
            ActionKind::OneOrMore => "one-or-more",
            ActionKind::Notify => "notify",
            ActionKind::Reload => "reload-agent",
        }
    }
}

/// One action of the transition graph.
#[derive(Debug, Clone)]
pub struct Action {
    /// Index in [`Transition::actions`].
    pub id: usize,
    /// Resource index (see [`Transition::resource_name`]).
    pub rsc: Option<usize>,
    /// Node index (see [`Transition::node_name`]).
    pub node: Option<usize>,
    /// What to do.
    pub kind: ActionKind,
    /// Interval of a recurring monitor (ms).
    pub interval_ms: u64,
    /// Not needed unless something requires it.
    pub optional: bool,
    /// Can be executed.
    pub runnable: bool,
    /// Bookkeeping only (no executor work).
    pub pseudo: bool,
    /// Why it is required or blocked.
    pub reason: Option<String>,
    /// Display label for pseudo actions.
    pub label: String,
}

/// An ordering edge: `then` may start only after `first` completed.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    /// Earlier action.
    pub first: usize,
    /// Later action.
    pub then: usize,
    /// Implication flags (internal).
    pub flags: u8,
}

/// The scheduler's result.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Every action (optional ones are not executed).
    pub actions: Vec<Action>,
    /// Orderings between actions.
    pub edges: Vec<Edge>,
    /// Transition Summary lines, Pacemaker's format, without the leading `  * `.
    pub summary: Vec<String>,
    /// Names of resources by index.
    pub resource_names: Vec<String>,
    /// Names of nodes by index.
    pub node_names: Vec<String>,
    /// Node scores per resource: (resource, node, score).
    pub scores: Vec<(String, String, Score)>,
    /// Score contributions per resource, for `explain`.
    pub notes: BTreeMap<String, Vec<(String, String, Score)>>,
    /// Where each resource was placed and in which role.
    pub placement: Vec<(String, Option<String>, Role)>,
    /// The cluster as read from the CIB.
    pub current: ClusterView,
    /// The cluster once every runnable action of this transition succeeded.
    pub revised: ClusterView,
}

impl Transition {
    /// Actions that will execute (required and runnable, not pseudo).
    pub fn executable(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| !a.optional && a.runnable)
    }

    /// Resource name of an index.
    pub fn resource_name(&self, r: usize) -> &str {
        self.resource_names.get(r).map_or("", String::as_str)
    }

    /// Node name of an index.
    pub fn node_name(&self, n: usize) -> &str {
        self.node_names.get(n).map_or("", String::as_str)
    }
}

/// Runs the policy engine. `quorum` overrides the CIB's `have-quorum`; `now` is Unix seconds.
pub fn schedule(cib: &Cib, quorum: Option<bool>, now: i64) -> Transition {
    let mut w = World::build(cib, quorum, now);
    let cons = constraints::unpack(&w, cib);
    let notes = {
        let mut a = assign::Assigner { w: &mut w, c: &cons, notes: BTreeMap::new() };
        a.assign_all();
        a.notes
    };
    let mut b = actions::Builder {
        w: &w,
        actions: Vec::new(),
        edges: Vec::new(),
        one_or_more: Vec::new(),
        index: BTreeMap::new(),
        edges_out: Vec::new(),
        edges_in: Vec::new(),
    };
    b.build(&cons);
    let summary = summary_lines(&w, &b);
    let mut scores = Vec::new();
    let mut note_map: BTreeMap<String, Vec<(String, String, Score)>> = BTreeMap::new();
    for (r, v) in notes {
        for (n, what, s) in v {
            if what == "total" {
                scores.push((w.rscs[r].id.clone(), w.nodes[n].name.clone(), s));
            }
            note_map.entry(w.rscs[r].id.clone()).or_default().push((w.nodes[n].name.clone(), what, s));
        }
    }
    for l in &cons.locs {
        for &(n, s) in &l.scores {
            note_map.entry(w.rscs[l.rsc].id.clone()).or_default().push((
                w.nodes[n].name.clone(),
                format!("location {}", l.id),
                s,
            ));
        }
    }
    let placement = w
        .rscs
        .iter()
        .filter(|r| r.kind == Kind::Primitive)
        .map(|r| (r.id.clone(), r.assigned.map(|n| w.nodes[n].name.clone()), r.next_role))
        .collect();
    let fenced: Vec<usize> = b.actions.iter().filter(|a| a.kind == ActionKind::Fence).filter_map(|a| a.node).collect();
    let current = view::cluster_view(&w, false, &[]);
    let revised = view::cluster_view(&w, true, &fenced);
    Transition {
        actions: b.actions,
        edges: b.edges,
        summary,
        resource_names: w.rscs.iter().map(|r| r.id.clone()).collect(),
        node_names: w.nodes.iter().map(|n| n.name.clone()).collect(),
        scores,
        notes: note_map,
        placement,
        current,
        revised,
    }
}

fn role_text(r: Role) -> &'static str {
    match r {
        Role::Unknown => "Unknown",
        Role::Stopped => "Stopped",
        Role::Started => "Started",
        Role::Unpromoted => "Unpromoted",
        Role::Promoted => "Promoted",
    }
}

struct Item<'a> {
    change: &'a str,
    origin: Option<usize>,
    dest: Option<usize>,
    action: Option<usize>,
    source: Option<usize>,
}

fn summary_lines(w: &World, b: &actions::Builder<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for a in &b.actions {
        if a.kind == ActionKind::Fence {
            let n = a.node.map_or("", |n| w.nodes[n].name.as_str());
            out.push(format!("Fence ({}) {n} '{}'", w.props.fencing_action, a.reason.clone().unwrap_or_default()));
        }
    }
    let mut order: Vec<usize> = Vec::new();
    for &t in &w.top {
        order.extend(w.leaves(t));
    }
    for l in order {
        leaf_lines(w, b, l, &mut out);
    }
    out
}

fn leaf_lines(w: &World, b: &actions::Builder<'_>, l: usize, out: &mut Vec<String>) {
    let r = &w.rscs[l];
    let next = r.assigned;
    let current = r.running.first().copied();
    let mut role = r.role;
    if !r.running.is_empty() && role == Role::Stopped {
        role = Role::Started;
    }
    if !r.running.is_empty() && role == Role::Started && r.next_role == Role::Unpromoted {
        role = Role::Unpromoted;
    }
    let mut next_role = r.next_role;
    if next.is_none() {
        next_role = Role::Stopped;
    }
    let managed = w.actionable(l);
    let failed = r.failed && (r.on_fail == unpack::OnFail::Fence || r.running.iter().any(|&n| !w.will_fence(n)));
    if current.is_none() && r.orphan {
        return;
    }
    if !managed || (current.is_none() && next.is_none()) {
        return;
    }
    let moving = matches!((current, next), (Some(c), Some(n)) if c != n);
    let start = next.and_then(|n| b.find(l, ActionKind::Start, Some(n)));
    let start_node = match start {
        Some(s) if b.actions[s].runnable => current,
        _ => None,
    };
    let stop = b.find(l, ActionKind::Stop, start_node).or_else(|| b.find(l, ActionKind::Stop, None));
    let promote = next.and_then(|n| b.find(l, ActionKind::Promote, Some(n)));
    let demote = next.and_then(|n| b.find(l, ActionKind::Demote, Some(n)));
    let opt = |a: Option<usize>| a.is_none_or(|a| b.actions[a].optional);
    let runnable = |a: usize| b.actions[a].runnable;
    let with_reason = |a: Option<usize>| a.filter(|&x| b.actions[x].reason.is_some());
    // A multiply active resource that is recovered reports why one of its copies stops.
    let multi_reason =
        r.running.iter().filter_map(|&n| b.find(l, ActionKind::Stop, Some(n))).find(|&x| b.actions[x].reason.is_some());
    let mut emit = |it: Item<'_>| {
        out.push(item_line(w, l, role, next_role, it, b));
    };
    if role == next_role {
        if opt(start) {
            let reload = next.and_then(|n| b.find(l, ActionKind::Reload, Some(n))).filter(|&x| !b.actions[x].optional);
            if reload.is_some() {
                emit(Item { change: "Reload", origin: current, dest: next, action: reload, source: None });
            }
            if demote.is_some() && promote.is_some() && !opt(demote) && !opt(promote) {
                emit(Item { change: "Re-promote", origin: current, dest: next, action: promote, source: None });
            }
            return;
        }
        let Some(s) = start else { return };
        if !runnable(s) {
            emit(Item {
                change: "Stop",
                origin: current,
                dest: None,
                action: stop,
                source: with_reason(stop).or(start),
            });
        } else if moving && current.is_some() {
            let change = if failed { "Recover" } else { "Move" };
            emit(Item { change, origin: current, dest: next, action: stop, source: None });
        } else if failed {
            emit(Item { change: "Recover", origin: current, dest: None, action: stop, source: multi_reason });
        } else {
            emit(Item { change: "Restart", origin: current, dest: None, action: start, source: None });
        }
        return;
    }
    if stop.is_some() && (next_role == Role::Stopped || start.is_some_and(|s| !runnable(s))) {
        for &n in &r.running {
            let st = b.find(l, ActionKind::Stop, Some(n));
            let src = with_reason(st).or(start);
            emit(Item { change: "Stop", origin: Some(n), dest: None, action: st, source: src });
        }
        return;
    }
    if stop.is_some() && failed && !opt(stop) {
        emit(Item { change: "Recover", origin: current, dest: next, action: stop, source: start });
    } else if moving {
        emit(Item { change: "Move", origin: current, dest: next, action: stop, source: None });
    } else if failed {
        emit(Item { change: "Recover", origin: current, dest: None, action: stop, source: multi_reason });
    } else if stop.is_some() && !opt(stop) && start.is_some() {
        // A required stop on a resource that stays means a restart, whatever the role change.
        emit(Item { change: "Restart", origin: current, dest: next, action: start, source: None });
    } else if role == Role::Promoted && next_role != Role::Promoted {
        emit(Item {
            change: "Demote",
            origin: current,
            dest: next,
            action: demote.or_else(|| b.find(l, ActionKind::Demote, None)),
            source: None,
        });
    } else if next_role == Role::Promoted {
        emit(Item { change: "Promote", origin: current, dest: next, action: promote, source: None });
    } else if role == Role::Stopped && next_role > Role::Stopped {
        emit(Item { change: "Start", origin: current, dest: next, action: start, source: None });
    }
}

fn item_line(w: &World, l: usize, role: Role, next_role: Role, it: Item<'_>, b: &actions::Builder<'_>) -> String {
    let r = &w.rscs[l];
    let name = |n: usize| w.nodes[n].name.as_str();
    let need_role = role > Role::Started || next_role > Role::Unpromoted;
    let same_host = matches!((it.origin, it.dest), (Some(a), Some(b)) if a == b);
    let same_role = role == next_role;
    let details = match (it.origin, it.dest) {
        (None, Some(d)) if need_role => format!("{} -> {} {}", role_text(role), role_text(next_role), name(d)),
        (None, Some(d)) => name(d).to_string(),
        (None, None) => String::new(),
        (Some(o), None) if need_role => format!("{} {}", role_text(role), name(o)),
        (Some(o), None) => name(o).to_string(),
        (Some(o), Some(d)) => {
            if need_role && same_role && same_host {
                format!("{} {}", role_text(role), name(o))
            } else if same_role && same_host {
                name(o).to_string()
            } else if need_role && same_role {
                format!("{} -> {} {}", name(o), name(d), role_text(role))
            } else if same_role {
                format!("{} -> {}", name(o), name(d))
            } else if same_host {
                format!("{} -> {} {}", role_text(role), role_text(next_role), name(o))
            } else {
                format!("{} {} -> {} {}", role_text(role), name(o), role_text(next_role), name(d))
            }
        }
    };
    let source = it.source.or(it.action);
    let action_runnable = it.action.is_none_or(|a| b.actions[a].runnable);
    let reason = match source.and_then(|s| b.actions[s].reason.clone()) {
        Some(rs) if !action_runnable => format!("due to {rs} (blocked)"),
        Some(rs) => format!("due to {rs}"),
        None if !action_runnable => "blocked".to_string(),
        None => String::new(),
    };
    let mut line = format!("{:<10} {:<7} ( {details} )", it.change, r.id);
    if !reason.is_empty() {
        line.push_str("  ");
        line.push_str(&reason);
    }
    line
}
