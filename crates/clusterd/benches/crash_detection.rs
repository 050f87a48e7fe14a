//! Crash detection with real `clusterd` processes in network namespaces (two links each):
//! for 2, 3 and 5 nodes at default timers, SIGKILL the highest node and time until node 1
//! reports the new view. Prints min / median / max over several trials. Needs root and `ip`;
//! `BENCH_TRIALS` sets the number of trials (default 5). Build the binary first
//! (`cargo build --release -p clusterd`); `CLUSTERD_BIN` overrides its path.

#[path = "../tests/it/netrig.rs"]
#[allow(dead_code)]
mod netrig;

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    if !rig::require_root_and(&["ip", "nsenter"]) {
        println!("crash_detection: skipped (needs root, ip and nsenter)");
        return;
    }
    let bin = std::env::var_os("CLUSTERD_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/crash_detection-<hash> → target/<profile>/clusterd
        exe.parent().and_then(|d| d.parent()).expect("target dir").join("clusterd")
    });
    assert!(bin.exists(), "build clusterd first: {} is missing", bin.display());
    let trials: usize = std::env::var("BENCH_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    println!(
        "crash detection, clusterd defaults (token 650 ms, join timeout 100 ms), {trials} trials, binary {}",
        bin.display()
    );
    for (transport, nodes) in [2u32, 3, 5]
        .into_iter()
        .map(|n| (clusterd::Transport::Udp, n))
        .chain([2u32, 3, 5].into_iter().map(|n| (clusterd::Transport::Quic, n)))
    {
        let mut times = Vec::new();
        for _ in 0..trials {
            let mut c = netrig::NetCluster::with_transport(&bin, nodes, clusterd::Totem::default(), transport);
            for n in 1..=nodes {
                c.start(n);
            }
            let all: Vec<u32> = (1..=nodes).collect();
            assert!(c.wait_members(&all, &all, Duration::from_secs(20)), "no view:\n{}", c.log(1));
            // Let the ring run a moment, then kill the highest node.
            std::thread::sleep(Duration::from_millis(300));
            let survivors: Vec<u32> = (1..nodes).collect();
            let t0 = Instant::now();
            c.kill(nodes);
            loop {
                if c.members(1).as_deref() == Some(&survivors[..]) {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(30), "not detected:\n{}", c.log(1));
                std::thread::sleep(Duration::from_millis(2));
            }
            times.push(t0.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {transport:?} {nodes} nodes: min {:.0} ms / median {:.0} ms / max {:.0} ms   (Corosync 3 defaults measured: 2 nodes 6190 ms, 3 nodes 7900 ms median)",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}
