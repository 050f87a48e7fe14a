//! Executing a transition graph: the controller's sans-IO core.
//!
//! The DC hands a [`Transition`] to [`GraphRun::new`]. The run dispatches every executable action
//! once all of its predecessors in the graph have completed (pseudo actions complete by
//! themselves), collects results, and ends when every action is done, or, after a failure or an
//! abort request, once nothing is in flight any more: Pacemaker's rule that a transition is never
//! torn down under running actions. The caller then records the results in the status and
//! schedules again.
//!
//! Only actions that are required and runnable execute; an ordering whose first action does not
//! execute is already satisfied (the scheduler has made its dependents unrunnable when that
//! matters), except through a pseudo action that does not execute: the orderings on either side
//! of it still hold (probes, then a clone's "start", then its instances' starts).

use wire::{Duration, Instant};

use crate::scheduler::{ActionKind, Transition};

/// Where an action stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionState {
    /// Not executed in this transition (optional or unrunnable).
    Skipped,
    /// Waiting for predecessors.
    Pending,
    /// Dispatched, waiting for its result; `deadline` is when it counts as timed out.
    InFlight {
        /// When the result is due.
        deadline: Instant,
    },
    /// Completed as expected.
    Done,
    /// Failed, timed out, or returned an unexpected result.
    Failed,
    /// Never dispatched because the transition was aborted first.
    Cancelled,
}

/// The outcome the executor or fencer reports for one dispatched action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The action did what was asked.
    Ok,
    /// It did not; `reason` is for the operator.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What the controller asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Dispatch {
    /// Run a resource action on a node (through that node's executor).
    Execute {
        /// Index of the action in the transition.
        action: usize,
        /// Resource name.
        rsc: String,
        /// Node name.
        node: String,
        /// start, stop, promote, demote, monitor.
        task: &'static str,
        /// Recurring monitor interval (0: one-shot).
        interval_ms: u64,
    },
    /// Fence a node (through the fencer).
    Fence {
        /// Index of the action.
        action: usize,
        /// Node to fence.
        node: String,
    },
}

/// Why a transition stopped before completing every action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// An action failed.
    ActionFailed {
        /// The action's index.
        action: usize,
        /// What the executor said.
        reason: String,
    },
    /// An action did not report within its timeout.
    TimedOut {
        /// The action's index.
        action: usize,
    },
    /// Something outside changed (configuration, membership, a node's state).
    Requested(String),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Every executable action completed.
    Complete,
    /// Stopped early; nothing is in flight any more. Schedule again.
    Aborted(AbortReason),
}

/// One transition being executed.
#[derive(Debug)]
pub struct GraphRun {
    states: Vec<ActionState>,
    preds: Vec<Vec<usize>>,
    kinds: Vec<(ActionKind, bool)>,
    labels: Vec<(String, String, u64)>,
    timeouts: Vec<Duration>,
    aborted: Option<AbortReason>,
    ended: Option<RunEnd>,
}

impl GraphRun {
    /// Prepares the run of `transition`; every dispatched action times out after `timeout`
    /// (the operation's own timeout plus the executor's margin).
    pub fn new(transition: &Transition, timeout: Duration) -> Self {
        Self::with_timeouts(transition, vec![timeout; transition.actions.len()])
    }

    /// Like [`GraphRun::new`], with each action's own timeout (by index; missing ones take the
    /// longest given).
    pub fn with_timeouts(transition: &Transition, mut timeouts: Vec<Duration>) -> Self {
        let n = transition.actions.len();
        let longest = timeouts.iter().copied().max().unwrap_or(Duration::from_secs(20));
        timeouts.resize(n, longest);
        let executes = |i: usize| transition.actions.get(i).is_some_and(|a| !a.optional && a.runnable);
        // Orderings hold through pseudo actions that do not run themselves (a clone's optional
        // "start" between its probes and its instances' starts): their own predecessors become
        // predecessors of what follows them.
        let mut incoming = vec![Vec::new(); n];
        for e in &transition.edges {
            if e.first < n && e.then < n && e.first != e.then {
                incoming[e.then].push(e.first);
            }
        }
        let pass_through = |i: usize| !executes(i) && transition.actions.get(i).is_some_and(|a| a.pseudo);
        let mut preds = vec![Vec::new(); n];
        for (then, p) in preds.iter_mut().enumerate() {
            if !executes(then) {
                continue;
            }
            let mut seen = vec![false; n];
            let mut stack: Vec<usize> = incoming[then].clone();
            while let Some(f) = stack.pop() {
                if std::mem::replace(&mut seen[f], true) {
                    continue;
                }
                if executes(f) {
                    p.push(f);
                } else if pass_through(f) {
                    stack.extend(incoming[f].iter().copied());
                }
            }
        }
        for p in &mut preds {
            p.sort_unstable();
            p.dedup();
        }
        let states = (0..n).map(|i| if executes(i) { ActionState::Pending } else { ActionState::Skipped }).collect();
        let kinds = transition.actions.iter().map(|a| (a.kind, a.pseudo)).collect();
        let labels = transition
            .actions
            .iter()
            .map(|a| {
                let rsc = a.rsc.map(|r| transition.resource_name(r).to_string()).unwrap_or_default();
                let node = a.node.map(|x| transition.node_name(x).to_string()).unwrap_or_default();
                (rsc, node, a.interval_ms)
            })
            .collect();
        GraphRun { states, preds, kinds, labels, timeouts, aborted: None, ended: None }
    }

    /// The state of every action, by index.
    pub fn states(&self) -> &[ActionState] {
        &self.states
    }

    /// How the run ended, once it has.
    pub fn ended(&self) -> Option<&RunEnd> {
        self.ended.as_ref()
    }

    /// Actions dispatched and not yet reported.
    pub fn in_flight(&self) -> usize {
        self.states.iter().filter(|s| matches!(s, ActionState::InFlight { .. })).count()
    }

    /// The earliest action deadline.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.states
            .iter()
            .filter_map(|s| match s {
                ActionState::InFlight { deadline } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// Dispatches whatever is ready. Call after creating the run and after every input.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Dispatch>) {
        if self.ended.is_some() {
            return;
        }
        loop {
            let mut progressed = false;
            for i in 0..self.states.len() {
                if self.states[i] != ActionState::Pending {
                    continue;
                }
                if self.aborted.is_some() {
                    self.states[i] = ActionState::Cancelled;
                    continue;
                }
                if !self.preds[i].iter().all(|&p| self.states[p] == ActionState::Done) {
                    continue;
                }
                let (kind, pseudo) = self.kinds[i];
                let (rsc, node, interval_ms) = self.labels[i].clone();
                if pseudo || matches!(kind, ActionKind::Running | ActionKind::Stopped | ActionKind::OneOrMore) {
                    self.states[i] = ActionState::Done;
                    progressed = true;
                    continue;
                }
                self.states[i] = ActionState::InFlight { deadline: now + self.timeouts[i] };
                out.push(if kind == ActionKind::Fence {
                    Dispatch::Fence { action: i, node }
                } else {
                    Dispatch::Execute { action: i, rsc, node, task: kind.task(), interval_ms }
                });
            }
            if !progressed {
                break;
            }
        }
        self.check_end();
    }

    /// Records the result of a dispatched action.
    pub fn result(&mut self, now: Instant, action: usize, outcome: Outcome, out: &mut Vec<Dispatch>) {
        if !matches!(self.states.get(action), Some(ActionState::InFlight { .. })) {
            return; // late or duplicate result: the first one counted
        }
        match outcome {
            Outcome::Ok => self.states[action] = ActionState::Done,
            Outcome::Failed { reason } => {
                self.states[action] = ActionState::Failed;
                self.aborted.get_or_insert(AbortReason::ActionFailed { action, reason });
            }
        }
        self.poll(now, out);
    }

    /// Asks the run to stop dispatching (something changed); it ends once nothing is in flight.
    pub fn abort(&mut self, now: Instant, why: &str, out: &mut Vec<Dispatch>) {
        self.aborted.get_or_insert(AbortReason::Requested(why.to_string()));
        self.poll(now, out);
    }

    /// Marks overdue actions as failed.
    pub fn wakeup(&mut self, now: Instant, out: &mut Vec<Dispatch>) {
        for i in 0..self.states.len() {
            if let ActionState::InFlight { deadline } = self.states[i]
                && now >= deadline
            {
                self.states[i] = ActionState::Failed;
                self.aborted.get_or_insert(AbortReason::TimedOut { action: i });
            }
        }
        self.poll(now, out);
    }

    fn check_end(&mut self) {
        if self.in_flight() > 0 || self.ended.is_some() {
            return;
        }
        if let Some(reason) = &self.aborted {
            self.ended = Some(RunEnd::Aborted(reason.clone()));
        } else if !self.states.contains(&ActionState::Pending) {
            // Without an abort, nothing failed: every action is done or skipped.
            self.ended = Some(RunEnd::Complete);
        } else {
            // Pending actions whose predecessors can never complete would hang the run: treat
            // as a graph error (a cycle) and abort.
            let stuck = self.states.iter().position(|s| *s == ActionState::Pending).unwrap_or(0);
            self.ended = Some(RunEnd::Aborted(AbortReason::Requested(format!(
                "action {stuck} waits on an ordering cycle; rescheduling"
            ))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cib::xml::parse_cib;

    const CIB: &str = r#"<cib have-quorum="1" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config><cluster_property_set id="o"><nvpair id="o1" name="fencing-enabled" value="false"/></cluster_property_set></crm_config>
    <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes>
    <resources>
      <group id="web">
        <primitive id="ip" class="ocf" provider="heartbeat" type="IPaddr2"/>
        <primitive id="fs" class="ocf" provider="heartbeat" type="Filesystem"/>
        <primitive id="www" class="ocf" provider="heartbeat" type="nginx"/>
      </group>
    </resources>
    <constraints/>
  </configuration>
  <status>
    <node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member"/>
    <node_state id="2" uname="n2" in_ccm="true" crmd="online" join="member" expected="member"/>
  </status>
</cib>"#;

    fn transition() -> Transition {
        let (cib, _) = parse_cib(CIB).expect("cib parses");
        crate::schedule(&cib, None, 0)
    }

    fn start_order(dispatch: &[Dispatch]) -> Vec<String> {
        dispatch
            .iter()
            .filter_map(|d| match d {
                Dispatch::Execute { rsc, task, interval_ms: 0, .. } => Some(format!("{task} {rsc}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_group_starts_member_by_member_in_order() {
        let t = transition();
        let mut run = GraphRun::new(&t, Duration::from_secs(20));
        let now = Instant::ZERO;
        let mut out = Vec::new();
        run.poll(now, &mut out);
        let mut seen = Vec::new();
        while run.ended().is_none() {
            assert!(!out.is_empty(), "nothing dispatched but not ended: {:?}", run.states());
            let batch = std::mem::take(&mut out);
            seen.extend(start_order(&batch));
            for d in batch {
                let action = match d {
                    Dispatch::Execute { action, .. } | Dispatch::Fence { action, .. } => action,
                };
                run.result(now, action, Outcome::Ok, &mut out);
            }
        }
        let starts: Vec<&String> = seen.iter().filter(|s| s.starts_with("start")).collect();
        assert_eq!(starts, ["start ip", "start fs", "start www"]);
        assert_eq!(run.ended(), Some(&RunEnd::Complete));
    }

    #[test]
    fn a_failure_stops_new_dispatches_and_ends_once_nothing_is_in_flight() {
        let t = transition();
        let mut run = GraphRun::new(&t, Duration::from_secs(20));
        let mut out = Vec::new();
        run.poll(Instant::ZERO, &mut out);
        // Probes come first; let them succeed until the first start is dispatched.
        let first = loop {
            let start = out.iter().find_map(|d| match d {
                Dispatch::Execute { action, task: "start", .. } => Some(*action),
                _ => None,
            });
            if let Some(a) = start {
                break a;
            }
            let batch = std::mem::take(&mut out);
            assert!(!batch.is_empty(), "the first member's start is dispatched");
            for d in batch {
                let (Dispatch::Execute { action, .. } | Dispatch::Fence { action, .. }) = d;
                run.result(Instant::ZERO, action, Outcome::Ok, &mut out);
            }
        };
        out.retain(|d| !matches!(d, Dispatch::Execute { action, .. } if *action == first));
        run.result(Instant::ZERO, first, Outcome::Failed { reason: "rc=1".into() }, &mut out);
        assert!(start_order(&out).is_empty(), "nothing new after a failure: {out:?}");
        // Other in-flight actions (monitors/probes) must still report before the run ends.
        let still: Vec<usize> = run
            .states()
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, ActionState::InFlight { .. }))
            .map(|(i, _)| i)
            .collect();
        for a in still {
            assert!(run.ended().is_none());
            run.result(Instant::ZERO, a, Outcome::Ok, &mut out);
        }
        assert!(
            matches!(run.ended(), Some(RunEnd::Aborted(AbortReason::ActionFailed { action, .. })) if *action == first)
        );
    }

    #[test]
    fn an_action_that_never_reports_times_out() {
        let t = transition();
        let mut run = GraphRun::new(&t, Duration::from_secs(20));
        let mut out = Vec::new();
        run.poll(Instant::ZERO, &mut out);
        let deadline = run.next_wakeup().expect("something in flight");
        assert_eq!(deadline, Instant::ZERO + Duration::from_secs(20));
        run.wakeup(deadline, &mut out);
        assert!(matches!(run.ended(), Some(RunEnd::Aborted(AbortReason::TimedOut { .. }))));
        // A late result changes nothing.
        run.result(deadline, 0, Outcome::Ok, &mut out);
        assert!(matches!(run.ended(), Some(RunEnd::Aborted(_))));
    }

    #[test]
    fn a_clones_probes_come_before_its_instances_start_through_the_clones_pseudo_start() {
        let xml = r#"<cib have-quorum="1" epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config><cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="false"/></cluster_property_set></crm_config><nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes><resources><clone id="c"><meta_attributes id="cm"><nvpair id="cm1" name="promotable" value="true"/></meta_attributes><primitive id="v" class="ocf" provider="heartbeat" type="Stateful"/></clone></resources><constraints/></configuration><status><node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member"/><node_state id="2" uname="n2" in_ccm="true" crmd="online" join="member" expected="member"/></status></cib>"#;
        let (cib, _) = parse_cib(xml).expect("cib parses");
        let t = crate::schedule(&cib, None, 0);
        let mut run = GraphRun::new(&t, Duration::from_secs(20));
        let mut out = Vec::new();
        run.poll(Instant::ZERO, &mut out);
        assert!(!out.is_empty());
        assert!(
            out.iter().all(|d| matches!(d, Dispatch::Execute { task: "monitor", interval_ms: 0, .. })),
            "only probes first: {out:?}"
        );
    }
}
