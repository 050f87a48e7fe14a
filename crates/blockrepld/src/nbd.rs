//! NBD server (fixed newstyle handshake, NBD_OPT_GO/INFO/EXPORT_NAME, simple replies) over a
//! unix socket or TCP. Requests of one connection run in parallel on a few worker threads;
//! replies are written under a lock in completion order (NBD allows any order).

use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use blockrepl::Input;

use crate::node::{Node, Outcome};

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const REPLY_MAGIC_OPT: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const CLIENT_NO_ZEROES: u32 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TF_HAS_FLAGS: u16 = 1;
const TF_SEND_FLUSH: u16 = 1 << 2;
const TF_SEND_FUA: u16 = 1 << 3;
const TF_SEND_TRIM: u16 = 1 << 5;
const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
const TF_CAN_MULTI_CONN: u16 = 1 << 8;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_FLAG_FUA: u16 = 1;

const EIO: u32 = 5;
const EINVAL: u32 = 22;
const EPERM: u32 = 1;

const MAX_REQUEST: u32 = 32 << 20;
const WORKERS: usize = 8;

pub(crate) fn serve_unix(node: Arc<Node>, path: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("binding NBD socket {}", path.display()))?;
    std::thread::Builder::new().name("nbd-unix".into()).spawn(move || {
        for s in l.incoming().flatten() {
            let node = Arc::clone(&node);
            let _ = std::thread::Builder::new().name("nbd-conn".into()).spawn(move || {
                let Ok(w) = s.try_clone() else { return };
                if let Err(e) = session(&node, s, w) {
                    tracing::debug!(error = %format!("{e:#}"), "nbd session ended");
                }
            });
        }
    })?;
    Ok(())
}

pub(crate) fn serve_tcp(node: Arc<Node>, addr: &str) -> anyhow::Result<()> {
    let l = TcpListener::bind(addr).with_context(|| format!("binding NBD on {addr}"))?;
    std::thread::Builder::new().name("nbd-tcp".into()).spawn(move || {
        for s in l.incoming().flatten() {
            let _ = s.set_nodelay(true);
            let node = Arc::clone(&node);
            let _ = std::thread::Builder::new().name("nbd-conn".into()).spawn(move || {
                let Ok(w) = s.try_clone() else { return };
                if let Err(e) = session(&node, s, w) {
                    tracing::debug!(error = %format!("{e:#}"), "nbd session ended");
                }
            });
        }
    })?;
    Ok(())
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(a)
}

fn opt_reply(w: &mut impl Write, opt: u32, kind: u32, data: &[u8]) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&REPLY_MAGIC_OPT.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    w.write_all(&b)
}

fn transmission_flags() -> u16 {
    TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES | TF_CAN_MULTI_CONN
}

/// Runs the handshake; returns true when transmission begins.
fn handshake(node: &Node, r: &mut impl Read, w: &mut impl Write) -> anyhow::Result<bool> {
    let mut hello = Vec::new();
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    w.write_all(&hello)?;
    let mut cf = [0u8; 4];
    r.read_exact(&mut cf)?;
    let no_zeroes = u32::from_be_bytes(cf) & CLIENT_NO_ZEROES != 0;
    loop {
        let mut h = [0u8; 16];
        r.read_exact(&mut h)?;
        if u64_at(&h, 0) != IHAVEOPT {
            bail!("client sent a bad option magic");
        }
        let opt = u32_at(&h, 8);
        let len = u32_at(&h, 12);
        if len > 64 * 1024 {
            bail!("option data of {len} bytes");
        }
        let mut data = vec![0u8; len as usize];
        r.read_exact(&mut data)?;
        match opt {
            OPT_EXPORT_NAME => {
                let mut b = Vec::new();
                b.extend_from_slice(&node.size.to_be_bytes());
                b.extend_from_slice(&transmission_flags().to_be_bytes());
                if !no_zeroes {
                    b.extend_from_slice(&[0u8; 124]);
                }
                w.write_all(&b)?;
                return Ok(true);
            }
            OPT_ABORT => {
                opt_reply(w, opt, REP_ACK, &[])?;
                return Ok(false);
            }
            OPT_LIST => {
                let name = node.name.as_bytes();
                let mut d = (name.len() as u32).to_be_bytes().to_vec();
                d.extend_from_slice(name);
                opt_reply(w, opt, REP_SERVER, &d)?;
                opt_reply(w, opt, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                if data.len() < 6 {
                    opt_reply(w, opt, REP_ERR_INVALID, &[])?;
                    continue;
                }
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&node.size.to_be_bytes());
                info.extend_from_slice(&transmission_flags().to_be_bytes());
                opt_reply(w, opt, REP_INFO, &info)?;
                let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                bs.extend_from_slice(&512u32.to_be_bytes());
                bs.extend_from_slice(&4096u32.to_be_bytes());
                bs.extend_from_slice(&MAX_REQUEST.to_be_bytes());
                opt_reply(w, opt, REP_INFO, &bs)?;
                opt_reply(w, opt, REP_ACK, &[])?;
                if opt == OPT_GO {
                    return Ok(true);
                }
            }
            _ => opt_reply(w, opt, REP_ERR_UNSUP, &[])?,
        }
    }
}

/// Replies go out under this lock, from whichever thread completes the request.
type Replies<W> = Arc<Mutex<W>>;

fn reply<W: Write>(w: &Mutex<W>, handle: u64, r: &Outcome) {
    match r {
        Ok(d) => reply_raw(w, handle, 0, d.as_deref().unwrap_or_default()),
        Err(e) => reply_raw(w, handle, errno(e), &[]),
    }
}

fn reply_raw<W: Write>(w: &Mutex<W>, handle: u64, err: u32, data: &[u8]) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    h[4..8].copy_from_slice(&err.to_be_bytes());
    h[8..].copy_from_slice(&handle.to_be_bytes());
    let Ok(mut w) = w.lock() else { return };
    // A failed reply means the client is gone; the reader notices and ends the session.
    let _ = w.write_all(&h).and_then(|()| w.write_all(data)).and_then(|()| w.flush());
}

/// A request that waits for the disk (a read's data, a flush, zeroing), run by a worker
/// thread so the connection's reader goes on reading the requests behind it.
enum Job {
    Read { handle: u64, offset: u64, len: u32 },
    Flush { handle: u64 },
    Zero { handle: u64, offset: u64, len: u64, fua: bool },
}

fn session<R: Read + Send + 'static, W: Write + Send + 'static>(
    node: &Arc<Node>,
    r: R,
    mut w: W,
) -> anyhow::Result<()> {
    // Small enough that a large write's data is read straight into its own buffer.
    let mut r = BufReader::with_capacity(64 * 1024, r);
    if !handshake(node, &mut r, &mut w)? {
        return Ok(());
    }
    let w: Replies<W> = Arc::new(Mutex::new(w));
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let node = Arc::clone(node);
        let rx = Arc::clone(&rx);
        let w = Arc::clone(&w);
        workers.push(std::thread::spawn(move || worker(&node, &rx, &w)));
    }
    let result = (|| -> anyhow::Result<()> {
        loop {
            let mut h = [0u8; 28];
            r.read_exact(&mut h)?;
            if u32_at(&h, 0) != REQUEST_MAGIC {
                bail!("bad request magic");
            }
            let flags = u16_at(&h, 4);
            let kind = u16_at(&h, 6);
            let handle = u64_at(&h, 8);
            let offset = u64_at(&h, 16);
            let len = u32_at(&h, 24);
            let fua = flags & CMD_FLAG_FUA != 0;
            // Writes are submitted right here and answered by whichever thread completes them:
            // no hand-off on their way in or out.
            match kind {
                CMD_DISC => return Ok(()),
                CMD_WRITE => {
                    if len > MAX_REQUEST {
                        bail!("write of {len} bytes exceeds the {MAX_REQUEST}-byte limit");
                    }
                    let mut data = node.buffers.take(len as usize);
                    // read_to_end fills spare capacity without zeroing it first.
                    let got = (&mut r).take(u64::from(len)).read_to_end(&mut data)?;
                    if got < len as usize {
                        bail!("client closed inside a write");
                    }
                    let w = Arc::clone(&w);
                    node.write_with(offset, node.buffers.share(data), fua, move |r| reply(&w, handle, &r));
                }
                CMD_FLUSH | CMD_TRIM | CMD_WRITE_ZEROES | CMD_READ => {
                    let job = match kind {
                        CMD_FLUSH => Job::Flush { handle },
                        CMD_READ => Job::Read { handle, offset, len },
                        _ => Job::Zero { handle, offset, len: u64::from(len), fua },
                    };
                    if tx.send(job).is_err() {
                        return Ok(());
                    }
                }
                _ => reply_raw(&w, handle, EINVAL, &[]),
            }
        }
    })();
    drop(tx);
    for t in workers {
        let _ = t.join();
    }
    result
}

fn worker<W: Write>(node: &Node, rx: &Mutex<Receiver<Job>>, w: &Mutex<W>) {
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let (handle, r) = match job {
            Job::Read { handle, offset, len } => (handle, node.read(offset, len)),
            Job::Flush { handle } => (handle, node.submit(|req| Input::Flush { req })),
            Job::Zero { handle, offset, len, fua } => {
                (handle, node.submit(|req| Input::WriteZeroes { req, offset, len, fua }))
            }
        };
        reply(w, handle, &r);
    }
}

fn errno(e: &blockrepl::IoError) -> u32 {
    match e {
        blockrepl::IoError::NotPrimary { .. } => EPERM,
        blockrepl::IoError::OutOfRange { .. } => EINVAL,
        _ => EIO,
    }
}
