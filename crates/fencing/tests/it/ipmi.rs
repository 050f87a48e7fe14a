//! The native IPMI agent against ipmi_sim: power really changes, the hooked node dies.

use std::time::Duration;

use fencing::{Action, Done, Outcome, PowerState, Request, execute};

use crate::rigs::IpmiSim;

fn req(action: Action) -> Request {
    let mut r = Request::new(action, None);
    r.timeout = Duration::from_secs(10);
    r
}

#[test]
fn ipmi_off_kills_the_node_and_on_brings_it_back() {
    if !IpmiSim::available() {
        return;
    }
    let sim = IpmiSim::start();
    let agent = sim.agent(&[]);
    let node = sim.node_pid();
    assert!(rig::process_alive(node));
    let r = execute(&agent, &req(Action::Status));
    assert!(
        matches!(r.outcome, Outcome::Done(Done::Status(PowerState::On))),
        "{r:?}"
    );

    let r = execute(&agent, &req(Action::Off));
    assert!(r.confirms_fenced(), "{r:?}");
    assert_eq!(sim.power_file(), "0");
    assert!(rig::wait_until(Duration::from_secs(3), || {
        !rig::process_alive(node)
    }));
    let r = execute(&agent, &req(Action::Status));
    assert!(
        matches!(r.outcome, Outcome::Done(Done::Status(PowerState::Off))),
        "{r:?}"
    );

    let r = execute(&agent, &req(Action::On));
    assert!(matches!(r.outcome, Outcome::Done(Done::On)), "{r:?}");
    assert_eq!(sim.power_file(), "1");
    let new_node = sim.node_pid();
    assert_ne!(new_node, node);
    assert!(rig::process_alive(new_node));

    let r = execute(&agent, &req(Action::Reboot));
    assert!(r.confirms_fenced(), "{r:?}");
    assert!(
        !rig::process_alive(new_node)
            || rig::wait_until(Duration::from_secs(3), || !rig::process_alive(new_node))
    );
    assert_eq!(sim.power_file(), "1");
    let log = sim.chassis_log();
    assert!(log.matches("set power 0").count() >= 2, "{log}");
}
