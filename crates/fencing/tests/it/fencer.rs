//! The fencer core driven for real: devices are native agents against two ipmi_sim BMCs,
//! actions run through `fencing::spawn`, and the history is persisted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fencing::fencer::{
    DeviceConfig, Effect, FenceRequest, FenceResult, Fencer, Finished, Input, step_result,
};
use fencing::history::History;
use fencing::{Action, FenceAgent, Params, Request};

use crate::rigs::IpmiSim;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// A minimal driver: runs effects on threads, feeds results back, sleeps to wakeups.
fn drive(
    fencer: &mut Fencer,
    agents: &BTreeMap<String, Arc<dyn FenceAgent>>,
    req: FenceRequest,
) -> Finished {
    let origin = std::time::Instant::now();
    let now = || {
        wire::Instant::from_nanos(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    };
    let mut out = Vec::new();
    fencer.handle(now(), Input::Request(req), &mut out);
    loop {
        if let Some(effect) = out.pop() {
            match effect {
                Effect::Run {
                    op,
                    step,
                    device,
                    action,
                    plug,
                } => {
                    let mut r = Request::new(action, plug.as_deref());
                    r.timeout = Duration::from_secs(10);
                    let report = fencing::spawn(Arc::clone(&agents[&device]), r).wait();
                    fencer.handle(
                        now(),
                        Input::Step {
                            op,
                            step,
                            result: step_result(&report),
                        },
                        &mut out,
                    );
                }
                Effect::Finished(done) => return *done,
            }
            continue;
        }
        let at = fencer.next_wakeup().expect("pending request has a wakeup");
        let wait = at.saturating_since(now());
        std::thread::sleep(std::time::Duration::from(wait));
        fencer.handle(now(), Input::Wakeup, &mut out);
    }
}

#[test]
fn fencer_falls_back_to_the_next_device_kills_the_node_and_records_history() {
    if !IpmiSim::available() {
        return;
    }
    let bmc1 = IpmiSim::start();
    let bmc2 = IpmiSim::start();
    // Device a-wrong points at node2's BMC with a wrong password; b-right is correct.
    let port = format!("ipport={}", bmc2.port);
    let common = [
        "agent=ipmi",
        "ip=127.0.0.1",
        port.as_str(),
        "username=admin",
        "pcmk_host_list=node2",
        "pcmk_delay_max=300ms",
    ];
    let mut wrong = Params::from_words(&common).unwrap();
    wrong.set("password", "nope").unwrap();
    let mut right = Params::from_words(&common).unwrap();
    right.set("password", "secret").unwrap();
    let port1 = format!("ipport={}", bmc1.port);
    let node1_dev = Params::from_words(&[
        "agent=ipmi",
        "ip=127.0.0.1",
        port1.as_str(),
        "username=admin",
        "password=secret",
        "pcmk_host_list=node1",
    ])
    .unwrap();

    let mut agents: BTreeMap<String, Arc<dyn FenceAgent>> = BTreeMap::new();
    let mut devices = Vec::new();
    for (id, p) in [
        ("a-wrong", &wrong),
        ("b-right", &right),
        ("node1-ipmi", &node1_dev),
    ] {
        agents.insert(id.into(), Arc::from(fencing::build_agent(p).unwrap()));
        devices.push(DeviceConfig::new(id, p.clone(), false).unwrap());
    }
    let mut fencer = Fencer::new("node1", devices, vec![], 7);
    let victim = bmc2.node_pid();
    let request = |target: &str| FenceRequest {
        target: target.into(),
        action: Action::Off,
        requester: "it".into(),
        origin: "node1".into(),
        allow_self: false,
        extra_delay: wire::Duration::ZERO,
        timeout: wire::Duration::from_secs(30),
    };

    let started = unix_ms();
    let done = drive(&mut fencer, &agents, request("node2"));
    assert_eq!(done.result, FenceResult::Done, "{done:?}");
    assert_eq!(done.devices, ["b-right"]);
    assert!(
        done.errors[0].contains("authentication failed"),
        "{:?}",
        done.errors
    );
    assert!(done.delay <= wire::Duration::from_millis(300));
    assert_eq!(bmc2.power_file(), "0");
    assert!(rig::wait_until(Duration::from_secs(3), || {
        !rig::process_alive(victim)
    }));

    // The local node is never fenced at its own request, even with a working device.
    let refused = drive(&mut fencer, &agents, request("node1"));
    assert_eq!(refused.result, FenceResult::Refused);
    assert_eq!(bmc1.power_file(), "1");
    // No device maps node3: failed at once.
    let unmapped = drive(&mut fencer, &agents, request("node3"));
    assert_eq!(unmapped.result, FenceResult::Failed);

    let dir = rig::ScratchDir::new();
    let path = dir.path().join("fence-history");
    let mut history = History::default();
    for d in [&done, &refused, &unmapped] {
        history.record(d, "node1", started, unix_ms());
    }
    history.save(&path).unwrap();
    let back = History::load(&path, 100).unwrap();
    let e = back.last_success("node2").unwrap();
    assert_eq!(
        (e.requester.as_str(), e.devices.as_slice()),
        ("it", ["b-right".to_owned()].as_slice())
    );
    assert!(back.last_success("node1").is_none());
    assert_eq!(back.entries().count(), 3);
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("secret"),
        "history holds no secrets"
    );
}
