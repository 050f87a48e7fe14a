//! Unit-level behaviour of the world: network faults, pauses, crashes, clocks, determinism.

use sim::{Outbox, SimNode, World};
use wire::{Duration, Instant, LinkId, NodeId};

/// Records every packet it gets; sends `count` numbered packets to node 2 when poked.
#[derive(Default)]
struct Probe {
    got: Vec<(Instant, NodeId, LinkId, u32)>,
    wakeups: Vec<Instant>,
    timer: Option<Instant>,
    disk: Option<Vec<u8>>,
}

impl SimNode for Probe {
    type Note = u32;
    fn on_start(&mut self, _now: Instant, _out: &mut Outbox<u32>) {}
    fn on_packet(&mut self, now: Instant, from: NodeId, link: LinkId, bytes: &[u8], out: &mut Outbox<u32>) {
        let n = u32::from_le_bytes(bytes.try_into().unwrap_or([0; 4]));
        self.got.push((now, from, link, n));
        out.note(n);
    }
    fn on_wakeup(&mut self, now: Instant, _out: &mut Outbox<u32>) {
        self.wakeups.push(now);
        self.timer = None;
    }
    fn next_wakeup(&self) -> Option<Instant> {
        self.timer
    }
}

fn send_burst(world: &mut World<Probe>, count: u32, link: u8) {
    world.poke_at(Instant::ZERO, NodeId(1), move |_, _, out| {
        for i in 0..count {
            out.send(NodeId(2), LinkId(link), i.to_le_bytes().to_vec());
        }
    });
}

fn world(seed: u64) -> World<Probe> {
    World::new(seed, 2, |_, disk, _| Probe { disk: disk.map(<[u8]>::to_vec), ..Probe::default() })
}

fn received(w: &World<Probe>) -> Vec<u32> {
    w.node(NodeId(2)).unwrap().got.iter().map(|g| g.3).collect()
}

#[test]
fn a_clean_network_delivers_everything_once() {
    let mut w = world(1);
    w.net.latency.tail_probability = 0.0;
    send_burst(&mut w, 100, 0);
    w.run_for(Duration::from_secs(1)).unwrap();
    let mut got = received(&w);
    got.sort();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn loss_duplication_and_reordering_happen_at_their_rates() {
    let mut w = world(2);
    w.net.loss = 0.1;
    w.net.duplicate = 0.1;
    w.net.reorder = 0.3;
    send_burst(&mut w, 10_000, 0);
    w.run_for(Duration::from_secs(1)).unwrap();
    let got = received(&w);
    let distinct: std::collections::BTreeSet<_> = got.iter().collect();
    let lost = 10_000 - distinct.len();
    let dups = got.len() - distinct.len();
    assert!((800..1200).contains(&lost), "lost {lost}");
    assert!((700..1100).contains(&dups), "duplicated {dups}");
    assert!(got.windows(2).filter(|w| w[1] < w[0]).count() > 100, "some packets overtake others");
}

#[test]
fn partitions_are_directional_and_links_fail_alone() {
    let mut w = world(3);
    w.net.blocked.insert((NodeId(2), NodeId(1)));
    send_burst(&mut w, 5, 0);
    w.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(received(&w).len(), 5, "one-way block 2->1 does not stop 1->2");
    w.net.blocked.insert((NodeId(1), NodeId(2)));
    send_burst(&mut w, 5, 0);
    w.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(received(&w).len(), 5);
    w.net.blocked.clear();
    w.net.links_down.insert((NodeId(2), LinkId(0)));
    send_burst(&mut w, 5, 0);
    send_burst(&mut w, 7, 1);
    w.run_for(Duration::from_millis(100)).unwrap();
    let links: Vec<u8> = w.node(NodeId(2)).unwrap().got.iter().skip(5).map(|g| g.2.0).collect();
    assert_eq!(links, vec![1; 7], "link 0 is down at n2; link 1 still carries traffic");
}

#[test]
fn a_paused_node_gets_buffered_packets_and_late_timers_on_resume() {
    let mut w = world(4);
    w.poke_at(Instant::ZERO, NodeId(2), |n, now, _| n.timer = Some(now + Duration::from_millis(10)));
    w.run_for(Duration::from_millis(1)).unwrap();
    w.pause(NodeId(2), Some(Duration::from_millis(400)));
    send_burst(&mut w, 3, 0);
    w.run_for(Duration::from_millis(100)).unwrap();
    assert!(received(&w).is_empty() && w.node(NodeId(2)).unwrap().wakeups.is_empty());
    w.run_for(Duration::from_millis(400)).unwrap();
    let n2 = w.node(NodeId(2)).unwrap();
    assert_eq!(n2.got.len(), 3);
    assert_eq!(n2.wakeups.len(), 1, "the missed timer fires once on resume");
    let start = w.local_now(NodeId(2)).unwrap() - Duration::from_millis(501);
    assert!(n2.wakeups[0] - start >= Duration::from_millis(400), "it fired late, after the pause");
}

#[test]
fn crashes_keep_or_wipe_the_disk() {
    let mut w = world(5);
    w.poke_at(Instant::ZERO, NodeId(2), |_, _, out| out.persist(b"state".to_vec()));
    w.run_for(Duration::from_millis(1)).unwrap();
    w.crash(NodeId(2), true);
    send_burst(&mut w, 3, 0);
    w.run_for(Duration::from_millis(10)).unwrap();
    assert!(w.node(NodeId(2)).is_none());
    w.restart(NodeId(2));
    assert_eq!(w.node(NodeId(2)).unwrap().disk.as_deref(), Some(&b"state"[..]));
    assert!(received(&w).is_empty(), "packets sent to a crashed node are lost");
    w.crash(NodeId(2), false);
    w.restart(NodeId(2));
    assert_eq!(w.node(NodeId(2)).unwrap().disk, None);
}

#[test]
fn clocks_drift_and_jump_forward_only() {
    let mut w = world(6);
    let t0 = w.local_now(NodeId(1)).unwrap();
    w.set_drift(NodeId(1), 1000);
    w.run_for(Duration::from_secs(10)).unwrap();
    let t1 = w.local_now(NodeId(1)).unwrap();
    assert_eq!(t1 - t0, Duration::from_millis(10_010));
    w.jump_clock(NodeId(1), Duration::from_secs(3));
    assert_eq!(w.local_now(NodeId(1)).unwrap() - t1, Duration::from_secs(3));
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let history = |seed| {
        let mut w = world(seed);
        w.net.loss = 0.2;
        w.net.reorder = 0.5;
        send_burst(&mut w, 200, 0);
        w.run_for(Duration::from_secs(1)).unwrap();
        w.node(NodeId(2)).unwrap().got.clone()
    };
    assert_eq!(history(9), history(9));
    assert_ne!(history(9), history(10));
}
