//! The simulated network: per-packet fates drawn from the world's RNG.

use std::collections::BTreeSet;

use rand::Rng;
use wire::{Duration, LinkId, NodeId};

/// One-way latency of a delivered packet: `base` plus a uniformly drawn jitter in `[0, jitter]`,
/// plus, with probability `tail_probability`, a long tail of up to `tail`.
#[derive(Clone, Copy, Debug)]
pub struct LatencyModel {
    /// Minimum one-way delay.
    pub base: Duration,
    /// Uniform jitter on top of `base`.
    pub jitter: Duration,
    /// Probability of a slow packet.
    pub tail_probability: f64,
    /// Extra delay of a slow packet (uniform up to this).
    pub tail: Duration,
}

impl Default for LatencyModel {
    /// A LAN: 50 µs to 250 µs, 1 % of packets up to 5 ms late.
    fn default() -> Self {
        LatencyModel {
            base: Duration::from_micros(50),
            jitter: Duration::from_micros(200),
            tail_probability: 0.01,
            tail: Duration::from_millis(5),
        }
    }
}

impl LatencyModel {
    pub(crate) fn draw(&self, rng: &mut impl Rng) -> Duration {
        let mut d = self.base + Duration::from_nanos(rng.random_range(0..=self.jitter.as_nanos()));
        if self.tail_probability > 0.0 && rng.random_bool(self.tail_probability.clamp(0.0, 1.0)) {
            d += Duration::from_nanos(rng.random_range(0..=self.tail.as_nanos()));
        }
        d
    }
}

/// Network behaviour. Probabilities are per packet.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Latency of every link unless overridden.
    pub latency: LatencyModel,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability that a packet is held back by up to `reorder_delay` (so later ones overtake it).
    pub reorder: f64,
    /// Maximum extra delay of a reordered packet.
    pub reorder_delay: Duration,
    /// Directed pairs (from, to) that cannot talk: a partition is both directions, a one-way
    /// partition only one.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    /// Links that are down at a node (no packet leaves or arrives on them there).
    pub links_down: BTreeSet<(NodeId, LinkId)>,
    /// Packets a paused node buffers before dropping more (its socket buffer).
    pub paused_buffer_packets: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: LatencyModel::default(),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(2),
            blocked: BTreeSet::new(),
            links_down: BTreeSet::new(),
            paused_buffer_packets: 1024,
        }
    }
}

/// What happens to one packet.
pub(crate) enum Fate {
    Dropped(&'static str),
    /// Delivered after each of these delays (two when duplicated).
    Delivered(Vec<Duration>),
}

impl NetConfig {
    /// A network without faults (the healing phase).
    pub fn healed(&self) -> NetConfig {
        NetConfig {
            latency: self.latency,
            paused_buffer_packets: self.paused_buffer_packets,
            reorder_delay: self.reorder_delay,
            ..NetConfig::default()
        }
    }

    /// Blocks both directions between every node of `a` and every node of `b`.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
    }

    pub(crate) fn fate(&self, from: NodeId, to: NodeId, link: LinkId, rng: &mut impl Rng) -> Fate {
        if self.blocked.contains(&(from, to)) {
            return Fate::Dropped("partition");
        }
        if self.links_down.contains(&(from, link)) || self.links_down.contains(&(to, link)) {
            return Fate::Dropped("link down");
        }
        if self.loss > 0.0 && rng.random_bool(self.loss.clamp(0.0, 1.0)) {
            return Fate::Dropped("lost");
        }
        let mut delays = vec![self.one_delay(rng)];
        if self.duplicate > 0.0 && rng.random_bool(self.duplicate.clamp(0.0, 1.0)) {
            delays.push(self.one_delay(rng));
        }
        Fate::Delivered(delays)
    }

    fn one_delay(&self, rng: &mut impl Rng) -> Duration {
        let mut d = self.latency.draw(rng);
        if self.reorder > 0.0 && rng.random_bool(self.reorder.clamp(0.0, 1.0)) {
            d += Duration::from_nanos(rng.random_range(0..=self.reorder_delay.as_nanos()));
        }
        d
    }
}
