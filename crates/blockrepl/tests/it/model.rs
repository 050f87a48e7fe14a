//! The model test: random application load against the pair, with link breaks, secondary
//! crashes and I/O reordering during a safety phase, a single Primary crash with failover, then
//! a healing phase that must converge. Invariants are checked after every step.

use blockrepl::{ConnState, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wire::Duration;

use crate::harness::{BLOCKS, SimDisk, World};

/// What a crash leaves of `disk`: the durable copy plus a random subset of unsynced writes.
pub(crate) fn crash_disk(disk: &mut SimDisk, rng: &mut ChaCha8Rng) {
    disk.crash(rng);
}

fn check_one_primary(w: &World) -> Result<(), String> {
    if (0..2).all(|n| w.alive(n)) {
        let a = w.status(0);
        let b = w.status(1);
        if a.role == Role::Primary
            && b.role == Role::Primary
            && a.conn == ConnState::Connected
            && b.conn == ConnState::Connected
        {
            return Err("two connected Primaries".into());
        }
    }
    Ok(())
}

fn run_seed(seed: u64) -> Result<(), String> {
    let mut w = World::new(seed, |c| c, true);
    if !w.run_until(Duration::from_secs(1), World::in_sync) {
        return Err("never connected".into());
    }
    w.admin(0, |e, now, out| e.promote(now, false, out)).map_err(|e| e.to_string())?;
    let mut primary = 0usize;
    let mut crashed_primary = false;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfeed);
    for round in 0..300 {
        // Application load on the Primary.
        if w.alive(primary) && w.role(primary) == Role::Primary {
            for _ in 0..rng.random_range(0..4) {
                let b = rng.random_range(0..BLOCKS - 4);
                if rng.random_bool(0.1) {
                    w.flush(primary);
                } else {
                    w.write(primary, b, rng.random_range(1..4));
                }
            }
        }
        // Faults.
        let roll = rng.random_range(0..1000);
        let secondary = 1 - primary;
        if roll < 15 && w.link_up {
            w.break_link();
        } else if roll < 25 && w.alive(secondary) {
            w.crash(secondary);
            let d = wire::Duration::from_micros(rng.random_range(100..3000));
            w.run_for(d);
            w.boot(secondary);
        } else if roll < 30 && !crashed_primary && w.established() {
            // The single Primary failure: the survivor must hold every completed write.
            w.crash(primary);
            crashed_primary = true;
            w.admin(secondary, |e, now, out| e.promote(now, false, out))
                .map_err(|e| format!("survivor refused promotion: {e}"))?;
            let disk = w.nodes[secondary].disk.clone();
            w.check_contains_completed(&disk).map_err(|e| format!("after Primary crash, survivor: {e}"))?;
            let old = primary;
            primary = secondary;
            w.run_for(Duration::from_micros(rng.random_range(100..2000)));
            w.boot(old);
        }
        for _ in 0..rng.random_range(5..60) {
            if !w.step() {
                break;
            }
            check_one_primary(&w)?;
            try_connect(&mut w);
        }
        // The Primary's own data holds every completed write.
        if round % 25 == 0 && w.alive(primary) {
            let disk = w.nodes[primary].disk.clone();
            if w.status(primary).disk == blockrepl::DiskState::UpToDate {
                w.check_contains_completed(&disk).map_err(|e| format!("Primary: {e}"))?;
            }
        }
    }
    // Healing phase: no faults; everything converges.
    if !w.run_until(Duration::from_secs(10), |w| w.in_sync() && w.engine(primary).status().stats.app_writes > 0) {
        return Err(format!("did not converge: {:?} / {:?}", w.status(0), w.status(1)));
    }
    // Let outstanding application requests finish.
    w.run_for(Duration::from_millis(50));
    let diff: Vec<u64> =
        (0..BLOCKS).filter(|&b| w.nodes[0].disk.block(b) != w.nodes[1].disk.block(b)).take(10).collect();
    if !diff.is_empty() {
        return Err(format!("copies differ after convergence at blocks {diff:?}"));
    }
    let disk = w.nodes[primary].disk.clone();
    w.check_contains_completed(&disk).map_err(|e| format!("after convergence: {e}"))?;
    Ok(())
}

fn try_connect(w: &mut World) {
    w.try_connect();
}

#[test]
fn no_completed_write_is_lost_across_crashes_and_disconnects() {
    let seeds: Vec<u64> = match std::env::var("BLOCKREPL_SEED") {
        Ok(s) => vec![s.parse().expect("BLOCKREPL_SEED is a number")],
        Err(_) => (1..=24).collect(),
    };
    for seed in seeds {
        if let Err(e) = run_seed(seed) {
            panic!(
                "seed {seed}: {e}\nreproduce: BLOCKREPL_SEED={seed} BLOCKREPL_TRACE=1 cargo test -p blockrepl --test it model::"
            );
        }
    }
}
