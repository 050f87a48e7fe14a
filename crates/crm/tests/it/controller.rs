//! Every transition the scheduler produces for the corpus can be executed to completion by the
//! controller when every action succeeds: no ordering cycle among executable actions, and each
//! action is dispatched only after all of its predecessors completed.

use std::path::PathBuf;

use crm::controller::{Dispatch, GraphRun, Outcome, RunEnd};
use wire::{Duration, Instant};

#[test]
fn every_corpus_transition_runs_to_completion_in_order() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcmk-scheduler-cases/xml"));
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("corpus present").flatten().map(|e| e.path()).collect();
    files.sort();
    let mut problems = Vec::new();
    let mut ran = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        let Ok((cib, _)) = crm::cib::parse_cib(&text) else { continue };
        let t = crm::schedule(&cib, None, 0);
        let mut run = GraphRun::new(&t, Duration::from_secs(60));
        let mut done = vec![false; t.actions.len()];
        let mut out = Vec::new();
        run.poll(Instant::ZERO, &mut out);
        while let Some(d) = out.pop() {
            let action = match d {
                Dispatch::Execute { action, .. } | Dispatch::Fence { action, .. } => action,
            };
            for e in &t.edges {
                let runs = |i: usize| !t.actions[i].optional && t.actions[i].runnable;
                if e.then == action && runs(e.first) && !t.actions[e.first].pseudo && !done[e.first] {
                    problems.push(format!("{}: action {action} dispatched before {}", path.display(), e.first));
                }
            }
            done[action] = true;
            run.result(Instant::ZERO, action, Outcome::Ok, &mut out);
        }
        match run.ended() {
            Some(RunEnd::Complete) => ran += 1,
            other => problems.push(format!("{}: ended {other:?}", path.display())),
        }
    }
    assert!(ran > 300, "only {ran} transitions ran");
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
