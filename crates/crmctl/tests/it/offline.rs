//! `-f FILE`: edits of a saved Pacemaker CIB, in place, with `--dry-run`, `--if-version` and
//! the exit codes scripts rely on.

use crate::{crmctl, path_str, stderr, stdout};

const CIB: &str = r#"<cib epoch="7" num_updates="3" admin_epoch="0" have-quorum="1">
  <configuration>
    <crm_config><cluster_property_set id="cib-bootstrap-options">
      <nvpair id="o-fe" name="stonith-enabled" value="false"/>
    </cluster_property_set></crm_config>
    <nodes><node id="1" uname="node1"/><node id="2" uname="node2"/></nodes>
    <resources/>
    <constraints/>
  </configuration>
  <status>
    <node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member"/>
    <node_state id="2" uname="node2" in_ccm="true" crmd="online" join="member" expected="member"/>
  </status>
</cib>"#;

fn epoch(xml: &str) -> u64 {
    crm::cib::parse_cib(xml).expect("parses").0.version.epoch
}

#[test]
fn offline_edits_change_the_file_in_place_and_bump_its_epoch() {
    let dir = rig::ScratchDir::new();
    let file = dir.path().join("cib.xml");
    std::fs::write(&file, CIB).expect("write");
    let f = path_str(&file);

    let out = crmctl(&[
        "resource",
        "create",
        "web",
        "ocf:acme:Thing",
        "port=80",
        "op",
        "monitor",
        "interval=10s",
        "meta",
        "resource-stickiness=50",
        "-f",
        f,
    ]);
    assert!(out.status.success());
    let xml = std::fs::read_to_string(&file).expect("read");
    assert_eq!(epoch(&xml), 8);
    assert!(xml.contains(r#"<primitive id="web" class="ocf" provider="acme" type="Thing">"#), "{xml}");
    assert!(xml.contains(r#"name="port" value="80""#) && xml.contains(r#"id="web-monitor-interval-10s""#), "{xml}");

    // A dry run shows the transition and leaves the file alone.
    let out = crmctl(&["resource", "create", "db", "ocf:acme:Thing", "--dry-run", "-f", f]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("Transition Summary:") && stdout(&out).contains("db"), "{}", stdout(&out));
    assert!(stdout(&out).contains("risk:"));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), xml, "dry run changed nothing");

    for args in [
        vec!["constraint", "location", "web", "prefers", "node2=100"],
        vec!["node", "standby", "node1"],
        vec!["property", "set", "no-quorum-policy=freeze"],
        vec!["resource", "disable", "web"],
        vec!["resource", "ban", "web", "node1"],
    ] {
        let mut a = args.clone();
        a.extend(["-f", f]);
        assert!(crmctl(&a).status.success(), "{args:?}");
    }
    let xml = std::fs::read_to_string(&file).expect("read");
    assert_eq!(epoch(&xml), 13);
    for want in [
        r#"id="location-web-node2-100""#,
        r#"<nvpair id="nodes-1-standby" name="standby" value="on"/>"#,
        r#"name="no-quorum-policy" value="freeze""#,
        r#"name="target-role" value="Stopped""#,
        r#"<rsc_location id="cli-ban-web-on-node1" rsc="web" node="node1" score="-INFINITY">"#,
    ] {
        assert!(xml.contains(want), "{want} missing:\n{xml}");
    }
    let out = crmctl(&["constraint", "-f", f]);
    assert!(stdout(&out).contains("web avoids node1 (score -INFINITY) (id: cli-ban-web-on-node1)"), "{}", stdout(&out));

    // Delete takes the constraints that name the resource with it, and says so.
    let out = crmctl(&["resource", "delete", "web", "-f", f]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("removed constraint 'cli-ban-web-on-node1'"), "{}", stdout(&out));
    let xml = std::fs::read_to_string(&file).expect("read");
    assert!(!xml.contains("web"), "{xml}");
}

#[test]
fn refusals_exit_with_pacemakers_codes_and_change_nothing() {
    let dir = rig::ScratchDir::new();
    let file = dir.path().join("cib.xml");
    std::fs::write(&file, CIB).expect("write");
    let f = path_str(&file);
    assert!(crmctl(&["resource", "create", "web", "ocf:acme:Thing", "-f", f]).status.success());
    let before = std::fs::read_to_string(&file).expect("read");

    let cases: [(&[&str], i32, &str); 9] = [
        (&["resource", "create", "web", "ocf:acme:Thing"], 108, "already exists"),
        (&["resource", "enable", "nope"], 105, "no resource named 'nope'; known: web"),
        (&["resource", "move", "web", "node9"], 105, "no node named 'node9'; known: node1, node2"),
        (&["constraint", "location", "web", "prefers", "node1=lots"], 2, "not a score"),
        (&["resource", "create", "x", "ocf:acme:Thing", "op", "monitor", "interval=soon"], 2, "op monitor interval"),
        (&["resource", "create", "x", "ocf:acme:Thing", "bogus"], 64, "unexpected word 'bogus'"),
        (&["property", "set", "stonith-enabled=maybe"], 2, "not a boolean"),
        (&["resource", "disable", "web", "--if-version", "3"], 103, "at version 8, not 3"),
        (&["resource", "ban", "web", "node1", "--lifetime", "1h"], 2, "field lifetime"),
    ];
    for (args, code, says) in cases {
        let mut a = args.to_vec();
        a.extend(["-f", f]);
        let out = crmctl(&a);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), before);
    let out = crmctl(&["resource", "disable", "web", "--if-version", "8", "-f", f]);
    assert!(out.status.success());
    let missing = crmctl(&["resource", "list", "-f", path_str(&dir.path().join("nope.xml"))]);
    assert_eq!(missing.status.code(), Some(66));
    let waits = crmctl(&["resource", "enable", "web", "--wait", "-f", f]);
    assert_eq!(waits.status.code(), Some(64));
}
