//! Real counterparts for the fencing tests: ipmi_sim, the libvirt test driver, moto.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fencing::{IpmiAgent, Params};

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
    let _ = Command::new("kill").args(["-9", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
}

/// An `ipmi_sim` BMC on loopback whose power-off kills a "node" process and whose power-on
/// starts a new one (TEST-RIGS §2; the rig itself is `rig::ipmi`).
pub(crate) struct IpmiSim {
    inner: rig::ipmi::IpmiSim,
    pub(crate) port: u16,
}

impl IpmiSim {
    /// Needs root (for nothing but consistency with CI), `ipmi_sim` and `ipmitool`.
    pub(crate) fn available() -> bool {
        rig::ipmi::IpmiSim::available()
    }

    pub(crate) fn start() -> IpmiSim {
        let port = free_udp_port();
        IpmiSim { inner: rig::ipmi::IpmiSim::start(None, "127.0.0.1", port, rig::ipmi::Node::Sleeper), port }
    }

    pub(crate) fn params(&self, extra: &[&str]) -> Params {
        let port = format!("ipport={}", self.port);
        let mut words = vec!["ip=127.0.0.1", port.as_str(), "username=admin", "password=secret"];
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
        self.inner.power()
    }

    pub(crate) fn node_pid(&self) -> u32 {
        self.inner.node_pid().expect("a node pid")
    }

    pub(crate) fn chassis_log(&self) -> String {
        self.inner.chassis_log()
    }
}

/// libvirtd for the test: an already running one is used as is; otherwise virtlogd and
/// libvirtd are started here and stopped on drop.
pub(crate) struct Libvirtd {
    started: Vec<Child>,
}

pub(crate) fn virsh_ok(uri: &str, cmd: &str) -> bool {
    Command::new("virsh")
        .args(["-q", "-c", uri, cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn virsh_out(uri: &str, cmd: &str) -> String {
    let out = Command::new("virsh").args(["-q", "-c", uri, cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Libvirtd {
    pub(crate) fn available() -> bool {
        rig::require_root_and(&["virsh", "libvirtd", "virtlogd"])
    }

    pub(crate) fn start() -> Libvirtd {
        let mut started = Vec::new();
        if !virsh_ok("qemu:///system", "uri") {
            for d in ["virtlogd", "libvirtd"] {
                started.push(
                    Command::new(d)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .process_group(0)
                        .spawn()
                        .expect("start libvirt daemons"),
                );
            }
            assert!(
                rig::wait_until(Duration::from_secs(60), || virsh_ok("qemu:///system", "uri")),
                "libvirtd did not come up"
            );
        }
        Libvirtd { started }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        for c in self.started.iter_mut().rev() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

/// A background process killed (with its group) on drop.
pub(crate) struct Background(pub(crate) Child);

impl Drop for Background {
    fn drop(&mut self) {
        kill_group(self.0.id());
        let _ = self.0.wait();
    }
}

/// A tiny diskless qemu domain (TCG), destroyed and undefined on drop.
pub(crate) struct TinyDomain {
    pub(crate) name: String,
    _dir: rig::ScratchDir,
}

impl TinyDomain {
    pub(crate) fn define_and_start() -> Result<TinyDomain, String> {
        let dir = rig::ScratchDir::new();
        let name = rig::unique_name("vm");
        let _ = Command::new("chmod").arg("0755").arg(dir.path()).status();
        let xml = std::fs::read_to_string(shared().join("rigs/libvirt/tiny.xml"))
            .unwrap()
            .replace("type='kvm'", "type='qemu'")
            .replace("@NAME@", &name)
            .replace("@RIG_DIR@", dir.path().to_str().unwrap());
        let file = dir.path().join("dom.xml");
        std::fs::write(&file, xml).unwrap();
        let d = TinyDomain { name, _dir: dir };
        let out = Command::new("virsh").args(["-q", "-c", "qemu:///system", "define"]).arg(&file).output().unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let out = Command::new("virsh").args(["-q", "-c", "qemu:///system", "start", &d.name]).output().unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(d)
    }
}

impl Drop for TinyDomain {
    fn drop(&mut self) {
        let _ = virsh_ok("qemu:///system", &format!("destroy {}", self.name));
        let _ = virsh_ok("qemu:///system", &format!("undefine {}", self.name));
    }
}

/// A loopback sshd standing in for the hypervisor host that fence_virsh logs into; its
/// sessions get `LIBVIRT_DEFAULT_URI`, so fence_virsh's plain `virsh` drives `uri`.
pub(crate) struct Sshd {
    dir: rig::ScratchDir,
    pub(crate) port: u16,
    pid: u32,
}

impl Sshd {
    pub(crate) fn available() -> bool {
        rig::require_root_and(&["/usr/sbin/sshd", "ssh-keygen", "ssh", "fence_virsh"])
    }

    pub(crate) fn start(uri: &str) -> Sshd {
        let dir = rig::ScratchDir::new();
        let d = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
        let conf = std::fs::read_to_string(shared().join("rigs/libvirt/sshd_config"))
            .unwrap()
            .replace("@RIG_DIR@", d.to_str().unwrap())
            .replace("@PORT@", &port.to_string());
        std::fs::write(d.join("sshd_config"), format!("{conf}\nSetEnv LIBVIRT_DEFAULT_URI={uri}\n")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for k in ["hostkey", "clientkey"] {
            rig::run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join(k)));
        }
        std::fs::copy(d.join("clientkey.pub"), d.join("authorized_keys")).unwrap();
        rig::run(Command::new("/usr/sbin/sshd").arg("-f").arg(d.join("sshd_config")).arg("-E").arg(d.join("sshd.log")));
        let pidfile = d.join("sshd.pid");
        assert!(rig::wait_until(Duration::from_secs(5), || pidfile.exists()));
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        Sshd { dir, port, pid }
    }

    /// fence_virsh options for `plug` (the prompt trick from TEST-RIGS §3).
    pub(crate) fn fence_virsh_params(&self) -> Params {
        let key = self.dir.path().join("clientkey");
        Params::from_words(&[
            "ip=127.0.0.1".to_owned(),
            format!("ipport={}", self.port),
            "username=root".into(),
            format!("identity_file={}", key.display()),
            "ssh_options=-oStrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null -oLogLevel=ERROR -t '/bin/bash -c \"PS1=\\[EXPECT\\]#\\  /bin/bash --noprofile --norc\"'".into(),
        ])
        .unwrap()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}
