//! The FUSE frontend: a directory with one file, `disk.img`, the size of the volume, meant for
//! `losetup --direct-io=on`. Requests are handed to worker threads so the loop device's
//! concurrent I/O runs in parallel; every FSYNC is a replicated flush.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use blockrepl::Input;
use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request,
};

use crate::node::Node;

const ROOT: u64 = 1;
const DISK: u64 = 2;
const TTL: Duration = Duration::from_secs(1);
const WORKERS: usize = 8;
const FOPEN_DIRECT_IO: u32 = 1;
const FALLOC_FL_KEEP_SIZE: i32 = 1;
const FALLOC_FL_PUNCH_HOLE: i32 = 2;
const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

type Job = Box<dyn FnOnce(&Node) + Send>;

struct Fs {
    node: Arc<Node>,
    jobs: Mutex<Sender<Job>>,
}

fn attr(ino: u64, size: u64) -> FileAttr {
    let dir = ino == ROOT;
    FileAttr {
        ino,
        size: if dir { 0 } else { size },
        blocks: if dir { 0 } else { size / 512 },
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: if dir { FileType::Directory } else { FileType::RegularFile },
        perm: if dir { 0o755 } else { 0o600 },
        nlink: if dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: &blockrepl::IoError) -> i32 {
    match e {
        blockrepl::IoError::NotPrimary { .. } => rustix::io::Errno::ROFS.raw_os_error(),
        blockrepl::IoError::OutOfRange { .. } => rustix::io::Errno::INVAL.raw_os_error(),
        _ => rustix::io::Errno::IO.raw_os_error(),
    }
}

impl Fs {
    fn spawn(&self, job: Job) {
        if let Ok(tx) = self.jobs.lock() {
            let _ = tx.send(job);
        }
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), i32> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == "disk.img" {
            reply.entry(&TTL, &attr(DISK, self.node.size), 0);
        } else {
            reply.error(rustix::io::Errno::NOENT.raw_os_error());
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match ino {
            ROOT | DISK => reply.attr(&TTL, &attr(ino, self.node.size)),
            _ => reply.error(rustix::io::Errno::NOENT.raw_os_error()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        if size.is_some_and(|s| s != self.node.size) {
            // The volume's size is fixed.
            reply.error(rustix::io::Errno::PERM.raw_os_error());
            return;
        }
        reply.attr(&TTL, &attr(ino, self.node.size));
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if ino == DISK {
            reply.opened(0, FOPEN_DIRECT_IO);
        } else {
            reply.error(rustix::io::Errno::ISDIR.raw_os_error());
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let offset = offset.max(0) as u64;
        let size = (u64::from(size)).min(self.node.size.saturating_sub(offset)) as u32;
        if size == 0 {
            reply.data(&[]);
            return;
        }
        self.spawn(Box::new(move |node| match node.read(offset, size) {
            Ok(d) => reply.data(&d.unwrap_or_default()),
            Err(e) => reply.error(errno(&e)),
        }));
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyWrite,
    ) {
        let offset = offset.max(0) as u64;
        // Submitted right here and answered by whichever thread completes the write: no
        // hand-off on the latency path, no copy of the whole request.
        let len = data.len() as u32;
        let mut owned = self.node.buffers.take(data.len());
        owned.extend_from_slice(data);
        let owned = self.node.buffers.share(owned);
        self.node.write_with(offset, owned, false, move |r| match r {
            Ok(_) => reply.written(len),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        self.node.submit_with(
            |req| Input::Flush { req },
            move |r| match r {
                Ok(_) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let offset = offset.max(0) as u64;
        let len = length.max(0) as u64;
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) == 0 {
            // Plain preallocation inside a fixed-size volume: nothing to do.
            if mode & !FALLOC_FL_KEEP_SIZE == 0 {
                reply.ok();
            } else {
                reply.error(rustix::io::Errno::OPNOTSUPP.raw_os_error());
            }
            return;
        }
        self.spawn(Box::new(move |node| {
            match node.submit(|req| Input::WriteZeroes { req, offset, len, fua: false }) {
                Ok(_) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        }));
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        if ino != ROOT {
            reply.error(rustix::io::Errno::NOTDIR.raw_os_error());
            return;
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (DISK, FileType::RegularFile, "disk.img"),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: fuser::ReplyStatfs) {
        reply.statfs(0, 0, 0, 2, 0, 4096, 255, 4096);
    }
}

/// Mounts the frontend; the returned session unmounts on drop.
pub(crate) fn mount(node: Arc<Node>, dir: &Path) -> anyhow::Result<fuser::BackgroundSession> {
    std::fs::create_dir_all(dir)?;
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..WORKERS {
        let rx = Arc::clone(&rx);
        let node = Arc::clone(&node);
        std::thread::Builder::new().name(format!("fuse-{i}")).spawn(move || {
            loop {
                let job = {
                    let Ok(rx) = rx.lock() else { return };
                    match rx.recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    }
                };
                job(&node);
            }
        })?;
    }
    let fs = Fs { node, jobs: Mutex::new(tx) };
    let opts = [MountOption::FSName("blockrepl".into()), MountOption::AllowOther, MountOption::DefaultPermissions];
    fuser::spawn_mount2(fs, dir, &opts).with_context(|| format!("mounting FUSE at {}", dir.display()))
}
