//! A deterministic simulator for the protocol cores.
//!
//! Every sans-IO core (membership, quorum, crm controller, blockrepl engine) implements
//! [`SimNode`]: it is handed `now` and an input, writes its effects into an [`Outbox`], and
//! reports its next deadline. A [`World`] runs several such nodes in one thread with one seeded
//! RNG, one event queue ordered by (time, sequence) and a simulated clock per node, over a
//! simulated network ([`NetConfig`]) that loses, duplicates, delays and reorders packets, and can
//! be partitioned (also one way) or have single links cut. Nodes can crash (keeping or losing
//! their persisted state), restart, pause, and see their clocks drift or jump.
//!
//! [`Checker`]s run after every step; [`run_scenario`] drives a safety phase with random faults
//! ([`FaultPlan`]) followed by a healing phase that must converge, and on any violation returns a
//! [`Failure`] whose `Display` prints the seed, the step, the last events and a one-line command
//! that reproduces it. [`seeds`] picks the seeds: `SIM_SEED` for one, else the pinned list plus
//! random seeds bounded by `SIM_SEEDS` (count) and `SIM_BUDGET_SECS` (wall time).
//!
//! The simulator is a dev-dependency only. It never uses the OS clock for simulated time; wall
//! time is read only to bound sweeps.

mod clock;
mod net;
mod node;
mod scenario;
mod world;

pub use clock::ClockModel;
pub use net::{LatencyModel, NetConfig};
pub use node::{Outbox, SimNode};
pub use scenario::{Failure, FaultPlan, RunStats, Scenario, SeedSweep, run_scenario, seeds, sweep};
pub use world::{Checker, Note, World, WorldEvent};
