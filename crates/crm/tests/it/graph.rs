//! Transition graph contents beyond the summary: probes and clone notifications.

use crm::{ActionKind, Transition};

fn cib(resources: &str, node2_state: &str, lrm1: &str) -> String {
    format!(
        r#"<cib admin_epoch="0" epoch="1" num_updates="1" have-quorum="1">
  <configuration>
    <crm_config><cluster_property_set id="o"><nvpair id="o1" name="fencing-enabled" value="false"/></cluster_property_set></crm_config>
    <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes>
    <resources>{resources}</resources>
    <constraints/>
  </configuration>
  <status>
    <node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member">
      <lrm id="1"><lrm_resources>{lrm1}</lrm_resources></lrm>
    </node_state>
    {node2_state}
  </status>
</cib>"#
    )
}

const ONLINE2: &str = r#"<node_state id="2" uname="n2" in_ccm="true" crmd="online" join="member" expected="member"/>"#;

fn running_on_n1(id: &str) -> String {
    format!(
        r#"<lrm_resource id="{id}" class="ocf" provider="heartbeat" type="Dummy">
          <lrm_rsc_op id="{id}_last_0" operation="start" call-id="2" rc-code="0" op-status="0" interval="0"/>
        </lrm_resource>"#
    )
}

fn schedule(xml: &str) -> Transition {
    let (cib, _) = crm::cib::parse_cib(xml).expect("test CIB parses");
    crm::schedule(&cib, None, 0)
}

fn node_actions(t: &Transition, kind: ActionKind, interval: u64) -> Vec<(String, String, bool)> {
    t.actions
        .iter()
        .filter(|a| a.kind == kind && a.interval_ms == interval && !a.pseudo)
        .map(|a| {
            (
                a.rsc.map(|r| t.resource_name(r).to_string()).unwrap_or_default(),
                a.node.map(|n| t.node_name(n).to_string()).unwrap_or_default(),
                a.runnable,
            )
        })
        .collect()
}

#[test]
fn probes_run_only_where_the_resource_state_is_unknown() {
    let xml = cib(r#"<primitive id="a" class="ocf" provider="heartbeat" type="Dummy"/>"#, ONLINE2, &running_on_n1("a"));
    let t = schedule(&xml);
    assert_eq!(node_actions(&t, ActionKind::Monitor, 0), vec![("a".into(), "n2".into(), true)]);
}

#[test]
fn an_unprobeable_pending_node_blocks_starting_a_stopped_resource() {
    let pending = r#"<node_state id="2" uname="n2" in_ccm="true" crmd="online" join="pending" expected="member"/>"#;
    // With fencing, a node that is a member but has not joined yet is pending.
    let xml = cib(r#"<primitive id="a" class="ocf" provider="heartbeat" type="Dummy"/>"#, pending, "")
        .replace(r#"name="fencing-enabled" value="false""#, r#"name="fencing-enabled" value="true""#);
    let t = schedule(&xml);
    let probes = node_actions(&t, ActionKind::Monitor, 0);
    assert!(probes.contains(&("a".into(), "n2".into(), false)), "{probes:?}");
    assert_eq!(t.summary.len(), 1);
    assert!(t.summary[0].starts_with("Start") && t.summary[0].ends_with("blocked"), "{:?}", t.summary);
}

#[test]
fn an_unprobeable_pending_node_blocks_new_clone_instances_but_not_running_ones() {
    let pending_and_n3 = r#"<node_state id="2" uname="n2" in_ccm="true" crmd="online" join="pending" expected="member"/>
    <node_state id="3" uname="n3" in_ccm="true" crmd="online" join="member" expected="member"/>"#;
    let xml = cib(
        r#"<clone id="c"><primitive id="a" class="ocf" provider="heartbeat" type="Dummy"/></clone>"#,
        pending_and_n3,
        &running_on_n1("a"),
    )
    .replace(r#"<node id="2" uname="n2"/>"#, r#"<node id="2" uname="n2"/><node id="3" uname="n3"/>"#)
    .replace(r#"name="fencing-enabled" value="false""#, r#"name="fencing-enabled" value="true""#);
    let t = schedule(&xml);
    // The copy on n1 keeps running; the new copy for n3 waits for n2's state to be known.
    assert_eq!(t.summary.len(), 1, "{:?}", t.summary);
    let line = &t.summary[0];
    assert!(line.starts_with("Start") && line.contains("n3") && line.ends_with("monitor (blocked)"), "{line}");
}

#[test]
fn notifying_clones_notify_active_instances_around_a_start() {
    let clone = r#"<clone id="c"><meta_attributes id="cm"><nvpair id="cm1" name="notify" value="true"/></meta_attributes>
        <primitive id="p" class="ocf" provider="heartbeat" type="Dummy"/></clone>"#;
    let xml = cib(clone, ONLINE2, &running_on_n1("p"));
    let t = schedule(&xml);
    let labels: Vec<&str> =
        t.actions.iter().filter(|a| a.kind == ActionKind::Notify && a.pseudo).map(|a| a.label.as_str()).collect();
    for want in
        ["pre_notify_start", "confirmed-pre_notify_start", "post_notify_running", "confirmed-post_notify_running"]
    {
        assert!(labels.contains(&want), "missing {want} in {labels:?}");
    }
    let mut notified: Vec<String> = node_actions(&t, ActionKind::Notify, 0).into_iter().map(|(_, n, _)| n).collect();
    notified.sort();
    // Before the start only n1 runs an instance; afterwards both nodes do.
    assert_eq!(notified, vec!["n1", "n1", "n2"]);
}
