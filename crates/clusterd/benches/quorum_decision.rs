//! Time from a split to the quorum decision, with real daemons in network namespaces (one per
//! node, two links, plus an arbiter host on link 0), for 2 nodes + arbiter and 4 nodes + arbiter
//! (ffsplit, tie-breaker lowest):
//!
//! - crash: `kill -9` of node 1 (4 nodes: nodes 1 and 2 at once);
//! - hang: SIGSTOP of node 1 (4 nodes: nodes 1 and 2), every process of the node;
//! - partition: iptables DROP between the two halves (2 nodes: 1 | 2, 4 nodes: 1 2 | 3 4), the
//!   arbiter still reachable by all.
//!
//! Each round builds a fresh cluster, waits until every node is quorate with the arbiter's vote,
//! injects the fault and times, from the fault: the survivors' new view, the survivors quorate
//! with the arbiter's vote ("decided") and, for a partition, the losing side not quorate.
//! `clusterd` is polled on its control socket every 2 ms. Prints median (min–max) per case.
//!
//! The same cases then run against Debian's corosync 3 (knet on the same two links) +
//! corosync-qdevice (model net, ffsplit) + corosync-qnetd, once with `token: 650` and
//! `token_coefficient: 0` (clusterd's token timeout) and once with corosync's defaults, when
//! `corosync`, `corosync-qdevice`, `corosync-qnetd` and their certutil scripts are installed
//! (else a note says it is skipped). Their decision is pushed by `corosync-quorumtool -m`
//! running in each survivor; their view time comes from the survivor's log (`A new
//! membership`, millisecond stamps).
//!
//! Everything (namespaces, processes, directories) is removed on exit, on a failure and on
//! SIGINT/SIGTERM; corosync's process trees also die with this process if it is killed.
//!
//! Needs root, `ip`, `iptables-restore`, `nsenter`. Environment: `ROUNDS` (default 5),
//! `CASES` (run only the cases whose label contains this text), `COROSYNC_NODES` (`2` by
//! default; `2,4` adds the 4-node corosync cases), `COROSYNC=0` (skip corosync).
//! Run with `cargo bench -p clusterd --bench quorum_decision`.

#[path = "../tests/it/netrig.rs"]
#[allow(dead_code)]
mod netrig;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clusterd::control::{self, QuorumReport, Request, Response};
use netrig::NetCluster;

const ARBITER_IP: &str = "10.77.0.100";
const ARBITER_PORT: u16 = 5403;
/// NetCluster names its cluster `netns`; the arbiter certificates must say the same.
const OUR_CLUSTER: &str = "netns";
const CORO_CLUSTER: &str = "qbench";
/// How often clusterd's control socket is polled.
const POLL: Duration = Duration::from_millis(2);

/// Set by SIGINT/SIGTERM: every wait loop then panics, and unwinding removes the namespaces,
/// processes and directories through their `Drop`s.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn check_interrupted() {
    assert!(!INTERRUPTED.load(Ordering::SeqCst), "interrupted: cleaning up");
}

fn watch_signals() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        INTERRUPTED.store(true, Ordering::SeqCst);
    });
}

/// Polls `cond` every `every` until it holds or `timeout` passes.
fn wait_for(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        check_interrupted();
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Kill,
    Stop,
    Partition,
}

/// One measured scenario.
#[derive(Clone, Debug)]
struct Case {
    nodes: u32,
    fault: Fault,
    /// Killed or stopped nodes; for a partition, the losing half (the other half holds node 1,
    /// the tie-breaker's node).
    victims: Vec<u32>,
}

impl Case {
    fn survivors(&self) -> Vec<u32> {
        (1..=self.nodes).filter(|n| !self.victims.contains(n)).collect()
    }

    fn label(&self) -> String {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
        let which = if self.victims.len() == 1 { "node" } else { "nodes" };
        match self.fault {
            Fault::Kill => format!("{} nodes, kill -9 {which} {}", self.nodes, list(&self.victims)),
            Fault::Stop => format!("{} nodes, SIGSTOP {which} {}", self.nodes, list(&self.victims)),
            Fault::Partition => {
                format!("{} nodes, partition {} | {}", self.nodes, list(&self.survivors()), list(&self.victims))
            }
        }
    }
}

fn cases() -> Vec<Case> {
    let c = |nodes, fault, victims: &[u32]| Case { nodes, fault, victims: victims.to_vec() };
    vec![
        c(2, Fault::Kill, &[1]),
        c(2, Fault::Stop, &[1]),
        c(2, Fault::Partition, &[2]),
        c(4, Fault::Kill, &[1, 2]),
        c(4, Fault::Stop, &[1, 2]),
        c(4, Fault::Partition, &[3, 4]),
    ]
}

/// What one round measured, from the fault.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Every survivor saw the view without the victims.
    view: Option<Duration>,
    /// Every survivor quorate with the arbiter's vote.
    decided: Duration,
    /// Partition: every node of the losing half not quorate.
    loser: Option<Duration>,
}

/// Varies the fault's phase against the token rotation from round to round.
fn settle(round: usize) {
    std::thread::sleep(Duration::from_millis(300 + (round as u64 * 137) % 500));
}

fn kill(sig: &str, pids: &[u32]) {
    let st = Command::new("kill").arg(sig).args(pids.iter().map(u32::to_string)).status().expect("kill runs");
    assert!(st.success(), "kill {sig} {pids:?} failed");
}

/// Drops all traffic between the two halves, on both links, in the namespaces of the losing
/// half (one atomic iptables-restore per namespace). Returns when the rules are in place.
fn cut(c: &NetCluster, case: &Case) {
    for &n in &case.victims {
        let mut rules = String::from("*filter\n");
        for p in case.survivors() {
            for l in 0..netrig::LINKS {
                rules += &format!("-A INPUT -s 10.77.{l}.{p} -j DROP\n-A OUTPUT -d 10.77.{l}.{p} -j DROP\n");
            }
        }
        rules += "COMMIT\n";
        let mut child = c.nodes[n as usize - 1]
            .command("iptables-restore")
            .arg("--noflush")
            .stdin(Stdio::piped())
            .spawn()
            .expect("iptables-restore runs");
        child.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("write rules");
        assert!(child.wait().expect("iptables-restore").success(), "iptables-restore failed in node {n}");
    }
}

/// The arbiter host: a namespace on link 0's bridge (10.77.0.100) and its daemon.
struct ArbiterHost {
    proc: Option<Child>,
    ns: rig::Netns,
}

impl ArbiterHost {
    fn new(c: &NetCluster) -> ArbiterHost {
        let ns = rig::Netns::new();
        ns.veth_to("a0", &format!("{ARBITER_IP}/24"), &c.switch, "arb0", "169.254.0.100/32");
        c.switch.sh("ip link set arb0 master br0");
        ArbiterHost { proc: None, ns }
    }
}

impl Drop for ArbiterHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.proc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// clusterd + qnetd

/// A fresh cluster of `nodes` clusterd nodes and a qnetd, everyone quorate with the arbiter.
fn our_cluster(nodes: u32) -> (NetCluster, ArbiterHost) {
    let ids: Vec<u32> = (1..=nodes).collect();
    let c = NetCluster::with_quorum(
        Path::new(env!("CARGO_BIN_EXE_clusterd")),
        nodes,
        clusterd::Totem::default(),
        clusterd::Transport::Udp,
        |i, dir| {
            let adir = dir.join("arbiter");
            if !adir.exists() {
                clusterd::gen_arbiter_certs(&adir, OUR_CLUSTER, &ids).expect("arbiter certificates");
            }
            let text = format!(
                "[device]\nhost = \"{ARBITER_IP}\"\nport = {ARBITER_PORT}\nalgorithm = \"ffsplit\"\n\
                 tie_breaker = \"lowest\"\n[device.tls]\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n",
                ca = adir.join("ca.pem").display(),
                cert = adir.join(format!("{OUR_CLUSTER}-node{i}.pem")).display(),
                key = adir.join(format!("{OUR_CLUSTER}-node{i}.key")).display(),
            );
            toml::from_str(&text).expect("[quorum] section")
        },
    );
    let mut arb = ArbiterHost::new(&c);
    let adir = c.dir.path().join("arbiter");
    let config = adir.join("qnetd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{ARBITER_IP}:{ARBITER_PORT}\"\nrun_dir = \"{run}\"\n[tls]\nca = \"{ca}\"\n\
             cert = \"{cert}\"\nkey = \"{key}\"\n",
            run = adir.join("run").display(),
            ca = adir.join("ca.pem").display(),
            cert = adir.join("qnetd.pem").display(),
            key = adir.join("qnetd.key").display(),
        ),
    )
    .expect("write qnetd.toml");
    let log = std::fs::File::create(adir.join("qnetd.log")).expect("qnetd log");
    arb.proc = Some(
        arb.ns
            .command(env!("CARGO_BIN_EXE_qnetd"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn qnetd"),
    );
    let mut c = c;
    for n in 1..=nodes {
        c.start(n);
    }
    for n in 1..=nodes {
        let ok = wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
            our_state(&c, n).is_some_and(|s| s.quorate && s.members == ids && s.arbiter_vote)
        });
        assert!(ok, "node {n} never became quorate with the arbiter: {:?}\n{}", our_report(&c, n), c.log(n));
    }
    (c, arb)
}

fn our_report(c: &NetCluster, node: u32) -> Option<QuorumReport> {
    match control::query(&c.run_dir(node), &Request::QuorumStatus) {
        Ok(Response::QuorumStatus(r)) => Some(*r),
        _ => None,
    }
}

struct OurState {
    quorate: bool,
    members: Vec<u32>,
    arbiter_vote: bool,
}

fn our_state(c: &NetCluster, node: u32) -> Option<OurState> {
    our_report(c, node).map(|r| OurState {
        quorate: r.status.quorate,
        members: r.status.members.iter().map(|m| m.0).collect(),
        arbiter_vote: r.status.device.is_some_and(|d| d.1),
    })
}

fn our_round(case: &Case, round: usize) -> Sample {
    let (mut c, _arb) = our_cluster(case.nodes);
    settle(round);
    let survivors = case.survivors();
    let pids: Vec<u32> = case.victims.iter().map(|&n| c.pid(n).expect("victim runs")).collect();
    let t0 = Instant::now();
    match case.fault {
        Fault::Kill => kill("-KILL", &pids),
        Fault::Stop => kill("-STOP", &pids),
        Fault::Partition => cut(&c, case),
    }
    let mut view = BTreeMap::new();
    let mut decided = BTreeMap::new();
    let mut loser = BTreeMap::new();
    let losers: &[u32] = if case.fault == Fault::Partition { &case.victims } else { &[] };
    // Each answer is timed when it arrives (never earlier than the state it reports).
    let done = wait_for(Duration::from_secs(20), POLL, || {
        for &n in &survivors {
            if let Some(s) = our_state(&c, n).filter(|s| s.members == survivors) {
                let now = t0.elapsed();
                view.entry(n).or_insert(now);
                if s.quorate && s.arbiter_vote {
                    decided.entry(n).or_insert(now);
                }
            }
        }
        for &n in losers {
            if our_state(&c, n).is_some_and(|s| !s.quorate && s.members == losers) {
                loser.entry(n).or_insert(t0.elapsed());
            }
        }
        decided.len() == survivors.len() && loser.len() == losers.len()
    });
    if !done {
        let logs: String = (1..=case.nodes).map(|n| format!("--- node {n}\n{}", c.log(n))).collect();
        panic!("{}: no decision within 20 s (decided {decided:?}, losers {loser:?})\n{logs}", case.label());
    }
    if case.fault == Fault::Kill {
        for &n in &case.victims {
            c.kill(n);
        }
    }
    Sample {
        view: view.values().max().copied(),
        decided: decided.values().max().copied().expect("decided"),
        loser: loser.values().max().copied(),
    }
}

// ---------------------------------------------------------------------------------------------
// corosync + corosync-qdevice + corosync-qnetd

const COROSYNC_PROGRAMS: &[&str] = &[
    "corosync",
    "corosync-qdevice",
    "corosync-qnetd",
    "corosync-quorumtool",
    "corosync-cmapctl",
    "corosync-qnetd-certutil",
    "corosync-qdevice-net-certutil",
    "unshare",
    "setpriv",
    "stdbuf",
];

/// NSS databases for corosync-qnetd and every node's corosync-qdevice, made once with the
/// certutil scripts (each run in a private mount namespace with its own `/etc/corosync`).
struct CoroCerts {
    dir: rig::ScratchDir,
}

impl CoroCerts {
    fn new(nodes: u32) -> CoroCerts {
        let dir = rig::ScratchDir::new();
        let script = r#"
set -e
D=$1; C=$2; N=$3
as() { mount --bind "$D/$1" /etc/corosync; shift; "$@" >>"$D/certutil.log" 2>&1; umount /etc/corosync; }
mkdir -p "$D/qnetd" "$D/xfer"
for i in $(seq "$N"); do mkdir -p "$D/etc$i"; done
as qnetd corosync-qnetd-certutil -i
cp "$D/qnetd/qnetd/nssdb/qnetd-cacert.crt" "$D/xfer/"
as etc1 corosync-qdevice-net-certutil -i -c "$D/xfer/qnetd-cacert.crt"
as etc1 corosync-qdevice-net-certutil -r -n "$C"
cp "$D/etc1/qdevice/net/nssdb/qdevice-net-node.crq" "$D/xfer/"
as qnetd corosync-qnetd-certutil -s -c "$D/xfer/qdevice-net-node.crq" -n "$C"
cp "$D/qnetd/qnetd/nssdb/cluster-$C.crt" "$D/xfer/"
as etc1 corosync-qdevice-net-certutil -M -c "$D/xfer/cluster-$C.crt"
cp "$D/etc1/qdevice/net/nssdb/qdevice-net-node.p12" "$D/xfer/"
for i in $(seq 2 "$N"); do
  as etc$i corosync-qdevice-net-certutil -i -c "$D/xfer/qnetd-cacert.crt"
  as etc$i corosync-qdevice-net-certutil -m -c "$D/xfer/qdevice-net-node.p12"
done
head -c 256 /dev/urandom >"$D/authkey"
for i in $(seq "$N"); do install -m 0400 "$D/authkey" "$D/etc$i/authkey"; done
"#;
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(dir.path())
            .arg(CORO_CLUSTER)
            .arg(nodes.to_string())
            .output()
            .expect("unshare runs");
        assert!(
            out.status.success(),
            "corosync certificate set-up failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("certutil.log")).unwrap_or_default()
        );
        CoroCerts { dir }
    }

    fn etc(&self, node: u32) -> PathBuf {
        self.dir.path().join(format!("etc{node}"))
    }
}

fn corosync_conf(nodes: u32, token: Option<u32>, logfile: &Path) -> String {
    let mut s = format!(
        "totem {{\n  version: 2\n  cluster_name: {CORO_CLUSTER}\n  transport: knet\n  crypto_cipher: aes256\n  crypto_hash: sha256\n"
    );
    if let Some(t) = token {
        // No per-node increase beyond 2 nodes: the same fixed timeout as clusterd's.
        s += &format!("  token: {t}\n  token_coefficient: 0\n");
    }
    s += "}\nnodelist {\n";
    for i in 1..=nodes {
        s += &format!("  node {{\n    nodeid: {i}\n    name: node{i}\n");
        for l in 0..netrig::LINKS {
            s += &format!("    ring{l}_addr: 10.77.{l}.{i}\n");
        }
        s += "  }\n";
    }
    s += &format!(
        "}}\nquorum {{\n  provider: corosync_votequorum\n  device {{\n    votes: 1\n    model: net\n    net {{\n      \
         host: {ARBITER_IP}\n      port: {ARBITER_PORT}\n      algorithm: ffsplit\n      tie_breaker: lowest\n    }}\n  }}\n}}\n\
         logging {{\n  to_logfile: yes\n  logfile: {}\n  to_syslog: no\n  to_stderr: no\n  timestamp: hires\n}}\n",
        logfile.display()
    );
    s
}

/// PID 1 of a corosync node (own mount and PID namespace inside the node's network namespace):
/// private /run, /dev/shm (libqb), /etc/corosync and /var/lib/corosync; corosync, then
/// corosync-qdevice, both in the foreground. Killing this process kills the whole node.
const NODE_INIT: &str = r#"
set -e
ETC=$1; R=$2; I=$3
mount -t tmpfs -o mode=0755 qbrun /run
mount -t tmpfs -o mode=1777,size=64m qbshm /dev/shm
mount --bind "$ETC" /etc/corosync
mount --bind "$R/lib$I" /var/lib/corosync
mkdir -p /run/corosync /run/corosync-qdevice
set +e
export TZ=UTC
corosync -f >>"$R/n$I.out" 2>&1 &
i=0
until corosync-cmapctl -g totem.cluster_name >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 600 ] && exit 1; sleep 0.05
done
corosync-qdevice -f >>"$R/n$I.qdevice" 2>&1 &
while :; do wait; sleep 0.5; done
"#;

const QNETD_INIT: &str = r#"
set -e
ETC=$1; R=$2; ADDR=$3
mount -t tmpfs -o mode=0755 qbrun /run
mount --bind "$ETC" /etc/corosync
mkdir -p /run/corosync-qnetd
exec corosync-qnetd -f -4 -l "$ADDR" >>"$R/qnetd.log" 2>&1
"#;

/// `setpriv --pdeathsig KILL nsenter --net=NS unshare ... --kill-child sh -c SCRIPT`: the
/// namespace's whole PID namespace dies with this bench even if it is killed outright.
fn spawn_init(ns: &rig::Netns, script: &str, args: &[&str]) -> (Child, u32) {
    let child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "nsenter"])
        .arg(format!("--net={}", ns.path().display()))
        .args(["--", "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"])
        .args(["--mount-proc", "sh", "-c", script, "sh"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a corosync node");
    let pid = child.id();
    let mut init = None;
    let ok = wait_for(Duration::from_secs(5), Duration::from_millis(2), || {
        init = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
        init.is_some()
    });
    assert!(ok, "the node's init process never appeared");
    (child, init.expect("init pid"))
}

/// A process and all its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
        i += 1;
    }
    out
}

/// What `corosync-quorumtool -s` / `-m` says.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct CoroState {
    nodes: u32,
    quorate: bool,
    total_votes: u32,
}

fn field(line: &str, name: &str) -> Option<String> {
    line.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|r| r.trim().to_string())
}

fn parse_coro(text: &str) -> Option<CoroState> {
    let mut s = CoroState::default();
    let mut seen = 0;
    for line in text.lines() {
        if let Some(v) = field(line, "Nodes") {
            s.nodes = v.parse().ok()?;
            seen |= 1;
        } else if let Some(v) = field(line, "Quorate") {
            s.quorate = v == "Yes";
            seen |= 2;
        } else if let Some(v) = field(line, "Total votes") {
            s.total_votes = v.parse().ok()?;
            seen |= 4;
        }
    }
    (seen == 7).then_some(s)
}

struct CoroNode {
    proc: Child,
    init: u32,
}

/// `corosync-quorumtool -m` inside a node: each status it prints, with its arrival time.
struct Monitor {
    proc: Child,
    rx: mpsc::Receiver<(Instant, CoroState)>,
}

impl Monitor {
    fn start(init: u32) -> Monitor {
        let mut proc = Command::new("nsenter")
            .args(["-t", &init.to_string(), "-n", "-m", "--", "stdbuf", "-oL", "corosync-quorumtool", "-m"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn corosync-quorumtool -m");
        let out = proc.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut block = String::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let end = line.starts_with("Total votes");
                block.push_str(&line);
                block.push('\n');
                if end {
                    if let Some(s) = parse_coro(&block)
                        && tx.send((at, s)).is_err()
                    {
                        break;
                    }
                    block.clear();
                }
            }
        });
        Monitor { proc, rx }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// A corosync cluster in the namespaces of a `NetCluster` (its clusterd files are unused),
/// with corosync-qnetd on the arbiter host.
struct CoroCluster {
    nodes: Vec<Option<CoroNode>>,
    // Dropped after the nodes: the namespaces and the round's directory.
    _arb: ArbiterHost,
    c: NetCluster,
    run: rig::ScratchDir,
}

impl CoroCluster {
    fn new(certs: &CoroCerts, nodes: u32, token: Option<u32>) -> CoroCluster {
        let c = NetCluster::with_transport(
            Path::new(env!("CARGO_BIN_EXE_clusterd")),
            nodes,
            clusterd::Totem::default(),
            clusterd::Transport::Udp,
        );
        let run = rig::ScratchDir::new();
        let mut arb = ArbiterHost::new(&c);
        let r = run.path().to_str().expect("utf-8 path").to_string();
        let qetc = certs.dir.path().join("qnetd");
        let (proc, _) = spawn_init(&arb.ns, QNETD_INIT, &[qetc.to_str().expect("utf-8"), &r, ARBITER_IP]);
        arb.proc = Some(proc);
        let mut cluster = CoroCluster { nodes: Vec::new(), _arb: arb, c, run };
        for i in 1..=nodes {
            std::fs::create_dir_all(cluster.run.path().join(format!("lib{i}"))).expect("lib dir");
            let log = cluster.log_path(i);
            std::fs::write(certs.etc(i).join("corosync.conf"), corosync_conf(nodes, token, &log))
                .expect("corosync.conf");
            let etc = certs.etc(i);
            let (proc, init) = spawn_init(
                &cluster.c.nodes[i as usize - 1],
                NODE_INIT,
                &[etc.to_str().expect("utf-8"), &r, &i.to_string()],
            );
            cluster.nodes.push(Some(CoroNode { proc, init }));
        }
        for i in 1..=nodes {
            let ok = wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
                cluster.status(i).is_some_and(|s| s.quorate && s.nodes == nodes && s.total_votes == nodes + 1)
            });
            assert!(
                ok,
                "corosync node {i} never became quorate with the qdevice vote: {:?}\n{}",
                cluster.status(i),
                cluster.log(i)
            );
        }
        cluster
    }

    fn log_path(&self, node: u32) -> PathBuf {
        self.run.path().join(format!("n{node}.log"))
    }

    fn log(&self, node: u32) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    fn init(&self, node: u32) -> u32 {
        self.nodes[node as usize - 1].as_ref().expect("node runs").init
    }

    fn status(&self, node: u32) -> Option<CoroState> {
        let out = Command::new("nsenter")
            .args(["-t", &self.init(node).to_string(), "-n", "-m", "--", "corosync-quorumtool", "-s"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        parse_coro(&String::from_utf8_lossy(&out.stdout))
    }

    /// When `node` logged its first new membership after `t0` (wall clock), from its log's
    /// millisecond UTC stamps (`Nov 23 03:03:52.353 ...`).
    fn view_after(&self, node: u32, t0: SystemTime) -> Option<Duration> {
        const DAY: i64 = 86_400_000;
        let t0_ms = (t0.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64).rem_euclid(DAY);
        self.log(node).lines().filter(|l| l.contains("A new membership")).find_map(|l| {
            let hms = l.split_whitespace().nth(2)?;
            let (h, rest) = hms.split_once(':')?;
            let (m, rest) = rest.split_once(':')?;
            let (s, ms) = rest.split_once('.')?;
            let at = ((h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?) * 60 + s.parse::<i64>().ok()?) * 1000
                + ms.parse::<i64>().ok()?;
            let d = (at - t0_ms).rem_euclid(DAY);
            // Earlier stamps wrap to nearly a day; a membership never forms within 5 ms.
            (5..DAY / 2).contains(&d).then(|| Duration::from_millis(d as u64))
        })
    }
}

impl Drop for CoroCluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut().flatten() {
            let _ = Command::new("kill").args(["-9", &n.init.to_string()]).stderr(Stdio::null()).status();
            let _ = n.proc.kill();
            let _ = n.proc.wait();
        }
    }
}

fn coro_round(certs: &CoroCerts, case: &Case, token: Option<u32>, round: usize) -> Sample {
    let mut cc = CoroCluster::new(certs, case.nodes, token);
    let survivors = case.survivors();
    let losers: Vec<u32> = if case.fault == Fault::Partition { case.victims.clone() } else { Vec::new() };
    let monitors: BTreeMap<u32, Monitor> =
        survivors.iter().chain(&losers).map(|&n| (n, Monitor::start(cc.init(n)))).collect();
    // Each monitor prints the current state first.
    for (n, m) in &monitors {
        let first = m.rx.recv_timeout(Duration::from_secs(10));
        assert!(first.is_ok(), "corosync-quorumtool -m printed nothing on node {n}");
    }
    settle(round);
    let wall0 = SystemTime::now();
    let t0 = Instant::now();
    match case.fault {
        Fault::Kill => kill("-KILL", &case.victims.iter().map(|&n| cc.init(n)).collect::<Vec<_>>()),
        Fault::Stop => kill("-STOP", &case.victims.iter().flat_map(|&n| process_tree(cc.init(n))).collect::<Vec<_>>()),
        Fault::Partition => cut(&cc.c, case),
    }
    let mut decided = BTreeMap::new();
    let mut loser = BTreeMap::new();
    let nsurv = survivors.len() as u32;
    let done = wait_for(Duration::from_secs(60), Duration::from_millis(5), || {
        for (&n, m) in &monitors {
            while let Ok((at, s)) = m.rx.try_recv() {
                let d = at.saturating_duration_since(t0);
                if survivors.contains(&n) && s.nodes == nsurv && s.quorate && s.total_votes == nsurv + 1 {
                    decided.entry(n).or_insert(d);
                }
                if losers.contains(&n) && s.nodes == losers.len() as u32 && !s.quorate {
                    loser.entry(n).or_insert(d);
                }
            }
        }
        decided.len() == survivors.len() && loser.len() == losers.len()
    });
    if !done {
        let logs: String = (1..=case.nodes).map(|n| format!("--- node {n}\n{}", cc.log(n))).collect();
        panic!("corosync, {}: no decision within 60 s (decided {decided:?}, losers {loser:?})\n{logs}", case.label());
    }
    let views: Vec<Option<Duration>> = survivors.iter().map(|&n| cc.view_after(n, wall0)).collect();
    drop(monitors);
    if case.fault == Fault::Kill {
        for &n in &case.victims {
            if let Some(mut node) = cc.nodes[n as usize - 1].take() {
                let _ = node.proc.wait();
            }
        }
    }
    Sample {
        view: views.iter().copied().collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().max()),
        decided: decided.values().max().copied().expect("decided"),
        loser: loser.values().max().copied(),
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Picks one measured quantity out of a case's figures.
type Metric = fn(&Figures) -> &[Duration];

#[derive(Default)]
struct Figures {
    view: Vec<Duration>,
    decided: Vec<Duration>,
    loser: Vec<Duration>,
}

impl Figures {
    fn push(&mut self, s: Sample) {
        self.view.extend(s.view);
        self.decided.push(s.decided);
        self.loser.extend(s.loser);
    }
}

fn stats(v: &[Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut v = v.to_vec();
    v.sort();
    let s = |d: Duration| d.as_secs_f64();
    let n = v.len();
    let median = if n % 2 == 1 { s(v[n / 2]) } else { (s(v[n / 2 - 1]) + s(v[n / 2])) / 2.0 };
    format!("{median:.3} ({:.3}-{:.3})", s(v[0]), s(v[n - 1]))
}

/// Runs `rounds` rounds of `case` and prints each round.
fn run_case(system: &str, case: &Case, rounds: usize, mut round: impl FnMut(usize) -> Sample) -> Figures {
    let mut f = Figures::default();
    for r in 0..rounds {
        let s = round(r);
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3));
        println!(
            "  {system:<22} {:<34} round {}: view {:>8}  decided {:>8}  loser {:>8}",
            case.label(),
            r + 1,
            ms(s.view),
            ms(Some(s.decided)),
            ms(s.loser)
        );
        f.push(s);
    }
    f
}

fn main() {
    if !rig::require_root_and(&["ip", "iptables-restore", "nsenter"]) {
        println!("quorum_decision: skipped (needs root, ip, iptables-restore and nsenter)");
        return;
    }
    watch_signals();
    rig::sweep_stale_namespaces();
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(5);
    let filter = std::env::var("CASES").unwrap_or_default();
    let coro_nodes: Vec<u32> = std::env::var("COROSYNC_NODES")
        .unwrap_or_else(|_| "2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let cases: Vec<Case> = cases().into_iter().filter(|c| c.label().contains(&filter)).collect();
    println!("quorum decision after a split, {rounds} rounds per case, seconds from the fault: median (min-max)");
    println!("  view = every survivor has the new view; decided = every survivor quorate with the arbiter's vote;");
    println!("  loser = (partition) every node of the other half not quorate");

    let mut ours = Vec::new();
    for case in &cases {
        ours.push(run_case("clusterd+qnetd", case, rounds, |r| our_round(case, r)));
    }

    let tokens: [(&str, Option<u32>); 2] = [("corosync token 650", Some(650)), ("corosync default token", None)];
    let mut theirs: Vec<Vec<Option<Figures>>> = Vec::new();
    let want_coro = std::env::var("COROSYNC").map_or(true, |v| v != "0");
    let missing: Vec<&str> = COROSYNC_PROGRAMS.iter().copied().filter(|p| !rig::have_program(p)).collect();
    if !want_coro {
        println!("corosync: skipped (COROSYNC=0)");
    } else if !missing.is_empty() {
        println!(
            "corosync: skipped, missing {} (apt-get install corosync corosync-qdevice corosync-qnetd)",
            missing.join(", ")
        );
    } else {
        let max_nodes = cases.iter().filter(|c| coro_nodes.contains(&c.nodes)).map(|c| c.nodes).max().unwrap_or(2);
        let certs = CoroCerts::new(max_nodes);
        for (name, token) in tokens {
            let mut row = Vec::new();
            for case in &cases {
                if coro_nodes.contains(&case.nodes) {
                    row.push(Some(run_case(name, case, rounds, |r| coro_round(&certs, case, token, r))));
                } else {
                    row.push(None);
                }
            }
            theirs.push(row);
        }
    }

    println!();
    let mut header = format!("{:<34} {:<8} {:<22}", "case", "", "clusterd+qnetd (650)");
    if !theirs.is_empty() {
        for (name, _) in tokens {
            header += &format!(" {name:<22}");
        }
    }
    println!("{header}");
    for (i, case) in cases.iter().enumerate() {
        let metrics: Vec<(&str, Metric)> = if case.fault == Fault::Partition {
            vec![("view", |f| &f.view), ("decided", |f| &f.decided), ("loser", |f| &f.loser)]
        } else {
            vec![("view", |f| &f.view), ("decided", |f| &f.decided)]
        };
        for (k, (metric, get)) in metrics.into_iter().enumerate() {
            let label = if k == 0 { case.label() } else { String::new() };
            let mut line = format!("{label:<34} {metric:<8} {:<22}", stats(get(&ours[i])));
            for row in &theirs {
                line += &format!(" {:<22}", row[i].as_ref().map_or("not run".to_string(), |f| stats(get(f))));
            }
            println!("{line}");
        }
    }
}
