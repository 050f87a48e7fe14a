//! Clone notifications. A clone with `notify=true` tells its instances about every start,
//! stop, promotion and demotion in the clone: before the collective action, each instance active now gets a
//! "pre" notification; after it, each instance active afterwards gets a "post" one. Each
//! round is bracketed by pseudo actions (`pre_notify_start`, `confirmed-pre_notify_start`,
//! `post_notify_running`, `confirmed-post_notify_running`, and the same for stop/stopped,
//! demote/demoted and promote/promoted). Rounds follow each other: demote, stop, start,
//! promote.
//!
//! Notifications never change what the transition does, so they are added once flags have
//! settled, only for collective actions that will execute.

use super::actions::Builder;
use super::unpack::Kind;
use super::{Action, ActionKind};

/// One notification round: the actions it surrounds and what it reports.
struct Round {
    /// Actions that wait for the pre notifications (the collective action, or the
    /// instances' promotes/demotes).
    mains: Vec<usize>,
    /// Actions the post notifications wait for (the collective "done" action, or the
    /// instances' promotes/demotes).
    dones: Vec<usize>,
    /// Task names used in the pseudo action labels (`start`/`running`, `stop`/`stopped`,
    /// `promote`/`promoted`, `demote`/`demoted`).
    task: &'static str,
    done_task: &'static str,
}

impl Builder<'_> {
    /// Adds notification actions for every clone with `notify=true`.
    pub(crate) fn add_notifications(&mut self) {
        let w = self.w;
        for c in 0..w.rscs.len() {
            let r = &w.rscs[c];
            if r.kind != Kind::Clone || !r.clone.notify {
                continue;
            }
            let live = |b: &Builder<'_>, a: usize| !b.actions[a].optional && b.actions[a].runnable;
            // A collective round happens when some instance really starts (stops).
            let collective = |b: &Builder<'_>, main: ActionKind, done: ActionKind| {
                let (m, d) = (b.find(c, main, None)?, b.find(c, done, None)?);
                let any =
                    w.leaves(c).iter().any(|&l| b.index.get(&(l, main)).is_some_and(|v| v.iter().any(|&a| live(b, a))));
                any.then_some((m, d))
            };
            let leaf_round = |b: &Builder<'_>, kind: ActionKind| -> Vec<usize> {
                w.leaves(c)
                    .iter()
                    .flat_map(|&l| b.index.get(&(l, kind)).cloned().unwrap_or_default())
                    .filter(|&a| live(b, a))
                    .collect()
            };
            let mut previous = None;
            let demotes = leaf_round(self, ActionKind::Demote);
            if !demotes.is_empty() {
                let round = Round { mains: demotes.clone(), dones: demotes, task: "demote", done_task: "demoted" };
                previous = Some(self.notify_round(c, &round, previous));
            }
            if let Some((m, d)) = collective(self, ActionKind::Stop, ActionKind::Stopped) {
                self.actions[m].optional = false;
                let round = Round { mains: vec![m], dones: vec![d], task: "stop", done_task: "stopped" };
                previous = Some(self.notify_round(c, &round, previous));
            }
            if let Some((m, d)) = collective(self, ActionKind::Start, ActionKind::Running) {
                self.actions[m].optional = false;
                let round = Round { mains: vec![m], dones: vec![d], task: "start", done_task: "running" };
                previous = Some(self.notify_round(c, &round, previous));
            }
            let promotes = leaf_round(self, ActionKind::Promote);
            if !promotes.is_empty() {
                let round = Round { mains: promotes.clone(), dones: promotes, task: "promote", done_task: "promoted" };
                self.notify_round(c, &round, previous);
            }
        }
    }

    /// Adds one pre/post notification round after `after` (the previous round's
    /// confirmation); returns this round's confirmed-post pseudo action.
    fn notify_round(&mut self, c: usize, round: &Round, after: Option<usize>) -> usize {
        let w = self.w;
        let leaves = w.leaves(c);
        let reachable = |n: usize| w.nodes[n].online && !w.nodes[n].unclean && !w.nodes[n].pending;
        // Instances active now, and instances active once the transition is done.
        let before: Vec<(usize, usize)> = leaves
            .iter()
            .flat_map(|&l| w.rscs[l].running.iter().map(move |&n| (l, n)))
            .filter(|&(_, n)| reachable(n))
            .collect();
        // After a demotion every instance is still active; otherwise those active once
        // the transition is done.
        let after_active: Vec<(usize, usize)> = if round.task == "demote" {
            before.clone()
        } else {
            leaves
                .iter()
                .filter_map(|&l| {
                    let n = w.rscs[l].assigned?;
                    let starts_ok = self.find(l, ActionKind::Start, Some(n)).is_none_or(|s| self.actions[s].runnable);
                    (starts_ok && reachable(n)).then_some((l, n))
                })
                .collect()
        };
        let pre = self.pseudo_notify(c, format!("pre_notify_{}", round.task));
        let pre_done = self.pseudo_notify(c, format!("confirmed-pre_notify_{}", round.task));
        if let Some(a) = after {
            self.push_edge(a, pre);
        }
        for &(l, n) in &before {
            let id = self.notify_action(l, n, format!("pre-{}", round.task));
            self.push_edge(pre, id);
            self.push_edge(id, pre_done);
        }
        self.push_edge(pre, pre_done);
        for &m in &round.mains {
            self.push_edge(pre_done, m);
        }
        let post = self.pseudo_notify(c, format!("post_notify_{}", round.done_task));
        let post_done = self.pseudo_notify(c, format!("confirmed-post_notify_{}", round.done_task));
        for &d in &round.dones {
            self.push_edge(d, post);
        }
        for &(l, n) in &after_active {
            let id = self.notify_action(l, n, format!("post-{}", round.task));
            self.push_edge(post, id);
            self.push_edge(id, post_done);
        }
        self.push_edge(post, post_done);
        post_done
    }

    fn pseudo_notify(&mut self, c: usize, label: String) -> usize {
        let mut a = self.required_action(Some(c), None, ActionKind::Notify);
        a.pseudo = true;
        a.label = label;
        self.push_action(a)
    }

    fn notify_action(&mut self, l: usize, n: usize, label: String) -> usize {
        let mut a = self.required_action(Some(l), Some(n), ActionKind::Notify);
        a.label = label;
        self.push_action(a)
    }

    fn required_action(&self, rsc: Option<usize>, node: Option<usize>, kind: ActionKind) -> Action {
        Action {
            id: self.actions.len(),
            rsc,
            node,
            kind,
            interval_ms: 0,
            optional: false,
            runnable: true,
            pseudo: false,
            reason: None,
            label: String::new(),
        }
    }
}
