//! nginx on 127.0.0.1 inside a private network namespace (so the fixed port is safe), with the
//! rig's real config: conformance of the native agent and of the nginx OCF agent, a rejected
//! config, reload, and a crashed master.

use std::time::Duration;

use agents::testing::{Case, conformance, kv};
use agents::{Action, OcfRc, Request, execute};

use crate::support::{agent, assert_same_lifecycle, in_netns, render};

const PORT: &str = "18080";

struct Site {
    dir: rig::ScratchDir,
}

impl Site {
    fn new() -> Site {
        let dir = rig::ScratchDir::new();
        for sub in ["logs", "tmp", "html"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let conf = render(
            "ocf/nginx.conf",
            &[
                ("RIG_DIR", &dir.path().display().to_string()),
                ("PORT", PORT),
            ],
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        Site { dir }
    }

    fn conf(&self) -> String {
        self.dir.path().join("nginx.conf").display().to_string()
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("nginx.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Never leave an nginx behind, whatever failed (its pid file names the master).
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn params(site: &Site) -> Vec<(String, String)> {
    vec![
        ("configfile".into(), site.conf()),
        ("httpd".into(), "/usr/sbin/nginx".into()),
        (
            "status10url".into(),
            format!("http://127.0.0.1:{PORT}/nginx_status"),
        ),
    ]
}

#[test]
fn nginx_native_and_ocf_pass_the_same_conformance_suite() {
    if !rig::require_root_and(&[
        "ip",
        "/usr/sbin/nginx",
        "/usr/lib/ocf/resource.d/heartbeat/nginx",
    ]) {
        return;
    }
    let ns = rig::Netns::new();
    let site = Site::new();
    let p = params(&site);
    let pairs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let case = Case::new("web", &pairs).depths(&[10]);
    let native = in_netns(&ns, || {
        conformance(
            agent("native:builtin:nginx").as_ref(),
            "native nginx",
            &case,
        )
    });
    eprintln!("native nginx:\n{native}");
    let ocf = in_netns(&ns, || {
        conformance(agent("ocf:heartbeat:nginx").as_ref(), "nginx", &case)
    });
    eprintln!("nginx OCF:\n{ocf}");
    native.assert_passed();
    ocf.assert_passed();
    assert_same_lifecycle(&native, &ocf);
}

#[test]
fn nginx_rejects_a_bad_config_reloads_and_notices_a_crash() {
    if !rig::require_root_and(&["ip", "/usr/sbin/nginx"]) {
        return;
    }
    let ns = rig::Netns::new();
    let site = Site::new();
    let p: std::collections::BTreeMap<String, String> = params(&site).into_iter().collect();
    let web = agent("native:builtin:nginx");
    let run = |action, depth| {
        execute(
            web.as_ref(),
            &Request::new(action, "web", p.clone()).depth(depth),
        )
    };
    in_netns(&ns, || {
        let good = std::fs::read_to_string(site.conf()).unwrap();
        std::fs::write(
            site.conf(),
            good.replace("worker_processes 1;", "worker_processes one;"),
        )
        .unwrap();
        let r = run(Action::Start, 0);
        assert_eq!(r.rc, OcfRc::ErrConfigured, "{r}");
        assert!(
            r.reason.as_deref().unwrap().contains("nginx -t rejects"),
            "{r}"
        );
        assert_eq!(run(Action::Monitor, 0).rc, OcfRc::NotRunning);
        std::fs::write(site.conf(), &good).unwrap();

        assert_eq!(run(Action::Start, 0).rc, OcfRc::Success);
        assert_eq!(run(Action::Monitor, 10).rc, OcfRc::Success);
        assert_eq!(run(Action::Reload, 0).rc, OcfRc::Success);
        assert_eq!(run(Action::Monitor, 10).rc, OcfRc::Success);

        // The status URL failing while the master lives is a failure, not a stop.
        let mut wrong = p.clone();
        wrong.insert(
            "status10url".into(),
            format!("http://127.0.0.1:{PORT}/missing"),
        );
        let r = execute(
            web.as_ref(),
            &Request::new(Action::Monitor, "web", wrong).depth(10),
        );
        assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
        assert!(r.reason.as_deref().unwrap().contains("HTTP 404"), "{r}");

        let master = site.pid().unwrap();
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(master),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert!(rig::wait_until(Duration::from_secs(5), || {
            !rig::process_alive(master as u32)
        }));
        let r = run(Action::Monitor, 0);
        assert_eq!(r.rc, OcfRc::NotRunning, "{r}");
        assert!(
            r.reason
                .as_deref()
                .unwrap_or_default()
                .contains("stale pid file"),
            "{r}"
        );
        assert_eq!(run(Action::Stop, 0).rc, OcfRc::Success);
        assert_eq!(run(Action::Reload, 0).rc, OcfRc::NotRunning);
    });
    let _ = kv(&[]);
}

#[test]
fn nginx_stop_forces_a_master_that_ignores_graceful_signals() {
    if !rig::require_root_and(&["ip", "/usr/sbin/nginx"]) {
        return;
    }
    let ns = rig::Netns::new();
    let site = Site::new();
    let p: std::collections::BTreeMap<String, String> = params(&site).into_iter().collect();
    let web = agent("native:builtin:nginx");
    in_netns(&ns, || {
        assert_eq!(
            execute(web.as_ref(), &Request::new(Action::Start, "web", p.clone())).rc,
            OcfRc::Success
        );
        let master = site.pid().unwrap();
        // A stopped process queues QUIT and TERM but cannot act on them; only KILL works.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(master),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
        let r = execute(
            web.as_ref(),
            &Request::new(Action::Stop, "web", p.clone()).timeout(Duration::from_secs(2)),
        );
        assert_eq!(r.rc, OcfRc::Success, "{r}");
        assert!(
            r.reason.as_deref().unwrap_or_default().contains("SIGKILL"),
            "{r}"
        );
        assert!(r.elapsed < Duration::from_secs(3), "{r}");
        assert!(rig::wait_until(Duration::from_secs(3), || {
            !rig::process_alive(master as u32)
        }));
        assert_eq!(
            execute(
                web.as_ref(),
                &Request::new(Action::Monitor, "web", p.clone())
            )
            .rc,
            OcfRc::NotRunning
        );
    });
}
