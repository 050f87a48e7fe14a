//! Messages between the two engines of a volume. Every message travels in a `wire` envelope of
//! kind [`KIND`]; the link is an ordered byte stream, so the engine relies on message order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wire::NodeId;

use crate::types::{DiskState, Gi, Role};

/// The envelope kind byte of blockrepl messages.
pub const KIND: u8 = 0x42;

/// Block data shared without copying: between the local write and the message to the peer,
/// and between the pieces of one large application write (each a view of the same buffer).
/// The buffer is any shared byte container, so a driver can hand out buffers that go back
/// to its pool when the last view is dropped.
#[derive(Clone)]
pub struct Payload {
    buf: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    end: usize,
}

impl Default for Payload {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl Payload {
    /// All bytes of a shared buffer.
    pub fn shared(buf: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Payload {
        let end = (*buf).as_ref().len();
        Payload { buf, start: 0, end }
    }

    /// Bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// No bytes.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// A view of `range` (relative to this payload, clamped to it) sharing the same buffer.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Payload {
        let end = (self.start + range.end).min(self.end);
        let start = (self.start + range.start).min(end);
        Payload { buf: Arc::clone(&self.buf), start, end }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload::shared(Arc::new(v))
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &(*self.buf).as_ref()[self.start..self.end]
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Payload").field(&&**self).finish()
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(serde_bytes::ByteBuf::deserialize(d)?.into_vec().into())
    }
}

/// A 128-bit block digest (truncated SHA-256) for csums resync and verify.
pub type Digest = [u8; 16];

/// What a node tells its peer at the start of every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Sender.
    pub node: NodeId,
    /// The peer the sender expects (catches a wrong peer on both sides).
    pub expects: NodeId,
    /// The sender's volume size.
    pub size_bytes: u64,
    /// The sender's generation identifiers.
    pub gi: Gi,
    /// Sender's role.
    pub role: Role,
    /// Sender's disk state.
    pub disk: DiskState,
    /// The sender crashed while Primary and has not resynced since.
    pub crashed_primary: bool,
    /// The sender volunteers as split-brain victim (manual resolution).
    pub discard_my_data: bool,
    /// The sender allows two Primaries.
    pub dual_primary: bool,
    /// Blocks the sender marked out of sync (its "changes").
    pub dirty_blocks: u64,
}

/// One replication-link message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Handshake, first message on a connection.
    Hello(Hello),
    /// Part of the sender's dirty bitmap as `(start, count)` runs; `last` ends the handshake.
    Bitmap {
        /// Runs.
        runs: Vec<(u64, u64)>,
        /// The final chunk.
        last: bool,
    },
    /// Role or disk change of the sender.
    State {
        /// Role.
        role: Role,
        /// Disk.
        disk: DiskState,
    },
    /// A mirrored application write.
    Data {
        /// Sequence number (acks name it).
        seq: u64,
        /// Epoch (writes between two barriers).
        epoch: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes (shared with the local write).
        data: Payload,
        /// Durable before ack.
        fua: bool,
    },
    /// A mirrored write-zeroes / discard.
    Zero {
        /// Sequence number.
        seq: u64,
        /// Epoch.
        epoch: u64,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Durable before ack.
        fua: bool,
    },
    /// Protocol B: the write arrived.
    RecvAck {
        /// Write.
        seq: u64,
    },
    /// The write is on the peer's disk.
    WriteAck {
        /// Write.
        seq: u64,
    },
    /// The peer could not write (its disk failed).
    NegAck {
        /// Write.
        seq: u64,
    },
    /// Everything before is to be made durable; the peer answers with BarrierAck.
    Barrier {
        /// Epoch closed.
        epoch: u64,
    },
    /// The epoch is durable on the peer.
    BarrierAck {
        /// Epoch.
        epoch: u64,
    },
    /// Read on behalf of a diskless Primary.
    ReadReq {
        /// Request id.
        id: u64,
        /// Offset.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// Reply to ReadReq (`None`: the peer could not read).
    ReadReply {
        /// Request id.
        id: u64,
        /// Bytes.
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
    },
    /// Resync data for blocks `start..start+len/4096`.
    RsData {
        /// First block.
        start: u64,
        /// Bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Resync data written on the target.
    RsAck {
        /// First block.
        start: u64,
        /// Blocks.
        count: u64,
    },
    /// Digests of a run of the source's blocks (csums resync).
    RsCsum {
        /// First block.
        start: u64,
        /// One digest per block.
        digests: Vec<Digest>,
    },
    /// Which blocks of the run differ (indices into the run); the rest are in sync.
    RsCsumReply {
        /// First block.
        start: u64,
        /// Blocks in the run.
        count: u64,
        /// Differing block indices.
        differing: Vec<u32>,
    },
    /// The resync finished; the target adopts the source's generation.
    ResyncDone {
        /// The source's generations.
        gi: Gi,
    },
    /// Online verify: digests of the source's blocks.
    VerifyReq {
        /// First block.
        start: u64,
        /// One digest per block.
        digests: Vec<Digest>,
    },
    /// Online verify: which blocks differ.
    VerifyReply {
        /// First block.
        start: u64,
        /// Blocks.
        count: u64,
        /// Differing indices.
        differing: Vec<u32>,
    },
    /// Online verify finished.
    VerifyDone {
        /// Blocks found out of sync.
        out_of_sync: u64,
    },
    /// Keep-alive.
    Ping,
    /// Keep-alive answer.
    Pong,
    /// The target adopted the generations of ResyncDone and is UpToDate.
    ResyncDoneAck,
    /// The sender saw the peer's promotion (its `State` saying Primary) and stays Secondary:
    /// the new Primary may start application I/O.
    PromoteAck,
}

impl Msg {
    /// Encodes the message in a wire envelope.
    pub fn encode(&self) -> Result<Vec<u8>, wire::EncodeError> {
        wire::encode(KIND, self)
    }

    /// Decodes one envelope.
    pub fn decode(bytes: &[u8]) -> Result<Msg, wire::DecodeError> {
        wire::decode(KIND, bytes)
    }

    /// Payload bytes carried (data blocks), for accounting.
    pub fn payload_len(&self) -> usize {
        match self {
            Msg::Data { data, .. } => data.len(),
            Msg::RsData { data, .. } => data.len(),
            Msg::ReadReply { data: Some(d), .. } => d.len(),
            _ => 0,
        }
    }
}

/// Postcard variant index of [`Msg::Data`].
const VARIANT_DATA: u8 = 3;
/// Postcard variant index of [`Msg::RsData`].
const VARIANT_RS_DATA: u8 = 12;
/// Longest body prefix before a payload: variant, four varints of up to 10 bytes.
pub const SPLIT_PREFIX_MAX: usize = 1 + 4 * 10;

/// A payload-carrying message laid out for vectored I/O: `head ++ payload ++ tail` is byte
/// for byte the frame [`Msg::encode`] produces, but the payload is never copied into it.
#[derive(Debug)]
pub struct SplitFrame {
    /// Envelope header and the message fields before the payload.
    pub head: Vec<u8>,
    /// The payload, moved out of the message.
    pub payload: Payload,
    /// Fields after the payload and the envelope checksum.
    pub tail: Vec<u8>,
}

impl SplitFrame {
    /// Total frame length.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len() + self.tail.len()
    }

    /// Never true: a frame has at least a header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A [`SplitFrame`] before its checksum was computed.
#[derive(Debug)]
pub struct UnsealedFrame {
    head: Vec<u8>,
    payload: Payload,
    tail: Vec<u8>,
}

impl UnsealedFrame {
    /// Length of the sealed frame.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len() + self.tail.len() + 4
    }

    /// Never true: a frame has at least a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Computes the checksum.
    pub fn seal(self) -> SplitFrame {
        let UnsealedFrame { head, payload, mut tail } = self;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&payload);
        crc.update(&tail);
        tail.extend_from_slice(&crc.finalize().to_le_bytes());
        SplitFrame { head, payload, tail }
    }
}

/// The fields of a payload-carrying message read from the start of its frame body, before the
/// payload itself arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitPrefix {
    /// [`Msg::Data`] without its payload and `fua` (which follows the payload).
    Data {
        /// Sequence number.
        seq: u64,
        /// Epoch.
        epoch: u64,
        /// Byte offset.
        offset: u64,
        /// Payload length.
        len: usize,
    },
    /// [`Msg::RsData`] without its payload.
    RsData {
        /// First block.
        start: u64,
        /// Payload length.
        len: usize,
    },
}

impl SplitPrefix {
    /// Payload length.
    pub fn payload_len(&self) -> usize {
        match self {
            SplitPrefix::Data { len, .. } | SplitPrefix::RsData { len, .. } => *len,
        }
    }

    /// Bytes of the body after the payload (before the checksum).
    pub fn tail_len(&self) -> usize {
        match self {
            SplitPrefix::Data { .. } => 1,
            SplitPrefix::RsData { .. } => 0,
        }
    }

    /// Rebuilds the message from the payload and the bytes after it (`tail_len` of them).
    pub fn into_msg(self, data: Vec<u8>, after: &[u8]) -> Result<Msg, wire::DecodeError> {
        self.into_msg_with(data, after, Payload::from)
    }

    /// Like [`SplitPrefix::into_msg`]; `share` turns the payload of a [`Msg::Data`] into a
    /// [`Payload`] (a driver's pooled buffer, for example).
    pub fn into_msg_with(
        self,
        data: Vec<u8>,
        after: &[u8],
        share: impl FnOnce(Vec<u8>) -> Payload,
    ) -> Result<Msg, wire::DecodeError> {
        match self {
            SplitPrefix::Data { seq, epoch, offset, .. } => {
                let fua = match after {
                    [0] => false,
                    [1] => true,
                    _ => return Err(wire::DecodeError::Body("Data: fua is not a boolean".into())),
                };
                Ok(Msg::Data { seq, epoch, offset, data: share(data), fua })
            }
            SplitPrefix::RsData { start, .. } => Ok(Msg::RsData { start, data }),
        }
    }

    /// Parses the start of a frame body. `None`: not a payload-carrying message (or a
    /// malformed one); decode the whole frame with [`Msg::decode`] instead.
    pub fn parse(body: &[u8]) -> Option<(SplitPrefix, usize)> {
        let (&variant, mut rest) = body.split_first()?;
        let mut next = || -> Option<u64> {
            let (v, used) = read_varint(rest)?;
            rest = &rest[used..];
            Some(v)
        };
        let p = match variant {
            VARIANT_DATA => {
                let (seq, epoch, offset) = (next()?, next()?, next()?);
                SplitPrefix::Data { seq, epoch, offset, len: usize::try_from(next()?).ok()? }
            }
            VARIANT_RS_DATA => {
                let start = next()?;
                SplitPrefix::RsData { start, len: usize::try_from(next()?).ok()? }
            }
            _ => return None,
        };
        Some((p, body.len() - rest.len()))
    }
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

impl Msg {
    /// Lays out a payload-carrying message ([`Msg::Data`], [`Msg::RsData`]) for vectored
    /// writes without copying the payload; any other message comes back unchanged.
    pub fn into_split_frame(self) -> Result<SplitFrame, Msg> {
        self.into_unsealed_frame().map(UnsealedFrame::seal)
    }

    /// Like [`Msg::into_split_frame`] but without the checksum yet: the layout is cheap, the
    /// checksum over the payload is computed by [`UnsealedFrame::seal`], which a driver may
    /// run on another thread (the one writing to the link).
    pub fn into_unsealed_frame(self) -> Result<UnsealedFrame, Msg> {
        if self.payload_len() + SPLIT_PREFIX_MAX + 1 > wire::MAX_FRAME_BODY_LEN {
            // Possibly too large for a frame: [`Msg::encode`] decides and reports it.
            return Err(self);
        }
        let mut head = Vec::with_capacity(wire::FRAME_HEADER_LEN + SPLIT_PREFIX_MAX);
        head.extend_from_slice(&wire::FRAME_MAGIC);
        head.push(wire::WIRE_VERSION);
        head.push(KIND);
        head.extend_from_slice(&[0; 4]);
        let (payload, tail) = match self {
            Msg::Data { seq, epoch, offset, data, fua } => {
                head.push(VARIANT_DATA);
                push_varint(&mut head, seq);
                push_varint(&mut head, epoch);
                push_varint(&mut head, offset);
                push_varint(&mut head, data.len() as u64);
                (data, vec![u8::from(fua)])
            }
            Msg::RsData { start, data } => {
                head.push(VARIANT_RS_DATA);
                push_varint(&mut head, start);
                push_varint(&mut head, data.len() as u64);
                (data.into(), Vec::with_capacity(4))
            }
            other => return Err(other),
        };
        let body_len = head.len() - wire::FRAME_HEADER_LEN + payload.len() + tail.len();
        head[4..8].copy_from_slice(&(body_len as u32).to_le_bytes());
        Ok(UnsealedFrame { head, payload, tail })
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use proptest::prelude::*;
    use wire::Generation;

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn payload_slices_share_the_buffer_and_clamp() {
        let p = Payload::from((0u8..10).collect::<Vec<u8>>());
        let mid = p.slice(2..6);
        assert_eq!(&*mid, &[2, 3, 4, 5]);
        assert_eq!(&*mid.slice(1..100), &[3, 4, 5]);
        assert!(mid.slice(7..9).is_empty());
        assert_eq!(mid, Payload::from(vec![2, 3, 4, 5]));
        let m = Msg::Data { seq: 1, epoch: 1, offset: 0, data: mid, fua: false };
        assert_eq!(Msg::decode(&m.encode().unwrap()).unwrap(), m);
    }

    #[test]
    fn hello_v1_encoding_is_pinned() {
        let m = Msg::Hello(Hello {
            node: NodeId(1),
            expects: NodeId(2),
            size_bytes: 1 << 20,
            gi: Gi {
                current: Generation(0xabc),
                bitmap: Generation(0),
                history: [Generation(7), Generation(0)],
                bitmap_by_primary: false,
            },
            role: Role::Primary,
            disk: DiskState::UpToDate,
            crashed_primary: false,
            discard_my_data: false,
            dual_primary: false,
            dirty_blocks: 3,
        });
        // A diff here is a protocol change: bump wire::WIRE_VERSION.
        expect!["4843014212000000000102808040bc1500070000000600000003d52013f2"].assert_eq(&hex(&m.encode().unwrap()));
    }

    #[test]
    fn data_and_acks_encoding_is_pinned() {
        let m = Msg::Data { seq: 5, epoch: 1, offset: 4096, data: vec![0xaa; 4].into(), fua: true };
        expect!["484301420b000000030501802004aaaaaaaa01a7aec0be"].assert_eq(&hex(&m.encode().unwrap()));
        expect!["484301420200000006052c863efd"].assert_eq(&hex(&Msg::WriteAck { seq: 5 }.encode().unwrap()));
        expect!["484301420300000008ff01f7a29ad5"].assert_eq(&hex(&Msg::Barrier { epoch: 255 }.encode().unwrap()));
        expect!["48430142050000000f020101007a28d18e"].assert_eq(&hex(&Msg::RsCsumReply {
            start: 2,
            count: 1,
            differing: vec![0],
        }
        .encode()
        .unwrap()));
    }

    fn any_gi() -> impl Strategy<Value = Gi> {
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(c, b, h0, h1, p)| Gi {
            current: Generation(c),
            bitmap: Generation(b),
            history: [Generation(h0), Generation(h1)],
            bitmap_by_primary: p,
        })
    }

    fn any_msg() -> impl Strategy<Value = Msg> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            (any::<u32>(), any::<u64>(), any_gi(), any::<bool>(), any::<u64>()).prop_map(
                |(n, s, gi, f, d)| Msg::Hello(Hello {
                    node: NodeId(n),
                    expects: NodeId(n ^ 1),
                    size_bytes: s,
                    gi,
                    role: if f { Role::Primary } else { Role::Secondary },
                    disk: DiskState::UpToDate,
                    crashed_primary: f,
                    discard_my_data: !f,
                    dual_primary: f,
                    dirty_blocks: d,
                })
            ),
            (proptest::collection::vec((any::<u64>(), any::<u64>()), 0..8), any::<bool>())
                .prop_map(|(runs, last)| Msg::Bitmap { runs, last }),
            (any::<u64>(), any::<u64>(), any::<u64>(), bytes.clone(), any::<bool>())
                .prop_map(|(seq, epoch, offset, data, fua)| Msg::Data { seq, epoch, offset, data: data.into(), fua }),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(seq, epoch, offset, len)| Msg::Zero {
                seq,
                epoch,
                offset,
                len,
                fua: false
            }),
            any::<u64>().prop_map(|seq| Msg::WriteAck { seq }),
            any::<u64>().prop_map(|epoch| Msg::BarrierAck { epoch }),
            (any::<u64>(), bytes.clone()).prop_map(|(start, data)| Msg::RsData { start, data }),
            (any::<u64>(), proptest::collection::vec(any::<[u8; 16]>(), 0..4))
                .prop_map(|(start, digests)| Msg::VerifyReq { start, digests }),
            (any::<u64>(), proptest::option::of(bytes)).prop_map(|(id, data)| Msg::ReadReply { id, data }),
            any_gi().prop_map(|gi| Msg::ResyncDone { gi }),
            Just(Msg::Ping),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in any_msg()) {
            let bytes = m.encode().unwrap();
            prop_assert_eq!(Msg::decode(&bytes).unwrap(), m);
        }

        #[test]
        fn split_frames_are_the_encoded_bytes(m in any_msg()) {
            let encoded = m.encode().unwrap();
            match m.clone().into_split_frame() {
                Ok(f) => {
                    let joined = [f.head.as_slice(), &*f.payload, &f.tail].concat();
                    prop_assert_eq!(&joined, &encoded);
                    let (p, used) = SplitPrefix::parse(&f.head[wire::FRAME_HEADER_LEN..]).unwrap();
                    prop_assert_eq!(used, f.head.len() - wire::FRAME_HEADER_LEN);
                    prop_assert_eq!(p.payload_len(), f.payload.len());
                    let back = p.into_msg(f.payload.to_vec(), &f.tail[..p.tail_len()]).unwrap();
                    prop_assert_eq!(back, m);
                }
                Err(back) => {
                    prop_assert_eq!(&back, &m);
                    prop_assert!(SplitPrefix::parse(&encoded[wire::FRAME_HEADER_LEN..]).is_none());
                }
            }
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Msg::decode(&bytes);
            let _ = SplitPrefix::parse(&bytes);
        }
    }
}
