//! Ordered multicast in a 3-node view over loopback (three nodes in one process, two links
//! each, sealed datagrams): throughput of 1 KiB messages sent as fast as flow control allows,
//! and p50 / p99 latency from broadcast to delivery at every member at a steady rate.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use clusterd::{AppPort, FileConfig, NodeEntry, NodeOptions, Totem};

const NODES: u32 = 3;
const SIZE: usize = 1024;

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).expect("a free port")
}

fn main() {
    // The application side runs here; each node runs on its own thread with its own
    // single-threaded runtime, as each clusterd process does.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(bench(clusterd::Transport::Udp));
    rt.block_on(bench(clusterd::Transport::Quic));
}

async fn bench(transport: clusterd::Transport) {
    let dir = std::env::temp_dir().join(format!("clusterd-bench-{}-{transport:?}", std::process::id()));
    clusterd::gen_certs(&dir, &(1..=NODES).collect::<Vec<_>>()).expect("certificates");
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let mut apps = Vec::new();
    for me in 1..=NODES {
        let config = FileConfig {
            node_id: me,
            cluster_name: "bench".into(),
            transport,
            authkey: Some(dir.join("authkey")),
            tls: Some(clusterd::TlsPaths {
                ca: dir.join("ca.pem"),
                cert: dir.join(format!("node{me}.pem")),
                key: dir.join(format!("node{me}.key")),
            }),
            run_dir: dir.join(format!("run{me}")),
            state_dir: dir.join(format!("state{me}")),
            nodes: (1..=NODES)
                .map(|i| NodeEntry {
                    id: i,
                    name: format!("node{i}"),
                    links: vec![
                        SocketAddr::from(([127, 0, 0, 1], ports[i as usize - 1])),
                        SocketAddr::from(([127, 0, 0, 2], ports[i as usize - 1])),
                    ],
                })
                .collect(),
            totem: Totem::default(),
            quorum: Default::default(),
            executor: Default::default(),
        };
        let (port, side) = AppPort::new(100_000);
        let opts = NodeOptions {
            config_path: None,
            run_dir: config.run_dir.clone(),
            state_dir: config.state_dir.clone(),
            config,
            authkey: vec![1u8; 32],
            tls: Some(
                clusterd::TlsMaterial::load(
                    &dir.join("ca.pem"),
                    &dir.join(format!("node{me}.pem")),
                    &dir.join(format!("node{me}.key")),
                )
                .expect("certificates"),
            ),
        };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(clusterd::run(opts, std::future::pending(), Some(side))).expect("node runs");
        });
        apps.push(port);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !apps.iter().all(|a| a.views.borrow().as_ref().is_some_and(|v| v.members.len() == NODES as usize)) {
        assert!(Instant::now() < deadline, "no view");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("ordered multicast over {transport:?}, 3-node view over loopback, {SIZE}-byte messages, default window");

    // Throughput: every node sends as fast as it can; time until every member delivered all.
    let per_node = 30_000usize;
    let total = per_node * NODES as usize;
    let t0 = Instant::now();
    for a in &apps {
        let tx = a.broadcast.clone();
        tokio::spawn(async move {
            for k in 0..per_node {
                let mut p = vec![0u8; SIZE];
                p[..8].copy_from_slice(&(k as u64).to_le_bytes());
                if tx.send(p).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut counts = vec![0usize; apps.len()];
    while counts.iter().any(|&c| c < total) {
        for (i, a) in apps.iter_mut().enumerate() {
            while let Ok(_d) = a.deliveries.try_recv() {
                counts[i] += 1;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "throughput run stalled at {counts:?}");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "  throughput: {total} messages delivered at every member in {secs:.2} s = {:.0} msg/s ({:.1} MB/s)",
        total as f64 / secs,
        total as f64 * SIZE as f64 / secs / 1e6
    );

    // Latency: node 1 sends at a steady 2000 msg/s; each member timestamps delivery.
    let n = 4000usize;
    let origin = Instant::now();
    let tx = apps[0].broadcast.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(500));
        for _ in 0..n {
            tick.tick().await;
            let mut p = vec![0u8; SIZE];
            p[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
            if tx.send(p).await.is_err() {
                return;
            }
        }
    });
    let mut lat = Vec::with_capacity(n * apps.len());
    let mut got = vec![0usize; apps.len()];
    let t1 = Instant::now();
    while got.iter().any(|&c| c < n) {
        for (i, a) in apps.iter_mut().enumerate() {
            while let Ok(d) = a.deliveries.try_recv() {
                let sent = u64::from_le_bytes(d.payload[..8].try_into().expect("8 bytes"));
                lat.push(origin.elapsed().as_nanos() as u64 - sent);
                got[i] += 1;
            }
        }
        assert!(t1.elapsed() < Duration::from_secs(60), "latency run stalled at {got:?}");
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1e6;
    println!(
        "  latency at 2000 msg/s (broadcast to delivery, all members): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
