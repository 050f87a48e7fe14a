//! Debug helper: prints actions of a scheduled CIB.
fn main() {
    let path = std::env::args().nth(1).expect("path");
    let xml = std::fs::read_to_string(path).expect("read");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let sim = crm::simulate::simulate(&xml, &crm::simulate::SimOptions { now, ..Default::default() }).expect("sim");
    let t = &sim.transition;
    for a in &t.actions {
        println!(
            "{:3} {:>20} {:8} node={:?} opt={} run={} pseudo={} reason={:?}",
            a.id,
            a.rsc.map(|r| t.resource_name(r)).unwrap_or(""),
            a.kind.task(),
            a.node.map(|n| t.node_name(n)),
            a.optional,
            a.runnable,
            a.pseudo,
            a.reason
        );
    }
    for (r, n, role) in &t.placement {
        println!("place {r} {n:?} {role:?}");
    }
    for l in &t.summary {
        println!("  * {l}");
    }
}
