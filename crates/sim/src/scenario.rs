//! Scenarios: a safety phase with random faults, then a healing phase that must converge;
//! seed selection and sweeps; failure reports with a reproduce line.

use std::fmt;
use std::time::Instant as WallInstant;

use rand::Rng;
use wire::{Duration, Instant, LinkId, NodeId};

use crate::node::SimNode;
use crate::world::{World, WorldEvent};

/// Which faults the safety phase injects, and how often. Each fault fires after an
/// exponentially distributed wait with mean `mean_interval`, and is drawn by weight.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Mean time between faults.
    pub mean_interval: Duration,
    /// Weight of a two-way partition into two random groups.
    pub partition: u32,
    /// Weight of a one-way block between two nodes.
    pub one_way: u32,
    /// Weight of healing every partition.
    pub heal: u32,
    /// Weight of crashing a node (its disk kept).
    pub crash: u32,
    /// Weight of crashing a node and wiping its disk.
    pub crash_wipe: u32,
    /// Weight of restarting a crashed node.
    pub restart: u32,
    /// Weight of pausing a node for up to `pause_max`.
    pub pause: u32,
    /// Longest pause.
    pub pause_max: Duration,
    /// Weight of a forward clock jump of up to `clock_jump_max`.
    pub clock_jump: u32,
    /// Largest clock jump.
    pub clock_jump_max: Duration,
    /// Weight of changing a node's drift (up to ±`drift_max_ppm`).
    pub drift: u32,
    /// Largest drift.
    pub drift_max_ppm: i32,
    /// Weight of taking one of a node's links down or up.
    pub link_flap: u32,
    /// Number of links per node (for `link_flap`).
    pub links: u8,
    /// Weight of changing packet loss/duplication/reordering rates.
    pub net_quality: u32,
    /// Crashes leave at least this many nodes alive.
    pub min_alive: usize,
}

impl FaultPlan {
    /// No faults at all.
    pub fn none() -> Self {
        FaultPlan {
            mean_interval: Duration::from_secs(1),
            partition: 0,
            one_way: 0,
            heal: 0,
            crash: 0,
            crash_wipe: 0,
            restart: 0,
            pause: 0,
            pause_max: Duration::from_millis(500),
            clock_jump: 0,
            clock_jump_max: Duration::from_millis(500),
            drift: 0,
            drift_max_ppm: 200,
            link_flap: 0,
            links: 1,
            net_quality: 0,
            min_alive: 1,
        }
    }

    /// Every kind of fault, with weights suited to membership-like protocols.
    pub fn all() -> Self {
        FaultPlan {
            mean_interval: Duration::from_millis(700),
            partition: 3,
            one_way: 2,
            heal: 4,
            crash: 2,
            crash_wipe: 1,
            restart: 3,
            pause: 2,
            clock_jump: 1,
            drift: 1,
            link_flap: 1,
            net_quality: 2,
            ..FaultPlan::none()
        }
    }

    fn total(&self) -> u32 {
        self.partition
            + self.one_way
            + self.heal
            + self.crash
            + self.crash_wipe
            + self.restart
            + self.pause
            + self.clock_jump
            + self.drift
            + self.link_flap
            + self.net_quality
    }

    /// Injects one random fault into `world`.
    pub fn inject<N: SimNode>(&self, world: &mut World<N>) {
        let total = self.total();
        if total == 0 {
            return;
        }
        let ids = world.node_ids();
        if ids.is_empty() {
            return;
        }
        let mut pick = world.rng().random_range(0..total);
        let mut take = |w: u32| {
            if pick < w {
                true
            } else {
                pick -= w;
                false
            }
        };
        let any = |world: &mut World<N>, from: &[NodeId]| -> Option<NodeId> {
            if from.is_empty() { None } else { Some(from[world.rng().random_range(0..from.len())]) }
        };
        if take(self.partition) {
            let mut a = Vec::new();
            let mut b = Vec::new();
            for &id in &ids {
                if world.rng().random_bool(0.5) { a.push(id) } else { b.push(id) }
            }
            world.log(WorldEvent::Fault(format!("partition {a:?} | {b:?}")));
            world.net.partition(&a, &b);
        } else if take(self.one_way) {
            let (Some(x), Some(y)) = (any(world, &ids), any(world, &ids)) else { return };
            if x != y {
                world.log(WorldEvent::Fault(format!("one-way block n{x} -> n{y}")));
                world.net.blocked.insert((x, y));
            }
        } else if take(self.heal) {
            world.log(WorldEvent::Fault("heal partitions".into()));
            world.net.blocked.clear();
        } else if take(self.crash + self.crash_wipe) {
            let alive = world.alive();
            if alive.len() > self.min_alive
                && let Some(id) = any(world, &alive)
            {
                let wipe = world.rng().random_range(0..self.crash + self.crash_wipe) >= self.crash;
                world.crash(id, !wipe);
            }
        } else if take(self.restart) {
            let down: Vec<NodeId> = ids.iter().copied().filter(|&id| world.is_crashed(id)).collect();
            if let Some(id) = any(world, &down) {
                world.restart(id);
            }
        } else if take(self.pause) {
            let running = world.running();
            if let Some(id) = any(world, &running) {
                let d = Duration::from_nanos(world.rng().random_range(1..=self.pause_max.as_nanos().max(1)));
                world.pause(id, Some(d));
            }
        } else if take(self.clock_jump) {
            if let Some(id) = any(world, &ids) {
                let d = Duration::from_nanos(world.rng().random_range(1..=self.clock_jump_max.as_nanos().max(1)));
                world.jump_clock(id, d);
            }
        } else if take(self.drift) {
            if let Some(id) = any(world, &ids) {
                let m = self.drift_max_ppm.max(0);
                let ppm = world.rng().random_range(-m..=m);
                world.log(WorldEvent::Fault(format!("clock of n{id} drifts {ppm} ppm")));
                world.set_drift(id, ppm);
            }
        } else if take(self.link_flap) {
            if let Some(id) = any(world, &ids) {
                let link = LinkId(world.rng().random_range(0..self.links.max(1)));
                if world.net.links_down.remove(&(id, link)) {
                    world.log(WorldEvent::Fault(format!("n{id} {link} up")));
                } else {
                    world.log(WorldEvent::Fault(format!("n{id} {link} down")));
                    world.net.links_down.insert((id, link));
                }
            }
        } else if take(self.net_quality) {
            let rng = world.rng();
            let loss = [0.0, 0.01, 0.05, 0.2][rng.random_range(0..4)];
            let dup = [0.0, 0.01, 0.05][rng.random_range(0..3)];
            let reorder = [0.0, 0.05, 0.2][rng.random_range(0..3)];
            world.log(WorldEvent::Fault(format!("network loss {loss} dup {dup} reorder {reorder}")));
            world.net.loss = loss;
            world.net.duplicate = dup;
            world.net.reorder = reorder;
        }
    }
}

/// The shape of one run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The test that runs it (for the reproduce line).
    pub test: &'static str,
    /// The package the test lives in (for the reproduce line).
    pub package: &'static str,
    /// Length of the phase with faults.
    pub safety: Duration,
    /// Longest the healing phase may take to converge.
    pub healing: Duration,
    /// Faults injected during the safety phase.
    pub faults: FaultPlan,
}

impl Scenario {
    /// A scenario with default phases (20 s of faults, 30 s to converge) and all faults.
    pub fn new(package: &'static str, test: &'static str) -> Self {
        Scenario {
            test,
            package,
            safety: Duration::from_secs(20),
            healing: Duration::from_secs(30),
            faults: FaultPlan::all(),
        }
    }

    /// The one-line command that re-runs `seed`.
    pub fn reproduce(&self, seed: u64) -> String {
        format!("SIM_SEED={seed} cargo test -p {} -- {} --exact --nocapture", self.package, self.test)
    }
}

/// Why a run failed: a checker's verdict or a healing phase that did not converge.
#[derive(Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Step at which it failed.
    pub step: u64,
    /// Simulated time.
    pub at: Instant,
    /// What went wrong.
    pub what: String,
    /// Recent events.
    pub trace: Vec<String>,
    /// The command that reproduces it (filled in by [`run_scenario`]).
    pub reproduce: String,
}

impl Failure {
    pub(crate) fn new<N: SimNode>(world: &World<N>, what: String) -> Failure {
        Failure {
            seed: world.seed(),
            step: world.steps(),
            at: world.now(),
            what,
            trace: world.trace_lines(),
            reproduce: String::new(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation failed: {}", self.what)?;
        writeln!(f, "seed {} step {} at {}", self.seed, self.step, self.at)?;
        writeln!(f, "last events:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        write!(f, "reproduce: {}", self.reproduce)
    }
}

impl std::error::Error for Failure {}

/// What a successful run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// Events processed.
    pub events: u64,
    /// Simulated time at the end.
    pub simulated: Duration,
    /// Time the healing phase took to converge.
    pub converged_after: Duration,
}

/// Runs `world` through the scenario: faults for `safety`, then heal everything (partitions,
/// links, network quality, pauses, crashed nodes restarted) and run until `converged` holds,
/// failing if it does not within `healing`. `workload` is called every `tick` of simulated time
/// in both phases to inject application inputs.
pub fn run_scenario<N: SimNode>(
    scenario: &Scenario,
    mut world: World<N>,
    tick: Duration,
    mut workload: impl FnMut(&mut World<N>, bool),
    mut converged: impl FnMut(&World<N>) -> bool,
) -> Result<RunStats, Failure> {
    let seed = world.seed();
    let with_repro = |mut f: Failure| {
        f.reproduce = scenario.reproduce(seed);
        f
    };
    let safety_end = world.now() + scenario.safety;
    let mut next_fault = world.now() + exp_wait(&mut world, scenario.faults.mean_interval);
    while world.now() < safety_end {
        let until = (world.now() + tick).min(safety_end);
        while next_fault <= until {
            world.run_until(next_fault).map_err(with_repro)?;
            scenario.faults.inject(&mut world);
            next_fault = world.now() + exp_wait(&mut world, scenario.faults.mean_interval);
        }
        world.run_until(until).map_err(with_repro)?;
        workload(&mut world, true);
    }
    // Healing.
    world.log(WorldEvent::Fault("healing phase: all faults cleared".into()));
    world.net = world.net.healed();
    for id in world.node_ids() {
        world.resume(id);
        world.set_drift(id, 0);
        world.restart(id);
    }
    let heal_start = world.now();
    let deadline = heal_start + scenario.healing;
    loop {
        if converged(&world) {
            return Ok(RunStats {
                events: world.events_processed(),
                simulated: world.now().since_origin(),
                converged_after: world.now() - heal_start,
            });
        }
        if world.now() >= deadline {
            let f = Failure::new(&world, format!("did not converge within {} of healing", scenario.healing));
            return Err(with_repro(f));
        }
        let until = (world.now() + tick).min(deadline);
        world.run_until(until).map_err(with_repro)?;
        workload(&mut world, false);
    }
}

fn exp_wait<N: SimNode>(world: &mut World<N>, mean: Duration) -> Duration {
    let u: f64 = world.rng().random_range(f64::EPSILON..1.0);
    let wait = -u.ln() * mean.as_nanos() as f64;
    Duration::from_nanos(wait.min(1e18) as u64)
}

/// The seeds to run: `SIM_SEED=n` runs only `n`; otherwise the `pinned` seeds (ones that found
/// bugs once), then random seeds until `SIM_SEEDS` (default `default_count`) seeds ran or
/// `SIM_BUDGET_SECS` (default 20) of wall time passed. `SIM_BASE_SEED` fixes the random part.
#[derive(Debug)]
pub struct SeedSweep {
    pinned: Vec<u64>,
    base: u64,
    count: u64,
    budget: std::time::Duration,
    started: WallInstant,
    issued: u64,
    only: Option<u64>,
}

/// Builds a [`SeedSweep`].
pub fn seeds(pinned: &[u64], default_count: u64) -> SeedSweep {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let base = env("SIM_BASE_SEED").unwrap_or_else(|| {
        // Sweeps explore new seeds on every run; each failure prints its own seed.
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    SeedSweep {
        pinned: pinned.to_vec(),
        base,
        count: env("SIM_SEEDS").unwrap_or(default_count),
        budget: std::time::Duration::from_secs(env("SIM_BUDGET_SECS").unwrap_or(20)),
        started: WallInstant::now(),
        issued: 0,
        only: env("SIM_SEED"),
    }
}

impl Iterator for SeedSweep {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if let Some(seed) = self.only {
            self.only = None;
            self.count = 0;
            self.pinned.clear();
            self.issued = u64::MAX;
            return Some(seed);
        }
        if self.issued == u64::MAX {
            return None;
        }
        if (self.issued as usize) < self.pinned.len() {
            self.issued += 1;
            return Some(self.pinned[self.issued as usize - 1]);
        }
        let random_done = self.issued - self.pinned.len() as u64;
        if random_done >= self.count || self.started.elapsed() >= self.budget {
            return None;
        }
        self.issued += 1;
        // splitmix64 of base + index: distinct, well-spread seeds.
        let mut z = self.base.wrapping_add(random_done.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Some(z ^ (z >> 31))
    }
}

/// Runs `run` for every seed of `seeds(pinned, default_count)`; prints a summary line and panics
/// with the first failure's report.
pub fn sweep(name: &str, pinned: &[u64], default_count: u64, mut run: impl FnMut(u64) -> Result<RunStats, Failure>) {
    let started = WallInstant::now();
    let mut n = 0u64;
    let mut events = 0u64;
    let mut worst_converge = Duration::ZERO;
    for seed in seeds(pinned, default_count) {
        match run(seed) {
            Ok(stats) => {
                n += 1;
                events += stats.events;
                worst_converge = worst_converge.max(stats.converged_after);
            }
            Err(failure) => panic!("{name}: seed {seed} failed after {n} passing seeds\n{failure}"),
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "sim {name}: {n} seeds passed in {secs:.1}s ({:.0} seeds/s, {:.0} events/s), slowest convergence {worst_converge}",
        n as f64 / secs,
        events as f64 / secs
    );
    assert!(n > 0, "{name}: no seed ran");
}
