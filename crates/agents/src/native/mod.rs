//! The native agents: `native:builtin:vip`, `filesystem`, `nginx`, `vm` and `volume`.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::{Outcome, ResourceAgent};
use crate::rc::OcfRc;
use crate::schema::ActionSpec;

mod fs;
mod garp;
mod http;
mod mountinfo;
mod netlink;
mod nginx;
mod vip;
mod vm;
mod volume;

/// The provider name of the native agents.
pub(crate) const PROVIDER: &str = "builtin";
/// The native agent types.
pub(crate) const TYPES: [&str; 5] = ["filesystem", "nginx", "vip", "vm", "volume"];

/// Builds the native agent of type `kind`.
pub(crate) fn build(kind: &str) -> Option<Arc<dyn ResourceAgent>> {
    Some(match kind {
        "vip" => Arc::new(vip::Vip),
        "filesystem" => Arc::new(fs::Filesystem),
        "nginx" => Arc::new(nginx::Nginx),
        "vm" => Arc::new(vm::Vm),
        "volume" => Arc::new(volume::Volume),
        _ => return None,
    })
}

/// An `OCF_ERR_CONFIGURED` outcome naming the parameter.
fn configured(param: &str, problem: impl std::fmt::Display) -> Outcome {
    Outcome::fail(OcfRc::ErrConfigured, format!("parameter `{param}`: {problem}"))
}

/// The usual action list with default timeouts (seconds) and a depth-`depth` monitor.
fn op_actions(start_s: u64, stop_s: u64, monitor_interval_s: u64, monitor_s: u64) -> Vec<ActionSpec> {
    let s = Duration::from_secs;
    vec![
        ActionSpec::new("start", s(start_s)),
        ActionSpec::new("stop", s(stop_s)),
        ActionSpec::monitor(s(monitor_s), s(monitor_interval_s), 0),
        ActionSpec::new("validate-all", s(20)),
        ActionSpec::new("meta-data", s(5)),
    ]
}
