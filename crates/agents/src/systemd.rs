//! `systemd:UNIT` agents through `systemctl`, only where systemd is the running init.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::agent::{Op, Outcome, ResourceAgent};
use crate::error::AgentError;
use crate::proc;
use crate::rc::OcfRc;
use crate::schema::{ActionSpec, Metadata};

/// True when systemd manages this machine (`/run/systemd/system` exists).
pub fn available() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// A systemd unit as a resource.
#[derive(Debug)]
pub struct SystemdAgent {
    unit: String,
}

impl SystemdAgent {
    /// The unit `unit` (`.service` is added when no suffix is given). Fails when systemd is not
    /// the running init.
    pub fn new(unit: &str) -> Result<SystemdAgent, AgentError> {
        if !available() {
            return Err(AgentError::NotFound {
                name: format!("systemd:{unit}"),
                candidates: vec!["(systemd is not running on this machine)".to_owned()],
            });
        }
        let unit = if unit.contains('.') {
            unit.to_owned()
        } else {
            format!("{unit}.service")
        };
        Ok(SystemdAgent { unit })
    }

    fn systemctl(&self, op: &Op<'_>, verb: &str) -> Result<proc::Ran, Outcome> {
        let mut cmd = Command::new("systemctl");
        cmd.arg(verb).arg(&self.unit);
        proc::run(&mut cmd, op.deadline)
            .map_err(|e| Outcome::fail(OcfRc::ErrInstalled, format!("cannot run systemctl: {e}")))
    }

    fn is_active(&self, op: &Op<'_>) -> Outcome {
        match self.systemctl(op, "is-active") {
            Err(o) => o,
            Ok(r) => match r.stdout.trim() {
                "active" | "reloading" | "activating" => Outcome::ok(),
                "failed" => Outcome::fail(OcfRc::ErrGeneric, format!("{} has failed", self.unit)),
                _ => Outcome::not_running(),
            },
        }
    }
}

impl ResourceAgent for SystemdAgent {
    fn meta_data(&self) -> Result<Metadata, AgentError> {
        Ok(Metadata {
            name: self.unit.clone(),
            version: "1.0".into(),
            shortdesc: format!("systemd unit {}", self.unit),
            longdesc: "Started and stopped with systemctl; the unit must not be enabled.".into(),
            params: Vec::new(),
            actions: vec![
                ActionSpec::new("start", Duration::from_secs(100)),
                ActionSpec::new("stop", Duration::from_secs(100)),
                ActionSpec::monitor(Duration::from_secs(100), Duration::from_secs(60), 0),
                ActionSpec::new("meta-data", Duration::from_secs(5)),
            ],
        })
    }

    fn start(&self, op: &Op<'_>) -> Outcome {
        match self.systemctl(op, "start") {
            Err(o) => o,
            Ok(r) if r.success() => self.is_active(op),
            Ok(r) => Outcome::fail(OcfRc::ErrGeneric, r.describe()),
        }
    }

    fn stop(&self, op: &Op<'_>) -> Outcome {
        match self.systemctl(op, "stop") {
            Err(o) => o,
            Ok(r) if r.success() => Outcome::ok(),
            Ok(r) => Outcome::fail(OcfRc::ErrGeneric, r.describe()),
        }
    }

    fn monitor(&self, op: &Op<'_>) -> Outcome {
        self.is_active(op)
    }
}
