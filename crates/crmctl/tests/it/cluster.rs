//! A live three-node cluster of real `clusterd` processes on loopback (each with its own
//! agent state directory), driven only through the crmctl binary: create a Dummy resource and
//! wait for it to run, standby its node, move, ban, clear, disable and delete it; every step
//! checked against the agent's state files, which say where it really runs.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clusterd::control::{self, Request, Response};
use clusterd::{FileConfig, NodeEntry, Transport};

use crate::{crmctl, path_str, stderr, stdout};

const NODES: u32 = 3;
const DUMMY: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";

/// The clusterd built next to crmctl (`cargo build --workspace --bins` builds it).
fn clusterd_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_crmctl")).with_file_name("clusterd")
}

/// The daemons; killed (and reaped) on drop, also when the test fails.
struct Cluster {
    procs: Vec<Child>,
    dir: rig::ScratchDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Cluster {
    fn start() -> Cluster {
        let dir = rig::ScratchDir::new();
        let d = dir.path();
        std::fs::write(d.join("authkey"), [7u8; 64]).expect("authkey");
        clusterd::gen_certs(d, &(1..=NODES).collect::<Vec<_>>()).expect("certificates");
        let ports: Vec<u16> = (0..NODES)
            .map(|_| UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port())
            .collect();
        let mut c = Cluster { procs: Vec::new(), dir };
        for me in 1..=NODES {
            let d = c.dir.path();
            let cfg = FileConfig {
                node_id: me,
                cluster_name: "crmctl".into(),
                transport: Transport::Udp,
                authkey: Some(d.join("authkey")),
                tls: Some(clusterd::TlsPaths {
                    ca: d.join("ca.pem"),
                    cert: d.join(format!("node{me}.pem")),
                    key: d.join(format!("node{me}.key")),
                }),
                run_dir: d.join(format!("run{me}")),
                state_dir: d.join(format!("state{me}")),
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
                totem: Default::default(),
                quorum: Default::default(),
                executor: clusterd::ExecutorSection { rsctmp: d.join(format!("rsctmp{me}")), ..Default::default() },
            };
            let conf = d.join(format!("clusterd{me}.toml"));
            std::fs::write(&conf, cfg.to_toml()).expect("config");
            let log = std::fs::File::create(d.join(format!("node{me}.log"))).expect("log");
            let child = Command::new(clusterd_bin())
                .arg("--config")
                .arg(&conf)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn clusterd");
            c.procs.push(child);
        }
        c
    }

    fn run_dir(&self, node: u32) -> PathBuf {
        self.dir.path().join(format!("run{node}"))
    }

    /// Nodes whose Dummy state file says `rsc` runs there.
    fn running(&self, rsc: &str) -> Vec<u32> {
        (1..=NODES)
            .filter(|i| self.dir.path().join(format!("rsctmp{i}")).join(format!("Dummy-{rsc}.state")).exists())
            .collect()
    }

    fn logs(&self) -> String {
        (1..=NODES)
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("node{i}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                format!("--- node{i} (last lines)\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// crmctl against node `node`'s daemon; must succeed.
    fn ok(&self, node: u32, args: &[&str]) -> String {
        let run = self.run_dir(node);
        let mut a = args.to_vec();
        a.extend(["--run-dir", path_str(&run)]);
        let out = crmctl(&a);
        assert!(out.status.success(), "crmctl {args:?} failed: {}\n{}", stderr(&out), self.logs());
        stdout(&out)
    }

    fn epoch(&self, node: u32) -> u64 {
        match control::query(&self.run_dir(node), &Request::CibQuery) {
            Ok(Response::Cib(r)) => r.version.1,
            other => panic!("no CIB: {other:?}"),
        }
    }
}

#[test]
fn an_admin_creates_moves_bans_stops_and_deletes_a_resource_on_a_live_cluster() {
    if !rig::require("resource-agents (ocf:heartbeat:Dummy)", Path::new(DUMMY).exists())
        || !rig::require("clusterd built next to crmctl (cargo build --workspace --bins)", clusterd_bin().exists())
    {
        return;
    }
    let c = Cluster::start();
    // Every node is up, the CIB synchronized and the members recorded by the DC.
    let up = rig::wait_until(Duration::from_secs(30), || {
        (1..=NODES).all(|n| match control::query(&c.run_dir(n), &Request::CibQuery) {
            Ok(Response::Cib(r)) => r.synced && r.quorate && r.xml.matches(r#"crmd="online""#).count() == 3,
            _ => false,
        })
    });
    assert!(up, "the cluster never formed\n{}", c.logs());

    // The nodes share this machine and cannot be fenced.
    c.ok(1, &["property", "set", "stonith-enabled=false"]);
    assert!(c.ok(2, &["property", "config"]).contains("fencing-enabled=false"));

    // Writers racing each other: each read-modify-write is guarded by the epoch it read, and
    // a refused one reads again, so no change is lost.
    let racers: Vec<_> = (1..=4u32)
        .map(|i| {
            let run = c.run_dir(i % NODES + 1);
            std::thread::spawn(move || {
                crmctl(&["node", "attribute", "node1", &format!("rack{i}=r{i}"), "--run-dir", path_str(&run)])
            })
        })
        .collect();
    for r in racers {
        let out = r.join().expect("racer");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let attrs = c.ok(3, &["node", "attribute", "node1"]);
    for i in 1..=4 {
        assert!(attrs.contains(&format!("rack{i}=r{i}")), "lost update of rack{i}: {attrs}");
    }

    // A dry run on the live cluster shows the start and changes nothing.
    let before = c.epoch(1);
    let plan =
        c.ok(1, &["resource", "create", "d1", "ocf:heartbeat:Dummy", "op", "monitor", "interval=1s", "--dry-run"]);
    assert!(plan.contains("Start") && plan.contains("d1"), "{plan}");
    assert_eq!(c.epoch(1), before);
    assert!(c.running("d1").is_empty());

    // A stale --if-version is refused with 103.
    let run2 = c.run_dir(2);
    let stale =
        crmctl(&["resource", "create", "d1", "ocf:heartbeat:Dummy", "--if-version", "0", "--run-dir", path_str(&run2)]);
    assert_eq!(stale.status.code(), Some(103), "{}", stderr(&stale));

    let out =
        c.ok(2, &["resource", "create", "d1", "ocf:heartbeat:Dummy", "op", "monitor", "interval=1s", "--wait=60s"]);
    assert!(out.contains("settled"), "{out}");
    let on = c.running("d1");
    assert_eq!(on.len(), 1, "d1 runs on exactly one node: {on:?}\n{}", c.logs());
    let first = on[0];
    assert!(c.ok(3, &["resource", "list"]).contains(&format!("Started node{first}")));
    assert!(c.ok(3, &["resource", "config", "d1"]).contains("monitor interval=1s"));

    // Standby empties the node; the resource runs elsewhere.
    c.ok(3, &["node", "drain", &format!("node{first}"), "--timeout", "60s"]);
    let on = c.running("d1");
    assert!(on.len() == 1 && on[0] != first, "after standby of node{first}: {on:?}\n{}", c.logs());
    assert!(c.ok(1, &["node", "list"]).contains("standby"));
    c.ok(1, &["node", "unstandby", &format!("node{first}"), "--wait=60s"]);

    // A move is an expiring intent: it waits for the resource to arrive, then drops its
    // constraint unless that would send the resource back.
    let here = c.running("d1")[0];
    let target = (1..=NODES).find(|n| *n != here).expect("another node");
    let out = c.ok(1, &["resource", "move", "d1", &format!("node{target}")]);
    assert_eq!(c.running("d1"), [target], "{}", c.logs());
    let kept = c.ok(2, &["constraint", "list"]).contains("cli-prefer-d1");
    assert_eq!(kept, out.contains("kept cli-prefer-d1"), "{out}");
    assert!(kept || out.contains("removed cli-prefer-d1"), "{out}");
    c.ok(2, &["resource", "clear", "d1", "--wait"]);
    assert_eq!(c.running("d1"), [target], "it stays where it moved");

    // With --keep-constraint the preference stays; a ban from that node lifts it, and the
    // resource leaves.
    let target = (1..=NODES).find(|n| *n != target).expect("another node");
    c.ok(1, &["resource", "move", "d1", &format!("node{target}"), "--keep-constraint", "--wait=60s"]);
    assert_eq!(c.running("d1"), [target], "{}", c.logs());
    assert!(c.ok(2, &["constraint", "list"]).contains("cli-prefer-d1"));
    c.ok(2, &["resource", "ban", "d1", &format!("node{target}"), "--wait=60s"]);
    let on = c.running("d1");
    assert!(on.len() == 1 && on[0] != target, "after the ban from node{target}: {on:?}");
    let constraints = c.ok(3, &["constraint", "list"]);
    assert!(constraints.contains(&format!("cli-ban-d1-on-node{target}")), "{constraints}");
    assert!(!constraints.contains("cli-prefer-d1"), "the move to the banned node was lifted: {constraints}");
    c.ok(3, &["resource", "clear", "d1", "--wait=60s"]);
    assert!(!c.ok(3, &["constraint", "list"]).contains("cli-"));
    assert_eq!(c.running("d1").len(), 1);

    // A failure behind the cluster's back is recovered and counted; cleanup forgets it.
    let host = c.running("d1")[0];
    std::fs::remove_file(c.dir.path().join(format!("rsctmp{host}")).join("Dummy-d1.state")).expect("state file");
    let counted = rig::wait_until(Duration::from_secs(30), || {
        c.ok(1, &["resource", "failcount", "show", "d1"]).contains(&format!("d1\tmonitor_1000\ton node{host}:\t1"))
    });
    assert!(counted, "the monitor failure was never counted\n{}", c.logs());
    c.ok(3, &["resource", "cleanup", "d1", "--wait=60s"]);
    assert!(c.ok(1, &["resource", "failcount", "d1"]).contains("no failures recorded"));
    assert_eq!(c.running("d1").len(), 1);

    // Restart stops and starts it again, waiting for each.
    let out = c.ok(2, &["resource", "restart", "d1"]);
    assert!(out.contains("d1 is stopped") && out.contains("d1 runs on"), "{out}");
    assert_eq!(c.running("d1").len(), 1);

    // --wait: 124 when the cluster does not settle in time (a start that takes 4s), 1 when it settles elsewhere than
    // asked (an agent no node has cannot run anywhere).
    let slow = crmctl(&[
        "resource",
        "create",
        "slow",
        "ocf:heartbeat:Delay",
        "startdelay=4",
        "stopdelay=0",
        "mondelay=0",
        "--wait=1s",
        "--run-dir",
        path_str(&c.run_dir(1)),
    ]);
    assert_eq!(slow.status.code(), Some(124), "{}", stderr(&slow));
    assert!(stderr(&slow).contains("not settled within 1s"), "{}", stderr(&slow));
    let nowhere = crmctl(&[
        "resource",
        "create",
        "ghost",
        "ocf:acme:Missing",
        "--wait=60s",
        "--run-dir",
        path_str(&c.run_dir(2)),
    ]);
    assert_eq!(nowhere.status.code(), Some(1), "{}", stderr(&nowhere));
    assert!(stderr(&nowhere).contains("the cluster settled, but ghost runs nowhere"), "{}", stderr(&nowhere));
    c.ok(3, &["resource", "delete", "slow", "ghost", "--wait=60s"]);

    // A dry run gates on disruption.
    let run1 = c.run_dir(1);
    let gate =
        crmctl(&["resource", "disable", "d1", "--dry-run", "--fail-on-disruption", "--run-dir", path_str(&run1)]);
    assert_eq!(gate.status.code(), Some(107), "{}", stderr(&gate));
    assert!(stdout(&gate).contains("risk: 1 resource stop"), "{}", stdout(&gate));
    assert_eq!(c.running("d1").len(), 1);

    // Delete stops it first, waits, then removes it; a second resource is stopped by disable.
    c.ok(1, &["resource", "create", "d2", "Dummy", "--wait=60s"]);
    assert_eq!(c.running("d2").len(), 1);
    c.ok(1, &["resource", "disable", "d2", "--wait=60s"]);
    assert!(c.running("d2").is_empty(), "{}", c.logs());
    let out = c.ok(2, &["resource", "delete", "d1", "d2", "--wait=60s"]);
    assert!(out.contains("stopping d1 before deleting"), "{out}");
    assert!(c.running("d1").is_empty(), "{}", c.logs());
    let gone = crmctl(&["resource", "config", "d1", "--run-dir", path_str(&c.run_dir(1))]);
    assert_eq!(gone.status.code(), Some(105));
}
