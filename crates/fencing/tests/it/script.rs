//! The fence-agents runner: fence_ipmilan against the same ipmi_sim as the native agent.

use std::time::Duration;

use fencing::{
    Action, AgentError, Done, Outcome, Params, PowerState, Request, ScriptAgent, execute,
};

use crate::rigs::IpmiSim;

fn fence_ipmilan(sim: &IpmiSim, password: &str) -> ScriptAgent {
    let p = Params::from_words(&[
        "ip=127.0.0.1".to_owned(),
        format!("ipport={}", sim.port),
        "username=admin".into(),
        format!("password={password}"),
        "lanplus=1".into(),
        "cipher=3".into(),
        // The default power_wait=2 sleeps 2 s after every power change; the bench measures it.
        "power_wait=0".into(),
        "pcmk_host_list=node1".into(),
    ])
    .unwrap();
    ScriptAgent::new("fence_ipmilan", &p).unwrap()
}

#[test]
fn fence_ipmilan_through_the_runner_passes_conformance_and_kills_the_node() {
    if !IpmiSim::available()
        || !rig::require(
            "fence_ipmilan (fence-agents)",
            rig::have_program("fence_ipmilan"),
        )
    {
        return;
    }
    let sim = IpmiSim::start();
    let agent = fence_ipmilan(&sim, "secret");
    let node = sim.node_pid();
    let power = || match sim.power_file().as_str() {
        "0" => PowerState::Off,
        _ => PowerState::On,
    };
    let t = fencing::testing::conformance(&agent, None, None, &power);
    eprintln!("fence_ipmilan: {:?}", t.actions);
    assert!(
        rig::wait_until(Duration::from_secs(3), || !rig::process_alive(node)),
        "node survived off"
    );

    // Metadata parsed from the script's XML.
    let r = execute(&agent, &Request::new(Action::Metadata, None));
    let Outcome::Done(Done::Metadata(m)) = r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(m.name, "fence_ipmilan");
    assert!(m.parameters.iter().any(|p| p.name == "ip"));

    // Wrong password: failed, power untouched, password not echoed.
    let bad = fence_ipmilan(&sim, "wrong-password-xyz");
    let r = execute(&bad, &Request::new(Action::Off, None));
    assert!(!r.confirms_fenced());
    assert!(r.outcome.error().is_some(), "{r:?}");
    assert_eq!(sim.power_file(), "1");
    assert!(!format!("{r:?}").contains("wrong-password-xyz"));
}

#[test]
fn runner_maps_exit_codes_and_kills_hanging_scripts() {
    let dir = rig::ScratchDir::new();
    let script = dir.path().join("fence_fake");
    // A stand-in *script* (the runner's counterpart is any executable speaking the
    // fence-agents stdin protocol): it reads its options and behaves per `mode`.
    std::fs::write(
        &script,
        "#!/bin/sh\nwhile read l; do case $l in action=*) a=${l#action=};; mode=*) m=${l#mode=};; esac; done\n\
         case $m in hang) exec sleep 100;; garbage) echo '<resource-agent'; exit 0;; esac\n\
         case $a in status) echo 'Status: OFF'; exit 2;; off) echo 'Failed: Unable to connect/login to fencing device' >&2; exit 1;; metadata) echo '<html/>'; exit 0;; list-status) printf 'n1,alias1,on\\nn2,,off\\n'; exit 0;; esac; exit 1\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let agent = |mode: &str| {
        let p = Params::from_words(&[format!("mode={mode}")]).unwrap();
        ScriptAgent::new(script.to_str().unwrap(), &p).unwrap()
    };
    let a = agent("normal");
    let r = execute(&a, &Request::new(Action::Status, None));
    assert!(
        matches!(r.outcome, Outcome::Done(Done::Status(PowerState::Off))),
        "{r:?}"
    );
    let r = execute(&a, &Request::new(Action::Off, None));
    assert!(
        matches!(
            r.outcome,
            Outcome::Failed(AgentError::Script { code: 1, .. })
        ),
        "{r:?}"
    );
    let r = execute(&a, &Request::new(Action::List, None));
    let Outcome::Done(Done::List(plugs)) = r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(plugs.len(), 2);
    let r = execute(&a, &Request::new(Action::Metadata, None));
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::Protocol { .. })),
        "{r:?}"
    );

    let mut req = Request::new(Action::Off, None);
    req.timeout = Duration::from_millis(500);
    let r = execute(&agent("hang"), &req);
    assert!(
        matches!(r.outcome, Outcome::Unknown(AgentError::Timeout { .. })),
        "{r:?}"
    );
    assert!(r.elapsed < Duration::from_secs(2), "{r:?}");
}
