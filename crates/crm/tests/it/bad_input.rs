//! Bad input never panics, and errors name the element and field.

use crm::cib::{parse_cib, validate};
use proptest::prelude::*;

const GOOD: &str = r#"<cib admin_epoch="1" epoch="2" num_updates="3" have-quorum="1">
  <configuration>
    <crm_config><cluster_property_set id="opts"><nvpair id="o1" name="stonith-enabled" value="false"/></cluster_property_set></crm_config>
    <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes>
    <resources>
      <primitive id="a" class="ocf" provider="heartbeat" type="Dummy"/>
      <group id="g"><primitive id="b" class="ocf" provider="heartbeat" type="Dummy"/></group>
      <master id="ms"><primitive id="s" class="ocf" provider="pacemaker" type="Stateful"/></master>
    </resources>
    <constraints>
      <rsc_location id="l1" rsc="a" node="n1" score="100"/>
      <rsc_location id="l2" rsc="ms" role="Master" node="n2" score="50"/>
      <rsc_colocation id="c1" rsc="g" with-rsc="ms" with-rsc-role="Master" score="INFINITY"/>
      <rsc_order id="o1" first="a" then="g"/>
    </constraints>
  </configuration>
  <status>
    <node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member"/>
    <node_state id="2" uname="n2" in_ccm="true" crmd="online" join="member" expected="member"/>
  </status>
</cib>"#;

#[test]
fn malformed_xml_is_an_error_not_a_panic() {
    let err = parse_cib("<cib><configuration>").unwrap_err();
    assert!(err.to_string().contains("malformed xml"), "{err}");
}

#[test]
fn invalid_score_names_the_element_and_field() {
    let xml = GOOD.replace(r#"score="100""#, r#"score="lots""#);
    let err = parse_cib(&xml).unwrap_err().to_string();
    assert!(err.contains("rsc_location") && err.contains("l1") && err.contains("score"), "{err}");
}

#[test]
fn unknown_references_are_reported_by_constraint() {
    let xml = GOOD.replace(r#"then="g""#, r#"then="nope""#);
    let (cib, _) = parse_cib(&xml).unwrap();
    let problems = validate(&cib);
    assert!(problems.iter().any(|p| p.id == "o1" && p.message.contains("unknown resource 'nope'")), "{problems:?}");
}

#[test]
fn duplicate_ids_are_reported() {
    let xml = GOOD.replace(r#"<primitive id="b""#, r#"<primitive id="a""#);
    let (cib, _) = parse_cib(&xml).unwrap();
    let problems = validate(&cib);
    assert!(problems.iter().any(|p| p.message.contains("used more than once")), "{problems:?}");
}

#[test]
fn mandatory_ordering_loops_are_reported() {
    let xml = GOOD.replace(
        r#"<rsc_order id="o1" first="a" then="g"/>"#,
        r#"<rsc_order id="o1" first="a" then="g"/><rsc_order id="o2" first="g" then="a"/>"#,
    );
    let (cib, _) = parse_cib(&xml).unwrap();
    let problems = validate(&cib);
    assert!(problems.iter().any(|p| p.element == "rsc_order" && p.message.contains("loop")), "{problems:?}");
}

#[test]
fn unknown_elements_are_reported_not_dropped_silently() {
    let xml = GOOD.replace("<constraints>", "<constraints><rsc_ticket id=\"t1\" rsc=\"a\" ticket=\"T\"/>");
    let (_, warnings) = parse_cib(&xml).unwrap();
    assert!(warnings.iter().any(|w| w.element == "rsc_ticket" && w.id == "t1"), "{warnings:?}");
}

#[test]
fn legacy_names_are_accepted() {
    let (cib, _) = parse_cib(GOOD).unwrap();
    let t = crm::schedule(&cib, None, 0);
    // Fencing disabled through the legacy option name: starts are not blocked on fencing.
    assert!(t.summary.iter().any(|l| l.starts_with("Start") && l.contains(" a ")), "{:?}", t.summary);
    assert!(t.summary.iter().any(|l| l.starts_with("Promote")), "{:?}", t.summary);
}

fn mutate(base: &str, cuts: &[(usize, usize, u8)]) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for &(pos, len, b) in cuts {
        if bytes.is_empty() {
            break;
        }
        let p = pos % bytes.len();
        match b % 3 {
            0 => {
                let end = (p + len % 16).min(bytes.len());
                bytes.drain(p..end);
            }
            1 => bytes[p] = b" <>\"=/x19-"[(b as usize) % 10],
            _ => {
                let end = (p + len % 64).min(bytes.len());
                let chunk = bytes[p..end].to_vec();
                bytes.splice(p..p, chunk);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn mutated_cib_xml_never_panics(cuts in proptest::collection::vec((0usize..4000, 0usize..64, any::<u8>()), 1..6)) {
        let xml = mutate(GOOD, &cuts);
        if let Ok((cib, _)) = parse_cib(&xml) {
            let _ = validate(&cib);
            let _ = crm::schedule(&cib, None, 0);
            let _ = crm::cib::to_xml(&cib);
        }
    }
}
