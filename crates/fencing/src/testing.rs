//! The conformance suite every [`FenceAgent`] must pass, run against a real counterpart.
//!
//! `observe` reads the ground truth independently of the agent (the simulator's power file,
//! `virsh domstate`, the EC2 API through another client), so an agent that lies about power
//! is caught. The suite panics with the failing step; it is for tests only.

use std::time::Duration;

use crate::agent::{Action, Done, FenceAgent, Outcome, PowerState, Request, execute};

/// Timings of one conformance run, per action, for printing.
#[derive(Debug, Default)]
pub struct Timings {
    /// `(action, seconds)` in the order run.
    pub actions: Vec<(Action, f64)>,
}

fn run(
    agent: &dyn FenceAgent,
    action: Action,
    plug: Option<&str>,
    t: &mut Timings,
) -> crate::Report {
    let mut req = Request::new(action, plug);
    req.timeout = Duration::from_secs(30);
    let r = execute(agent, &req);
    t.actions.push((action, r.elapsed.as_secs_f64()));
    r
}

/// Runs the suite: the target must be powered on at the start and is on again at the end.
/// For agents with plugs, `missing_plug` names one the device does not have: fencing it
/// must never be reported as done (a typo in a host map must not look like a fenced node).
pub fn conformance(
    agent: &dyn FenceAgent,
    plug: Option<&str>,
    missing_plug: Option<&str>,
    observe: &dyn Fn() -> PowerState,
) -> Timings {
    let mut t = Timings::default();
    let name = agent.agent_type().to_owned();
    let meta = match run(agent, Action::Metadata, plug, &mut t).outcome {
        Outcome::Done(Done::Metadata(m)) => m,
        other => panic!("{name}: metadata: {other:?}"),
    };
    for a in ["on", "off", "reboot", "status", "monitor"] {
        assert!(meta.supports(a), "{name}: metadata does not declare `{a}`");
    }
    assert_eq!(
        observe(),
        PowerState::On,
        "{name}: target must start powered on"
    );
    let r = run(agent, Action::Monitor, plug, &mut t);
    assert!(
        matches!(r.outcome, Outcome::Done(Done::Monitor)),
        "{name}: monitor: {r:?}"
    );
    let r = run(agent, Action::Status, plug, &mut t);
    assert!(
        matches!(r.outcome, Outcome::Done(Done::Status(PowerState::On))),
        "{name}: status while on: {r:?}"
    );

    let r = run(agent, Action::Off, plug, &mut t);
    assert!(r.confirms_fenced(), "{name}: off: {r:?}");
    assert_eq!(
        observe(),
        PowerState::Off,
        "{name}: off was reported but the target is on"
    );
    let r = run(agent, Action::Status, plug, &mut t);
    assert!(
        matches!(r.outcome, Outcome::Done(Done::Status(PowerState::Off))),
        "{name}: status while off: {r:?}"
    );
    let r = run(agent, Action::Off, plug, &mut t);
    assert!(r.confirms_fenced(), "{name}: off is idempotent: {r:?}");

    let r = run(agent, Action::On, plug, &mut t);
    assert!(
        matches!(r.outcome, Outcome::Done(Done::On)),
        "{name}: on: {r:?}"
    );
    assert_eq!(
        observe(),
        PowerState::On,
        "{name}: on was reported but the target is off"
    );
    let r = run(agent, Action::On, plug, &mut t);
    assert!(
        matches!(r.outcome, Outcome::Done(Done::On)),
        "{name}: on is idempotent: {r:?}"
    );

    let r = run(agent, Action::Reboot, plug, &mut t);
    assert!(r.confirms_fenced(), "{name}: reboot: {r:?}");
    assert_eq!(
        observe(),
        PowerState::On,
        "{name}: target not back on after reboot"
    );

    if let Some(missing) = missing_plug {
        for action in [Action::Off, Action::Reboot] {
            let r = run(agent, action, Some(missing), &mut t);
            assert!(
                !r.confirms_fenced(),
                "{name}: {action} of missing plug {missing} reported done: {r:?}"
            );
        }
        let r = run(agent, Action::Status, Some(missing), &mut t);
        assert!(
            !matches!(r.outcome, Outcome::Done(Done::Status(PowerState::Off))),
            "{name}: status of missing plug {missing} reported off: {r:?}"
        );
        assert_eq!(
            observe(),
            PowerState::On,
            "{name}: fencing a missing plug changed the target"
        );
    }

    if meta.supports("list") {
        match run(agent, Action::List, plug, &mut t).outcome {
            Outcome::Done(Done::List(plugs)) => {
                if let Some(p) = plug {
                    assert!(
                        plugs.iter().any(|x| x.id == p),
                        "{name}: list lacks {p}: {plugs:?}"
                    );
                }
            }
            other => panic!("{name}: list: {other:?}"),
        }
    }
    t
}
