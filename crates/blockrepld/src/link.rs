//! The replication link: TCP with a pre-shared-key challenge/response (HMAC-SHA256 over both
//! nonces and node ids) at connect, then `wire` frames in both directions.
//!
//! The PSK is a stopgap until the cluster's mutual TLS is available to this daemon; it
//! authenticates the peer but does not encrypt the data stream.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use anyhow::{Context, bail};
use blockrepl::{Msg, msg};
use sha2::{Digest, Sha256};

use crate::buffers::Buffers;

const AUTH_MAGIC: &[u8; 8] = b"BRAUTH01";

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let ih = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    outer.finalize().into()
}

fn nonce() -> anyhow::Result<[u8; 32]> {
    let mut n = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut n)).context("reading /dev/urandom")?;
    Ok(n)
}

/// Authenticates both ends. Returns an error naming the problem (wrong key, wrong peer).
pub(crate) fn authenticate(s: &mut TcpStream, psk: &[u8], me: u32, peer: u32) -> anyhow::Result<()> {
    let mine = nonce()?;
    let mut hello = Vec::with_capacity(44);
    hello.extend_from_slice(AUTH_MAGIC);
    hello.extend_from_slice(&me.to_le_bytes());
    hello.extend_from_slice(&mine);
    s.write_all(&hello)?;
    let mut theirs = [0u8; 44];
    s.read_exact(&mut theirs).context("peer closed during authentication")?;
    if &theirs[..8] != AUTH_MAGIC {
        bail!("peer does not speak the blockrepl link protocol");
    }
    let their_id = u32::from_le_bytes([theirs[8], theirs[9], theirs[10], theirs[11]]);
    if their_id != peer {
        bail!("wrong peer: node {their_id} connected, node {peer} is configured");
    }
    let their_nonce = &theirs[12..44];
    let proof = hmac(psk, &[b"blockrepl-link", &me.to_le_bytes(), &peer.to_le_bytes(), their_nonce, &mine]);
    s.write_all(&proof)?;
    let mut their_proof = [0u8; 32];
    s.read_exact(&mut their_proof).context("peer closed during authentication (wrong key?)")?;
    let expect = hmac(psk, &[b"blockrepl-link", &peer.to_le_bytes(), &me.to_le_bytes(), &mine, their_nonce]);
    // Constant-time comparison.
    let diff = expect.iter().zip(their_proof.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        bail!("peer node {peer} failed authentication: pre-shared keys differ");
    }
    Ok(())
}

/// What the link reader runs before it would wait for the peer.
pub(crate) type Idle = Box<dyn FnMut() + Send>;

/// The receiving half of the link: a read that would block first runs `idle` (which sends
/// what the receiving side queued, acks above all), so a burst of incoming frames is answered
/// with one write instead of one per frame, and nothing queued waits while this side sleeps.
pub(crate) struct IdleFlushing {
    stream: TcpStream,
    idle: Idle,
}

impl IdleFlushing {
    pub(crate) fn new(stream: TcpStream, idle: Idle) -> Self {
        IdleFlushing { stream, idle }
    }

    /// True when a read would block right now.
    fn would_block(&self) -> std::io::Result<bool> {
        use rustix::net::{RecvFlags, recv};
        let mut probe = [0u8; 1];
        loop {
            return match recv(&self.stream, &mut probe, RecvFlags::DONTWAIT | RecvFlags::PEEK) {
                Ok(_) => Ok(false),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => Ok(true),
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Appends exactly `n` bytes to `out`, reading into its spare capacity without zeroing
    /// it first. Runs `idle` first if nothing has arrived yet; a frame already arriving is
    /// read to its end (its sender is writing it right now).
    fn read_append(&mut self, out: &mut Vec<u8>, n: u64) -> anyhow::Result<()> {
        if self.would_block()? {
            (self.idle)();
        }
        // TcpStream fills spare capacity without zeroing it.
        let got = (&self.stream).take(n).read_to_end(out)?;
        if (got as u64) < n {
            bail!("link closed inside a frame");
        }
        Ok(())
    }
}

impl Read for IdleFlushing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rustix::net::{RecvFlags, recv};
        loop {
            match recv(&self.stream, &mut *buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => return Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        (self.idle)();
        (&self.stream).read(buf)
    }
}

/// Reads link frames from a stream. Payload-carrying messages (`Data`, `RsData`) are read
/// straight into their own buffer (no copy out of a frame buffer, no zero-filling); the small
/// fields around the payload come from a read-ahead buffer, so a frame costs few syscalls.
pub(crate) struct FrameReader {
    inner: IdleFlushing,
    buffers: Arc<Buffers>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Read-ahead size: large enough for a burst of acks, small against a 1 MiB payload.
const READ_AHEAD: usize = 64 * 1024;

impl FrameReader {
    pub(crate) fn new(inner: IdleFlushing, buffers: Arc<Buffers>) -> Self {
        FrameReader { inner, buffers, buf: vec![0; READ_AHEAD], start: 0, end: 0 }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Makes at least `n` (<= READ_AHEAD) bytes available in the read-ahead buffer.
    fn fill_to(&mut self, n: usize) -> anyhow::Result<()> {
        if self.end - self.start >= n {
            return Ok(());
        }
        if self.start + n > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < n {
            let got = self.inner.read(&mut self.buf[self.end..])?;
            if got == 0 {
                bail!("link closed inside a frame");
            }
            self.end += got;
        }
        Ok(())
    }

    /// Appends exactly `n` bytes of the stream to `out`: buffered bytes first, the rest read
    /// directly into `out`'s spare capacity.
    fn read_into(&mut self, out: &mut Vec<u8>, n: usize) -> anyhow::Result<()> {
        out.reserve(n);
        let from_buf = n.min(self.end - self.start);
        out.extend_from_slice(&self.buf[self.start..self.start + from_buf]);
        self.start += from_buf;
        let rest = (n - from_buf) as u64;
        if rest > 0 {
            self.inner.read_append(out, rest)?;
        }
        Ok(())
    }

    /// Reads and checks one frame and decodes its message.
    pub(crate) fn next_msg(&mut self, scratch: &mut Vec<u8>) -> anyhow::Result<Msg> {
        let h = wire::FRAME_HEADER_LEN;
        self.fill_to(h)?;
        let header = wire::decode_header(self.buffered())?;
        let frame_len = header.frame_len();
        if header.kind == msg::KIND && header.body_len > msg::SPLIT_PREFIX_MAX {
            self.fill_to(h + msg::SPLIT_PREFIX_MAX)?;
            if let Some((p, used)) = msg::SplitPrefix::parse(&self.buffered()[h..h + msg::SPLIT_PREFIX_MAX])
                && h + used + p.payload_len() + p.tail_len() + 4 == frame_len
            {
                let mut crc = crc32fast::Hasher::new();
                crc.update(&self.buffered()[..h + used]);
                self.start += h + used;
                let mut data = self.buffers.take(p.payload_len());
                self.read_into(&mut data, p.payload_len())?;
                crc.update(&data);
                let tail_len = p.tail_len();
                self.fill_to(tail_len + 4)?;
                let tail = &self.buffered()[..tail_len + 4];
                crc.update(&tail[..tail_len]);
                let sum =
                    u32::from_le_bytes([tail[tail_len], tail[tail_len + 1], tail[tail_len + 2], tail[tail_len + 3]]);
                if crc.finalize() != sum {
                    return Err(wire::DecodeError::Checksum.into());
                }
                let m = p.into_msg_with(data, &tail[..tail_len], |d| self.buffers.share(d))?;
                self.start += tail_len + 4;
                return Ok(m);
            }
        }
        scratch.clear();
        self.read_into(scratch, frame_len)?;
        Ok(Msg::decode(scratch)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
