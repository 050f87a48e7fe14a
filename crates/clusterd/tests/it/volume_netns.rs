//! A replicated volume as a promotable clone, failed over for real: three clusterd processes in
//! namespaces, one `ipmi_sim` BMC per node whose power-off kills everything in that node's
//! namespace, and a `blockrepld` volume between node 1 and node 2 driven by the
//! `native:builtin:volume` agent. The DC promotes one side; data is written through its NBD
//! frontend; its daemon is killed (the node and its volume stay up); the DC fences it through
//! its BMC and only then promotes the other side, which serves the data written before.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use blockrepl::control::{self as vctl, Request as Vreq, Response as Vresp};
use clusterd::Transport;
use clusterd::control::{self, Request, Response};
use rig::ipmi::{IpmiSim, Node};

use crate::netrig::NetCluster;

const BMC_ADDR: &str = "10.77.0.200";
const SIZE: u64 = 16 << 20;

fn rig_available() -> bool {
    let blockrepld = Path::new(env!("CARGO_BIN_EXE_clusterd")).with_file_name("blockrepld");
    rig::require_root_and(&["ip", "nsenter", "ipmi_sim", "ipmitool", "qemu-io"])
        && rig::require("blockrepld built next to clusterd (cargo build --workspace --bins)", blockrepld.is_file())
}

fn quote(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// Writes node `n`'s volume configuration (node 1 listens, node 2 connects).
fn volume_config(dir: &Path, n: u32) -> PathBuf {
    let link =
        if n == 1 { "listen = \"10.77.0.1:7811\"".to_string() } else { "peer_addr = \"10.77.0.1:7811\"".to_string() };
    let text = format!(
        "name = \"r0\"\nnode_id = {n}\npeer_id = {}\nbacking = {}\nstate_dir = {}\npsk_file = {}\ncontrol_socket = {}\n\
         create_size_bytes = {SIZE}\ninitial_generation = \"e2e\"\n\n[link]\n{link}\n\n[frontends]\nnbd_unix_socket = {}\n",
        3 - n,
        quote(&dir.join(format!("disk{n}"))),
        quote(&dir.join(format!("vstate{n}"))),
        quote(&dir.join("psk")),
        quote(&socket(dir, n)),
        quote(&nbd(dir, n)),
    );
    let path = dir.join(format!("vol{n}.toml"));
    std::fs::write(&path, text).expect("volume config");
    path
}

fn socket(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("vol{n}.sock"))
}

fn nbd(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("nbd{n}"))
}

fn configuration(dir: &Path) -> String {
    let devices = crate::netrig::ipmi_fence_devices(BMC_ADDR, 3);
    let per_node: String = (1..=2)
        .map(|n| {
            format!(
                r#"<instance_attributes id="vol-n{n}" score="{n}"><rule id="vol-n{n}-r" score="0"><expression id="vol-n{n}-e" attribute="&#35;uname" operation="eq" value="node{n}"/></rule><nvpair id="vol-n{n}-c" name="config" value="{}"/></instance_attributes>"#,
                dir.join(format!("vol{n}.toml")).display()
            )
        })
        .collect();
    format!(
        r#"<configuration><crm_config><cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="true"/><nvpair id="o2" name="stonith-action" value="off"/></cluster_property_set></crm_config><nodes/><resources>{devices}<clone id="vol-clone"><meta_attributes id="vc"><nvpair id="vc-p" name="promotable" value="true"/><nvpair id="vc-m" name="clone-max" value="2"/><nvpair id="vc-pm" name="promoted-max" value="1"/></meta_attributes><primitive id="vol" class="native" provider="builtin" type="volume">{per_node}<operations><op id="vol-mp" name="monitor" interval="1s" role="Promoted" timeout="10s"/><op id="vol-mu" name="monitor" interval="2s" role="Unpromoted" timeout="10s"/></operations></primitive></clone></resources><constraints><rsc_location id="vol-not-3" rsc="vol-clone" node="node3" score="-INFINITY" resource-discovery="never"/></constraints></configuration>"#
    )
}

/// The volume's status on node `n`, when its daemon answers.
fn status(dir: &Path, n: u32) -> Option<blockrepl::Status> {
    match vctl::call(&socket(dir, n), &Vreq::Status) {
        Ok(Vresp::Ok { status, .. }) => Some(*status),
        _ => None,
    }
}

fn primary(dir: &Path, n: u32) -> bool {
    status(dir, n).is_some_and(|s| s.role == blockrepl::Role::Primary)
}

#[test]
fn a_replicated_volume_fails_over_to_its_peer_only_after_the_primary_is_fenced() {
    if !rig_available() {
        return;
    }
    let mut c = NetCluster::with_transport(
        Path::new(env!("CARGO_BIN_EXE_clusterd")),
        3,
        clusterd::Totem::default(),
        Transport::Udp,
    );
    // Volume files on tmpfs; removed with the cluster's scratch dir... after every daemon is gone.
    let vdir = rig::ScratchDir::new_in(Path::new("/dev/shm"));
    let dir = vdir.path().to_path_buf();
    std::fs::write(dir.join("psk"), b"volume-failover-test-key-0123456").expect("psk");
    for n in 1..=2 {
        volume_config(&dir, n);
    }
    c.switch.sh(&format!("ip addr add {BMC_ADDR}/24 dev br0"));
    let bmcs: Vec<IpmiSim> = (1..=3)
        .map(|i| {
            IpmiSim::start(
                Some(&c.switch),
                BMC_ADDR,
                6230 + i,
                Node::Namespace(c.nodes[i as usize - 1].name().to_string()),
            )
        })
        .collect();
    for n in 1..=3 {
        c.start(n);
    }
    assert!(c.wait_members(&[1, 2, 3], &[1, 2, 3], Duration::from_secs(15)), "no view:\n{}", c.log(1));
    let imported = rig::wait_until(Duration::from_secs(10), || {
        matches!(
            control::query(
                &c.run_dir(1),
                &Request::CibReplaceConfiguration { xml: configuration(&dir), if_epoch: None }
            ),
            Ok(Response::Done(_))
        )
    });
    assert!(imported, "configuration refused:\n{}", c.log(1));

    // One side promoted, the other connected and up to date.
    let t_import = Instant::now();
    let settled = rig::wait_until(Duration::from_secs(30), || {
        let p: Vec<u32> = (1..=2).filter(|&n| primary(&dir, n)).collect();
        p.len() == 1
            && (1..=2).all(|n| {
                status(&dir, n).is_some_and(|s| {
                    s.conn == blockrepl::ConnState::Connected && s.disk == blockrepl::DiskState::UpToDate
                })
            })
    });
    assert!(settled, "the volume never settled with one primary:\n{}\n{}", c.cib_xml(1), c.log(1));
    eprintln!("volume: settled with one primary {:?} after the import", t_import.elapsed());
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("node1:\n{}\nnode2:\n{}", c.log(1), c.log(2));
    }
    let p = (1..=2).find(|&n| primary(&dir, n)).expect("a primary");
    let s = 3 - p;
    let (ok, out) = rig::qemu::qemu_io(&nbd(&dir, p), &["write -P 0x5a 0 1M", "flush"]);
    assert!(ok, "write through node{p}'s NBD: {out}");

    // The primary's daemon dies; its node (and its volume, still primary) stays up until fenced.
    let t0 = Instant::now();
    c.kill(p);
    let mut promoted_at = None;
    let failed_over = rig::wait_until(Duration::from_secs(30), || {
        let powered_primaries: Vec<u32> =
            (1..=2).filter(|&n| bmcs[n as usize - 1].power() == "1" && primary(&dir, n)).collect();
        assert!(powered_primaries.len() <= 1, "two primaries at once: {powered_primaries:?}");
        if primary(&dir, s) {
            assert_eq!(bmcs[p as usize - 1].power(), "0", "node{s} was promoted while node{p} was still powered on");
            promoted_at = Some(t0.elapsed());
            return true;
        }
        false
    });
    assert!(failed_over, "node{s} was never promoted:\n{}\n{}", c.cib_xml(s), c.log(s));
    eprintln!(
        "volume: node{p} fenced through IPMI and node{s} promoted {:?} after its daemon was killed",
        promoted_at.unwrap_or_default()
    );
    let (ok, out) = rig::qemu::qemu_io(&nbd(&dir, s), &["read -P 0x5a 0 1M"]);
    assert!(ok, "the data written on node{p} reads back on node{s}: {out}");
    // Stop the survivors cleanly (their volumes stop with them: the clone is stopped first).
    drop(c);
    drop(bmcs);
    let leftover =
        Command::new("pgrep").args(["-f", &dir.display().to_string()]).output().map(|o| o.stdout).unwrap_or_default();
    for pid in String::from_utf8_lossy(&leftover).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
}
