//! Authenticated encryption of ring datagrams (ChaCha20-Poly1305).
//!
//! ```text
//! offset  size  field (all little endian; bytes 0..28 are authenticated as associated data)
//! 0       2     magic "HU"
//! 2       1     version (1)
//! 3       1     reserved (0)
//! 4       4     sender node id
//! 8       4     receiver node id
//! 12      8     sender session: (unix ms << 16) | 16 random bits, new at every start
//! 20      8     counter, grows by one per datagram of the session
//! 28      n     ciphertext of the membership frame
//! 28+n    16    Poly1305 tag
//! ```
//!
//! Each (sender, receiver, session) has its own key, HKDF-SHA256 of the cluster authkey with the
//! cluster name as salt, so a nonce (the counter) is never reused under a key and each
//! direction of each pair is keyed apart. The receiver accepts only the newest session of a peer
//! and a counter not seen before (a 64-datagram window), so replays are dropped.

use std::collections::BTreeMap;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use wire::NodeId;

pub(crate) const HEADER_LEN: usize = 28;
const TAG_LEN: usize = 16;
const MAGIC: [u8; 2] = *b"HU";
const VERSION: u8 = 1;

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than a header and a tag.
    #[error("datagram too short")]
    Short,
    /// Not our magic or version.
    #[error("not a cluster datagram or another protocol version")]
    BadMagic,
    /// Addressed to another node.
    #[error("addressed to another node")]
    NotForUs,
    /// The sender is not configured.
    #[error("sender is not a configured node")]
    UnknownPeer,
    /// An older session of the sender (a replay, or a restart seen out of order).
    #[error("stale session")]
    StaleSession,
    /// A counter already seen or too old.
    #[error("replayed datagram")]
    Replay,
    /// The tag does not verify: wrong authkey, wrong cluster name, or tampering.
    #[error("authentication failed (wrong authkey or cluster name?)")]
    Auth,
}

struct Recv {
    session: u64,
    cipher: ChaCha20Poly1305,
    highest: u64,
    window: u64,
}

pub(crate) struct Crypto {
    authkey: Vec<u8>,
    salt: Vec<u8>,
    me: NodeId,
    peers: Vec<NodeId>,
    session: u64,
    send: BTreeMap<NodeId, (ChaCha20Poly1305, u64)>,
    recv: BTreeMap<NodeId, Recv>,
}

fn derive(authkey: &[u8], salt: &[u8], from: NodeId, to: NodeId, session: u64) -> ChaCha20Poly1305 {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), authkey);
    let mut info = Vec::with_capacity(32);
    info.extend_from_slice(b"clusterd link v1");
    info.extend_from_slice(&from.0.to_le_bytes());
    info.extend_from_slice(&to.0.to_le_bytes());
    info.extend_from_slice(&session.to_le_bytes());
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit, so this cannot fail.
    let _ = hk.expand(&info, &mut key);
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    *Nonce::from_slice(&n)
}

impl Crypto {
    pub(crate) fn new(authkey: &[u8], cluster_name: &str, me: NodeId, peers: Vec<NodeId>, session: u64) -> Self {
        Crypto {
            authkey: authkey.to_vec(),
            salt: cluster_name.as_bytes().to_vec(),
            me,
            peers,
            session,
            send: BTreeMap::new(),
            recv: BTreeMap::new(),
        }
    }

    /// Encrypts `frame` for `to`.
    pub(crate) fn seal(&mut self, to: NodeId, frame: &[u8]) -> Vec<u8> {
        let (me, session) = (self.me, self.session);
        let (cipher, counter) =
            self.send.entry(to).or_insert_with(|| (derive(&self.authkey, &self.salt, me, to, session), 0));
        *counter += 1;
        let mut out = Vec::with_capacity(HEADER_LEN + frame.len() + TAG_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&me.0.to_le_bytes());
        out.extend_from_slice(&to.0.to_le_bytes());
        out.extend_from_slice(&session.to_le_bytes());
        out.extend_from_slice(&counter.to_le_bytes());
        let mut body = frame.to_vec();
        let (header, _) = out.split_at(HEADER_LEN);
        let tag = cipher.encrypt_in_place_detached(&nonce(*counter), header, &mut body).unwrap_or_default();
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        out
    }

    /// Authenticates and decrypts a datagram: the sender and the membership frame.
    pub(crate) fn open(&mut self, bytes: &[u8]) -> Result<(NodeId, Vec<u8>), OpenError> {
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Short);
        }
        if bytes[0..2] != MAGIC || bytes[2] != VERSION {
            return Err(OpenError::BadMagic);
        }
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let from = NodeId(u32_at(4));
        if NodeId(u32_at(8)) != self.me {
            return Err(OpenError::NotForUs);
        }
        if !self.peers.contains(&from) {
            return Err(OpenError::UnknownPeer);
        }
        let session = u64_at(12);
        let counter = u64_at(20);
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let current = self.recv.get(&from).map(|r| r.session);
        if current.is_some_and(|s| session < s) {
            return Err(OpenError::StaleSession);
        }
        let fresh_cipher;
        let cipher = match self.recv.get(&from) {
            Some(r) if r.session == session => {
                if counter + 64 <= r.highest || (counter <= r.highest && r.window & (1 << (r.highest - counter)) != 0) {
                    return Err(OpenError::Replay);
                }
                &r.cipher
            }
            _ => {
                fresh_cipher = derive(&self.authkey, &self.salt, from, self.me, session);
                &fresh_cipher
            }
        };
        let mut body = ct.to_vec();
        cipher
            .decrypt_in_place_detached(&nonce(counter), header, &mut body, Tag::from_slice(tag))
            .map_err(|_| OpenError::Auth)?;
        match self.recv.get_mut(&from) {
            Some(r) if r.session == session => {
                if counter > r.highest {
                    let shift = counter - r.highest;
                    r.window = if shift >= 64 { 0 } else { r.window << shift };
                    r.window |= 1;
                    r.highest = counter;
                } else {
                    r.window |= 1 << (r.highest - counter);
                }
            }
            _ => {
                let cipher = derive(&self.authkey, &self.salt, from, self.me, session);
                self.recv.insert(from, Recv { session, cipher, highest: counter, window: 1 });
            }
        }
        Ok((from, body))
    }
}

/// A new session number: later starts get larger numbers.
pub(crate) fn new_session() -> u64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    (ms << 16) | u64::from(u16::from_le_bytes(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Crypto, Crypto) {
        let key = [7u8; 32];
        (
            Crypto::new(&key, "alpha", NodeId(1), vec![NodeId(2)], 100),
            Crypto::new(&key, "alpha", NodeId(2), vec![NodeId(1)], 200),
        )
    }

    #[test]
    fn sealed_datagrams_open_once() {
        let (mut a, mut b) = pair();
        let d1 = a.seal(NodeId(2), b"hello");
        let d2 = a.seal(NodeId(2), b"world");
        assert_eq!(b.open(&d2), Ok((NodeId(1), b"world".to_vec())));
        assert_eq!(b.open(&d1), Ok((NodeId(1), b"hello".to_vec())), "reordering within the window is fine");
        assert_eq!(b.open(&d1), Err(OpenError::Replay));
    }

    #[test]
    fn tampering_wrong_keys_and_garbage_are_rejected() {
        let (mut a, mut b) = pair();
        let mut d = a.seal(NodeId(2), b"hello");
        d[HEADER_LEN] ^= 1;
        assert_eq!(b.open(&d), Err(OpenError::Auth));
        let mut other = Crypto::new(&[8u8; 32], "alpha", NodeId(1), vec![NodeId(2)], 100);
        assert_eq!(b.open(&other.seal(NodeId(2), b"x")), Err(OpenError::Auth));
        let mut wrong_cluster = Crypto::new(&[7u8; 32], "beta", NodeId(1), vec![NodeId(2)], 100);
        assert_eq!(b.open(&wrong_cluster.seal(NodeId(2), b"x")), Err(OpenError::Auth));
        assert_eq!(b.open(b"short"), Err(OpenError::Short));
        assert_eq!(b.open(&[0u8; 64]), Err(OpenError::BadMagic));
        let mut third = Crypto::new(&[7u8; 32], "alpha", NodeId(3), vec![NodeId(2)], 100);
        assert_eq!(b.open(&third.seal(NodeId(2), b"x")), Err(OpenError::UnknownPeer));
        assert_eq!(b.open(&a.seal(NodeId(3), b"x")), Err(OpenError::NotForUs));
    }

    #[test]
    fn an_older_session_is_refused_after_a_restart() {
        let (mut a, mut b) = pair();
        let old = a.seal(NodeId(2), b"old");
        let mut restarted = Crypto::new(&[7u8; 32], "alpha", NodeId(1), vec![NodeId(2)], 101);
        assert!(b.open(&restarted.seal(NodeId(2), b"new")).is_ok());
        assert_eq!(b.open(&old), Err(OpenError::StaleSession));
    }
}
