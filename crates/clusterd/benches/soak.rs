//! False-eviction soak: three `clusterd` processes in network namespaces, every CPU saturated by
//! busy loops, and a random node SIGSTOPped for 400 ms at random intervals. Prints the number of
//! view changes (0 expected). `SOAK_SECS` sets the length (default 600), `SOAK_TRANSPORT=quic`
//! the transport (default udp). Needs root and `ip`.

#[path = "../tests/it/netrig.rs"]
#[allow(dead_code)]
mod netrig;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn main() {
    if !rig::require_root_and(&["ip", "nsenter"]) {
        println!("soak: skipped (needs root, ip and nsenter)");
        return;
    }
    let bin = std::env::var_os("CLUSTERD_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("current exe");
        exe.parent().and_then(|d| d.parent()).expect("target dir").join("clusterd")
    });
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let transport = match std::env::var("SOAK_TRANSPORT").as_deref() {
        Ok("quic") => clusterd::Transport::Quic,
        _ => clusterd::Transport::Udp,
    };
    let mut c = netrig::NetCluster::with_transport(&bin, 3, clusterd::Totem::default(), transport);
    for n in 1..=3 {
        c.start(n);
    }
    assert!(c.wait_members(&[1, 2, 3], &[1, 2, 3], Duration::from_secs(20)), "no view");
    let views = |c: &netrig::NetCluster| -> u64 {
        (1..=3).filter_map(|n| c.status(n)).map(|s| s.membership.counters.views).sum()
    };
    let before = views(&c);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut burners: Vec<Child> =
        (0..cpus).map(|_| Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("busy loop")).collect();
    let start = Instant::now();
    let mut pauses = 0u64;
    // A small deterministic generator: the soak needs variety, not secrecy.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    while start.elapsed() < Duration::from_secs(secs) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let victim = 1 + (x % 3) as u32;
        if let Some(pid) = c.pid(victim) {
            rig::sh(&format!("kill -STOP {pid}"));
            std::thread::sleep(Duration::from_millis(400));
            rig::sh(&format!("kill -CONT {pid}"));
            pauses += 1;
        }
        std::thread::sleep(Duration::from_millis(200 + (x >> 32) % 1800));
    }
    for b in &mut burners {
        let _ = b.kill();
        let _ = b.wait();
    }
    let changes = views(&c) - before;
    let stalls: u64 = (1..=3).filter_map(|n| c.status(n)).map(|s| s.membership.counters.stalls).sum();
    println!(
        "soak over {transport:?}: {secs} s, {cpus} CPUs saturated, {pauses} SIGSTOP pauses of 400 ms: {changes} view changes (0 expected), {stalls} local stalls detected"
    );
    c.kill(1);
}
