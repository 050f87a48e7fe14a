//! Runs every Pacemaker scheduler case in the shared corpus and compares Transition Summaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcmk-scheduler-cases"))
}

fn collapse(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The Transition Summary lines of a stored `.summary` file.
fn expected_summary(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("Transition Summary:") {
            inside = true;
            continue;
        }
        if inside {
            if line.trim().is_empty() || line.starts_with("Executing") {
                break;
            }
            out.push(collapse(line.trim_start().trim_start_matches("* ")));
        }
    }
    out
}

fn multiset(lines: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(collapse(l)).or_insert(0) += 1;
    }
    m
}

fn run_case(dir: &Path, name: &str) -> Result<(), String> {
    let xml = std::fs::read_to_string(dir.join("xml").join(format!("{name}.xml"))).map_err(|e| e.to_string())?;
    let summary =
        std::fs::read_to_string(dir.join("summary").join(format!("{name}.summary"))).map_err(|e| e.to_string())?;
    let want = expected_summary(&summary);
    let opts = crm::simulate::SimOptions {
        now: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
        ..Default::default()
    };
    let sim = crm::simulate::simulate(&xml, &opts).map_err(|e| format!("error: {e}"))?;
    let got: Vec<String> = sim.transition.summary.iter().map(|l| collapse(l)).collect();
    if multiset(&got) == multiset(&want) {
        Ok(())
    } else {
        Err(format!("want:\n  {}\ngot:\n  {}", want.join("\n  "), got.join("\n  ")))
    }
}

#[test]
fn corpus_transition_summaries_match_pacemaker() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(dir.join("xml")) else {
        panic!("scheduler corpus not found at {}", dir.display());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".xml")).map(str::to_string))
        .collect();
    names.sort();
    let only = std::env::var("CORPUS_CASE").ok();
    let verbose = std::env::var("CORPUS_VERBOSE").is_ok();
    let mut passed = 0;
    let mut failed = Vec::new();
    for name in &names {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        match std::panic::catch_unwind(|| run_case(&dir, name)) {
            Ok(Ok(())) => passed += 1,
            Ok(Err(diff)) => {
                if verbose || only.is_some() {
                    eprintln!("--- {name}\n{diff}");
                }
                failed.push(name.clone());
            }
            Err(_) => {
                eprintln!("--- {name}: panicked");
                failed.push(name.clone());
            }
        }
    }
    let total = if only.is_some() { 1 } else { names.len() };
    println!("passed {passed} / total {total}");
    if std::env::var("CORPUS_LIST").is_ok() {
        println!("failing: {}", failed.join(" "));
    }
    if only.is_none() {
        let floor: usize = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus-floor.txt"))
            .expect("corpus-floor.txt")
            .trim()
            .parse()
            .expect("floor is a number");
        assert!(passed >= floor, "corpus pass count {passed} fell below the floor {floor}");
    }
}

/// Recurring monitor lines (`R monitor=N on NODE`) of an Executing section, whitespace collapsed.
fn recurring_monitors(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.contains("Resource action:") && l.contains(" monitor="))
        .map(|l| collapse(l.trim_start().trim_start_matches("* ").trim_start_matches("Resource action:")))
        .collect();
    v.sort();
    v
}

/// Secondary check: in how many cases the recurring monitors scheduled match Pacemaker's
/// (instance numbers of anonymous clones ignored). Prints the count and keeps it from falling.
#[test]
fn corpus_recurring_monitors_match_pacemaker() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(dir.join("xml")) else { return };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".xml")).map(str::to_string))
        .collect();
    names.sort();
    let strip = |v: Vec<String>| -> Vec<String> {
        let mut v: Vec<String> = v
            .into_iter()
            .map(|l| l.split(' ').map(|w| w.split(':').next().unwrap_or(w).to_string()).collect::<Vec<_>>().join(" "))
            .collect();
        v.sort();
        v
    };
    let (mut same, mut total, mut differ) = (0, 0, Vec::new());
    for name in &names {
        let (Ok(xml), Ok(summary)) = (
            std::fs::read_to_string(dir.join("xml").join(format!("{name}.xml"))),
            std::fs::read_to_string(dir.join("summary").join(format!("{name}.summary"))),
        ) else {
            continue;
        };
        let want = strip(recurring_monitors(summary.split("Executing Cluster Transition:").nth(1).unwrap_or("")));
        let opts = crm::simulate::SimOptions { now: 1_700_000_000, ..Default::default() };
        let Ok(sim) = crm::simulate::simulate(&xml, &opts) else { continue };
        let got = strip(recurring_monitors(&crm::simulate::format_actions(&sim.transition)));
        total += 1;
        if want == got {
            same += 1;
        } else {
            if std::env::var("CORPUS_MONITORS_VERBOSE").is_ok() {
                eprintln!("--- {name}\n want: {want:?}\n got:  {got:?}");
            }
            differ.push(name.clone());
        }
    }
    println!("recurring monitors match in {same} / {total}");
    if std::env::var("CORPUS_LIST").is_ok() {
        println!("monitors differ: {}", differ.join(" "));
    }
    assert!(same >= 318, "recurring monitors match in only {same} / {total} cases (was 318)");
}
