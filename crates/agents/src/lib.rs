//! Resource agents: the [`ResourceAgent`] trait, native agents (VIP, Filesystem, nginx, VM,
//! replicated volume), a runner for OCF scripts and systemd units, and (feature `testing`) a
//! conformance suite.
//!
//! - [`execute`] runs one [`Request`] against any agent: parameters are checked against the
//!   agent's own schema ([`Metadata`]), the action is dispatched with a deadline, and the result
//!   is an [`OpResult`] with an [`OcfRc`], an exit reason, timing and a timed-out flag.
//! - [`Registry`] resolves `class:provider:type` names (`native:builtin:vip`,
//!   `ocf:heartbeat:IPaddr2`, `systemd:nginx`) and short names when unambiguous.
//! - Agents are blocking; an async executor calls [`execute`] with `spawn_blocking`.

mod agent;
mod error;
mod events;
mod native;
mod ocf;
mod ocf_exec;
mod proc;
mod rc;
mod registry;
mod schema;
mod systemd;
#[cfg(feature = "testing")]
pub mod testing;

/// Pacemaker's INFINITY score (what `crm_master -v INFINITY` means).
pub const SCORE_INFINITY: i64 = 1_000_000;

pub use agent::{Action, DEFAULT_TIMEOUT, ExecStatus, Op, OpResult, Outcome, Request, ResourceAgent, execute};
pub use error::AgentError;
pub use ocf::{OCF_ROOT, OcfAgent, discover as discover_ocf};
pub use ocf_exec::{ScriptOutput, run_as_ocf_script};
pub use rc::{OcfRc, Recovery};
pub use registry::{AgentName, AgentTable, Registry};
pub use schema::{
    ActionSpec, Metadata, MetadataError, ParamError, ParamSpec, ParamType, Params, Value, parse_duration,
};
pub use systemd::{SystemdAgent, available as systemd_available};
