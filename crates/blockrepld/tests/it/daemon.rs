//! Real-process tests: two `blockrepld`s in two network namespaces joined by a veth pair,
//! tmpfs backing files, clients we did not write (qemu-io, mkfs/fsck/mount through
//! loop-over-FUSE). Each scenario cleans up through Drop guards.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use blockrepl::control::{self, Request, Response};
use blockrepl::{ConnState, DiskState, ReplState, Role, Status};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIZE: u64 = 16 << 20;
const PORT: u16 = 7801;

pub(crate) struct Daemon {
    pub(crate) child: Option<Child>,
    pub(crate) args: Vec<String>,
    pub(crate) ns: String,
    pub(crate) sock: PathBuf,
    pub(crate) nbd: PathBuf,
    pub(crate) backing: PathBuf,
    pub(crate) fuse: Option<PathBuf>,
}

impl Daemon {
    pub(crate) fn start(&mut self) {
        self.unmount_fuse();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_blockrepld"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var("BLOCKREPL_DAEMON_LOG").is_err() {
            c.stderr(Stdio::null());
        }
        self.child = Some(c.spawn().expect("spawn blockrepld"));
        let sock = self.sock.clone();
        assert!(
            rig::wait_until(Duration::from_secs(10), || control::call(&sock, &Request::Status).is_ok()),
            "blockrepld did not come up"
        );
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.unmount_fuse();
    }

    /// Unmounts a FUSE mount left by a killed daemon (lazily if a loop device still holds it).
    pub(crate) fn unmount_fuse(&self) {
        if let Some(f) = &self.fuse {
            let _ = Command::new("fusermount3").arg("-uz").arg(f).stderr(Stdio::null()).status();
        }
    }

    pub(crate) fn call(&self, req: Request) -> Result<Status, String> {
        match control::call(&self.sock, &req).map_err(|e| e.to_string())? {
            Response::Ok { status, .. } => Ok(*status),
            Response::Error { message } => Err(message),
        }
    }

    pub(crate) fn status(&self) -> Status {
        self.call(Request::Status).expect("status")
    }

    pub(crate) fn nbd_uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.nbd.display())
    }

    pub(crate) fn read_block(&self, b: u64) -> Vec<u8> {
        let f = std::fs::File::open(&self.backing).expect("backing");
        let mut buf = vec![0u8; 4096];
        f.read_exact_at(&mut buf, b * 4096).expect("read backing");
        buf
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub(crate) struct Pair {
    pub(crate) d: [Daemon; 2],
    // Dropped after the daemons (field order): namespaces, then the scratch dir.
    _ns: (rig::Netns, rig::Netns),
    pub(crate) dir: rig::ScratchDir,
}

/// The configuration file equivalent to daemon flags.
fn config_file(args: &[String]) -> String {
    let mut top = String::new();
    let mut link = String::from("[link]\n");
    let mut front = String::from("[frontends]\n");
    for kv in args.chunks(2) {
        let (flag, v) = (kv[0].as_str(), &kv[1]);
        let q = serde_json::Value::String(v.clone()).to_string();
        match flag {
            "--name" => top += &format!("name = {q}\n"),
            "--node-id" => top += &format!("node_id = {v}\n"),
            "--peer-id" => top += &format!("peer_id = {v}\n"),
            "--backing" => top += &format!("backing = {q}\n"),
            "--state-dir" => top += &format!("state_dir = {q}\n"),
            "--create-size" => top += &format!("create_size_bytes = {v}\n"),
            "--initial-generation" => top += &format!("initial_generation = {q}\n"),
            "--psk-file" => top += &format!("psk_file = {q}\n"),
            "--control" => top += &format!("control_socket = {q}\n"),
            "--listen" => link += &format!("listen = {q}\n"),
            "--nbd-unix" => front += &format!("nbd_unix_socket = {q}\n"),
            "--fuse" => front += &format!("fuse_dir = {q}\n"),
            other => panic!("no configuration key for {other}"),
        }
    }
    format!("{top}{link}{front}")
}

pub(crate) fn pair(extra: &[&str], fuse: bool) -> Pair {
    pair_with_backing(extra, fuse, None)
}

/// A pair whose node 1 uses `backing1` (an existing file or device of the volume's size).
pub(crate) fn pair_with_backing(extra: &[&str], fuse: bool, backing1: Option<&Path>) -> Pair {
    rig::sweep_stale_namespaces();
    let a = rig::Netns::new();
    let b = rig::Netns::new();
    a.veth_to("eth0", "10.213.1.1/24", &b, "eth0", "10.213.1.2/24");
    let dir = rig::ScratchDir::new_in(Path::new("/dev/shm"));
    std::fs::write(dir.path().join("psk"), b"0123456789abcdef-test-key").unwrap();
    let mk = |n: u32, ns: &rig::Netns| {
        let p = |s: &str| dir.path().join(format!("{s}{n}"));
        let mut args: Vec<String> = vec![
            "--name".into(),
            "r0".into(),
            "--node-id".into(),
            n.to_string(),
            "--peer-id".into(),
            (3 - n).to_string(),
            "--backing".into(),
            match (n, backing1) {
                (1, Some(b)) => b.display().to_string(),
                _ => p("disk").display().to_string(),
            },
            "--state-dir".into(),
            p("state").display().to_string(),
            "--create-size".into(),
            SIZE.to_string(),
            "--initial-generation".into(),
            "abc".into(),
            "--psk-file".into(),
            dir.path().join("psk").display().to_string(),
            "--control".into(),
            p("ctl").display().to_string(),
            "--nbd-unix".into(),
            p("nbd").display().to_string(),
        ];
        if n == 1 {
            args.extend(["--listen".into(), format!("10.213.1.1:{PORT}")]);
        } else {
            args.extend(["--peer-addr".into(), format!("10.213.1.1:{PORT}")]);
        }
        let fuse_dir = fuse.then(|| p("mnt"));
        if let Some(f) = &fuse_dir {
            args.extend(["--fuse".into(), f.display().to_string()]);
        }
        if n == 1 {
            // Node 1 runs from a configuration file (flags still override it), node 2 from flags.
            let file = p("config.toml");
            std::fs::write(&file, config_file(&args)).unwrap();
            args = vec!["--config".into(), file.display().to_string()];
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon {
            child: None,
            args,
            ns: ns.name().to_string(),
            sock: p("ctl"),
            nbd: p("nbd"),
            backing: match (n, backing1) {
                (1, Some(b)) => b.to_path_buf(),
                _ => p("disk"),
            },
            fuse: fuse_dir,
        }
    };
    let mut d = [mk(1, &a), mk(2, &b)];
    d[0].start();
    d[1].start();
    let pair = Pair { d, _ns: (a, b), dir };
    pair.wait_in_sync();
    pair
}

impl Pair {
    pub(crate) fn wait_in_sync(&self) {
        let ok = rig::wait_until(Duration::from_secs(20), || {
            self.d.iter().all(|d| {
                d.call(Request::Status).is_ok_and(|s| {
                    s.conn == ConnState::Connected
                        && s.repl == ReplState::Established
                        && s.disk == DiskState::UpToDate
                        && s.peer_disk == DiskState::UpToDate
                        && s.out_of_sync_blocks == 0
                })
            })
        });
        assert!(
            ok,
            "pair did not reach sync: {:?} / {:?}",
            self.d[0].call(Request::Status),
            self.d[1].call(Request::Status)
        );
    }
}

fn qemu_io(uri: &str, cmds: &[String]) -> std::process::Output {
    let mut c = Command::new("qemu-io");
    c.args(["-t", "none", "-f", "raw"]);
    for x in cmds {
        c.arg("-c").arg(x);
    }
    c.arg(uri).output().expect("qemu-io runs")
}

fn needs() -> bool {
    rig::require_root_and(&["ip", "nsenter", "qemu-io", "qemu-img"])
}

#[test]
fn t10_nbd_export_serves_qemu_io_and_replicates_to_the_peer() {
    if !needs() {
        return;
    }
    let p = pair(&[], false);
    p.d[0].call(Request::Primary { force: false }).unwrap();
    let out = qemu_io(
        &p.d[0].nbd_uri(),
        &[
            "write -P 0xab 0 1M".into(),
            "write -f -P 0xcd 1M 4k".into(),
            "write -z 2M 64k".into(),
            "flush".into(),
            "read -P 0xab 0 1M".into(),
            "read -P 0xcd 1M 4k".into(),
            "read -P 0 2M 64k".into(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("Pattern verification failed"), "{text}");
    for b in [0u64, 100, 255, 256, 512] {
        assert_eq!(p.d[0].read_block(b), p.d[1].read_block(b), "block {b}");
    }
    assert_eq!(p.d[1].read_block(256)[0], 0xcd);
    // The Secondary refuses I/O with a clear error.
    let out = qemu_io(&p.d[1].nbd_uri(), &["read 0 4k".into()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Operation not permitted") || !out.status.success(), "{text}");
    let bench = Command::new("qemu-img")
        .args(["bench", "-f", "raw", "-w", "-t", "none", "-s", "4096", "-c", "2000", "-d", "4"])
        .arg(p.d[0].nbd_uri())
        .output()
        .unwrap();
    assert!(bench.status.success());
}

/// Kills the current Primary with SIGKILL at a random moment during NBD writes, promotes the
/// survivor, checks that every acknowledged write is on it, restarts the dead node, waits for
/// the resync, and repeats with roles swapped.
#[test]
fn t20_kill_primary_during_writes_never_loses_an_acknowledged_write() {
    if !needs() {
        return;
    }
    let rounds: usize = std::env::var("BLOCKREPL_KILL_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let mut p = pair(&["--csums"], false);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let blocks = SIZE / 4096;
    // What each block must hold: its pattern byte (0 = never written).
    let mut model: BTreeMap<u64, u8> = BTreeMap::new();
    let mut primary = 0usize;
    let mut total_acked = 0usize;
    p.d[primary].call(Request::Primary { force: false }).unwrap();
    for round in 0..rounds {
        let mut cmds = Vec::new();
        let mut writes = Vec::new();
        for i in 0..40u64 {
            let b = rng.random_range(0..blocks - 16);
            let n = rng.random_range(1..16u64);
            let pat = (((round as u64) * 40 + i) % 250 + 1) as u8;
            cmds.push(format!("write -P {pat} {} {}", b * 4096, n * 4096));
            writes.push((b, n, pat));
        }
        let uri = p.d[primary].nbd_uri();
        let base = p.d[primary].status().stats.app_writes;
        let io = std::thread::spawn(move || qemu_io(&uri, &cmds));
        // Kill at a random point: after 0..40 completed writes, plus a random delay.
        let k = rng.random_range(0..40u64);
        rig::wait_until(Duration::from_secs(10), || {
            p.d[primary].call(Request::Status).is_ok_and(|s| s.stats.app_writes >= base + k)
        });
        std::thread::sleep(Duration::from_micros(rng.random_range(0..300)));
        p.d[primary].kill9();
        let out = io.join().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let acked = text.lines().filter(|l| l.starts_with("wrote ")).count();
        total_acked += acked;
        // Completed writes in order; the next one may or may not have landed.
        let survivor = 1 - primary;
        assert!(rig::wait_until(Duration::from_secs(10), || p.d[survivor].status().conn != ConnState::Connected));
        let s = p.d[survivor]
            .call(Request::Primary { force: false })
            .unwrap_or_else(|e| panic!("round {round}: survivor refused promotion: {e}"));
        assert_eq!(s.role, Role::Primary);
        let mut uncertain: BTreeMap<u64, (u8, u8)> = BTreeMap::new();
        for (k, &(b, n, pat)) in writes.iter().enumerate() {
            for x in b..b + n {
                if k < acked {
                    model.insert(x, pat);
                    uncertain.remove(&x);
                } else if k == acked {
                    let old = model.get(&x).copied().unwrap_or(0);
                    uncertain.insert(x, (old, pat));
                }
            }
        }
        for (&x, &pat) in &model {
            let got = p.d[survivor].read_block(x);
            if let Some(&(old, new)) = uncertain.get(&x) {
                assert!(
                    got.iter().all(|&v| v == old) || got.iter().all(|&v| v == new),
                    "round {round}: block {x} holds neither {old} nor {new}"
                );
                continue;
            }
            assert!(
                got.iter().all(|&v| v == pat),
                "round {round}: acknowledged block {x} lost: expected {pat}, found {} (acked {acked} writes)",
                got[0]
            );
        }
        for (&x, &(old, new)) in &uncertain {
            let got = p.d[survivor].read_block(x)[0];
            assert!(got == old || got == new, "round {round}: block {x}");
            model.insert(x, got);
        }
        // The dead node returns as Secondary and resyncs from the new Primary.
        p.d[primary].start();
        p.wait_in_sync();
        primary = survivor;
    }
    // The kills landed mid-stream, not before or after all writes.
    eprintln!("total acked {total_acked}");
    assert!(total_acked > rounds * 5, "only {total_acked} writes acknowledged in {rounds} rounds");
}

#[test]
fn t30_ext4_over_loop_over_fuse_survives_primary_kills_with_every_fsynced_file() {
    if !needs() || !rig::require_root_and(&["losetup", "mkfs.ext4", "fsck.ext4", "fusermount3", "unshare"]) {
        return;
    }
    let mut p = pair(&[], true);
    let acked = p.dir.path().join("acked");
    let mnt = p.dir.path().join("fs");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut primary = 0usize;
    p.d[primary].call(Request::Primary { force: false }).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut all_acked: Vec<(String, String)> = Vec::new();
    for round in 0..4 {
        let img = p.d[primary].fuse.clone().unwrap().join("disk.img");
        let lo = rig::sh(&format!("losetup -f --show --direct-io=on {}", img.display()));
        let lo = lo.trim().to_string();
        let _ = std::fs::remove_file(&acked);
        let mkfs = if round == 0 {
            format!("mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 {lo} && ")
        } else {
            // Journal replay after the crash, then a full check: it must be clean.
            format!("fsck.ext4 -fy {lo} >/dev/null 2>&1; fsck.ext4 -fn {lo} && ")
        };
        let script = format!(
            "{mkfs} mount {lo} {m} && for f in {m}/r*; do [ -f \"$f\" ] && sha256sum \"$f\"; done > {a}.seen; \
             for i in $(seq 1 200); do f={m}/r{round}f$i; head -c $((4096 * (1 + i % 16))) /dev/urandom > $f.tmp && \
             dd if=$f.tmp of=$f bs=64k conv=fsync status=none && echo \"$(sha256sum < $f.tmp | cut -c1-64) $f\" >> {a} || break; done; \
             umount {m}",
            m = mnt.display(),
            a = acked.display()
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Let some files become durable, then kill the Primary mid-stream.
        assert!(rig::wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&acked).is_ok_and(|s| s.lines().count() >= 5)
        }));
        std::thread::sleep(Duration::from_millis(rng.random_range(0..100)));
        p.d[primary].kill9();
        let out = child.wait_with_output().unwrap();
        let _ = out;
        let _ = Command::new("losetup").args(["-d", &lo]).status();
        let survivor = 1 - primary;
        assert!(rig::wait_until(Duration::from_secs(10), || p.d[survivor].status().conn != ConnState::Connected));
        p.d[survivor].call(Request::Primary { force: false }).unwrap();
        for line in std::fs::read_to_string(&acked).unwrap_or_default().lines() {
            let (sum, path) = line.split_once(' ').unwrap();
            all_acked.push((sum.to_string(), path.to_string()));
        }
        // Check on the survivor: fsck, mount, every acknowledged file intact.
        let img = p.d[survivor].fuse.clone().unwrap().join("disk.img");
        let lo = rig::sh(&format!("losetup -f --show --direct-io=on {}", img.display()));
        let lo = lo.trim().to_string();
        let check = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "fsck.ext4 -fy {lo} >/dev/null 2>&1; fsck.ext4 -fn {lo} >/dev/null && mount {lo} {m} && for f in {m}/r*; do sha256sum < $f | cut -c1-64 | tr -d '\\n'; echo \" $f\"; done; umount {m}",
                m = mnt.display()
            ))
            .output()
            .unwrap();
        let _ = Command::new("losetup").args(["-d", &lo]).status();
        let listing = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "round {round}: fsck or mount failed: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        for (sum, path) in &all_acked {
            let line = format!("{sum} {path}");
            assert!(listing.lines().any(|l| l.trim() == line), "round {round}: fsynced file {path} missing or changed");
        }
        p.d[primary].start();
        p.wait_in_sync();
        primary = survivor;
    }
}

#[test]
fn t40_reconnect_moves_only_the_dirty_blocks() {
    if !needs() {
        return;
    }
    let p = pair(&[], false);
    p.d[0].call(Request::Primary { force: false }).unwrap();
    p.d[1].call(Request::Disconnect).unwrap();
    assert!(rig::wait_until(Duration::from_secs(10), || p.d[0].status().conn != ConnState::Connected));
    let cmds: Vec<String> = (0..100u64).map(|i| format!("write -P 7 {} 4096", i * 7 * 4096)).collect();
    assert!(qemu_io(&p.d[0].nbd_uri(), &cmds).status.success());
    let dirty = p.d[0].status().out_of_sync_blocks;
    assert_eq!(dirty, 100);
    let before = p.d[0].status().stats.resync_bytes_sent;
    p.d[1].call(Request::Connect { discard_my_data: false }).unwrap();
    p.wait_in_sync();
    let sent = p.d[0].status().stats.resync_bytes_sent - before;
    assert_eq!(sent, dirty * 4096, "resync moved {sent} bytes for {dirty} dirty blocks");
    for i in 0..100u64 {
        assert_eq!(p.d[1].read_block(i * 7)[0], 7);
    }
}

#[test]
fn t50_online_verify_finds_exactly_the_corrupted_blocks() {
    if !needs() {
        return;
    }
    let p = pair(&[], false);
    p.d[0].call(Request::Primary { force: false }).unwrap();
    assert!(qemu_io(&p.d[0].nbd_uri(), &["write -P 9 0 4M".into(), "flush".into()]).status.success());
    let bad = [3u64, 1000, 4095];
    let f = std::fs::OpenOptions::new().write(true).open(&p.d[1].backing).unwrap();
    for &b in &bad {
        f.write_all_at(&[0xee; 512], b * 4096 + 512).unwrap();
    }
    p.d[0].call(Request::Verify).unwrap();
    assert!(rig::wait_until(Duration::from_secs(30), || p.d[0].status().verify.is_some_and(|v| !v.running)));
    let v = p.d[0].status().verify.unwrap();
    assert_eq!(v.out_of_sync_blocks, bad.to_vec());
    assert_eq!(v.checked_blocks, SIZE / 4096);
}

/// Makes a split brain: both nodes Primary and writing while disconnected.
fn split(p: &Pair, w0: u64, w1: u64) {
    p.d[0].call(Request::Primary { force: false }).unwrap();
    p.d[1].call(Request::Disconnect).unwrap();
    p.d[0].call(Request::Disconnect).unwrap();
    p.d[1].call(Request::Primary { force: false }).unwrap();
    for (n, count, pat) in [(0usize, w0, 0x11u8), (1, w1, 0x22)] {
        let cmds: Vec<String> =
            (0..count).map(|i| format!("write -P {pat} {} 4096", (i * 5 + n as u64) * 4096)).collect();
        if !cmds.is_empty() {
            assert!(qemu_io(&p.d[n].nbd_uri(), &cmds).status.success());
        }
    }
}

fn reconnect(p: &Pair) {
    for d in &p.d {
        d.call(Request::Connect { discard_my_data: false }).unwrap();
    }
}

fn standalone_with_split_brain(p: &Pair) -> bool {
    rig::wait_until(Duration::from_secs(10), || {
        p.d.iter().all(|d| {
            let s = d.status();
            s.conn == ConnState::StandAlone && s.split_brain.is_some()
        })
    })
}

#[test]
fn t60_split_brain_default_disconnects_and_manual_discard_resolves() {
    if !needs() {
        return;
    }
    let p = pair(&[], false);
    split(&p, 5, 3);
    p.d[1].call(Request::Secondary).unwrap();
    reconnect(&p);
    assert!(standalone_with_split_brain(&p));
    let sb = p.d[1].status().split_brain.unwrap();
    assert_eq!(sb.diverging_blocks, 8, "{sb:?}");
    // The victim (node 2) discards; only the union of both bitmaps moves.
    p.d[1].call(Request::Connect { discard_my_data: true }).unwrap();
    p.d[0].call(Request::Connect { discard_my_data: false }).unwrap();
    p.wait_in_sync();
    assert_eq!(p.d[1].read_block(0)[0], 0x11);
    assert_eq!(p.d[1].read_block(1)[0], 0, "node 2's own write was discarded");
}

fn policy_case(flags: &[&str], w0: u64, w1: u64, demote: &[usize]) -> Pair {
    let p = pair(flags, false);
    split(&p, w0, w1);
    for &n in demote {
        p.d[n].call(Request::Secondary).unwrap();
    }
    reconnect(&p);
    p
}

#[test]
fn t61_after_sb_0pri_policies_pick_the_expected_survivor() {
    if !needs() {
        return;
    }
    // discard-zero-changes: node 1 wrote nothing, node 2's data wins.
    let p = policy_case(&["--after-sb-0pri", "discard-zero-changes"], 0, 3, &[0, 1]);
    p.wait_in_sync();
    assert_eq!(p.d[0].read_block(1)[0], 0x22);
    drop(p);
    // discard-least-changes: node 1 wrote more.
    let p = policy_case(&["--after-sb-0pri", "discard-least-changes"], 6, 2, &[0, 1]);
    p.wait_in_sync();
    assert_eq!(p.d[1].read_block(0)[0], 0x11);
    assert_eq!(p.d[1].read_block(1)[0], 0);
    drop(p);
    // discard-younger-primary: node 1 was Primary before the split.
    let p = policy_case(&["--after-sb-0pri", "discard-younger-primary"], 1, 9, &[0, 1]);
    p.wait_in_sync();
    assert_eq!(p.d[1].read_block(0)[0], 0x11);
    drop(p);
    // discard-older-primary: node 2 (promoted after the split) wins.
    let p = policy_case(&["--after-sb-0pri", "discard-older-primary"], 9, 1, &[0, 1]);
    p.wait_in_sync();
    assert_eq!(p.d[0].read_block(1)[0], 0x22);
}

#[test]
fn t62_after_sb_1pri_discard_secondary_and_2pri_disconnect() {
    if !needs() {
        return;
    }
    let p = policy_case(&["--after-sb-1pri", "discard-secondary"], 2, 7, &[1]);
    p.wait_in_sync();
    assert_eq!(p.d[1].read_block(0)[0], 0x11);
    assert_eq!(p.status_role(0), Role::Primary);
    drop(p);
    let p =
        policy_case(&["--after-sb-0pri", "discard-zero-changes", "--after-sb-1pri", "discard-secondary"], 0, 1, &[]);
    assert!(standalone_with_split_brain(&p));
}

impl Pair {
    fn status_role(&self, n: usize) -> Role {
        self.d[n].status().role
    }
}

#[test]
fn t70_bad_peers_and_stale_metadata_are_refused_with_clear_errors() {
    if !needs() {
        return;
    }
    let mut p = pair(&[], false);
    // A peer with another key: authentication fails, named in the status.
    p.d[1].kill9();
    let psk2 = p.dir.path().join("psk2");
    std::fs::write(&psk2, b"another-key-of-some-length").unwrap();
    let i = p.d[1].args.iter().position(|a| a == "--psk-file").unwrap();
    p.d[1].args[i + 1] = psk2.display().to_string();
    p.d[1].start();
    assert!(rig::wait_until(Duration::from_secs(10), || p.d[0]
        .status()
        .last_error
        .is_some_and(|e| e.contains("pre-shared keys differ"))));
    p.d[1].kill9();
    // Stale metadata: the same state dir started as another node id.
    let mut args = p.d[1].args.clone();
    let i = args.iter().position(|a| a == "--node-id").unwrap();
    args[i + 1] = "3".into();
    let out = Command::new(env!("CARGO_BIN_EXE_blockrepld")).args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale metadata"));
    // A peer whose volume has another size: refused at the handshake, both sides say why.
    let mut args = p.d[1].args.clone();
    let swap = |args: &mut Vec<String>, flag: &str, v: String| {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = v;
    };
    swap(&mut args, "--backing", p.dir.path().join("other-disk").display().to_string());
    swap(&mut args, "--state-dir", p.dir.path().join("other-state").display().to_string());
    swap(&mut args, "--create-size", (SIZE + 4096).to_string());
    swap(&mut args, "--psk-file", p.dir.path().join("psk").display().to_string());
    p.d[1].args = args;
    p.d[1].start();
    assert!(rig::wait_until(Duration::from_secs(10), || {
        let s = p.d[0].status();
        s.conn == ConnState::StandAlone && s.last_error.is_some_and(|e| e.contains("size mismatch"))
    }));
}

#[test]
fn t80_a_target_killed_mid_resync_resumes_without_resending() {
    if !needs() {
        return;
    }
    let mut p = pair(&["--resync-rate-max", "3000000", "--resync-rate-min", "1000000"], false);
    p.d[0].call(Request::Primary { force: false }).unwrap();
    p.d[1].call(Request::Disconnect).unwrap();
    assert!(rig::wait_until(Duration::from_secs(10), || p.d[0].status().conn != ConnState::Connected));
    // 2000 scattered dirty blocks (8 MB): about 2.7 s of resync at 3 MB/s.
    let script: String = (0..2000u64).map(|i| format!("write -P 3 {} 4096\n", i * 2 * 4096)).collect();
    let f = p.dir.path().join("cmds");
    std::fs::write(&f, format!("{script}quit\n")).unwrap();
    rig::sh(&format!("qemu-io -t none -f raw '{}' < {} > /dev/null", p.d[0].nbd_uri(), f.display()));
    assert_eq!(p.d[0].status().out_of_sync_blocks, 2000);
    p.d[1].call(Request::Connect { discard_my_data: false }).unwrap();
    assert!(rig::wait_until(Duration::from_secs(10), || {
        let s = p.d[0].status();
        s.repl == ReplState::SyncSource && s.out_of_sync_blocks < 1500
    }));
    p.d[1].kill9();
    assert!(rig::wait_until(Duration::from_secs(10), || p.d[0].status().conn != ConnState::Connected));
    let sent_before = p.d[0].status().stats.resync_bytes_sent;
    let left = p.d[0].status().out_of_sync_blocks;
    assert!(left > 0 && left < 2000, "left {left}");
    p.d[1].start();
    p.wait_in_sync();
    let sent = p.d[0].status().stats.resync_bytes_sent;
    // Blocks acknowledged before the kill are not sent again, except those acknowledged after
    // the target last persisted its progress (every 256 blocks) or still in flight.
    let al_blocks = 256 + 64;
    assert!(
        sent <= sent_before + (left + al_blocks) * 4096,
        "sent {sent} bytes in total, {sent_before} before the kill, {left} blocks left"
    );
    for i in (0..2000u64).step_by(97) {
        assert_eq!(p.d[1].read_block(i * 2)[0], 3, "block {}", i * 2);
    }
}

#[test]
fn check_config_prints_the_effective_configuration_or_every_problem() {
    let dir = rig::ScratchDir::new();
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, include_str!("../../../../deploy/blockrepld.toml")).unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_blockrepld")).arg("--config").arg(&ok).arg("--check-config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("name = \"r0\""), "{effective}");
    // Defaults are filled in, flags override the file.
    assert!(effective.contains("timeout_ms = 3000"), "{effective}");
    let out = Command::new(env!("CARGO_BIN_EXE_blockrepld"))
        .arg("--config")
        .arg(&ok)
        .args(["--protocol", "A", "--check-config"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("protocol = \"A\""));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"r0\"\nnode_id = \"one\"\nspeed = 3\n[replication]\nprotocol = \"Z\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_blockrepld"))
        .arg("--config")
        .arg(&bad)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in
        ["node_id: expected a non-negative integer", "speed: unknown field", "backing: missing", "psk_file: missing"]
    {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

/// A disk that fails on demand: an nbdkit memory export behind its error filter (errors while
/// the trigger file exists), mounted as a file by nbdfuse.
struct FailingDisk {
    dir: rig::ScratchDir,
    nbdkit: std::process::Child,
    nbdfuse: std::process::Child,
}

impl FailingDisk {
    fn new(size: u64) -> FailingDisk {
        let dir = rig::ScratchDir::new_in(Path::new("/dev/shm"));
        let sock = dir.path().join("nbdkit.sock");
        let trigger = dir.path().join("fail");
        let nbdkit = Command::new("nbdkit")
            .arg("-f")
            .arg("-U")
            .arg(&sock)
            .args(["--filter=error", "memory", &size.to_string(), "error=EIO", "error-rate=100%"])
            .arg(format!("error-file={}", trigger.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("nbdkit");
        assert!(rig::wait_until(Duration::from_secs(10), || sock.exists()), "nbdkit did not come up");
        std::fs::create_dir_all(dir.path().join("mnt")).unwrap();
        let file = dir.path().join("mnt/disk");
        let nbdfuse =
            Command::new("nbdfuse").arg(&file).arg("--unix").arg(&sock).stderr(Stdio::null()).spawn().expect("nbdfuse");
        assert!(
            rig::wait_until(Duration::from_secs(10), || std::fs::metadata(&file).is_ok_and(|m| m.len() == size)),
            "nbdfuse did not come up"
        );
        FailingDisk { dir, nbdkit, nbdfuse }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("mnt/disk")
    }

    fn fail(&self) {
        std::fs::write(self.dir.path().join("fail"), b"").unwrap();
    }
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-uz").arg(self.dir.path().join("mnt")).stderr(Stdio::null()).status();
        for c in [&mut self.nbdfuse, &mut self.nbdkit] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn t90_a_failing_backing_detaches_and_the_primary_serves_from_the_peer() {
    if !needs() || !rig::require_root_and(&["nbdkit", "nbdfuse", "fusermount3"]) {
        return;
    }
    let disk = FailingDisk::new(SIZE);
    let p = pair_with_backing(&[], false, Some(&disk.file()));
    p.d[0].call(Request::Primary { force: false }).unwrap();
    let uri = p.d[0].nbd_uri();
    let w = qemu_io(&uri, &["write -P 7 0 1M".to_string()]);
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    assert_eq!(p.d[0].status().disk, DiskState::UpToDate);
    // The backing device starts failing every read and write.
    disk.fail();
    let w = qemu_io(&uri, &["write -P 9 4M 1M".to_string(), "flush".to_string()]);
    assert!(w.status.success(), "writes keep working through the peer: {}", String::from_utf8_lossy(&w.stderr));
    let s = p.d[0].status();
    assert_eq!(s.disk, DiskState::Diskless, "{s:?}");
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("i/o error")), "{s:?}");
    assert_eq!(s.role, Role::Primary);
    // Reads (old and new data, and never-written blocks) come from the peer, intact.
    let r =
        qemu_io(&uri, &["read -P 7 0 1M".to_string(), "read -P 9 4M 1M".to_string(), "read -P 0 8M 1M".to_string()]);
    assert!(r.status.success(), "{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    assert!(!String::from_utf8_lossy(&r.stdout).contains("Pattern verification failed"));
    // Later writes still replicate; the peer's copy holds everything and stays UpToDate.
    let w = qemu_io(&uri, &["write -P 11 12M 64k".to_string()]);
    assert!(w.status.success());
    let s1 = p.d[1].status();
    assert_eq!(s1.disk, DiskState::UpToDate, "{s1:?}");
    assert_eq!(s1.peer_disk, DiskState::Diskless, "{s1:?}");
    for (block, byte) in [(0u64, 7u8), (255, 7), (1024, 9), (1279, 9), (2048, 0), (3072, 11), (3087, 11)] {
        assert_eq!(p.d[1].read_block(block), vec![byte; 4096], "peer block {block}");
    }
}

#[test]
fn t95_concurrent_promotions_leave_one_primary_and_a_clear_refusal() {
    if !needs() {
        return;
    }
    let p = pair(&[], false);
    for _ in 0..3 {
        let results: Vec<Result<Status, String>> = std::thread::scope(|s| {
            let hs: Vec<_> = p.d.iter().map(|d| s.spawn(move || d.call(Request::Primary { force: false }))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "{results:?}");
        let refusal = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(refusal.contains("promotion refused") || refusal.contains("peer is Primary"), "{refusal}");
        for d in &p.d {
            assert_eq!(d.status().conn, ConnState::Connected, "{:?}", d.status());
        }
        let w = if results[0].is_ok() { 0 } else { 1 };
        p.d[w].call(Request::Secondary).unwrap();
        assert!(rig::wait_until(Duration::from_secs(5), || p.d[1 - w].status().peer_role == Role::Secondary));
    }
}
