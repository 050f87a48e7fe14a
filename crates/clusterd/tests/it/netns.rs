//! Real `clusterd` processes in network namespaces with two links each: kill -9, an iptables
//! partition and its healing, and a link taken down without any view change.

use std::path::Path;
use std::time::{Duration, Instant};

use clusterd::Transport;

use crate::netrig::NetCluster;

fn rig_available() -> bool {
    rig::require_root_and(&["ip", "iptables", "nsenter"])
}

const TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Quic];

fn cluster(nodes: u32, transport: Transport) -> NetCluster {
    let mut c = NetCluster::with_transport(
        Path::new(env!("CARGO_BIN_EXE_clusterd")),
        nodes,
        clusterd::Totem::default(),
        transport,
    );
    for n in 1..=nodes {
        c.start(n);
    }
    let all: Vec<u32> = (1..=nodes).collect();
    assert!(c.wait_members(&all, &all, Duration::from_secs(15)), "no common view of {all:?}; node1 log:\n{}", c.log(1));
    c
}

#[test]
fn kill_9_of_a_node_is_detected_and_the_survivors_reform_within_a_second_or_so() {
    if !rig_available() {
        return;
    }
    for transport in TRANSPORTS {
        kill_9_of_a_node_is_detected_and_the_survivors_reform_within_a_second_or_so_over(transport);
    }
}

fn kill_9_of_a_node_is_detected_and_the_survivors_reform_within_a_second_or_so_over(transport: Transport) {
    let mut c = cluster(3, transport);
    let t0 = Instant::now();
    c.kill(3);
    assert!(c.wait_members(&[1, 2], &[1, 2], Duration::from_secs(10)), "survivors did not re-form:\n{}", c.log(1));
    let took = t0.elapsed();
    eprintln!("clusterd over {transport:?} in namespaces: kill -9 of node 3 detected, new view after {took:?}");
    let status = c.status(1).expect("status");
    let view = status.last_view.expect("a view");
    assert!(view.departed.iter().any(|(n, _)| n.0 == 3), "{view:?}");
    let log = c.log(1);
    assert!(log.contains("node 3 failed"), "the log says why in plain words:\n{log}");
    // Restarted (with its state directory), it joins again.
    let t1 = Instant::now();
    c.start(3);
    assert!(c.wait_members(&[1, 2, 3], &[1, 2, 3], Duration::from_secs(15)), "node 3 rejoins:\n{}", c.log(3));
    eprintln!("clusterd over {transport:?}: restarted node 3 is a member again after {:?}", t1.elapsed());
}

#[test]
fn an_iptables_partition_splits_the_view_and_healing_merges_it() {
    if !rig_available() {
        return;
    }
    for transport in TRANSPORTS {
        an_iptables_partition_splits_the_view_and_healing_merges_it_over(transport);
    }
}

fn an_iptables_partition_splits_the_view_and_healing_merges_it_over(transport: Transport) {
    let c = cluster(3, transport);
    c.sh(3, "iptables -A INPUT -p udp -j DROP && iptables -A OUTPUT -p udp -j DROP");
    assert!(c.wait_members(&[1, 2], &[1, 2], Duration::from_secs(10)), "majority side:\n{}", c.log(1));
    assert!(c.wait_members(&[3], &[3], Duration::from_secs(10)), "isolated side:\n{}", c.log(3));
    c.sh(3, "iptables -F");
    assert!(c.wait_members(&[1, 2, 3], &[1, 2, 3], Duration::from_secs(15)), "merge after healing:\n{}", c.log(1));
}

#[test]
fn a_link_taken_down_changes_no_view() {
    if !rig_available() {
        return;
    }
    for transport in TRANSPORTS {
        a_link_taken_down_changes_no_view_over(transport);
    }
}

fn a_link_taken_down_changes_no_view_over(transport: Transport) {
    let c = cluster(3, transport);
    // Redundancy first: every node hears every peer on both links.
    let all_links_up = || {
        (1..=3).all(|n| {
            c.status(n).is_some_and(|s| {
                s.membership.links.len() == 2 && s.membership.links.iter().all(|(_, l)| l.iter().all(|l| l.up))
            })
        })
    };
    assert!(rig::wait_until(Duration::from_secs(10), all_links_up), "links never all up:\n{}", c.log(1));
    let views_before = c.status(1).expect("status").membership.counters.views;
    c.sh(2, "ip link set l0 down");
    let link_down = || {
        c.status(1).is_some_and(|s| {
            s.membership.links.iter().any(|(p, l)| p.0 == 2 && !l[0].up)
                && s.membership.links.iter().any(|(p, l)| p.0 == 2 && l[1].up)
        })
    };
    assert!(rig::wait_until(Duration::from_secs(5), link_down), "node 1 reports link0 to node 2 down");
    // Watch for a view change for two seconds: none may happen.
    let changed = rig::wait_until(Duration::from_secs(2), || {
        c.status(1).is_none_or(|s| s.membership.counters.views != views_before)
    });
    assert!(!changed, "a link failure changed the view:\n{}", c.log(1));
    assert_eq!(c.members(2).as_deref(), Some(&[1, 2, 3][..]));
    c.sh(2, "ip link set l0 up");
    let link_up = || c.status(1).is_some_and(|s| s.membership.links.iter().all(|(p, l)| p.0 != 2 || l[0].up));
    assert!(rig::wait_until(Duration::from_secs(5), link_up), "link0 comes back");
}

/// Busy loops on every CPU for as long as the value lives.
struct CpuBurners(Vec<std::process::Child>);

impl CpuBurners {
    fn start() -> CpuBurners {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        CpuBurners(
            (0..cpus)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("spawn a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for CpuBurners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn sigstop_pauses_of_400ms_under_cpu_saturation_evict_nobody() {
    if !rig_available() {
        return;
    }
    for transport in TRANSPORTS {
        sigstop_pauses_of_400ms_under_cpu_saturation_evict_nobody_over(transport);
    }
}

fn sigstop_pauses_of_400ms_under_cpu_saturation_evict_nobody_over(transport: Transport) {
    // Alone on the machine: the load under test is the one this test makes.
    let mut c = NetCluster::alone(Path::new(env!("CARGO_BIN_EXE_clusterd")), 3, clusterd::Totem::default(), transport);
    for n in 1..=3 {
        c.start(n);
    }
    assert!(
        c.wait_members(&[1, 2, 3], &[1, 2, 3], Duration::from_secs(15)),
        "no common view; node1 log:\n{}",
        c.log(1)
    );
    let views_before: Vec<u64> = (1..=3).map(|n| c.status(n).expect("status").membership.counters.views).collect();
    let _burn = CpuBurners::start();
    for round in 0..6u32 {
        let victim = 1 + round % 3;
        let pid = c.pid(victim).expect("running").to_string();
        rig::sh(&format!("kill -STOP {pid}"));
        // The pause itself is the event under test: a fixed length by design.
        std::thread::sleep(Duration::from_millis(400));
        rig::sh(&format!("kill -CONT {pid}"));
        // Let the ring settle before the next pause.
        let views_now = || (1..=3).all(|n| c.status(n).is_some());
        assert!(rig::wait_until(Duration::from_secs(5), views_now), "every node answers after round {round}");
    }
    let views_after: Vec<u64> = (1..=3).map(|n| c.status(n).expect("status").membership.counters.views).collect();
    assert_eq!(views_before, views_after, "no view change; node1 log:\n{}", c.log(1));
    let stalls: u64 = (1..=3).map(|n| c.status(n).expect("status").membership.counters.stalls).sum();
    assert!(stalls >= 6, "each paused node noticed its own stall ({stalls} stalls seen)");
    assert_eq!(c.members(1).as_deref(), Some(&[1, 2, 3][..]));
}
