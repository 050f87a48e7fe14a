//! One test per documented votequorum behaviour.

use quorum::{Effect, Input, QuorumConfig, TieBreaker, Votequorum};
use wire::{Duration, Instant, NodeId, RingId};

use crate::harness::Cluster;

fn nodes(n: u32) -> QuorumConfig {
    QuorumConfig::with_nodes(n)
}

#[test]
fn majority_of_expected_votes_is_needed() {
    for (n, q) in [(3, 2), (4, 3), (5, 3)] {
        let mut c = Cluster::new(&nodes(n), n);
        let all: Vec<u32> = (1..=n).collect();
        c.views(&[&all]);
        assert!(c.quorate(1));
        assert_eq!(c.status(1).quorum, q, "{n} nodes");
    }
    let mut c = Cluster::new(&nodes(3), 3);
    c.views(&[&[1, 2, 3]]);
    c.views(&[&[1, 2], &[3]]);
    assert!(c.quorate(1) && c.quorate(2) && !c.quorate(3));
    let mut c = Cluster::new(&nodes(4), 4);
    c.views(&[&[1, 2, 3, 4]]);
    c.views(&[&[1, 2], &[3, 4]]);
    assert!(c.quorate_partitions().is_empty(), "a 2:2 split of 4 leaves nobody quorate");
    c.assert_partitions_agree();
}

#[test]
fn quorum_never_drops_on_its_own() {
    let mut c = Cluster::new(&nodes(5), 5);
    c.views(&[&[1, 2, 3, 4, 5]]);
    c.views(&[&[1, 2, 3]]);
    let s = c.status(1);
    assert_eq!((s.expected_votes, s.quorum, s.quorate), (5, 3, true));
    c.views(&[&[1, 2]]);
    let s = c.status(1);
    assert_eq!((s.expected_votes, s.quorum, s.quorate), (5, 3, false));
}

#[test]
fn gaining_quorum_waits_for_every_members_information() {
    let mut vq = Votequorum::new(nodes(3));
    let mut out = Vec::new();
    let members = [NodeId(1), NodeId(2)];
    vq.handle(Instant::ZERO, Input::View { ring: RingId::new(NodeId(1), 4), members: &members, left: &[] }, &mut out);
    assert!(!vq.is_quorate(), "node 2's information has not arrived yet");
    assert!(vq.status().explanation.contains("exchanging vote information"), "{}", vq.status().explanation);
    let Some(Effect::Broadcast(mine)) = out.first().cloned() else { panic!("broadcasts its info first: {out:?}") };
    let theirs = match &mine {
        quorum::QuorumMsg::Info(i) => quorum::QuorumMsg::Info(quorum::NodeInfo { ..i.clone() }),
        other => panic!("{other:?}"),
    };
    vq.handle(Instant::ZERO, Input::Delivered { from: NodeId(1), msg: mine }, &mut out);
    assert!(!vq.is_quorate());
    vq.handle(Instant::ZERO, Input::Delivered { from: NodeId(2), msg: theirs }, &mut out);
    assert!(vq.is_quorate());
}

#[test]
fn two_node_keeps_the_survivor_quorate_and_waits_for_both_at_start() {
    let cfg = QuorumConfig { two_node: true, ..nodes(2) };
    let mut c = Cluster::new(&cfg, 2);
    c.views(&[&[1]]);
    assert!(!c.quorate(1), "wait_for_all (implied by two_node): a lone node at start is not quorate");
    assert!(c.status(1).explanation.contains("wait_for_all"), "{}", c.status(1).explanation);
    c.views(&[&[1, 2]]);
    assert!(c.quorate(1) && c.quorate(2));
    assert_eq!(c.status(1).quorum, 1);
    assert!(c.status(1).flags.contains(&"2Node".to_string()));
    c.views(&[&[1]]);
    assert!(c.quorate(1), "the survivor keeps quorum");
    c.views(&[&[1, 2]]);
    c.views(&[&[1], &[2]]);
    assert_eq!(c.quorate_partitions().len(), 2, "a split leaves both quorate: the fence race decides");

    let cfg = QuorumConfig { two_node: true, wait_for_all: Some(false), ..nodes(2) };
    let mut c = Cluster::new(&cfg, 2);
    c.views(&[&[2]]);
    assert!(c.quorate(2), "wait_for_all explicitly off: a lone node is quorate at start");
}

#[test]
fn wait_for_all_rearms_after_quorum_is_lost() {
    let cfg = QuorumConfig { wait_for_all: Some(true), ..nodes(3) };
    let mut c = Cluster::new(&cfg, 3);
    c.views(&[&[1, 2]]);
    assert!(!c.quorate(1), "2 of 3 but all three never seen together");
    c.views(&[&[1, 2, 3]]);
    assert!(c.quorate(1));
    c.views(&[&[1, 2]]);
    assert!(c.quorate(1), "once all were seen, a majority is enough");
    c.views(&[&[1]]);
    assert!(!c.quorate(1));
    c.views(&[&[1, 2]]);
    assert!(!c.quorate(1), "quorum was lost, so wait_for_all is armed again");
    c.views(&[&[1, 2, 3]]);
    assert!(c.quorate(1));
}

#[test]
fn wait_for_all_is_cleared_by_joining_a_quorate_cluster() {
    let cfg = QuorumConfig { wait_for_all: Some(true), ..nodes(3) };
    let mut c = Cluster::new(&cfg, 3);
    c.views(&[&[1, 2, 3]]);
    c.views(&[&[1, 2]]);
    // Node 3 was down (so it restarts with a fresh state that waits for all) and joins node 1.
    c.views(&[&[1, 3], &[2]]);
    assert!(c.quorate(3), "node 3 joined node 1, which was quorate and not waiting");
}

#[test]
fn last_man_standing_shrinks_expected_votes_after_the_window() {
    let cfg = QuorumConfig { last_man_standing: true, wait_for_all: Some(true), ..nodes(5) };
    let mut c = Cluster::new(&cfg, 5);
    c.views(&[&[1, 2, 3, 4, 5]]);
    c.views(&[&[1, 2, 3]]);
    assert_eq!(c.status(1).expected_votes, 5);
    c.advance(Duration::from_millis(9_999));
    assert_eq!(c.status(1).expected_votes, 5, "the window has not expired");
    c.advance(Duration::from_millis(1));
    let s = c.status(1);
    assert_eq!((s.expected_votes, s.quorum, s.quorate), (3, 2, true));
    c.views(&[&[1, 2]]);
    assert!(c.quorate(1), "2 of 3 after the shrink");
    c.advance(Duration::from_secs(10));
    assert_eq!(c.status(1).expected_votes, 2);
    c.views(&[&[1]]);
    assert!(!c.quorate(1), "down to one needs auto_tie_breaker");

    let cfg = QuorumConfig { last_man_standing: true, auto_tie_breaker: true, ..nodes(3) };
    let mut c = Cluster::new(&cfg, 3);
    c.views(&[&[1, 2, 3]]);
    c.views(&[&[1, 2]]);
    c.advance(Duration::from_secs(10));
    c.views(&[&[1], &[2]]);
    assert!(c.quorate(1) && !c.quorate(2), "with ATB the lowest id survives alone");
    c.advance(Duration::from_secs(10));
    assert_eq!(c.status(1).expected_votes, 1);
}

#[test]
fn a_returning_node_cancels_the_last_man_standing_window() {
    let cfg = QuorumConfig { last_man_standing: true, ..nodes(5) };
    let mut c = Cluster::new(&cfg, 5);
    c.views(&[&[1, 2, 3, 4, 5]]);
    c.views(&[&[1, 2, 3, 4]]);
    c.advance(Duration::from_secs(5));
    c.views(&[&[1, 2, 3, 4, 5]]);
    c.advance(Duration::from_secs(20));
    assert_eq!(c.status(1).expected_votes, 5);
}

#[test]
fn auto_tie_breaker_picks_one_half_of_an_even_split() {
    for (tb, winner) in
        [(TieBreaker::Lowest, 1), (TieBreaker::Highest, 3), (TieBreaker::List(vec![NodeId(4), NodeId(1)]), 3)]
    {
        let cfg = QuorumConfig { auto_tie_breaker: true, auto_tie_breaker_node: tb.clone(), ..nodes(4) };
        let mut c = Cluster::new(&cfg, 4);
        c.views(&[&[1, 2, 3, 4]]);
        c.views(&[&[1, 2], &[3, 4]]);
        let quorate = c.quorate_partitions();
        assert_eq!(quorate.len(), 1, "{tb}: exactly one half");
        assert!(quorate[0].contains(&NodeId(winner)), "{tb}: {quorate:?}");
        assert!(c.status(1).flags.contains(&"AutoTieBreaker".to_string()));
    }
    // A 1:3 split is no tie: the majority wins, ATB or not.
    let cfg = QuorumConfig { auto_tie_breaker: true, ..nodes(4) };
    let mut c = Cluster::new(&cfg, 4);
    c.views(&[&[1, 2, 3, 4]]);
    c.views(&[&[1], &[2, 3, 4]]);
    assert!(!c.quorate(1) && c.quorate(2));
}

#[test]
fn a_tie_breaker_list_refuses_when_an_earlier_node_may_be_on_the_other_side() {
    let cfg = QuorumConfig {
        auto_tie_breaker: true,
        auto_tie_breaker_node: TieBreaker::List(vec![NodeId(1), NodeId(3)]),
        ..nodes(4)
    };
    let mut c = Cluster::new(&cfg, 4);
    c.views(&[&[1, 2, 3, 4]]);
    c.views(&[&[1, 2], &[3, 4]]);
    assert!(c.quorate(1) && !c.quorate(3), "node 1 was in the last quorate view and may be alive");
}

#[test]
fn allow_downscale_lowers_expected_votes_on_a_clean_leave_only() {
    let cfg = QuorumConfig { allow_downscale: true, expected_votes: Some(2), ..nodes(3) };
    let mut c = Cluster::new(&cfg, 3);
    c.views(&[&[1, 2, 3]]);
    assert_eq!(c.status(1).expected_votes, 3, "raised to the votes present");
    c.views(&[&[1, 2]]);
    assert_eq!(c.status(1).expected_votes, 3, "a failure does not lower it");
    c.views(&[&[1, 2, 3]]);
    c.views_with_leavers(&[&[1, 2]], &[3]);
    assert_eq!(c.status(1).expected_votes, 2, "a clean leave does, down to the configured value");
    assert!(c.status(1).flags.contains(&"AllowDownscale".to_string()));
}

#[test]
fn expected_votes_can_be_changed_at_runtime_within_limits() {
    let mut c = Cluster::new(&nodes(3), 3);
    c.views(&[&[1, 2, 3]]);
    c.views(&[&[1]]);
    assert!(!c.quorate(1));
    assert_eq!(c.set_expected(1, 0), Err("expected votes must be at least 1".into()));
    c.set_expected(1, 1).unwrap();
    let s = c.status(1);
    assert_eq!((s.expected_votes, s.quorum, s.quorate), (1, 1, true));
    c.views(&[&[1, 2, 3]]);
    assert_eq!(c.status(1).expected_votes, 3, "raised again as nodes return");
    assert_eq!(c.set_expected(1, 2), Err("2 is below the 3 votes present; use at least 3".into()));
}

#[test]
fn the_arbiter_vote_keeps_one_side_quorate() {
    let cfg = QuorumConfig { device_votes: Some(1), ..nodes(2) };
    let mut c = Cluster::new(&cfg, 2);
    c.views(&[&[1, 2]]);
    assert!(!c.quorate(1), "waiting for the arbiter clients' reports");
    c.device_all(|_| true);
    assert_eq!(c.status(1).quorum, 2, "2 nodes + arbiter: 3 expected, 2 needed");
    assert!(c.quorate(1));
    c.views(&[&[1], &[2]]);
    c.device_all(|_| false);
    assert!(c.quorate_partitions().is_empty(), "no side has the arbiter's vote yet");
    assert!(c.status(1).explanation.contains("or the arbiter (1 vote)"), "{}", c.status(1).explanation);
    c.device(1, true);
    assert!(c.quorate(1) && !c.quorate(2));
    assert_eq!(c.status(1).device, Some((1, true)));

    let cfg = QuorumConfig { device_votes: Some(1), ..nodes(4) };
    let mut c = Cluster::new(&cfg, 4);
    c.views(&[&[1, 2, 3, 4]]);
    c.device_all(|_| true);
    assert_eq!(c.status(1).quorum, 3, "4 + ffsplit arbiter: 5 expected, 3 needed");
    c.views(&[&[1, 2], &[3, 4]]);
    c.device_all(|p| p.contains(&NodeId(3)));
    assert_eq!(c.quorate_partitions(), vec![vec![NodeId(3), NodeId(4)]]);
    // Losing the arbiter with every node up never costs quorum.
    let mut c = Cluster::new(&cfg, 4);
    c.views(&[&[1, 2, 3, 4]]);
    c.device_all(|_| true);
    c.device(1, false);
    assert!(c.quorate(1) && c.quorate(4));
}

#[test]
fn an_arbiter_added_at_run_time_replaces_two_node_without_a_moment_of_inquorate() {
    let cfg = QuorumConfig { two_node: true, ..nodes(2) };
    let mut c = Cluster::new(&cfg, 2);
    c.views(&[&[1, 2]]);
    assert!(c.quorate(1) && c.status(1).flags.contains(&"2Node".to_string()));
    c.add_device(1);
    let s = c.status(1);
    assert!(s.quorate, "both nodes present: 2 of 3 votes, still quorate before the arbiter answers");
    assert_eq!((s.expected_votes, s.quorum, s.device), (3, 2, Some((1, false))));
    assert!(!s.flags.contains(&"2Node".to_string()) && !s.flags.contains(&"WaitForAll".to_string()), "{:?}", s.flags);
    c.device_all(|_| true);
    assert_eq!(c.status(2).total_votes, 3);
    // Now a split is decided by the arbiter, not by two_node's fence race.
    c.views(&[&[1], &[2]]);
    c.device_all(|p| p.contains(&NodeId(2)));
    assert_eq!(c.quorate_partitions(), vec![vec![NodeId(2)]]);
    c.assert_partitions_agree();
    // A second add changes nothing.
    c.add_device(5);
    assert_eq!(c.status(2).device, Some((1, true)));
    // An explicit wait_for_all stays.
    let cfg = QuorumConfig { two_node: true, wait_for_all: Some(true), ..nodes(2) };
    let mut c = Cluster::new(&cfg, 2);
    c.views(&[&[1, 2]]);
    c.add_device(1);
    assert!(c.status(1).flags.contains(&"WaitForAll".to_string()));
}

#[test]
fn removing_the_arbiter_at_run_time_gives_back_its_votes_and_two_node() {
    let cfg = QuorumConfig { device_votes: Some(1), ..nodes(2) };
    let mut c = Cluster::new(&cfg, 2);
    c.views(&[&[1, 2]]);
    c.device_all(|_| true);
    assert_eq!(c.status(1).expected_votes, 3);
    for n in [1, 2] {
        let mut out = Vec::new();
        c.nodes.get_mut(&NodeId(n)).expect("node").handle(c.now, Input::DeviceRemoved { two_node: true }, &mut out);
    }
    let s = c.status(1);
    assert!(s.quorate && s.device.is_none(), "{s:?}");
    assert_eq!((s.expected_votes, s.quorum), (2, 1));
    assert!(s.flags.contains(&"2Node".to_string()), "{:?}", s.flags);
    // Each node alone stays quorate now: two_node, the fence race decides.
    c.views(&[&[1], &[2]]);
    assert!(c.quorate(1) && c.quorate(2));
}

#[test]
fn the_explanation_says_what_would_restore_quorum() {
    let mut c = Cluster::new(&nodes(3), 3);
    c.views(&[&[1, 2, 3]]);
    expect_test::expect!["quorate: 3 of 3 expected votes present, 2 needed"].assert_eq(&c.status(1).explanation);
    c.views(&[&[1], &[2], &[3]]);
    expect_test::expect!["not quorate: 1 of 3 expected votes present, 2 needed; 1 more vote would restore quorum: node 2 (1 vote), node 3 (1 vote)"]
        .assert_eq(&c.status(1).explanation);
}
