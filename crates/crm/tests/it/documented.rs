//! Documented Pacemaker behaviours, one small hand-written CIB each, checked on the Transition
//! Summary. The CIBs follow the shape of the scheduler corpus but are written for these tests.

use std::fmt::Write as _;

/// One operation history entry: (operation, interval ms, rc-code, call-id).
type Op<'a> = (&'a str, u32, i32, i32);

struct Cib {
    props: Vec<(String, String)>,
    nodes: Vec<(String, String)>,
    rsc_defaults: String,
    op_defaults: String,
    resources: String,
    constraints: String,
    states: Vec<String>,
    quorum: bool,
    execution_date: Option<i64>,
}

impl Cib {
    fn new(nodes: &[&str]) -> Self {
        Cib {
            props: vec![("fencing-enabled".into(), "false".into())],
            nodes: nodes.iter().map(|n| (n.to_string(), String::new())).collect(),
            rsc_defaults: String::new(),
            op_defaults: String::new(),
            resources: String::new(),
            constraints: String::new(),
            states: Vec::new(),
            quorum: true,
            execution_date: None,
        }
    }
    fn prop(mut self, name: &str, value: &str) -> Self {
        self.props.retain(|(n, _)| n != name);
        self.props.push((name.into(), value.into()));
        self
    }
    /// Extra XML inside `<node>` (instance_attributes / utilization).
    fn node_xml(mut self, node: &str, xml: &str) -> Self {
        for (n, x) in &mut self.nodes {
            if n == node {
                x.push_str(xml);
            }
        }
        self
    }
    fn defaults(mut self, pairs: &[(&str, &str)]) -> Self {
        self.rsc_defaults = meta("rsc-defaults", pairs);
        self
    }
    fn op_defaults(mut self, pairs: &[(&str, &str)]) -> Self {
        self.op_defaults = meta("op-defaults", pairs);
        self
    }
    fn rsc(mut self, xml: &str) -> Self {
        self.resources.push_str(xml);
        self
    }
    fn cons(mut self, xml: &str) -> Self {
        self.constraints.push_str(xml);
        self
    }
    /// An online member node with transient attributes and an operation history.
    fn online(mut self, node: &str, attrs: &[(&str, &str)], lrm: &[(&str, &[Op<'_>])]) -> Self {
        self.states.push(node_state(node, true, attrs, lrm));
        self
    }
    fn offline(mut self, node: &str) -> Self {
        self.states.push(format!(
            r#"<node_state id="{node}" uname="{node}" in_ccm="false" crmd="offline" join="down" expected="down"/>"#
        ));
        self
    }
    /// A node that left the membership without a clean shutdown (needs fencing).
    fn lost(mut self, node: &str, lrm: &[(&str, &[Op<'_>])]) -> Self {
        let s = node_state(node, true, &[], lrm).replacen(
            r#"in_ccm="true" crmd="online""#,
            r#"in_ccm="false" crmd="offline""#,
            1,
        );
        self.states.push(s);
        self
    }
    fn no_quorum(mut self) -> Self {
        self.quorum = false;
        self
    }
    fn at(mut self, when: i64) -> Self {
        self.execution_date = Some(when);
        self
    }
    fn xml(&self) -> String {
        let mut x = format!(
            r#"<cib crm_feature_set="3.19.0" validate-with="pacemaker-3.10" admin_epoch="0" epoch="1" num_updates="1" have-quorum="{}"{} dc-uuid="{}"{}>"#,
            u8::from(self.quorum),
            if self.quorum { "" } else { r#" no-quorum-panic="1""# },
            self.nodes[0].0,
            self.execution_date.map(|d| format!(r#" execution-date="{d}""#)).unwrap_or_default()
        );
        x.push_str("<configuration><crm_config><cluster_property_set id=\"opts\">");
        for (n, v) in &self.props {
            let _ = write!(x, r#"<nvpair id="opt-{n}" name="{n}" value="{v}"/>"#);
        }
        x.push_str("</cluster_property_set></crm_config><nodes>");
        for (n, extra) in &self.nodes {
            let _ = write!(x, r#"<node id="{n}" uname="{n}" type="member">{extra}</node>"#);
        }
        x.push_str("</nodes>");
        if !self.rsc_defaults.is_empty() {
            let _ = write!(x, "<rsc_defaults>{}</rsc_defaults>", self.rsc_defaults);
        }
        if !self.op_defaults.is_empty() {
            let _ = write!(x, "<op_defaults>{}</op_defaults>", self.op_defaults);
        }
        let _ = write!(
            x,
            "<resources>{}</resources><constraints>{}</constraints></configuration><status>{}</status></cib>",
            self.resources,
            self.constraints,
            self.states.join("")
        );
        x
    }
    fn transition(&self) -> crm::Transition {
        let opts =
            crm::simulate::SimOptions { now: self.execution_date.unwrap_or(1_700_000_000), ..Default::default() };
        crm::simulate::simulate(&self.xml(), &opts).unwrap_or_else(|e| panic!("{e}")).transition
    }
    /// The nodes `rsc` is probed on.
    fn probed_on(&self, rsc: &str) -> Vec<String> {
        let t = self.transition();
        let mut v: Vec<String> = t
            .actions
            .iter()
            .filter(|a| a.kind == crm::ActionKind::Monitor && a.interval_ms == 0)
            .filter(|a| a.rsc.is_some_and(|r| t.resource_name(r) == rsc))
            .filter_map(|a| a.node.map(|n| t.node_name(n).to_string()))
            .collect();
        v.sort();
        v
    }
    fn actions(&self) -> String {
        crm::simulate::format_actions(&self.transition())
    }
    fn summary(&self) -> Vec<String> {
        let opts =
            crm::simulate::SimOptions { now: self.execution_date.unwrap_or(1_700_000_000), ..Default::default() };
        let sim = crm::simulate::simulate(&self.xml(), &opts).unwrap_or_else(|e| panic!("{e}\n{}", self.xml()));
        if std::env::var("DOC_SCORES").is_ok() {
            eprintln!("{}", crm::simulate::format_scores(&sim.transition));
        }
        let mut v: Vec<String> =
            sim.transition.summary.iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        v.sort();
        v
    }
    /// Asserts the summary equals `want` (order ignored, whitespace collapsed).
    fn expect(&self, want: &[&str]) {
        let mut want: Vec<String> = want.iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        want.sort();
        let got = self.summary();
        assert_eq!(got, want, "\nxml: {}", self.xml());
        if std::env::var("DOC_STABILITY").is_ok() {
            let left =
                crate::stability::left_after_one_transition(&self.xml(), self.execution_date.unwrap_or(1_700_000_000));
            if !left.is_empty() {
                eprintln!("NOT AT REST {:?} then {left:?}", got);
            }
        }
    }
}

fn meta(id: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = format!(r#"<meta_attributes id="{id}-meta">"#);
    for (n, v) in pairs {
        let _ = write!(s, r#"<nvpair id="{id}-{n}" name="{n}" value="{v}"/>"#);
    }
    s.push_str("</meta_attributes>");
    s
}

fn node_state(node: &str, online: bool, attrs: &[(&str, &str)], lrm: &[(&str, &[Op<'_>])]) -> String {
    let (ccm, crmd) = if online { ("true", "online") } else { ("false", "offline") };
    let mut s = format!(
        r#"<node_state id="{node}" uname="{node}" in_ccm="{ccm}" crmd="{crmd}" join="member" expected="member">"#
    );
    if !attrs.is_empty() {
        let _ = write!(s, r#"<transient_attributes id="{node}"><instance_attributes id="status-{node}">"#);
        for (n, v) in attrs {
            let _ = write!(s, r#"<nvpair id="status-{node}-{n}" name="{n}" value="{v}"/>"#);
        }
        s.push_str("</instance_attributes></transient_attributes>");
    }
    let _ = write!(s, r#"<lrm id="{node}"><lrm_resources>"#);
    for (rsc, ops) in lrm {
        if rsc.starts_with("fence") {
            let _ = write!(s, r#"<lrm_resource id="{rsc}" class="stonith" type="fence_dummy">"#);
        } else {
            let _ = write!(s, r#"<lrm_resource id="{rsc}" class="ocf" provider="pacemaker" type="Dummy">"#);
        }
        for (op, interval, rc, call) in ops.iter() {
            let _ = write!(
                s,
                r#"<lrm_rsc_op id="{rsc}_{op}_{interval}_{call}" operation="{op}" interval="{interval}" rc-code="{rc}" op-status="{}" call-id="{call}" transition-key="1:1:0:abc" last-rc-change="1600000000" on_node="{node}"/>"#,
                if *rc == 0 || *rc == 7 || *rc == 8 { 0 } else { 4 },
            );
        }
        s.push_str("</lrm_resource>");
    }
    s.push_str("</lrm_resources></lrm></node_state>");
    s
}

/// A Dummy primitive with optional meta attributes and operations XML.
fn prim(id: &str, metas: &[(&str, &str)], ops: &str) -> String {
    let m = if metas.is_empty() { String::new() } else { meta(id, metas) };
    let o = if ops.is_empty() { String::new() } else { format!("<operations>{ops}</operations>") };
    format!(r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy">{m}{o}</primitive>"#)
}

fn monitor(id: &str, interval: &str, extra: &str) -> String {
    format!(r#"<op id="{id}-monitor-{interval}" name="monitor" interval="{interval}" {extra}/>"#)
}

fn clone(id: &str, metas: &[(&str, &str)], child: &str) -> String {
    format!(r#"<clone id="{id}">{}{child}</clone>"#, meta(id, metas))
}

fn group(id: &str, metas: &[(&str, &str)], children: &[String]) -> String {
    let m = if metas.is_empty() { String::new() } else { meta(id, metas) };
    format!(r#"<group id="{id}">{m}{}</group>"#, children.concat())
}

const RUNNING: &[Op<'static>] = &[("start", 0, 0, 2), ("monitor", 10000, 0, 3)];
const FAILED_MONITOR: &[Op<'static>] = &[("start", 0, 0, 2), ("monitor", 10000, 1, 3)];
const PROMOTED: &[Op<'static>] = &[("start", 0, 0, 2), ("promote", 0, 0, 3)];
const STOPPED: &[Op<'static>] = &[("monitor", 0, 7, 1)];

fn loc(id: &str, rsc: &str, node: &str, score: &str) -> String {
    format!(r#"<rsc_location id="{id}" rsc="{rsc}" node="{node}" score="{score}"/>"#)
}

// ---------------------------------------------------------------- on-fail

#[test]
fn on_fail_ignore_leaves_a_failed_resource_alone() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], &monitor("r", "10s", r#"on-fail="ignore""#)))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn on_fail_restart_recovers_in_place() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], &monitor("r", "10s", "")))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Recover r ( n1 )"]);
}

#[test]
fn on_fail_stop_stops_and_does_not_restart() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], &monitor("r", "10s", r#"on-fail="stop""#)))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Stop r ( n1 ) due to node availability"]);
}

#[test]
fn on_fail_block_takes_no_action() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], &monitor("r", "10s", r#"on-fail="block""#)))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn on_fail_standby_moves_every_resource_off_the_node() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], &monitor("r", "10s", r#"on-fail="standby""#)))
        .rsc(&prim("other", &[], ""))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR), ("other", RUNNING)])
        .online("n2", &[], &[("r", STOPPED), ("other", STOPPED)])
        .expect(&["Recover r ( n1 -> n2 )", "Move other ( n1 -> n2 )"]);
}

#[test]
fn on_fail_fence_fences_the_node() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .rsc(&prim("r", &[], &monitor("r", "10s", r#"on-fail="fence""#)))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED), ("fence", &[("start", 0, 0, 2)])])
        .expect(&["Fence (reboot) n1 'r failed there'", "Recover r ( n1 -> n2 )"]);
}

fn promotable(id: &str, child: &str, extra: &[(&str, &str)]) -> String {
    let mut m = vec![("promotable", "true"), ("clone-max", "2"), ("promoted-max", "1")];
    m.extend_from_slice(extra);
    clone(id, &m, child)
}

#[test]
fn on_fail_demote_demotes_a_failed_promoted_instance() {
    let ops = format!(
        "{}{}",
        monitor("s", "10s", r#"role="Promoted" on-fail="demote""#),
        monitor("s", "11s", r#"role="Unpromoted""#)
    );
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], &ops), &[]))
        .cons(r#"<rsc_location id="ms-n1" rsc="ms" role="Promoted" node="n1" score="-INFINITY"/>"#)
        .online(
            "n1",
            &[("fail-count-s#monitor_10000", "1"), ("master-s", "10")],
            &[("s", &[("start", 0, 0, 2), ("promote", 0, 0, 3), ("monitor", 10000, 1, 4)])],
        )
        .online("n2", &[("master-s", "5")], &[("s", &[("start", 0, 0, 2), ("monitor", 11000, 0, 3)])])
        .expect(&["Demote s:0 ( Promoted -> Unpromoted n1 )", "Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

// ---------------------------------------------------------------- failure-timeout / thresholds

fn threshold_cib(now: i64) -> Cib {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("migration-threshold", "1"), ("failure-timeout", "60s")], &monitor("r", "10s", "")))
        .cons(&loc("prefer-n1", "r", "n1", "100"))
        .online(
            "n1",
            &[("fail-count-r#monitor_10000", "1"), ("last-failure-r#monitor_10000", "1600000000")],
            &[("r", &[("start", 0, 0, 2), ("monitor", 10000, 1, 3), ("stop", 0, 0, 4)])],
        )
        .online("n2", &[], &[("r", RUNNING)])
        .at(now)
}

#[test]
fn migration_threshold_keeps_a_resource_off_its_failed_node() {
    threshold_cib(1_600_000_030).expect(&[]);
}

#[test]
fn failure_timeout_expiry_lets_a_resource_return() {
    threshold_cib(1_600_000_100).expect(&["Move r ( n2 -> n1 )"]);
}

#[test]
fn start_failure_is_fatal_bans_the_node() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .cons(&loc("prefer-n1", "r", "n1", "100"))
        .online("n1", &[("fail-count-r#start_0", "INFINITY")], &[("r", &[("start", 0, 1, 2)])])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Recover r ( n1 -> n2 )"]);
}

#[test]
fn start_failure_not_fatal_retries_below_threshold() {
    Cib::new(&["n1", "n2"])
        .prop("start-failure-is-fatal", "false")
        .rsc(&prim("r", &[("migration-threshold", "3")], ""))
        .cons(&loc("prefer-n1", "r", "n1", "100"))
        .online("n1", &[("fail-count-r#start_0", "1")], &[("r", &[("start", 0, 1, 2)])])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Recover r ( n1 )"]);
}

// ---------------------------------------------------------------- quorum

fn two_rsc_no_quorum(policy: &str) -> Cib {
    Cib::new(&["n1", "n2", "n3"])
        .prop("no-quorum-policy", policy)
        .rsc(&prim("running", &[], ""))
        .rsc(&prim("stopped", &[], ""))
        .online("n1", &[], &[("running", RUNNING), ("stopped", STOPPED)])
        .offline("n2")
        .offline("n3")
        .no_quorum()
}

#[test]
fn no_quorum_stop_stops_everything() {
    two_rsc_no_quorum("stop")
        .expect(&["Stop running ( n1 ) due to no quorum", "Start stopped ( n1 ) due to no quorum (blocked)"]);
}

#[test]
fn no_quorum_freeze_keeps_running_resources_and_starts_none() {
    two_rsc_no_quorum("freeze").expect(&["Start stopped ( n1 ) due to quorum freeze (blocked)"]);
}

#[test]
fn no_quorum_ignore_carries_on() {
    two_rsc_no_quorum("ignore").expect(&["Start stopped ( n1 )"]);
}

#[test]
fn no_quorum_demote_demotes_promoted_and_stops_others() {
    Cib::new(&["n1", "n2", "n3"])
        .prop("no-quorum-policy", "demote")
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&prim("plain", &[], ""))
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED), ("plain", RUNNING)])
        .offline("n2")
        .offline("n3")
        .no_quorum()
        .expect(&["Demote s:0 ( Promoted -> Unpromoted n1 )", "Stop plain ( n1 ) due to no quorum"]);
}

// ---------------------------------------------------------------- fencing

#[test]
fn lost_node_is_fenced_with_the_configured_action() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .prop("fencing-action", "off")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED)])
        .lost("n2", &[("r", RUNNING)])
        .expect(&["Fence (off) n2 'peer is no longer part of the cluster'", "Move r ( n2 -> n1 )"]);
}

#[test]
fn priority_fencing_delay_does_not_change_decisions() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .prop("priority-fencing-delay", "10s")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .rsc(&prim("r", &[("priority", "10")], ""))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED)])
        .lost("n2", &[("r", RUNNING)])
        .expect(&["Fence (reboot) n2 'peer is no longer part of the cluster'", "Move r ( n2 -> n1 )"]);
}

// ---------------------------------------------------------------- management

#[test]
fn unmanaged_failed_resource_is_left_alone() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("is-managed", "false")], &monitor("r", "10s", "")))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn node_maintenance_leaves_its_resources_alone() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .rsc(&prim("q", &[], ""))
        .cons(&loc("r-away", "r", "n1", "-INFINITY"))
        .online("n1", &[("maintenance", "true")], &[("r", RUNNING), ("q", STOPPED)])
        .online("n2", &[], &[("r", STOPPED), ("q", STOPPED)])
        .expect(&["Start q ( n2 )"]);
}

#[test]
fn standby_node_is_drained() {
    Cib::new(&["n1", "n2"])
        .node_xml(
            "n1",
            r#"<instance_attributes id="n1-ia"><nvpair id="n1-sb" name="standby" value="on"/></instance_attributes>"#,
        )
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&["Move a ( n1 -> n2 )", "Move b ( n1 -> n2 )"]);
}

#[test]
fn target_role_stopped_on_a_group_stops_all_members() {
    Cib::new(&["n1"])
        .rsc(&group("g", &[("target-role", "Stopped")], &[prim("a", &[], ""), prim("b", &[], "")]))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING)])
        .expect(&["Stop a ( n1 ) due to node availability", "Stop b ( n1 ) due to node availability"]);
}

// ---------------------------------------------------------------- stickiness

#[test]
fn group_stickiness_is_the_sum_of_its_members() {
    // 2 members x 60 = 120 beats a 100 preference elsewhere.
    Cib::new(&["n1", "n2"])
        .defaults(&[("resource-stickiness", "60")])
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(&loc("a-n2", "a", "n2", "100"))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&[]);
}

#[test]
fn group_below_summed_stickiness_moves() {
    Cib::new(&["n1", "n2"])
        .defaults(&[("resource-stickiness", "40")])
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(&loc("a-n2", "a", "n2", "100"))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&["Move a ( n1 -> n2 )", "Move b ( n1 -> n2 )"]);
}

#[test]
fn clone_instances_stick_to_their_nodes() {
    Cib::new(&["n1", "n2", "n3"])
        .defaults(&[("resource-stickiness", "1")])
        .rsc(&clone("c", &[("clone-max", "2")], &prim("d", &[], "")))
        .cons(&loc("c-n3", "c", "n3", "0"))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", STOPPED)])
        .expect(&[]);
}

// ---------------------------------------------------------------- utilization

fn util(id: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = format!(r#"<utilization id="{id}-util">"#);
    for (n, v) in pairs {
        let _ = write!(s, r#"<nvpair id="{id}-u-{n}" name="{n}" value="{v}"/>"#);
    }
    s.push_str("</utilization>");
    s
}

fn prim_util(id: &str, cpu: &str) -> String {
    format!(
        r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        util(id, &[("cpu", cpu)])
    )
}

fn util_cib(strategy: &str) -> Cib {
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", strategy)
        .node_xml("n1", &util("n1", &[("cpu", "2")]))
        .node_xml("n2", &util("n2", &[("cpu", "4")]))
        .rsc(&prim_util("a", "1"))
        .rsc(&prim_util("b", "1"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
}

#[test]
fn placement_default_spreads_by_resource_count() {
    util_cib("default").expect(&["Start a ( n1 )", "Start b ( n2 )"]);
}

#[test]
fn placement_minimal_packs_onto_the_first_node() {
    util_cib("minimal").expect(&["Start a ( n1 )", "Start b ( n1 )"]);
}

#[test]
fn placement_balanced_prefers_most_free_capacity() {
    util_cib("balanced").expect(&["Start a ( n2 )", "Start b ( n2 )"]);
}

#[test]
fn placement_utilization_refuses_an_overfull_node() {
    Cib::new(&["n1"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "1")]))
        .rsc(&prim_util("a", "1"))
        .rsc(&prim_util("b", "1"))
        .online("n1", &[], &[])
        .expect(&["Start a ( n1 )"]);
}

// ---------------------------------------------------------------- orders

#[test]
fn asymmetric_order_does_not_stop_then_when_first_stops() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[("target-role", "Stopped")], ""))
        .rsc(&prim("b", &[], ""))
        .cons(r#"<rsc_order id="o" first="a" then="b" symmetrical="false"/>"#)
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING)])
        .expect(&["Stop a ( n1 ) due to node availability"]);
}

#[test]
fn symmetric_order_restarts_then_when_first_restarts() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[], &monitor("a", "10s", "")))
        .rsc(&prim("b", &[], ""))
        .cons(r#"<rsc_order id="o" first="a" then="b"/>"#)
        .online("n1", &[("fail-count-a#monitor_10000", "1")], &[("a", FAILED_MONITOR), ("b", RUNNING)])
        .expect(&["Recover a ( n1 )", "Restart b ( n1 ) due to required a start"]);
}

#[test]
fn optional_order_does_not_restart_then() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[], &monitor("a", "10s", "")))
        .rsc(&prim("b", &[], ""))
        .cons(r#"<rsc_order id="o" first="a" then="b" kind="Optional"/>"#)
        .online("n1", &[("fail-count-a#monitor_10000", "1")], &[("a", FAILED_MONITOR), ("b", RUNNING)])
        .expect(&["Recover a ( n1 )"]);
}

#[test]
fn mandatory_order_keeps_then_stopped_when_first_cannot_run() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[("target-role", "Stopped")], ""))
        .rsc(&prim("b", &[], ""))
        .cons(r#"<rsc_order id="o" first="a" then="b"/>"#)
        .online("n1", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&["Start b ( n1 ) due to unrunnable a start (blocked)"]);
}

#[test]
fn require_all_false_set_starts_then_when_any_member_can() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[("target-role", "Stopped")], ""))
        .rsc(&prim("b", &[], ""))
        .rsc(&prim("c", &[], ""))
        .cons(
            r#"<rsc_order id="o"><resource_set id="s1" sequential="false" require-all="false"><resource_ref id="a"/><resource_ref id="b"/></resource_set><resource_set id="s2"><resource_ref id="c"/></resource_set></rsc_order>"#,
        )
        .online("n1", &[], &[("a", STOPPED), ("b", STOPPED), ("c", STOPPED)])
        .expect(&["Start b ( n1 )", "Start c ( n1 )"]);
}

#[test]
fn clone_min_blocks_then_until_enough_instances_run() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[("clone-min", "2")], &prim("d", &[], "")))
        .rsc(&prim("after", &[], ""))
        .cons(&loc("c-not-n2", "c", "n2", "-INFINITY"))
        .cons(r#"<rsc_order id="o" first="c" then="after"/>"#)
        .online("n1", &[], &[("d", STOPPED), ("after", STOPPED)])
        .online("n2", &[], &[("d", STOPPED), ("after", STOPPED)])
        .expect(&["Start d:0 ( n1 )", "Start after ( n2 ) due to unrunnable clone-one-or-more:o (blocked)"]);
}

// ---------------------------------------------------------------- colocation / location

#[test]
fn colocation_node_attribute_places_on_nodes_sharing_the_value() {
    let site = |n: &str, v: &str| {
        format!(
            r#"<instance_attributes id="{n}-ia"><nvpair id="{n}-site" name="site" value="{v}"/></instance_attributes>"#
        )
    };
    Cib::new(&["n1", "n2", "n3"])
        .node_xml("n1", &site("n1", "east"))
        .node_xml("n2", &site("n2", "west"))
        .node_xml("n3", &site("n3", "west"))
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .cons(&loc("a-n3", "a", "n3", "INFINITY"))
        .cons(&loc("b-not-n3", "b", "n3", "-INFINITY"))
        .cons(r#"<rsc_colocation id="c" rsc="b" with-rsc="a" score="INFINITY" node-attribute="site"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .online("n3", &[], &[])
        .expect(&["Start a ( n3 )", "Start b ( n2 )"]);
}

#[test]
fn rsc_pattern_location_applies_to_every_matching_resource() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("web-1", &[], ""))
        .rsc(&prim("web-2", &[], ""))
        .rsc(&prim("db", &[], ""))
        .cons(r#"<rsc_location id="webs" rsc-pattern="^web-" node="n2" score="INFINITY"/>"#)
        .cons(&loc("db-n1", "db", "n1", "INFINITY"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start web-1 ( n2 )", "Start web-2 ( n2 )", "Start db ( n1 )"]);
}

#[test]
fn rsc_pattern_capture_substitutes_into_rule_values() {
    let attr = |n: &str, v: &str| {
        format!(
            r#"<instance_attributes id="{n}-ia"><nvpair id="{n}-svc" name="svc" value="{v}"/></instance_attributes>"#
        )
    };
    Cib::new(&["n1", "n2"])
        .node_xml("n1", &attr("n1", "alpha"))
        .node_xml("n2", &attr("n2", "beta"))
        .rsc(&prim("ip-alpha", &[], ""))
        .rsc(&prim("ip-beta", &[], ""))
        .cons(
            r#"<rsc_location id="ips" rsc-pattern="^ip-(.*)$"><rule id="ips-r" score="INFINITY"><expression id="ips-e" attribute="svc" operation="eq" value="%1"/></rule></rsc_location>"#,
        )
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start ip-alpha ( n1 )", "Start ip-beta ( n2 )"]);
}

#[test]
fn asymmetric_cluster_runs_only_where_allowed() {
    Cib::new(&["n1", "n2"])
        .prop("symmetric-cluster", "false")
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .cons(&loc("a-n2", "a", "n2", "0"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n2 )"]);
}

// ---------------------------------------------------------------- clones

#[test]
fn promoted_max_two_promotes_two_instances() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("ms", &[("promotable", "true"), ("promoted-max", "2")], &prim("s", &[], "")))
        .online("n1", &[("master-s", "10")], &[("s", RUNNING)])
        .online("n2", &[("master-s", "10")], &[("s", RUNNING)])
        .online("n3", &[("master-s", "10")], &[("s", RUNNING)])
        .expect(&["Promote s:0 ( Unpromoted -> Promoted n1 )", "Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn interleaved_clone_restarts_only_the_local_dependent() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("base", &[], &prim("b", &[], &monitor("b", "10s", ""))))
        .rsc(&clone("top", &[("interleave", "true")], &prim("t", &[], "")))
        .cons(r#"<rsc_order id="o" first="base" then="top"/>"#)
        .cons(r#"<rsc_colocation id="c" rsc="top" with-rsc="base" score="INFINITY"/>"#)
        .online("n1", &[("fail-count-b#monitor_10000", "1")], &[("b", FAILED_MONITOR), ("t", RUNNING)])
        .online("n2", &[], &[("b", RUNNING), ("t", RUNNING)])
        .expect(&["Recover b:0 ( n1 )", "Restart t:0 ( n1 ) due to required b:0 start"]);
}

#[test]
fn non_interleaved_clone_restarts_every_dependent() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("base", &[], &prim("b", &[], &monitor("b", "10s", ""))))
        .rsc(&clone("top", &[], &prim("t", &[], "")))
        .cons(r#"<rsc_order id="o" first="base" then="top"/>"#)
        .online("n1", &[("fail-count-b#monitor_10000", "1")], &[("b", FAILED_MONITOR), ("t", RUNNING)])
        .online("n2", &[], &[("b", RUNNING), ("t", RUNNING)])
        .expect(&[
            "Recover b:0 ( n1 )",
            "Restart t:0 ( n1 ) due to required base running",
            "Restart t:1 ( n2 ) due to required base running",
        ]);
}

#[test]
fn on_fail_demote_re_promotes_where_the_promotion_score_is_still_highest() {
    let ops = format!(
        "{}{}",
        monitor("s", "10s", r#"role="Promoted" on-fail="demote""#),
        monitor("s", "11s", r#"role="Unpromoted""#)
    );
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], &ops), &[]))
        .online(
            "n1",
            &[("fail-count-s#monitor_10000", "1"), ("master-s", "10")],
            &[("s", &[("start", 0, 0, 2), ("promote", 0, 0, 3), ("monitor", 10000, 1, 4)])],
        )
        .online("n2", &[("master-s", "5")], &[("s", &[("start", 0, 0, 2), ("monitor", 11000, 0, 3)])])
        .expect(&["Re-promote s:0 ( Promoted n1 )"]);
}

// ---------------------------------------------------------------- batch 2

#[test]
fn migration_threshold_allows_recovery_in_place_below_the_limit() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("migration-threshold", "3")], &monitor("r", "10s", "")))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Recover r ( n1 )"]);
}

#[test]
fn migration_threshold_reached_moves_the_resource() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("migration-threshold", "3")], &monitor("r", "10s", "")))
        .online("n1", &[("fail-count-r#monitor_10000", "3")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Recover r ( n1 -> n2 )"]);
}

#[test]
fn colocation_dependent_preferences_pull_the_primary() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("a", &[("resource-stickiness", "50")], ""))
        .rsc(&prim("b", &[], ""))
        .cons(&loc("b-n2", "b", "n2", "100"))
        .cons(r#"<rsc_colocation id="c" rsc="b" with-rsc="a" score="INFINITY"/>"#)
        .online("n1", &[], &[("a", RUNNING), ("b", STOPPED)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&["Move a ( n1 -> n2 )", "Start b ( n2 )"]);
}

#[test]
fn colocation_without_influence_leaves_the_primary_in_place() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("a", &[("resource-stickiness", "50")], ""))
        .rsc(&prim("b", &[], ""))
        .cons(&loc("b-n2", "b", "n2", "100"))
        .cons(r#"<rsc_colocation id="c" rsc="b" with-rsc="a" score="INFINITY" influence="false"/>"#)
        .online("n1", &[], &[("a", RUNNING), ("b", STOPPED)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&["Start b ( n1 )"]);
}

#[test]
fn critical_false_on_the_dependent_removes_its_influence() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("a", &[("resource-stickiness", "50")], ""))
        .rsc(&prim("b", &[("critical", "false")], ""))
        .cons(&loc("b-n2", "b", "n2", "100"))
        .cons(r#"<rsc_colocation id="c" rsc="b" with-rsc="a" score="INFINITY"/>"#)
        .online("n1", &[], &[("a", RUNNING), ("b", STOPPED)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&["Start b ( n1 )"]);
}

#[test]
fn anti_colocation_keeps_resources_apart() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .cons(&loc("a-n1", "a", "n1", "100"))
        .cons(&loc("b-n1", "b", "n1", "50"))
        .cons(r#"<rsc_colocation id="c" rsc="b" with-rsc="a" score="-INFINITY"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n1 )", "Start b ( n2 )"]);
}

#[test]
fn higher_priority_resource_wins_the_only_node() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("low", &[("priority", "1")], ""))
        .rsc(&prim("high", &[("priority", "10")], ""))
        .cons(&loc("low-n2", "low", "n2", "-INFINITY"))
        .cons(&loc("high-n2", "high", "n2", "-INFINITY"))
        .cons(r#"<rsc_colocation id="c" rsc="low" with-rsc="high" score="-INFINITY"/>"#)
        .online("n1", &[], &[("low", RUNNING), ("high", STOPPED)])
        .online("n2", &[], &[])
        .expect(&["Stop low ( n1 ) due to node availability", "Start high ( n1 )"]);
}

#[test]
fn promotable_target_role_unpromoted_never_promotes() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[("target-role", "Unpromoted")]))
        .online("n1", &[("master-s", "10")], &[("s", RUNNING)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&[]);
}

#[test]
fn promotable_highest_score_is_promoted() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .online("n1", &[("master-s", "5")], &[("s", RUNNING)])
        .online("n2", &[("master-s", "10")], &[("s", RUNNING)])
        .expect(&["Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn colocation_with_promoted_role_follows_the_promoted_instance() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[("notify", "true")]))
        .rsc(&prim("fs", &[], ""))
        .cons(r#"<rsc_colocation id="c" rsc="fs" with-rsc="ms" with-rsc-role="Promoted" score="INFINITY"/>"#)
        .cons(r#"<rsc_order id="o" first="ms" first-action="promote" then="fs" then-action="start"/>"#)
        .online("n1", &[("master-s", "5")], &[("s", RUNNING), ("fs", STOPPED)])
        .online("n2", &[("master-s", "10")], &[("s", PROMOTED), ("fs", STOPPED)])
        .expect(&["Start fs ( n2 )"]);
}

#[test]
fn resource_maintenance_meta_leaves_it_alone() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("maintenance", "true")], ""))
        .cons(&loc("r-away", "r", "n1", "-INFINITY"))
        .online("n1", &[], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn maintenance_mode_freezes_the_cluster() {
    Cib::new(&["n1", "n2"])
        .prop("maintenance-mode", "true")
        .rsc(&prim("r", &[], ""))
        .rsc(&prim("q", &[], ""))
        .cons(&loc("r-away", "r", "n1", "-INFINITY"))
        .online("n1", &[], &[("r", RUNNING), ("q", STOPPED)])
        .online("n2", &[], &[("r", STOPPED), ("q", STOPPED)])
        .expect(&[]);
}

#[test]
fn stop_all_resources_stops_everything() {
    Cib::new(&["n1"])
        .prop("stop-all-resources", "true")
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("r", RUNNING)])
        .expect(&["Stop r ( n1 ) due to node availability"]);
}

#[test]
fn cleanly_offline_node_without_fencing_just_loses_its_resources() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("r", STOPPED)])
        .offline("n2")
        .expect(&["Start r ( n1 )"]);
}

#[test]
fn failed_stop_without_fencing_blocks_the_resource() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .cons(&loc("r-away", "r", "n1", "-INFINITY"))
        .online("n1", &[("fail-count-r#stop_0", "INFINITY")], &[("r", &[("start", 0, 0, 2), ("stop", 0, 1, 3)])])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn failed_stop_with_fencing_fences_and_recovers_elsewhere() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .rsc(&prim("r", &[], ""))
        .online("n1", &[("fail-count-r#stop_0", "INFINITY")], &[("r", &[("start", 0, 0, 2), ("stop", 0, 1, 3)])])
        .online("n2", &[], &[("r", STOPPED), ("fence", &[("start", 0, 0, 2)])])
        .expect(&["Fence (reboot) n1 'r failed there'", "Recover r ( n1 -> n2 )"]);
}

#[test]
fn clone_node_max_two_doubles_up() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone(
            "c",
            &[("clone-max", "3"), ("clone-node-max", "2"), ("globally-unique", "true")],
            &prim("d", &[], ""),
        ))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start d:0 ( n1 )", "Start d:1 ( n2 )", "Start d:2 ( n1 )"]);
}

#[test]
fn clone_failure_past_threshold_moves_the_instance() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("c", &[("clone-max", "2")], &prim("d", &[("migration-threshold", "1")], &monitor("d", "10s", ""))))
        .online("n1", &[("fail-count-d#monitor_10000", "1")], &[("d", FAILED_MONITOR)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", STOPPED)])
        .expect(&["Recover d:0 ( n1 -> n3 )"]);
}

#[test]
fn pending_start_is_waited_for() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("r", &[("start", 0, 0, -1)])])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn on_fail_standby_also_applies_to_the_failed_nodes_clones() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], &monitor("r", "10s", r#"on-fail="standby""#)))
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR), ("d", RUNNING)])
        .online("n2", &[], &[("r", STOPPED), ("d", RUNNING)])
        .expect(&["Recover r ( n1 -> n2 )", "Stop d:0 ( n1 ) due to node availability"]);
}

#[test]
fn failure_timeout_without_threshold_cleanup_keeps_resource_in_place() {
    // An expired monitor failure on a resource that is still running: nothing to do.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("failure-timeout", "60s")], &monitor("r", "10s", "")))
        .online(
            "n1",
            &[("fail-count-r#monitor_10000", "1"), ("last-failure-r#monitor_10000", "1600000000")],
            &[(
                "r",
                &[
                    ("start", 0, 0, 2),
                    ("monitor", 10000, 1, 3),
                    ("stop", 0, 0, 4),
                    ("start", 0, 0, 5),
                    ("monitor", 10000, 0, 6),
                ],
            )],
        )
        .online("n2", &[], &[("r", STOPPED)])
        .at(1_600_000_100)
        .expect(&[]);
}

#[test]
fn banned_clone_instance_moves_to_a_free_node() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("c", &[("clone-max", "2")], &prim("d", &[], "")))
        .cons(&loc("c-not-n1", "c", "n1", "-INFINITY"))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", STOPPED)])
        .expect(&["Move d:0 ( n1 -> n3 )"]);
}

// ---------------------------------------------------------------- batch 3

#[test]
fn no_quorum_fence_fences_the_inquorate_partition() {
    Cib::new(&["n1", "n2", "n3"])
        .prop("fencing-enabled", "true")
        .prop("no-quorum-policy", "fence")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", RUNNING)])
        .offline("n2")
        .offline("n3")
        .no_quorum()
        .expect(&[
            "Fence (reboot) n1 'cluster does not have quorum'",
            "Stop fence ( n1 ) due to node availability",
            "Stop r ( n1 ) due to node availability",
        ]);
}

#[test]
fn serialize_order_does_not_stop_either_resource_starting() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .cons(r#"<rsc_order id="o" first="a" then="b" kind="Serialize"/>"#)
        .online("n1", &[], &[])
        .expect(&["Start a ( n1 )", "Start b ( n1 )"]);
}

#[test]
fn stickiness_outweighs_a_weaker_location_preference() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("resource-stickiness", "100")], ""))
        .cons(&loc("r-n2", "r", "n2", "50"))
        .online("n1", &[], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn sequential_order_set_blocks_the_rest_of_the_chain() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[("target-role", "Stopped")], ""))
        .rsc(&prim("b", &[], ""))
        .rsc(&prim("c", &[], ""))
        .cons(r#"<rsc_order id="o"><resource_set id="s"><resource_ref id="a"/><resource_ref id="b"/><resource_ref id="c"/></resource_set></rsc_order>"#)
        .online("n1", &[], &[])
        .expect(&["Start b ( n1 ) due to unrunnable a start (blocked)", "Start c ( n1 ) due to unrunnable b start (blocked)"]);
}

#[test]
fn clone_target_role_stopped_stops_every_instance() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[("target-role", "Stopped")], &prim("d", &[], "")))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .expect(&["Stop d:0 ( n1 ) due to node availability", "Stop d:1 ( n2 ) due to node availability"]);
}

#[test]
fn failed_promoted_instance_is_recovered_and_promotion_moves() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], &monitor("s", "10s", r#"role="Promoted""#)), &[]))
        .online(
            "n1",
            &[("fail-count-s#monitor_10000", "1"), ("master-s", "10")],
            &[("s", &[("start", 0, 0, 2), ("promote", 0, 0, 3), ("monitor", 10000, 1, 4)])],
        )
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Recover s:0 ( Promoted n1 )"]);
}

#[test]
fn on_fail_block_on_start_leaves_it_blocked() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], r#"<op id="r-start" name="start" interval="0" on-fail="block"/>"#))
        .online("n1", &[("fail-count-r#start_0", "INFINITY")], &[("r", &[("start", 0, 1, 2)])])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn utilization_moves_the_lower_priority_resource_when_full() {
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "2")]))
        .node_xml("n2", &util("n2", &[("cpu", "1")]))
        .rsc(&format!(
            r#"<primitive id="big" class="ocf" provider="pacemaker" type="Dummy">{}{}</primitive>"#,
            meta("big", &[("priority", "10")]),
            util("big", &[("cpu", "2")])
        ))
        .rsc(&prim_util("small", "1"))
        .online("n1", &[], &[("small", RUNNING)])
        .online("n2", &[], &[])
        .expect(&["Move small ( n1 -> n2 )", "Start big ( n1 )"]);
}

#[test]
fn utilization_with_no_room_anywhere_leaves_resource_stopped() {
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "balanced")
        .node_xml("n1", &util("n1", &[("cpu", "1")]))
        .node_xml("n2", &util("n2", &[("cpu", "1")]))
        .rsc(&prim_util("huge", "2"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&[]);
}

#[test]
fn group_member_failure_restarts_the_members_after_it() {
    Cib::new(&["n1"])
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], &monitor("b", "10s", "")), prim("c", &[], "")]))
        .online("n1", &[("fail-count-b#monitor_10000", "1")], &[("a", RUNNING), ("b", FAILED_MONITOR), ("c", RUNNING)])
        .expect(&["Recover b ( n1 )", "Restart c ( n1 ) due to required b start"]);
}

#[test]
fn group_member_that_cannot_run_stops_later_members() {
    Cib::new(&["n1", "n2"])
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], ""), prim("c", &[], "")]))
        .cons(&loc("b-never", "b", "n1", "-INFINITY"))
        .cons(&loc("b-never2", "b", "n2", "-INFINITY"))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING), ("c", RUNNING)])
        .online("n2", &[], &[])
        .expect(&["Stop b ( n1 ) due to node availability", "Stop c ( n1 ) due to node availability"]);
}

#[test]
fn promotable_notify_clone_start_and_promote() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[("notify", "true")]))
        .online("n1", &[("master-s", "10")], &[])
        .online("n2", &[("master-s", "5")], &[])
        .expect(&["Promote s:0 ( Stopped -> Promoted n1 )", "Start s:1 ( n2 )"]);
}

#[test]
fn ordered_clone_starts_all_instances() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[("ordered", "true")], &prim("d", &[], "")))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start d:0 ( n1 )", "Start d:1 ( n2 )"]);
}

#[test]
fn lost_node_without_fencing_device_blocks_recovery() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("r", STOPPED)])
        .lost("n2", &[("r", RUNNING)])
        .expect(&["Fence (reboot) n2 'peer is no longer part of the cluster'", "Move r ( n2 -> n1 )"]);
}

#[test]
fn legacy_option_names_still_apply() {
    // stonith-enabled=false (the older name of fencing-enabled): a lost node is not fenced,
    // it counts as cleanly down, and what ran there starts elsewhere.
    let mut c = Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("r", STOPPED)])
        .lost("n2", &[("r", RUNNING)]);
    c.props = vec![("stonith-enabled".into(), "false".into())];
    c.expect(&["Start r ( n1 )"]);
}

#[test]
fn legacy_master_max_promotes_two() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("ms", &[("promotable", "true"), ("master-max", "2")], &prim("s", &[], "")))
        .online("n1", &[("master-s", "10")], &[("s", RUNNING)])
        .online("n2", &[("master-s", "10")], &[("s", RUNNING)])
        .online("n3", &[("master-s", "10")], &[("s", RUNNING)])
        .expect(&["Promote s:0 ( Unpromoted -> Promoted n1 )", "Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn on_fail_demote_after_a_failed_promote_re_promotes() {
    let ops = r#"<op id="s-promote" name="promote" interval="0" on-fail="demote"/>"#;
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ops), &[]))
        .online(
            "n1",
            &[("fail-count-s#promote_0", "1"), ("master-s", "10")],
            &[("s", &[("start", 0, 0, 2), ("promote", 0, 1, 3)])],
        )
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Re-promote s:0 ( Promoted n1 )"]);
}

#[test]
fn on_fail_demote_in_a_promotable_group_re_promotes_the_failed_member() {
    // Like a restart, a demotion in a group touches the failed member and those after it.
    let ops = format!(
        "{}{}",
        monitor("b", "10s", r#"role="Promoted" on-fail="demote""#),
        monitor("b", "11s", r#"role="Unpromoted""#)
    );
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &group("g", &[], &[prim("a", &[], ""), prim("b", &[], &ops)]), &[]))
        .online(
            "n1",
            &[("fail-count-b#monitor_10000", "1"), ("master-a", "10"), ("master-b", "10")],
            &[("a", PROMOTED), ("b", &[("start", 0, 0, 2), ("promote", 0, 0, 3), ("monitor", 10000, 1, 4)])],
        )
        .online("n2", &[("master-a", "5"), ("master-b", "5")], &[("a", RUNNING), ("b", RUNNING)])
        .expect(&["Re-promote b:0 ( Promoted n1 )"]);
}

// ---------------------------------------------------------------- batch 4

#[test]
fn asymmetric_cluster_clone_runs_only_on_enabled_nodes() {
    Cib::new(&["n1", "n2", "n3"])
        .prop("symmetric-cluster", "false")
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .cons(&loc("c-n1", "c", "n1", "0"))
        .cons(&loc("c-n3", "c", "n3", "0"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .online("n3", &[], &[])
        .expect(&["Start d:0 ( n1 )", "Start d:1 ( n3 )"]);
}

#[test]
fn location_rule_on_node_attribute_selects_nodes() {
    let attr = |n: &str, v: &str| {
        format!(
            r#"<instance_attributes id="{n}-ia"><nvpair id="{n}-kind" name="kind" value="{v}"/></instance_attributes>"#
        )
    };
    Cib::new(&["n1", "n2"])
        .node_xml("n1", &attr("n1", "small"))
        .node_xml("n2", &attr("n2", "big"))
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_location id="l" rsc="r"><rule id="l-r" score="-INFINITY"><expression id="l-e" attribute="kind" operation="ne" value="big"/></rule></rsc_location>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn location_score_attribute_uses_the_node_value() {
    let attr = |n: &str, v: &str| {
        format!(
            r#"<instance_attributes id="{n}-ia"><nvpair id="{n}-w" name="weight" value="{v}"/></instance_attributes>"#
        )
    };
    Cib::new(&["n1", "n2"])
        .node_xml("n1", &attr("n1", "10"))
        .node_xml("n2", &attr("n2", "20"))
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_location id="l" rsc="r"><rule id="l-r" score-attribute="weight"><expression id="l-e" attribute="weight" operation="defined"/></rule></rsc_location>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn transient_attribute_location_rule_moves_when_the_attribute_drops() {
    // A ping-style rule: -INFINITY where pingd is not defined or is 0.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_location id="l" rsc="r"><rule id="l-r" score="-INFINITY" boolean-op="or"><expression id="l-e1" attribute="pingd" operation="not_defined"/><expression id="l-e2" attribute="pingd" operation="lte" value="0" type="number"/></rule></rsc_location>"#)
        .online("n1", &[("pingd", "0")], &[("r", RUNNING)])
        .online("n2", &[("pingd", "100")], &[("r", STOPPED)])
        .expect(&["Move r ( n1 -> n2 )"]);
}

#[test]
fn colocated_group_with_clone_follows_clone_placement() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(&loc("c-n1", "c", "n1", "-INFINITY"))
        .cons(r#"<rsc_colocation id="co" rsc="g" with-rsc="c" score="INFINITY"/>"#)
        .cons(r#"<rsc_order id="o" first="c" then="g"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start d:0 ( n2 )", "Start a ( n2 )", "Start b ( n2 )"]);
}

#[test]
fn clone_max_zero_runs_nothing() {
    Cib::new(&["n1"])
        .rsc(&clone("c", &[("clone-max", "0")], &prim("d", &[], "")))
        .rsc(&prim("after", &[], ""))
        .cons(r#"<rsc_order id="o" first="c" then="after"/>"#)
        .online("n1", &[], &[])
        .expect(&["Start after ( n1 ) due to unrunnable c running (blocked)"]);
}

#[test]
fn promoted_colocation_with_negative_score_avoids_the_promoted_node() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_colocation id="co" rsc="r" with-rsc="ms" with-rsc-role="Promoted" score="-INFINITY"/>"#)
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED), ("r", STOPPED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING), ("r", STOPPED)])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn order_then_action_stop_first_action_start() {
    // "start a, then stop b": b is stopped (target-role) only after a starts.
    Cib::new(&["n1"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[("target-role", "Stopped")], ""))
        .cons(r#"<rsc_order id="o" first="a" first-action="start" then="b" then-action="stop"/>"#)
        .online("n1", &[], &[("a", STOPPED), ("b", RUNNING)])
        .expect(&["Start a ( n1 )", "Stop b ( n1 ) due to node availability"]);
}

#[test]
fn group_needs_room_for_all_its_members() {
    let member = |id: &str| {
        format!(
            r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
            util(id, &[("cpu", "1")])
        )
    };
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "1")]))
        .node_xml("n2", &util("n2", &[("cpu", "2")]))
        .rsc(&group("g", &[], &[member("a"), member("b")]))
        .cons(&loc("g-n1", "g", "n1", "50"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n2 )", "Start b ( n2 )"]);
}

#[test]
fn colocated_resources_need_room_together() {
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "2")]))
        .node_xml("n2", &util("n2", &[("cpu", "3")]))
        .rsc(&prim_util("big", "2"))
        .rsc(&prim_util("dep", "1"))
        .cons(&loc("big-n1", "big", "n1", "50"))
        .cons(r#"<rsc_colocation id="co" rsc="dep" with-rsc="big" score="INFINITY"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start big ( n2 )", "Start dep ( n2 )"]);
}

#[test]
fn balanced_strategy_spreads_by_free_capacity_then_count() {
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "balanced")
        .node_xml("n1", &util("n1", &[("cpu", "4")]))
        .node_xml("n2", &util("n2", &[("cpu", "4")]))
        .rsc(&prim_util("a", "1"))
        .rsc(&prim_util("b", "1"))
        .rsc(&prim_util("c", "1"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n1 )", "Start b ( n2 )", "Start c ( n1 )"]);
}

#[test]
fn require_all_false_clone_set_runs_then_with_any_instance() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c1", &[], &prim("x", &[], "")))
        .rsc(&clone("c2", &[], &prim("y", &[], "")))
        .rsc(&prim("after", &[], ""))
        .cons(&loc("c1-off", "c1", "n1", "-INFINITY"))
        .cons(&loc("c1-off2", "c1", "n2", "-INFINITY"))
        .cons(
            r#"<rsc_order id="o"><resource_set id="s1" sequential="false" require-all="false"><resource_ref id="c1"/><resource_ref id="c2"/></resource_set><resource_set id="s2"><resource_ref id="after"/></resource_set></rsc_order>"#,
        )
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start y:0 ( n1 )", "Start y:1 ( n2 )", "Start after ( n1 )"]);
}

// ---------------------------------------------------------------- batch 5

#[test]
fn legacy_slave_target_role_means_unpromoted() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[("target-role", "Slave")]))
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Demote s:0 ( Promoted -> Unpromoted n1 )"]);
}

#[test]
fn legacy_master_role_in_a_location_rule() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .cons(r#"<rsc_location id="l" rsc="ms" role="Master" node="n2" score="100"/>"#)
        .online("n1", &[("master-s", "10")], &[("s", RUNNING)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn unmanaged_clone_instance_failure_is_left_alone() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[("is-managed", "false")], &prim("d", &[], &monitor("d", "10s", ""))))
        .online("n1", &[("fail-count-d#monitor_10000", "1")], &[("d", FAILED_MONITOR)])
        .online("n2", &[], &[("d", RUNNING)])
        .expect(&[]);
}

#[test]
fn on_fail_stop_on_a_clone_stops_the_failed_instance() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[], &prim("d", &[], &monitor("d", "10s", r#"on-fail="stop""#))))
        .rsc(&prim("other", &[], ""))
        .online("n1", &[("fail-count-d#monitor_10000", "1")], &[("d", FAILED_MONITOR), ("other", RUNNING)])
        .online("n2", &[], &[("d", RUNNING), ("other", STOPPED)])
        .expect(&["Stop d:0 ( n1 ) due to node availability"]);
}

#[test]
fn rsc_defaults_stickiness_applies_to_every_resource() {
    Cib::new(&["n1", "n2"])
        .defaults(&[("resource-stickiness", "INFINITY")])
        .rsc(&prim("a", &[], ""))
        .cons(&loc("a-n2", "a", "n2", "1000"))
        .online("n1", &[], &[("a", RUNNING)])
        .online("n2", &[], &[("a", STOPPED)])
        .expect(&[]);
}

#[test]
fn multi_state_stop_of_failed_unpromoted_recover() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], &monitor("s", "11s", r#"role="Unpromoted""#)), &[]))
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED)])
        .online(
            "n2",
            &[("fail-count-s#monitor_11000", "1"), ("master-s", "5")],
            &[("s", &[("start", 0, 0, 2), ("monitor", 11000, 1, 3)])],
        )
        .expect(&["Recover s:1 ( Unpromoted n2 )"]);
}

// ---------------------------------------------------------------- batch 6: defaults and inheritance

#[test]
fn migration_threshold_from_rsc_defaults() {
    Cib::new(&["n1", "n2"])
        .defaults(&[("migration-threshold", "1")])
        .rsc(&prim("r", &[], &monitor("r", "10s", "")))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Recover r ( n1 -> n2 )"]);
}

#[test]
fn group_meta_stickiness_is_inherited_by_members() {
    Cib::new(&["n1", "n2"])
        .rsc(&group("g", &[("resource-stickiness", "60")], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(&loc("a-n2", "a", "n2", "100"))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&[]);
}

#[test]
fn op_defaults_on_fail_applies_to_every_operation() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], &monitor("r", "10s", "")))
        .op_defaults(&[("on-fail", "block")])
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn requires_nothing_starts_without_quorum() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&prim("free", &[("requires", "nothing")], ""))
        .rsc(&prim("bound", &[], ""))
        .online("n1", &[], &[])
        .offline("n2")
        .offline("n3")
        .no_quorum()
        .expect(&["Start free ( n1 )", "Start bound ( n1 ) due to no quorum (blocked)"]);
}

#[test]
fn order_demote_then_stop() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&prim("r", &[("target-role", "Stopped")], ""))
        .cons(r#"<rsc_location id="ms-n1" rsc="ms" role="Promoted" node="n1" score="-INFINITY"/>"#)
        .cons(r#"<rsc_order id="o" first="ms" first-action="demote" then="r" then-action="stop"/>"#)
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED), ("r", RUNNING)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING), ("r", STOPPED)])
        .expect(&[
            "Demote s:0 ( Promoted -> Unpromoted n1 )",
            "Promote s:1 ( Unpromoted -> Promoted n2 )",
            "Stop r ( n1 ) due to node availability",
        ]);
}

#[test]
fn failure_timeout_expiry_with_start_failure_not_fatal() {
    Cib::new(&["n1", "n2"])
        .prop("start-failure-is-fatal", "false")
        .rsc(&prim("r", &[("migration-threshold", "2"), ("failure-timeout", "120")], ""))
        .cons(&loc("r-n1", "r", "n1", "100"))
        .online(
            "n1",
            &[("fail-count-r#start_0", "2"), ("last-failure-r#start_0", "1600000000")],
            &[("r", &[("start", 0, 1, 2), ("stop", 0, 0, 3)])],
        )
        .online("n2", &[], &[("r", RUNNING)])
        .at(1_600_000_200)
        .expect(&["Move r ( n2 -> n1 )"]);
}

// ---------------------------------------------------------------- batch 7: rules

fn attr_node(n: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = format!(r#"<instance_attributes id="{n}-ia">"#);
    for (k, v) in pairs {
        let _ = write!(s, r#"<nvpair id="{n}-{k}" name="{k}" value="{v}"/>"#);
    }
    s.push_str("</instance_attributes>");
    s
}

#[test]
fn rule_on_uname_pins_a_resource() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .cons(r##"<rsc_location id="l" rsc="r"><rule id="l-r" score="INFINITY"><expression id="l-e" attribute="#uname" operation="eq" value="n2"/></rule></rsc_location>"##)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn nested_rules_combine_with_their_boolean_ops() {
    Cib::new(&["n1", "n2", "n3"])
        .node_xml("n1", &attr_node("n1", &[("rack", "a"), ("ssd", "yes")]))
        .node_xml("n2", &attr_node("n2", &[("rack", "b"), ("ssd", "yes")]))
        .node_xml("n3", &attr_node("n3", &[("rack", "b"), ("ssd", "no")]))
        .rsc(&prim("r", &[], ""))
        .cons(
            r#"<rsc_location id="l" rsc="r"><rule id="l-r" score="100" boolean-op="and"><expression id="l-e1" attribute="rack" operation="eq" value="b"/><rule id="l-r2" boolean-op="or"><expression id="l-e2" attribute="ssd" operation="eq" value="yes"/><expression id="l-e3" attribute="rack" operation="eq" value="z"/></rule></rule></rsc_location>"#,
        )
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .online("n3", &[], &[])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn version_comparison_in_rules() {
    Cib::new(&["n1", "n2"])
        .node_xml("n1", &attr_node("n1", &[("kver", "5.10.2")]))
        .node_xml("n2", &attr_node("n2", &[("kver", "5.9.30")]))
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_location id="l" rsc="r"><rule id="l-r" score="-INFINITY"><expression id="l-e" attribute="kver" operation="lt" value="5.10" type="version"/></rule></rsc_location>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n1 )"]);
}

#[test]
fn number_comparison_is_numeric_not_lexical() {
    Cib::new(&["n1", "n2"])
        .node_xml("n1", &attr_node("n1", &[("mem", "9")]))
        .node_xml("n2", &attr_node("n2", &[("mem", "10")]))
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_location id="l" rsc="r"><rule id="l-r" score="INFINITY"><expression id="l-e" attribute="mem" operation="gt" value="9" type="number"/></rule></rsc_location>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn rule_with_role_applies_only_to_promotion() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .cons(r##"<rsc_location id="l" rsc="ms"><rule id="l-r" role="Promoted" score="100"><expression id="l-e" attribute="#uname" operation="eq" value="n2"/></rule></rsc_location>"##)
        .online("n1", &[("master-s", "5")], &[("s", RUNNING)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn resource_discovery_exclusive_limits_the_resource_to_those_nodes() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .rsc(&prim("q", &[], ""))
        .cons(r#"<rsc_location id="l" rsc="r" node="n2" score="0" resource-discovery="exclusive"/>"#)
        .cons(&loc("r-n1", "r", "n1", "100"))
        .cons(&loc("q-n1", "q", "n1", "100"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n2 )", "Start q ( n1 )"]);
}

#[test]
fn migration_threshold_zero_never_moves_for_failures() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("migration-threshold", "0")], &monitor("r", "10s", "")))
        .online("n1", &[("fail-count-r#monitor_10000", "50")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Recover r ( n1 )"]);
}

#[test]
fn resource_discovery_never_skips_the_probe_there() {
    let c = Cib::new(&["n1", "n2", "n3"])
        .rsc(&prim("r", &[], ""))
        .rsc(&prim("x", &[], ""))
        .cons(r#"<rsc_location id="l" rsc="r" node="n2" score="-INFINITY" resource-discovery="never"/>"#)
        .cons(r#"<rsc_location id="lx" rsc="x" node="n3" score="0" resource-discovery="exclusive"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .online("n3", &[], &[]);
    assert_eq!(c.probed_on("r"), vec!["n1", "n3"]);
    assert_eq!(c.probed_on("x"), vec!["n3"]);
}

#[test]
fn clone_instances_default_to_stickiness_one() {
    // No stickiness configured: clones still default to 1, so instances outweigh a
    // zero-score preference and a less loaded node.
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("c", &[("clone-max", "2")], &prim("d", &[], "")))
        .rsc(&prim("other", &[], ""))
        .cons(&loc("other-n1", "other", "n1", "INFINITY"))
        .online("n1", &[], &[("d", RUNNING), ("other", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", STOPPED)])
        .expect(&[]);
}

#[test]
fn promotable_clone_is_stable_without_stickiness() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .online("n1", &[("master-s", "5")], &[("s", RUNNING)])
        .online("n2", &[("master-s", "10")], &[("s", PROMOTED)])
        .online("n3", &[], &[("s", STOPPED)])
        .expect(&[]);
}

#[test]
fn on_fail_fence_uses_the_configured_fencing_action() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .prop("fencing-action", "off")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .rsc(&prim("r", &[], &monitor("r", "10s", r#"on-fail="fence""#)))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED), ("fence", &[("start", 0, 0, 2)])])
        .expect(&["Fence (off) n1 'r failed there'", "Recover r ( n1 -> n2 )"]);
}

#[test]
fn unclean_node_with_fencing_disabled_is_not_fenced_and_its_resources_are_left() {
    // Without fencing, a node that left uncleanly is assumed down: nothing is fenced.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("r", STOPPED)])
        .lost("n2", &[("r", RUNNING)])
        .expect(&["Start r ( n1 )"]);
}

#[test]
fn lost_node_with_clone_and_promoted_instance_is_fenced_and_promotion_moves() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .online("n1", &[("master-s", "5")], &[("fence", &[("start", 0, 0, 2)]), ("s", RUNNING)])
        .lost("n2", &[("s", PROMOTED)])
        .expect(&[
            "Fence (reboot) n2 'peer is no longer part of the cluster'",
            "Promote s:0 ( Unpromoted -> Promoted n1 )",
            "Stop s:1 ( Promoted n2 ) due to node availability",
        ]);
}

// ---------------------------------------------------------------- batch 8

#[test]
fn asymmetric_cluster_stops_a_resource_with_no_allowed_node() {
    Cib::new(&["n1"])
        .prop("symmetric-cluster", "false")
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("r", RUNNING)])
        .expect(&["Stop r ( n1 ) due to node availability"]);
}

#[test]
fn target_role_promoted_allows_promotion() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[("target-role", "Promoted")]))
        .online("n1", &[("master-s", "10")], &[("s", RUNNING)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Promote s:0 ( Unpromoted -> Promoted n1 )"]);
}

#[test]
fn utilization_counts_every_clone_instance() {
    let d = format!(
        r#"<primitive id="d" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        util("d", &[("cpu", "1")])
    );
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "1")]))
        .node_xml("n2", &util("n2", &[("cpu", "1")]))
        .rsc(&clone("c", &[], &d))
        .rsc(&prim_util("r", "1"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start d:0 ( n1 )", "Start d:1 ( n2 )"]);
}

#[test]
fn higher_priority_primitive_takes_capacity_from_a_clone() {
    let d = format!(
        r#"<primitive id="d" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        util("d", &[("cpu", "1")])
    );
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "1")]))
        .node_xml("n2", &util("n2", &[("cpu", "1")]))
        .rsc(&clone("c", &[], &d))
        .rsc(&format!(
            r#"<primitive id="r" class="ocf" provider="pacemaker" type="Dummy">{}{}</primitive>"#,
            meta("r", &[("priority", "10")]),
            util("r", &[("cpu", "1")])
        ))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start d:0 ( n2 )", "Start r ( n1 )"]);
}

#[test]
fn optional_order_applies_when_both_act_in_one_transition() {
    // Both start now: the optional order still sequences them, and neither is blocked.
    Cib::new(&["n1"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .cons(r#"<rsc_order id="o" first="a" then="b" kind="Optional"/>"#)
        .online("n1", &[], &[])
        .expect(&["Start a ( n1 )", "Start b ( n1 )"]);
}

#[test]
fn optional_order_does_not_block_then_when_first_cannot_start() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[("target-role", "Stopped")], ""))
        .rsc(&prim("b", &[], ""))
        .cons(r#"<rsc_order id="o" first="a" then="b" kind="Optional"/>"#)
        .online("n1", &[], &[])
        .expect(&["Start b ( n1 )"]);
}

#[test]
fn colocation_set_places_members_together() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .rsc(&prim("c", &[], ""))
        .cons(&loc("a-n2", "a", "n2", "100"))
        .cons(r#"<rsc_colocation id="co" score="INFINITY"><resource_set id="cs"><resource_ref id="a"/><resource_ref id="b"/><resource_ref id="c"/></resource_set></rsc_colocation>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n2 )", "Start b ( n2 )", "Start c ( n2 )"]);
}

#[test]
fn later_group_member_preferences_pull_the_group() {
    Cib::new(&["n1", "n2"])
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(&loc("b-n2", "b", "n2", "100"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n2 )", "Start b ( n2 )"]);
}

#[test]
fn non_critical_group_member_does_not_pull_the_group() {
    Cib::new(&["n1", "n2"])
        .rsc(&group(
            "g",
            &[],
            &[prim("a", &[("resource-stickiness", "50")], ""), prim("b", &[("critical", "false")], "")],
        ))
        .cons(&loc("b-n2", "b", "n2", "100"))
        .online("n1", &[], &[("a", RUNNING), ("b", STOPPED)])
        .online("n2", &[], &[])
        .expect(&["Start b ( n1 )"]);
}

// ---------------------------------------------------------------- batch 9

#[test]
fn promoted_node_max_limits_promotions_per_node() {
    Cib::new(&["n1"])
        .rsc(&clone(
            "ms",
            &[
                ("promotable", "true"),
                ("clone-max", "2"),
                ("clone-node-max", "2"),
                ("promoted-max", "2"),
                ("globally-unique", "true"),
            ],
            &prim("s", &[], ""),
        ))
        .online("n1", &[("master-s:0", "10"), ("master-s:1", "10")], &[])
        .expect(&["Promote s:0 ( Stopped -> Promoted n1 )", "Start s:1 ( n1 )"]);
}

#[test]
fn anti_colocation_with_a_clone_keeps_off_every_instance_node() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("c", &[("clone-max", "2")], &prim("d", &[], "")))
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_colocation id="co" rsc="r" with-rsc="c" score="-INFINITY"/>"#)
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[])
        .expect(&["Start r ( n3 )"]);
}

#[test]
fn failure_timeout_expiry_frees_a_clone_instance_node() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone(
            "c",
            &[],
            &prim("d", &[("migration-threshold", "1"), ("failure-timeout", "60")], &monitor("d", "10s", "")),
        ))
        .online(
            "n1",
            &[("fail-count-d#monitor_10000", "1"), ("last-failure-d#monitor_10000", "1600000000")],
            &[("d", &[("start", 0, 0, 2), ("monitor", 10000, 1, 3), ("stop", 0, 0, 4)])],
        )
        .online("n2", &[], &[("d", RUNNING)])
        .at(1_600_000_100)
        .expect(&["Start d:1 ( n1 )"]);
}

#[test]
fn unexpired_clone_failure_keeps_the_instance_away() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone(
            "c",
            &[],
            &prim("d", &[("migration-threshold", "1"), ("failure-timeout", "60")], &monitor("d", "10s", "")),
        ))
        .online(
            "n1",
            &[("fail-count-d#monitor_10000", "1"), ("last-failure-d#monitor_10000", "1600000000")],
            &[("d", &[("start", 0, 0, 2), ("monitor", 10000, 1, 3), ("stop", 0, 0, 4)])],
        )
        .online("n2", &[], &[("d", RUNNING)])
        .at(1_600_000_030)
        .expect(&[]);
}

#[test]
fn never_seen_node_is_fenced_at_startup() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)])])
        .expect(&["Fence (reboot) n2 'node is unclean'"]);
}

#[test]
fn startup_fencing_false_trusts_never_seen_nodes() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .prop("startup-fencing", "false")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)])])
        .expect(&[]);
}

#[test]
fn no_quorum_freeze_does_not_recover_resources_of_lost_nodes() {
    Cib::new(&["n1", "n2", "n3"])
        .prop("no-quorum-policy", "freeze")
        .rsc(&prim("mine", &[], &monitor("mine", "10s", "")))
        .rsc(&prim("theirs", &[], ""))
        .online("n1", &[("fail-count-mine#monitor_10000", "1")], &[("mine", FAILED_MONITOR), ("theirs", STOPPED)])
        .offline("n2")
        .offline("n3")
        .no_quorum()
        .expect(&["Recover mine ( n1 )", "Start theirs ( n1 ) due to quorum freeze (blocked)"]);
}

#[test]
fn clone_colocated_with_promoted_role_runs_only_with_the_promoted_instance() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&clone("c", &[("interleave", "true")], &prim("d", &[], "")))
        .cons(r#"<rsc_colocation id="co" rsc="c" with-rsc="ms" with-rsc-role="Promoted" score="INFINITY"/>"#)
        .cons(r#"<rsc_order id="o" first="ms" first-action="promote" then="c" then-action="start"/>"#)
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED), ("d", STOPPED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING), ("d", STOPPED)])
        .expect(&["Start d:0 ( n1 )"]);
}

#[test]
fn promotable_dependent_promotes_with_its_promoted_primary() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms1", &prim("s1", &[], ""), &[]))
        .rsc(&promotable("ms2", &prim("s2", &[], ""), &[]))
        .cons(r#"<rsc_colocation id="co" rsc="ms2" rsc-role="Promoted" with-rsc="ms1" with-rsc-role="Promoted" score="INFINITY"/>"#)
        .online("n1", &[("master-s1", "5"), ("master-s2", "10")], &[("s1", RUNNING), ("s2", RUNNING)])
        .online("n2", &[("master-s1", "10"), ("master-s2", "5")], &[("s1", RUNNING), ("s2", RUNNING)])
        .expect(&["Promote s1:1 ( Unpromoted -> Promoted n2 )", "Promote s2:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn unrelated_configuration_sections_are_tolerated() {
    let c = Cib::new(&["n1"]).rsc(&prim("r", &[], "")).online("n1", &[], &[]);
    let xml = c.xml().replace(
        "</constraints>",
        r#"</constraints><fencing-topology><fencing-level id="fl" target="n1" index="1" devices="f1"/></fencing-topology><acls><acl_role id="ro"/></acls><alerts><alert id="a" path="/bin/true"/></alerts><tags><tag id="t"><obj_ref id="r"/></tag></tags>"#,
    );
    let sim = crm::simulate::simulate(&xml, &crm::simulate::SimOptions::default()).expect("parses");
    assert_eq!(sim.transition.summary.len(), 1, "{:?}", sim.transition.summary);
}

#[test]
fn asymmetric_order_does_not_restart_then_when_first_recovers() {
    Cib::new(&["n1"])
        .rsc(&prim("a", &[], &monitor("a", "10s", "")))
        .rsc(&prim("b", &[], ""))
        .cons(r#"<rsc_order id="o" first="a" then="b" symmetrical="false"/>"#)
        .online("n1", &[("fail-count-a#monitor_10000", "1")], &[("a", FAILED_MONITOR), ("b", RUNNING)])
        .expect(&["Recover a ( n1 )"]);
}

// ---------------------------------------------------------------- odd shapes never panic

#[test]
fn odd_but_parseable_shapes_schedule_without_panicking() {
    let base = || Cib::new(&["n1", "n2"]).online("n1", &[], &[]).online("n2", &[], &[]);
    let shapes: Vec<Cib> = vec![
        base().rsc(r#"<group id="g"/>"#),
        base().rsc(r#"<clone id="c"><group id="cg"/></clone>"#),
        base().rsc(&prim("a", &[], "")).cons(r#"<rsc_order id="o"><resource_set id="s"/></rsc_order>"#),
        base().rsc(&prim("a", &[], "")).cons(r#"<rsc_colocation id="co" rsc="a" with-rsc="a" score="INFINITY"/>"#),
        base().rsc(&prim("a", &[], "")).cons(r#"<rsc_order id="o" first="a" then="a"/>"#),
        base().rsc(&prim("a", &[], "")).cons(&loc("l", "a", "nosuchnode", "INFINITY")),
        base().rsc(&prim("a", &[("container", "a")], "")),
        base().rsc(&promotable("ms", &prim("s", &[], ""), &[("clone-max", "0"), ("promoted-max", "0")])),
        base().rsc(&clone("c", &[("clone-node-max", "0")], &prim("d", &[], ""))),
        base().rsc(&prim("a", &[], "")).cons(
            r#"<rsc_colocation id="co" score="INFINITY"><resource_set id="s1"><resource_ref id="a"/></resource_set><resource_set id="s2"><resource_ref id="a"/></resource_set></rsc_colocation>"#,
        ),
        base()
            .rsc(&prim("a", &[], ""))
            .rsc(&prim("b", &[], ""))
            .cons(r#"<rsc_order id="o1" first="a" then="b"/>"#)
            .cons(r#"<rsc_order id="o2" first="b" then="a"/>"#),
        base()
            .rsc(&prim("a", &[], ""))
            .rsc(&prim("b", &[], ""))
            .cons(r#"<rsc_colocation id="c1" rsc="a" with-rsc="b" score="INFINITY"/>"#)
            .cons(r#"<rsc_colocation id="c2" rsc="b" with-rsc="a" score="-INFINITY"/>"#),
        base().rsc(&prim("a", &[], "")).online("ghost", &[], &[("a", RUNNING)]),
        base().rsc(&prim("a", &[("target-role", "Promoted")], "")),
        base().rsc(&group("g", &[("promotable", "true")], &[prim("a", &[], "")])),
    ];
    for c in shapes {
        let xml = c.xml();
        let opts = crm::simulate::SimOptions::default();
        let r = std::panic::catch_unwind(|| crm::simulate::simulate(&xml, &opts).map(|s| s.transition.summary));
        assert!(r.is_ok(), "panicked on {xml}");
    }
}

#[test]
fn group_member_past_threshold_moves_the_whole_group() {
    Cib::new(&["n1", "n2"])
        .rsc(&group(
            "g",
            &[],
            &[prim("a", &[], ""), prim("b", &[("migration-threshold", "1")], &monitor("b", "10s", ""))],
        ))
        .online("n1", &[("fail-count-b#monitor_10000", "1")], &[("a", RUNNING), ("b", FAILED_MONITOR)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&["Move a ( n1 -> n2 )", "Recover b ( n1 -> n2 )"]);
}

#[test]
fn standby_node_with_a_failed_resource_recovers_it_elsewhere() {
    Cib::new(&["n1", "n2"])
        .node_xml("n1", &attr_node("n1", &[("standby", "on")]))
        .rsc(&prim("r", &[], &monitor("r", "10s", "")))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Recover r ( n1 -> n2 )"]);
}

#[test]
fn transient_standby_attribute_also_drains_the_node() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .online("n1", &[("standby", "true")], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Move r ( n1 -> n2 )"]);
}

#[test]
fn a_cloned_primitives_own_target_role_overrides_the_clones() {
    // Meta attributes set on the primitive itself win over those it inherits from its clone.
    let d = format!(
        r#"<primitive id="d" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        meta("d", &[("target-role", "Started")])
    );
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[("target-role", "Stopped")], &d))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .expect(&[]);
}

#[test]
fn a_disabled_clone_stops_instances_without_their_own_target_role() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[("target-role", "stopped")], &prim("d", &[], "")))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .expect(&["Stop d:0 ( n1 ) due to node availability", "Stop d:1 ( n2 ) due to node availability"]);
}

#[test]
fn re_promotion_after_on_fail_demote_demotes_promotes_and_restores_the_promoted_monitor() {
    let ops = format!(
        "{}{}",
        monitor("s", "10s", r#"role="Promoted" on-fail="demote""#),
        monitor("s", "11s", r#"role="Unpromoted""#)
    );
    let c = Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], &ops), &[]))
        .online(
            "n1",
            &[("fail-count-s#monitor_10000", "1"), ("master-s", "10")],
            &[("s", &[("start", 0, 0, 2), ("promote", 0, 0, 3), ("monitor", 10000, 1, 4)])],
        )
        .online("n2", &[("master-s", "5")], &[("s", &[("start", 0, 0, 2), ("monitor", 11000, 0, 3)])]);
    let actions = c.actions();
    for want in ["s:0 demote on n1", "s:0 promote on n1", "s:0 monitor=10000 on n1"] {
        assert!(actions.split_whitespace().collect::<Vec<_>>().join(" ").contains(want), "{want} missing:\n{actions}");
    }
    assert!(!actions.contains("s:0 stop"), "no stop expected:\n{actions}");
}

#[test]
fn promotion_schedules_the_promoted_monitor() {
    let ops = format!("{}{}", monitor("s", "10s", r#"role="Promoted""#), monitor("s", "11s", r#"role="Unpromoted""#));
    let c = Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], &ops), &[]))
        .online("n1", &[("master-s", "10")], &[("s", &[("start", 0, 0, 2), ("monitor", 11000, 0, 3)])])
        .online("n2", &[("master-s", "5")], &[("s", &[("start", 0, 0, 2), ("monitor", 11000, 0, 3)])]);
    let actions = c.actions().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(actions.contains("s:0 promote on n1") && actions.contains("s:0 monitor=10000 on n1"), "{actions}");
    assert!(!actions.contains("s:1 monitor=11000"), "the unpromoted monitor keeps running: {actions}");
}

#[test]
fn operations_referenced_by_id_ref_apply() {
    // r2 reuses r1's operations (with on-fail=block) through id-ref.
    Cib::new(&["n1", "n2"])
        .rsc(r#"<primitive id="r1" class="ocf" provider="pacemaker" type="Dummy"><operations id="shared-ops"><op id="shared-mon" name="monitor" interval="10s" on-fail="block"/></operations></primitive>"#)
        .rsc(r#"<primitive id="r2" class="ocf" provider="pacemaker" type="Dummy"><operations id-ref="shared-ops"/></primitive>"#)
        .online("n1", &[("fail-count-r2#monitor_10000", "1")], &[("r1", RUNNING), ("r2", FAILED_MONITOR)])
        .online("n2", &[], &[("r1", STOPPED), ("r2", STOPPED)])
        .expect(&[]);
}

#[test]
fn unmanaged_resources_are_still_monitored_but_not_in_maintenance() {
    let monitored = |metas: &[(&str, &str)]| {
        Cib::new(&["n1"])
            .rsc(&prim("r", metas, &monitor("r", "10s", "")))
            .online("n1", &[], &[("r", &[("start", 0, 0, 2)])])
            .actions()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains("r monitor=10000 on n1")
    };
    assert!(monitored(&[]), "a running resource without its monitor gets one");
    assert!(monitored(&[("is-managed", "false")]), "unmanaged: still monitored");
    assert!(!monitored(&[("maintenance", "true")]), "maintenance: not monitored");
}

#[test]
fn failure_timeout_counts_from_the_most_recent_failure() {
    // One old failure and one recent one: the fail count has not expired yet.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("migration-threshold", "2"), ("failure-timeout", "60s")], &monitor("r", "10s", "")))
        .cons(&loc("prefer-n1", "r", "n1", "100"))
        .online(
            "n1",
            &[
                ("fail-count-r#monitor_10000", "1"),
                ("last-failure-r#monitor_10000", "1600000000"),
                ("fail-count-r#start_0", "1"),
                ("last-failure-r#start_0", "1600000090"),
            ],
            &[(
                "r",
                &[
                    ("start", 0, 0, 2),
                    ("monitor", 10000, 1, 3),
                    ("stop", 0, 0, 4),
                    ("start", 0, 1, 5),
                    ("stop", 0, 0, 6),
                ],
            )],
        )
        .online("n2", &[], &[("r", RUNNING)])
        .at(1_600_000_100)
        .expect(&[]);
}

#[test]
fn stopping_a_group_member_stops_the_members_after_it() {
    Cib::new(&["n1"])
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[("target-role", "Stopped")], ""), prim("c", &[], "")]))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING), ("c", RUNNING)])
        .expect(&["Stop b ( n1 ) due to node availability", "Stop c ( n1 ) due to node availability"]);
}

#[test]
fn a_successful_start_after_a_failed_one_leaves_the_resource_at_rest() {
    // The failed start stays in the history (as the last failure) next to the later start
    // that succeeded: the failure is past, the resource runs, nothing is to be recovered.
    Cib::new(&["n1", "n2"])
        .prop("start-failure-is-fatal", "false")
        .rsc(&prim("r", &[], &monitor("r", "10s", "")))
        .online(
            "n1",
            &[("fail-count-r#start_0", "1")],
            &[("r", &[("start", 0, 1, 2), ("start", 0, 0, 4), ("monitor", 10000, 0, 5)])],
        )
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

// ---------------------------------------------------------------- multiple-active

fn active_twice(policy: Option<&str>) -> Cib {
    let metas: Vec<(&str, &str)> = policy.map(|p| vec![("multiple-active", p)]).unwrap_or_default();
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &metas, ""))
        .cons(&loc("prefer-n1", "r", "n1", "100"))
        .online("n1", &[], &[("r", &[("start", 0, 0, 2)])])
        .online("n2", &[], &[("r", &[("start", 0, 0, 2)])])
}

#[test]
fn multiple_active_default_stops_everywhere_and_starts_once() {
    // stop_start: every copy is stopped, then one is started where the resource belongs.
    active_twice(None).expect(&["Restart r ( n1 )"]);
}

#[test]
fn multiple_active_stop_only_stops_every_copy() {
    active_twice(Some("stop_only"))
        .expect(&["Stop r ( n1 ) due to node availability", "Stop r ( n2 ) due to node availability"]);
}

#[test]
fn multiple_active_block_takes_no_action() {
    active_twice(Some("block")).expect(&[]);
}

// ---------------------------------------------------------------- orphans

#[test]
fn orphaned_resource_is_stopped() {
    // History of a resource no longer in the configuration.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("kept", &[], ""))
        .online("n1", &[], &[("kept", RUNNING), ("gone", RUNNING)])
        .online("n2", &[], &[("kept", STOPPED)])
        .expect(&["Stop gone ( n1 ) due to node availability"]);
}

#[test]
fn stop_orphan_resources_false_leaves_orphans_running() {
    Cib::new(&["n1", "n2"])
        .prop("stop-orphan-resources", "false")
        .rsc(&prim("kept", &[], ""))
        .online("n1", &[], &[("kept", RUNNING), ("gone", RUNNING)])
        .online("n2", &[], &[("kept", STOPPED)])
        .expect(&[]);
}

// ---------------------------------------------------------------- failed probes

fn probe_result(rc: i32) -> Cib {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .cons(&loc("prefer-n1", "r", "n1", "100"))
        .online("n1", &[], &[("r", &[("monitor", 0, rc, 1)])])
        .online("n2", &[], &[("r", STOPPED)])
}

#[test]
fn probe_not_installed_keeps_the_resource_off_that_node() {
    // rc 5: the agent is missing there; not a failure of a running resource.
    probe_result(5).expect(&["Start r ( n2 )"]);
}

#[test]
fn probe_invalid_arguments_is_a_hard_error_on_that_node() {
    // rc 2: the resource is considered active and failed there; it is stopped there and
    // may not run there again.
    probe_result(2).expect(&["Recover r ( n1 -> n2 )"]);
}

#[test]
fn probe_not_configured_is_fatal_everywhere() {
    // rc 6: the configuration is wrong, the resource may run nowhere.
    probe_result(6).expect(&["Stop r ( n1 ) due to node availability"]);
}

#[test]
fn probe_generic_error_recovers_in_place() {
    // rc 1: a soft error; the resource is recovered on its preferred node.
    probe_result(1).expect(&["Recover r ( n1 )"]);
}

// ---------------------------------------------------------------- clones

#[test]
fn unset_globally_unique_with_clone_node_max_two_keeps_distinct_instances() {
    // globally-unique defaults to true when clone-node-max > 1: two instances recorded on
    // one node are both kept.
    Cib::new(&["n1", "n2"])
        .rsc(&clone(
            "c",
            &[("clone-max", "2"), ("clone-node-max", "2")],
            &prim("d", &[("resource-stickiness", "1")], ""),
        ))
        .online("n1", &[], &[("d:0", RUNNING), ("d:1", RUNNING)])
        .online("n2", &[], &[("d:0", STOPPED), ("d:1", STOPPED)])
        .expect(&[]);
}

// ---------------------------------------------------------------- orders and colocations

#[test]
fn order_promote_then_start_follows_a_promotion() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_order id="o" first="ms" first-action="promote" then="r" then-action="start"/>"#)
        .cons(&loc("prefer-n2", "r", "n2", "50"))
        .online("n1", &[("master-s", "10")], &[("s", RUNNING), ("r", STOPPED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING), ("r", STOPPED)])
        .expect(&["Promote s:0 ( Unpromoted -> Promoted n1 )", "Start r ( n2 )"]);
}

#[test]
fn colocation_chain_with_mixed_scores() {
    // c with b (INFINITY), b with a (-INFINITY): a takes its preferred node, b and c go to
    // the other one together, pulled there by c's preference too.
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .rsc(&prim("c", &[], ""))
        .cons(&loc("a-n1", "a", "n1", "100"))
        .cons(&loc("c-n3", "c", "n3", "10"))
        .cons(r#"<rsc_colocation id="b-a" rsc="b" with-rsc="a" score="-INFINITY"/>"#)
        .cons(r#"<rsc_colocation id="c-b" rsc="c" with-rsc="b" score="INFINITY"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .online("n3", &[], &[])
        .expect(&["Start a ( n1 )", "Start b ( n3 )", "Start c ( n3 )"]);
}

#[test]
fn requires_quorum_resource_stops_without_quorum_while_requires_nothing_runs_on() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&prim("free", &[("requires", "nothing")], ""))
        .rsc(&prim("bound", &[("requires", "quorum")], ""))
        .online("n1", &[], &[("free", RUNNING), ("bound", RUNNING)])
        .offline("n2")
        .offline("n3")
        .no_quorum()
        .expect(&["Stop bound ( n1 ) due to no quorum"]);
}

#[test]
fn colocation_node_attribute_with_a_clone_allows_every_node_of_an_instance_site() {
    // The clone runs only on n1 (site east); b may run on any east node but prefers n2.
    Cib::new(&["n1", "n2", "n3"])
        .node_xml("n1", &attr_node("n1", &[("site", "east")]))
        .node_xml("n2", &attr_node("n2", &[("site", "east")]))
        .node_xml("n3", &attr_node("n3", &[("site", "west")]))
        .rsc(&clone("c", &[("clone-max", "1")], &prim("d", &[], "")))
        .rsc(&prim("b", &[], ""))
        .cons(&loc("d-n1", "c", "n1", "INFINITY"))
        .cons(&loc("b-n2", "b", "n2", "10"))
        .cons(&loc("b-n3", "b", "n3", "20"))
        .cons(r#"<rsc_colocation id="b-with-c" rsc="b" with-rsc="c" score="INFINITY" node-attribute="site"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .online("n3", &[], &[])
        .expect(&["Start d:0 ( n1 )", "Start b ( n2 )"]);
}

#[test]
fn clone_dependent_with_node_attribute_runs_on_each_site_of_the_primary() {
    // A clone colocated with a primitive by site runs only on nodes of the primitive's site.
    Cib::new(&["n1", "n2", "n3"])
        .node_xml("n1", &attr_node("n1", &[("site", "east")]))
        .node_xml("n2", &attr_node("n2", &[("site", "east")]))
        .node_xml("n3", &attr_node("n3", &[("site", "west")]))
        .rsc(&prim("a", &[], ""))
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .cons(&loc("a-n2", "a", "n2", "INFINITY"))
        .cons(r#"<rsc_colocation id="c-with-a" rsc="c" with-rsc="a" score="INFINITY" node-attribute="site"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .online("n3", &[], &[])
        .expect(&["Start a ( n2 )", "Start d:0 ( n1 )", "Start d:1 ( n2 )"]);
}

#[test]
fn unique_clone_with_clone_node_max_two_fills_nodes_up_to_the_limit() {
    // Four instances, two per node at most, two nodes: two on each.
    Cib::new(&["n1", "n2"])
        .rsc(&clone(
            "c",
            &[("clone-max", "4"), ("clone-node-max", "2"), ("globally-unique", "true")],
            &prim("d", &[], ""),
        ))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start d:0 ( n1 )", "Start d:1 ( n2 )", "Start d:2 ( n1 )", "Start d:3 ( n2 )"]);
}

#[test]
fn ordered_clone_stops_instances_too() {
    // ordered=true serializes instances; stopping a disabled ordered clone stops every instance.
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[("ordered", "true"), ("target-role", "Stopped")], &prim("d", &[], "")))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .expect(&["Stop d:0 ( n1 ) due to node availability", "Stop d:1 ( n2 ) due to node availability"]);
}

// ---------------------------------------------------------------- requires

/// Whether the start of `rsc` waits (directly or through other actions) for fencing.
fn start_waits_for_fencing(t: &crm::Transition, rsc: &str) -> bool {
    let start = t
        .actions
        .iter()
        .find(|a| a.kind == crm::ActionKind::Start && a.rsc.is_some_and(|r| t.resource_name(r) == rsc))
        .expect("a start")
        .id;
    let mut seen = std::collections::BTreeSet::from([start]);
    let mut todo = vec![start];
    while let Some(a) = todo.pop() {
        if t.actions[a].kind == crm::ActionKind::Fence {
            return true;
        }
        for e in t.edges.iter().filter(|e| e.then == a) {
            if seen.insert(e.first) {
                todo.push(e.first);
            }
        }
    }
    false
}

fn lost_node_with(requires: Option<&str>) -> crm::Transition {
    // `new` never ran on the lost node: only its requires setting ties its start to the
    // fencing of that node.
    let metas: Vec<(&str, &str)> = requires.map(|r| vec![("requires", r)]).unwrap_or_default();
    let cib = Cib::new(&["n1", "n2", "n3"])
        .prop("fencing-enabled", "true")
        .rsc(r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#)
        .rsc(&prim("r", &[], ""))
        .rsc(&prim("new", &metas, ""))
        .cons(&loc("new-n1", "new", "n1", "10"))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED), ("new", STOPPED)])
        .online("n3", &[], &[("r", STOPPED), ("new", STOPPED)])
        .lost("n2", &[("r", RUNNING)]);
    cib.expect(&[
        "Fence (reboot) n2 'peer is no longer part of the cluster'",
        "Move r ( n2 -> n3 )",
        "Start new ( n1 )",
    ]);
    cib.transition()
}

#[test]
fn requires_fencing_starts_resources_only_after_lost_nodes_are_fenced() {
    assert!(start_waits_for_fencing(&lost_node_with(None), "new"));
    assert!(start_waits_for_fencing(&lost_node_with(Some("fencing")), "new"));
    // A resource recovered from the lost node waits in any case (its stop there is implied
    // by the fencing).
    assert!(start_waits_for_fencing(&lost_node_with(Some("nothing")), "r"));
}

#[test]
fn requires_quorum_or_nothing_does_not_wait_for_fencing() {
    assert!(!start_waits_for_fencing(&lost_node_with(Some("quorum")), "new"));
    assert!(!start_waits_for_fencing(&lost_node_with(Some("nothing")), "new"));
}

#[test]
fn unmanaged_orphan_is_left_alone() {
    // Orphans take the resource defaults too: unmanaged, they are not stopped.
    Cib::new(&["n1", "n2"])
        .defaults(&[("is-managed", "false")])
        .rsc(&prim("kept", &[], ""))
        .online("n1", &[], &[("kept", RUNNING), ("gone", RUNNING)])
        .online("n2", &[], &[("kept", STOPPED)])
        .expect(&[]);
}

#[test]
fn failed_orphan_is_stopped() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("kept", &[], ""))
        .online("n1", &[("fail-count-gone#monitor_10000", "1")], &[("kept", RUNNING), ("gone", FAILED_MONITOR)])
        .online("n2", &[], &[("kept", STOPPED)])
        .expect(&["Stop gone ( n1 ) due to node availability"]);
}

#[test]
fn probe_finding_a_resource_active_on_a_second_node_restarts_it_once() {
    // Found running on n2 as well: multiply active, stopped on both, started on n1.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .cons(&loc("prefer-n1", "r", "n1", "100"))
        .online("n1", &[], &[("r", RUNNING)])
        .online("n2", &[], &[("r", &[("monitor", 0, 0, 1)])])
        .expect(&["Restart r ( n1 )"]);
}

/// Whether the `kind` action of `then` waits (directly or through other actions) for the
/// `kind` action of `first`.
fn waits_for(t: &crm::Transition, kind: crm::ActionKind, then: &str, first: &str) -> bool {
    let find = |name: &str| {
        t.actions
            .iter()
            .find(|a| a.kind == kind && a.rsc.is_some_and(|r| t.resource_name(r) == name))
            .unwrap_or_else(|| panic!("no {kind:?} of {name}"))
            .id
    };
    let (start, goal) = (find(then), find(first));
    let mut seen = std::collections::BTreeSet::from([start]);
    let mut todo = vec![start];
    while let Some(a) = todo.pop() {
        if a == goal {
            return true;
        }
        for e in t.edges.iter().filter(|e| e.then == a) {
            if seen.insert(e.first) {
                todo.push(e.first);
            }
        }
    }
    false
}

#[test]
fn ordered_clone_starts_instances_one_after_another() {
    let run = |ordered: &str| {
        let cib = Cib::new(&["n1", "n2"])
            .rsc(&clone("c", &[("ordered", ordered)], &prim("d", &[], "")))
            .online("n1", &[], &[("d", STOPPED)])
            .online("n2", &[], &[("d", STOPPED)]);
        cib.expect(&["Start d:0 ( n1 )", "Start d:1 ( n2 )"]);
        waits_for(&cib.transition(), crm::ActionKind::Start, "d:1", "d:0")
    };
    assert!(run("true"));
    assert!(!run("false"));
}

#[test]
fn ordered_clone_stops_instances_in_reverse_order() {
    let run = |ordered: &str| {
        let cib = Cib::new(&["n1", "n2"])
            .rsc(&clone("c", &[("ordered", ordered), ("target-role", "Stopped")], &prim("d", &[], "")))
            .online("n1", &[], &[("d", RUNNING)])
            .online("n2", &[], &[("d", RUNNING)]);
        waits_for(&cib.transition(), crm::ActionKind::Stop, "d:0", "d:1")
    };
    assert!(run("true"));
    assert!(!run("false"));
}

#[test]
fn probe_unimplemented_or_insufficient_privileges_is_a_hard_error_on_that_node() {
    // rc 3 and rc 4 are hard errors like rc 2: recovered elsewhere, kept off that node.
    probe_result(3).expect(&["Recover r ( n1 -> n2 )"]);
    probe_result(4).expect(&["Recover r ( n1 -> n2 )"]);
}

#[test]
fn probe_hard_error_recorded_as_execution_error_is_still_hard() {
    // The same exit code recorded with op-status 4 (execution error) is judged by its code.
    let cib = probe_result(2);
    let xml = cib.xml();
    assert!(xml.contains(r#"rc-code="2" op-status="4""#), "the helper records failures as execution errors");
    cib.expect(&["Recover r ( n1 -> n2 )"]);
}

#[test]
fn on_fail_stop_clone_copy_stays_stopped_without_touching_the_other_copies() {
    // After the failed copy was stopped (on-fail=stop), the next run leaves everything as is:
    // the copy on n2 keeps running, and none starts on n1.
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[], &prim("d", &[], &monitor("d", "10s", r#"on-fail="stop""#))))
        .rsc(&prim("other", &[], ""))
        .online(
            "n1",
            &[("fail-count-d#monitor_10000", "1")],
            &[("d", &[("start", 0, 0, 2), ("monitor", 10000, 1, 3), ("stop", 0, 0, 4)]), ("other", RUNNING)],
        )
        .online("n2", &[], &[("d", RUNNING), ("other", STOPPED)])
        .expect(&[]);
}

#[test]
fn group_that_fits_nowhere_as_a_whole_starts_the_members_that_fit() {
    // No node has room for the whole group (3 cpu): members are placed one by one; the
    // second does not fit next to the first and stays stopped.
    let member = |id: &str, cpu: &str| {
        format!(
            r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
            util(id, &[("cpu", cpu)])
        )
    };
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "1")]))
        .node_xml("n2", &util("n2", &[("cpu", "2")]))
        .rsc(&group("g", &[], &[member("a", "1"), member("b", "2")]))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n2 )"]);
}

#[test]
fn colocation_chain_with_finite_scores() {
    // b follows a (500), c avoids b (-INFINITY) and wants n1 (1000). The dependent's
    // preferences count when its primary is placed: c's dislike of b's node outweighs b's
    // pull towards a, so b goes to n2, and c gets n1.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .rsc(&prim("c", &[], ""))
        .cons(&loc("a-n1", "a", "n1", "5000"))
        .cons(&loc("b-n2", "b", "n2", "200"))
        .cons(&loc("c-n1", "c", "n1", "1000"))
        .cons(r#"<rsc_colocation id="b-a" rsc="b" with-rsc="a" score="500"/>"#)
        .cons(r#"<rsc_colocation id="c-b" rsc="c" with-rsc="b" score="-INFINITY"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n1 )", "Start b ( n2 )", "Start c ( n1 )"]);
}

#[test]
fn order_promote_then_promote_waits_for_the_first_promotion() {
    let run = |order: bool| {
        let mut cib = Cib::new(&["n1", "n2"])
            .rsc(&promotable("ms1", &prim("s1", &[], ""), &[]))
            .rsc(&promotable("ms2", &prim("s2", &[], ""), &[]))
            .online("n1", &[("master-s1", "10"), ("master-s2", "10")], &[("s1", RUNNING), ("s2", RUNNING)])
            .online("n2", &[("master-s1", "5"), ("master-s2", "5")], &[("s1", RUNNING), ("s2", RUNNING)]);
        if order {
            cib =
                cib.cons(r#"<rsc_order id="o" first="ms1" first-action="promote" then="ms2" then-action="promote"/>"#);
        }
        cib.expect(&["Promote s1:0 ( Unpromoted -> Promoted n1 )", "Promote s2:0 ( Unpromoted -> Promoted n1 )"]);
        waits_for(&cib.transition(), crm::ActionKind::Promote, "s2:0", "s1:0")
    };
    assert!(run(true));
    assert!(!run(false));
}

#[test]
fn order_demote_then_demote_waits_for_the_first_demotion() {
    // Both promoted on n1, promotion moves to n2 for both: ms2 is demoted only after ms1.
    let cib = Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms1", &prim("s1", &[], ""), &[]))
        .rsc(&promotable("ms2", &prim("s2", &[], ""), &[]))
        .cons(r#"<rsc_order id="o" first="ms1" first-action="demote" then="ms2" then-action="demote"/>"#)
        .online("n1", &[("master-s1", "5"), ("master-s2", "5")], &[("s1", PROMOTED), ("s2", PROMOTED)])
        .online("n2", &[("master-s1", "10"), ("master-s2", "10")], &[("s1", RUNNING), ("s2", RUNNING)]);
    let t = cib.transition();
    let summary = cib.summary();
    assert!(summary.iter().any(|l| l.starts_with("Demote s2:0")), "{summary:?}");
    assert!(waits_for(&t, crm::ActionKind::Demote, "s2:0", "s1:0"));
}

// ---------------------------------------------------------------- node states, standby with clones

impl Cib {
    /// A node whose node_state has the given membership flags and operation history.
    fn node_state_as(mut self, node: &str, flags: &str, lrm: &[(&str, &[Op<'_>])]) -> Self {
        let s = node_state(node, true, &[], lrm).replacen(
            r#"in_ccm="true" crmd="online" join="member" expected="member""#,
            flags,
            1,
        );
        self.states.push(s);
        self
    }
}

const FENCE: &str = r#"<primitive id="fence" class="stonith" type="fence_dummy"/>"#;

#[test]
fn node_shut_down_cleanly_is_not_fenced_and_its_resources_start_elsewhere() {
    // expected=down and out of the membership: a clean shutdown, even with fencing enabled.
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(FENCE)
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED)])
        .node_state_as(
            "n2",
            r#"in_ccm="false" crmd="offline" join="down" expected="down""#,
            &[("r", &[("start", 0, 0, 2), ("stop", 0, 0, 3)])],
        )
        .expect(&["Start r ( n1 )"]);
}

#[test]
fn lost_node_without_resources_is_still_fenced() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(FENCE)
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)])])
        .lost("n2", &[])
        .expect(&["Fence (reboot) n2 'peer is no longer part of the cluster'"]);
}

#[test]
fn lost_node_without_resources_and_fencing_disabled_needs_nothing() {
    Cib::new(&["n1", "n2"]).rsc(&prim("r", &[], "")).online("n1", &[], &[("r", RUNNING)]).lost("n2", &[]).expect(&[]);
}

#[test]
fn joining_node_is_not_given_resources() {
    // join=pending without fencing: the node is not yet a full member, is taken as offline,
    // and runs nothing.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .cons(&loc("r-n2", "r", "n2", "100"))
        .online("n1", &[], &[("r", STOPPED)])
        .node_state_as("n2", r#"in_ccm="true" crmd="online" join="pending" expected="member""#, &[])
        .expect(&["Start r ( n1 )"]);
}

#[test]
fn node_shutting_down_moves_its_resources() {
    // The shutdown attribute marks a clean shutdown in progress: everything leaves the node.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[], ""))
        .online("n1", &[("shutdown", "1600000000")], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Move r ( n1 -> n2 )"]);
}

fn standby_n1(cib: Cib) -> Cib {
    cib.node_xml(
        "n1",
        r#"<instance_attributes id="n1-ia"><nvpair id="n1-sb" name="standby" value="on"/></instance_attributes>"#,
    )
}

#[test]
fn standby_stops_the_clone_instance_on_that_node() {
    standby_n1(Cib::new(&["n1", "n2"]))
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .expect(&["Stop d:0 ( n1 ) due to node availability"]);
}

#[test]
fn standby_of_the_promoted_node_moves_the_promotion() {
    standby_n1(Cib::new(&["n1", "n2"]))
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Stop s:0 ( Promoted n1 ) due to node availability", "Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn clone_instance_past_migration_threshold_stops_and_is_not_replaced_on_a_full_cluster() {
    // Every other node already has an instance: the banned one has nowhere to go.
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[], &prim("d", &[("migration-threshold", "1")], &monitor("d", "10s", ""))))
        .online("n1", &[("fail-count-d#monitor_10000", "1")], &[("d", FAILED_MONITOR)])
        .online("n2", &[], &[("d", RUNNING)])
        .expect(&["Stop d:0 ( n1 ) due to node availability"]);
}

#[test]
fn expired_failure_on_a_group_member_lets_the_group_stay() {
    // failure-timeout expired: the fail count is ignored and the failed monitor is recovered
    // in place, the group does not move.
    Cib::new(&["n1", "n2"])
        .at(1_600_010_000)
        .rsc(&group(
            "g",
            &[],
            &[
                prim("a", &[], ""),
                prim("b", &[("migration-threshold", "1"), ("failure-timeout", "60s")], &monitor("b", "10s", "")),
            ],
        ))
        .online(
            "n1",
            &[("fail-count-b#monitor_10000", "1"), ("last-failure-b#monitor_10000", "1600000000")],
            &[("a", RUNNING), ("b", &[("start", 0, 0, 4), ("monitor", 10000, 0, 5)])],
        )
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&[]);
}

#[test]
fn location_with_role_promoted_moves_only_the_promotion() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .cons(r#"<rsc_location id="p-n2" rsc="ms" role="Promoted" node="n2" score="100"/>"#)
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED)])
        .online("n2", &[("master-s", "10")], &[("s", RUNNING)])
        .expect(&["Demote s:0 ( Promoted -> Unpromoted n1 )", "Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn rule_with_boolean_op_or_matches_either_expression() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&prim("r", &[], ""))
        .cons(
            r##"<rsc_location id="l" rsc="r"><rule id="l-r" score="-INFINITY" boolean-op="or">
<expression id="l-e1" attribute="#uname" operation="eq" value="n1"/>
<expression id="l-e2" attribute="#uname" operation="eq" value="n2"/></rule></rsc_location>"##,
        )
        .online("n1", &[], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .online("n3", &[], &[("r", STOPPED)])
        .expect(&["Move r ( n1 -> n3 )"]);
}

#[test]
fn group_with_finite_negative_colocation_to_the_promoted_role_prefers_elsewhere() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(r#"<rsc_colocation id="co" rsc="g" with-rsc="ms" with-rsc-role="Promoted" score="-100"/>"#)
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED), ("a", STOPPED), ("b", STOPPED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING), ("a", STOPPED), ("b", STOPPED)])
        .expect(&["Start a ( n2 )", "Start b ( n2 )"]);
}

#[test]
fn group_with_finite_negative_colocation_to_the_promoted_role_runs_there_when_alone() {
    // A finite score only prefers: with the other node in standby, the group joins the
    // promoted instance.
    standby_n1(Cib::new(&["n1", "n2"]))
        .rsc(&clone("ms", &[("promotable", "true"), ("clone-max", "1")], &prim("s", &[], "")))
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(r#"<rsc_colocation id="co" rsc="g" with-rsc="ms" with-rsc-role="Promoted" score="-100"/>"#)
        .online("n1", &[], &[("s", STOPPED), ("a", STOPPED), ("b", STOPPED)])
        .online("n2", &[("master-s", "5")], &[("s", PROMOTED), ("a", STOPPED), ("b", STOPPED)])
        .expect(&["Start a ( n2 )", "Start b ( n2 )"]);
}

#[test]
fn optional_order_between_interleaved_clones_does_not_restart_the_dependent() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c1", &[("interleave", "true")], &prim("d1", &[], &monitor("d1", "10s", ""))))
        .rsc(&clone("c2", &[("interleave", "true")], &prim("d2", &[], "")))
        .cons(r#"<rsc_order id="o" first="c1" then="c2" kind="Optional"/>"#)
        .online("n1", &[("fail-count-d1#monitor_10000", "1")], &[("d1", FAILED_MONITOR), ("d2", RUNNING)])
        .online("n2", &[], &[("d1", RUNNING), ("d2", RUNNING)])
        .expect(&["Recover d1:0 ( n1 )"]);
}

#[test]
fn fencing_device_banned_from_a_node_runs_elsewhere() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(r#"<primitive id="fence-n1" class="stonith" type="fence_dummy"/>"#)
        .cons(&loc("fence-n1-away", "fence-n1", "n1", "-INFINITY"))
        .online("n1", &[], &[("fence-n1", &[("start", 0, 0, 2)])])
        .online("n2", &[], &[("fence-n1", &[("monitor", 0, 7, 1)])])
        .expect(&["Move fence-n1 ( n1 -> n2 )"]);
}

#[test]
fn lost_node_is_fenced_by_the_device_that_ran_there_after_it_moves() {
    // The device for n2 ran on n2: fencing n2 still proceeds and the device restarts on n1.
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(r#"<primitive id="fence-n2" class="stonith" type="fence_dummy"/>"#)
        .online("n1", &[], &[("fence-n2", &[("monitor", 0, 7, 1)])])
        .lost("n2", &[("fence-n2", &[("start", 0, 0, 2)])])
        .expect(&["Fence (reboot) n2 'peer is no longer part of the cluster'", "Move fence-n2 ( n2 -> n1 )"]);
}

#[test]
fn infinite_stickiness_against_an_infinite_location_elsewhere_stays() {
    // INFINITY + INFINITY saturate: the current node ties with the preferred one and is kept.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("resource-stickiness", "INFINITY")], ""))
        .cons(&loc("r-n2", "r", "n2", "INFINITY"))
        .online("n1", &[], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn mandatory_colocation_with_an_unrunnable_primitive_keeps_a_whole_group_stopped() {
    // The primary is placed nowhere, so the group has no allowed node: its members stop for
    // node availability ("due to colocation with" is for a primary placed but unable to start).
    Cib::new(&["n1", "n2"])
        .rsc(&prim("p", &[("target-role", "Stopped")], ""))
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(r#"<rsc_colocation id="co" rsc="g" with-rsc="p" score="INFINITY"/>"#)
        .online("n1", &[], &[("p", STOPPED), ("a", RUNNING), ("b", RUNNING)])
        .online("n2", &[], &[("p", STOPPED), ("a", STOPPED), ("b", STOPPED)])
        .expect(&["Stop a ( n1 ) due to node availability", "Stop b ( n1 ) due to node availability"]);
}

#[test]
fn clone_max_below_node_count_keeps_instances_where_they_are() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("c", &[("clone-max", "2"), ("resource-stickiness", "100")], &prim("d", &[], "")))
        .cons(&loc("c-n3", "c", "n3", "50"))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", STOPPED)])
        .expect(&[]);
}

#[test]
fn clone_max_below_node_count_moves_an_instance_to_a_stronger_preference() {
    // Default clone stickiness (1) is weaker than the preference for n3: no instance keeps its
    // node early, and the first instance placed takes the best node.
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("c", &[("clone-max", "2")], &prim("d", &[], "")))
        .cons(&loc("c-n3", "c", "n3", "50"))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", STOPPED)])
        .expect(&["Move d:0 ( n1 -> n3 )"]);
}

#[test]
fn unmanaged_group_is_left_on_a_standby_node() {
    standby_n1(Cib::new(&["n1", "n2"]))
        .rsc(&group("g", &[("is-managed", "false")], &[prim("a", &[], ""), prim("b", &[], "")]))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&[]);
}

#[test]
fn higher_priority_resource_under_utilization_takes_the_room() {
    // Each node has room for one; the higher priority resource is placed first even when it
    // was configured last.
    let p = |id: &str, prio: &str| {
        format!(
            r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy">{}{}</primitive>"#,
            meta(id, &[("priority", prio)]),
            util(id, &[("cpu", "2")])
        )
    };
    Cib::new(&["n1"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "2")]))
        .rsc(&p("low", "1"))
        .rsc(&p("high", "10"))
        .online("n1", &[], &[("low", STOPPED), ("high", STOPPED)])
        .expect(&["Start high ( n1 )"]);
}

#[test]
fn target_role_unpromoted_demotes_a_promoted_instance() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[("target-role", "Unpromoted")]))
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Demote s:0 ( Promoted -> Unpromoted n1 )"]);
}

#[test]
fn promoted_role_banned_everywhere_demotes_and_promotes_nothing() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .cons(
            r##"<rsc_location id="no-p" rsc="ms" role="Promoted"><rule id="no-p-r" score="-INFINITY"><expression id="no-p-e" attribute="#uname" operation="ne" value="none"/></rule></rsc_location>"##,
        )
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Demote s:0 ( Promoted -> Unpromoted n1 )"]);
}

#[test]
fn unmanaged_group_member_failure_is_not_recovered() {
    Cib::new(&["n1", "n2"])
        .rsc(&group("g", &[("is-managed", "false")], &[prim("a", &[], ""), prim("b", &[], &monitor("b", "10s", ""))]))
        .online("n1", &[("fail-count-b#monitor_10000", "1")], &[("a", RUNNING), ("b", FAILED_MONITOR)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED)])
        .expect(&[]);
}

#[test]
fn node_back_from_standby_gets_a_new_clone_instance_and_others_stay() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .online("n1", &[], &[("d", STOPPED)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", RUNNING)])
        .expect(&["Start d:2 ( n1 )"]);
}

#[test]
fn group_colocated_with_the_promoted_role_follows_the_promotion_off_a_standby_node() {
    standby_n1(Cib::new(&["n1", "n2"]))
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(r#"<rsc_colocation id="co" rsc="g" with-rsc="ms" with-rsc-role="Promoted" score="INFINITY"/>"#)
        .cons(r#"<rsc_order id="o" first="ms" first-action="promote" then="g" then-action="start"/>"#)
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED), ("a", RUNNING), ("b", RUNNING)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING), ("a", STOPPED), ("b", STOPPED)])
        .expect(&[
            "Stop s:0 ( Promoted n1 ) due to node availability",
            "Promote s:1 ( Unpromoted -> Promoted n2 )",
            "Move a ( n1 -> n2 )",
            "Move b ( n1 -> n2 )",
        ]);
}

#[test]
fn colocation_with_the_unpromoted_role_avoids_the_promoted_instance() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&prim("r", &[], ""))
        .cons(r#"<rsc_colocation id="co" rsc="r" with-rsc="ms" with-rsc-role="Unpromoted" score="INFINITY"/>"#)
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED), ("r", STOPPED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING), ("r", STOPPED)])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn ban_overrides_infinite_stickiness() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("resource-stickiness", "INFINITY")], ""))
        .cons(&loc("r-n1", "r", "n1", "-INFINITY"))
        .online("n1", &[], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Move r ( n1 -> n2 )"]);
}

#[test]
fn anti_colocation_chain_leaves_the_last_resource_nowhere_to_run() {
    // a on n1, b must avoid a (n2), c must avoid both: with two nodes c cannot run.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .rsc(&group("g", &[], &[prim("c", &[], ""), prim("d", &[], "")]))
        .cons(&loc("a-n1", "a", "n1", "100"))
        .cons(r#"<rsc_colocation id="b-a" rsc="b" with-rsc="a" score="-INFINITY"/>"#)
        .cons(r#"<rsc_colocation id="g-a" rsc="g" with-rsc="a" score="-INFINITY"/>"#)
        .cons(r#"<rsc_colocation id="g-b" rsc="g" with-rsc="b" score="-INFINITY"/>"#)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start a ( n1 )", "Start b ( n2 )"]);
}

#[test]
fn clean_shutdown_of_the_promoted_node_promotes_elsewhere() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(FENCE)
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .online("n1", &[("master-s", "5")], &[("fence", &[("start", 0, 0, 2)]), ("s", RUNNING)])
        .online("n2", &[("master-s", "10"), ("shutdown", "1600000000")], &[("s", PROMOTED)])
        .expect(&["Stop s:1 ( Promoted n2 ) due to node availability", "Promote s:0 ( Unpromoted -> Promoted n1 )"]);
}

#[test]
fn lost_promoted_node_without_fencing_promotes_the_survivor() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .online("n1", &[("master-s", "5")], &[("s", RUNNING)])
        .lost("n2", &[("s", PROMOTED)])
        .expect(&["Promote s:0 ( Unpromoted -> Promoted n1 )"]);
}

#[test]
fn joining_node_gets_no_clone_instance_yet() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .online("n1", &[], &[("d", RUNNING)])
        .node_state_as("n2", r#"in_ccm="true" crmd="online" join="pending" expected="member""#, &[])
        .expect(&[]);
}

#[test]
fn standby_moves_an_instance_of_a_clone_smaller_than_the_cluster() {
    standby_n1(Cib::new(&["n1", "n2", "n3"]))
        .rsc(&clone("c", &[("clone-max", "2")], &prim("d", &[], "")))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", STOPPED)])
        .expect(&["Move d:0 ( n1 -> n3 )"]);
}

#[test]
fn optional_order_does_not_stop_the_then_clone_when_the_first_clone_stops() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c1", &[("interleave", "true"), ("target-role", "Stopped")], &prim("d1", &[], "")))
        .rsc(&clone("c2", &[("interleave", "true")], &prim("d2", &[], "")))
        .cons(r#"<rsc_order id="o" first="c1" then="c2" kind="Optional"/>"#)
        .online("n1", &[], &[("d1", RUNNING), ("d2", RUNNING)])
        .online("n2", &[], &[("d1", RUNNING), ("d2", RUNNING)])
        .expect(&["Stop d1:0 ( n1 ) due to node availability", "Stop d1:1 ( n2 ) due to node availability"]);
}

#[test]
fn mandatory_order_between_interleaved_clones_stops_the_then_clone_with_the_first() {
    // A "then" instance with no "first" instance on its node to pair with is kept from being
    // active at all: it stops without a reason in the summary.
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c1", &[("interleave", "true"), ("target-role", "Stopped")], &prim("d1", &[], "")))
        .rsc(&clone("c2", &[("interleave", "true")], &prim("d2", &[], "")))
        .cons(r#"<rsc_order id="o" first="c1" then="c2"/>"#)
        .online("n1", &[], &[("d1", RUNNING), ("d2", RUNNING)])
        .online("n2", &[], &[("d1", RUNNING), ("d2", RUNNING)])
        .expect(&[
            "Stop d1:0 ( n1 ) due to node availability",
            "Stop d1:1 ( n2 ) due to node availability",
            "Stop d2:0 ( n1 )",
            "Stop d2:1 ( n2 )",
        ]);
}

#[test]
fn standby_of_the_highest_promotion_score_node_promotes_the_next() {
    standby_n1(Cib::new(&["n1", "n2", "n3"]))
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .online("n1", &[("master-s", "100")], &[("s", STOPPED)])
        .online("n2", &[("master-s", "5")], &[("s", STOPPED)])
        .online("n3", &[("master-s", "10")], &[("s", STOPPED)])
        .expect(&["Start s:0 ( n2 )", "Promote s:1 ( Stopped -> Promoted n3 )"]);
}

#[test]
fn migration_threshold_on_a_group_member_moves_the_group_and_its_colocated_dependent() {
    Cib::new(&["n1", "n2"])
        .rsc(&group(
            "g",
            &[],
            &[prim("a", &[], ""), prim("b", &[("migration-threshold", "2")], &monitor("b", "10s", ""))],
        ))
        .rsc(&prim("dep", &[], ""))
        .cons(r#"<rsc_colocation id="co" rsc="dep" with-rsc="g" score="INFINITY"/>"#)
        .online(
            "n1",
            &[("fail-count-b#monitor_10000", "2")],
            &[("a", RUNNING), ("b", FAILED_MONITOR), ("dep", RUNNING)],
        )
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED), ("dep", STOPPED)])
        .expect(&["Move a ( n1 -> n2 )", "Recover b ( n1 -> n2 )", "Move dep ( n1 -> n2 )"]);
}

// ---------------------------------------------------------------- shutdown-lock

fn shutdown_lock_cib(limit: Option<&str>) -> Cib {
    let mut cib = Cib::new(&["n1", "n2"]).prop("fencing-enabled", "true").prop("shutdown-lock", "true");
    if let Some(l) = limit {
        cib = cib.prop("shutdown-lock-limit", l);
    }
    cib.rsc(FENCE).rsc(&prim("r", &[], "")).rsc(&clone("c", &[], &prim("d", &[], "")))
}

#[test]
fn shutdown_lock_stops_a_resource_of_a_node_shutting_down_without_moving_it() {
    // Fencing devices and clone instances are never locked.
    shutdown_lock_cib(None)
        .online(
            "n1",
            &[("shutdown", "1699999990")],
            &[("fence", &[("start", 0, 0, 2)]), ("r", RUNNING), ("d", RUNNING)],
        )
        .online("n2", &[], &[("fence", STOPPED), ("r", STOPPED), ("d", RUNNING)])
        .expect(&[
            "Move fence ( n1 -> n2 )",
            "Stop r ( n1 ) due to node availability",
            "Stop d:0 ( n1 ) due to node availability",
        ]);
}

#[test]
fn shutdown_lock_keeps_a_resource_off_other_nodes_while_its_node_is_down() {
    let lock = |limit: Option<&str>| {
        let cib = shutdown_lock_cib(limit)
            .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED), ("d", RUNNING)])
            .offline("n2");
        let xml = cib.xml().replace(
            r#"<node_state id="n2" uname="n2" in_ccm="false" crmd="offline" join="down" expected="down"/>"#,
            r#"<node_state id="n2" uname="n2" in_ccm="false" crmd="offline" join="down" expected="down"><lrm id="n2"><lrm_resources><lrm_resource id="r" class="ocf" provider="pacemaker" type="Dummy" shutdown-lock="1699999000"><lrm_rsc_op id="r_stop_0" operation="stop" interval="0" rc-code="0" op-status="0" call-id="4" transition-key="1:1:0:abc" on_node="n2"/></lrm_resource></lrm_resources></lrm></node_state>"#,
        );
        let opts = crm::simulate::SimOptions { now: 1_700_000_000, ..Default::default() };
        let sim = crm::simulate::simulate(&xml, &opts).unwrap_or_else(|e| panic!("{e}"));
        sim.transition.summary.iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>()
    };
    assert_eq!(lock(None), Vec::<String>::new(), "locked without a limit");
    assert_eq!(lock(Some("30m")), Vec::<String>::new(), "locked within the limit");
    assert_eq!(lock(Some("5m")), vec!["Start r ( n1 )".to_string()], "an expired lock lets it start elsewhere");
}

// ---------------------------------------------------------------- batch: clones under failures and sets

#[test]
fn failed_stop_of_a_clone_instance_fences_its_node() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(FENCE)
        .rsc(&clone("c", &[("target-role", "Stopped")], &prim("d", &[], "")))
        .online("n1", &[("fail-count-d#stop_0", "INFINITY")], &[("d", &[("start", 0, 0, 2), ("stop", 0, 1, 3)])])
        .online("n2", &[], &[("fence", &[("start", 0, 0, 2)]), ("d", RUNNING)])
        .expect(&[
            "Fence (reboot) n1 'd:0 failed there'",
            "Stop d:0 ( n1 ) due to node availability",
            "Stop d:1 ( n2 ) due to node availability",
        ]);
}

#[test]
fn promoted_instance_past_migration_threshold_moves_the_promotion() {
    let ops = format!("{}{}", monitor("s", "10s", r#"role="Promoted""#), monitor("s", "11s", r#"role="Unpromoted""#));
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[("migration-threshold", "1")], &ops), &[]))
        .online(
            "n1",
            &[("fail-count-s#monitor_10000", "1"), ("master-s", "10")],
            &[("s", &[("start", 0, 0, 2), ("promote", 0, 0, 3), ("monitor", 10000, 1, 4)])],
        )
        .online("n2", &[("master-s", "5")], &[("s", &[("start", 0, 0, 2), ("monitor", 11000, 0, 3)])])
        .expect(&["Stop s:0 ( Promoted n1 ) due to node availability", "Promote s:1 ( Unpromoted -> Promoted n2 )"]);
}

#[test]
fn unmanaged_clone_leaves_its_instances_on_a_standby_node() {
    standby_n1(Cib::new(&["n1", "n2"]))
        .rsc(&clone("c", &[("is-managed", "false")], &prim("d", &[], "")))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .expect(&[]);
}

#[test]
fn maintenance_node_keeps_its_clone_instance_and_gets_no_new_one() {
    Cib::new(&["n1", "n2", "n3"])
        .node_xml(
            "n1",
            r#"<instance_attributes id="n1-ia"><nvpair id="n1-m" name="maintenance" value="true"/></instance_attributes>"#,
        )
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .online("n1", &[], &[("d", RUNNING)])
        .online("n2", &[], &[("d", RUNNING)])
        .online("n3", &[], &[("d", STOPPED)])
        .expect(&["Start d:2 ( n3 )"]);
}

#[test]
fn anti_colocated_clones_leave_the_second_clone_without_nodes() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c1", &[], &prim("d1", &[], "")))
        .rsc(&clone("c2", &[], &prim("d2", &[], "")))
        .cons(r#"<rsc_colocation id="co" rsc="c2" with-rsc="c1" score="-INFINITY"/>"#)
        .online("n1", &[], &[("d1", RUNNING), ("d2", STOPPED)])
        .online("n2", &[], &[("d1", RUNNING), ("d2", STOPPED)])
        .expect(&[]);
}

#[test]
fn clone_max_above_node_count_starts_one_instance_per_node() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("c", &[("clone-max", "4")], &prim("d", &[], "")))
        .online("n1", &[], &[("d", STOPPED)])
        .online("n2", &[], &[("d", STOPPED)])
        .expect(&["Start d:0 ( n1 )", "Start d:1 ( n2 )"]);
}

#[test]
fn promoted_max_zero_promotes_nothing() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("ms", &[("promotable", "true"), ("promoted-max", "0")], &prim("s", &[], "")))
        .online("n1", &[("master-s", "10")], &[("s", STOPPED)])
        .online("n2", &[("master-s", "5")], &[("s", STOPPED)])
        .expect(&["Start s:0 ( n1 )", "Start s:1 ( n2 )"]);
}

#[test]
fn colocation_set_with_promoted_role_places_the_primitive_with_the_promotion() {
    Cib::new(&["n1", "n2"])
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .rsc(&prim("r", &[], ""))
        .cons(
            r#"<rsc_colocation id="co" score="INFINITY"><resource_set id="co-1"><resource_ref id="r"/></resource_set><resource_set id="co-0" role="Promoted"><resource_ref id="ms"/></resource_set></rsc_colocation>"#,
        )
        .online("n1", &[("master-s", "5")], &[("s", RUNNING), ("r", STOPPED)])
        .online("n2", &[("master-s", "10")], &[("s", RUNNING), ("r", STOPPED)])
        .expect(&["Promote s:1 ( Unpromoted -> Promoted n2 )", "Start r ( n2 )"]);
}

#[test]
fn non_sequential_order_set_starts_members_independently_after_the_previous_set() {
    let cib = Cib::new(&["n1"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .rsc(&prim("c", &[], ""))
        .cons(
            r#"<rsc_order id="o"><resource_set id="o-0" sequential="false"><resource_ref id="a"/><resource_ref id="b"/></resource_set><resource_set id="o-1"><resource_ref id="c"/></resource_set></rsc_order>"#,
        )
        .online("n1", &[], &[("a", STOPPED), ("b", STOPPED), ("c", STOPPED)]);
    cib.expect(&["Start a ( n1 )", "Start b ( n1 )", "Start c ( n1 )"]);
    let t = cib.transition();
    assert!(waits_for(&t, crm::ActionKind::Start, "c", "a"));
    assert!(waits_for(&t, crm::ActionKind::Start, "c", "b"));
    assert!(!waits_for(&t, crm::ActionKind::Start, "b", "a"));
    assert!(!waits_for(&t, crm::ActionKind::Start, "a", "b"));
}

// ---------------------------------------------------------------- cloned groups, node loss with groups

#[test]
fn cloned_group_member_failure_restarts_only_that_instances_later_members() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("cg", &[], &group("g", &[], &[prim("a", &[], &monitor("a", "10s", "")), prim("b", &[], "")])))
        .online("n1", &[("fail-count-a#monitor_10000", "1")], &[("a", FAILED_MONITOR), ("b", RUNNING)])
        .online("n2", &[], &[("a", RUNNING), ("b", RUNNING)])
        .expect(&["Recover a:0 ( n1 )", "Restart b:0 ( n1 ) due to required a:0 start"]);
}

#[test]
fn lost_node_with_a_group_is_fenced_and_the_group_moves() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(FENCE)
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("a", STOPPED), ("b", STOPPED)])
        .lost("n2", &[("a", RUNNING), ("b", RUNNING)])
        .expect(&[
            "Fence (reboot) n2 'peer is no longer part of the cluster'",
            "Move a ( n2 -> n1 )",
            "Move b ( n2 -> n1 )",
        ]);
}

#[test]
fn node_with_controller_gone_but_still_member_is_fenced() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(FENCE)
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED)])
        .node_state_as("n2", r#"in_ccm="true" crmd="offline" join="down" expected="member""#, &[("r", RUNNING)])
        .expect(&["Fence (reboot) n2 'peer process is no longer available'", "Move r ( n2 -> n1 )"]);
}

#[test]
fn node_without_a_capacity_the_resource_needs_cannot_host_it() {
    // n1 defines no cpu capacity: under utilization it has none for a resource needing cpu.
    let r = format!(
        r#"<primitive id="r" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        util("r", &[("cpu", "1")])
    );
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n2", &util("n2", &[("cpu", "1")]))
        .rsc(&r)
        .cons(&loc("r-n1", "r", "n1", "100"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn resource_without_utilization_fits_anywhere() {
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "0")]))
        .rsc(&prim("r", &[], ""))
        .cons(&loc("r-n1", "r", "n1", "100"))
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n1 )"]);
}

#[test]
fn expired_failure_does_not_pull_a_sticky_resource_back() {
    // r moved to n2 after failing on n1; the failure has expired, but stickiness (100)
    // outweighs the preference for n1 (50).
    Cib::new(&["n1", "n2"])
        .at(1_600_010_000)
        .rsc(&prim(
            "r",
            &[("migration-threshold", "1"), ("failure-timeout", "60s"), ("resource-stickiness", "100")],
            &monitor("r", "10s", ""),
        ))
        .cons(&loc("r-n1", "r", "n1", "50"))
        .online(
            "n1",
            &[("fail-count-r#monitor_10000", "1"), ("last-failure-r#monitor_10000", "1600000000")],
            &[("r", &[("start", 0, 0, 2), ("monitor", 10000, 1, 3), ("stop", 0, 0, 4)])],
        )
        .online("n2", &[], &[("r", &[("start", 0, 0, 5), ("monitor", 10000, 0, 6)])])
        .expect(&[]);
}

#[test]
fn non_sequential_colocation_set_does_not_colocate_its_members_with_each_other() {
    // Set 1 (a, b) non-sequential, colocated with set 2 (p): a and b each go with p but
    // not necessarily with each other; their own preferences still apply to p's node only.
    Cib::new(&["n1", "n2"])
        .rsc(&prim("a", &[], ""))
        .rsc(&prim("b", &[], ""))
        .rsc(&prim("c", &[], ""))
        .rsc(&prim("d", &[], ""))
        .cons(&loc("a-n1", "a", "n1", "100"))
        .cons(&loc("b-n2", "b", "n2", "100"))
        .cons(&loc("c-n1", "c", "n1", "100"))
        .cons(&loc("d-n2", "d", "n2", "100"))
        .cons(
            r#"<rsc_colocation id="co" score="-INFINITY"><resource_set id="co-0" sequential="false"><resource_ref id="a"/><resource_ref id="b"/></resource_set><resource_set id="co-1" sequential="false"><resource_ref id="c"/><resource_ref id="d"/></resource_set></rsc_colocation>"#,
        )
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        // Every member of the first set avoids every member of the second: c and d take
        // both nodes, and a and b have nowhere left.
        .expect(&["Start c ( n1 )", "Start d ( n2 )"]);
}

#[test]
fn first_group_member_disabled_stops_the_whole_group() {
    Cib::new(&["n1"])
        .rsc(&group("g", &[], &[prim("a", &[("target-role", "Stopped")], ""), prim("b", &[], ""), prim("c", &[], "")]))
        .online("n1", &[], &[("a", RUNNING), ("b", RUNNING), ("c", RUNNING)])
        .expect(&[
            "Stop a ( n1 ) due to node availability",
            "Stop b ( n1 ) due to node availability",
            "Stop c ( n1 ) due to node availability",
        ]);
}

#[test]
fn rule_defined_and_not_defined_test_attribute_presence() {
    let cib = |op: &str| {
        Cib::new(&["n1", "n2"])
            .node_xml(
                "n2",
                r#"<instance_attributes id="n2-ia"><nvpair id="n2-gpu" name="gpu" value="yes"/></instance_attributes>"#,
            )
            .rsc(&prim("r", &[], ""))
            .cons(&format!(
                r#"<rsc_location id="l" rsc="r"><rule id="l-r" score="-INFINITY"><expression id="l-e" attribute="gpu" operation="{op}"/></rule></rsc_location>"#
            ))
            .online("n1", &[], &[])
            .online("n2", &[], &[])
    };
    cib("not_defined").expect(&["Start r ( n2 )"]);
    cib("defined").expect(&["Start r ( n1 )"]);
}

#[test]
fn balanced_placement_compares_free_capacity_attribute_by_attribute() {
    // n1 has more cpu free, n2 more memory and more disk: n2 has more free capacity.
    let node = |id: &str, cpu: &str, mem: &str, disk: &str| util(id, &[("cpu", cpu), ("mem", mem), ("disk", disk)]);
    let r = format!(
        r#"<primitive id="r" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        util("r", &[("cpu", "1")])
    );
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "balanced")
        .node_xml("n1", &node("n1", "8", "4", "4"))
        .node_xml("n2", &node("n2", "4", "8", "8"))
        .rsc(&r)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n2 )"]);
}

#[test]
fn lost_node_is_fenced_without_quorum_when_the_policy_is_ignore() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .prop("no-quorum-policy", "ignore")
        .rsc(FENCE)
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED)])
        .lost("n2", &[("r", RUNNING)])
        .no_quorum()
        .expect(&["Fence (reboot) n2 'peer is no longer part of the cluster'", "Move r ( n2 -> n1 )"]);
}

#[test]
fn lost_standby_node_is_still_fenced() {
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .node_xml(
            "n2",
            r#"<instance_attributes id="n2-ia"><nvpair id="n2-sb" name="standby" value="on"/></instance_attributes>"#,
        )
        .rsc(FENCE)
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED)])
        .lost("n2", &[("r", RUNNING)])
        .expect(&["Fence (reboot) n2 'peer is no longer part of the cluster'", "Move r ( n2 -> n1 )"]);
}

#[test]
fn two_lost_nodes_are_both_fenced() {
    Cib::new(&["n1", "n2", "n3"])
        .prop("fencing-enabled", "true")
        .rsc(FENCE)
        .rsc(&prim("r", &[], ""))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED)])
        .lost("n2", &[("r", RUNNING)])
        .lost("n3", &[])
        .expect(&[
            "Fence (reboot) n2 'peer is no longer part of the cluster'",
            "Fence (reboot) n3 'peer is no longer part of the cluster'",
            "Move r ( n2 -> n1 )",
        ]);
}

#[test]
fn group_pinned_to_its_node_stops_the_member_past_its_threshold_and_those_after_it() {
    // The group may run only on n1 (-INFINITY elsewhere): it cannot move, so the member
    // banned by its fail count stops there along with the members after it.
    Cib::new(&["n1", "n2"])
        .rsc(&group(
            "g",
            &[],
            &[
                prim("a", &[], ""),
                prim("b", &[("migration-threshold", "1")], &monitor("b", "10s", "")),
                prim("c", &[], ""),
            ],
        ))
        .cons(&loc("g-not-n2", "g", "n2", "-INFINITY"))
        .online("n1", &[("fail-count-b#monitor_10000", "1")], &[("a", RUNNING), ("b", FAILED_MONITOR), ("c", RUNNING)])
        .online("n2", &[], &[("a", STOPPED), ("b", STOPPED), ("c", STOPPED)])
        .expect(&["Stop b ( n1 ) due to node availability", "Stop c ( n1 ) due to node availability"]);
}

#[test]
fn promoted_role_rule_with_boolean_op_or_moves_the_promotion() {
    Cib::new(&["n1", "n2", "n3"])
        .rsc(&clone("ms", &[("promotable", "true"), ("promoted-max", "1")], &prim("s", &[], "")))
        .cons(
            r##"<rsc_location id="l" rsc="ms"><rule id="l-r" role="Promoted" score="-INFINITY" boolean-op="or"><expression id="l-e1" attribute="#uname" operation="eq" value="n1"/><expression id="l-e2" attribute="#uname" operation="eq" value="n2"/></rule></rsc_location>"##,
        )
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED)])
        .online("n2", &[("master-s", "10")], &[("s", RUNNING)])
        .online("n3", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&["Demote s:0 ( Promoted -> Unpromoted n1 )", "Promote s:2 ( Unpromoted -> Promoted n3 )"]);
}

#[test]
fn balanced_placement_counts_attributes_not_amounts() {
    // n1 has far more cpu free, n2 more memory and more disk: n2 wins two attributes to one.
    let node = |id: &str, cpu: &str, mem: &str, disk: &str| util(id, &[("cpu", cpu), ("mem", mem), ("disk", disk)]);
    let r = format!(
        r#"<primitive id="r" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        util("r", &[("cpu", "1")])
    );
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "balanced")
        .node_xml("n1", &node("n1", "100", "2", "2"))
        .node_xml("n2", &node("n2", "2", "3", "3"))
        .rsc(&r)
        .online("n1", &[], &[])
        .online("n2", &[], &[])
        .expect(&["Start r ( n2 )"]);
}

fn cpu_rsc(id: &str, metas: &[(&str, &str)]) -> String {
    let m = if metas.is_empty() { String::new() } else { meta(id, metas) };
    format!(
        r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy">{m}{}</primitive>"#,
        util(id, &[("cpu", "2")])
    )
}

#[test]
fn utilization_places_the_resource_scoring_highest_where_it_runs_first() {
    // Equal priority: r2 runs on n1 (score 10 there with stickiness), r1 does not run; r2 is
    // placed first and keeps the only room, although r1 prefers n1 more and comes first.
    Cib::new(&["n1"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "2")]))
        .rsc(&cpu_rsc("r1", &[]))
        .rsc(&cpu_rsc("r2", &[("resource-stickiness", "10")]))
        .cons(&loc("r1-n1", "r1", "n1", "50"))
        .online("n1", &[], &[("r1", STOPPED), ("r2", RUNNING)])
        .expect(&[]);
}

#[test]
fn utilization_places_the_resource_scoring_highest_on_its_preferred_node_first() {
    Cib::new(&["n1"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "2")]))
        .rsc(&cpu_rsc("r1", &[]))
        .rsc(&cpu_rsc("r2", &[]))
        .cons(&loc("r1-n1", "r1", "n1", "50"))
        .cons(&loc("r2-n1", "r2", "n1", "100"))
        .online("n1", &[], &[("r1", STOPPED), ("r2", STOPPED)])
        .expect(&["Start r2 ( n1 )"]);
}

#[test]
fn clone_instances_need_room_too() {
    // n2 has no cpu capacity: the clone runs only on n1, its second instance stays stopped.
    let child = format!(
        r#"<primitive id="d" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        util("d", &[("cpu", "1")])
    );
    Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "4")]))
        .node_xml("n2", &util("n2", &[("mem", "4")]))
        .rsc(&clone("c", &[], &child))
        .online("n1", &[], &[("d", STOPPED)])
        .online("n2", &[], &[("d", STOPPED)])
        .expect(&["Start d:0 ( n1 )"]);
}

#[test]
fn transient_node_utilization_sets_capacity() {
    let r = format!(
        r#"<primitive id="r" class="ocf" provider="pacemaker" type="Dummy">{}</primitive>"#,
        util("r", &[("cpu", "2")])
    );
    let cib = Cib::new(&["n1", "n2"])
        .prop("placement-strategy", "utilization")
        .node_xml("n1", &util("n1", &[("cpu", "1")]))
        .rsc(&r)
        .cons(&loc("r-n1", "r", "n1", "100"))
        .online("n1", &[], &[])
        .online("n2", &[], &[]);
    cib.expect(&[]);
    let xml = cib.xml().replace(
        r#"<node_state id="n2" uname="n2" in_ccm="true" crmd="online" join="member" expected="member">"#,
        r#"<node_state id="n2" uname="n2" in_ccm="true" crmd="online" join="member" expected="member"><transient_attributes id="n2"><utilization id="n2-tu"><nvpair id="n2-tu-cpu" name="cpu" value="2"/></utilization></transient_attributes>"#,
    );
    let opts = crm::simulate::SimOptions { now: 1_700_000_000, ..Default::default() };
    let sim = crm::simulate::simulate(&xml, &opts).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<String> =
        sim.transition.summary.iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(got, vec!["Start r ( n2 )".to_string()]);
}

#[test]
fn disabled_promotable_clone_stops_every_instance_with_its_role() {
    Cib::new(&["n1", "n2"])
        .rsc(&clone("ms", &[("promotable", "true"), ("target-role", "Stopped")], &prim("s", &[], "")))
        .online("n1", &[("master-s", "10")], &[("s", PROMOTED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&[
            "Stop s:0 ( Promoted n1 ) due to node availability",
            "Stop s:1 ( Unpromoted n2 ) due to node availability",
        ]);
}

#[test]
fn standby_overrides_infinite_stickiness() {
    standby_n1(Cib::new(&["n1", "n2"]))
        .rsc(&prim("r", &[("resource-stickiness", "INFINITY")], ""))
        .online("n1", &[], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&["Move r ( n1 -> n2 )"]);
}

#[test]
fn joining_node_with_fencing_enabled_is_not_fenced_and_blocks_starts_until_probed() {
    // With fencing, a joining node is online but pending: it is not fenced, gets nothing, and
    // since r's state there cannot be probed yet, r (running nowhere) may not start.
    Cib::new(&["n1", "n2"])
        .prop("fencing-enabled", "true")
        .rsc(FENCE)
        .rsc(&prim("r", &[], ""))
        .cons(&loc("r-n2", "r", "n2", "100"))
        .online("n1", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED)])
        .node_state_as("n2", r#"in_ccm="true" crmd="online" join="pending" expected="member""#, &[])
        .expect(&["Start r ( n1 ) blocked"]);
}

#[test]
fn shutdown_lock_holds_after_the_stop_while_the_node_is_still_shutting_down() {
    // The stop made since the shutdown began is what the lock is about: r stays off n2.
    shutdown_lock_cib(None)
        .online(
            "n1",
            &[("shutdown", "1600000000")],
            &[("fence", STOPPED), ("r", &[("start", 0, 0, 2), ("stop", 0, 0, 3)]), ("d", STOPPED)],
        )
        .online("n2", &[], &[("fence", &[("start", 0, 0, 2)]), ("r", STOPPED), ("d", RUNNING)])
        .expect(&[]);
}

#[test]
fn every_node_in_standby_stops_everything() {
    let sb = |n: &str| {
        format!(
            r#"<instance_attributes id="{n}-ia"><nvpair id="{n}-sb" name="standby" value="on"/></instance_attributes>"#
        )
    };
    Cib::new(&["n1", "n2"])
        .node_xml("n1", &sb("n1"))
        .node_xml("n2", &sb("n2"))
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .rsc(&promotable("ms", &prim("s", &[], ""), &[]))
        .online("n1", &[("master-s", "10")], &[("a", RUNNING), ("b", RUNNING), ("s", PROMOTED)])
        .online("n2", &[("master-s", "5")], &[("s", RUNNING)])
        .expect(&[
            "Stop a ( n1 ) due to node availability",
            "Stop b ( n1 ) due to node availability",
            "Stop s:0 ( Promoted n1 ) due to node availability",
            "Stop s:1 ( Unpromoted n2 ) due to node availability",
        ]);
}

#[test]
fn group_colocated_with_a_clone_leaves_a_standby_node_for_another_instance() {
    standby_n1(Cib::new(&["n1", "n2"]))
        .rsc(&clone("c", &[], &prim("d", &[], "")))
        .rsc(&group("g", &[], &[prim("a", &[], ""), prim("b", &[], "")]))
        .cons(r#"<rsc_colocation id="co" rsc="g" with-rsc="c" score="INFINITY"/>"#)
        .cons(r#"<rsc_order id="o" first="c" then="g"/>"#)
        .online("n1", &[], &[("d", RUNNING), ("a", RUNNING), ("b", RUNNING)])
        .online("n2", &[], &[("d", RUNNING), ("a", STOPPED), ("b", STOPPED)])
        .expect(&["Stop d:0 ( n1 ) due to node availability", "Move a ( n1 -> n2 )", "Move b ( n1 -> n2 )"]);
}

#[test]
fn maintenance_node_keeps_a_resource_a_ban_would_move() {
    Cib::new(&["n1", "n2"])
        .node_xml(
            "n1",
            r#"<instance_attributes id="n1-ia"><nvpair id="n1-m" name="maintenance" value="true"/></instance_attributes>"#,
        )
        .rsc(&prim("r", &[], ""))
        .cons(&loc("r-away", "r", "n1", "-INFINITY"))
        .online("n1", &[], &[("r", RUNNING)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

#[test]
fn resource_maintenance_leaves_a_failed_resource_alone() {
    Cib::new(&["n1", "n2"])
        .rsc(&prim("r", &[("maintenance", "true")], &monitor("r", "10s", "")))
        .online("n1", &[("fail-count-r#monitor_10000", "1")], &[("r", FAILED_MONITOR)])
        .online("n2", &[], &[("r", STOPPED)])
        .expect(&[]);
}

// ---------------------------------------------------------------- definition changes (digests)
//
// Pacemaker Explained, "Reloading an Agent After a Definition Change" and the operation
// history: every recorded operation carries a hash of the parameters it ran with
// (`op-digest`); when the resource's definition changes, the cluster stops the resource with
// the old definition and starts it with the new one, or reloads an agent that can take the
// changed parameters without a restart. Here the history is recorded under one configuration
// (`then`) and scheduled under another (`now`).

/// A Dummy primitive with instance attributes.
fn prim_with(id: &str, params: &[(&str, &str)], ops: &str) -> String {
    let mut ia = format!(r#"<instance_attributes id="{id}-params">"#);
    for (n, v) in params {
        let _ = write!(ia, r#"<nvpair id="{id}-{n}" name="{n}" value="{v}"/>"#);
    }
    ia.push_str("</instance_attributes>");
    let o = if ops.is_empty() { String::new() } else { format!("<operations>{ops}</operations>") };
    format!(r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy">{ia}{o}</primitive>"#)
}

/// What the agent records besides `op-digest`.
#[derive(Default, Clone, Copy)]
struct Recorded<'a> {
    /// The agent can reload: `op-force-restart` names the parameters that need a restart.
    force_restart: Option<&'a str>,
    /// `op-secure-params`: private parameters left out of `op-secure-digest`.
    secure: Option<&'a str>,
    /// Record no digest at all.
    none: bool,
}

/// Schedules `now` after recording, on each of its operations, the digests the operation
/// had under `then`'s configuration. Returns the sorted summary and the executed actions.
fn after_change(then: &Cib, now: &Cib, rec: Recorded<'_>) -> (Vec<String>, String) {
    let (old, _) = crm::cib::parse_cib(&then.xml()).expect("parses");
    let calc = crm::digest::Calculator::new(&old);
    let (mut cib, _) = crm::cib::parse_cib(&now.xml()).expect("parses");
    for ns in &mut cib.status {
        let node = ns.uname.clone();
        for lr in &mut ns.resources {
            let fencing = calc.is_fencing(&lr.id);
            for op in &mut lr.ops {
                let Some(params) = calc.parameters(&lr.id, node.as_deref(), &op.operation, op.interval_ms) else {
                    continue;
                };
                if rec.none {
                    continue;
                }
                op.extra.push(("op-digest".into(), crm::digest::digest(&params)));
                if let Some(names) = rec.force_restart {
                    op.extra.push(("op-force-restart".into(), names.into()));
                    op.extra.push(("op-restart-digest".into(), crm::digest::restart_digest(&params, names)));
                }
                if let Some(names) = rec.secure {
                    op.extra.push(("op-secure-params".into(), names.into()));
                    op.extra.push(("op-secure-digest".into(), crm::digest::secure_digest(&params, names, fencing)));
                }
            }
        }
    }
    let t = crm::schedule(&cib, None, 1_700_000_000);
    let mut summary: Vec<String> =
        t.summary.iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    summary.sort();
    let actions = crm::simulate::format_actions(&t)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    (summary, actions)
}

fn two_nodes(rsc: &str, history: &[(&str, &[Op<'_>])]) -> Cib {
    Cib::new(&["n1", "n2"]).rsc(rsc).online("n1", &[], history).online(
        "n2",
        &[],
        &history.iter().map(|(r, _)| (*r, STOPPED)).collect::<Vec<_>>(),
    )
}

#[test]
fn a_changed_parameter_restarts_the_resource_where_it_runs() {
    let mon = monitor("r", "10s", "");
    let then = two_nodes(&prim_with("r", &[("ip", "10.0.0.1")], &mon), &[("r", RUNNING)]);
    let now = two_nodes(&prim_with("r", &[("ip", "10.0.0.2")], &mon), &[("r", RUNNING)]);
    let (summary, actions) = after_change(&then, &now, Recorded::default());
    assert_eq!(summary, ["Restart r ( n1 )"]);
    assert!(actions.contains("r monitor=10000 on n1"), "the monitor runs again after the start:\n{actions}");
}

#[test]
fn unchanged_parameters_leave_the_resource_and_its_monitor_alone() {
    let mon = monitor("r", "10s", r#"timeout="30s""#);
    let cib = two_nodes(&prim_with("r", &[("ip", "10.0.0.1")], &mon), &[("r", RUNNING)]);
    let (summary, actions) = after_change(&cib, &cib, Recorded::default());
    assert!(summary.is_empty(), "{summary:?}");
    assert!(!actions.contains("monitor=10000"), "{actions}");
}

#[test]
fn a_history_without_digests_is_not_a_definition_change() {
    let mon = monitor("r", "10s", "");
    let then = two_nodes(&prim_with("r", &[("ip", "10.0.0.1")], &mon), &[("r", RUNNING)]);
    let now = two_nodes(&prim_with("r", &[("ip", "10.0.0.2")], &mon), &[("r", RUNNING)]);
    let (summary, actions) = after_change(&then, &now, Recorded { none: true, ..Recorded::default() });
    assert!(summary.is_empty(), "{summary:?}");
    assert!(!actions.contains("monitor=10000"), "{actions}");
}

#[test]
fn a_changed_monitor_timeout_issues_that_monitor_again_without_a_restart() {
    let then = two_nodes(&prim_with("r", &[("ip", "1")], &monitor("r", "10s", r#"timeout="20s""#)), &[("r", RUNNING)]);
    let now = two_nodes(&prim_with("r", &[("ip", "1")], &monitor("r", "10s", r#"timeout="40s""#)), &[("r", RUNNING)]);
    let (summary, actions) = after_change(&then, &now, Recorded::default());
    assert!(summary.is_empty(), "{summary:?}");
    assert!(actions.contains("r monitor=10000 on n1"), "{actions}");
    assert!(!actions.contains("r stop") && !actions.contains("r start"), "{actions}");
}

#[test]
fn a_parameter_given_to_one_operation_only_issues_that_operation_again() {
    let plain = r#"<op id="r-mon" name="monitor" interval="10s"/>"#;
    let with_param = r#"<op id="r-mon" name="monitor" interval="10s"><instance_attributes id="r-mon-ia"><nvpair id="r-mon-depth" name="OCF_CHECK_LEVEL" value="10"/></instance_attributes></op>"#;
    let then = two_nodes(&prim_with("r", &[("ip", "1")], plain), &[("r", RUNNING)]);
    let now = two_nodes(&prim_with("r", &[("ip", "1")], with_param), &[("r", RUNNING)]);
    let (summary, actions) = after_change(&then, &now, Recorded::default());
    assert!(summary.is_empty(), "the start ran without that parameter: {summary:?}");
    assert!(actions.contains("r monitor=10000 on n1"), "{actions}");
}

#[test]
fn an_agent_that_can_reload_is_reloaded_when_only_reloadable_parameters_changed() {
    let mon = monitor("r", "10s", "");
    let then = two_nodes(&prim_with("r", &[("state", "/run/r"), ("fake", "1")], &mon), &[("r", RUNNING)]);
    let now = two_nodes(&prim_with("r", &[("state", "/run/r"), ("fake", "2")], &mon), &[("r", RUNNING)]);
    let rec = Recorded { force_restart: Some(" state "), ..Recorded::default() };
    let (summary, actions) = after_change(&then, &now, rec);
    assert_eq!(summary, ["Reload r ( n1 )"]);
    assert!(actions.contains("r reload-agent on n1"), "{actions}");
    assert!(!actions.contains("r stop") && !actions.contains("r start"), "{actions}");
    let reload = actions.find("r reload-agent on n1").unwrap_or(usize::MAX);
    let monitor = actions.find("r monitor=10000 on n1").unwrap_or(0);
    assert!(reload < monitor, "the monitor runs again after the reload:\n{actions}");
}

#[test]
fn a_change_to_a_parameter_that_needs_a_restart_restarts_an_agent_that_can_reload() {
    let mon = monitor("r", "10s", "");
    let then = two_nodes(&prim_with("r", &[("state", "/run/r"), ("fake", "1")], &mon), &[("r", RUNNING)]);
    let now = two_nodes(&prim_with("r", &[("state", "/run/r2"), ("fake", "1")], &mon), &[("r", RUNNING)]);
    let rec = Recorded { force_restart: Some(" state "), ..Recorded::default() };
    let (summary, actions) = after_change(&then, &now, rec);
    assert_eq!(summary, ["Restart r ( n1 )"]);
    assert!(!actions.contains("reload"), "{actions}");
}

#[test]
fn a_reload_becomes_a_restart_when_the_resource_restarts_anyway() {
    let cfg = |fake: &str| {
        Cib::new(&["n1", "n2"])
            .rsc(&prim("a", &[], ""))
            .rsc(&prim_with("r", &[("state", "/run/r"), ("fake", fake)], ""))
            .cons(r#"<rsc_order id="o" first="a" then="r"/>"#)
            .cons(r#"<rsc_colocation id="c" rsc="r" with-rsc="a" score="INFINITY"/>"#)
            .cons(&loc("a-n1", "a", "n1", "100"))
            .online("n1", &[], &[("a", STOPPED), ("r", RUNNING)])
            .online("n2", &[], &[("a", STOPPED), ("r", STOPPED)])
    };
    let rec = Recorded { force_restart: Some(" state "), ..Recorded::default() };
    let (summary, actions) = after_change(&cfg("1"), &cfg("2"), rec);
    assert_eq!(summary, ["Restart r ( n1 ) due to required a start", "Start a ( n1 )"]);
    assert!(!actions.contains("reload"), "{actions}");
}

#[test]
fn a_changed_group_member_restarts_with_the_members_after_it() {
    let cfg = |ip: &str| {
        two_nodes(
            &group("g", &[], &[prim_with("a", &[("ip", ip)], ""), prim("b", &[], "")]),
            &[("a", RUNNING), ("b", RUNNING)],
        )
    };
    let (summary, _) = after_change(&cfg("1"), &cfg("2"), Recorded::default());
    assert_eq!(summary, ["Restart a ( n1 )", "Restart b ( n1 ) due to required a start"]);
}

#[test]
fn instance_attributes_of_a_clone_are_parameters_of_its_instances() {
    let cfg = |v: &str| {
        let child = prim("r", &[], "");
        let c = format!(
            r#"<clone id="c"><instance_attributes id="c-ia"><nvpair id="c-opt" name="option" value="{v}"/></instance_attributes>{child}</clone>"#
        );
        Cib::new(&["n1", "n2"]).rsc(&c).online("n1", &[], &[("r:0", RUNNING)]).online("n2", &[], &[("r:1", RUNNING)])
    };
    let (same, _) = after_change(&cfg("x"), &cfg("x"), Recorded::default());
    assert!(same.is_empty(), "{same:?}");
    let (summary, _) = after_change(&cfg("x"), &cfg("y"), Recorded::default());
    assert_eq!(summary, ["Restart r:0 ( n1 )", "Restart r:1 ( n2 )"]);
}

#[test]
fn masked_private_parameters_are_compared_by_the_secure_digest() {
    let cfg = |passwd: &str, login: &str| {
        two_nodes(&prim_with("r", &[("login", login), ("passwd", passwd)], ""), &[("r", RUNNING)])
    };
    let rec = Recorded { secure: Some(" passwd "), ..Recorded::default() };
    // A report masks private values: that alone is no change.
    let (summary, _) = after_change(&cfg("secret", "admin"), &cfg("****", "admin"), rec);
    assert!(summary.is_empty(), "{summary:?}");
    // A change to another parameter still shows through the mask.
    let (summary, _) = after_change(&cfg("secret", "admin"), &cfg("****", "root"), rec);
    assert_eq!(summary, ["Restart r ( n1 )"]);
    // Unmasked, a changed private value is a change like any other.
    let (summary, _) = after_change(&cfg("secret", "admin"), &cfg("other", "admin"), rec);
    assert_eq!(summary, ["Restart r ( n1 )"]);
}

#[test]
fn an_unmanaged_resource_is_not_restarted_for_a_definition_change() {
    let cfg = |ip: &str| {
        let mut p = prim_with("r", &[("ip", ip)], "");
        p = p.replace("</primitive>", &format!("{}</primitive>", meta("r", &[("is-managed", "false")])));
        two_nodes(&p, &[("r", RUNNING)])
    };
    let (summary, _) = after_change(&cfg("1"), &cfg("2"), Recorded::default());
    assert!(summary.is_empty(), "{summary:?}");
}

#[test]
fn a_recorded_reload_with_the_new_parameters_leaves_nothing_to_do() {
    let mon = monitor("r", "10s", "");
    let then = two_nodes(&prim_with("r", &[("state", "/run/r"), ("fake", "1")], &mon), &[("r", RUNNING)]);
    let now = two_nodes(&prim_with("r", &[("state", "/run/r"), ("fake", "2")], &mon), &[("r", RUNNING)]);
    let (old, _) = crm::cib::parse_cib(&then.xml()).expect("parses");
    let (mut cib, _) = crm::cib::parse_cib(&now.xml()).expect("parses");
    let (before, after) = (crm::digest::Calculator::new(&old), crm::digest::Calculator::new(&cib));
    let ns = cib.status.iter_mut().find(|s| s.uname.as_deref() == Some("n1")).expect("n1");
    let lr = ns.resources.iter_mut().find(|r| r.id == "r").expect("history");
    for op in &mut lr.ops {
        // The start ran with the old definition; the monitor was issued again after the reload.
        let calc = if op.operation == "start" { &before } else { &after };
        let d = calc.digest("r", Some("n1"), &op.operation, op.interval_ms).expect("configured");
        op.extra.push(("op-digest".into(), d));
        op.extra.push(("op-force-restart".into(), " state ".into()));
        if op.operation == "monitor" {
            op.call_id = 5;
        }
    }
    let reload = crm::cib::LrmOp {
        id: "r_last_0".into(),
        operation: "reload-agent".into(),
        call_id: 4,
        target_rc: Some(0),
        extra: vec![("op-digest".into(), after.digest("r", Some("n1"), "reload-agent", 0).expect("configured"))],
        ..crm::cib::LrmOp::default()
    };
    lr.ops.push(reload);
    let t = crm::schedule(&cib, None, 1_700_000_000);
    assert!(t.summary.is_empty(), "{:?}", t.summary);
    let actions = crm::simulate::format_actions(&t);
    assert!(!actions.contains("monitor=") && !actions.contains("reload"), "{actions}");
    // The reload's record may replace the start's as the latest one-off operation: the
    // resource is still active there.
    for ns in &mut cib.status {
        for lr in &mut ns.resources {
            lr.ops.retain(|o| o.operation != "start");
        }
    }
    let t = crm::schedule(&cib, None, 1_700_000_000);
    assert!(t.summary.is_empty(), "{:?}", t.summary);
}
