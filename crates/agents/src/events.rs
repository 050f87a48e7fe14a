//! The catalogue of events this crate logs, in one place (fields are snake_case and named the
//! same everywhere: `rsc`, `action`, `rc`, …).

use std::fmt::Display;
use std::net::IpAddr;
use std::path::Path;

/// Something worth a log line.
pub(crate) enum Event<'a> {
    /// An operation finished (any agent).
    OpFinished { rsc: &'a str, action: &'a dyn Display, rc: u8, elapsed_ms: u64, timed_out: bool },
    /// The VIP agent added an address.
    AddressAdded { rsc: &'a str, ip: IpAddr, nic: &'a str, prefix_len: u8 },
    /// The VIP agent removed an address.
    AddressRemoved { rsc: &'a str, ip: IpAddr },
    /// The Filesystem agent mounted.
    Mounted { rsc: &'a str, device: &'a str, directory: &'a Path },
    /// The Filesystem agent unmounted.
    Unmounted { rsc: &'a str, directory: &'a Path },
    /// The Filesystem agent signalled a process holding the mount.
    HolderSignalled { rsc: &'a str, pid: i32, comm: &'a str, how: &'a str, signal: &'a dyn Display },
    /// nginx answered after start.
    NginxStarted { rsc: &'a str, pid: i32 },
    /// nginx had to be killed.
    NginxKilled { rsc: &'a str, pid: i32 },
    /// A domain started.
    DomainStarted { rsc: &'a str, domain: &'a str },
    /// A domain stopped (`destroyed`: after a shutdown that did not complete, or forced).
    DomainStopped { rsc: &'a str, domain: &'a str, destroyed: bool },
    /// The volume agent started a replication daemon.
    VolumeDaemonStarted { rsc: &'a str, pid: i32, config: &'a Path },
    /// A replication daemon had to be killed at stop.
    VolumeDaemonKilled { rsc: &'a str, pid: i32 },
}

impl Event<'_> {
    /// Emits the event at its level: state changes at info, forced actions at warn.
    pub(crate) fn log(&self) {
        match self {
            Event::OpFinished { rsc, action, rc, elapsed_ms, timed_out } => {
                if *timed_out {
                    tracing::warn!(rsc, action = %action, rc, elapsed_ms, "agent operation timed out");
                } else {
                    tracing::debug!(rsc, action = %action, rc, elapsed_ms, "agent operation finished");
                }
            }
            Event::AddressAdded { rsc, ip, nic, prefix_len } => {
                tracing::info!(rsc, %ip, nic, prefix_len, "address added");
            }
            Event::AddressRemoved { rsc, ip } => tracing::info!(rsc, %ip, "address removed"),
            Event::Mounted { rsc, device, directory } => {
                tracing::info!(rsc, device, directory = %directory.display(), "mounted");
            }
            Event::Unmounted { rsc, directory } => {
                tracing::info!(rsc, directory = %directory.display(), "unmounted");
            }
            Event::HolderSignalled { rsc, pid, comm, how, signal } => {
                tracing::warn!(rsc, pid, comm, how, signal = %signal, "signalled a process holding the mount");
            }
            Event::NginxStarted { rsc, pid } => tracing::info!(rsc, pid, "nginx started"),
            Event::NginxKilled { rsc, pid } => {
                tracing::warn!(rsc, pid, "nginx killed after graceful stop timed out")
            }
            Event::DomainStarted { rsc, domain } => tracing::info!(rsc, domain, "domain started"),
            Event::DomainStopped { rsc, domain, destroyed } => {
                if *destroyed {
                    tracing::warn!(rsc, domain, "domain destroyed");
                } else {
                    tracing::info!(rsc, domain, "domain shut down");
                }
            }
            Event::VolumeDaemonStarted { rsc, pid, config } => {
                tracing::info!(rsc, pid, config = %config.display(), "blockrepld started");
            }
            Event::VolumeDaemonKilled { rsc, pid } => tracing::warn!(rsc, pid, "blockrepld killed at stop"),
        }
    }
}
