//! Operation digests over the corpus: what `crm::digest` computes for each recorded operation
//! against the `op-digest` Pacemaker recorded.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crm::cib::LrmOp;
use crm::digest::{Calculator, DigestCheck};

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcmk-scheduler-cases"))
}

fn base(id: &str) -> &str {
    id.split(':').next().unwrap_or(id)
}

/// Resource names (instance numbers dropped) that the expected Transition Summary acts on,
/// and the recurring monitors (`name interval node`) the expected transition issues.
fn expected_changes(summary: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut named, mut monitors) = (BTreeSet::new(), BTreeSet::new());
    let mut section = "";
    for line in summary.lines() {
        if !line.starts_with(' ') {
            section = line;
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if section.starts_with("Transition Summary") && words.len() > 2 {
            named.insert(base(words[2]).to_string());
        }
        if section.starts_with("Executing") && words.get(1) == Some(&"Resource") {
            // * Resource action: NAME monitor=I on NODE
            if let (Some(name), Some(task), Some(node)) = (words.get(3), words.get(4), words.get(6))
                && let Some(i) = task.strip_prefix("monitor=")
            {
                monitors.insert(format!("{} {i} {node}", base(name)));
            }
        }
    }
    (named, monitors)
}

#[derive(Default)]
struct Tally {
    all: usize,
    all_match: usize,
    kept: usize,
    kept_match: usize,
    kept_exact: usize,
    misses: Vec<String>,
}

fn tally_case(name: &str, t: &mut Tally) {
    let dir = corpus_dir();
    let (Ok(xml), Ok(summary)) = (
        std::fs::read_to_string(dir.join("xml").join(format!("{name}.xml"))),
        std::fs::read_to_string(dir.join("summary").join(format!("{name}.summary"))),
    ) else {
        return;
    };
    let Ok((cib, _)) = crm::cib::parse_cib(&xml) else { return };
    let calc = Calculator::new(&cib);
    let (named, reissued) = expected_changes(&summary);
    let now = crm::schedule(&cib, None, 1_700_000_000);
    // Where each resource (by base name) runs now.
    let mut active: BTreeSet<(String, String)> = BTreeSet::new();
    let mut stack: Vec<&crm::scheduler::RscView> = now.current.resources.iter().collect();
    while let Some(v) = stack.pop() {
        for n in &v.nodes {
            active.insert((base(&v.id).to_string(), n.clone()));
        }
        stack.extend(v.children.iter());
    }
    for ns in &cib.status {
        let Some(node) = ns.uname.as_deref() else { continue };
        for lr in &ns.resources {
            let last_stop = lr
                .ops
                .iter()
                .filter(|o| o.operation == "stop" && o.rc == 0 && o.op_status == 0)
                .map(|o| o.call_id)
                .max()
                .unwrap_or(-1);
            for op in &lr.ops {
                let Some(recorded) = op.attr("op-digest") else { continue };
                let Some(params) = calc.parameters(&lr.id, Some(node), &op.operation, op.interval_ms) else {
                    continue;
                };
                if op.interval_ms > 0 && !configured(&cib, &lr.id, op) {
                    continue;
                }
                let same = crm::digest::check(op, &params, calc.is_fencing(&lr.id)) == DigestCheck::Unchanged;
                t.all += 1;
                t.all_match += usize::from(same);
                // A current record of a resource that runs here (not from before the last
                // stop, not a failure or a stop); known unchanged when Pacemaker also leaves
                // the resource alone (no change in the summary, no monitor issued again here).
                let b = base(&lr.id).to_string();
                let current = active.contains(&(b.clone(), node.to_string()))
                    && op.call_id > last_stop
                    && op.operation != "stop"
                    && !op.id.ends_with("_last_failure_0");
                let left_alone = !named.contains(&b) && !reissued.contains(&format!("{b} {} {node}", op.interval_ms));
                let kept = current && left_alone;
                if current && !same && std::env::var("DIGEST_VERBOSE").is_ok() {
                    eprintln!("{name}: {} on {node} (left alone: {left_alone})", op.id);
                }
                if kept {
                    t.kept += 1;
                    t.kept_match += usize::from(same);
                    t.kept_exact += usize::from(crm::digest::digest(&params) == recorded);
                    if !same {
                        t.misses.push(format!("{name}: {} on {node}: recorded {recorded}", op.id));
                    }
                }
            }
        }
    }
}

fn configured(cib: &crm::cib::Cib, id: &str, op: &LrmOp) -> bool {
    fn find<'a>(rs: &'a [crm::cib::Resource], id: &str) -> Option<&'a crm::cib::Resource> {
        rs.iter().find_map(|r| match &r.kind {
            _ if r.id == id => Some(r),
            crm::cib::ResourceKind::Group { members } => find(members, id),
            crm::cib::ResourceKind::Clone { child, .. } => find(std::slice::from_ref(child), id),
            _ => None,
        })
    }
    find(&cib.config.resources, base(id))
        .is_some_and(|r| r.ops.iter().any(|o| o.name == op.operation && o.interval_ms == op.interval_ms))
}

/// Every corpus case: the digest computed from a resource's configuration now is compared
/// with each recorded `op-digest`. Where the parameters are known unchanged (Pacemaker left
/// the resource alone where it runs), every digest must match; the overall figure (records
/// of resources that moved or stopped since, or whose definition did change, included) is
/// printed for information.
#[test]
fn recorded_digests_match_the_computed_ones_where_nothing_changed() {
    let Ok(entries) = std::fs::read_dir(corpus_dir().join("xml")) else {
        panic!("scheduler corpus not found at {}", corpus_dir().display());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".xml")).map(str::to_string))
        .collect();
    names.sort();
    let mut t = Tally::default();
    for name in &names {
        tally_case(name, &mut t);
    }
    println!(
        "digests: known unchanged {} / {} match ({} by op-digest alone); all records {} / {} match",
        t.kept_match, t.kept, t.kept_exact, t.all_match, t.all
    );
    assert!(t.kept > 1000, "too few records compared: {}", t.kept);
    assert!(t.misses.is_empty(), "digests differ where nothing changed:\n{}", t.misses.join("\n"));
}
