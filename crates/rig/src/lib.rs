//! Test rigs for the real-process tests (dev-dependency only; never used by product code).
//!
//! - [`require`]: a test that needs a real counterpart (root, a binary, a kernel feature) calls
//!   it first. When the counterpart is missing the test is skipped with a printed reason, unless
//!   `HA_REQUIRE_RIGS=1` is set (CI sets it), in which case the test fails: CI can never pass by
//!   skipping.
//! - [`Netns`]: a network namespace named `hc<pid>x<n>` that is deleted on drop, with helpers to
//!   run commands inside it. [`sweep_stale_namespaces`] removes ours left by dead processes.
//! - [`ScratchDir`]: a temporary directory removed on drop.
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping a fixed time.

pub mod ipmi;
pub mod qemu;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace, interface-free name and temp dir the rigs create.
pub const PREFIX: &str = "hc";

/// True when the tests must not skip for a missing rig (`HA_REQUIRE_RIGS=1`).
pub fn rigs_required() -> bool {
    std::env::var("HA_REQUIRE_RIGS").is_ok_and(|v| v == "1")
}

/// Checks a rig precondition. Returns true when the test may run. When it is missing, prints a
/// skip line and returns false, or panics if [`rigs_required`].
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    assert!(!rigs_required(), "rig missing: {what} (HA_REQUIRE_RIGS=1 forbids skipping)");
    eprintln!("skipped: rig missing: {what} (set HA_REQUIRE_RIGS=1 to make this a failure)");
    false
}

/// True when running as root (namespaces, mounts, loop devices need it).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// True when `program` is found on PATH (or is an existing absolute path).
pub fn have_program(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// `require` for root plus a list of programs.
pub fn require_root_and(programs: &[&str]) -> bool {
    if !require("root privileges", is_root()) {
        return false;
    }
    programs.iter().all(|p| require(&format!("program `{p}`"), have_program(p)))
}

/// Polls `cond` every few milliseconds until it is true or `timeout` passes. Returns whether
/// it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Runs a command and returns its output; panics with the command line and stderr on failure.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs a shell snippet; panics on failure.
pub fn sh(script: &str) -> String {
    String::from_utf8_lossy(&run(Command::new("sh").arg("-c").arg(script)).stdout).into_owned()
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A unique name `hc<pid>x<n><suffix>` for this process.
pub fn unique_name(suffix: &str) -> String {
    format!("{PREFIX}{}x{}{suffix}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// A network namespace that exists for the lifetime of this value.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with loopback up and nothing else.
    pub fn new() -> Netns {
        let name = unique_name("");
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the namespace file, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// A command that runs `program` inside this namespace, keeping the caller's mount
    /// namespace (so mounts made by it are visible to the test).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display())).arg("--").arg(program);
        c
    }

    /// Runs a shell snippet inside the namespace; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        String::from_utf8_lossy(&run(self.command("sh").arg("-c").arg(script)).stdout).into_owned()
    }

    /// Connects this namespace to `other` with a veth pair: `ifname` here with `addr` (CIDR),
    /// `peer_ifname` there with `peer_addr`. Both ends are brought up.
    pub fn veth_to(&self, ifname: &str, addr: &str, other: &Netns, peer_ifname: &str, peer_addr: &str) {
        let tmp_a = unique_name("a");
        let tmp_b = unique_name("b");
        // Temporary names live in the root namespace only briefly; keep them under 15 chars.
        let tmp_a: String = tmp_a.chars().rev().take(15).collect::<String>().chars().rev().collect();
        let tmp_b: String = tmp_b.chars().rev().take(15).collect::<String>().chars().rev().collect();
        run(Command::new("ip").args(["link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b]));
        run(Command::new("ip").args(["link", "set", &tmp_a, "netns", &self.name, "name", ifname]));
        run(Command::new("ip").args(["link", "set", &tmp_b, "netns", &other.name, "name", peer_ifname]));
        run(Command::new("ip").args(["-n", &self.name, "addr", "add", addr, "dev", ifname]));
        run(Command::new("ip").args(["-n", &other.name, "addr", "add", peer_addr, "dev", peer_ifname]));
        run(Command::new("ip").args(["-n", &self.name, "link", "set", ifname, "up"]));
        run(Command::new("ip").args(["-n", &other.name, "link", "set", peer_ifname, "up"]));
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside keep the namespace alive; kill them first.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).stderr(Stdio::null()).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// Deletes namespaces named with our prefix whose creating process is gone (left by a test
/// that was killed). Safe to call from any test at start.
pub fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        }
    }
}

/// A temporary directory removed (recursively) on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new() -> ScratchDir {
        Self::new_in(&std::env::temp_dir())
    }

    /// Creates a fresh directory under `parent` (e.g. `/dev/shm` for tmpfs-backed images).
    pub fn new_in(parent: &Path) -> ScratchDir {
        let path = parent.join(unique_name(""));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        ScratchDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// True when process `pid` exists and is not a zombie (reaping here can be slow, so `kill -0`
/// alone lies for a while after SIGKILL).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}
