//! Tidy rules that keep the architecture true.
//!
//! Sans-IO cores (membership, quorum, crm, the blockrepl engine, and the `wire` vocabulary
//! they share) must not depend on tokio, quinn, nix or sysinfo, and must not read the OS clock
//! or a global RNG: time and randomness are handed to them, so the simulator can drive them.

use std::path::{Path, PathBuf};

const CORE_CRATES: &[&str] = &["wire", "membership", "quorum", "crm", "blockrepl"];
const FORBIDDEN_DEPS: &[&str] = &["tokio", "quinn", "nix", "sysinfo", "socket2", "mio", "async-std"];
const FORBIDDEN_CALLS: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "rand::rng()",
    "rand::random",
    "from_entropy",
    "from_os_rng",
    "OsRng",
    "std::thread::spawn",
    "std::thread::sleep",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names in the `[dependencies]` table (not dev-dependencies: tests may use anything).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]" || (line.starts_with("[target.") && line.ends_with(".dependencies]"));
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            let name = name.trim().trim_matches('"');
            if !name.is_empty() && !name.starts_with('#') {
                names.push(name.split('.').next().unwrap_or(name).to_string());
            }
        }
    }
    names
}

/// Code outside `#[cfg(test)]` modules: cut each file at its first `#[cfg(test)]`, the house
/// convention being a test module at the end of the file.
fn non_test_code(source: &str) -> &str {
    source.find("#[cfg(test)]").map_or(source, |i| &source[..i])
}

#[test]
fn core_crates_stay_sans_io() {
    let root = workspace_root();
    let mut problems = Vec::new();
    let mut checked = 0;
    for name in CORE_CRATES {
        let dir = root.join("crates").join(name);
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        checked += 1;
        for dep in normal_dependencies(&manifest) {
            if FORBIDDEN_DEPS.contains(&dep.as_str()) {
                problems.push(format!(
                    "crates/{name}/Cargo.toml: core crate depends on `{dep}`; move IO to a driver crate"
                ));
            }
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            for (i, line) in non_test_code(&source).lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for call in FORBIDDEN_CALLS {
                    if line.contains(call) {
                        problems.push(format!(
                            "{}:{}: core code calls `{call}`; take `now`/a seed as an argument instead",
                            file.strip_prefix(&root).unwrap_or(&file).display(),
                            i + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 1, "no core crate found under {}", root.display());
    assert!(problems.is_empty(), "sans-IO rule broken:\n{}", problems.join("\n"));
}

#[test]
fn the_dependency_parser_sees_through_formats() {
    let m = "[package]\nname = \"x\"\n[dependencies]\ntokio = { workspace = true }\nserde.workspace = true\n\"quinn\" = \"0.11\"\n[dev-dependencies]\nnix = \"1\"\n";
    assert_eq!(normal_dependencies(m), vec!["tokio", "serde", "quinn"]);
}

#[test]
fn test_modules_are_exempt_but_code_is_not() {
    let src = "fn f() { let t = now; }\n#[cfg(test)]\nmod tests { fn g() { std::time::Instant::now(); } }";
    assert!(!non_test_code(src).contains("Instant::now"));
}
