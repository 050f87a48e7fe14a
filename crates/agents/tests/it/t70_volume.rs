//! The replicated-volume agent against real `blockrepld` daemons: both nodes of a pair inside
//! one network namespace (loopback link, distinct control sockets, tmpfs backing files), each
//! started, promoted, demoted and stopped only through the agent; data written through one
//! node's NBD frontend (qemu-io) is read back on the other after the roles swap.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agents::testing::{Case, conformance};
use agents::{Action, OcfRc, OpResult, Request, ResourceAgent, execute};
use blockrepl::control::{self, Request as Ctl};

use crate::support::{agent, in_netns};

const SIZE: u64 = 16 << 20;
const PORT: u16 = 7811;

/// The `blockrepld` built next to this test binary (`cargo build --workspace --bins`).
fn blockrepld() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/it-<hash> -> target/<profile>/blockrepld
    exe.parent().and_then(Path::parent).map(|d| d.join("blockrepld")).expect("target dir")
}

fn ready() -> bool {
    rig::require_root_and(&["ip", "qemu-io"])
        && rig::require(
            "blockrepld built next to the tests (cargo build -p blockrepld, or --workspace --bins)",
            blockrepld().is_file(),
        )
}

/// Pids of processes whose command line names `config` (the daemons of one node).
fn daemons_of(config: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| OsStr::from_bytes(a) == config.as_os_str()))
        })
        .filter(|pid| rig::process_alive(*pid as u32))
        .collect()
}

/// One node's files: its configuration, control socket and NBD socket.
struct Node {
    config: PathBuf,
    socket: PathBuf,
    nbd: PathBuf,
}

/// The volume's two nodes in one namespace; on drop, any daemon still running is killed
/// (before the namespace and the scratch dir go).
struct Rig {
    nodes: Vec<Node>,
    ns: rig::Netns,
    _dir: rig::ScratchDir,
}

impl Rig {
    /// Two nodes created with the same initial generation: in sync from the first connect.
    fn new() -> Rig {
        Rig::build(false)
    }

    /// Node 2 starts with an empty copy (no generation): the first connect runs a full resync
    /// from node 1 at 4 MiB/s (about 4 s for the 16 MiB volume).
    fn with_fresh_node2() -> Rig {
        Rig::build(true)
    }

    fn build(fresh_node2: bool) -> Rig {
        rig::sweep_stale_namespaces();
        let ns = rig::Netns::new();
        let dir = rig::ScratchDir::new_in(Path::new("/dev/shm"));
        let d = dir.path();
        std::fs::write(d.join("psk"), b"volume-agent-test-key-0123456789").unwrap();
        let q = |p: PathBuf| serde_quote(&p.display().to_string());
        let nodes = (1..=2u32)
            .map(|n| {
                let node = Node {
                    config: d.join(format!("node{n}.toml")),
                    socket: d.join(format!("run{n}/r0.sock")),
                    nbd: d.join(format!("nbd{n}")),
                };
                let link = if n == 1 {
                    format!("listen = \"127.0.0.1:{PORT}\"")
                } else {
                    format!("peer_addr = \"127.0.0.1:{PORT}\"")
                };
                let generation = if fresh_node2 && n == 2 { "" } else { "initial_generation = \"abc\"\n" };
                let rate = if fresh_node2 {
                    "\n[replication]\nresync_rate_max_bytes_per_sec = 4194304\nresync_rate_min_bytes_per_sec = 1048576\n"
                } else {
                    ""
                };
                let text = format!(
                    "name = \"r0\"\nnode_id = {n}\npeer_id = {}\nbacking = {}\nstate_dir = {}\npsk_file = {}\n\
                     control_socket = {}\ncreate_size_bytes = {SIZE}\n{generation}\n\
                     [link]\n{link}\n\n[frontends]\nnbd_unix_socket = {}\n{rate}",
                    3 - n,
                    q(d.join(format!("disk{n}"))),
                    q(d.join(format!("state{n}"))),
                    q(d.join("psk")),
                    q(node.socket.clone()),
                    q(node.nbd.clone()),
                );
                std::fs::write(&node.config, text).unwrap();
                node
            })
            .collect();
        Rig { nodes, ns, _dir: dir }
    }

    fn params(&self, n: usize) -> BTreeMap<String, String> {
        agents::testing::kv(&[
            ("config", self.nodes[n].config.to_str().unwrap()),
            ("blockrepld", blockrepld().to_str().unwrap()),
        ])
    }

    /// Runs one action on node `n` (inside the namespace: a daemon started by it lives there).
    fn op(&self, vol: &dyn ResourceAgent, n: usize, action: Action) -> OpResult {
        let req = Request::new(action, "vol", self.params(n)).timeout(Duration::from_secs(20));
        let r = in_netns(&self.ns, || execute(vol, &req));
        eprintln!("node{} {r} promotion={:?}", n + 1, r.promotion);
        r
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for n in &self.nodes {
            for pid in daemons_of(&n.config) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// A TOML basic string.
fn serde_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn volume_agent_passes_the_conformance_suite_on_a_lone_node() {
    if !ready() {
        return;
    }
    let rig = Rig::new();
    let vol = agent("native:builtin:volume");
    let cfg = rig.nodes[0].config.to_str().unwrap().to_owned();
    let bin = blockrepld().to_str().unwrap().to_owned();
    let no_socket = rig._dir.path().join("no-socket.toml");
    std::fs::write(&no_socket, "name = \"r0\"\n").unwrap();
    let rejected = rig._dir.path().join("rejected.toml");
    std::fs::write(&rejected, "control_socket = \"/run/r0-rejected.sock\"\ncolour = \"blue\"\n").unwrap();
    let case = Case::new("vol", &[("config", &cfg), ("blockrepld", &bin)])
        .bad("config file missing on this node", &[("config", "/nonexistent/r0.toml")], &[OcfRc::ErrInstalled])
        .bad("relative config path", &[("config", "r0.toml")], &[OcfRc::ErrConfigured])
        .bad("config without control_socket", &[("config", no_socket.to_str().unwrap())], &[OcfRc::ErrConfigured])
        .bad("config blockrepld rejects", &[("config", rejected.to_str().unwrap())], &[OcfRc::ErrConfigured])
        .bad("blockrepld binary missing", &[("blockrepld", "/nonexistent/blockrepld")], &[OcfRc::ErrInstalled]);
    let report = in_netns(&rig.ns, || conformance(vol.as_ref(), "native volume", &case));
    eprintln!("native volume:\n{report}");
    report.assert_passed();
    assert!(daemons_of(&rig.nodes[0].config).is_empty(), "a daemon was left behind");
    // Errors name the field.
    let r = execute(
        vol.as_ref(),
        &Request::new(Action::Validate, "vol", agents::testing::kv(&[("config", no_socket.to_str().unwrap())])),
    );
    assert!(r.reason.as_deref().unwrap_or_default().contains("parameter `config`"), "{r}");
}

#[test]
fn volume_agent_runs_a_pair_as_a_promotable_clone() {
    if !ready() {
        return;
    }
    let rig = Rig::new();
    let vol = agent("native:builtin:volume");
    let vol = vol.as_ref();
    let t0 = std::time::Instant::now();

    for n in 0..2 {
        assert_eq!(rig.op(vol, n, Action::Monitor).rc, OcfRc::NotRunning, "probe before start");
        assert_eq!(rig.op(vol, n, Action::Start).rc, OcfRc::Success);
        assert_eq!(daemons_of(&rig.nodes[n].config).len(), 1, "one daemon per node");
    }
    assert_eq!(rig.op(vol, 0, Action::Start).rc, OcfRc::Success, "start is idempotent");
    assert_eq!(daemons_of(&rig.nodes[0].config).len(), 1, "a second start spawns nothing");

    // Connected and in sync: both Secondary with the connected score.
    let synced = rig::wait_until(Duration::from_secs(20), || {
        (0..2).all(|n| {
            let r = rig.op(vol, n, Action::Monitor);
            r.rc == OcfRc::Success && r.promotion == Some(Some(10_000))
        })
    });
    assert!(synced, "the pair did not report connected UpToDate copies");

    // Alone (link dropped by the operator): still promotable, with the lower score; start
    // reconnects.
    let ctl = |n: usize, req: Ctl| control::call(&rig.nodes[n].socket, &req).expect("control call");
    ctl(1, Ctl::Disconnect);
    let r = rig.op(vol, 1, Action::Monitor);
    assert_eq!((r.rc, r.promotion), (OcfRc::Success, Some(Some(1_000))));
    assert_eq!(rig.op(vol, 1, Action::Start).rc, OcfRc::Success);
    assert!(
        rig::wait_until(Duration::from_secs(20), || rig.op(vol, 1, Action::Monitor).promotion == Some(Some(10_000))),
        "start did not reconnect a StandAlone node"
    );

    // Promote node 1; node 2 cannot be promoted next to it (never forced).
    let r = rig.op(vol, 0, Action::Promote);
    assert_eq!((r.rc, r.promotion), (OcfRc::Success, Some(Some(10_000))));
    assert_eq!(rig.op(vol, 0, Action::Monitor).rc, OcfRc::RunningPromoted);
    assert_eq!(rig.op(vol, 0, Action::Promote).rc, OcfRc::Success, "promote is idempotent");
    assert_eq!(rig.op(vol, 1, Action::Monitor).rc, OcfRc::Success);
    let r = rig.op(vol, 1, Action::Promote);
    assert_eq!(r.rc, OcfRc::ErrGeneric, "a second Primary must be refused");
    assert!(r.reason.as_deref().unwrap_or_default().contains("Primary"), "{r}");
    assert_eq!(rig.op(vol, 1, Action::Monitor).rc, OcfRc::Success);

    // Data written on node 1 …
    let (ok, text) = rig::qemu::qemu_io(&rig.nodes[0].nbd, &["write -P 0x5a 0 1M", "write -P 0xc3 8M 64k", "flush"]);
    assert!(ok, "{text}");

    // … swap the roles …
    assert_eq!(rig.op(vol, 0, Action::Demote).rc, OcfRc::Success);
    assert_eq!(rig.op(vol, 0, Action::Monitor).rc, OcfRc::Success);
    assert_eq!(rig.op(vol, 1, Action::Promote).rc, OcfRc::Success);
    assert_eq!(rig.op(vol, 1, Action::Monitor).rc, OcfRc::RunningPromoted);

    // … is there on node 2.
    let (ok, text) =
        rig::qemu::qemu_io(&rig.nodes[1].nbd, &["read -P 0x5a 0 1M", "read -P 0xc3 8M 64k", "read -P 0 1M 4k"]);
    assert!(ok, "{text}");

    // Stop the Primary directly (it demotes first), then the other: daemons gone, scores withdrawn.
    for n in [1, 0] {
        let r = rig.op(vol, n, Action::Stop);
        assert_eq!((r.rc, r.promotion), (OcfRc::Success, Some(None)));
        assert!(daemons_of(&rig.nodes[n].config).is_empty(), "node{} daemon still runs", n + 1);
        assert_eq!(rig.op(vol, n, Action::Monitor).rc, OcfRc::NotRunning);
        assert_eq!(rig.op(vol, n, Action::Stop).rc, OcfRc::Success, "stop is idempotent");
    }
    eprintln!("pair lifecycle took {:.2}s", t0.elapsed().as_secs_f64());
}

#[test]
fn volume_agent_recovers_from_a_crashed_daemon() {
    if !ready() {
        return;
    }
    let rig = Rig::new();
    let vol = agent("native:builtin:volume");
    let vol = vol.as_ref();
    assert_eq!(rig.op(vol, 0, Action::Start).rc, OcfRc::Success);
    let pids = daemons_of(&rig.nodes[0].config);
    assert_eq!(pids.len(), 1);
    // A stopped (SIGSTOP) daemon holds its socket but answers nothing: monitor must not wait
    // past its deadline, and stop must kill it.
    let pid = nix::unistd::Pid::from_raw(pids[0]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let req = Request::new(Action::Monitor, "vol", rig.params(0)).timeout(Duration::from_millis(500));
    let r = execute(vol, &req);
    assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
    assert!(r.elapsed < Duration::from_secs(2), "monitor ignored its deadline: {r}");
    let r = rig.op(vol, 0, Action::Stop);
    assert_eq!(r.rc, OcfRc::Success, "{r}");
    assert!(daemons_of(&rig.nodes[0].config).is_empty(), "the hung daemon survived stop");
    // Killed outright: a stale socket file is "not running", and start brings it back.
    assert_eq!(rig.op(vol, 0, Action::Start).rc, OcfRc::Success);
    for pid in daemons_of(&rig.nodes[0].config) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    assert!(rig::wait_until(Duration::from_secs(5), || daemons_of(&rig.nodes[0].config).is_empty()));
    assert_eq!(rig.op(vol, 0, Action::Monitor).rc, OcfRc::NotRunning);
    assert_eq!(rig.op(vol, 0, Action::Start).rc, OcfRc::Success);
    assert_eq!(rig.op(vol, 0, Action::Monitor).rc, OcfRc::Success);
    assert_eq!(rig.op(vol, 0, Action::Stop).rc, OcfRc::Success);
}

#[test]
fn volume_agent_control_socket_parameter_overrides_the_file() {
    if !ready() {
        return;
    }
    let rig = Rig::new();
    let vol = agent("native:builtin:volume");
    let vol = vol.as_ref();
    let over = rig._dir.path().join("override/ctl.sock");
    let mut params = rig.params(0);
    params.insert("control_socket".into(), over.display().to_string());
    let run = |action| {
        let req = Request::new(action, "vol", params.clone()).timeout(Duration::from_secs(20));
        in_netns(&rig.ns, || execute(vol, &req))
    };
    assert_eq!(run(Action::Validate).rc, OcfRc::Success);
    assert_eq!(run(Action::Start).rc, OcfRc::Success);
    assert!(control::call(&over, &Ctl::Status).is_ok(), "the daemon does not answer on the parameter's socket");
    assert!(!rig.nodes[0].socket.exists(), "the daemon bound the file's socket");
    assert_eq!(run(Action::Monitor).rc, OcfRc::Success);
    assert_eq!(run(Action::Stop).rc, OcfRc::Success);
    assert!(daemons_of(&rig.nodes[0].config).is_empty());
    assert_eq!(run(Action::Monitor).rc, OcfRc::NotRunning);
}

#[test]
fn volume_agent_withholds_promotion_from_a_copy_being_resynced() {
    if !ready() {
        return;
    }
    let rig = Rig::with_fresh_node2();
    let vol = agent("native:builtin:volume");
    let vol = vol.as_ref();
    let disk = |n: usize| match control::call(&rig.nodes[n].socket, &Ctl::Status) {
        Ok(control::Response::Ok { status, .. }) => Some(status.disk),
        _ => None,
    };
    // The empty copy alone: nothing to promote.
    let r = rig.op(vol, 1, Action::Start);
    assert_eq!((r.rc, r.promotion), (OcfRc::Success, Some(None)), "{r}");
    assert_ne!(disk(1), Some(blockrepl::DiskState::UpToDate));
    let r = rig.op(vol, 1, Action::Promote);
    assert_eq!(r.rc, OcfRc::ErrGeneric, "an empty copy must not be promoted: {r}");
    assert_eq!(rig.op(vol, 1, Action::Monitor).rc, OcfRc::Success, "a refused promotion leaves it Secondary");

    // With its peer: SyncTarget, Inconsistent, still no score; the source scores 10000.
    assert_eq!(rig.op(vol, 0, Action::Start).rc, OcfRc::Success);
    let seen_syncing = rig::wait_until(Duration::from_secs(10), || {
        disk(1) == Some(blockrepl::DiskState::Inconsistent)
            && rig.op(vol, 1, Action::Monitor).promotion == Some(None)
            && rig.op(vol, 0, Action::Monitor).promotion == Some(Some(10_000))
    });
    assert!(seen_syncing, "the resync target was not seen Inconsistent without a score");

    // Once in sync both copies are promotable, and the former target can be promoted.
    assert!(
        rig::wait_until(Duration::from_secs(30), || rig.op(vol, 1, Action::Monitor).promotion == Some(Some(10_000))),
        "the resync did not finish"
    );
    assert_eq!(rig.op(vol, 1, Action::Promote).rc, OcfRc::Success);
    assert_eq!(rig.op(vol, 1, Action::Monitor).rc, OcfRc::RunningPromoted);
    for n in [1, 0] {
        assert_eq!(rig.op(vol, n, Action::Stop).rc, OcfRc::Success);
        assert!(daemons_of(&rig.nodes[n].config).is_empty());
    }
}
