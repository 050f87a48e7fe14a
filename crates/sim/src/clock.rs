//! Per-node clocks: each node's local time is a piecewise-linear function of simulated time,
//! with a drift rate and forward jumps (monotonic clocks never go back).

use wire::{Duration, Instant};

/// How a node's clock relates to simulated time from a given point on.
#[derive(Clone, Copy, Debug)]
pub struct ClockModel {
    base_global: Instant,
    base_local: Instant,
    /// Drift in parts per million: +100 means the local clock runs 100 ppm fast.
    drift_ppm: i32,
}

impl ClockModel {
    /// A clock that starts at local time `start` at simulated time `now`.
    pub fn new(now: Instant, start: Instant, drift_ppm: i32) -> Self {
        ClockModel { base_global: now, base_local: start, drift_ppm: drift_ppm.clamp(-100_000, 100_000) }
    }

    fn rate_scaled(elapsed: u64, ppm: i32) -> u64 {
        let adj = (elapsed as i128) * (ppm as i128) / 1_000_000;
        (elapsed as i128 + adj).max(0) as u64
    }

    /// Local time at simulated time `global` (not before the base).
    pub fn local(&self, global: Instant) -> Instant {
        let elapsed = global.saturating_since(self.base_global).as_nanos();
        self.base_local + Duration::from_nanos(Self::rate_scaled(elapsed, self.drift_ppm))
    }

    /// The earliest simulated time at which the local clock reads at least `local`.
    pub fn global_for(&self, local: Instant) -> Instant {
        if local <= self.base_local {
            return self.base_global;
        }
        let want = local.saturating_since(self.base_local).as_nanos() as i128;
        let rate = 1_000_000i128 + self.drift_ppm as i128;
        // ceil(want * 1e6 / rate)
        let elapsed = (want * 1_000_000 + rate - 1) / rate;
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        let mut g = self.base_global.saturating_add(Duration::from_nanos(elapsed));
        // Integer rounding may leave us a few nanoseconds off either way; settle on the earliest.
        while self.local(g) < local && g < Instant::MAX {
            g = g.saturating_add(Duration::from_nanos(1));
        }
        while g > self.base_global && self.local(g - Duration::from_nanos(1)) >= local {
            g = g - Duration::from_nanos(1);
        }
        g
    }

    /// Re-bases the clock at `now` (keeping continuity) and adds a forward jump.
    pub fn jump(&mut self, now: Instant, forward: Duration) {
        let local = self.local(now);
        self.base_global = now;
        self.base_local = local + forward;
    }

    /// Re-bases the clock at `now` with a new drift rate.
    pub fn set_drift(&mut self, now: Instant, drift_ppm: i32) {
        let local = self.local(now);
        *self = ClockModel::new(now, local, drift_ppm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_and_inverse_agree() {
        for ppm in [-500, -1, 0, 1, 250, 10_000] {
            let c = ClockModel::new(Instant::from_nanos(5_000), Instant::from_nanos(77), ppm);
            for local in [77u64, 78, 1_000_003, 9_999_999_999] {
                let g = c.global_for(Instant::from_nanos(local));
                assert!(c.local(g) >= Instant::from_nanos(local));
                if g > Instant::from_nanos(5_000) {
                    assert!(c.local(Instant::from_nanos(g.as_nanos() - 1)) < Instant::from_nanos(local));
                }
            }
        }
    }

    #[test]
    fn jumps_only_go_forward() {
        let mut c = ClockModel::new(Instant::ZERO, Instant::ZERO, 0);
        let before = c.local(Instant::from_nanos(1_000));
        c.jump(Instant::from_nanos(1_000), Duration::from_millis(500));
        assert_eq!(c.local(Instant::from_nanos(1_000)), before + Duration::from_millis(500));
    }
}
