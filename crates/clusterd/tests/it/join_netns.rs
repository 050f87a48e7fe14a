//! The arbiter set up the way an administrator does it, with real processes in namespaces:
//! `crmctl arbiter setup --start` and `crmctl arbiter token create` on the third host, then
//! `crmctl quorum device add model=net host=... token=...` on one node of a running two-node
//! cluster. No certificate is copied by hand.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use clusterd::control::{self, QuorumReport, Request, Response};
use clusterd::{QuorumSection, Transport};

use crate::netrig::NetCluster;

const ARBITER_IP: &str = "10.77.0.100";

/// The `crmctl` built next to this package's binaries (`cargo test --workspace` builds it).
fn crmctl() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_clusterd")).with_file_name("crmctl");
    assert!(
        p.exists(),
        "{} is missing: build every binary first (cargo build --workspace --bins; ./tests/run.sh does)",
        p.display()
    );
    p
}

/// Kills a detached process (qnetd started by `crmctl arbiter setup --start`) on drop.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn run_in(ns: &rig::Netns, args: &[&str]) -> Output {
    let out = ns.command(crmctl().to_str().expect("utf-8 path")).args(args).output().expect("crmctl runs");
    eprintln!(
        "crmctl {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn quorum_of(c: &NetCluster, node: u32) -> Option<QuorumReport> {
    match control::query(&c.run_dir(node), &Request::QuorumStatus) {
        Ok(Response::QuorumStatus(r)) => Some(*r),
        _ => None,
    }
}

/// (quorate, members, arbiter vote counted, arbiter configured).
fn state(c: &NetCluster, node: u32) -> Option<(bool, Vec<u32>, bool, bool)> {
    quorum_of(c, node).map(|r| {
        (
            r.status.quorate,
            r.status.members.iter().map(|m| m.0).collect(),
            r.status.device.is_some_and(|d| d.1),
            r.status.device.is_some(),
        )
    })
}

fn wait_state(c: &NetCluster, node: u32, want: (bool, &[u32], bool, bool), what: &str) {
    let ok = rig::wait_until(Duration::from_secs(15), || {
        state(c, node).is_some_and(|(q, m, d, cfg)| q == want.0 && m == want.1 && d == want.2 && cfg == want.3)
    });
    assert!(ok, "{what}: node {node} is {:?}; log:\n{}", quorum_of(c, node), c.log(node));
}

#[test]
fn a_join_code_gives_every_node_its_own_certificate_and_the_cluster_the_arbiter_vote() {
    if !rig::require_root_and(&["ip", "iptables", "nsenter"]) {
        return;
    }
    assert!(crmctl().exists());
    let mut c = NetCluster::with_quorum(
        Path::new(env!("CARGO_BIN_EXE_clusterd")),
        2,
        clusterd::Totem::default(),
        Transport::Udp,
        |_, _| QuorumSection { two_node: true, ..QuorumSection::default() },
    );
    c.start(1);
    c.start(2);
    for n in [1, 2] {
        wait_state(&c, n, (true, &[1, 2], false, false), "two_node cluster up");
    }
    let before: Vec<String> =
        [1, 2].iter().map(|&n| std::fs::read_to_string(c.config_path(n)).expect("config")).collect();

    // The third host.
    let arb = rig::Netns::new();
    arb.veth_to("a0", &format!("{ARBITER_IP}/24"), &c.switch, "arb0", "169.254.0.100/32");
    c.switch.sh("ip link set arb0 master br0");
    let adir = c.dir.path().join("arbiter-host");
    let adir_s = adir.to_str().expect("utf-8").to_string();
    let run_dir = format!("{adir_s}/run");
    let log = format!("{adir_s}/qnetd.log");
    let listen = format!("{ARBITER_IP}:5403");
    let out = run_in(
        &arb,
        &["arbiter", "--dir", &adir_s, "setup", "--listen", &listen, "--run-dir", &run_dir, "--start", "--log", &log],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let pid = text.split("pid ").nth(1).and_then(|r| r.split(')').next()).and_then(|p| p.parse::<u32>().ok());
    let _qnetd = KillOnDrop(pid);
    assert!(out.status.success() && pid.is_some(), "setup failed: {text}");
    let again = run_in(&arb, &["arbiter", "--dir", &adir_s, "setup", "--listen", &listen, "--run-dir", &run_dir]);
    assert!(again.status.success() && String::from_utf8_lossy(&again.stdout).contains("already set up (kept)"));

    // A code made for another cluster: refused by the arbiter, nothing changes on any node.
    let other = run_in(&arb, &["arbiter", "--dir", &adir_s, "token", "create", "--cluster", "other"]);
    assert!(other.status.success());
    let other = String::from_utf8_lossy(&other.stdout).trim().to_string();
    let run1 = c.run_dir(1);
    let run1 = run1.to_str().expect("utf-8");
    let host = format!("host={ARBITER_IP}");
    let refused = run_in(
        &c.nodes[0],
        &["quorum", "--run-dir", run1, "device", "add", "model=net", &host, &format!("token={other}")],
    );
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "a code for another cluster was accepted");
    assert!(err.contains("made for cluster \"other\"") && err.contains("nothing was changed on any node"), "{err}");
    let clean = rig::wait_until(Duration::from_secs(5), || {
        [1, 2].iter().all(|&n| {
            let conf = c.config_path(n);
            let dir = conf.parent().expect("dir");
            !dir.join("arbiter.new").exists() && !dir.join("clusterd.toml.new").exists()
        })
    });
    assert!(clean, "prepared files were left behind after the abort");
    for (i, n) in [1u32, 2].iter().enumerate() {
        assert_eq!(std::fs::read_to_string(c.config_path(*n)).expect("config"), before[i], "node {n}'s file changed");
        assert_eq!(state(&c, *n).map(|s| s.3), Some(false), "node {n} took an arbiter");
    }
    // A malformed code is refused before anything is sent.
    let bad = run_in(&c.nodes[0], &["quorum", "--run-dir", run1, "device", "add", &host, "token=hc1-abc"]);
    assert_eq!(bad.status.code(), Some(2), "invalid parameter");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("token:"));

    // The real code.
    let tok = run_in(&arb, &["arbiter", "--dir", &adir_s, "token", "create", "--ttl", "10m"]);
    assert!(tok.status.success());
    let token = String::from_utf8_lossy(&tok.stdout).trim().to_string();
    assert!(token.starts_with("hc1-"), "{token}");
    let added = run_in(
        &c.nodes[0],
        &[
            "quorum",
            "--run-dir",
            run1,
            "device",
            "add",
            "model=net",
            &host,
            &format!("token={token}"),
            "algorithm=ffsplit",
        ],
    );
    assert!(added.status.success(), "device add failed");
    assert!(String::from_utf8_lossy(&added.stdout).contains("configured on nodes 1, 2"));

    for n in [1, 2] {
        wait_state(&c, n, (true, &[1, 2], true, true), "both nodes use the arbiter");
        let r = quorum_of(&c, n).expect("status");
        assert!(r.status.flags.contains(&"Qdevice".to_string()) && !r.status.flags.contains(&"2Node".to_string()));
        let cfg = clusterd::FileConfig::load(&c.config_path(n)).expect("the rewritten file loads");
        assert!(!cfg.quorum.two_node && cfg.quorum.wait_for_all.is_none(), "{:?}", cfg.quorum);
        let dev = cfg.quorum.device.expect("[quorum.device] written");
        assert_eq!((dev.host.as_str(), dev.algorithm.as_str()), (ARBITER_IP, "ffsplit"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dev.tls.key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "node {n}'s private key is private");
    }
    let status = run_in(&c.nodes[0], &["status", "--run-dir", run1]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.status.success(), "crmctl status failed");
    assert!(text.contains("Arbiter: 10.77.0.100:5403 connected, vote for this partition"), "{text}");
    assert!(text.contains("DC: node1") && text.contains("Online: [ node1 node2 ]"), "{text}");
    let st = run_in(&arb, &["arbiter", "--dir", &adir_s, "status", "-o", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).expect("json");
    assert_eq!(st[0]["cluster"], "netns", "{st}");
    assert_eq!(st[0]["clients"].as_array().map(Vec::len), Some(2), "{st}");

    // The certificates work for real: a partition between the nodes leaves exactly one side
    // quorate, the tie-breaker's.
    c.sh(2, "iptables -A INPUT -s 10.77.0.1 -j DROP && iptables -A INPUT -s 10.77.1.1 -j DROP && iptables -A OUTPUT -d 10.77.0.1 -j DROP && iptables -A OUTPUT -d 10.77.1.1 -j DROP");
    wait_state(&c, 1, (true, &[1], true, true), "partition: node 1 keeps quorum");
    wait_state(&c, 2, (false, &[2], false, true), "partition: node 2 loses it");
    c.sh(2, "iptables -F");
    // A node restarted from its rewritten file comes back with the arbiter.
    c.kill(2);
    c.start(2);
    for n in [1, 2] {
        wait_state(&c, n, (true, &[1, 2], true, true), "after node 2 restarted");
    }
    // Removed on every node at once: the votes go back, two_node comes back, the files follow.
    let run2 = c.run_dir(2);
    let removed = run_in(&c.nodes[1], &["quorum", "--run-dir", run2.to_str().expect("utf-8"), "device", "remove"]);
    assert!(removed.status.success(), "device remove failed");
    for n in [1, 2] {
        wait_state(&c, n, (true, &[1, 2], false, false), "the arbiter removed everywhere");
        let r = quorum_of(&c, n).expect("status");
        assert!(r.status.flags.contains(&"2Node".to_string()), "{:?}", r.status.flags);
        let cfg = clusterd::FileConfig::load(&c.config_path(n)).expect("the rewritten file loads");
        assert!(cfg.quorum.device.is_none() && cfg.quorum.two_node, "{:?}", cfg.quorum);
    }
    let again = run_in(&c.nodes[0], &["quorum", "--run-dir", run1, "device", "remove"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("no arbiter is configured"));
    // And added back with the same (still valid) code.
    let readded = run_in(
        &c.nodes[0],
        &["quorum", "--run-dir", run1, "device", "add", "model=net", &host, &format!("token={token}")],
    );
    assert!(readded.status.success(), "re-adding failed");
    for n in [1, 2] {
        wait_state(&c, n, (true, &[1, 2], true, true), "the arbiter back on both nodes");
    }

    // A second addition is refused.
    let twice = run_in(
        &c.nodes[1],
        &[
            "quorum",
            "--run-dir",
            c.run_dir(2).to_str().expect("utf-8"),
            "device",
            "add",
            &host,
            &format!("token={token}"),
        ],
    );
    assert!(!twice.status.success() && String::from_utf8_lossy(&twice.stderr).contains("already configured"));
}
