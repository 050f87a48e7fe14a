//! `ipmi_sim` as a simulated BMC (TEST-RIGS §2): its chassis power-off runs a hook (kill the
//! "node" whose pid is in `node.pid`), power-on another. Started on loopback or inside a
//! namespace; stopped, with its node, on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Netns, ScratchDir};

/// The shared rig files (`$SHARED/rigs/ipmi`).
fn rig_files() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/rigs/ipmi"))
}

/// What powering the chassis off and on does to its node.
#[derive(Debug, Clone)]
pub enum Node {
    /// A `sleep` process the BMC kills on power-off and starts again on power-on.
    Sleeper,
    /// A process the test owns: power-off kills the pid written with [`IpmiSim::set_node_pid`]
    /// (the process group when it leads one); power-on starts nothing.
    External,
    /// A whole node as a network namespace (by name): power-off kills every process in it and
    /// unplugs its interfaces; power-on starts nothing.
    Namespace(String),
}

/// A running `ipmi_sim`. Users `admin`/`secret` and `viewer`/`view`; always use cipher 3.
#[derive(Debug)]
pub struct IpmiSim {
    /// Its files: `power` (the chassis state, `0`/`1`), `chassis.log`, `node.pid`.
    pub dir: ScratchDir,
    /// The address it listens on.
    pub addr: String,
    /// The UDP port.
    pub port: u16,
    sim: Child,
}

impl IpmiSim {
    /// True when it can run here (root and `ipmi_sim`; see [`crate::require_root_and`]).
    pub fn available() -> bool {
        crate::require_root_and(&["ipmi_sim", "ipmitool"])
    }

    /// Starts a BMC on `addr:port`, inside `ns` when given, driving `node`.
    pub fn start(ns: Option<&Netns>, addr: &str, port: u16, node: Node) -> IpmiSim {
        let dir = ScratchDir::new();
        let d = dir.path();
        let rigs = rig_files();
        std::fs::create_dir(d.join("state")).expect("state dir");
        for f in ["sim.emu", "chassis.sh"] {
            std::fs::copy(rigs.join(f), d.join(f)).expect("rig file");
        }
        let conf = std::fs::read_to_string(rigs.join("lan.conf"))
            .expect("lan.conf")
            .replace("@RIG_DIR@", &d.display().to_string())
            .replace("@ADDR@", addr)
            .replace("@PORT@", &port.to_string());
        std::fs::write(d.join("lan.conf"), conf).expect("lan.conf");
        std::fs::write(d.join("power"), "1\n").expect("power file");
        let (on_off, on_on) = match node {
            Node::Sleeper => {
                let start = "setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > node.pid";
                crate::sh(&format!("cd {}; {start}", d.display()));
                (format!("kill -9 $(cat {}/node.pid)", d.display()), format!("cd {}; {start}", d.display()))
            }
            Node::Namespace(ns) => (
                format!(
                    "for p in $(ip netns pids {ns}); do kill -9 $p; done; for i in $(ip -n {ns} -o link show | awk -F': ' '{{print $2}}' | cut -d@ -f1); do [ \"$i\" = lo ] || ip -n {ns} link set $i down; done"
                ),
                "true".to_string(),
            ),
            Node::External => (
                format!(
                    "p=$(cat {0}/node.pid 2>/dev/null) && {{ kill -9 -- -$p 2>/dev/null || kill -9 $p; }}",
                    d.display()
                ),
                "true".to_string(),
            ),
        };
        let mut cmd = match ns {
            Some(ns) => ns.command("ipmi_sim"),
            None => Command::new("ipmi_sim"),
        };
        let sim = cmd
            .arg("-c")
            .arg(d.join("lan.conf"))
            .arg("-f")
            .arg(d.join("sim.emu"))
            .arg("-s")
            .arg(d.join("state"))
            .arg("-n")
            .env("IPMISIM_ON_OFF", on_off)
            .env("IPMISIM_ON_ON", on_on)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("sim.out")).expect("sim.out"))
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start ipmi_sim");
        let s = IpmiSim { dir, addr: addr.to_string(), port, sim };
        let status = format!(
            "ipmitool -I lanplus -C 3 -H {} -p {} -U admin -P secret -R 1 -N 1 chassis power status",
            s.addr, s.port
        );
        let ready = crate::wait_until(Duration::from_secs(10), || {
            let mut c = match ns {
                Some(ns) => ns.command("sh"),
                None => Command::new("sh"),
            };
            c.arg("-c").arg(&status).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        });
        assert!(ready, "ipmi_sim did not come up on {}:{}", s.addr, s.port);
        s
    }

    /// The power state the chassis hook stored: `1` on, `0` off (the ground truth).
    pub fn power(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("power")).unwrap_or_default().trim().to_owned()
    }

    /// The pid power-off kills.
    pub fn set_node_pid(&self, pid: u32) {
        std::fs::write(self.dir.path().join("node.pid"), pid.to_string()).expect("node.pid");
    }

    /// The pid of the node process, when one is recorded.
    pub fn node_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("node.pid")).ok()?.trim().parse().ok()
    }

    /// Every chassis call, one per line.
    pub fn chassis_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chassis.log")).unwrap_or_default()
    }

    /// Where its files are.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let kill_group = |pid: u32| {
            let _ = Command::new("kill").args(["-9", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
        };
        if let Some(pid) = self.node_pid() {
            kill_group(pid);
        }
        kill_group(self.sim.id());
        let _ = self.sim.wait();
    }
}
