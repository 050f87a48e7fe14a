//! The native IPMI agent against ipmi_sim: power really changes, the hooked node dies.

use std::time::Duration;

use fencing::{Action, AgentError, Done, Outcome, PowerState, Request, execute};

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

#[test]
fn ipmi_passes_the_conformance_suite_through_dyn_agent() {
    if !IpmiSim::available() {
        return;
    }
    let sim = IpmiSim::start();
    let agent: Box<dyn fencing::FenceAgent> = Box::new(sim.agent(&[]));
    let power = || match sim.power_file().as_str() {
        "0" => PowerState::Off,
        _ => PowerState::On,
    };
    let t = fencing::testing::conformance(agent.as_ref(), None, None, &power);
    eprintln!("ipmi: {:?}", t.actions);

    // Reboot as a BMC power cycle: confirmed by the completion code.
    let cycle = sim.agent(&["method=cycle"]);
    let r = execute(&cycle, &req(Action::Reboot));
    assert!(r.confirms_fenced(), "{r:?}");
}

#[test]
fn ipmi_wrong_password_fails_fast_without_touching_power() {
    if !IpmiSim::available() {
        return;
    }
    let sim = IpmiSim::start();
    let mut p = sim.params(&[]);
    p.set("password", "not-the-password").unwrap();
    let agent = fencing::IpmiAgent::from_params(&p).unwrap();
    let r = execute(&agent, &req(Action::Off));
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::Auth { .. })),
        "{r:?}"
    );
    assert_eq!(r.attempts, 1);
    assert!(r.elapsed < Duration::from_secs(2), "{r:?}");
    assert!(!format!("{r:?} {agent:?}").contains("not-the-password"));
    assert_eq!(sim.power_file(), "1");
    let r = execute(&agent, &req(Action::Monitor));
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::Auth { .. })),
        "{r:?}"
    );

    let mut p = sim.params(&[]);
    p.set("username", "nobody").unwrap();
    let agent = fencing::IpmiAgent::from_params(&p).unwrap();
    let r = execute(&agent, &req(Action::Off));
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::Auth { .. })),
        "{r:?}"
    );
    assert_eq!(sim.power_file(), "1");
    assert!(!sim.chassis_log().contains("set power"));
}

#[test]
fn ipmi_refuses_cipher_suite_zero_and_ipmi_1_5() {
    for (k, v) in [
        ("cipher", "0"),
        ("cipher", "17"),
        ("lanplus", "0"),
        ("privlvl", "root"),
    ] {
        let mut p =
            fencing::Params::from_words(&["ip=127.0.0.1", "username=admin", "password=x"]).unwrap();
        p.set(k, v).unwrap();
        let e = fencing::IpmiAgent::from_params(&p).unwrap_err();
        assert!(
            matches!(&e, AgentError::Config { field, .. } if field == k),
            "{e}"
        );
    }
}

fn bmc_agent(port: u16) -> fencing::IpmiAgent {
    let p = fencing::Params::from_words(&[
        "ip=127.0.0.1".to_owned(),
        format!("ipport={port}"),
        "username=admin".into(),
        "password=secret".into(),
        "packet_timeout=100ms".into(),
    ])
    .unwrap();
    fencing::IpmiAgent::from_params(&p).unwrap()
}

#[test]
fn ipmi_silent_bmc_times_out_within_the_deadline_as_unknown() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let agent = bmc_agent(silent.local_addr().unwrap().port());
    let mut r = req(Action::Off);
    r.timeout = Duration::from_millis(1500);
    let report = execute(&agent, &r);
    assert!(!report.confirms_fenced());
    assert!(
        matches!(report.outcome, Outcome::Unknown(AgentError::Timeout { .. })),
        "{report:?}"
    );
    assert!(report.elapsed < Duration::from_millis(2000), "{report:?}");
    let mut buf = [0u8; 512];
    silent.set_nonblocking(true).unwrap();
    assert!(
        silent.recv(&mut buf).is_ok(),
        "the agent never sent anything"
    );
}

#[test]
fn ipmi_bmc_answering_garbage_is_a_protocol_error_not_a_fence() {
    let bmc = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = bmc.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let responder = std::thread::spawn(move || {
        bmc.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 512];
        let mut n = 0u8;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((len, from)) = bmc.recv_from(&mut buf) {
                n = n.wrapping_add(1);
                // Alternate pure noise with a well-formed RMCP header around noise.
                let mut reply = if n.is_multiple_of(2) {
                    vec![0x06, 0, 0xff, 0x07, 0x06, 0x11]
                } else {
                    vec![]
                };
                reply.extend(buf[..len].iter().rev().map(|b| b ^ n));
                let _ = bmc.send_to(&reply, from);
            }
        }
    });
    let agent = bmc_agent(port);
    let mut r = req(Action::Off);
    r.timeout = Duration::from_millis(1200);
    let report = execute(&agent, &r);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    responder.join().unwrap();
    assert!(!report.confirms_fenced());
    assert!(
        matches!(
            report.outcome,
            Outcome::Unknown(AgentError::Protocol { .. })
        ),
        "{report:?}"
    );
    assert!(report.elapsed < Duration::from_millis(1800), "{report:?}");
}

#[test]
fn ipmi_unreachable_bmc_fails_quickly() {
    // A port nothing listens on: loopback answers with ICMP port unreachable.
    let port = crate::rigs::free_udp_port();
    let agent = bmc_agent(port);
    let report = execute(&agent, &req(Action::Off));
    assert!(!report.confirms_fenced());
    assert!(report.outcome.error().is_some(), "{report:?}");
    assert!(report.elapsed < Duration::from_secs(11), "{report:?}");
}

#[test]
fn trying_a_device_by_hand_maps_the_target_and_reports_missing_mappings() {
    if !IpmiSim::available() {
        return;
    }
    let sim = IpmiSim::start();
    let mut p = sim.params(&["agent=ipmi", "pcmk_host_list=node2"]);
    let runs = fencing::run_by_hand(
        &p,
        Action::Status,
        Some("node2"),
        Some(Duration::from_secs(5)),
        Some(0),
    )
    .unwrap();
    assert_eq!(runs.len(), 1);
    assert!(
        matches!(
            runs[0].report.outcome,
            Outcome::Done(Done::Status(PowerState::On))
        ),
        "{runs:?}"
    );
    let e = fencing::run_by_hand(&p, Action::Off, Some("node3"), None, None).unwrap_err();
    assert!(
        matches!(&e, AgentError::Config { field, .. } if field == "pcmk_host_list"),
        "{e}"
    );
    assert_eq!(sim.power_file(), "1");
    p.set("pcmk_off_timeout", "0s").unwrap();
    let e = fencing::run_by_hand(&p, Action::Off, Some("node2"), None, None).unwrap_err();
    assert!(e.to_string().contains("pcmk_off_timeout"), "{e}");
}

#[test]
fn ipmi_user_privilege_reads_status_but_cannot_power_off() {
    if !IpmiSim::available() {
        return;
    }
    let sim = IpmiSim::start();
    let agent = sim.agent(&["privlvl=user"]);
    let r = execute(&agent, &req(Action::Status));
    assert!(
        matches!(r.outcome, Outcome::Done(Done::Status(PowerState::On))),
        "{r:?}"
    );
    let r = execute(&agent, &req(Action::Off));
    assert!(!r.confirms_fenced());
    assert!(
        matches!(&r.outcome, Outcome::Failed(AgentError::Refused { detail, .. }) if detail.contains("0xd4")),
        "{r:?}"
    );
    assert_eq!(sim.power_file(), "1");
    assert!(rig::process_alive(sim.node_pid()));
}
