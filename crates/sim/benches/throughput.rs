//! Prints the simulator's throughput: simulated events per wall second and seeds per second,
//! for a toy token-passing ring of 5 nodes under loss, duplication and reordering.
//!
//! Run: `cargo bench -p sim --bench throughput`

use std::time::Instant as WallInstant;

use sim::{FaultPlan, Outbox, Scenario, SimNode, World, run_scenario};
use wire::{Duration, Instant, LinkId, NodeId};

const NODES: u32 = 5;

/// Passes a counter around the ring; regenerates the token if it has not seen one for a while.
struct Ring {
    id: NodeId,
    last_seen: Instant,
    highest: u64,
}

impl Ring {
    fn pass(&self, counter: u64, out: &mut Outbox<u64>) {
        let next = NodeId(self.id.0 % NODES + 1);
        out.send(next, LinkId(0), counter.to_le_bytes().to_vec());
    }
}

impl SimNode for Ring {
    type Note = u64;
    fn on_start(&mut self, now: Instant, out: &mut Outbox<u64>) {
        self.last_seen = now;
        if self.id == NodeId(1) {
            self.pass(0, out);
        }
    }
    fn on_packet(&mut self, now: Instant, _from: NodeId, _link: LinkId, bytes: &[u8], out: &mut Outbox<u64>) {
        let Ok(b) = <[u8; 8]>::try_from(bytes) else { return };
        let counter = u64::from_le_bytes(b);
        if counter < self.highest {
            return;
        }
        self.highest = counter;
        self.last_seen = now;
        self.pass(counter + 1, out);
    }
    fn on_wakeup(&mut self, now: Instant, out: &mut Outbox<u64>) {
        self.last_seen = now;
        self.highest += 1000;
        self.pass(self.highest, out);
    }
    fn next_wakeup(&self) -> Option<Instant> {
        Some(self.last_seen + Duration::from_millis(50 + u64::from(self.id.0) * 7))
    }
}

fn main() {
    let scenario = Scenario {
        safety: Duration::from_secs(30),
        healing: Duration::from_secs(1),
        faults: FaultPlan { crash: 0, crash_wipe: 0, ..FaultPlan::all() },
        ..Scenario::new("sim", "throughput")
    };
    let started = WallInstant::now();
    let mut events = 0u64;
    let mut simulated = Duration::ZERO;
    let seeds = 200u64;
    for seed in 0..seeds {
        let world = World::new(seed, NODES, |id, _, _| Ring { id, last_seen: Instant::ZERO, highest: 0 });
        let stats = run_scenario(&scenario, world, Duration::from_millis(100), |_, _| {}, |_| true)
            .expect("toy ring never fails");
        events += stats.events;
        simulated += stats.simulated;
    }
    let wall = started.elapsed().as_secs_f64();
    println!("sim throughput ({NODES}-node token ring, all faults but crashes, {seeds} seeds)");
    println!("  events processed      {events}");
    println!("  wall time             {wall:.2} s");
    println!("  events per wall sec   {:.0}", events as f64 / wall);
    println!("  seeds per wall sec    {:.1}", seeds as f64 / wall);
    println!("  simulated / wall      {:.0}x", simulated.as_secs_f64() / wall);
}
