//! The sample configuration and `--check-config`.

use std::process::Command;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/clusterd.toml");

#[test]
fn the_commented_sample_config_parses_and_validates() {
    let text = std::fs::read_to_string(SAMPLE).expect("sample exists");
    let cfg = clusterd::FileConfig::parse(&text).expect("sample parses");
    cfg.validate().expect("sample validates");
    assert_eq!(cfg.nodes.len(), 3);
    assert_eq!(cfg.totem, clusterd::Totem::default(), "the sample shows the defaults");
    assert_eq!(cfg.quorum.votes.get("node1"), Some(&1));
    let mut shown = cfg.quorum.clone();
    shown.votes.clear();
    assert_eq!(shown, clusterd::QuorumSection::default(), "the sample shows the quorum defaults");
    assert_eq!(cfg.quorum_config().expect("quorum config").configured_expected_votes(), 3);
}

#[test]
fn check_config_prints_the_effective_config_with_overrides() {
    let out = Command::new(env!("CARGO_BIN_EXE_clusterd"))
        .args(["--config", SAMPLE, "--run-dir", "/tmp/elsewhere", "--check-config"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run_dir = \"/tmp/elsewhere\""), "{text}");
    assert!(text.contains("token_timeout_ms = 650"), "{text}");
}

#[test]
fn a_bad_config_names_every_problem_and_fails() {
    let dir = rig::ScratchDir::new();
    let path = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(SAMPLE)
        .expect("sample")
        .replace("id = 2", "id = 1")
        .replace("consensus_timeout_ms = 800", "consensus_timeout_ms = 300")
        .replace("# expected_votes = 3", "expected_votes = 0");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_clusterd"))
        .args(["--config", path.to_str().expect("utf-8"), "--check-config"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node id 1 is used twice"), "{err}");
    assert!(err.contains("totem.consensus_timeout_ms"), "{err}");
    assert!(err.contains("quorum.expected_votes: 0 expected votes"), "{err}");
}

const QNETD_SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/qnetd.toml");

#[test]
fn the_qnetd_sample_config_checks_and_a_bad_lease_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_qnetd"))
        .args(["--config", QNETD_SAMPLE, "--check-config"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lease_ms = 500"), "{text}");
    let dir = rig::ScratchDir::new();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        std::fs::read_to_string(QNETD_SAMPLE).expect("sample").replace("lease_ms = 500", "lease_ms = 5"),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_qnetd"))
        .args(["--config", path.to_str().expect("utf-8"), "--check-config"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lease_ms: 5 is out of range"), "{err}");
}

#[test]
fn the_sample_device_section_parses_when_uncommented() {
    let text = std::fs::read_to_string(SAMPLE).expect("sample");
    let (head, tail) = text.split_once("# [quorum.device]").expect("device section");
    let device: String = std::iter::once("[quorum.device]")
        .chain(tail.lines().skip(1).filter(|l| l.starts_with("# ") && !l.starts_with("# #")).map(|l| &l[2..]))
        .collect::<Vec<_>>()
        .join("\n");
    let head = head.replace("[quorum.votes]\nnode1 = 1\n", "");
    let cfg = clusterd::FileConfig::parse(&format!("{head}\n{device}\n")).expect("parses");
    cfg.validate().expect("validates");
    let d = cfg.quorum.device.as_ref().expect("device");
    assert_eq!(d.heuristics.len(), 1);
    assert_eq!(cfg.quorum_config().expect("converts").device_votes, Some(1));
}

#[test]
fn a_device_section_is_appended_keeping_comments_and_conflicts_are_refused() {
    let text = std::fs::read_to_string(SAMPLE).expect("sample");
    let dev = clusterd::DeviceSection {
        host: "192.0.2.10".into(),
        port: 5403,
        algorithm: "lms".into(),
        tie_breaker: "lowest".into(),
        votes: None,
        tls: clusterd::TlsPaths { ca: "/etc/a/ca.pem".into(), cert: "/etc/a/c.pem".into(), key: "/etc/a/c.key".into() },
        heuristics: Vec::new(),
        heuristics_interval_ms: 3000,
    };
    let out = clusterd::FileConfig::add_device_section(&text, &dev).expect("added");
    let comments =
        |t: &str| t.lines().filter(|l| l.trim_start().starts_with('#')).map(str::to_string).collect::<Vec<_>>();
    let kept = comments(&out);
    assert!(comments(&text).iter().all(|c| kept.contains(c)), "every comment of the original is kept");
    let cfg = clusterd::FileConfig::parse(&out).expect("parses");
    assert_eq!(cfg.quorum.device.as_ref(), Some(&dev));
    assert_eq!(cfg.quorum_config().expect("converts").device_votes, Some(2), "lms: nodes-1 votes");
    let again = clusterd::FileConfig::add_device_section(&out, &dev).expect_err("twice");
    assert!(again[0].contains("already configured"), "{again:?}");
    let two_node = text.replace("two_node = false", "two_node = true");
    // An arbiter replaces two_node, and the wait_for_all it implied (as pcs does).
    let out = clusterd::FileConfig::add_device_section(&two_node, &dev).expect("added");
    let cfg = clusterd::FileConfig::parse(&out).expect("parses");
    assert!(!cfg.quorum.two_node && cfg.quorum.wait_for_all.is_none(), "{:?}", cfg.quorum);
    assert!(out.contains("# two_node was turned off by `crmctl quorum device add`"), "{out}");
    let kept = comments(&out);
    assert!(comments(&two_node).iter().all(|c| kept.contains(c)), "every comment of the original is kept");
    // Removing the arbiter again: the section goes, two_node comes back for two nodes, comments stay.
    let back = clusterd::FileConfig::remove_device_section(&out).expect("removed");
    let cfg = clusterd::FileConfig::parse(&back).expect("parses");
    assert!(cfg.quorum.device.is_none(), "{back}");
    assert_eq!(cfg.quorum.two_node, cfg.nodes.len() == 2, "{back}");
    let kept = comments(&back);
    assert!(comments(&text).iter().all(|c| kept.contains(c)), "every comment of the original is kept");
    let twice = clusterd::FileConfig::remove_device_section(&back).expect_err("twice");
    assert!(twice[0].contains("no arbiter is configured"), "{twice:?}");
    let bad = clusterd::DeviceSection { algorithm: "fifty".into(), ..dev };
    let errs = clusterd::FileConfig::add_device_section(&two_node, &bad).expect_err("invalid");
    assert!(errs.iter().any(|e| e.contains("quorum.device.algorithm: \"fifty\" is unknown")), "{errs:?}");
}
