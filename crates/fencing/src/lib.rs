//! Fencing: power a lost node off, with confirmation, before its resources are recovered.
//!
//! - [`FenceAgent`]: the device-driver trait (off, on, reboot, status, list, monitor,
//!   metadata). Results are [`Outcome::Done`] only on the device's confirmation,
//!   [`Outcome::Failed`] when the action certainly did not happen, and [`Outcome::Unknown`]
//!   otherwise; [`execute`] adds retries within a timeout and [`spawn`] runs an action on its
//!   own thread behind a runtime-agnostic future.
//! - Native agents: [`IpmiAgent`] (RMCP+ lanplus), [`LibvirtAgent`] (`virsh -c URI`),
//!   [`Ec2Agent`] (SigV4-signed EC2 Query API); [`ScriptAgent`] runs any fence-agents script.
//!   [`build_agent`] picks one from device parameters, [`describe`] prints its metadata.
//! - [`fencer`]: the sans-IO decision logic (host maps, topology levels, delays, the
//!   self-fencing guard) and [`history`], the persisted fence history.
//!
//! This crate must never depend on an async runtime, nor on the daemon: the daemon depends
//! on it. (tokio's `sync` feature arrives transitively through `aws-credential-types`; no
//! runtime, reactor or timer does, and nothing here names tokio.) Secrets travel as
//! [`Secret`] and are never logged.

mod agent;
mod child;
mod device;
mod ec2;
pub mod fencer;
pub mod history;
mod ipmi;
mod libvirt;
mod metadata;
mod params;
mod script;
mod secret;
pub mod testing;

pub use agent::{
    Action, ActionHandle, AgentError, Done, FenceAgent, Outcome, Plug, PowerState, Report, Request,
    SUPERVISOR_GRACE, execute, spawn,
};
pub use device::{HandRun, NATIVE_AGENTS, build_agent, describe, request_for, run_by_hand};
pub use ec2::Ec2Agent;
pub use ipmi::IpmiAgent;
pub use libvirt::LibvirtAgent;
pub use metadata::{Metadata, MetadataError, Parameter};
pub use params::{Params, is_secret_key, parse_duration};
pub use script::ScriptAgent;
pub use secret::Secret;
