//! crmctl as an administrator runs it: configuration verbs on a saved CIB file (no daemon),
//! and on a live three-node cluster of real `clusterd` processes on loopback, where the
//! daemons start, move and stop a real OCF resource.

mod cluster;
mod offline;

use std::path::Path;
use std::process::{Command, Output};

/// Runs crmctl with `args`; prints the exchange (shown when a test fails).
pub(crate) fn crmctl(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_crmctl")).args(args).output().expect("crmctl runs");
    eprintln!(
        "$ crmctl {}\n-> {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
