//! Per agent and action: the native agent vs the resource-agents script doing the same job,
//! run through the same `execute` path. Needs root; prints medians and ranges.
//! `cargo bench -p agents` (rounds: AGENTS_BENCH_ROUNDS, default 7).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agents::{Action, OcfRc, Registry, Request, ResourceAgent, execute};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;

fn kv(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:8.2} ms  (min {:7.2}, max {:7.2}, n={})",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

/// Runs start, monitor, stop `rounds` times, interleaving native and OCF, and prints both.
fn compare(
    label: &str,
    native: &dyn ResourceAgent,
    ocf: Option<&dyn ResourceAgent>,
    params: &BTreeMap<String, String>,
    depth: u32,
    rounds: usize,
) {
    let mut times: BTreeMap<(usize, Action), Vec<Duration>> = BTreeMap::new();
    let agents: Vec<&dyn ResourceAgent> = std::iter::once(native).chain(ocf).collect();
    for _ in 0..rounds {
        for (i, a) in agents.iter().enumerate() {
            for action in [Action::Start, Action::Monitor, Action::Stop] {
                let req = Request::new(action, "bench", params.clone())
                    .depth(depth)
                    .timeout(Duration::from_secs(30));
                let r = execute(*a, &req);
                assert_eq!(
                    r.rc,
                    OcfRc::Success,
                    "{label} {}: {r}",
                    if i == 0 { "native" } else { "ocf" }
                );
                times.entry((i, action)).or_default().push(r.elapsed);
            }
        }
    }
    for action in [Action::Start, Action::Monitor, Action::Stop] {
        for (i, who) in ["native", "ocf   "].iter().enumerate().take(agents.len()) {
            println!(
                "{label:<12} {action:<8} {who}  {}",
                stats(times.remove(&(i, action)).unwrap_or_default())
            );
        }
    }
}

fn in_netns<T: Send>(ns: &rig::Netns, f: impl FnOnce() -> T + Send) -> T {
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

fn get(name: &str) -> Arc<dyn ResourceAgent> {
    Registry::default()
        .get(name)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !rig::is_root() {
        eprintln!("agents bench: needs root (namespaces, mounts); skipped");
        return;
    }
    // Mounts made by this process stay in its own mount namespace (made before any thread).
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
    let rounds: usize = std::env::var("AGENTS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    println!("agent        action   impl    time per operation (execute: spawn, wait, parse)");

    rig::sweep_stale_namespaces();
    let a = rig::Netns::new();
    let b = rig::Netns::new();
    a.veth_to("eth0", "10.213.1.1/24", &b, "eth0", "10.213.1.2/24");
    let p = kv(&[
        ("ip", "10.213.1.100"),
        ("cidr_netmask", "24"),
        ("nic", "eth0"),
    ]);
    in_netns(&a, || {
        compare(
            "vip",
            get("vip").as_ref(),
            Some(get("ocf:heartbeat:IPaddr2").as_ref()),
            &p,
            0,
            rounds,
        )
    });

    let dir = rig::ScratchDir::new_in(std::path::Path::new("/dev/shm"));
    let img = dir.path().join("disk.img");
    rig::sh(&format!(
        "truncate -s 64M {0} && mkfs.ext4 -q -F {0}",
        img.display()
    ));
    let dev = rig::sh(&format!("losetup -f --show {}", img.display()))
        .trim()
        .to_owned();
    let mnt = dir.path().join("mnt").display().to_string();
    let p = kv(&[("device", &dev), ("directory", &mnt), ("fstype", "ext4")]);
    compare(
        "filesystem",
        get("filesystem").as_ref(),
        Some(get("ocf:heartbeat:Filesystem").as_ref()),
        &p,
        0,
        rounds,
    );
    let _ = std::process::Command::new("losetup")
        .args(["-d", &dev])
        .status();

    let site = rig::ScratchDir::new();
    for sub in ["logs", "tmp", "html"] {
        std::fs::create_dir_all(site.path().join(sub)).unwrap();
    }
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/rigs/ocf/nginx.conf"
    );
    let conf = std::fs::read_to_string(shared)
        .expect("nginx rig template")
        .replace("@RIG_DIR@", &site.path().display().to_string())
        .replace("@PORT@", "18080");
    let conf_path = site.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let ns = rig::Netns::new();
    let p = kv(&[
        ("configfile", &conf_path.display().to_string()),
        ("httpd", "/usr/sbin/nginx"),
        ("status10url", "http://127.0.0.1:18080/nginx_status"),
    ]);
    in_netns(&ns, || {
        compare(
            "nginx d10",
            get("native:builtin:nginx").as_ref(),
            Some(get("ocf:heartbeat:nginx").as_ref()),
            &p,
            10,
            rounds.min(3),
        )
    });

    if rig::have_program("virsh") && rig::have_program("libvirtd") {
        bench_vm(&site, rounds);
    }
}

fn virsh_ok(uri: &str) -> bool {
    std::process::Command::new("virsh")
        .args(["-q", "-c", uri, "list"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Native VM vs VirtualDomain on libvirt's test driver, served by libvirtd (started here when
/// not running) with a holder connection so that state lasts across virsh calls.
fn bench_vm(site: &rig::ScratchDir, rounds: usize) {
    let uri = "test+unix:///default";
    let mut started = Vec::new();
    if !virsh_ok(uri) {
        for daemon in ["virtlogd", "libvirtd"] {
            let child = std::process::Command::new("setsid")
                .arg(daemon)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start a libvirt daemon");
            started.push(child);
        }
        assert!(
            rig::wait_until(Duration::from_secs(20), || virsh_ok(uri)),
            "libvirtd did not come up"
        );
    }
    let mut holder = std::process::Command::new("virsh")
        .args(["-c", uri, "event", "--all", "--loop", "--timeout", "600"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("virsh holder");
    let name = rig::unique_name("bvm");
    let xml = site.path().join("test.xml");
    std::fs::write(
        &xml,
        format!("<domain type='test'>\n  <name>{name}</name>\n  <memory>65536</memory>\n  <os><type>hvm</type></os>\n</domain>\n"),
    )
    .unwrap();
    let p = kv(&[
        ("config", &xml.display().to_string()),
        ("hypervisor", uri),
        ("force_stop", "true"),
    ]);
    compare(
        "vm (test)",
        get("vm").as_ref(),
        Some(get("ocf:heartbeat:VirtualDomain").as_ref()),
        &p,
        0,
        rounds,
    );
    let _ = std::process::Command::new("virsh")
        .args(["-q", "-c", uri, "undefine", &name])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = holder.kill();
    let _ = holder.wait();
    for mut c in started.into_iter().rev() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = c.wait();
    }
}
