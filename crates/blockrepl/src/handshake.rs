//! The handshake decision: from both nodes' [`Hello`]s, who is up to date, whether a resync is
//! needed and in which direction, and whether a split brain happened and how it is resolved.
//!
//! The rules follow DRBD's generation-identifier comparison: equal current generations mean the
//! same data; a node whose bitmap generation equals the peer's current generation wrote since
//! the peer last saw it (bitmap resync); a match in the history means the bitmap was lost (full
//! resync); equal bitmap generations with different current ones mean both wrote after the
//! split (split brain). The decision is computed identically on both nodes: the function orders
//! the two hellos by node id, so the answers are mirror images.

use serde::{Deserialize, Serialize};

use crate::msg::Hello;
use crate::types::{AfterSb0Pri, AfterSb1Pri, AfterSb2Pri, DiskState, Role, SplitBrainPolicy};

/// What the handshake decided, from the local node's point of view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Same data: no resync (bitmaps are dropped).
    InSync,
    /// Neither node has data yet (both fresh).
    BothFresh,
    /// This node sends; `full` means every block, else the union of both bitmaps.
    Source {
        /// Full resync.
        full: bool,
        /// The split brain this resolves, if any.
        after_split_brain: bool,
    },
    /// This node receives.
    Target {
        /// Full resync.
        full: bool,
        /// The split brain this resolves, if any.
        after_split_brain: bool,
    },
    /// Connection refused; stay StandAlone.
    Refuse(Refusal),
}

/// Why a handshake refused the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Both wrote after a split; the policy did not pick a victim.
    #[error(
        "split brain detected: both nodes changed data (local {local_changes} blocks, peer {peer_changes}); resolve with `crmctl volume resolve --discard-my-data` on the victim"
    )]
    SplitBrain {
        /// Local changes.
        local_changes: u64,
        /// Peer changes.
        peer_changes: u64,
    },
    /// The generations share no history.
    #[error("unrelated data: the peer's generations share no history with ours; recreate one side")]
    Unrelated,
    /// The peer is not the configured one.
    #[error("wrong peer: node {found} connected, node {expected} is configured")]
    WrongPeer {
        /// Configured.
        expected: u32,
        /// Found.
        found: u32,
    },
    /// Sizes differ.
    #[error("volume size mismatch: local {local} bytes, peer {peer} bytes; make both the same size")]
    SizeMismatch {
        /// Local size.
        local: u64,
        /// Peer size.
        peer: u64,
    },
    /// The node that would be sync source has no consistent data.
    #[error("sync source node {node} has no up-to-date data (disk {disk:?})")]
    SourceNotUpToDate {
        /// The would-be source.
        node: u32,
        /// Its disk state.
        disk: DiskState,
    },
    /// Two Primaries without dual-primary.
    #[error("both nodes are Primary and dual-primary is not allowed; demote one")]
    TwoPrimaries,
    /// The victim chosen is a Primary.
    #[error("split-brain victim node {node} is Primary; demote it first")]
    VictimIsPrimary {
        /// Victim.
        node: u32,
    },
}

/// Outcome seen from the lower-id node `a`.
enum Ordered {
    InSync,
    BothFresh,
    ASource { full: bool, sb: bool },
    BSource { full: bool, sb: bool },
    Refuse(Refusal),
}

/// Decides the connection outcome for the local node. `local_sees_peer_bits` is the union of
/// both bitmaps being non-empty (used when generations are equal).
pub(crate) fn decide(local: &Hello, peer: &Hello, policy: &SplitBrainPolicy, union_dirty: u64) -> Decision {
    let local_is_a = local.node <= peer.node;
    let (a, b) = if local_is_a { (local, peer) } else { (peer, local) };
    let out = decide_ordered(a, b, policy, union_dirty);
    match (out, local_is_a) {
        (Ordered::InSync, _) => Decision::InSync,
        (Ordered::BothFresh, _) => Decision::BothFresh,
        (Ordered::Refuse(r), _) => Decision::Refuse(r),
        (Ordered::ASource { full, sb }, true) | (Ordered::BSource { full, sb }, false) => {
            Decision::Source { full, after_split_brain: sb }
        }
        (Ordered::ASource { full, sb }, false) | (Ordered::BSource { full, sb }, true) => {
            Decision::Target { full, after_split_brain: sb }
        }
    }
}

fn decide_ordered(a: &Hello, b: &Hello, policy: &SplitBrainPolicy, union_dirty: u64) -> Ordered {
    if a.size_bytes != b.size_bytes {
        return Ordered::Refuse(Refusal::SizeMismatch { local: a.size_bytes, peer: b.size_bytes });
    }
    let primaries = u8::from(a.role == Role::Primary) + u8::from(b.role == Role::Primary);
    let out = compare_generations(a, b, policy, primaries);
    // Whoever sends must hold consistent data.
    let source = match &out {
        Ordered::ASource { .. } => Some(a),
        Ordered::BSource { .. } => Some(b),
        _ => None,
    };
    if let Some(s) = source {
        if !matches!(s.disk, DiskState::UpToDate | DiskState::Consistent) {
            return Ordered::Refuse(Refusal::SourceNotUpToDate { node: s.node.0, disk: s.disk });
        }
        let target = if std::ptr::eq(s, a) { b } else { a };
        if target.role == Role::Primary && !(a.dual_primary && b.dual_primary) {
            // A Primary never has its data overwritten under the application.
            return Ordered::Refuse(Refusal::VictimIsPrimary { node: target.node.0 });
        }
    }
    if matches!(out, Ordered::InSync) && primaries == 2 && !(a.dual_primary && b.dual_primary) {
        return Ordered::Refuse(Refusal::TwoPrimaries);
    }
    if matches!(out, Ordered::InSync) && union_dirty > 0 {
        // Same generation but blocks marked out of sync (online verify found them): the
        // Primary is the reference; without one the lower node id.
        return if b.role == Role::Primary && a.role != Role::Primary {
            Ordered::BSource { full: false, sb: false }
        } else {
            Ordered::ASource { full: false, sb: false }
        };
    }
    out
}

fn compare_generations(a: &Hello, b: &Hello, policy: &SplitBrainPolicy, primaries: u8) -> Ordered {
    let (ac, bc) = (a.gi.current, b.gi.current);
    if ac.0 == 0 && bc.0 == 0 {
        return Ordered::BothFresh;
    }
    if ac.0 == 0 {
        return Ordered::BSource { full: true, sb: false };
    }
    if bc.0 == 0 {
        return Ordered::ASource { full: true, sb: false };
    }
    if ac == bc {
        // Same generation. A node that crashed as Primary may hold writes in its activity
        // log that never reached the peer: it sends them.
        return match (a.crashed_primary, b.crashed_primary) {
            (false, false) => Ordered::InSync,
            (true, false) | (true, true) => Ordered::ASource { full: false, sb: false },
            (false, true) => Ordered::BSource { full: false, sb: false },
        };
    }
    if a.gi.bitmap.0 != 0 && a.gi.bitmap == bc {
        return Ordered::ASource { full: false, sb: false };
    }
    if b.gi.bitmap.0 != 0 && b.gi.bitmap == ac {
        return Ordered::BSource { full: false, sb: false };
    }
    if a.gi.in_history(bc) {
        return Ordered::ASource { full: true, sb: false };
    }
    if b.gi.in_history(ac) {
        return Ordered::BSource { full: true, sb: false };
    }
    let shared_bitmap = a.gi.bitmap.0 != 0 && a.gi.bitmap == b.gi.bitmap;
    let shared_history = a.gi.history.iter().any(|&g| b.gi.in_history(g))
        || a.gi.in_history(b.gi.bitmap)
        || b.gi.in_history(a.gi.bitmap);
    if shared_bitmap || shared_history {
        return resolve_split_brain(a, b, policy, primaries, !shared_bitmap);
    }
    Ordered::Refuse(Refusal::Unrelated)
}

/// Which node discards its changes after a split brain, or a refusal.
fn resolve_split_brain(a: &Hello, b: &Hello, policy: &SplitBrainPolicy, primaries: u8, full: bool) -> Ordered {
    let refuse = Ordered::Refuse(Refusal::SplitBrain { local_changes: a.dirty_blocks, peer_changes: b.dirty_blocks });
    // The victim: true = a discards.
    let victim_a: Option<bool> = match (a.discard_my_data, b.discard_my_data) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        (true, true) => None,
        (false, false) => match primaries {
            0 => sb_0pri(a, b, policy.after_sb_0pri),
            1 => match policy.after_sb_1pri {
                AfterSb1Pri::Disconnect => None,
                AfterSb1Pri::DiscardSecondary => Some(a.role != Role::Primary),
                AfterSb1Pri::Consensus => {
                    let v = sb_0pri(a, b, policy.after_sb_0pri);
                    let secondary_is_a = a.role != Role::Primary;
                    v.filter(|&va| va == secondary_is_a)
                }
            },
            _ => match policy.after_sb_2pri {
                AfterSb2Pri::Disconnect => None,
            },
        },
    };
    match victim_a {
        None => refuse,
        Some(true) => Ordered::BSource { full, sb: true },
        Some(false) => Ordered::ASource { full, sb: true },
    }
}

fn sb_0pri(a: &Hello, b: &Hello, p: AfterSb0Pri) -> Option<bool> {
    let (ca, cb) = (a.dirty_blocks, b.dirty_blocks);
    let least = || -> Option<bool> {
        // Fewer changes discards; a tie picks the higher node id (b) as victim.
        Some(ca < cb)
    };
    match p {
        AfterSb0Pri::Disconnect => None,
        AfterSb0Pri::DiscardZeroChanges => match (ca == 0, cb == 0) {
            (true, true) => Some(false),
            (true, false) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        },
        AfterSb0Pri::DiscardLeastChanges => least(),
        AfterSb0Pri::DiscardYoungerPrimary | AfterSb0Pri::DiscardOlderPrimary => {
            // The node whose bitmap generation was started by a Primary losing its peer was
            // Primary before the split (the older Primary).
            match (a.gi.bitmap_by_primary, b.gi.bitmap_by_primary) {
                (true, false) => Some(p == AfterSb0Pri::DiscardOlderPrimary),
                (false, true) => Some(p == AfterSb0Pri::DiscardYoungerPrimary),
                _ => least(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use wire::{Generation, NodeId};

    use super::*;
    use crate::types::Gi;

    fn hello(node: u32, current: u64, bitmap: u64, history: [u64; 2]) -> Hello {
        Hello {
            node: NodeId(node),
            expects: NodeId(3 - node),
            size_bytes: 1 << 20,
            gi: Gi {
                current: Generation(current),
                bitmap: Generation(bitmap),
                history: [Generation(history[0]), Generation(history[1])],
                bitmap_by_primary: false,
            },
            role: Role::Secondary,
            disk: DiskState::UpToDate,
            crashed_primary: false,
            discard_my_data: false,
            dual_primary: false,
            dirty_blocks: 0,
        }
    }

    fn check(a: &Hello, b: &Hello, p: &SplitBrainPolicy) -> (Decision, Decision) {
        (decide(a, b, p, 0), decide(b, a, p, 0))
    }

    const SRC: Decision = Decision::Source { full: false, after_split_brain: false };
    const TGT: Decision = Decision::Target { full: false, after_split_brain: false };

    #[test]
    fn equal_generations_need_no_resync() {
        let d = check(&hello(1, 9, 0, [0; 2]), &hello(2, 9, 0, [0; 2]), &SplitBrainPolicy::default());
        assert_eq!(d, (Decision::InSync, Decision::InSync));
    }

    #[test]
    fn a_node_that_wrote_while_disconnected_is_bitmap_source() {
        let d = check(&hello(1, 20, 9, [0; 2]), &hello(2, 9, 0, [0; 2]), &SplitBrainPolicy::default());
        assert_eq!(d, (SRC, TGT));
    }

    #[test]
    fn a_fresh_peer_gets_a_full_sync() {
        let mut fresh = hello(2, 0, 0, [0; 2]);
        fresh.disk = DiskState::Inconsistent;
        let d = check(&hello(1, 9, 0, [0; 2]), &fresh, &SplitBrainPolicy::default());
        assert_eq!(d.0, Decision::Source { full: true, after_split_brain: false });
    }

    #[test]
    fn a_history_match_means_full_sync() {
        let d = check(&hello(1, 30, 0, [20, 9]), &hello(2, 9, 0, [0; 2]), &SplitBrainPolicy::default());
        assert_eq!(d.1, Decision::Target { full: true, after_split_brain: false });
    }

    #[test]
    fn crashed_primary_sends_its_activity_log() {
        let mut a = hello(1, 9, 0, [0; 2]);
        a.crashed_primary = true;
        let d = check(&a, &hello(2, 9, 0, [0; 2]), &SplitBrainPolicy::default());
        assert_eq!(d, (SRC, TGT));
    }

    #[test]
    fn split_brain_is_refused_by_default_with_both_change_counts() {
        let mut a = hello(1, 20, 9, [0; 2]);
        a.dirty_blocks = 4;
        let mut b = hello(2, 30, 9, [0; 2]);
        b.dirty_blocks = 7;
        let d = check(&a, &b, &SplitBrainPolicy::default());
        assert_eq!(d.0, Decision::Refuse(Refusal::SplitBrain { local_changes: 4, peer_changes: 7 }));
    }

    fn sb_pair(ca: u64, cb: u64) -> (Hello, Hello) {
        let mut a = hello(1, 20, 9, [0; 2]);
        a.dirty_blocks = ca;
        let mut b = hello(2, 30, 9, [0; 2]);
        b.dirty_blocks = cb;
        (a, b)
    }

    fn policy0(p: AfterSb0Pri) -> SplitBrainPolicy {
        SplitBrainPolicy { after_sb_0pri: p, ..SplitBrainPolicy::default() }
    }

    const SB_SRC: Decision = Decision::Source { full: false, after_split_brain: true };
    const SB_TGT: Decision = Decision::Target { full: false, after_split_brain: true };

    #[test]
    fn discard_zero_changes_picks_the_node_without_writes() {
        let (a, b) = sb_pair(0, 5);
        let p = policy0(AfterSb0Pri::DiscardZeroChanges);
        assert_eq!(check(&a, &b, &p), (SB_TGT, SB_SRC));
        let (a, b) = sb_pair(3, 5);
        assert!(matches!(check(&a, &b, &p).0, Decision::Refuse(_)));
    }

    #[test]
    fn discard_least_changes_picks_the_smaller_bitmap() {
        let (a, b) = sb_pair(9, 5);
        assert_eq!(check(&a, &b, &policy0(AfterSb0Pri::DiscardLeastChanges)), (SB_SRC, SB_TGT));
    }

    #[test]
    fn discard_younger_and_older_primary_use_who_was_primary_before_the_split() {
        let (mut a, b) = sb_pair(1, 100);
        a.gi.bitmap_by_primary = true; // a was Primary when the link broke
        assert_eq!(check(&a, &b, &policy0(AfterSb0Pri::DiscardYoungerPrimary)), (SB_SRC, SB_TGT));
        assert_eq!(check(&a, &b, &policy0(AfterSb0Pri::DiscardOlderPrimary)), (SB_TGT, SB_SRC));
    }

    #[test]
    fn discard_secondary_keeps_the_primary() {
        let (a, mut b) = sb_pair(100, 1);
        b.role = Role::Primary;
        let p = SplitBrainPolicy { after_sb_1pri: AfterSb1Pri::DiscardSecondary, ..SplitBrainPolicy::default() };
        assert_eq!(check(&a, &b, &p), (SB_TGT, SB_SRC));
        // Consensus with least-changes would pick b (the Primary) as victim: refused.
        let p = SplitBrainPolicy {
            after_sb_0pri: AfterSb0Pri::DiscardLeastChanges,
            after_sb_1pri: AfterSb1Pri::Consensus,
            ..SplitBrainPolicy::default()
        };
        assert!(matches!(check(&a, &b, &p).0, Decision::Refuse(_)));
    }

    #[test]
    fn two_primaries_after_split_always_disconnect() {
        let (mut a, mut b) = sb_pair(0, 1);
        a.role = Role::Primary;
        b.role = Role::Primary;
        let p = SplitBrainPolicy {
            after_sb_0pri: AfterSb0Pri::DiscardZeroChanges,
            after_sb_1pri: AfterSb1Pri::DiscardSecondary,
            after_sb_2pri: AfterSb2Pri::Disconnect,
        };
        assert!(matches!(check(&a, &b, &p).0, Decision::Refuse(_)));
    }

    #[test]
    fn manual_discard_my_data_names_the_victim() {
        let (mut a, b) = sb_pair(100, 1);
        a.discard_my_data = true;
        assert_eq!(check(&a, &b, &SplitBrainPolicy::default()), (SB_TGT, SB_SRC));
    }

    #[test]
    fn unrelated_generations_and_bad_peers_are_refused() {
        let d = check(&hello(1, 20, 0, [0; 2]), &hello(2, 30, 0, [0; 2]), &SplitBrainPolicy::default());
        assert_eq!(d.0, Decision::Refuse(Refusal::Unrelated));
        let mut b = hello(2, 20, 0, [0; 2]);
        b.size_bytes = 2 << 20;
        assert!(matches!(
            check(&hello(1, 20, 0, [0; 2]), &b, &SplitBrainPolicy::default()).0,
            Decision::Refuse(Refusal::SizeMismatch { .. })
        ));
    }

    #[test]
    fn an_inconsistent_node_never_becomes_source() {
        let mut a = hello(1, 20, 9, [0; 2]);
        a.disk = DiskState::Inconsistent;
        let d = check(&a, &hello(2, 9, 0, [0; 2]), &SplitBrainPolicy::default());
        assert!(matches!(d.0, Decision::Refuse(Refusal::SourceNotUpToDate { .. })));
    }

    fn any_hello(node: u32) -> impl Strategy<Value = Hello> {
        (0u64..4, 0u64..4, 0u64..4, 0u64..4, any::<bool>(), any::<bool>(), any::<bool>(), 0u64..3).prop_map(
            move |(c, bm, h0, h1, pri, crashed, by_pri, dirty)| {
                let mut h = hello(node, c, bm, [h0, h1]);
                h.role = if pri { Role::Primary } else { Role::Secondary };
                h.crashed_primary = crashed;
                h.gi.bitmap_by_primary = by_pri;
                h.dirty_blocks = dirty;
                h
            },
        )
    }

    proptest! {
        #[test]
        fn both_sides_reach_mirror_decisions(a in any_hello(1), b in any_hello(2), p0 in 0usize..5, p1 in 0usize..3) {
            let p = SplitBrainPolicy {
                after_sb_0pri: [AfterSb0Pri::Disconnect, AfterSb0Pri::DiscardZeroChanges, AfterSb0Pri::DiscardLeastChanges, AfterSb0Pri::DiscardYoungerPrimary, AfterSb0Pri::DiscardOlderPrimary][p0],
                after_sb_1pri: [AfterSb1Pri::Disconnect, AfterSb1Pri::Consensus, AfterSb1Pri::DiscardSecondary][p1],
                after_sb_2pri: AfterSb2Pri::Disconnect,
            };
            let (x, y) = check(&a, &b, &p);
            let mirrored = match &x {
                Decision::Source { full, after_split_brain } => Decision::Target { full: *full, after_split_brain: *after_split_brain },
                Decision::Target { full, after_split_brain } => Decision::Source { full: *full, after_split_brain: *after_split_brain },
                other => other.clone(),
            };
            prop_assert_eq!(y, mirrored);
            // A Primary is never overwritten without dual-primary.
            if let Decision::Target { .. } = x { prop_assert!(a.role != Role::Primary); }
        }
    }
}
