//! The Filesystem agent: mount and unmount with fstype and options, an fsck policy, refusal to
//! mount a device twice, and a stop that finds and signals the processes holding the mount.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::mountinfo::{self, Holder, Mount};
use super::{configured, op_actions};
use crate::agent::{Op, Outcome, ResourceAgent};
use crate::error::AgentError;
use crate::events::Event;
use crate::proc;
use crate::rc::OcfRc;
use crate::schema::{ActionSpec, Metadata, ParamSpec, ParamType};

/// The Filesystem agent.
#[derive(Debug, Default)]
pub(crate) struct Filesystem;

/// Directory (inside the mount) used by the depth-20 read/write probe.
const STATUS_DIR: &str = ".ha_status";

/// Filesystem types that journal (skipped by `run_fsck=auto`) or have no block device.
const NO_AUTO_FSCK: [&str; 14] = [
    "ext3", "ext4", "xfs", "btrfs", "jfs", "reiserfs", "tmpfs", "ramfs", "nfs", "nfs4", "cifs",
    "smbfs", "fuse", "none",
];

struct Spec {
    device: String,
    directory: PathBuf,
    fstype: String,
}

fn spec(op: &Op<'_>) -> Result<Spec, Outcome> {
    let directory = PathBuf::from(op.params.str("directory").unwrap_or_default());
    if !directory.is_absolute() {
        return Err(configured(
            "directory",
            format!("`{}` is not an absolute path", directory.display()),
        ));
    }
    // Trailing slashes and `..` would make the mount-table comparison miss.
    let normal: PathBuf = directory.components().collect();
    if normal
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(configured("directory", "must not contain `..`"));
    }
    let directory = std::fs::canonicalize(&normal).unwrap_or(normal);
    Ok(Spec {
        device: op.params.str("device").unwrap_or_default().to_owned(),
        directory,
        fstype: op.params.str("fstype").unwrap_or_default().to_owned(),
    })
}

/// The `(major, minor)` of `device` when it is a block device.
fn block_dev(device: &str) -> Result<Option<(u64, u64)>, Outcome> {
    if !device.starts_with('/') {
        return Ok(None);
    }
    let path = Path::new(device);
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_block_device() => Ok(Some(mountinfo::split_dev(m.rdev()))),
        Ok(_) => Ok(None),
        Err(e) => Err(Outcome::fail(
            OcfRc::ErrInstalled,
            format!("parameter `device`: {device} does not exist on this node ({e})"),
        )),
    }
}

fn is_ours(m: &Mount, s: &Spec, dev: Option<(u64, u64)>) -> bool {
    match dev {
        Some(d) => m.dev == d,
        None => m.source == s.device,
    }
}

fn parse_options(options: &str) -> Result<(MsFlags, String), Outcome> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match o {
            "defaults" | "rw" | "auto" | "noauto" | "nouser" | "_netdev" => {}
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "loop" | "remount" | "move" => {
                return Err(configured(
                    "options",
                    format!("option `{o}` is not supported by this agent"),
                ));
            }
            other => data.push(other),
        }
    }
    Ok((flags, data.join(",")))
}

fn parse_signal(param: &str, text: &str) -> Result<Signal, Outcome> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| configured(param, format!("{n} is not a signal number")));
    }
    let name = if t.starts_with("SIG") {
        t.to_owned()
    } else {
        format!("SIG{t}")
    };
    Signal::from_str(&name.to_ascii_uppercase()).map_err(|_| {
        configured(
            param,
            format!("`{t}` is not a signal name (e.g. TERM, KILL, INT)"),
        )
    })
}

fn listing(h: &[Holder]) -> String {
    h.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn fsck(op: &Op<'_>, s: &Spec) -> Result<(), Outcome> {
    let policy = op.params.str("run_fsck").unwrap_or("auto");
    let run = match policy {
        "force" => true,
        "no" => false,
        _ => !NO_AUTO_FSCK.contains(&s.fstype.as_str()),
    };
    if !run || !s.device.starts_with('/') {
        return Ok(());
    }
    let mut cmd = Command::new("fsck");
    cmd.args(["-T", "-p", "-t", &s.fstype, &s.device])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let ran = proc::run(&mut cmd, op.deadline)
        .map_err(|e| Outcome::fail(OcfRc::ErrInstalled, format!("cannot run fsck: {e}")))?;
    if ran.timed_out {
        return Err(Outcome::timed_out(format!(
            "fsck of {} did not finish in time",
            s.device
        )));
    }
    match ran.code() {
        // 0: clean, 1: errors corrected, 2: corrected and a reboot is advised.
        Some(0..=2) => Ok(()),
        _ => Err(Outcome::fail(
            OcfRc::ErrGeneric,
            format!(
                "fsck of {} failed, the filesystem needs repair by hand: {}",
                s.device,
                ran.describe()
            ),
        )),
    }
}

impl Filesystem {
    fn do_start(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let (flags, data) = parse_options(op.params.str("options").unwrap_or_default())?;
        let dev = block_dev(&s.device)?;
        let mounts = mountinfo::mounts().map_err(|e| {
            Outcome::fail(
                OcfRc::ErrGeneric,
                format!("cannot read the mount table: {e}"),
            )
        })?;
        if let Some(m) = mountinfo::mount_at(&mounts, &s.directory) {
            if is_ours(&m, &s, dev) {
                return Ok(Outcome::ok());
            }
            return Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!(
                    "{} already has {} mounted on it",
                    s.directory.display(),
                    m.source
                ),
            ));
        }
        if let Some(d) = dev
            && !flags.contains(MsFlags::MS_BIND)
            && let Some(other) = mounts.iter().find(|m| m.dev == d)
        {
            return Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!(
                    "{} is already mounted on {}; refusing to mount it a second time",
                    s.device,
                    other.mount_point.display()
                ),
            ));
        }
        std::fs::create_dir_all(&s.directory).map_err(|e| {
            Outcome::fail(
                OcfRc::ErrPerm,
                format!("cannot create mount point {}: {e}", s.directory.display()),
            )
        })?;
        fsck(op, &s)?;
        let data = (!data.is_empty()).then_some(data.as_str());
        nix::mount::mount(
            Some(s.device.as_str()),
            &s.directory,
            Some(s.fstype.as_str()),
            flags,
            data,
        )
        .map_err(|e| {
            let rc = match e {
                Errno::EPERM | Errno::EACCES => OcfRc::ErrPerm,
                Errno::ENOENT => OcfRc::ErrInstalled,
                _ => OcfRc::ErrGeneric,
            };
            let hint = match e {
                Errno::ENODEV => " (the kernel does not know this fstype)",
                Errno::EINVAL => " (wrong fstype, bad option, or bad superblock)",
                _ => "",
            };
            Outcome::fail(
                rc,
                format!(
                    "cannot mount {} on {} as {}: {e}{hint}",
                    s.device,
                    s.directory.display(),
                    s.fstype
                ),
            )
        })?;
        Event::Mounted {
            rsc: op.instance,
            device: &s.device,
            directory: &s.directory,
        }
        .log();
        Ok(Outcome::ok())
    }

    fn do_stop(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let mounts = mountinfo::mounts().map_err(|e| {
            Outcome::fail(
                OcfRc::ErrGeneric,
                format!("cannot read the mount table: {e}"),
            )
        })?;
        let Some(top) = mountinfo::mount_at(&mounts, &s.directory) else {
            return Ok(Outcome::ok());
        };
        // Submounts first, deepest first.
        let mut subs: Vec<&Mount> = mounts
            .iter()
            .filter(|m| m.mount_point != s.directory && m.mount_point.starts_with(&s.directory))
            .collect();
        subs.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
        for m in subs {
            let _ = nix::mount::umount2(&m.mount_point, MntFlags::empty());
        }
        let force = !matches!(op.params.str("force_unmount"), Some("false"));
        let term = parse_signal(
            "term_signal",
            op.params.str("term_signal").unwrap_or("TERM"),
        )?;
        let killsig = parse_signal(
            "kill_signal",
            op.params.str("kill_signal").unwrap_or("KILL"),
        )?;
        let delay = op
            .params
            .duration("signal_delay")
            .unwrap_or(Duration::from_secs(1));
        let mut signalled: Vec<Holder> = Vec::new();
        let mut round = 0u32;
        loop {
            match nix::mount::umount2(&s.directory, MntFlags::empty()) {
                Ok(()) => {}
                Err(Errno::EINVAL) => {} // no longer a mount point
                Err(Errno::EBUSY) => {
                    let holders = mountinfo::holders(top.dev);
                    if !force || op.expired() {
                        let reason = format!(
                            "{} is busy{}",
                            s.directory.display(),
                            if holders.is_empty() {
                                " (no process holds it: another mount namespace or a kernel user)"
                                    .to_owned()
                            } else {
                                format!(", held by {}", listing(&holders))
                            }
                        );
                        return Err(if op.expired() {
                            Outcome::timed_out(reason)
                        } else {
                            Outcome::fail(OcfRc::ErrGeneric, reason)
                        });
                    }
                    let sig = if round == 0 { term } else { killsig };
                    for h in &holders {
                        Event::HolderSignalled {
                            rsc: op.instance,
                            pid: h.pid,
                            comm: &h.comm,
                            how: &h.how,
                            signal: &sig,
                        }
                        .log();
                        let _ = kill(Pid::from_raw(h.pid), sig);
                        if !signalled.iter().any(|x| x.pid == h.pid) {
                            signalled.push(h.clone());
                        }
                    }
                    round += 1;
                    // Wait up to signal_delay for the holders to let go.
                    let until = std::time::Instant::now() + delay;
                    while holders.iter().any(|h| proc::alive(h.pid))
                        && proc::pause(Duration::from_millis(10), until.min(op.deadline))
                    {
                    }
                    if holders.is_empty() {
                        proc::pause(Duration::from_millis(50), op.deadline);
                    }
                    continue;
                }
                Err(e) => {
                    return Err(Outcome::fail(
                        OcfRc::ErrGeneric,
                        format!("cannot unmount {}: {e}", s.directory.display()),
                    ));
                }
            }
            let still = mountinfo::mounts()
                .ok()
                .and_then(|m| mountinfo::mount_at(&m, &s.directory))
                .is_some_and(|m| m.dev == top.dev);
            if still {
                // Stacked mounts of the same filesystem: unmount the next one.
                continue;
            }
            Event::Unmounted {
                rsc: op.instance,
                directory: &s.directory,
            }
            .log();
            let out = Outcome::ok();
            return Ok(if signalled.is_empty() {
                out
            } else {
                out.with_reason(format!(
                    "unmounted after signalling {}",
                    listing(&signalled)
                ))
            });
        }
    }

    fn do_monitor(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        let mounts = mountinfo::mounts().map_err(|e| {
            Outcome::fail(
                OcfRc::ErrGeneric,
                format!("cannot read the mount table: {e}"),
            )
        })?;
        let Some(m) = mountinfo::mount_at(&mounts, &s.directory) else {
            return Ok(Outcome::not_running());
        };
        let dev = block_dev(&s.device).unwrap_or(None);
        if !is_ours(&m, &s, dev) {
            return Ok(Outcome::fail(
                OcfRc::ErrGeneric,
                format!(
                    "{} has {} mounted, not {}",
                    s.directory.display(),
                    m.source,
                    s.device
                ),
            ));
        }
        if op.depth >= 20 {
            return Ok(probe(
                op,
                &s.directory,
                m.options.split(',').any(|o| o == "ro"),
            ));
        }
        Ok(Outcome::ok())
    }
}

/// Writes, syncs and reads back a status file (or only lists the directory on a read-only
/// mount) on a helper thread, so that a hung filesystem turns into a timeout, not a hang.
fn probe(op: &Op<'_>, dir: &Path, read_only: bool) -> Outcome {
    let dir = dir.to_owned();
    let name = format!("{}.{}", op.instance, std::process::id());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = (|| -> std::io::Result<()> {
            if read_only {
                std::fs::read_dir(&dir)?.count();
                return Ok(());
            }
            use std::io::{Read, Seek, Write};
            let status = dir.join(STATUS_DIR);
            std::fs::create_dir_all(&status)?;
            let path = status.join(name);
            let payload = format!("probe {:?}\n", std::time::SystemTime::now());
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)?;
            f.write_all(payload.as_bytes())?;
            f.sync_all()?;
            f.rewind()?;
            let mut back = String::new();
            f.read_to_string(&mut back)?;
            drop(f);
            std::fs::remove_file(&path)?;
            if back != payload {
                return Err(std::io::Error::other("read back different data"));
            }
            Ok(())
        })();
        let _ = tx.send(result);
    });
    match rx.recv_timeout(op.remaining()) {
        Ok(Ok(())) => Outcome::ok(),
        Ok(Err(e)) => Outcome::fail(OcfRc::ErrGeneric, format!("read/write probe failed: {e}")),
        Err(_) => {
            Outcome::timed_out("read/write probe did not finish in time: the filesystem hangs")
        }
    }
}

impl ResourceAgent for Filesystem {
    fn meta_data(&self) -> Result<Metadata, AgentError> {
        let mut actions = op_actions(60, 60, 20, 40);
        actions.push(ActionSpec::monitor(
            Duration::from_secs(40),
            Duration::from_secs(60),
            20,
        ));
        Ok(Metadata {
            name: "filesystem".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            shortdesc: "Mounts a filesystem".into(),
            longdesc: "Mounts a device on a directory (created if missing). Stop finds the processes holding the mount and signals them. Depth 20 monitors write and read back a file. Parameter names follow the Filesystem OCF agent.".into(),
            params: vec![
                ParamSpec::new("device", ParamType::String, "Block device, or source such as tmpfs").required(),
                ParamSpec::new("directory", ParamType::String, "Mount point").required().unique(),
                ParamSpec::new("fstype", ParamType::String, "Filesystem type").required(),
                ParamSpec::new("options", ParamType::String, "Mount options (comma-separated)"),
                ParamSpec::new("run_fsck", ParamType::Select(vec!["auto".into(), "force".into(), "no".into()]), "When to run fsck before mounting").default("auto").long("auto: only for filesystems without a journal; force: always; no: never."),
                ParamSpec::new("force_unmount", ParamType::Select(vec!["true".into(), "safe".into(), "false".into()]), "Signal processes that hold the mount on stop").default("true"),
                ParamSpec::new("term_signal", ParamType::String, "First signal sent to holders").default("TERM"),
                ParamSpec::new("kill_signal", ParamType::String, "Signal sent to holders that survive").default("KILL"),
                ParamSpec::new("signal_delay", ParamType::Duration, "Wait after each signal round").default("1s"),
            ],
            actions,
        })
    }

    fn validate(&self, op: &Op<'_>) -> Outcome {
        let check = || -> Result<Outcome, Outcome> {
            let s = spec(op)?;
            parse_options(op.params.str("options").unwrap_or_default())?;
            parse_signal(
                "term_signal",
                op.params.str("term_signal").unwrap_or("TERM"),
            )?;
            parse_signal(
                "kill_signal",
                op.params.str("kill_signal").unwrap_or("KILL"),
            )?;
            block_dev(&s.device)?;
            let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
            let helper = ["/sbin", "/usr/sbin"]
                .iter()
                .any(|d| Path::new(d).join(format!("mount.{}", s.fstype)).exists());
            if !helper
                && !known
                    .lines()
                    .any(|l| l.split_whitespace().last() == Some(s.fstype.as_str()))
            {
                return Err(Outcome::fail(
                    OcfRc::ErrInstalled,
                    format!(
                        "parameter `fstype`: this kernel does not support {} (see /proc/filesystems)",
                        s.fstype
                    ),
                ));
            }
            Ok(Outcome::ok())
        };
        check().unwrap_or_else(|o| o)
    }

    fn start(&self, op: &Op<'_>) -> Outcome {
        match self.validate(op) {
            o if o.rc != OcfRc::Success => o,
            _ => self.do_start(op).unwrap_or_else(|o| o),
        }
    }

    fn stop(&self, op: &Op<'_>) -> Outcome {
        self.do_stop(op).unwrap_or_else(|o| o)
    }

    fn monitor(&self, op: &Op<'_>) -> Outcome {
        self.do_monitor(op).unwrap_or_else(|o| o)
    }
}
