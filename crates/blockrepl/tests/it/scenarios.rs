//! One deterministic scenario per engine rule, on the simulated pair.

use blockrepl::{
    AdminError, AfterSb0Pri, AfterSb1Pri, BLOCK_SIZE, ConnState, DiskState, Input, ReplState, ReqId, Role,
};
use wire::Duration;

use crate::harness::{BLOCKS, World, block_content};

const SEC: Duration = Duration::from_secs(1);

fn pair(seed: u64) -> World {
    let mut w = World::new(seed, |c| c, true);
    assert!(w.run_until(SEC, World::in_sync), "pair never connected");
    w.admin(0, |e, now, out| e.promote(now, false, out)).expect("promote");
    w
}

fn pair_with(seed: u64, f: impl Fn(blockrepl::Config) -> blockrepl::Config) -> World {
    let mut w = World::new(seed, f, true);
    assert!(w.run_until(SEC, World::in_sync), "pair never connected");
    w.admin(0, |e, now, out| e.promote(now, false, out)).expect("promote");
    w
}

fn wait_done(w: &mut World, req: ReqId) {
    assert!(w.run_until(SEC, |w| w.done(req)), "request {req:?} never completed");
}

fn partition(w: &mut World) {
    w.partitioned = true;
    if w.link_up {
        w.break_link();
    }
}

fn heal(w: &mut World) {
    w.partitioned = false;
}

#[test]
fn protocol_c_write_completes_only_once_on_the_peer_disk() {
    let mut w = pair(1);
    for i in 0..20 {
        let req = w.write(0, i * 7, 2);
        while !w.done(req) {
            assert!(w.step());
        }
        // At the moment of completion, the peer has written it.
        for b in 0..2 {
            assert_eq!(w.nodes[1].disk.block(i * 7 + b), block_content(w.writes.last().unwrap().tag.wrapping_add(b)));
        }
    }
}

#[test]
fn flush_makes_completed_writes_durable_on_both_disks() {
    let mut w = pair(2);
    let reqs: Vec<_> = (0..30).map(|i| w.write(0, i * 3, 1)).collect();
    for r in reqs {
        wait_done(&mut w, r);
    }
    let f = w.flush(0);
    wait_done(&mut w, f);
    for n in 0..2 {
        let mut disk = w.nodes[n].disk.clone();
        let mut rng: rand_chacha::ChaCha8Rng = rand::SeedableRng::seed_from_u64(9);
        crate::model::crash_disk(&mut disk, &mut rng);
        w.check_contains_completed(&disk).unwrap_or_else(|e| panic!("node {}: {e}", n + 1));
    }
}

#[test]
fn reconnect_resyncs_exactly_the_blocks_written_while_disconnected() {
    let mut w = pair(3);
    partition(&mut w);
    let mut dirty = std::collections::BTreeSet::new();
    for i in 0..40u64 {
        let b = (i * 37) % BLOCKS;
        dirty.insert(b);
        let r = w.write(0, b, 1);
        wait_done(&mut w, r);
    }
    assert_eq!(w.status(0).out_of_sync_blocks, dirty.len() as u64);
    let before = w.status(0).stats.resync_bytes_sent;
    heal(&mut w);
    assert!(w.run_until(SEC, World::in_sync));
    let sent = w.status(0).stats.resync_bytes_sent - before;
    assert_eq!(sent, dirty.len() as u64 * BLOCK_SIZE);
    w.assert_same_data();
    w.check_contains_completed(&w.nodes[1].disk.clone()).unwrap();
}

#[test]
fn interrupted_resync_resumes_without_resending_acknowledged_blocks() {
    let mut w = pair_with(4, |mut c| {
        c.resync_rate_max_bytes_per_sec = 4 << 20;
        c.resync_inflight_max = 4;
        c
    });
    partition(&mut w);
    for i in 0..400u64 {
        let r = w.write(0, i * 2, 1);
        wait_done(&mut w, r);
    }
    heal(&mut w);
    assert!(w.run_until(SEC, |w| w.status(0).repl == ReplState::SyncSource));
    w.run_for(Duration::from_millis(150));
    let progress = w.status(1).out_of_sync_blocks;
    assert!(progress > 0 && progress < 400, "left {progress}");
    partition(&mut w);
    w.run_for(Duration::from_millis(10));
    heal(&mut w);
    assert!(w.run_until(SEC.saturating_mul(5), World::in_sync));
    let sent = w.status(0).stats.resync_bytes_sent;
    // Only blocks in flight at the break may travel twice.
    assert!(sent <= (400 + 4) * BLOCK_SIZE, "sent {sent} bytes for 400 dirty blocks");
    w.assert_same_data();
}

#[test]
fn resync_rate_drops_to_the_floor_while_the_application_writes() {
    let mut w = pair_with(5, |mut c| {
        c.resync_rate_max_bytes_per_sec = 0; // unlimited when idle
        c.resync_rate_min_bytes_per_sec = 1 << 20;
        c
    });
    partition(&mut w);
    for i in 0..1000u64 {
        let r = w.write(0, i * 2, 1);
        wait_done(&mut w, r);
    }
    heal(&mut w);
    assert!(w.run_until(SEC, |w| w.status(0).repl == ReplState::SyncSource));
    let before = w.status(0).stats.resync_bytes_sent;
    // 200 ms of continuous application writes.
    for i in 0..200u64 {
        let r = w.write(0, 1 + (i % 500) * 2, 1);
        w.run_for(Duration::from_millis(1));
        let _ = r;
    }
    let during = w.status(0).stats.resync_bytes_sent - before;
    assert!(during <= (1 << 20) / 5 + 256 * 1024, "resync sent {during} bytes in 200 ms under application load");
    assert!(during > 0, "resync starved completely");
    // Idle: it finishes quickly.
    assert!(w.run_until(SEC, World::in_sync));
}

#[test]
fn online_verify_reports_exactly_the_corrupted_blocks_and_reconnect_repairs_them() {
    let mut w = pair(6);
    for i in 0..50u64 {
        let r = w.write(0, i * 11, 3);
        wait_done(&mut w, r);
    }
    let bad = [5u64, 77, 1500, 2047];
    for &b in &bad {
        w.nodes[1].disk.corrupt(b);
    }
    w.admin(0, |e, now, out| e.start_verify(now, out)).unwrap();
    assert!(w.run_until(SEC.saturating_mul(5), |w| { w.status(0).verify.is_some_and(|v| !v.running) }));
    let v = w.status(0).verify.unwrap();
    assert_eq!(v.out_of_sync_blocks, bad.to_vec());
    assert_eq!(v.checked_blocks, BLOCKS);
    let before = w.status(0).stats.resync_bytes_sent;
    w.admin(1, |e, now, out| e.disconnect(now, out));
    w.admin(1, |e, now, out| e.connect(now, false, out)).unwrap();
    assert!(w.run_until(SEC, World::in_sync));
    assert_eq!(w.status(0).stats.resync_bytes_sent - before, bad.len() as u64 * BLOCK_SIZE);
    w.assert_same_data();
}

#[test]
fn a_crashed_primary_resyncs_its_activity_log_and_csums_skip_equal_blocks() {
    let mut w = pair_with(7, |mut c| {
        c.csums = true;
        c
    });
    for i in 0..20u64 {
        let r = w.write(0, i, 1);
        wait_done(&mut w, r);
    }
    let f = w.flush(0);
    wait_done(&mut w, f);
    w.crash(0);
    w.boot(0);
    // The activity log extent (1024 blocks) is now out of sync on the restarted node.
    assert!(w.status(0).out_of_sync_blocks >= 1024);
    assert!(w.run_until(SEC.saturating_mul(5), World::in_sync));
    let s = w.status(0);
    assert_eq!(s.stats.resync_bytes_sent, 0, "every block was equal");
    assert!(s.stats.resync_blocks_equal >= 1024);
}

#[test]
fn failover_after_primary_crash_keeps_every_completed_write() {
    let mut w = pair(8);
    for i in 0..60u64 {
        w.write(0, (i * 13) % BLOCKS, 2);
        w.run_for(Duration::from_micros(30));
    }
    w.crash(0);
    w.admin(1, |e, now, out| e.promote(now, false, out)).expect("survivor promotes");
    w.check_contains_completed(&w.nodes[1].disk.clone()).unwrap();
    // The old Primary returns and becomes SyncTarget of the new one.
    for i in 0..10u64 {
        let r = w.write(1, i * 100, 1);
        wait_done(&mut w, r);
    }
    w.boot(0);
    assert!(w.run_until(SEC.saturating_mul(5), World::in_sync));
    w.assert_same_data();
    assert_eq!(w.role(0), Role::Secondary);
}

#[test]
fn promotion_is_refused_while_the_connected_peer_is_primary() {
    let mut w = pair(9);
    w.run_for(Duration::from_millis(1));
    let r = w.admin(1, |e, now, out| e.promote(now, false, out));
    assert_eq!(r, Err(AdminError::PeerIsPrimary));
}

#[test]
fn inconsistent_data_cannot_be_promoted_and_a_fresh_peer_gets_a_full_sync() {
    let mut w = World::new(10, |c| c, false);
    w.run_for(Duration::from_millis(10));
    assert_eq!(w.status(0).disk, DiskState::Inconsistent);
    let r = w.admin(0, |e, now, out| e.promote(now, false, out));
    assert!(matches!(r, Err(AdminError::NotUpToDate { .. })));
    w.admin(0, |e, now, out| e.promote(now, true, out)).unwrap();
    assert!(w.run_until(SEC.saturating_mul(5), World::in_sync));
    assert_eq!(w.status(0).stats.resync_bytes_sent, BLOCKS * BLOCK_SIZE);
}

#[test]
fn wrong_peer_and_size_mismatch_are_refused_with_reasons() {
    let mut w = World::new(11, |c| c, true);
    w.nodes[1].cfg.node = wire::NodeId(3);
    w.nodes[1].meta.node = wire::NodeId(3);
    w.crash(1);
    w.boot(1);
    w.run_for(Duration::from_millis(10));
    let s = w.status(0);
    assert_eq!(s.conn, ConnState::StandAlone);
    assert!(s.last_error.unwrap().contains("wrong peer"));

    let mut w = World::new(12, |c| c, true);
    w.nodes[1].cfg.size_bytes += BLOCK_SIZE;
    w.crash(1);
    w.boot(1);
    w.run_for(Duration::from_millis(10));
    let s = w.status(0);
    assert_eq!(s.conn, ConnState::StandAlone);
    assert!(s.last_error.unwrap().contains("size mismatch"));
}

#[test]
fn a_lying_peer_is_disconnected_with_a_protocol_error() {
    let mut w = pair(13);
    w.input(0, Input::Message(blockrepl::Msg::RsAck { start: 5, count: 1 }));
    let s = w.status(0);
    assert!(s.last_error.unwrap().contains("protocol error"));
    assert_ne!(s.conn, ConnState::Connected);
    w.input(
        1,
        Input::Message(blockrepl::Msg::Data {
            seq: 1,
            epoch: 1,
            offset: BLOCKS * BLOCK_SIZE,
            data: vec![0; 4096].into(),
            fua: false,
        }),
    );
    // Both recover by reconnecting.
    assert!(w.run_until(SEC.saturating_mul(10), World::in_sync));
}

#[test]
fn backing_io_errors_detach_and_serve_from_the_peer() {
    let mut w = pair(14);
    let r = w.write(0, 10, 1);
    wait_done(&mut w, r);
    w.nodes[0].fail_io = true;
    let r2 = w.write(0, 11, 1);
    assert!(w.run_until(SEC, |w| w.completed.iter().any(|(q, _)| *q == r2)));
    assert!(w.done(r2), "write completes through the peer");
    assert_eq!(w.status(0).disk, DiskState::Diskless);
    let rd = ReqId(9_000);
    w.input(0, Input::Read { req: rd, offset: 10 * BLOCK_SIZE, len: 8192 });
    assert!(w.run_until(SEC, |w| w.done(rd)));
    let data = w.completed.iter().find(|(q, _)| *q == rd).and_then(|(_, r)| r.clone().ok().flatten()).unwrap();
    assert_eq!(data.len(), 8192);
    assert_eq!(w.nodes[1].disk.block(11), data[4096..].to_vec());
}

/// Produces a split brain: node 1 (Primary) and node 2 (promoted while partitioned) both write.
fn split_brain(seed: u64, f: impl Fn(blockrepl::Config) -> blockrepl::Config, w1: u64, w2: u64) -> World {
    let mut w = pair_with(seed, f);
    partition(&mut w);
    w.run_for(Duration::from_millis(1));
    w.admin(1, |e, now, out| e.promote(now, false, out)).unwrap();
    for i in 0..w1 {
        let r = w.write(0, i * 3, 1);
        wait_done(&mut w, r);
    }
    for i in 0..w2 {
        let r = w.write(1, 1000 + i * 3, 1);
        wait_done(&mut w, r);
    }
    w
}

fn demote(w: &mut World, n: usize) {
    w.admin(n, |e, now, out| e.demote(now, out)).unwrap();
}

#[test]
fn split_brain_default_policy_disconnects_and_reports_divergence() {
    let mut w = split_brain(20, |c| c, 5, 7);
    demote(&mut w, 1);
    heal(&mut w);
    w.run_for(Duration::from_millis(20));
    for n in 0..2 {
        let s = w.status(n);
        assert_eq!(s.conn, ConnState::StandAlone);
        let sb = s.split_brain.expect("split brain reported");
        assert_eq!(sb.diverging_blocks, 12);
    }
    assert!(w.status(0).last_error.unwrap().contains("split brain"));
    // Manual resolution: node 2 discards its data.
    w.admin(1, |e, now, out| e.connect(now, true, out)).unwrap();
    w.admin(0, |e, now, out| e.connect(now, false, out)).unwrap();
    assert!(w.run_until(SEC, World::in_sync));
    assert_eq!(w.status(0).stats.resync_bytes_sent, 12 * BLOCK_SIZE);
    w.assert_same_data();
    assert_eq!(w.nodes[1].disk.block(0), w.nodes[0].disk.block(0));
}

fn sb0(p: AfterSb0Pri) -> impl Fn(blockrepl::Config) -> blockrepl::Config {
    move |mut c| {
        c.split_brain.after_sb_0pri = p;
        c
    }
}

/// Heals a split brain with both Secondary; returns the node that kept its data.
fn resolve_0pri(mut w: World) -> usize {
    demote(&mut w, 0);
    demote(&mut w, 1);
    heal(&mut w);
    assert!(w.run_until(SEC, World::in_sync), "policy did not resolve");
    w.assert_same_data();
    let s0 = w.status(0);
    if s0.stats.resync_bytes_sent > 0 { 0 } else { 1 }
}

#[test]
fn discard_zero_changes_keeps_the_node_that_wrote() {
    let w = split_brain(21, sb0(AfterSb0Pri::DiscardZeroChanges), 0, 4);
    assert_eq!(resolve_0pri(w), 1);
    let mut w = split_brain(22, sb0(AfterSb0Pri::DiscardZeroChanges), 3, 4);
    demote(&mut w, 0);
    demote(&mut w, 1);
    heal(&mut w);
    w.run_for(Duration::from_millis(20));
    assert_eq!(w.status(0).conn, ConnState::StandAlone);
}

#[test]
fn discard_least_changes_keeps_the_node_with_more_changes() {
    let w = split_brain(23, sb0(AfterSb0Pri::DiscardLeastChanges), 9, 4);
    assert_eq!(resolve_0pri(w), 0);
}

#[test]
fn discard_younger_primary_keeps_the_primary_from_before_the_split() {
    let w = split_brain(24, sb0(AfterSb0Pri::DiscardYoungerPrimary), 1, 9);
    assert_eq!(resolve_0pri(w), 0);
}

#[test]
fn discard_older_primary_keeps_the_node_promoted_after_the_split() {
    let w = split_brain(25, sb0(AfterSb0Pri::DiscardOlderPrimary), 9, 1);
    assert_eq!(resolve_0pri(w), 1);
}

#[test]
fn discard_secondary_keeps_the_primary() {
    let mut w = split_brain(
        26,
        |mut c| {
            c.split_brain.after_sb_1pri = AfterSb1Pri::DiscardSecondary;
            c
        },
        1,
        9,
    );
    demote(&mut w, 1);
    heal(&mut w);
    assert!(w.run_until(SEC, World::in_sync));
    w.assert_same_data();
    assert_eq!(w.role(0), Role::Primary);
    assert_eq!(w.status(0).stats.resync_bytes_sent, 10 * BLOCK_SIZE);
}

#[test]
fn two_primaries_after_a_split_always_disconnect() {
    let mut w = split_brain(
        27,
        |mut c| {
            c.split_brain.after_sb_0pri = AfterSb0Pri::DiscardZeroChanges;
            c.split_brain.after_sb_1pri = AfterSb1Pri::DiscardSecondary;
            c
        },
        0,
        1,
    );
    heal(&mut w);
    w.run_for(Duration::from_millis(20));
    assert_eq!(w.status(0).conn, ConnState::StandAlone);
    assert_eq!(w.status(1).conn, ConnState::StandAlone);
    assert_eq!(w.role(0), Role::Primary);
    assert_eq!(w.role(1), Role::Primary);
}

#[test]
fn secondary_refuses_application_io() {
    let mut w = pair(30);
    let r = ReqId(77);
    w.input(1, Input::Read { req: r, offset: 0, len: 512 });
    assert!(matches!(
        w.completed.last(),
        Some((q, Err(blockrepl::IoError::NotPrimary { .. }))) if *q == r
    ));
}

#[test]
fn oversized_requests_are_refused_instead_of_breaking_the_link() {
    let mut w = pair(31);
    let r = ReqId(78);
    w.input(
        0,
        Input::Write { req: r, offset: 0, data: vec![1; (blockrepl::REQUEST_MAX + 4096) as usize].into(), fua: false },
    );
    assert!(matches!(
        w.completed.last(),
        Some((q, Err(blockrepl::IoError::TooLarge { .. }))) if *q == r
    ));
    assert!(w.in_sync());
}

#[test]
fn two_promotions_racing_on_a_connected_pair_are_arbitrated() {
    for (seed, first) in [(31u64, 0usize), (32, 1)] {
        let mut w = World::new(seed, |c| c, true);
        assert!(w.run_until(SEC, World::in_sync), "pair never connected");
        // Both promote before either hears of the other; both succeed locally at first.
        w.admin(first, |e, now, out| e.promote(now, false, out)).expect("first promotion");
        w.admin(1 - first, |e, now, out| e.promote(now, false, out)).expect("second promotion");
        // A write submitted on the loser during the race never reaches a disk.
        let lost = w.write(1, 7, 1);
        let won = w.write(0, 9, 1);
        let finished = |w: &World, r: ReqId| w.completed.iter().any(|(x, _)| *x == r);
        assert!(w.run_until(SEC, |w| finished(w, lost) && w.done(won)), "requests never completed");
        assert!(!w.done(lost), "the loser refuses the write it held");
        assert_eq!(w.role(0), Role::Primary, "the lower node id wins");
        assert_eq!(w.role(1), Role::Secondary);
        let s1 = w.status(1);
        assert!(
            s1.last_error
                .as_deref()
                .is_some_and(|e| e.contains("promotion refused") && e.contains("won the arbitration")),
            "{s1:?}"
        );
        assert_eq!(s1.conn, ConnState::Connected, "no split brain, no StandAlone");
        assert_eq!(w.status(0).conn, ConnState::Connected);
        assert!(!w.status(0).promotion_pending);
        assert!(w.run_until(SEC, World::in_sync));
        w.assert_same_data();
        let lost_bytes = block_content(w.writes[w.req_to_write[&lost]].tag);
        for n in 0..2 {
            assert_ne!(w.nodes[n].disk.block(7), lost_bytes, "the loser's write reached node {n}'s disk");
        }
    }
}

#[test]
fn a_flush_with_nothing_new_to_make_durable_completes_without_a_round_trip() {
    let mut w = pair(33);
    let wr = w.write(0, 3, 1);
    wait_done(&mut w, wr);
    let f1 = w.flush(0);
    assert!(!w.done(f1), "a flush after a write waits for the peer");
    wait_done(&mut w, f1);
    let bytes = w.link_bytes;
    let f2 = w.flush(0);
    assert!(w.done(f2), "nothing completed since the last flush: done at once");
    assert_eq!(w.link_bytes, bytes, "no barrier sent");
    // A write completed after a flush was issued is not covered by it.
    let wr = w.write(0, 4, 1);
    let f3 = w.flush(0);
    wait_done(&mut w, wr);
    wait_done(&mut w, f3);
    let f4 = w.flush(0);
    assert!(!w.done(f4), "the write completed after f3 was issued: f4 makes it durable");
    wait_done(&mut w, f4);
}
