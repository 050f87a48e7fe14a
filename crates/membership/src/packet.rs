//! The ring's messages and their encoding (postcard inside a `wire` frame of kind [`KIND`]).

use serde::{Deserialize, Serialize};
use wire::{NodeId, RingId};

/// The `wire` frame kind of every membership packet.
pub const KIND: u8 = 16;

/// One datagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Packet {
    /// CRC-32 of the cluster name: packets of another cluster are dropped.
    pub(crate) cluster: u32,
    /// What it carries.
    pub(crate) body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// A multicast message of a ring (sent by its origin, or re-sent by anyone who has it).
    Mcast(Mcast),
    /// The regular token.
    Token(Token),
    /// Receipt of a token (regular or commit) by the next node.
    Ack { ring: RingId, token_seq: u64, commit: bool },
    /// A gather-phase join.
    Join(Join),
    /// The commit token that installs a new ring.
    Commit(CommitToken),
    /// A representative's probe to configured non-members (merge detection).
    MergeDetect { ring: RingId },
    /// A clean leave: the sender stops participating now.
    Leave { ring: RingId },
    /// A link probe: `hear` says whether the sender hears the receiver on this link.
    Ping { hear: bool },
    /// Several multicast messages in one datagram.
    Mcasts(Vec<Mcast>),
    /// Old-ring messages sent during a commit to members that lack them (recovery).
    Recover(Vec<Mcast>),
    /// A request for old-ring messages during a commit.
    RecoverRequest { ring: RingId, seqs: Vec<u64> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Mcast {
    pub(crate) ring: RingId,
    pub(crate) seq: u64,
    pub(crate) origin: NodeId,
    pub(crate) payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Token {
    pub(crate) ring: RingId,
    /// Grows by one per hop; duplicates are dropped by it.
    pub(crate) token_seq: u64,
    /// Highest message sequence number assigned in this ring.
    pub(crate) seq: u64,
    /// Each member's "all received up to" as it last wrote it: the minimum is a true lower bound,
    /// so messages at or below it may be freed.
    pub(crate) arus: Vec<(NodeId, u64)>,
    /// Retransmission requests.
    pub(crate) rtr: Vec<u64>,
    /// Consecutive visits that had nothing to send or request.
    pub(crate) quiet: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Join {
    /// The sender's current (installed) ring.
    pub(crate) ring: RingId,
    /// Highest ring sequence number the sender knows.
    pub(crate) max_seq: u64,
    /// Candidate members.
    pub(crate) proc_set: Vec<NodeId>,
    /// Candidates the sender considers failed.
    pub(crate) fail_set: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CommitToken {
    /// The ring being formed.
    pub(crate) ring: RingId,
    /// Its members in ring order.
    pub(crate) members: Vec<NodeId>,
    /// 1 while collecting, 2 while installing.
    pub(crate) rotation: u8,
    /// Grows by one per hop (duplicates, acks).
    pub(crate) hop: u64,
    /// What each member brings from its old ring, in the order they contributed.
    pub(crate) infos: Vec<MemberInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct MemberInfo {
    pub(crate) node: NodeId,
    /// The ring it comes from.
    pub(crate) old_ring: RingId,
    /// Its delivery point in that ring.
    pub(crate) delivered: u64,
    /// The old-ring messages it holds (not yet freed).
    pub(crate) have: Vec<u64>,
}

pub(crate) fn encode(p: &Packet) -> Vec<u8> {
    // Sizes are bounded by the configuration (window × message size), below the frame limit.
    wire::encode(KIND, p).unwrap_or_default()
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Packet, wire::DecodeError> {
    wire::decode(KIND, bytes)
}

/// CRC-32 of the cluster name (the cluster tag carried by every packet).
pub(crate) fn cluster_tag(name: &str) -> u32 {
    // A small CRC-32 (IEEE) so the core needs no checksum dependency of its own.
    let mut crc = 0xFFFF_FFFFu32;
    for &b in name.as_bytes() {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn token_encoding_is_pinned() {
        let p = Packet {
            cluster: cluster_tag("alpha"),
            body: Body::Token(Token {
                ring: RingId::new(NodeId(1), 0x12a),
                token_seq: 7,
                seq: 3,
                arus: vec![(NodeId(1), 3), (NodeId(2), 2)],
                rtr: vec![3],
                quiet: 0,
            }),
        };
        let bytes = encode(&p);
        expect_test::expect!["4843011013000000eaf280870d01aa020107030201030202010300ab4a3832"].assert_eq(&hex(&bytes));
        assert_eq!(decode(&bytes).expect("round trip"), p);
    }

    #[test]
    fn join_encoding_is_pinned() {
        let p = Packet {
            cluster: 1,
            body: Body::Join(Join {
                ring: RingId::new(NodeId(2), 4),
                max_seq: 8,
                proc_set: vec![NodeId(1), NodeId(2)],
                fail_set: vec![],
            }),
        };
        let bytes = encode(&p);
        expect_test::expect!["4843011009000000010304020802010200f4692da4"].assert_eq(&hex(&bytes));
        assert_eq!(decode(&bytes).expect("round trip"), p);
    }

    #[test]
    fn cluster_tag_is_crc32() {
        assert_eq!(cluster_tag("123456789"), 0xCBF4_3926);
    }
}

#[cfg(test)]
mod roundtrip {
    use proptest::prelude::*;

    use super::*;

    fn ring() -> impl Strategy<Value = RingId> {
        (1u32..10, any::<u64>()).prop_map(|(r, s)| RingId::new(NodeId(r), s))
    }

    fn nodes() -> impl Strategy<Value = Vec<NodeId>> {
        prop::collection::vec((0u32..400).prop_map(NodeId), 0..8)
    }

    fn mcast() -> impl Strategy<Value = Mcast> {
        (ring(), any::<u64>(), 1u32..10, prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(ring, seq, o, payload)| Mcast { ring, seq, origin: NodeId(o), payload })
    }

    fn body() -> impl Strategy<Value = Body> {
        prop_oneof![
            mcast().prop_map(Body::Mcast),
            prop::collection::vec(mcast(), 0..4).prop_map(Body::Mcasts),
            prop::collection::vec(mcast(), 0..4).prop_map(Body::Recover),
            (ring(), prop::collection::vec(any::<u64>(), 0..8))
                .prop_map(|(ring, seqs)| Body::RecoverRequest { ring, seqs }),
            (ring(), any::<u64>(), any::<u64>(), prop::collection::vec((1u32..10, any::<u64>()), 0..5), any::<u32>())
                .prop_map(|(ring, token_seq, seq, arus, quiet)| Body::Token(Token {
                    ring,
                    token_seq,
                    seq,
                    arus: arus.into_iter().map(|(n, a)| (NodeId(n), a)).collect(),
                    rtr: vec![seq],
                    quiet,
                })),
            (ring(), any::<u64>(), any::<bool>()).prop_map(|(ring, token_seq, commit)| Body::Ack {
                ring,
                token_seq,
                commit
            }),
            (ring(), any::<u64>(), nodes(), nodes()).prop_map(|(ring, max_seq, proc_set, fail_set)| Body::Join(Join {
                ring,
                max_seq,
                proc_set,
                fail_set
            })),
            (ring(), nodes(), 1u8..4, any::<u64>(), ring(), prop::collection::vec(any::<u64>(), 0..8)).prop_map(
                |(ring, members, rotation, hop, old_ring, have)| Body::Commit(CommitToken {
                    ring,
                    members: members.clone(),
                    rotation,
                    hop,
                    infos: members
                        .iter()
                        .map(|&node| MemberInfo { node, old_ring, delivered: hop / 2, have: have.clone() })
                        .collect(),
                })
            ),
            ring().prop_map(|ring| Body::MergeDetect { ring }),
            ring().prop_map(|ring| Body::Leave { ring }),
            any::<bool>().prop_map(|hear| Body::Ping { hear }),
        ]
    }

    proptest! {
        #[test]
        fn every_packet_round_trips(cluster in any::<u32>(), body in body()) {
            let p = Packet { cluster, body };
            prop_assert_eq!(decode(&encode(&p)).expect("decodes"), p);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
