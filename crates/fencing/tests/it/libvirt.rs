//! The native libvirt agent against libvirtd: the test driver and a tiny real qemu domain.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use fencing::{Action, AgentError, LibvirtAgent, Outcome, Params, PowerState, Request, execute};

use crate::rigs::{Background, Libvirtd, TinyDomain, virsh_out};

fn agent(uri: &str) -> LibvirtAgent {
    LibvirtAgent::from_params(&Params::from_words(&[format!("uri={uri}")]).unwrap()).unwrap()
}

fn state(uri: &str, dom: &str) -> PowerState {
    match virsh_out(uri, &format!("domstate {dom}")).as_str() {
        "shut off" => PowerState::Off,
        _ => PowerState::On,
    }
}

#[test]
fn libvirt_agent_passes_conformance_on_the_test_driver_and_a_real_domain() {
    if !Libvirtd::available() {
        return;
    }
    let _daemon = Libvirtd::start();

    // The test driver's state lives as long as some connection holds it.
    let uri = "test+unix:///default";
    let _holder = Background(
        Command::new("virsh")
            .args(["-c", uri, "event", "--all", "--loop", "--timeout", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    assert!(rig::wait_until(Duration::from_secs(10), || {
        crate::rigs::virsh_ok(uri, "domstate test")
    }));
    let _ = crate::rigs::virsh_ok(uri, "start test");
    let a = agent(uri);
    let t = fencing::testing::conformance(&a, Some("test"), Some("no-such-domain"), &|| {
        state(uri, "test")
    });
    eprintln!("libvirt test driver: {:?}", t.actions);

    // Bad input: unknown domain, unreachable hypervisor.
    let r = execute(&a, &Request::new(Action::Off, Some("no-such-domain")));
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::NoSuchPlug { .. })),
        "{r:?}"
    );
    let bad = agent("test+unix:///default?socket=/nonexistent/sock");
    let r = execute(&bad, &Request::new(Action::Off, Some("test")));
    assert!(!r.confirms_fenced());
    assert!(
        matches!(r.outcome, Outcome::Failed(AgentError::Unreachable { .. })),
        "{r:?}"
    );

    // The same scenarios through the runner with fence_virsh, over ssh to this host.
    if crate::rigs::Sshd::available() {
        let sshd = crate::rigs::Sshd::start(uri);
        let script = fencing::ScriptAgent::new("fence_virsh", &sshd.fence_virsh_params()).unwrap();
        let t =
            fencing::testing::conformance(&script, Some("test"), Some("no-such-domain"), &|| {
                state(uri, "test")
            });
        eprintln!("fence_virsh (test driver): {:?}", t.actions);
        let r = execute(&script, &Request::new(Action::Off, Some("no-such-domain")));
        assert!(!r.confirms_fenced(), "{r:?}");
        assert_eq!(state(uri, "test"), PowerState::On);
    }

    // A tiny real domain (qemu TCG): destroy really ends the qemu process. Defining a
    // domain costs 40-70 s on a busy shared machine, so this part is a slow test.
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        eprintln!("skipped: real qemu domain (set RUN_SLOW_TESTS=1)");
        return;
    }
    if !rig::require(
        "qemu-system-x86_64",
        rig::have_program("qemu-system-x86_64"),
    ) {
        return;
    }
    let dom = match TinyDomain::define_and_start() {
        Ok(d) => d,
        Err(e) => {
            assert!(rig::require(
                &format!("a startable qemu domain ({e})"),
                false
            ));
            return;
        }
    };
    let sys = "qemu:///system";
    let a = agent(sys);
    let t = fencing::testing::conformance(&a, Some(&dom.name), Some("no-such-domain"), &|| {
        state(sys, &dom.name)
    });
    eprintln!("libvirt qemu domain: {:?}", t.actions);
    let mut off = Request::new(Action::Off, Some(&dom.name));
    off.timeout = Duration::from_secs(30);
    assert!(execute(&a, &off).confirms_fenced());
    let ps = Command::new("pgrep")
        .args(["-f", &format!("guest={}", dom.name)])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "qemu still running after a confirmed off"
    );
}
