//! Every transition the scheduler produces for the corpus can be executed to completion by the
//! controller when every action succeeds: no ordering cycle among executable actions, and each
//! action is dispatched only after all of its predecessors completed.

use std::path::PathBuf;

use crm::controller::{Dispatch, GraphRun, Outcome, RunEnd};
use wire::{Duration, Instant};

#[test]
fn every_corpus_transition_runs_to_completion_in_order() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcmk-scheduler-cases/xml"));
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("corpus present").flatten().map(|e| e.path()).collect();
    files.sort();
    let mut problems = Vec::new();
    let mut ran = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        let Ok((cib, _)) = crm::cib::parse_cib(&text) else { continue };
        let t = crm::schedule(&cib, None, 0);
        let mut run = GraphRun::new(&t, Duration::from_secs(60));
        let mut done = vec![false; t.actions.len()];
        let mut out = Vec::new();
        run.poll(Instant::ZERO, &mut out);
        while let Some(d) = out.pop() {
            let action = match d {
                Dispatch::Execute { action, .. } | Dispatch::Fence { action, .. } => action,
            };
            for e in &t.edges {
                let runs = |i: usize| !t.actions[i].optional && t.actions[i].runnable;
                if e.then == action && runs(e.first) && !t.actions[e.first].pseudo && !done[e.first] {
                    problems.push(format!("{}: action {action} dispatched before {}", path.display(), e.first));
                }
            }
            done[action] = true;
            run.result(Instant::ZERO, action, Outcome::Ok, &mut out);
        }
        match run.ended() {
            Some(RunEnd::Complete) => ran += 1,
            other => problems.push(format!("{}: ended {other:?}", path.display())),
        }
    }
    assert!(ran > 300, "only {ran} transitions ran");
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// Runs the DC loop against executors whose agents finish at once (start and stop change what
/// runs, a monitor reports it), recording every result in the CIB, until the DC settles.
/// Returns the summaries of the transitions it ran.
fn run_dc_until_settled(cib: &mut crm::cib::Cib, nodes: u32) -> Vec<Vec<String>> {
    use crm::dc::{Dc, DcEffect};
    use crm::exec::{ExecAction, ExecState, RunResult};
    use crm::replica::Document;
    use std::collections::BTreeSet;
    let mut dc = Dc::new("dc-test");
    let mut execs: Vec<ExecState> = (1..=nodes).map(|i| ExecState::new(wire::NodeId(i), &format!("n{i}"))).collect();
    let mut running: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut summaries = Vec::new();
    let unix = 1_800_000_000;
    for step in 0..200u64 {
        let now = Instant::ZERO + Duration::from_secs(step);
        let mut fx = Vec::new();
        dc.step(now, unix, cib, true, true, &mut fx);
        if fx.is_empty() && !dc.running() {
            return summaries;
        }
        for e in fx {
            match e {
                DcEffect::Started { summary, .. } => summaries.push(summary),
                DcEffect::Execute(req) => {
                    let n = req.node_id.parse::<usize>().expect("numeric node id") - 1;
                    for a in execs[n].order(req) {
                        let ExecAction::Run { req, generation } = a else { continue };
                        let base = req.rsc.split(':').next().unwrap_or_default().to_string();
                        let rc = match req.operation.as_str() {
                            "start" => {
                                running.insert((n, base));
                                0
                            }
                            "stop" => {
                                running.remove(&(n, base));
                                0
                            }
                            _ if running.contains(&(n, base)) => 0,
                            _ => 7,
                        };
                        let result = RunResult { rc, op_status: 0, reason: None, exec_ms: 1, promotion: None };
                        for change in execs[n].finished(&req, &result, generation, unix) {
                            cib.apply(&change).expect("the record applies");
                            cib.version.num_updates += 1;
                        }
                    }
                }
                DcEffect::Fence(_) | DcEffect::Ended { .. } => {}
            }
        }
    }
    panic!("the DC did not settle; transitions: {summaries:#?}");
}

#[test]
fn an_anonymous_clone_settles_with_one_history_per_node() {
    use crm::replica::{CibChange, Document, Membership};
    let mut cib = crm::cib::Cib::default();
    let xml = r#"<configuration>
  <crm_config><cluster_property_set id="o"><nvpair id="o1" name="fencing-enabled" value="false"/></cluster_property_set></crm_config>
  <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/><node id="3" uname="n3"/></nodes>
  <resources>
    <clone id="ping-clone"><primitive id="ping" class="ocf" provider="pacemaker" type="ping">
      <operations><op id="ping-mon" name="monitor" interval="10s"/></operations>
    </primitive></clone>
  </resources>
  <constraints/>
</configuration>"#;
    cib.apply(&CibChange::ReplaceConfiguration { xml: xml.into(), if_epoch: None }).expect("configuration");
    cib.apply(&CibChange::SetMembership {
        nodes: (1..=3).map(|i| (i.to_string(), format!("n{i}"), Membership::Member)).collect(),
        dc: Some("1".into()),
    })
    .expect("membership");
    let summaries = run_dc_until_settled(&mut cib, 3);
    let stops: Vec<&String> = summaries.iter().flatten().filter(|l| !l.starts_with("Start")).collect();
    assert!(stops.is_empty(), "nothing but the first starts: {summaries:#?}");
    for state in &cib.status {
        let histories: Vec<&str> = state.resources.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(histories, ["ping"], "one history of the anonymous clone on node {}", state.id);
    }
}

/// Controllers of a small cluster tied together synchronously: ordered delivery to every
/// controller, CIB writes applied at once, agents that finish at once unless held.
struct Cluster {
    cib: crm::cib::Cib,
    ctls: std::collections::BTreeMap<u32, crm::node::NodeController>,
    running: std::collections::BTreeSet<(u32, String)>,
    /// Every operation dispatched to an agent: "op rsc nN".
    log: Vec<String>,
    /// Operations held (still running): node, order, generation.
    held: Vec<(u32, crm::dc::ExecRequest, u64)>,
}

impl Cluster {
    fn pump(&mut self, dc: u32, hold: impl Fn(&crm::dc::ExecRequest) -> bool) {
        use crm::exec::{ExecAction, RunResult};
        use crm::node::CtlEffect;
        use crm::replica::Document;
        let (now, unix) = (Instant::ZERO, 1_800_000_000);
        for _ in 0..1000 {
            let mut any = false;
            let mut bus = Vec::new();
            let ids: Vec<u32> = self.ctls.keys().copied().collect();
            for &i in &ids {
                let Some(ctl) = self.ctls.get_mut(&i) else { continue };
                ctl.step(now, unix, &self.cib, true, true, Some(wire::NodeId(dc)));
                for e in ctl.drain() {
                    any = true;
                    match e {
                        CtlEffect::Broadcast(m) => bus.push((i, m)),
                        CtlEffect::Exec(ExecAction::Run { req, generation }) => {
                            self.log.push(format!("{} {} n{i}", req.operation, req.rsc));
                            if hold(&req) {
                                self.held.push((i, *req, generation));
                                continue;
                            }
                            let key = (i, req.rsc.clone());
                            let rc = match req.operation.as_str() {
                                "start" => {
                                    self.running.insert(key);
                                    0
                                }
                                "stop" => {
                                    self.running.remove(&key);
                                    0
                                }
                                _ if self.running.contains(&key) => 0,
                                _ => 7,
                            };
                            let result = RunResult { rc, op_status: 0, reason: None, exec_ms: 1, promotion: None };
                            ctl.finished(&req, &result, generation, unix);
                        }
                        CtlEffect::Write { token, change } => {
                            let ok = self.cib.apply(&change).is_ok();
                            self.cib.version.num_updates += 1;
                            ctl.written(now, token, ok);
                        }
                        _ => {}
                    }
                }
            }
            for (from, m) in bus {
                for ctl in self.ctls.values_mut() {
                    ctl.delivered(wire::NodeId(from), m.clone());
                }
            }
            if !any {
                return;
            }
        }
        panic!("the controllers did not settle: {:#?}", self.log);
    }

    /// The held operations finish successfully.
    fn release(&mut self) {
        for (i, req, generation) in std::mem::take(&mut self.held) {
            if req.operation == "start" {
                self.running.insert((i, req.rsc.clone()));
            }
            let result = crm::exec::RunResult { rc: 0, op_status: 0, reason: None, exec_ms: 1, promotion: None };
            if let Some(ctl) = self.ctls.get_mut(&i) {
                ctl.finished(&req, &result, generation, 1_800_000_000);
            }
        }
    }
}

#[test]
fn the_dc_waits_for_an_operation_of_a_dropped_transition_before_scheduling_again() {
    use crm::node::NodeController;
    use crm::replica::{CibChange, Document, Membership};
    use wire::{NodeId, RingId};
    let xml = r#"<configuration>
  <crm_config><cluster_property_set id="o"><nvpair id="o1" name="fencing-enabled" value="false"/></cluster_property_set></crm_config>
  <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes>
  <resources><primitive id="db" class="ocf" provider="heartbeat" type="Dummy"/></resources>
  <constraints><rsc_location id="db-likes-n1" rsc="db" node="n1" score="100"/></constraints>
</configuration>"#;
    let mut cib = crm::cib::Cib::default();
    cib.apply(&CibChange::ReplaceConfiguration { xml: xml.into(), if_epoch: None }).expect("configuration");
    let member = |i: u32, m| (i.to_string(), format!("n{i}"), m);
    cib.apply(&CibChange::SetMembership {
        nodes: vec![member(1, Membership::Left), member(2, Membership::Member)],
        dc: Some("2".into()),
    })
    .expect("membership");
    let mut c =
        Cluster { cib, ctls: Default::default(), running: Default::default(), log: Vec::new(), held: Vec::new() };
    // n1 is down: db starts on n2, and its start is still running when n1 comes back.
    c.ctls.insert(2, NodeController::new(NodeId(2), "n2", "2-a"));
    let ring = RingId::new(NodeId(2), 1);
    c.ctls.get_mut(&2).expect("n2").view(Instant::ZERO, ring, &[NodeId(2)]);
    let held = |r: &crm::dc::ExecRequest| r.operation == "start" && r.rsc == "db" && r.node_name == "n2";
    c.pump(2, held);
    assert!(c.log.contains(&"start db n2".to_string()), "db's start went to n2: {:?}", c.log);
    c.log.clear();
    // n1 joins: a new view (the DC's transition is dropped until every member reported).
    c.ctls.insert(1, NodeController::new(NodeId(1), "n1", "1-a"));
    let ring = RingId::new(NodeId(1), 2);
    for ctl in c.ctls.values_mut() {
        ctl.view(Instant::ZERO, ring, &[NodeId(1), NodeId(2)]);
    }
    c.cib
        .apply(&CibChange::SetMembership { nodes: vec![member(1, Membership::Member)], dc: None })
        .expect("membership");
    c.pump(2, held);
    assert!(
        !c.log.iter().any(|l| l.starts_with("start db") || l.starts_with("stop db")),
        "nothing moves db while its start on n2 runs: {:?}",
        c.log
    );
    // The start finishes: now db moves to the node it prefers, stopped first.
    c.release();
    c.pump(2, held);
    let stop = c.log.iter().position(|l| l == "stop db n2").expect("db stops on n2");
    let start = c.log.iter().position(|l| l == "start db n1").expect("db starts on n1");
    assert!(stop < start, "{:?}", c.log);
    assert_eq!(c.running.iter().filter(|(_, r)| r == "db").count(), 1, "db runs once");
}

#[test]
fn the_fence_order_honours_legacy_fencing_options_after_the_cib_went_through_the_replica() {
    use crm::dc::{Dc, DcEffect};
    use crm::replica::{CibChange, Document, Membership};
    let xml = r#"<configuration>
  <crm_config><cluster_property_set id="o">
    <nvpair id="o1" name="stonith-enabled" value="true"/>
    <nvpair id="o2" name="stonith-timeout" value="7s"/>
    <nvpair id="o3" name="stonith-action" value="off"/>
  </cluster_property_set></crm_config>
  <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/><node id="3" uname="n3"/></nodes>
  <resources><primitive id="fence" class="stonith" type="fence_sim"/></resources>
  <constraints/>
</configuration>"#;
    let mut cib = crm::cib::Cib::default();
    cib.apply(&CibChange::ReplaceConfiguration { xml: xml.into(), if_epoch: None }).expect("configuration");
    let member = |i: u32, m| (i.to_string(), format!("n{i}"), m);
    cib.apply(&CibChange::SetMembership {
        nodes: vec![member(1, Membership::Member), member(2, Membership::Member), member(3, Membership::Lost)],
        dc: Some("1".into()),
    })
    .expect("membership");
    // Every copy a replica holds went through the XML form (current option names).
    let cib = crm::cib::Cib::decode(&cib.encode()).expect("round trip");
    let mut dc = Dc::new("dc-test");
    let mut fx = Vec::new();
    dc.step(Instant::ZERO, 1_800_000_000, &cib, true, true, &mut fx);
    let order = fx
        .iter()
        .find_map(|e| match e {
            DcEffect::Fence(o) => Some(o.clone()),
            _ => None,
        })
        .expect("n3 is fenced");
    assert_eq!(order.target, "n3");
    assert_eq!(order.timeout, Duration::from_secs(7), "stonith-timeout");
    assert_eq!(order.power, "off", "stonith-action");
}

#[test]
fn a_dc_waiting_for_an_operation_in_flight_does_not_ask_to_be_woken_in_the_past() {
    use crm::dc::Dc;
    use crm::replica::{CibChange, Document, Membership, OpRecord};
    let xml = r#"<configuration>
  <crm_config><cluster_property_set id="o"><nvpair id="o1" name="fencing-enabled" value="false"/></cluster_property_set></crm_config>
  <nodes><node id="1" uname="n1"/></nodes>
  <resources/>
  <constraints/>
</configuration>"#;
    let mut cib = crm::cib::Cib::default();
    cib.apply(&CibChange::ReplaceConfiguration { xml: xml.into(), if_epoch: None }).expect("configuration");
    cib.apply(&CibChange::SetMembership {
        nodes: vec![("1".into(), "n1".into(), Membership::Member)],
        dc: Some("1".into()),
    })
    .expect("membership");
    let mut dc = Dc::new("dc-test");
    let mut fx = Vec::new();
    dc.step(Instant::ZERO, 1_800_000_000, &cib, true, true, &mut fx);
    let recheck = dc.next_wakeup().expect("a recheck is planned");
    // An operation of an earlier transition is recorded as still running on n1.
    let pending = OpRecord {
        node_id: "1".into(),
        node_name: "n1".into(),
        rsc: "old".into(),
        class: "ocf".into(),
        provider: Some("heartbeat".into()),
        agent: "Dummy".into(),
        operation: "stop".into(),
        interval_ms: 0,
        rc: 193,
        op_status: -1,
        call_id: 1,
        transition_key: Some("1:1:0:earlier".into()),
        last_rc_change: 1_800_000_000,
        exec_ms: 0,
        op_digest: None,
        exit_reason: None,
    };
    cib.apply(&CibChange::RecordOp(Box::new(pending))).expect("pending record");
    cib.version.num_updates += 1;
    let later = recheck + Duration::from_secs(1);
    dc.step(later, 1_800_001_000, &cib, true, true, &mut fx);
    assert!(!dc.running(), "nothing is scheduled while the stop runs");
    assert!(dc.next_wakeup().is_none_or(|t| t > later), "woken at {:?}, now {later:?}", dc.next_wakeup());
}

#[test]
fn an_order_delivered_after_a_view_change_is_not_run() {
    use crm::exec::ExecMsg;
    use crm::node::{CtlEffect, NodeController};
    use wire::{NodeId, RingId};
    let req = crm::dc::ExecRequest {
        key: "3:6:0:dc".into(),
        node_id: "1".into(),
        node_name: "n1".into(),
        rsc: "vip".into(),
        class: "ocf".into(),
        provider: Some("heartbeat".into()),
        agent: "IPaddr2".into(),
        operation: "start".into(),
        interval_ms: 0,
        timeout_ms: 20_000,
        params: Default::default(),
        meta: Default::default(),
        target_rc: 0,
        op_digest: None,
    };
    let mut ctl = NodeController::new(NodeId(1), "n1", "1-a");
    let old = RingId::new(NodeId(1), 4);
    ctl.view(Instant::ZERO, old, &[NodeId(1), NodeId(2), NodeId(3)]);
    let runs = |ctl: &mut NodeController| ctl.drain().into_iter().filter(|e| matches!(e, CtlEffect::Exec(_))).count();
    ctl.delivered(NodeId(1), ExecMsg::Run { ring: old, req: Box::new(req.clone()) });
    assert_eq!(runs(&mut ctl), 1, "an order of the current view runs");
    // The view changes; the DC's transition is gone, but one of its orders was still on its
    // way and is delivered in the new view.
    ctl.view(Instant::ZERO, RingId::new(NodeId(1), 8), &[NodeId(1)]);
    ctl.delivered(NodeId(1), ExecMsg::Run { ring: old, req: Box::new(req) });
    assert_eq!(runs(&mut ctl), 0, "a stale order does not run");
}

#[test]
fn probes_are_recorded_as_pending_and_recurring_monitors_are_not() {
    use crm::exec::ExecState;
    use crm::replica::CibChange;
    let mut req = crm::dc::ExecRequest {
        key: "3:6:7:dc".into(),
        node_id: "1".into(),
        node_name: "n1".into(),
        rsc: "ping".into(),
        class: "ocf".into(),
        provider: Some("pacemaker".into()),
        agent: "ping".into(),
        operation: "monitor".into(),
        interval_ms: 0,
        timeout_ms: 20_000,
        params: Default::default(),
        meta: Default::default(),
        target_rc: 7,
        op_digest: None,
    };
    let mut ex = ExecState::new(wire::NodeId(1), "n1");
    // A probe still running when a later transition starts the resource must hold that
    // transition back: its result would otherwise hide the start.
    let Some(CibChange::RecordOp(r)) = ex.pending(&req, 1) else { panic!("a probe is recorded as pending") };
    assert_eq!((r.op_status, r.operation.as_str()), (-1, "monitor"));
    req.interval_ms = 10_000;
    assert!(ex.pending(&req, 1).is_none(), "a recurring monitor runs until cancelled: never pending");
}
