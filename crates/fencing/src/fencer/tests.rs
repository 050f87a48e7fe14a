use super::*;
use crate::params::Params;

fn dev(id: &str, words: &[&str]) -> DeviceConfig {
    DeviceConfig::new(id, Params::from_words(words).unwrap(), true).unwrap()
}

fn req(target: &str, action: Action) -> FenceRequest {
    FenceRequest {
        target: target.into(),
        action,
        requester: "controller".into(),
        origin: "node1".into(),
        allow_self: false,
        extra_delay: Duration::ZERO,
        timeout: Duration::from_secs(60),
    }
}

const T0: Instant = Instant::from_nanos(1_000_000_000);

/// Drives a fencer with scripted device answers; returns the runs it asked for (as
/// `device action plug` strings) and the finish.
fn drive(
    f: &mut Fencer,
    request: FenceRequest,
    mut answer: impl FnMut(&str, Action, Option<&str>) -> StepResult,
) -> (Vec<String>, Finished) {
    let mut now = T0;
    let mut out = Vec::new();
    f.handle(now, Input::Request(request), &mut out);
    let mut runs = Vec::new();
    for _ in 0..100 {
        let Some(e) = out.pop() else {
            let at = f.next_wakeup().expect("a pending request has a wakeup");
            now = at;
            f.handle(now, Input::Wakeup, &mut out);
            continue;
        };
        match e {
            Effect::Run {
                op,
                step,
                device,
                action,
                plug,
            } => {
                runs.push(format!(
                    "{device} {action} {}",
                    plug.as_deref().unwrap_or("-")
                ));
                let result = answer(&device, action, plug.as_deref());
                f.handle(now, Input::Step { op, step, result }, &mut out);
            }
            Effect::Finished(done) => {
                assert!(out.is_empty());
                assert_eq!(f.in_progress(), 0);
                return (runs, *done);
            }
        }
    }
    panic!("request never finished: {runs:?}");
}

#[test]
fn local_node_is_not_fenced_at_its_own_request() {
    let mut f = Fencer::new(
        "node1",
        vec![dev("ipmi1", &["pcmk_host_list=node1"])],
        vec![],
        1,
    );
    let (runs, done) = drive(&mut f, req("node1", Action::Off), |_, _, _| {
        StepResult::Confirmed
    });
    assert!(runs.is_empty());
    assert_eq!(done.result, FenceResult::Refused);
    assert!(
        done.errors[0].contains("at its own request"),
        "{:?}",
        done.errors
    );

    let mut r = req("node1", Action::Off);
    r.origin = "node2".into();
    let (runs, done) = drive(&mut f, r.clone(), |_, _, _| StepResult::Confirmed);
    assert!(runs.is_empty());
    assert_eq!(done.result, FenceResult::Refused);

    r.allow_self = true;
    let (runs, done) = drive(&mut f, r, |_, _, _| StepResult::Confirmed);
    assert_eq!(runs, ["ipmi1 off node1"]);
    assert_eq!(done.result, FenceResult::Done);
}

#[test]
fn missing_host_mapping_fails_at_once_with_the_fix() {
    let mut f = Fencer::new(
        "node1",
        vec![dev("ipmi1", &["pcmk_host_list=node3"])],
        vec![],
        1,
    );
    let (runs, done) = drive(&mut f, req("node2", Action::Off), |_, _, _| {
        StepResult::Confirmed
    });
    assert!(runs.is_empty());
    assert_eq!(done.result, FenceResult::Failed);
    assert!(
        done.errors[0].contains("pcmk_host_map"),
        "{:?}",
        done.errors
    );
}

#[test]
fn host_map_translates_node_to_plugs_and_every_plug_must_confirm() {
    let mut f = Fencer::new(
        "node1",
        vec![dev("pdu", &["pcmk_host_map=node2:4,5"])],
        vec![],
        1,
    );
    let (runs, done) = drive(&mut f, req("node2", Action::Off), |_, _, _| {
        StepResult::Confirmed
    });
    assert_eq!(runs, ["pdu off 4", "pdu off 5"]);
    assert_eq!(done.result, FenceResult::Done);

    let (_, done) = drive(&mut f, req("node2", Action::Off), |_, _, p| {
        if p == Some("5") {
            StepResult::Unknown("no answer".into())
        } else {
            StepResult::Confirmed
        }
    });
    assert_eq!(
        done.result,
        FenceResult::Failed,
        "an unknown outcome never counts as fenced"
    );
}

#[test]
fn devices_without_topology_are_tried_in_priority_order_until_one_confirms() {
    let devices = vec![
        dev("b-virsh", &["pcmk_host_list=node2"]),
        dev("a-ipmi", &["pcmk_host_list=node2", "priority=5"]),
        dev("c-other", &["pcmk_host_list=node3"]),
    ];
    let mut f = Fencer::new("node1", devices, vec![], 1);
    let (runs, done) = drive(&mut f, req("node2", Action::Reboot), |d, _, _| {
        if d == "b-virsh" {
            StepResult::Failed("auth".into())
        } else {
            StepResult::Confirmed
        }
    });
    assert_eq!(runs, ["b-virsh reboot node2", "a-ipmi reboot node2"]);
    assert_eq!(done.result, FenceResult::Done);
    assert_eq!(done.devices, ["a-ipmi"]);
    assert_eq!(done.errors.len(), 1);
}

#[test]
fn topology_levels_need_every_device_and_fall_through_in_order() {
    let devices = vec![
        dev("psu1", &["pcmk_host_check=none"]),
        dev("psu2", &["pcmk_host_check=none"]),
        dev("ipmi", &["pcmk_host_check=none"]),
    ];
    let topology = vec![
        Level {
            index: 2,
            target: LevelTarget::Pattern("node*".into()),
            devices: vec!["ipmi".into()],
        },
        Level {
            index: 1,
            target: LevelTarget::Node("node2".into()),
            devices: vec!["psu1".into(), "psu2".into()],
        },
    ];
    let mut f = Fencer::new("node1", devices, topology, 1);
    assert!(f.validate().is_empty());
    let (runs, done) = drive(&mut f, req("node2", Action::Off), |d, _, _| {
        if d == "psu2" {
            StepResult::Failed("outlet stuck".into())
        } else {
            StepResult::Confirmed
        }
    });
    assert_eq!(runs, ["psu1 off node2", "psu2 off node2", "ipmi off node2"]);
    assert_eq!((done.result, done.level), (FenceResult::Done, Some(2)));

    // A reboot through a two-device level: off both, then on both; a failed "on" still
    // leaves the node fenced.
    let (runs, done) = drive(&mut f, req("node2", Action::Reboot), |_, a, _| {
        if a == Action::On {
            StepResult::Failed("no power".into())
        } else {
            StepResult::Confirmed
        }
    });
    assert_eq!(
        runs,
        [
            "psu1 off node2",
            "psu2 off node2",
            "psu1 on node2",
            "psu2 on node2"
        ]
    );
    assert_eq!((done.result, done.level), (FenceResult::Done, Some(1)));
    assert_eq!(done.errors.len(), 2);

    let bad = Fencer::new(
        "n",
        vec![],
        vec![Level {
            index: 12,
            target: LevelTarget::Node("x".into()),
            devices: vec!["nope".into()],
        }],
        1,
    );
    assert_eq!(bad.validate().len(), 2);
}

#[test]
fn dynamic_list_and_status_checks_query_the_device_first() {
    let devices = vec![
        DeviceConfig::new("a-libvirt", Params::default(), true).unwrap(),
        DeviceConfig::new("b-ipmi", Params::default(), false).unwrap(),
    ];
    let mut f = Fencer::new("node1", devices, vec![], 1);
    let (runs, done) = drive(&mut f, req("node2", Action::Off), |d, a, _| match (d, a) {
        ("a-libvirt", Action::List) => StepResult::List(vec!["node3".into()]),
        ("b-ipmi", Action::Status) => StepResult::Status(PowerState::On),
        _ => StepResult::Confirmed,
    });
    assert_eq!(
        runs,
        [
            "a-libvirt list -",
            "b-ipmi status node2",
            "b-ipmi off node2"
        ]
    );
    assert_eq!(done.devices, ["b-ipmi"]);
    assert!(
        done.errors[0].contains("not in the device's list"),
        "{:?}",
        done.errors
    );
}

#[test]
fn random_delay_is_waited_once_and_is_reproducible_from_the_seed() {
    let devices = || {
        vec![dev(
            "ipmi",
            &[
                "pcmk_host_list=node2",
                "pcmk_delay_base=1s",
                "pcmk_delay_max=4s",
            ],
        )]
    };
    let run = |seed| {
        let mut f = Fencer::new("node1", devices(), vec![], seed);
        let mut out = Vec::new();
        f.handle(T0, Input::Request(req("node2", Action::Off)), &mut out);
        assert!(out.is_empty(), "acted before the delay");
        let at = f.next_wakeup().unwrap();
        f.handle(
            Instant::from_nanos(at.as_nanos() - 1_000_000),
            Input::Wakeup,
            &mut out,
        );
        assert!(out.is_empty(), "acted before the delay ended");
        f.handle(at, Input::Wakeup, &mut out);
        assert!(matches!(out.as_slice(), [Effect::Run { .. }]));
        at - T0
    };
    let d = run(42);
    assert!(
        d >= Duration::from_secs(1) && d <= Duration::from_secs(4),
        "{d}"
    );
    assert_eq!(run(42), d);
    let spread: std::collections::BTreeSet<u64> = (0..20).map(|s| run(s).as_millis()).collect();
    assert!(spread.len() > 5, "{spread:?}");

    let mut r = req("node2", Action::Off);
    r.extra_delay = Duration::from_secs(10);
    let mut f = Fencer::new("node1", devices(), vec![], 3);
    let (_, done) = drive(&mut f, r, |_, _, _| StepResult::Confirmed);
    assert!(done.delay >= Duration::from_secs(11));
    assert_eq!(done.finished - done.started, done.delay);
}

#[test]
fn a_hanging_device_ends_in_timeout_and_late_answers_are_ignored() {
    let mut f = Fencer::new(
        "node1",
        vec![dev("ipmi", &["pcmk_host_list=node2"])],
        vec![],
        1,
    );
    let mut out = Vec::new();
    let mut r = req("node2", Action::Off);
    r.timeout = Duration::from_secs(30);
    f.handle(T0, Input::Request(r), &mut out);
    let Some(Effect::Run { op, step, .. }) = out.pop() else {
        panic!("{out:?}")
    };
    assert_eq!(f.next_wakeup(), Some(T0 + Duration::from_secs(30)));
    f.handle(T0 + Duration::from_secs(30), Input::Wakeup, &mut out);
    let Some(Effect::Finished(done)) = out.pop() else {
        panic!("{out:?}")
    };
    assert_eq!(done.result, FenceResult::TimedOut);
    f.handle(
        T0 + Duration::from_secs(31),
        Input::Step {
            op,
            step,
            result: StepResult::Confirmed,
        },
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn glob_patterns_match_node_names() {
    assert!(glob("node*", "node12"));
    assert!(glob("*-db", "eu-db"));
    assert!(glob("a*c*e", "abcde"));
    assert!(!glob("node*", "nod"));
    assert!(!glob("node", "node1"));
}

#[test]
fn random_device_answers_never_yield_fenced_without_confirmation() {
    use rand::{Rng, SeedableRng};
    for seed in 0..400u64 {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let ndev = rng.random_range(1..=4);
        let devices: Vec<DeviceConfig> = (0..ndev)
            .map(|i| {
                let check = [
                    "pcmk_host_list=node2",
                    "pcmk_host_check=none",
                    "pcmk_host_map=node2:p1,p2",
                    "pcmk_host_check=dynamic-list",
                    "pcmk_host_check=status",
                ][rng.random_range(0..5)];
                dev(&format!("d{i}"), &[check])
            })
            .collect();
        let topology = if rng.random_bool(0.5) {
            vec![
                Level {
                    index: 1,
                    target: LevelTarget::Node("node2".into()),
                    devices: vec!["d0".into()],
                },
                Level {
                    index: 2,
                    target: LevelTarget::Pattern("node*".into()),
                    devices: (0..ndev).map(|i| format!("d{i}")).collect(),
                },
            ]
        } else {
            vec![]
        };
        let mut f = Fencer::new("node1", devices, topology, seed);
        let action = [Action::Off, Action::Reboot][rng.random_range(0..2)];
        let mut confirmed: Vec<String> = Vec::new();
        let (runs, done) = drive(&mut f, req("node2", action), |d, a, _| {
            let r = match rng.random_range(0..6) {
                0 => StepResult::Failed("refused".into()),
                1 => StepResult::Unknown("no answer".into()),
                2 => StepResult::Status(PowerState::On),
                3 => StepResult::List(vec!["node2".into(), "p1".into(), "p2".into()]),
                _ => StepResult::Confirmed,
            };
            if r == StepResult::Confirmed && a.fences() {
                confirmed.push(d.to_owned());
            }
            r
        });
        if done.result == FenceResult::Done {
            assert!(
                !done.devices.is_empty(),
                "seed {seed}: done without devices; runs {runs:?}"
            );
            for d in &done.devices {
                assert!(
                    confirmed.contains(d),
                    "seed {seed}: {d} never confirmed a power-off; runs {runs:?}"
                );
            }
        } else {
            assert!(done.devices.is_empty(), "seed {seed}");
        }
    }
}

#[test]
fn fencer_core_stays_sans_io() {
    let sources = [
        ("mod.rs", include_str!("mod.rs")),
        ("device.rs", include_str!("device.rs")),
    ];
    let forbidden = [
        "std::time",
        "Instant::now",
        "SystemTime",
        "std::thread",
        "std::net",
        "std::fs",
        "std::process",
        "HashMap",
        "HashSet",
        "thread_rng",
        "rand::rng()",
        "tokio",
    ];
    for (file, text) in sources {
        for word in forbidden {
            assert!(
                !text.contains(word),
                "fencer/{file} uses `{word}`: the core must stay sans-IO"
            );
        }
    }
}
