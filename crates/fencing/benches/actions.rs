//! Time of each fence action: the native agents next to the fence-agents scripts, against
//! the same simulated device. Prints median (min–max) seconds per action.
//!
//! `cargo bench -p fencing --bench actions` (root; ipmi_sim and fence-agents installed;
//! libvirtd running or startable for the libvirt rows). `BENCH_RUNS` sets the native
//! repetitions (default 20); the scripts run fewer times because fence_ipmilan sleeps
//! `power_wait` (2 s by default) after every power change.

use std::time::Duration;

use fencing::{Action, FenceAgent, Outcome, Params, Request, ScriptAgent, execute};

#[path = "../tests/it/rigs.rs"]
#[allow(dead_code, unreachable_pub)]
mod rigs;

#[path = "../tests/it/moto.rs"]
#[allow(dead_code, unreachable_pub)]
mod moto;

/// Set when this binary runs inside the EC2 rig's loopback-only namespace.
const EC2_INNER: &str = "FENCING_BENCH_EC2_INNER";

/// The EC2 rows, measured inside the namespace (the code under test never runs outside it).
fn ec2_inner(runs: usize) {
    assert!(
        moto::ns_is_loopback_only_here(),
        "not inside a loopback-only namespace"
    );
    let ids: Vec<String> = std::env::var("FENCING_IT_EC2_IDS")
        .unwrap()
        .split(' ')
        .map(String::from)
        .collect();
    let native = fencing::Ec2Agent::from_params(&Params::default()).unwrap();
    for a in [
        Action::Status,
        Action::Off,
        Action::On,
        Action::Reboot,
        Action::List,
    ] {
        row(
            "moto",
            "native ec2",
            a,
            &measure(&native, a, Some(&ids[0]), runs),
        );
    }
    if std::env::var("FENCING_IT_FENCE_AWS").is_ok_and(|v| v == "1") {
        let p = Params::from_words(&[
            "region=us-east-1",
            "access_key=testing",
            "secret_key=testing",
        ])
        .unwrap();
        let script = ScriptAgent::new("fence_aws", &p).unwrap();
        let n = (runs / 4).max(3);
        for a in [
            Action::Status,
            Action::Off,
            Action::On,
            Action::Reboot,
            Action::List,
        ] {
            row(
                "moto",
                "fence_aws",
                a,
                &measure(&script, a, Some(&ids[0]), n),
            );
        }
    }
}

fn measure(agent: &dyn FenceAgent, action: Action, plug: Option<&str>, runs: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..runs {
        // Start every power action from the state where it has work to do.
        match action {
            Action::Off | Action::Reboot => prepare(agent, Action::On, plug),
            Action::On => prepare(agent, Action::Off, plug),
            _ => {}
        }
        let mut req = Request::new(action, plug);
        req.timeout = Duration::from_secs(30);
        let r = execute(agent, &req);
        assert!(
            matches!(r.outcome, Outcome::Done(_)),
            "{} {action}: {r:?}",
            agent.agent_type()
        );
        out.push(r.elapsed.as_secs_f64());
    }
    out
}

fn prepare(agent: &dyn FenceAgent, action: Action, plug: Option<&str>) {
    let mut req = Request::new(action, plug);
    req.timeout = Duration::from_secs(30);
    let r = execute(agent, &req);
    assert!(
        matches!(r.outcome, Outcome::Done(_)),
        "prepare {action}: {r:?}"
    );
}

fn summary(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    format!(
        "{median:8.4} s ({:.4}–{:.4}, n={})",
        s[0],
        s[s.len() - 1],
        s.len()
    )
}

fn row(device: &str, agent: &str, action: Action, v: &[f64]) {
    println!(
        "{device:<8} {agent:<28} {:<7} {}",
        action.as_str(),
        summary(v)
    );
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    if std::env::var_os(EC2_INNER).is_some() {
        ec2_inner(runs);
        return;
    }
    println!("device   agent                        action  median (min–max)");

    if rigs::IpmiSim::available() {
        let sim = rigs::IpmiSim::start();
        let native = sim.agent(&[]);
        for a in [
            Action::Status,
            Action::Monitor,
            Action::Off,
            Action::On,
            Action::Reboot,
        ] {
            row(
                "ipmi_sim",
                "native ipmi",
                a,
                &measure(&native, a, None, runs),
            );
        }
        if rig::have_program("fence_ipmilan") {
            let port = sim.port.to_string();
            let script = |power_wait: &str| {
                let p = Params::from_words(&[
                    "ip=127.0.0.1".to_owned(),
                    format!("ipport={port}"),
                    "username=admin".into(),
                    "password=secret".into(),
                    "lanplus=1".into(),
                    "cipher=3".into(),
                    format!("power_wait={power_wait}"),
                ])
                .unwrap();
                ScriptAgent::new("fence_ipmilan", &p).unwrap()
            };
            let tuned = script("0");
            let default = script("2");
            let n = (runs / 4).max(3);
            for a in [
                Action::Status,
                Action::Monitor,
                Action::Off,
                Action::On,
                Action::Reboot,
            ] {
                row(
                    "ipmi_sim",
                    "fence_ipmilan power_wait=0",
                    a,
                    &measure(&tuned, a, None, n),
                );
            }
            for a in [Action::Off, Action::On, Action::Reboot] {
                row(
                    "ipmi_sim",
                    "fence_ipmilan (default)",
                    a,
                    &measure(&default, a, None, 2),
                );
            }
        } else {
            println!("fence_ipmilan: not installed (apt-get install fence-agents)");
        }
    } else {
        println!("ipmi_sim: not available, IPMI rows skipped");
    }

    if rigs::Libvirtd::available() {
        let _daemon = rigs::Libvirtd::start();
        let uri = "test+unix:///default";
        let _holder = rigs::Background(
            std::os::unix::process::CommandExt::process_group(
                std::process::Command::new("virsh")
                    .args(["-c", uri, "event", "--all", "--loop", "--timeout", "600"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null()),
                0,
            )
            .spawn()
            .unwrap(),
        );
        rig::wait_until(Duration::from_secs(10), || {
            rigs::virsh_ok(uri, "domstate test")
        });
        let native = fencing::LibvirtAgent::from_params(
            &Params::from_words(&[format!("uri={uri}")]).unwrap(),
        )
        .unwrap();
        for a in [
            Action::Status,
            Action::Off,
            Action::On,
            Action::Reboot,
            Action::List,
        ] {
            row(
                "libvirt",
                "native libvirt (test driver)",
                a,
                &measure(&native, a, Some("test"), runs),
            );
        }
        if rigs::Sshd::available() {
            let sshd = rigs::Sshd::start(uri);
            let script = ScriptAgent::new("fence_virsh", &sshd.fence_virsh_params()).unwrap();
            let n = (runs / 4).max(3);
            for a in [
                Action::Status,
                Action::Off,
                Action::On,
                Action::Reboot,
                Action::List,
            ] {
                row(
                    "libvirt",
                    "fence_virsh (ssh to localhost)",
                    a,
                    &measure(&script, a, Some("test"), n),
                );
            }
        }
    }

    if let Some(rig) = moto::MotoRig::start() {
        let exe = std::env::current_exe().unwrap();
        let out = rig.inner(&exe, &[], EC2_INNER);
        print!("{}", String::from_utf8_lossy(&out.stdout));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
