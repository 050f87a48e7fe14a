//! Resources living inside a container resource (meta attribute `container`).

fn cib(app_history: &str, constraints: &str) -> String {
    format!(
        r#"<cib have-quorum="1" validate-with="pacemaker-3.9" crm_feature_set="3.19.0" dc-uuid="n1">
  <configuration>
    <crm_config><cluster_property_set id="o">
      <nvpair id="o1" name="fencing-enabled" value="false"/>
    </cluster_property_set></crm_config>
    <nodes><node id="n1" uname="n1"/><node id="n2" uname="n2"/></nodes>
    <resources>
      <primitive id="vm" class="ocf" provider="pacemaker" type="Dummy"/>
      <primitive id="app" class="ocf" provider="pacemaker" type="Dummy">
        <meta_attributes id="app-meta"><nvpair id="app-c" name="container" value="vm"/></meta_attributes>
      </primitive>
    </resources>
    <constraints>{constraints}</constraints>
  </configuration>
  <status>
    <node_state id="n1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member">
      <lrm id="n1"><lrm_resources>
        <lrm_resource id="vm" class="ocf" provider="pacemaker" type="Dummy">
          <lrm_rsc_op id="vm_last_0" operation="start" call-id="1" rc-code="0" op-status="0" interval="0"/>
        </lrm_resource>
        <lrm_resource id="app" class="ocf" provider="pacemaker" type="Dummy">{app_history}</lrm_resource>
      </lrm_resources></lrm>
    </node_state>
    <node_state id="n2" uname="n2" in_ccm="true" crmd="online" join="member" expected="member">
      <lrm id="n2"><lrm_resources>
        <lrm_resource id="vm" class="ocf" provider="pacemaker" type="Dummy">
          <lrm_rsc_op id="vm_last_0" operation="monitor" call-id="1" rc-code="7" op-status="0" interval="0"/>
        </lrm_resource>
        <lrm_resource id="app" class="ocf" provider="pacemaker" type="Dummy">
          <lrm_rsc_op id="app_last_0" operation="monitor" call-id="1" rc-code="7" op-status="0" interval="0"/>
        </lrm_resource>
      </lrm_resources></lrm>
    </node_state>
  </status>
</cib>"#
    )
}

fn summary(xml: &str) -> Vec<String> {
    let (cib, _) = crm::cib::parse_cib(xml).expect("parses");
    let t = crm::schedule(&cib, None, 0);
    t.summary.iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn a_failed_contained_resource_restarts_its_container_too() {
    let got = summary(&cib(
        r#"<lrm_rsc_op id="app_last_0" operation="start" call-id="2" rc-code="0" op-status="0" interval="0"/>
           <lrm_rsc_op id="app_last_failure_0" operation="monitor" call-id="3" rc-code="1" op-status="0" interval="10000"/>"#,
        "",
    ));
    assert_eq!(got, vec!["Restart vm ( n1 )".to_string(), "Recover app ( n1 )".to_string()], "{got:?}");
}

#[test]
fn a_contained_resource_whose_stop_failed_counts_as_stopped_once_its_container_restarts() {
    let got = summary(&cib(
        r#"<lrm_rsc_op id="app_last_0" operation="start" call-id="2" rc-code="0" op-status="0" interval="0"/>
           <lrm_rsc_op id="app_last_failure_0" operation="stop" call-id="3" rc-code="1" op-status="0" interval="0"/>"#,
        "",
    ));
    assert_eq!(got, vec!["Restart vm ( n1 )".to_string(), "Start app ( n1 )".to_string()], "{got:?}");
}

#[test]
fn a_contained_resource_runs_only_where_its_container_runs() {
    // The container is held on n1; the contained resource would rather be on n2.
    let got = summary(&cib(
        "",
        r#"<rsc_location id="vm-on-n1" rsc="vm" node="n1" score="INFINITY"/>
           <rsc_location id="app-likes-n2" rsc="app" node="n2" score="100"/>"#,
    ));
    assert_eq!(got, vec!["Start app ( n1 )".to_string()], "{got:?}");
}
