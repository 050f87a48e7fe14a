//! Mutated corpus inputs (meta attribute values, roles, scores, order kinds, op results) parse or
//! fail with an error, and the scheduler never panics on whatever parses.

use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcmk-scheduler-cases"))
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

const BOOLS: &[&str] = &["true", "false", "yes", "no", "1", "0", "on", "off", "maybe"];
const NUMS: &[&str] = &["0", "1", "2", "3", "-1", "INFINITY", "-INFINITY", "100", "10s", "junk"];
const ROLES: &[&str] = &["Started", "Stopped", "Promoted", "Unpromoted", "Master", "Slave", "Unknown", "bogus"];
const SCORES: &[&str] = &["INFINITY", "-INFINITY", "+INFINITY", "0", "100", "-100", "5000", "-1"];

fn values_for(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "resource-stickiness"
        | "migration-threshold"
        | "priority"
        | "clone-max"
        | "clone-node-max"
        | "promoted-max"
        | "promoted-node-max"
        | "clone-min"
        | "master-max"
        | "master-node-max" => NUMS,
        "failure-timeout" | "priority-fencing-delay" => &["0", "10s", "60", "5min", "1h", "junk"],
        "is-managed"
        | "maintenance"
        | "notify"
        | "interleave"
        | "ordered"
        | "globally-unique"
        | "promotable"
        | "fencing-enabled"
        | "stonith-enabled"
        | "symmetric-cluster"
        | "maintenance-mode"
        | "stop-all-resources"
        | "start-failure-is-fatal"
        | "standby"
        | "critical"
        | "stop-removed-resources" => BOOLS,
        "target-role" => ROLES,
        "no-quorum-policy" => &["stop", "freeze", "ignore", "demote", "fence", "suicide", "bogus"],
        "placement-strategy" => &["default", "utilization", "minimal", "balanced", "bogus"],
        "fencing-action" | "stonith-action" => &["reboot", "off", "poweroff", "on", "bogus"],
        "on-fail" => &["ignore", "block", "stop", "restart", "standby", "fence", "demote", "restart-container", "x"],
        "multiple-active" => &["block", "stop_only", "stop_start", "stop_unexpected", "x"],
        "requires" => &["nothing", "quorum", "fencing", "unfencing", "x"],
        _ => return None,
    })
}

/// Replaces the value of every `attr="..."` for which `choose` returns a new value.
fn mutate_attr(xml: &str, attr: &str, rng: &mut Rng, choose: &dyn Fn(&mut Rng) -> Option<String>) -> String {
    let needle = format!(" {attr}=\"");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find(&needle) {
        let start = i + needle.len();
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('"') else { break };
        let old = &rest[start..start + end];
        match choose(rng) {
            Some(v) => out.push_str(&v),
            None => out.push_str(old),
        }
        rest = &rest[start + end..];
    }
    out.push_str(rest);
    out
}

/// Rewrites the `value` of nvpairs whose `name` has a known value set.
fn mutate_nvpairs(xml: &str, rng: &mut Rng) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find("<nvpair") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('>') else { break };
        let tag = &rest[i..i + end];
        let name = tag.split(" name=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("");
        let mut tag = tag.to_string();
        if let Some(vals) = values_for(name)
            && rng.chance(3)
            && let Some(v) = tag.split(" value=\"").nth(1).and_then(|s| s.split('"').next()).map(str::to_string)
        {
            let new = rng.pick(vals);
            tag = tag.replacen(&format!(" value=\"{v}\""), &format!(" value=\"{new}\""), 1);
        }
        out.push_str(&tag);
        rest = &rest[i + end..];
    }
    out.push_str(rest);
    out
}

fn mutate(xml: &str, rng: &mut Rng) -> String {
    let mut x = mutate_nvpairs(xml, rng);
    for attr in ["role", "rsc-role", "with-rsc-role", "first-action", "then-action"] {
        let pool: &[&str] =
            if attr.ends_with("action") { &["start", "stop", "promote", "demote", "monitor", "bogus"] } else { ROLES };
        x = mutate_attr(&x, attr, rng, &|r| r.chance(4).then(|| r.pick(pool).to_string()));
    }
    x = mutate_attr(&x, "score", rng, &|r| r.chance(4).then(|| r.pick(SCORES).to_string()));
    x = mutate_attr(&x, "kind", rng, &|r| {
        r.chance(2).then(|| r.pick(&["Optional", "Mandatory", "Serialize"]).to_string())
    });
    for attr in ["symmetrical", "require-all", "sequential", "influence"] {
        x = mutate_attr(&x, attr, rng, &|r| r.chance(2).then(|| r.pick(BOOLS).to_string()));
    }
    x = mutate_attr(&x, "rc-code", rng, &|r| {
        r.chance(8).then(|| r.pick(&["0", "1", "2", "5", "6", "7", "8", "9", "193"]).to_string())
    });
    x = mutate_attr(&x, "op-status", rng, &|r| {
        r.chance(8).then(|| r.pick(&["0", "-1", "1", "2", "4", "6", "7"]).to_string())
    });
    x = mutate_attr(&x, "node", rng, &|r| r.chance(10).then(|| r.pick(&["nosuchnode", ""]).to_string()));
    x = mutate_attr(&x, "rsc", rng, &|r| r.chance(12).then(|| r.pick(&["nosuchrsc", ""]).to_string()));
    x = x.replace(
        "<rsc_location ",
        if rng.chance(3) { "<rsc_location resource-discovery=\"exclusive\" " } else { "<rsc_location " },
    );
    x = mutate_attr(&x, "have-quorum", rng, &|r| r.chance(3).then(|| r.pick(BOOLS).to_string()));
    x = mutate_attr(&x, "crmd", rng, &|r| r.chance(6).then(|| r.pick(&["online", "offline"]).to_string()));
    x = mutate_attr(&x, "in_ccm", rng, &|r| r.chance(6).then(|| r.pick(&["true", "false"]).to_string()));
    x
}

#[test]
fn mutated_corpus_inputs_never_panic_the_scheduler() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(dir.join("xml")) else {
        panic!("scheduler corpus not found at {}", dir.display());
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let rounds: u64 = std::env::var("FUZZ_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut panics = Vec::new();
    let mut scheduled = 0usize;
    for (k, path) in names.iter().enumerate() {
        let xml = std::fs::read_to_string(path).expect("read case");
        for round in 0..rounds {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((k as u64) << 8 | round));
            let mutated = mutate(&xml, &mut rng);
            let opts = crm::simulate::SimOptions { now: 1_700_000_000, ..Default::default() };
            match std::panic::catch_unwind(|| {
                crm::simulate::simulate(&mutated, &opts).map(|s| s.transition.summary.len())
            }) {
                Ok(Ok(_)) => {
                    scheduled += 1;
                    // Diagnostics: mutated clusters that never come to rest.
                    if std::env::var("FUZZ_STABILITY").is_ok() {
                        let left = crate::stability::left_after_transitions(&mutated, 1_700_000_000, 5);
                        if !left.is_empty() {
                            let dump = format!("/tmp/fuzz-unsettled-{k}-{round}.xml");
                            let _ = std::fs::write(&dump, &mutated);
                            eprintln!("UNSETTLED {} round {round} ({dump}): {left:?}", path.display());
                        }
                    }
                }
                Ok(Err(e)) => {
                    if std::env::var("FUZZ_VERBOSE").is_ok() {
                        eprintln!("ERR {e}");
                    }
                }
                Err(_) => panics.push(format!("{} round {round}", path.display())),
            }
        }
    }
    assert!(panics.is_empty(), "scheduler panicked on:\n{}", panics.join("\n"));
    assert!(scheduled > names.len(), "too few mutated inputs parsed ({scheduled}); the mutator is broken");
}
