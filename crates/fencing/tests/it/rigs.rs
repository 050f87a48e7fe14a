//! Real counterparts for the fencing tests: ipmi_sim, the libvirt test driver, moto.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fencing::{Action, FenceAgent, IpmiAgent, Outcome, Params, Request};

pub(crate) fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared"))
}

/// A free UDP port on loopback (bound then released; the window for a clash is tiny and
/// only affects this test's own ipmi_sim start).
pub(crate) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral UDP port on loopback")
}

pub(crate) fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// An `ipmi_sim` BMC on loopback whose power-off kills a "node" process and whose power-on
/// starts a new one (TEST-RIGS §2).
pub(crate) struct IpmiSim {
    pub(crate) dir: rig::ScratchDir,
    pub(crate) port: u16,
    sim: Child,
}

impl IpmiSim {
    /// Needs root (for nothing but consistency with CI), `ipmi_sim`.
    pub(crate) fn available() -> bool {
        rig::require_root_and(&["ipmi_sim"])
    }

    pub(crate) fn start() -> IpmiSim {
        let dir = rig::ScratchDir::new();
        let d = dir.path();
        let rigs = shared().join("rigs/ipmi");
        std::fs::create_dir(d.join("state")).unwrap();
        for f in ["sim.emu", "chassis.sh"] {
            std::fs::copy(rigs.join(f), d.join(f)).unwrap();
        }
        let port = free_udp_port();
        let conf = std::fs::read_to_string(rigs.join("lan.conf"))
            .unwrap()
            .replace("@RIG_DIR@", d.to_str().unwrap())
            .replace("@ADDR@", "127.0.0.1")
            .replace("@PORT@", &port.to_string());
        std::fs::write(d.join("lan.conf"), conf).unwrap();
        std::fs::write(d.join("power"), "1\n").unwrap();
        let node_cmd = "setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > node.pid";
        rig::sh(&format!("cd {}; {node_cmd}", d.display()));
        let sim = Command::new("ipmi_sim")
            .arg("-c")
            .arg(d.join("lan.conf"))
            .arg("-f")
            .arg(d.join("sim.emu"))
            .arg("-s")
            .arg(d.join("state"))
            .arg("-n")
            .env(
                "IPMISIM_ON_OFF",
                format!("kill -9 $(cat {}/node.pid)", d.display()),
            )
            .env("IPMISIM_ON_ON", format!("cd {}; {node_cmd}", d.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("sim.out")).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start ipmi_sim");
        let s = IpmiSim { dir, port, sim };
        let agent = s.agent(&[]);
        let ready = rig::wait_until(Duration::from_secs(10), || {
            let mut r = Request::new(Action::Status, None);
            r.timeout = Duration::from_millis(300);
            matches!(fencing::execute(&agent, &r).outcome, Outcome::Done(_))
        });
        assert!(ready, "ipmi_sim did not come up on port {}", s.port);
        s
    }

    pub(crate) fn params(&self, extra: &[&str]) -> Params {
        let port = format!("ipport={}", self.port);
        let mut words = vec![
            "ip=127.0.0.1",
            port.as_str(),
            "username=admin",
            "password=secret",
        ];
        words.extend_from_slice(extra);
        let mut p = Params::default();
        for w in words {
            let (k, v) = w.split_once('=').unwrap();
            p.set(k, v).unwrap();
        }
        p
    }

    pub(crate) fn agent(&self, extra: &[&str]) -> IpmiAgent {
        IpmiAgent::from_params(&self.params(extra)).unwrap()
    }

    /// The power state the chassis hook stored (the ground truth, not the BMC's answer).
    pub(crate) fn power_file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("power"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub(crate) fn node_pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("node.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub(crate) fn chassis_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chassis.log")).unwrap_or_default()
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("node.pid")) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                kill_group(pid);
            }
        }
        kill_group(self.sim.id());
        let _ = self.sim.wait();
    }
}

/// Runs every native agent behind `dyn FenceAgent` (the conformance suite's view).
pub(crate) fn boxed(a: impl FenceAgent + 'static) -> Box<dyn FenceAgent> {
    Box::new(a)
}

pub(crate) fn exists(p: &Path) -> bool {
    p.exists()
}
