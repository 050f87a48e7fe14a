//! The replication link: TCP with a pre-shared-key challenge/response (HMAC-SHA256 over both
//! nonces and node ids) at connect, then `wire` frames in both directions.
//!
//! The PSK is a stopgap until the cluster's mutual TLS is available to this daemon; it
//! authenticates the peer but does not encrypt the data stream.

use std::io::{Read, Write};
use std::net::TcpStream;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

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

/// Reads one frame (header, body, checksum) from the stream.
pub(crate) fn read_frame(s: &mut impl Read, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    buf.clear();
    buf.resize(wire::FRAME_HEADER_LEN, 0);
    s.read_exact(&mut buf[..wire::FRAME_HEADER_LEN])?;
    let h = wire::decode_header(buf)?;
    // read_to_end fills spare capacity without zeroing it first.
    let rest = (h.frame_len() - wire::FRAME_HEADER_LEN) as u64;
    let got = s.take(rest).read_to_end(buf)?;
    if (got as u64) < rest {
        anyhow::bail!("link closed inside a frame");
    }
    Ok(())
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
