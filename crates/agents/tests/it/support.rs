//! Helpers: running code inside a network namespace (a thread that joined it) or inside a
//! private mount namespace (this test binary re-executed under `unshare -m`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use agents::{Registry, ResourceAgent};
use nix::sched::CloneFlags;

/// Runs `f` on a thread that joined `ns`: sockets and children it creates live in `ns`.
pub(crate) fn in_netns<T: Send>(ns: &rig::Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(ns.path()).expect("open netns");
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

const CHILD_ENV: &str = "AGENTS_IT_IN_MOUNT_NS";

/// True when running as the re-executed child inside a private mount namespace. Otherwise
/// re-executes test `name` there (with `env`), asserts that it passed, and returns false.
pub(crate) fn in_private_mount_ns(name: &str, env: &[(&str, String)]) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- child in a private mount namespace ---\n{stdout}\n{stderr}");
    assert!(out.status.success(), "child test {name} failed");
    assert!(stdout.contains("1 passed"), "child test {name} did not run");
    false
}

/// The shared folder with the rig templates.
pub(crate) fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared"))
}

/// A rig template rendered with `@KEY@` replacements.
pub(crate) fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(shared().join("rigs").join(template))
        .unwrap_or_else(|e| panic!("rig template {template}: {e}"));
    for (k, v) in vars {
        text = text.replace(&format!("@{k}@"), v);
    }
    text
}

/// An agent from the default registry.
pub(crate) fn agent(name: &str) -> Arc<dyn ResourceAgent> {
    Registry::default()
        .get(name)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Prints where native and OCF differ and asserts that the lifecycle steps agree.
pub(crate) fn assert_same_lifecycle(
    native: &agents::testing::Report,
    ocf: &agents::testing::Report,
) {
    let diffs = agents::testing::compare(native, ocf);
    for d in &diffs {
        eprintln!("native vs ocf differ: {d}");
    }
    const LIFECYCLE: [&str; 9] = [
        "probe while stopped",
        "stop while stopped",
        "start",
        "start while running",
        "monitor after start",
        "stop",
        "monitor after stop",
        "stop again",
        "stop after a timed-out start",
    ];
    let theirs: std::collections::BTreeMap<String, u8> = ocf.rc_trace().into_iter().collect();
    let lifecycle: Vec<String> = native
        .rc_trace()
        .into_iter()
        .filter(|(label, _)| {
            LIFECYCLE.contains(&label.as_str()) || label.starts_with("monitor depth")
        })
        .filter(|(label, rc)| theirs.get(label).is_some_and(|o| o != rc))
        .map(|(label, rc)| format!("{label}: native={rc} ocf={}", theirs[&label]))
        .collect();
    assert!(
        lifecycle.is_empty(),
        "native and OCF disagree on the lifecycle: {lifecycle:?}"
    );
}
