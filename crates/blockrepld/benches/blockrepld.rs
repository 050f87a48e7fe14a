//! Benchmarks against the targets, measured in one run (tmpfs backing, the peer in a second
//! network namespace). Prints figures; asserts nothing. Needs root, fio, qemu-img.
//!
//! cargo bench -p blockrepld --bench blockrepld   (BLOCKREPL_BENCH_ROUNDS=n, default 5;
//! every figure is the median over rounds, each round measures link, standalone and
//! replicated back to back so ratios compare figures taken under the same machine load)
//!
//! Figures:
//! - TCP round trip between the namespaces (own echo, 64 B);
//! - 4 KiB O_DIRECT|O_DSYNC write p50 through loop-over-FUSE: standalone (FUSE only) vs
//!   replicated (protocol C), against the bound FUSE-only p50 + 2 x RTT + 30 us (each such
//!   write is a write plus two flushes through the loop device; the second flush has nothing
//!   new to make durable and completes without a round trip);
//! - sequential 1 MiB writes through loop-over-FUSE and through NBD, standalone vs replicated,
//!   and single-stream link throughput; ratios against min(frontend, link);
//! - resync bytes on the wire after a disconnect vs 1.05 x 4 KiB x dirty blocks + bitmap.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockrepl::control::{self, Request, Response};
use blockrepl::{ConnState, ReplState};

const SIZE: u64 = 1 << 30;

struct Daemon {
    child: Child,
    sock: PathBuf,
    fuse: PathBuf,
    nbd: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.fuse).status();
    }
}

fn call(sock: &Path, req: Request) -> (blockrepl::Status, u64) {
    match control::call(sock, &req).expect("control") {
        Response::Ok { status, link_bytes_sent, .. } => (*status, link_bytes_sent),
        Response::Error { message } => panic!("{message}"),
    }
}

fn wait(cond: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < end, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start(dir: &Path, ns: &str, n: u32, peer_addr: &str) -> Daemon {
    let p = |s: &str| dir.join(format!("{s}{n}"));
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_blockrepld"))
        .args(["--name", "b", "--node-id", &n.to_string(), "--peer-id", &(3 - n).to_string()])
        .arg("--backing")
        .arg(p("disk"))
        .arg("--state-dir")
        .arg(p("state"))
        .args(["--create-size", &SIZE.to_string(), "--initial-generation", "b0"])
        .arg("--psk-file")
        .arg(dir.join("psk"))
        .arg("--control")
        .arg(p("ctl"))
        .arg("--nbd-unix")
        .arg(p("nbd"))
        .arg("--fuse")
        .arg(p("mnt"));
    if n == 1 {
        c.args(["--listen", peer_addr]);
    } else {
        c.args(["--peer-addr", peer_addr]);
    }
    let child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("blockrepld");
    let d = Daemon { child, sock: p("ctl"), fuse: p("mnt"), nbd: p("nbd") };
    wait(|| control::call(&d.sock, &Request::Status).is_ok());
    d
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// fio on a loop device over the daemon's FUSE file; returns (p50 µs, MB/s).
fn fio(d: &Daemon, args: &str) -> (f64, f64) {
    let img = d.fuse.join("disk.img");
    let lo = sh(&format!("losetup -f --show --direct-io=on {}", img.display()));
    let lo = lo.trim();
    let json = sh(&format!("fio --name=b --filename={lo} --size=512M --output-format=json {args}"));
    sh(&format!("losetup -d {lo}"));
    parse_fio(&json)
}

fn parse_fio(json: &str) -> (f64, f64) {
    let v: serde_json::Value = serde_json::from_str(json).expect("fio json");
    let w = &v["jobs"][0]["write"];
    let p50 = w["clat_ns"]["percentile"]["50.000000"].as_f64().unwrap_or(0.0) / 1000.0;
    let bw = w["bw_bytes"].as_f64().unwrap_or(0.0) / 1e6;
    (p50, bw)
}

fn qemu_bench(d: &Daemon, size: &str, count: u32, depth: u32) -> f64 {
    let uri = format!("nbd+unix:///?socket={}", d.nbd.display());
    let t = Instant::now();
    sh(&format!("qemu-img bench -f raw -w -t none -s {size} -c {count} -d {depth} '{uri}'"));
    let secs = t.elapsed().as_secs_f64();
    let bytes = match size {
        "1M" => f64::from(count) * 1048576.0,
        _ => f64::from(count) * 4096.0,
    };
    bytes / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The socket options the daemon's replication link uses (no Nagle delay, cubic congestion
/// control), so the link figures describe the link the daemon gets.
fn link_options(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = rustix::net::sockopt::set_tcp_congestion(s, "cubic");
}

fn echo_server(addr: &str) {
    let l = TcpListener::bind(addr).expect("bind");
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        link_options(&s);
        std::thread::spawn(move || {
            let mut mode = [0u8; 1];
            if s.read_exact(&mut mode).is_err() {
                return;
            }
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if mode[0] == b'e' && s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

fn echo_client(addr: &str) {
    // Round trips of 64 bytes.
    let mut s = TcpStream::connect(addr).expect("connect");
    link_options(&s);
    s.write_all(b"e").unwrap();
    let mut rtts = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..5000 {
        let t = Instant::now();
        s.write_all(&buf).unwrap();
        s.read_exact(&mut buf).unwrap();
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let rtt = median(rtts);
    // One stream of 1 GiB.
    let mut s = TcpStream::connect(addr).expect("connect");
    link_options(&s);
    s.write_all(b"s").unwrap();
    let chunk = vec![0u8; 1 << 20];
    let t = Instant::now();
    for _ in 0..1024 {
        s.write_all(&chunk).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut sink = [0u8; 16];
    let _ = s.read(&mut sink);
    let mbs = 1024.0 * 1048576.0 / t.elapsed().as_secs_f64() / 1e6;
    println!("{rtt} {mbs}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 3 && args[1] == "--echo-server" {
        echo_server(&args[2]);
        return;
    }
    if args.len() >= 3 && args[1] == "--echo-client" {
        echo_client(&args[2]);
        return;
    }
    if !rig::require_root_and(&["fio", "qemu-img", "losetup", "nsenter"]) {
        return;
    }
    rig::sweep_stale_namespaces();
    let a = rig::Netns::new();
    let b = rig::Netns::new();
    a.veth_to("eth0", "10.213.1.1/24", &b, "eth0", "10.213.1.2/24");
    let dir = rig::ScratchDir::new_in(Path::new("/dev/shm"));
    std::fs::write(dir.path().join("psk"), b"bench-key-0123456789").unwrap();
    let me = std::env::current_exe().unwrap();

    // Link figures, measured in every round (the machine is shared: compare within a round).
    let measure_link = || {
        let mut srv = b.command(me.to_str().unwrap()).args(["--echo-server", "10.213.1.2:9000"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let out = a.command(me.to_str().unwrap()).args(["--echo-client", "10.213.1.2:9000"]).output().unwrap();
        let _ = srv.kill();
        let _ = srv.wait();
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut it = line.split_whitespace().map(|x| x.parse::<f64>().unwrap_or(0.0));
        (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0))
    };
    let mut rtts = Vec::new();
    let mut links = Vec::new();
    let addr = "10.213.1.1:7900";
    let d1 = start(dir.path(), a.name(), 1, addr);
    call(&d1.sock, Request::Primary { force: false });
    let lat = "--ioengine=psync --rw=randwrite --bs=4k --direct=1 --sync=1 --runtime=4 --time_based";
    let seq = "--ioengine=psync --rw=write --bs=1M --direct=1 --fsync=16";
    let mut solo_lat = Vec::new();
    let mut solo_seq = Vec::new();
    let mut solo_nbd = Vec::new();
    let mut repl_lat = Vec::new();
    let mut repl_seq = Vec::new();
    let mut repl_nbd = Vec::new();
    let mut d2: Option<Daemon> = None;
    let rounds: usize = std::env::var("BLOCKREPL_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    for round in 0..rounds {
        let (r, l) = measure_link();
        rtts.push(r);
        links.push(l);
        // Standalone: the peer is disconnected -> FUSE-only cost of this daemon. The peer
        // stays up (idle) rather than being restarted every round: a restarted peer starts
        // with a cold activity log, and the replicated figures would then include one
        // metadata write per 4 MiB extent that a running pair does not pay.
        if let Some(d) = &d2 {
            call(&d.sock, Request::Disconnect);
            wait(|| call(&d1.sock, Request::Status).0.conn != ConnState::Connected);
        }
        solo_lat.push(fio(&d1, lat).0);
        solo_seq.push(fio(&d1, seq).1);
        solo_nbd.push(qemu_bench(&d1, "1M", 512, 8));
        // Replicated: (re)connect the peer and wait for the resync to finish.
        match &d2 {
            Some(d) => {
                call(&d.sock, Request::Connect { discard_my_data: false });
            }
            None => d2 = Some(start(dir.path(), b.name(), 2, addr)),
        }
        wait(|| {
            let s = call(&d1.sock, Request::Status).0;
            s.repl == ReplState::Established && s.out_of_sync_blocks == 0
        });
        repl_lat.push(fio(&d1, lat).0);
        repl_seq.push(fio(&d1, seq).1);
        repl_nbd.push(qemu_bench(&d1, "1M", 512, 8));
        let last = |v: &Vec<f64>| v.last().copied().unwrap_or(0.0);
        eprintln!(
            "round {round}: link {:.0} MB/s rtt {:.1} us | 4k p50 {:.1} / {:.1} us | seq {:.0} / {:.0} MB/s | nbd {:.0} / {:.0} MB/s (alone / replicated)",
            last(&links),
            last(&rtts),
            last(&solo_lat),
            last(&repl_lat),
            last(&solo_seq),
            last(&repl_seq),
            last(&solo_nbd),
            last(&repl_nbd)
        );
    }
    let rtt = median(rtts);
    let link_mbs = median(links);
    println!("link: tcp rtt p50 {rtt:.1} us, one stream {link_mbs:.0} MB/s (medians of {rounds} rounds)");
    let (sl, rl) = (median(solo_lat), median(repl_lat));
    let bound = sl + 2.0 * rtt + 30.0;
    println!(
        "4k sync write p50 (loop over FUSE): FUSE-only {sl:.1} us, replicated {rl:.1} us, bound {bound:.1} us -> {}",
        if rl <= bound { "within" } else { "OVER" }
    );
    let (ss, rs) = (median(solo_seq), median(repl_seq));
    let ref_seq = ss.min(link_mbs);
    println!(
        "1M sequential (loop over FUSE, fsync/16): FUSE-only {ss:.0} MB/s, replicated {rs:.0} MB/s = {:.0}% of min(frontend, link) = {ref_seq:.0} (target 80%)",
        100.0 * rs / ref_seq
    );
    let (sn, rn) = (median(solo_nbd), median(repl_nbd));
    let ref_nbd = sn.min(link_mbs);
    println!(
        "1M writes over NBD (qemu-img bench, QD8): local {sn:.0} MB/s, replicated {rn:.0} MB/s = {:.0}% of min(local, link) = {ref_nbd:.0} (target 90%)",
        100.0 * rn / ref_nbd
    );

    // Resync bytes after a disconnect.
    let d2s = d2.as_ref().unwrap().sock.clone();
    call(&d2s, Request::Disconnect);
    wait(|| call(&d1.sock, Request::Status).0.conn != ConnState::Connected);
    let uri = format!("nbd+unix:///?socket={}", d1.nbd.display());
    let mut cmds = String::new();
    let dirty = 5000u64;
    for i in 0..dirty {
        // Scattered single blocks (every 37th block).
        cmds.push_str(&format!("write -P 5 {} 4096\n", (i * 37 % (SIZE / 4096)) * 4096));
    }
    cmds.push_str("quit\n");
    let script = dir.path().join("cmds");
    std::fs::write(&script, cmds).unwrap();
    sh(&format!("qemu-io -t none -f raw '{uri}' < {} >/dev/null", script.display()));
    let (s, before) = call(&d1.sock, Request::Status);
    let oos = s.out_of_sync_blocks;
    call(&d2s, Request::Connect { discard_my_data: false });
    wait(|| {
        let s = call(&d1.sock, Request::Status).0;
        s.repl == ReplState::Established && s.out_of_sync_blocks == 0 && s.conn == ConnState::Connected
    });
    let (_, after) = call(&d1.sock, Request::Status);
    let wire = after - before;
    let bitmap_bytes = oos * 2 * 3; // runs of (start, count) as varints, upper estimate
    let bound = 1.05 * 4096.0 * oos as f64 + bitmap_bytes as f64;
    println!(
        "resync after disconnect: {oos} dirty blocks, {wire} bytes on the wire (all frames), bound {bound:.0} -> {:.3} x 4 KiB x dirty",
        wire as f64 / (4096.0 * oos as f64)
    );
}
