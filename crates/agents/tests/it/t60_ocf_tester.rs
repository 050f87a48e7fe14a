//! `ocf-tester` (resource-agents' own conformance tool, including the meta-data DTD check) on
//! the native agents, run through the OCF calling convention (`examples/ocf_native.rs` behind a
//! one-line wrapper script).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `ocf_native` example, built next to this test binary by `cargo test`.
fn ocf_native() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let debug_dir = exe.parent().and_then(Path::parent).expect("target dir");
    debug_dir.join("examples").join("ocf_native")
}

fn wrapper(dir: &Path, kind: &str) -> PathBuf {
    let path = dir.join(kind.replace(':', "_"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec {} {kind} \"$@\"\n", ocf_native().display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn ready() -> bool {
    rig::require_root_and(&["ocf-tester", "xmllint"])
        && rig::require(
            "the ocf_native example (built by cargo test)",
            ocf_native().exists(),
        )
}

fn assert_passes(mut cmd: Command, what: &str) {
    let out = cmd.output().expect("run ocf-tester");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ocf-tester {what}:\n{text}");
    assert!(out.status.success(), "ocf-tester failed on {what}:\n{text}");
    assert!(text.contains("passed all tests"), "{text}");
}

#[test]
fn ocf_tester_passes_the_native_vip_and_nginx() {
    if !ready() || !rig::require_root_and(&["ip", "/usr/sbin/nginx"]) {
        return;
    }
    let dir = rig::ScratchDir::new();
    let ns = rig::Netns::new();
    let peer = rig::Netns::new();
    ns.veth_to("eth0", "10.213.1.1/24", &peer, "eth0", "10.213.1.2/24");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "ocf-tester", "-n", "vip"])
        .args([
            "-o",
            "ip=10.213.1.100",
            "-o",
            "cidr_netmask=24",
            "-o",
            "nic=eth0",
        ])
        .arg(wrapper(dir.path(), "vip"));
    assert_passes(cmd, "native vip");

    for sub in ["logs", "tmp", "html"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let conf = crate::support::render(
        "ocf/nginx.conf",
        &[
            ("RIG_DIR", &dir.path().display().to_string()),
            ("PORT", "18080"),
        ],
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "ocf-tester", "-n", "web"])
        .arg("-o")
        .arg(format!("configfile={}", conf_path.display()))
        .args(["-o", "status10url=http://127.0.0.1:18080/nginx_status"])
        .arg(wrapper(dir.path(), "native:builtin:nginx"));
    assert_passes(cmd, "native nginx");
}

#[test]
fn ocf_tester_passes_the_native_filesystem() {
    if !ready() || !rig::require_root_and(&["losetup", "mkfs.ext4", "unshare"]) {
        return;
    }
    let dir = rig::ScratchDir::new_in(Path::new("/dev/shm"));
    let img = dir.path().join("disk.img");
    rig::sh(&format!(
        "truncate -s 64M {0} && mkfs.ext4 -q -F {0}",
        img.display()
    ));
    let dev = rig::sh(&format!("losetup -f --show {}", img.display()))
        .trim()
        .to_owned();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(dev.clone());
    // The whole ocf-tester run happens in a private mount namespace.
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "ocf-tester", "-n", "fs"])
        .arg("-o")
        .arg(format!("device={dev}"))
        .arg("-o")
        .arg(format!("directory={}", dir.path().join("mnt").display()))
        .args(["-o", "fstype=ext4"])
        .arg(wrapper(dir.path(), "filesystem"));
    assert_passes(cmd, "native filesystem");
}
