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

    let out = crmctl(&["constraint", "ref", "web", "-f", f]);
    assert!(stdout(&out).contains("location-web-node2-100") && stdout(&out).contains("cli-ban-web-on-node1"));
    assert!(crmctl(&["node", "maintenance", "--all", "-f", f]).status.success());
    let nodes = stdout(&crmctl(&["node", "list", "-o", "json", "-f", f]));
    let nodes: serde_json::Value = serde_json::from_str(&nodes).expect("json");
    for n in nodes["nodes"].as_array().expect("nodes") {
        assert_eq!(n["attributes"]["maintenance"], "on", "{n}");
    }
    assert!(crmctl(&["node", "ready", "--all", "-f", f]).status.success());
    assert!(crmctl(&["node", "online", "node1", "-f", f]).status.success());
    let xml = std::fs::read_to_string(&file).expect("read");
    assert!(!xml.contains(r#"name="maintenance""#) && !xml.contains(r#"name="standby""#), "{xml}");

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
    // Parameters are checked against the meta-data of an agent installed here.
    if std::path::Path::new("/usr/lib/ocf/resource.d/heartbeat/Filesystem").exists() {
        let out = crmctl(&["resource", "create", "fs", "Filesystem", "device=/dev/x", "colour=red", "-f", f]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.contains("field directory:") && err.contains("field colour:"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), before);
    let out = crmctl(&["resource", "disable", "web", "--if-version", "8", "-f", f]);
    assert!(out.status.success());
    let missing = crmctl(&["resource", "list", "-f", path_str(&dir.path().join("nope.xml"))]);
    assert_eq!(missing.status.code(), Some(66));
    let waits = crmctl(&["resource", "enable", "web", "--wait", "-f", f]);
    assert_eq!(waits.status.code(), Some(64));
}

/// Splits a shell line into words (single quotes as `shell_word` writes them).
fn shell_split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut cur, mut quoted, mut any) = (String::new(), false, false);
    for ch in line.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Runs every `crmctl ...` line of `script` against `file`.
fn replay(script: &str, file: &str) {
    for line in script.lines().filter(|l| l.starts_with("crmctl ")) {
        let words = shell_split(line);
        let mut args: Vec<&str> = words.iter().skip(1).map(String::as_str).collect();
        args.extend(["-f", file]);
        let out = crmctl(&args);
        assert!(out.status.success(), "replaying `{line}`: {}", stderr(&out));
    }
}

#[test]
fn the_cmd_output_recreates_the_same_configuration() {
    let dir = rig::ScratchDir::new();
    let (a, b) = (dir.path().join("a.xml"), dir.path().join("b.xml"));
    std::fs::write(&a, CIB).expect("write");
    std::fs::write(&b, CIB).expect("write");
    let (fa, fb) = (path_str(&a), path_str(&b));
    for args in [
        &[
            "resource",
            "create",
            "vip",
            "ocf:heartbeat:IPaddr2",
            "ip=10.0.0.9",
            "op",
            "monitor",
            "interval=10s",
            "timeout=20s",
        ][..],
        &[
            "resource",
            "create",
            "fs",
            "ocf:heartbeat:Filesystem",
            "device=/dev/x",
            "directory=/srv",
            "fstype=xfs",
            "--group",
            "g",
        ],
        &["resource", "create", "app", "systemd:app", "op", "start", "timeout=60s", "--group", "g"],
        &["resource", "meta", "g", "resource-stickiness=100"],
        &[
            "resource",
            "create",
            "db",
            "ocf:acme:DB",
            "promotable",
            "db-p",
            "promoted-max=1",
            "meta",
            "failure-timeout=60s",
        ],
        &["resource", "create", "ping", "ocf:pacemaker:ping", "host_list=10.0.0.1", "clone"],
        &["constraint", "location", "vip", "avoids", "node2=50"],
        &["constraint", "location", "g", "rule", "score=200", "#uname eq node1 or rack eq integer 2"],
        &["constraint", "order", "promote", "db-p", "then", "start", "g", "kind=Optional"],
        &["constraint", "colocation", "add", "g", "with", "Promoted", "db-p", "score=500"],
        &["constraint", "colocation", "set", "vip", "g", "sequential=false", "setoptions", "id=cs1", "score=INFINITY"],
        &["property", "set", "no-quorum-policy=freeze", "cluster-recheck-interval=2min"],
    ] {
        let mut args = args.to_vec();
        args.extend(["-f", fa]);
        assert!(crmctl(&args).status.success(), "{args:?}");
    }
    let read = |what: &[&str], f: &str, o: &str| {
        let mut args = what.to_vec();
        args.extend(["-o", o, "-f", f]);
        let out = crmctl(&args);
        assert!(out.status.success(), "{args:?}");
        stdout(&out)
    };
    let mut script = String::new();
    for what in [&["resource", "config"][..], &["constraint"], &["property", "config"]] {
        script += &read(what, fa, "cmd");
    }
    assert!(script.contains("crmctl resource create db ocf:acme:DB"), "{script}");
    replay(&script, fb);
    for what in [&["resource", "config"][..], &["constraint"], &["property", "config"]] {
        assert_eq!(read(what, fb, "json"), read(what, fa, "json"), "{what:?} differs after replaying:\n{script}");
    }
    let json: serde_json::Value = serde_json::from_str(&read(&["resource", "config"], fa, "json")).expect("json");
    assert_eq!(json["api_version"], 1);
    assert_eq!(json["resources"][2]["promotable"], true);
}

#[test]
fn ops_groups_and_management_are_edited_offline() {
    let dir = rig::ScratchDir::new();
    let file = dir.path().join("cib.xml");
    std::fs::write(&file, CIB).expect("write");
    let f = path_str(&file);
    for args in [
        &["resource", "create", "a", "ocf:acme:Thing"][..],
        &["resource", "create", "b", "ocf:acme:Thing"],
        &["resource", "op", "add", "a", "monitor", "interval=15s", "timeout=5s"],
        &["resource", "group", "add", "g", "b", "a"],
        &["resource", "unmanage", "g"],
        &["resource", "update", "a", "op", "monitor", "timeout=7s"],
    ] {
        let mut a = args.to_vec();
        a.extend(["-f", f]);
        assert!(crmctl(&a).status.success(), "{args:?}");
    }
    let config = |f: &str| {
        let out = crmctl(&["resource", "config", "-o", "json", "-f", f]);
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).expect("json")
    };
    let c = config(f);
    let g = &c["resources"][0];
    assert_eq!((g["id"].as_str(), g["kind"].as_str()), (Some("g"), Some("group")));
    assert_eq!(g["meta"]["is-managed"], "false");
    assert_eq!(g["members"][0]["id"], "b");
    assert_eq!(g["members"][1]["ops"][0]["timeout_ms"], 7000);
    let dup = crmctl(&["resource", "op", "add", "a", "monitor", "interval=15s", "-f", f]);
    assert_eq!(dup.status.code(), Some(108), "{}", stderr(&dup));
    let out = crmctl(&["resource", "op", "remove", "a", "monitor", "interval=15s", "-f", f]);
    assert!(stdout(&out).contains("removed operation a-monitor-interval-15s"), "{}", stdout(&out));
    let out = crmctl(&["resource", "ungroup", "g", "-f", f]);
    assert!(stdout(&out).contains("removed group 'g'"), "{}", stdout(&out));
    let c = config(f);
    let ids: Vec<&str> = c["resources"].as_array().expect("list").iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
}
