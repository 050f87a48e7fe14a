//! The frame every message travels in.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "HC"
//! 2       1     version (WIRE_VERSION)
//! 3       1     kind: which protocol's message type the body holds (chosen by the caller)
//! 4       4     body length, little endian, at most MAX_FRAME_BODY_LEN
//! 8       n     body: the message, postcard-encoded
//! 8+n     4     CRC-32 (IEEE) of bytes 0..8+n, little endian
//! ```
//!
//! The checksum catches corruption on links without their own integrity (datagrams before
//! authentication, files); it is not an authenticator. Decoding never panics and never
//! allocates more than the declared body length allows.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The two bytes every frame starts with.
pub const FRAME_MAGIC: [u8; 2] = *b"HC";
/// The envelope version this build writes and reads. A change of layout or of any
/// message's encoding bumps it; golden-bytes tests exist to notice.
pub const WIRE_VERSION: u8 = 1;
/// Magic, version, kind, length.
pub const FRAME_HEADER_LEN: usize = 8;
const FRAME_TRAILER_LEN: usize = 4;
/// Largest body accepted (1 MiB of payload plus room for headers), like Corosync's limit.
pub const MAX_FRAME_BODY_LEN: usize = (1 << 20) + 4096;

/// What the fixed header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Envelope version of the sender.
    pub version: u8,
    /// Message kind (protocol) of the body.
    pub kind: u8,
    /// Body length in bytes.
    pub body_len: usize,
}

impl FrameHeader {
    /// Bytes of the whole frame, header and checksum included.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body_len + FRAME_TRAILER_LEN
    }
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded body is larger than [`MAX_FRAME_BODY_LEN`].
    #[error("message body of {len} bytes exceeds the {max}-byte frame limit")]
    TooLarge {
        /// Encoded body size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The serializer refused the value.
    #[error("message cannot be serialized: {0}")]
    Serialize(#[from] postcard::Error),
}

/// Why bytes were rejected. Every variant is a normal outcome for hostile input.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared body need.
    #[error("frame truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The first two bytes are not [`FRAME_MAGIC`].
    #[error("not a frame: bad magic {found:02x?}")]
    BadMagic {
        /// The bytes found.
        found: [u8; 2],
    },
    /// The sender speaks another envelope version.
    #[error("unsupported wire version {found} (this build speaks {WIRE_VERSION}); upgrade the older node")]
    Version {
        /// The version found.
        found: u8,
    },
    /// The body is of another kind than expected.
    #[error("unexpected message kind {found}, expected {expected}")]
    Kind {
        /// Kind found.
        found: u8,
        /// Kind wanted.
        expected: u8,
    },
    /// Declared body length above the limit.
    #[error("declared body length {len} exceeds the {max}-byte limit")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Checksum mismatch: the frame was corrupted.
    #[error("checksum mismatch: frame corrupted")]
    Checksum,
    /// Bytes after the frame's end.
    #[error("{extra} unexpected bytes after the frame")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The body does not decode as the expected message type.
    #[error("malformed message body: {0}")]
    Body(String),
}

/// Encodes `msg` as a frame of `kind`.
pub fn encode<T: Serialize + ?Sized>(kind: u8, msg: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(kind, msg, &mut out)?;
    Ok(out)
}

/// Appends the frame for `msg` to `out` (for batching into one buffer). On error `out` is
/// left as it was.
pub fn encode_into<T: Serialize + ?Sized>(kind: u8, msg: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC);
    out.push(WIRE_VERSION);
    out.push(kind);
    out.extend_from_slice(&[0; 4]);
    let body_start = out.len();
    let taken = std::mem::take(out);
    let mut buf = match postcard::to_extend(msg, taken) {
        Ok(buf) => buf,
        Err(e) => {
            // `to_extend` consumed the buffer; rebuilding it is impossible, so callers only
            // see this for types that cannot be serialized at all (programmer error).
            return Err(EncodeError::Serialize(e));
        }
    };
    let body_len = buf.len() - body_start;
    if body_len > MAX_FRAME_BODY_LEN {
        buf.truncate(start);
        *out = buf;
        return Err(EncodeError::TooLarge { len: body_len, max: MAX_FRAME_BODY_LEN });
    }
    let len = u32::try_from(body_len).unwrap_or(u32::MAX);
    buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&buf[start..]);
    buf.extend_from_slice(&crc.to_le_bytes());
    *out = buf;
    Ok(())
}

/// Reads and checks the fixed header (magic, version, length limit) without the body:
/// stream readers call this on the first [`FRAME_HEADER_LEN`] bytes to learn how many more to read.
pub fn decode_header(bytes: &[u8]) -> Result<FrameHeader, DecodeError> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err(DecodeError::Truncated { need: FRAME_HEADER_LEN, have: bytes.len() });
    }
    let magic = [bytes[0], bytes[1]];
    if magic != FRAME_MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    if bytes[2] != WIRE_VERSION {
        return Err(DecodeError::Version { found: bytes[2] });
    }
    let body_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if body_len > MAX_FRAME_BODY_LEN {
        return Err(DecodeError::TooLarge { len: body_len, max: MAX_FRAME_BODY_LEN });
    }
    Ok(FrameHeader { version: bytes[2], kind: bytes[3], body_len })
}

/// Decodes exactly one frame of `kind` holding a `T`. Rejects anything else with a reason.
pub fn decode<T: DeserializeOwned>(kind: u8, bytes: &[u8]) -> Result<T, DecodeError> {
    let header = decode_header(bytes)?;
    let need = header.frame_len();
    if bytes.len() < need {
        return Err(DecodeError::Truncated { need, have: bytes.len() });
    }
    if bytes.len() > need {
        return Err(DecodeError::TrailingBytes { extra: bytes.len() - need });
    }
    let crc_at = FRAME_HEADER_LEN + header.body_len;
    let crc = u32::from_le_bytes([bytes[crc_at], bytes[crc_at + 1], bytes[crc_at + 2], bytes[crc_at + 3]]);
    if crc32fast::hash(&bytes[..crc_at]) != crc {
        return Err(DecodeError::Checksum);
    }
    if header.kind != kind {
        return Err(DecodeError::Kind { found: header.kind, expected: kind });
    }
    let body = &bytes[FRAME_HEADER_LEN..crc_at];
    match postcard::take_from_bytes::<T>(body) {
        Ok((msg, [])) => Ok(msg),
        Ok((_, rest)) => Err(DecodeError::Body(format!("{} bytes left over in the body", rest.len()))),
        Err(e) => Err(DecodeError::Body(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::{Duration, Instant, NodeId, RingId};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        ring: RingId,
        from: NodeId,
        at: Instant,
        wait: Duration,
        payload: Vec<u8>,
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sample_v1_encoding_is_pinned() {
        let msg = Sample {
            ring: RingId::new(NodeId(1), 0x12a),
            from: NodeId(3),
            at: Instant::from_nanos(1_000),
            wait: Duration::from_millis(1),
            payload: vec![0xde, 0xad],
        };
        // A diff here is a protocol change: bump WIRE_VERSION.
        expect!["484301070c000000aa020103e807c0843d02deade3e7ad4b"].assert_eq(&hex(&encode(7, &msg).unwrap()));
    }

    #[test]
    fn ids_are_pinned() {
        expect!["4843010203000000a57f0162362416"].assert_eq(&hex(&encode(2, &(NodeId(0x3fa5), 1u8)).unwrap()));
    }

    #[test]
    fn every_rejection_has_a_reason() {
        let good = encode(7, &(NodeId(1), 5u64)).unwrap();
        assert_eq!(decode::<(NodeId, u64)>(7, &good), Ok((NodeId(1), 5)));
        assert!(matches!(decode::<(NodeId, u64)>(7, &good[..3]), Err(DecodeError::Truncated { .. })));
        assert!(matches!(decode::<(NodeId, u64)>(8, &good), Err(DecodeError::Kind { found: 7, expected: 8 })));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(decode::<(NodeId, u64)>(7, &bad), Err(DecodeError::BadMagic { .. })));
        let mut bad = good.clone();
        bad[2] = 9;
        assert_eq!(decode::<(NodeId, u64)>(7, &bad), Err(DecodeError::Version { found: 9 }));
        let mut bad = good.clone();
        bad[8] ^= 1;
        assert_eq!(decode::<(NodeId, u64)>(7, &bad), Err(DecodeError::Checksum));
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(decode::<(NodeId, u64)>(7, &bad), Err(DecodeError::TrailingBytes { extra: 1 }));
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode::<(NodeId, u64)>(7, &huge), Err(DecodeError::TooLarge { .. })));
        // A well-formed frame whose body is of another type.
        let other = encode(7, &"text").unwrap();
        assert!(matches!(decode::<(NodeId, u64)>(7, &other), Err(DecodeError::Body(_))));
    }

    #[test]
    fn oversized_messages_are_refused_and_leave_the_buffer_intact() {
        let mut out = vec![1, 2, 3];
        let big = vec![0u8; MAX_FRAME_BODY_LEN + 1];
        assert!(matches!(encode_into(1, &big, &mut out), Err(EncodeError::TooLarge { .. })));
        assert_eq!(out, vec![1, 2, 3]);
    }

    proptest! {
        #[test]
        fn round_trip(rep in any::<u32>(), seq in any::<u64>(), at in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..300), kind in any::<u8>()) {
            let msg = Sample { ring: RingId::new(NodeId(rep), seq), from: NodeId(rep ^ 1), at: Instant::from_nanos(at), wait: Duration::from_nanos(at / 3), payload };
            let bytes = encode(kind, &msg).unwrap();
            prop_assert_eq!(decode::<Sample>(kind, &bytes).unwrap(), msg);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<Sample>(7, &bytes);
            let _ = decode_header(&bytes);
        }

        #[test]
        fn corrupting_any_byte_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..64), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let bytes = encode(3, &payload).unwrap();
            let mut bad = bytes.clone();
            let i = at.index(bad.len());
            bad[i] ^= flip;
            prop_assert!(decode::<Vec<u8>>(3, &bad).is_err());
        }
    }
}
