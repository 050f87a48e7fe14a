//! The mount table (`/proc/self/mountinfo`) and the processes that hold a mount.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The device number of the mounted filesystem.
    pub(crate) dev: (u64, u64),
    pub(crate) mount_point: PathBuf,
    pub(crate) options: String,
    pub(crate) fstype: String,
    pub(crate) source: String,
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub(crate) fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (maj, min) = l.get(2)?.split_once(':')?;
            Some(Mount {
                dev: (maj.parse().ok()?, min.parse().ok()?),
                mount_point: PathBuf::from(unescape(l.get(4)?)),
                options: (*l.get(5)?).to_owned(),
                fstype: (*r.first()?).to_owned(),
                source: unescape(r.get(1)?),
            })
        })
        .collect()
}

/// The current mount table of this process's mount namespace.
pub(crate) fn mounts() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The topmost mount at `dir` (the last one listed wins when stacked).
pub(crate) fn mount_at(mounts: &[Mount], dir: &Path) -> Option<Mount> {
    mounts.iter().rev().find(|m| m.mount_point == dir).cloned()
}

/// `(major, minor)` of a device number.
pub(crate) fn split_dev(dev: u64) -> (u64, u64) {
    (nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
}

/// A process using a mount, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) pid: i32,
    pub(crate) comm: String,
    /// `cwd`, `root`, `exe`, `fd 3`, `mmap`.
    pub(crate) how: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.pid, self.comm, self.how)
    }
}

/// Every process (other than this one) with its cwd, root, executable, an open file or a
/// mapping on the filesystem with device `dev`.
pub(crate) fn holders(dev: (u64, u64)) -> Vec<Holder> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let on_dev = |p: &Path| std::fs::metadata(p).is_ok_and(|m| split_dev(m.dev()) == dev);
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = e.path();
        let mut how = None;
        for link in ["cwd", "root", "exe"] {
            if how.is_none() && on_dev(&base.join(link)) {
                how = Some(link.to_owned());
            }
        }
        if how.is_none()
            && let Ok(fds) = std::fs::read_dir(base.join("fd"))
        {
            for fd in fds.flatten() {
                if on_dev(&fd.path()) {
                    how = Some(format!("fd {}", fd.file_name().to_string_lossy()));
                    break;
                }
            }
        }
        if how.is_none()
            && let Ok(maps) = std::fs::read_to_string(base.join("maps"))
        {
            let wanted = format!("{:02x}:{:02x}", dev.0, dev.1);
            if maps
                .lines()
                .any(|l| l.split_whitespace().nth(3) == Some(wanted.as_str()))
            {
                how = Some("mmap".to_owned());
            }
        }
        if let Some(how) = how {
            found.push(Holder {
                pid,
                comm: crate::proc::comm(pid),
                how,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext4 /dev/loop3 rw,errors=continue\n\
                    garbage line\n\
                    40 35 0:45 / /run rw - tmpfs tmpfs rw,size=8m\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].dev, (98, 0));
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(m[0].fstype, "ext4");
        assert_eq!(m[0].source, "/dev/loop3");
        assert_eq!(m[1].options, "rw");
    }

    #[test]
    fn this_process_root_is_mounted() {
        let m = mounts().unwrap();
        assert!(mount_at(&m, Path::new("/")).is_some());
    }
}
