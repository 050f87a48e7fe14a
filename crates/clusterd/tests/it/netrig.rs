//! A cluster of real `clusterd` processes, one network namespace each, with two links: a
//! "switch" namespace holds one bridge per link and every node has a veth into each bridge.
//! Everything (processes, namespaces, files) is removed on drop. Shared with the benchmarks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clusterd::control::{self, NodeStatus, Request, Response};
use clusterd::{FileConfig, NodeEntry, Totem};

/// Two links: 10.77.0.0/24 and 10.77.1.0/24.
pub(crate) const LINKS: u8 = 2;

/// Real-process clusters share the machine; a test that measures timing under a load it makes
/// itself (SIGSTOP pauses with every CPU busy) runs alone: it holds this for writing, every
/// other cluster for reading.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A share of the machine, held for a cluster's lifetime.
#[allow(dead_code)]
enum Share {
    Shared(std::sync::RwLockReadGuard<'static, ()>),
    Alone(std::sync::RwLockWriteGuard<'static, ()>),
}

pub(crate) struct NetCluster {
    pub(crate) nodes: Vec<rig::Netns>,
    procs: Vec<Option<Child>>,
    // Dropped after the node namespaces (declaration order).
    pub(crate) switch: rig::Netns,
    pub(crate) dir: rig::ScratchDir,
    bin: PathBuf,
    // Released last.
    _share: Share,
}

pub(crate) fn addr(node: u32, link: u8) -> SocketAddr {
    SocketAddr::from(([10, 77, link, node as u8], 5405))
}

impl NetCluster {
    /// Builds the namespaces and writes the configs (and certificates); starts no process.
    pub(crate) fn with_transport(bin: &Path, nodes: u32, totem: Totem, transport: clusterd::Transport) -> NetCluster {
        Self::with_quorum(bin, nodes, totem, transport, |_, _| clusterd::QuorumSection::default())
    }

    /// Like [`NetCluster::with_transport`], with no other real-process cluster running meanwhile
    /// (for timing measured under a load the test makes itself).
    #[allow(dead_code)]
    pub(crate) fn alone(bin: &Path, nodes: u32, totem: Totem, transport: clusterd::Transport) -> NetCluster {
        let share = Share::Alone(MACHINE.write().unwrap_or_else(|p| p.into_inner()));
        Self::build(bin, nodes, totem, transport, |_, _| clusterd::QuorumSection::default(), share)
    }

    /// Like `with_transport`, with node `i`'s `[quorum]` section from `quorum(i, dir)`.
    pub(crate) fn with_quorum(
        bin: &Path,
        nodes: u32,
        totem: Totem,
        transport: clusterd::Transport,
        quorum: impl Fn(u32, &Path) -> clusterd::QuorumSection,
    ) -> NetCluster {
        let share = Share::Shared(MACHINE.read().unwrap_or_else(|p| p.into_inner()));
        Self::build(bin, nodes, totem, transport, quorum, share)
    }

    fn build(
        bin: &Path,
        nodes: u32,
        totem: Totem,
        transport: clusterd::Transport,
        quorum: impl Fn(u32, &Path) -> clusterd::QuorumSection,
        share: Share,
    ) -> NetCluster {
        let switch = rig::Netns::new();
        let mut script = String::new();
        for l in 0..LINKS {
            script += &format!("ip link add br{l} type bridge && ip link set br{l} up && ");
        }
        script += "true";
        switch.sh(&script);
        let dir = rig::ScratchDir::new();
        std::fs::write(dir.path().join("authkey"), [7u8; 64]).expect("write authkey");
        clusterd::gen_certs(dir.path(), &(1..=nodes).collect::<Vec<_>>()).expect("certificates");
        let mut ns = Vec::new();
        for i in 1..=nodes {
            let n = rig::Netns::new();
            for l in 0..LINKS {
                let a = addr(i, l);
                n.veth_to(
                    &format!("l{l}"),
                    &format!("{}/24", a.ip()),
                    &switch,
                    &format!("n{i}l{l}"),
                    &format!("169.254.{l}.{i}/32"),
                );
                switch.sh(&format!("ip link set n{i}l{l} master br{l}"));
            }
            let cfg = FileConfig {
                node_id: i,
                cluster_name: "netns".into(),
                transport,
                authkey: Some(dir.path().join("authkey")),
                tls: Some(clusterd::TlsPaths {
                    ca: dir.path().join("ca.pem"),
                    cert: dir.path().join(format!("node{i}.pem")),
                    key: dir.path().join(format!("node{i}.key")),
                }),
                run_dir: dir.path().join(format!("run{i}")),
                state_dir: dir.path().join(format!("state{i}")),
                nodes: (1..=nodes)
                    .map(|j| NodeEntry {
                        id: j,
                        name: format!("node{j}"),
                        links: (0..LINKS).map(|l| addr(j, l)).collect(),
                    })
                    .collect(),
                totem: totem.clone(),
                quorum: quorum(i, dir.path()),
                executor: clusterd::ExecutorSection {
                    rsctmp: dir.path().join(format!("rsctmp{i}")),
                    ..Default::default()
                },
            };
            let conf = dir.path().join(format!("conf{i}"));
            std::fs::create_dir_all(&conf).expect("config dir");
            std::fs::write(conf.join("clusterd.toml"), cfg.to_toml()).expect("write config");
            ns.push(n);
        }
        NetCluster {
            nodes: ns,
            procs: (0..nodes).map(|_| None).collect(),
            switch,
            dir,
            bin: bin.to_path_buf(),
            _share: share,
        }
    }

    pub(crate) fn start(&mut self, node: u32) {
        let i = node as usize - 1;
        let log = std::fs::File::create(self.dir.path().join(format!("node{node}.log"))).expect("log file");
        let child = self.nodes[i]
            .command(self.bin.to_str().expect("utf-8 path"))
            .arg("--config")
            .arg(self.config_path(node))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn clusterd");
        self.procs[i] = Some(child);
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self, node: u32) {
        if let Some(mut c) = self.procs[node as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id of a running node.
    pub(crate) fn pid(&self, node: u32) -> Option<u32> {
        self.procs[node as usize - 1].as_ref().map(|c| c.id())
    }

    /// The live CIB as node `node` has it (empty when it does not answer).
    #[allow(dead_code)]
    pub(crate) fn cib_xml(&self, node: u32) -> String {
        match control::query(&self.run_dir(node), &Request::CibQuery) {
            Ok(Response::Cib(r)) => r.xml,
            _ => String::new(),
        }
    }

    /// Node `node`'s clusterd.toml (each node has a directory of its own, as on a real host).
    pub(crate) fn config_path(&self, node: u32) -> PathBuf {
        self.dir.path().join(format!("conf{node}")).join("clusterd.toml")
    }

    pub(crate) fn run_dir(&self, node: u32) -> PathBuf {
        self.dir.path().join(format!("run{node}"))
    }

    pub(crate) fn status(&self, node: u32) -> Option<NodeStatus> {
        match control::query(&self.run_dir(node), &Request::MembershipStatus) {
            Ok(Response::MembershipStatus(s)) => Some(*s),
            _ => None,
        }
    }

    pub(crate) fn members(&self, node: u32) -> Option<Vec<u32>> {
        self.status(node)
            .filter(|s| s.membership.ring.is_some())
            .map(|s| s.membership.members.iter().map(|m| m.0).collect())
    }

    pub(crate) fn wait_members(&self, nodes: &[u32], members: &[u32], timeout: Duration) -> bool {
        rig::wait_until(timeout, || nodes.iter().all(|&n| self.members(n).as_deref() == Some(members)))
    }

    pub(crate) fn log(&self, node: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{node}.log"))).unwrap_or_default()
    }

    pub(crate) fn sh(&self, node: u32, script: &str) -> String {
        self.nodes[node as usize - 1].sh(script)
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Silences an unused warning when a user needs only part of the helper.
#[allow(dead_code)]
pub(crate) fn command_in(ns: &rig::Netns, program: &str) -> Command {
    ns.command(program)
}

/// `class="stonith"` primitives, one per node (`fence-node<i>`, `fence_ipmilan` through the
/// BMC at `addr`, port 6230 + i, `pcmk_host_list=node<i>`), as `rig::ipmi::IpmiSim` serves
/// them.
#[allow(dead_code)]
pub(crate) fn ipmi_fence_devices(addr: &str, nodes: u32) -> String {
    (1..=nodes)
        .map(|i| {
            format!(
                r#"<primitive id="fence-node{i}" class="stonith" type="fence_ipmilan"><instance_attributes id="f{i}"><nvpair id="f{i}-ip" name="ip" value="{addr}"/><nvpair id="f{i}-port" name="ipport" value="{}"/><nvpair id="f{i}-u" name="username" value="admin"/><nvpair id="f{i}-p" name="password" value="secret"/><nvpair id="f{i}-l" name="lanplus" value="1"/><nvpair id="f{i}-c" name="cipher" value="3"/><nvpair id="f{i}-h" name="pcmk_host_list" value="node{i}"/></instance_attributes></primitive>"#,
                6230 + i
            )
        })
        .collect()
}
