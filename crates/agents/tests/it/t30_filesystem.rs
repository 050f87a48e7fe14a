//! Filesystem on a loop device over a tmpfs file (ext4), inside a private mount namespace
//! (this test binary re-executed under `unshare -m`): conformance of the native agent and of
//! the Filesystem OCF agent, a process holding the mount, and a device mounted elsewhere.

use std::process::{Command, Stdio};
use std::time::Duration;

use agents::testing::{Case, conformance, kv};
use agents::{Action, OcfRc, Request, execute};

use crate::support::{agent, assert_same_lifecycle, in_private_mount_ns};

/// A loop device over a file on tmpfs, detached on drop.
struct Loop {
    dev: String,
    dir: rig::ScratchDir,
}

impl Loop {
    fn new() -> Loop {
        let dir = rig::ScratchDir::new_in(std::path::Path::new("/dev/shm"));
        let img = dir.path().join("disk.img");
        rig::sh(&format!(
            "truncate -s 64M {0} && mkfs.ext4 -q -F {0}",
            img.display()
        ));
        let dev = rig::sh(&format!("losetup -f --show {}", img.display()))
            .trim()
            .to_owned();
        Loop { dev, dir }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn env_of(l: &Loop) -> Vec<(&'static str, String)> {
    vec![
        ("AGENTS_IT_LOOP", l.dev.clone()),
        ("AGENTS_IT_DIR", l.dir.path().display().to_string()),
    ]
}

fn child_env() -> (String, String) {
    (
        std::env::var("AGENTS_IT_LOOP").expect("loop device from the parent"),
        std::env::var("AGENTS_IT_DIR").expect("scratch dir from the parent"),
    )
}

fn ready() -> bool {
    rig::require_root_and(&["losetup", "mkfs.ext4", "unshare", "fsck"])
}

#[test]
fn filesystem_native_and_ocf_pass_the_same_conformance_suite() {
    // The Filesystem OCF agent answers 5 to everything without modprobe (kmod).
    if !ready()
        || !rig::require_root_and(&["modprobe"])
        || !rig::require(
            "Filesystem OCF agent",
            std::path::Path::new("/usr/lib/ocf/resource.d/heartbeat/Filesystem").exists(),
        )
    {
        return;
    }
    let lp = (std::env::var_os("AGENTS_IT_LOOP").is_none()).then(Loop::new);
    if !in_private_mount_ns(
        "t30_filesystem::filesystem_native_and_ocf_pass_the_same_conformance_suite",
        &lp.as_ref().map(env_of).unwrap_or_default(),
    ) {
        return;
    }
    let (dev, dir) = child_env();
    let mnt = format!("{dir}/mnt");
    let case = Case::new(
        "fs",
        &[("device", &dev), ("directory", &mnt), ("fstype", "ext4")],
    )
    .depths(&[20])
    .bad(
        "nonexistent device",
        &[("device", "/dev/nonexistent-disk")],
        &[OcfRc::ErrInstalled],
    );
    let native = conformance(agent("filesystem").as_ref(), "native filesystem", &case);
    eprintln!("native filesystem:\n{native}");
    let ocf = conformance(
        agent("ocf:heartbeat:Filesystem").as_ref(),
        "Filesystem",
        &case,
    );
    eprintln!("Filesystem:\n{ocf}");
    native.assert_passed();
    // resource-agents 4.12 Filesystem: validate-all checks only `device`, and `fstype` is
    // detected by mount(8) although the meta-data marks it required.
    ocf.assert_passed_except(&[
        "validate-all: nonexistent device",
        "validate-all: missing required `directory`",
        "validate-all: missing required `fstype`",
        "start: missing required `fstype`",
        "nothing runs after start: missing required `fstype`",
    ]);
    assert_same_lifecycle(&native, &ocf);
}

#[test]
fn filesystem_stop_kills_and_names_the_processes_holding_the_mount() {
    if !ready() {
        return;
    }
    let lp = (std::env::var_os("AGENTS_IT_LOOP").is_none()).then(Loop::new);
    if !in_private_mount_ns(
        "t30_filesystem::filesystem_stop_kills_and_names_the_processes_holding_the_mount",
        &lp.as_ref().map(env_of).unwrap_or_default(),
    ) {
        return;
    }
    let (dev, dir) = child_env();
    let mnt = format!("{dir}/mnt");
    let fs = agent("filesystem");
    let p = kv(&[
        ("device", &dev),
        ("directory", &mnt),
        ("fstype", "ext4"),
        ("signal_delay", "300ms"),
    ]);
    let r = execute(fs.as_ref(), &Request::new(Action::Start, "fs", p.clone()));
    assert_eq!(r.rc, OcfRc::Success, "{r}");
    std::fs::write(format!("{mnt}/data"), b"x").unwrap();
    let spawn = |script: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    };
    // One holder by its working directory, one by an open file, one by its executable.
    std::fs::copy("/bin/sleep", format!("{mnt}/napper")).unwrap();
    let mut cwd_holder = spawn(&format!("cd {mnt} && exec sleep 60"));
    let mut fd_holder = spawn(&format!("exec sleep 60 < {mnt}/data"));
    let mut exe_holder = spawn(&format!("cd / && exec {mnt}/napper 60"));
    let cwd_pid = cwd_holder.id();
    let fd_pid = fd_holder.id();
    let exe_pid = exe_holder.id();
    assert!(rig::wait_until(Duration::from_secs(5), || {
        std::fs::read_link(format!("/proc/{cwd_pid}/cwd")).is_ok_and(|p| p.starts_with(&mnt))
            && std::fs::read_link(format!("/proc/{fd_pid}/fd/0")).is_ok_and(|p| p.starts_with(&mnt))
            && std::fs::read_link(format!("/proc/{exe_pid}/exe")).is_ok_and(|p| p.starts_with(&mnt))
    }));

    // Without force_unmount the stop fails and names the holders.
    let mut keep = p.clone();
    keep.insert("force_unmount".into(), "false".into());
    let r = execute(
        fs.as_ref(),
        &Request::new(Action::Stop, "fs", keep).timeout(Duration::from_secs(5)),
    );
    assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
    let reason = r.reason.clone().unwrap();
    assert!(
        reason.contains(&format!("{cwd_pid} sleep (cwd)")),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("{fd_pid} sleep (fd 0)")),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("{exe_pid} napper (exe)")),
        "{reason}"
    );
    assert_eq!(
        execute(fs.as_ref(), &Request::new(Action::Monitor, "fs", p.clone())).rc,
        OcfRc::Success
    );

    let r = execute(
        fs.as_ref(),
        &Request::new(Action::Stop, "fs", p.clone()).timeout(Duration::from_secs(10)),
    );
    assert_eq!(r.rc, OcfRc::Success, "{r}");
    let reason = r.reason.clone().unwrap();
    assert!(
        reason.contains(&format!("{cwd_pid} sleep")) && reason.contains(&format!("{fd_pid} sleep")),
        "{reason}"
    );
    assert!(reason.contains(&format!("{exe_pid} napper")), "{reason}");
    assert!(cwd_holder.wait().is_ok() && fd_holder.wait().is_ok() && exe_holder.wait().is_ok());
    assert_eq!(
        execute(fs.as_ref(), &Request::new(Action::Monitor, "fs", p.clone())).rc,
        OcfRc::NotRunning
    );
}

#[test]
fn filesystem_refuses_a_device_mounted_elsewhere_and_flags_a_foreign_mount() {
    if !ready() {
        return;
    }
    let lp = (std::env::var_os("AGENTS_IT_LOOP").is_none()).then(Loop::new);
    if !in_private_mount_ns(
        "t30_filesystem::filesystem_refuses_a_device_mounted_elsewhere_and_flags_a_foreign_mount",
        &lp.as_ref().map(env_of).unwrap_or_default(),
    ) {
        return;
    }
    let (dev, dir) = child_env();
    let fs = agent("filesystem");
    let at = |sub: &str| {
        kv(&[
            ("device", &dev),
            ("directory", &format!("{dir}/{sub}")),
            ("fstype", "ext4"),
        ])
    };
    assert_eq!(
        execute(fs.as_ref(), &Request::new(Action::Start, "a", at("one"))).rc,
        OcfRc::Success
    );
    let r = execute(fs.as_ref(), &Request::new(Action::Start, "b", at("two")));
    assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
    assert!(
        r.reason
            .unwrap()
            .contains("refusing to mount it a second time")
    );
    assert_eq!(
        execute(fs.as_ref(), &Request::new(Action::Monitor, "b", at("two"))).rc,
        OcfRc::NotRunning
    );
    assert_eq!(
        execute(fs.as_ref(), &Request::new(Action::Stop, "a", at("one"))).rc,
        OcfRc::Success
    );

    // Something else mounted on our directory: the resource has failed, it is not stopped.
    let tmp = kv(&[
        ("device", "tmpfs"),
        ("directory", &format!("{dir}/two")),
        ("fstype", "tmpfs"),
        ("options", "size=1m"),
    ]);
    assert_eq!(
        execute(fs.as_ref(), &Request::new(Action::Start, "t", tmp.clone())).rc,
        OcfRc::Success
    );
    let r = execute(fs.as_ref(), &Request::new(Action::Monitor, "b", at("two")));
    assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
    let r = execute(fs.as_ref(), &Request::new(Action::Start, "b", at("two")));
    assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
    assert_eq!(
        execute(fs.as_ref(), &Request::new(Action::Stop, "t", tmp)).rc,
        OcfRc::Success
    );
    let r = execute(
        fs.as_ref(),
        &Request::new(
            Action::Start,
            "w",
            kv(&[
                ("device", &dev),
                ("directory", &format!("{dir}/three")),
                ("fstype", "nosuchfs"),
            ]),
        ),
    );
    assert_eq!(r.rc, OcfRc::ErrInstalled, "{r}");
    assert!(r.reason.unwrap().contains("`fstype`"));
}

#[test]
fn filesystem_fsck_policy_force_refuses_a_corrupt_filesystem() {
    if !rig::require_root_and(&["fsck", "fsck.ext4"]) {
        return;
    }
    let dir = rig::ScratchDir::new_in(std::path::Path::new("/dev/shm"));
    let img = dir.path().join("zeros.img");
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    let fs = agent("filesystem");
    let p = kv(&[
        ("device", &img.display().to_string()),
        ("directory", &dir.path().join("mnt").display().to_string()),
        ("fstype", "ext4"),
        ("run_fsck", "force"),
    ]);
    let r = execute(fs.as_ref(), &Request::new(Action::Start, "z", p.clone()));
    assert_eq!(r.rc, OcfRc::ErrGeneric, "{r}");
    assert!(r.reason.as_deref().unwrap().contains("fsck of"), "{r}");
    assert_eq!(
        execute(fs.as_ref(), &Request::new(Action::Monitor, "z", p)).rc,
        OcfRc::NotRunning
    );
}
