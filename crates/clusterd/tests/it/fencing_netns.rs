//! The controller fences for real: three clusterd processes in namespaces, one simulated BMC
//! (`ipmi_sim`) per node whose power-off kills that node's daemon. A node running a resource
//! hangs (SIGSTOP): the DC fences it through its BMC, records the fence, and only then starts
//! the resource on a survivor.

use std::path::Path;
use std::time::{Duration, Instant};

use clusterd::Transport;
use clusterd::control::{self, Request, Response};
use rig::ipmi::{IpmiSim, Node};

use crate::netrig::NetCluster;

fn rig_available() -> bool {
    rig::require_root_and(&["ip", "nsenter", "ipmi_sim", "ipmitool"])
}

const BMC_ADDR: &str = "10.77.0.200";

fn configuration() -> String {
    let devices = crate::netrig::ipmi_fence_devices(BMC_ADDR, 3);
    format!(
        r#"<configuration><crm_config><cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="true"/><nvpair id="o2" name="stonith-action" value="off"/></cluster_property_set></crm_config><nodes/><resources>{devices}<primitive id="d1" class="ocf" provider="heartbeat" type="Dummy"><operations><op id="d1-mon" name="monitor" interval="1s" timeout="10s"/></operations></primitive></resources><constraints><rsc_location id="d1-on-3" rsc="d1" node="node3" score="100"/></constraints></configuration>"#
    )
}

fn running_on(dir: &Path, rsc: &str) -> Vec<u32> {
    (1..=3).filter(|i| dir.join(format!("rsctmp{i}")).join(format!("Dummy-{rsc}.state")).exists()).collect()
}

#[test]
fn a_hung_node_is_fenced_through_its_bmc_before_its_resource_moves() {
    if !rig_available() {
        return;
    }
    let mut c = NetCluster::with_transport(
        Path::new(env!("CARGO_BIN_EXE_clusterd")),
        3,
        clusterd::Totem::default(),
        Transport::Udp,
    );
    c.switch.sh(&format!("ip addr add {BMC_ADDR}/24 dev br0"));
    let bmcs: Vec<IpmiSim> =
        (1..=3).map(|i| IpmiSim::start(Some(&c.switch), BMC_ADDR, 6230 + i, Node::External)).collect();
    for n in 1..=3 {
        c.start(n);
        bmcs[n as usize - 1].set_node_pid(c.pid(n).expect("running"));
    }
    assert!(c.wait_members(&[1, 2, 3], &[1, 2, 3], Duration::from_secs(15)), "no view:\n{}", c.log(1));
    let imported = rig::wait_until(Duration::from_secs(10), || {
        matches!(
            control::query(&c.run_dir(1), &Request::CibReplaceConfiguration { xml: configuration(), if_epoch: None }),
            Ok(Response::Done(_))
        )
    });
    assert!(imported, "configuration refused:\n{}", c.log(1));
    let dir = c.dir.path().to_path_buf();
    let settled = rig::wait_until(Duration::from_secs(20), || {
        let xml = c.cib_xml(1);
        running_on(&dir, "d1") == [3]
            && xml.contains(r#"id="d1_monitor_1000""#)
            && (1..=3).all(|i| xml.contains(&format!(r#"id="fence-node{i}_last_0" operation="start""#)))
    });
    assert!(settled, "d1 never ran on node3 with the devices started:\n{}\n{}", c.cib_xml(1), c.log(1));

    // Node 3 hangs: nothing there answers, its resource still "runs".
    let t0 = Instant::now();
    let pid3 = c.pid(3).expect("node 3 runs");
    rig::sh(&format!("kill -STOP {pid3}"));
    let mut moved_at = None;
    let moved = rig::wait_until(Duration::from_secs(20), || {
        let survivors: Vec<u32> = running_on(&dir, "d1").into_iter().filter(|&n| n != 3).collect();
        if survivors.is_empty() {
            return false;
        }
        // The moment a survivor runs it, node 3 must already be powered off.
        assert_eq!(bmcs[2].power(), "0", "d1 started on {survivors:?} while node 3 was still powered on");
        assert_eq!(survivors.len(), 1, "d1 runs on two survivors: {survivors:?}");
        moved_at = Some(t0.elapsed());
        true
    });
    assert!(moved, "d1 never moved:\n{}\n{}", c.cib_xml(1), c.log(1));
    eprintln!(
        "clusterd: hung node fenced through IPMI and its resource running on a survivor {:?} after SIGSTOP",
        moved_at.unwrap_or_default()
    );
    assert!(!rig::process_alive(pid3), "the power-off killed node 3's daemon");
    assert_eq!(bmcs[0].power(), "1");
    assert_eq!(bmcs[1].power(), "1");
    let xml = c.cib_xml(2);
    assert!(
        xml.contains(r#"<node_state id="3" uname="node3" in_ccm="false" crmd="offline" join="down" expected="down""#),
        "the fence is recorded as a clean down:\n{xml}"
    );
    assert!(c.log(1).contains("fenced"), "the DC says it fenced:\n{}", c.log(1));
}
