//! Two real `clusterd` nodes and a real `qnetd` on a third host, each in its own network
//! namespace: a killed node, a partition between the nodes, a frozen (SIGSTOP) node, and the
//! arbiter stopped and restarted.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clusterd::control::{self, QuorumReport, Request, Response};
use clusterd::{DeviceSection, QuorumSection, TlsPaths, Transport};

use crate::netrig::NetCluster;

const ARBITER_IP: &str = "10.77.0.100";
const ARBITER_PORT: u16 = 5403;

/// The arbiter host: its namespace on link 0's bridge and its qnetd process.
struct ArbiterHost {
    proc: Option<Child>,
    ns: rig::Netns,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl ArbiterHost {
    fn new(c: &NetCluster) -> ArbiterHost {
        let ns = rig::Netns::new();
        ns.veth_to("a0", &format!("{ARBITER_IP}/24"), &c.switch, "arb0", "169.254.0.100/32");
        c.switch.sh("ip link set arb0 master br0");
        let dir = c.dir.path().join("arbiter");
        let cfg = clusterd::arbiterd::QnetdConfig {
            listen: format!("{ARBITER_IP}:{ARBITER_PORT}").parse().expect("address"),
            lease_ms: 500,
            run_dir: dir.join("run"),
            tls: TlsPaths { ca: dir.join("ca.pem"), cert: dir.join("qnetd.pem"), key: dir.join("qnetd.key") },
            ca_key: None,
        };
        let config = dir.join("qnetd.toml");
        std::fs::write(&config, cfg.to_toml()).expect("write qnetd.toml");
        ArbiterHost { proc: None, ns, config, log: dir.join("qnetd.log") }
    }

    fn start(&mut self) {
        let log = std::fs::File::options().create(true).append(true).open(&self.log).expect("log");
        let child = self
            .ns
            .command(env!("CARGO_BIN_EXE_qnetd"))
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn qnetd");
        self.proc = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.proc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ArbiterHost {
    fn drop(&mut self) {
        self.stop();
    }
}

fn quorum_of(c: &NetCluster, node: u32) -> Option<QuorumReport> {
    match control::query(&c.run_dir(node), &Request::QuorumStatus) {
        Ok(Response::QuorumStatus(r)) => Some(*r),
        _ => None,
    }
}

/// (quorate, members, arbiter vote counted) of a node.
fn state(c: &NetCluster, node: u32) -> Option<(bool, Vec<u32>, bool)> {
    quorum_of(c, node).map(|r| {
        (r.status.quorate, r.status.members.iter().map(|m| m.0).collect(), r.status.device.is_some_and(|d| d.1))
    })
}

fn wait_state(c: &NetCluster, node: u32, want: (bool, &[u32], bool), what: &str, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    let ok =
        rig::wait_until(timeout, || state(c, node).is_some_and(|(q, m, d)| q == want.0 && m == want.1 && d == want.2));
    assert!(ok, "{what}: node {node} is {:?}; log:\n{}", quorum_of(c, node), c.log(node));
    t0.elapsed()
}

fn both_quorate_with_arbiter(c: &NetCluster, what: &str) {
    for n in [1, 2] {
        wait_state(c, n, (true, &[1, 2], true), what, Duration::from_secs(15));
    }
}

/// `nodes` clusterd nodes (ffsplit arbiter client each) and a running qnetd; no node started.
fn arbiter_cluster(nodes: u32) -> (NetCluster, ArbiterHost) {
    let ids: Vec<u32> = (1..=nodes).collect();
    let c = NetCluster::with_quorum(
        Path::new(env!("CARGO_BIN_EXE_clusterd")),
        nodes,
        clusterd::Totem::default(),
        Transport::Udp,
        |i, dir| {
            let adir = dir.join("arbiter");
            if !adir.exists() {
                clusterd::gen_arbiter_certs(&adir, "netns", &ids).expect("arbiter certificates");
            }
            QuorumSection {
                device: Some(DeviceSection {
                    host: ARBITER_IP.into(),
                    port: ARBITER_PORT,
                    algorithm: "ffsplit".into(),
                    tie_breaker: "lowest".into(),
                    votes: None,
                    tls: TlsPaths {
                        ca: adir.join("ca.pem"),
                        cert: adir.join(format!("netns-node{i}.pem")),
                        key: adir.join(format!("netns-node{i}.key")),
                    },
                    heuristics: Vec::new(),
                    heuristics_interval_ms: 3000,
                }),
                ..QuorumSection::default()
            }
        },
    );
    let mut arb = ArbiterHost::new(&c);
    arb.start();
    (c, arb)
}

#[test]
fn two_nodes_and_an_arbiter_survive_kill_partition_freeze_and_arbiter_loss() {
    if !rig::require_root_and(&["ip", "iptables", "nsenter"]) {
        return;
    }
    let (mut c, mut arb) = arbiter_cluster(2);
    c.start(1);
    c.start(2);
    both_quorate_with_arbiter(&c, "start");

    // Partition the two nodes (both still reach the arbiter): exactly one side stays quorate,
    // the tie-breaker's (lowest id).
    let t0 = Instant::now();
    c.sh(2, "iptables -A INPUT -s 10.77.0.1 -j DROP && iptables -A INPUT -s 10.77.1.1 -j DROP && iptables -A OUTPUT -d 10.77.0.1 -j DROP && iptables -A OUTPUT -d 10.77.1.1 -j DROP");
    wait_state(&c, 1, (true, &[1], true), "partition: node 1 keeps quorum", Duration::from_secs(10));
    wait_state(&c, 2, (false, &[2], false), "partition: node 2 loses quorum", Duration::from_secs(10));
    eprintln!("partition: one side quorate via the arbiter {:?} after the split", t0.elapsed());
    // Both sides stay decided that way for a while (never both quorate).
    let still = rig::wait_until(Duration::from_millis(1500), || {
        state(&c, 1).is_some_and(|s| !s.0) || state(&c, 2).is_some_and(|s| s.0)
    });
    assert!(!still, "the split decision flipped: {:?} / {:?}", state(&c, 1), state(&c, 2));
    c.sh(2, "iptables -F");
    both_quorate_with_arbiter(&c, "after healing the partition");

    // Freeze node 1 (SIGSTOP): node 2 gets the vote once node 1's lease lapses.
    let pid1 = c.pid(1).expect("node 1 runs");
    let t0 = Instant::now();
    rig_kill("-STOP", pid1);
    let view_after = rig::wait_until(Duration::from_secs(10), || state(&c, 2).is_some_and(|s| s.1 == [2]));
    let t_view = t0.elapsed();
    assert!(view_after, "node 2 never saw node 1 go: {:?}", state(&c, 2));
    let t_vote = wait_state(&c, 2, (true, &[2], true), "freeze: node 2 gets the vote", Duration::from_secs(10));
    eprintln!(
        "SIGSTOP of node 1: new view on node 2 after {t_view:?}, arbiter vote and quorum {t_vote:?} after that ({:?} in all)",
        t0.elapsed()
    );
    rig_kill("-CONT", pid1);
    both_quorate_with_arbiter(&c, "after node 1 resumed");

    // The arbiter stops with both nodes up: nobody loses quorum; its restart is harmless.
    arb.stop();
    let lost = rig::wait_until(Duration::from_secs(2), || [1, 2].iter().any(|&n| state(&c, n).is_some_and(|s| !s.0)));
    assert!(!lost, "arbiter loss cost quorum: {:?} / {:?}", state(&c, 1), state(&c, 2));
    arb.start();
    both_quorate_with_arbiter(&c, "after the arbiter restarted");

    // Kill node 2: node 1 keeps quorum with the arbiter's vote.
    let t0 = Instant::now();
    c.kill(2);
    let took = wait_state(&c, 1, (true, &[1], true), "kill: the survivor keeps quorum", Duration::from_secs(10));
    eprintln!(
        "kill -9 of node 2: node 1 quorate alone via the arbiter, status seen after {took:?} ({:?})",
        t0.elapsed()
    );
    let text = clusterd::render_quorum(&quorum_of(&c, 1).expect("status"));
    assert!(text.contains("Quorate:          Yes"), "{text}");
}

fn rig_kill(sig: &str, pid: u32) {
    let st = std::process::Command::new("kill").arg(sig).arg(pid.to_string()).status().expect("kill runs");
    assert!(st.success(), "kill {sig} {pid}");
}

#[test]
fn four_nodes_split_two_and_two_and_the_arbiter_picks_exactly_one_half() {
    if !rig::require_root_and(&["ip", "iptables", "nsenter"]) {
        return;
    }
    let (mut c, _arb) = arbiter_cluster(4);
    for n in 1..=4 {
        c.start(n);
    }
    for n in 1..=4 {
        wait_state(&c, n, (true, &[1, 2, 3, 4], true), "start", Duration::from_secs(15));
    }
    // Cut {1,2} from {3,4} on the ring links; everyone still reaches the arbiter.
    let t0 = Instant::now();
    for n in [3, 4] {
        let mut rules = Vec::new();
        for peer in [1, 2] {
            for l in 0..2 {
                rules.push(format!(
                    "iptables -A INPUT -s 10.77.{l}.{peer} -j DROP && iptables -A OUTPUT -d 10.77.{l}.{peer} -j DROP"
                ));
            }
        }
        c.sh(n, &rules.join(" && "));
    }
    for n in [1, 2] {
        wait_state(&c, n, (true, &[1, 2], true), "the tie-breaker half keeps quorum", Duration::from_secs(10));
    }
    for n in [3, 4] {
        wait_state(&c, n, (false, &[3, 4], false), "the other half loses quorum", Duration::from_secs(10));
    }
    eprintln!("4 nodes + arbiter, 2/2 split: one half quorate after {:?}", t0.elapsed());
    let r = quorum_of(&c, 1).expect("status");
    assert_eq!((r.status.total_votes, r.status.expected_votes, r.status.quorum), (3, 5, 3), "{r:?}");
}

#[test]
fn three_nodes_with_an_arbiter_give_the_vote_to_the_majority_side() {
    if !rig::require_root_and(&["ip", "iptables", "nsenter"]) {
        return;
    }
    let (mut c, _arb) = arbiter_cluster(3);
    for n in 1..=3 {
        c.start(n);
    }
    for n in 1..=3 {
        wait_state(&c, n, (true, &[1, 2, 3], true), "start", Duration::from_secs(15));
    }
    // Isolate node 1 (the tie-breaker's node) from the ring; it still reaches the arbiter.
    let t0 = Instant::now();
    c.sh(1, "iptables -A INPUT -p udp --dport 5405 -j DROP && iptables -A OUTPUT -p udp --dport 5405 -j DROP");
    for n in [2, 3] {
        wait_state(&c, n, (true, &[2, 3], true), "the majority keeps quorum with the vote", Duration::from_secs(10));
    }
    wait_state(&c, 1, (false, &[1], false), "the isolated node loses quorum", Duration::from_secs(10));
    eprintln!("3 nodes + arbiter, 1/2 split: the majority quorate with the vote after {:?}", t0.elapsed());
    let r = quorum_of(&c, 2).expect("status");
    assert_eq!((r.status.total_votes, r.status.expected_votes, r.status.quorum), (3, 4, 3), "{r:?}");
}
