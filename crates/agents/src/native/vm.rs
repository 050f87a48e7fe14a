//! The VM agent: a libvirt domain defined from XML, started, shut down with a timeout then
//! destroyed, and monitored by its state, all through `virsh` (a stable, dependency-free
//! interface; one short-lived connection per call).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{configured, op_actions};
use crate::agent::{Op, Outcome, ResourceAgent};
use crate::error::AgentError;
use crate::events::Event;
use crate::proc;
use crate::rc::OcfRc;
use crate::schema::{Metadata, ParamSpec, ParamType};

/// The VM agent.
#[derive(Debug, Default)]
pub(crate) struct Vm;

struct Spec {
    config: PathBuf,
    name: String,
    uri: String,
    virsh: String,
}

/// A domain's state as `virsh domstate` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Undefined,
    Running,
    Paused,
    ShuttingDown,
    ShutOff,
    Crashed,
    Other(String),
}

fn domain_name(xml: &str) -> Result<String, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not well-formed XML: {e}"))?;
    let root = doc.root_element();
    if !root.has_tag_name("domain") {
        return Err(format!(
            "root element is <{}>, not <domain>",
            root.tag_name().name()
        ));
    }
    root.children()
        .find(|c| c.has_tag_name("name"))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the domain has no <name>".to_owned())
}

fn spec(op: &Op<'_>) -> Result<Spec, Outcome> {
    let config = PathBuf::from(op.params.str("config").unwrap_or_default());
    let xml = std::fs::read_to_string(&config)
        .map_err(|e| configured("config", format!("cannot read {}: {e}", config.display())))?;
    let name = domain_name(&xml)
        .map_err(|e| configured("config", format!("{}: {e}", config.display())))?;
    Ok(Spec {
        config,
        name,
        uri: op
            .params
            .str("hypervisor")
            .unwrap_or("qemu:///system")
            .to_owned(),
        virsh: op.params.str("virsh").unwrap_or("virsh").to_owned(),
    })
}

fn virsh(op: &Op<'_>, s: &Spec, args: &[&str]) -> Result<proc::Ran, Outcome> {
    let mut cmd = Command::new(&s.virsh);
    cmd.arg("-q").arg("-c").arg(&s.uri).args(args);
    let ran = proc::run(&mut cmd, op.deadline)
        .map_err(|e| Outcome::fail(OcfRc::ErrInstalled, format!("cannot run {}: {e}", s.virsh)))?;
    if ran.timed_out {
        return Err(Outcome::timed_out(format!(
            "virsh {} did not finish in time",
            args.join(" ")
        )));
    }
    Ok(ran)
}

fn state(op: &Op<'_>, s: &Spec) -> Result<State, Outcome> {
    let ran = virsh(op, s, &["domstate", &s.name])?;
    if !ran.success() {
        let err = ran.stderr.to_ascii_lowercase();
        if err.contains("failed to get domain") || err.contains("domain not found") {
            return Ok(State::Undefined);
        }
        return Err(Outcome::fail(
            OcfRc::ErrGeneric,
            format!(
                "cannot query domain {} on {}: {}",
                s.name,
                s.uri,
                ran.describe()
            ),
        ));
    }
    Ok(match ran.stdout.trim() {
        "running" | "idle" | "blocked" => State::Running,
        "paused" => State::Paused,
        "in shutdown" => State::ShuttingDown,
        "shut off" => State::ShutOff,
        "crashed" => State::Crashed,
        other => State::Other(other.to_owned()),
    })
}

fn must(op: &Op<'_>, s: &Spec, args: &[&str]) -> Result<(), Outcome> {
    let ran = virsh(op, s, args)?;
    if ran.success() {
        Ok(())
    } else {
        Err(Outcome::fail(
            OcfRc::ErrGeneric,
            format!("virsh {} failed: {}", args.join(" "), ran.describe()),
        ))
    }
}

impl Vm {
    fn do_start(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        match state(op, &s)? {
            State::Running | State::ShuttingDown => return Ok(Outcome::ok()),
            State::Paused => {
                must(op, &s, &["resume", &s.name])?;
                return Ok(Outcome::ok());
            }
            State::Undefined => {
                let config = s.config.to_string_lossy().into_owned();
                must(op, &s, &["define", &config])?;
            }
            State::ShutOff | State::Crashed | State::Other(_) => {}
        }
        must(op, &s, &["start", &s.name])?;
        match state(op, &s)? {
            State::Running => {
                Event::DomainStarted {
                    rsc: op.instance,
                    domain: &s.name,
                }
                .log();
                Ok(Outcome::ok())
            }
            other => Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!("domain {} is {other:?} right after start", s.name),
            )),
        }
    }

    fn do_stop(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        match state(op, &s)? {
            State::Undefined | State::ShutOff => return Ok(Outcome::ok()),
            State::Crashed => {
                let _ = virsh(op, &s, &["destroy", &s.name]);
                return Ok(Outcome::ok());
            }
            _ => {}
        }
        let mut reason = None;
        if !op.params.flag("force_stop") {
            // ACPI shutdown first, for `shutdown_timeout` or two thirds of the time left.
            let share = op.remaining() * 2 / 3;
            let budget = op
                .params
                .duration("shutdown_timeout")
                .map_or(share, |d| d.min(share));
            let until = Instant::now() + budget;
            let _ = virsh(op, &s, &["shutdown", &s.name]);
            loop {
                if matches!(state(op, &s)?, State::ShutOff | State::Undefined) {
                    Event::DomainStopped {
                        rsc: op.instance,
                        domain: &s.name,
                        destroyed: false,
                    }
                    .log();
                    return Ok(Outcome::ok());
                }
                if !proc::pause(Duration::from_millis(100), until) {
                    break;
                }
            }
            reason = Some(format!(
                "guest did not shut down within {:.1}s; destroyed",
                budget.as_secs_f64()
            ));
        }
        let ran = virsh(op, &s, &["destroy", &s.name])?;
        match state(op, &s)? {
            State::ShutOff | State::Undefined => {
                Event::DomainStopped {
                    rsc: op.instance,
                    domain: &s.name,
                    destroyed: true,
                }
                .log();
                Ok(reason.map_or_else(Outcome::ok, |r| Outcome::ok().with_reason(r)))
            }
            other => Err(Outcome::fail(
                OcfRc::ErrGeneric,
                format!(
                    "domain {} is still {other:?} after destroy: {}",
                    s.name,
                    ran.describe()
                ),
            )),
        }
    }

    fn do_monitor(&self, op: &Op<'_>) -> Result<Outcome, Outcome> {
        let s = spec(op)?;
        Ok(match state(op, &s)? {
            State::Running | State::ShuttingDown => Outcome::ok(),
            State::Paused => Outcome::ok().with_reason("domain is paused"),
            State::Undefined | State::ShutOff => Outcome::not_running(),
            State::Crashed => {
                Outcome::fail(OcfRc::ErrGeneric, format!("domain {} crashed", s.name))
            }
            State::Other(st) => Outcome::fail(
                OcfRc::ErrGeneric,
                format!("domain {} is in state `{st}`", s.name),
            ),
        })
    }
}

impl ResourceAgent for Vm {
    fn meta_data(&self) -> Result<Metadata, AgentError> {
        Ok(Metadata {
            name: "vm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            shortdesc: "libvirt virtual machine".into(),
            longdesc: "Defines a libvirt domain from its XML when needed, starts it, shuts it down (ACPI) with a timeout and then destroys it, and monitors its state. Uses virsh. Parameter names follow VirtualDomain.".into(),
            params: vec![
                ParamSpec::new("config", ParamType::String, "Path to the domain XML").required().unique(),
                ParamSpec::new("hypervisor", ParamType::String, "libvirt connection URI").default("qemu:///system"),
                ParamSpec::new("force_stop", ParamType::Boolean, "Destroy at once instead of shutting down").default("false"),
                ParamSpec::new("shutdown_timeout", ParamType::Duration, "Longest wait for a clean shutdown before destroy").long("At most two thirds of the stop timeout."),
                ParamSpec::new("virsh", ParamType::String, "The virsh binary").default("virsh"),
            ],
            actions: op_actions(90, 90, 10, 30),
        })
    }

    fn validate(&self, op: &Op<'_>) -> Outcome {
        match spec(op) {
            Err(o) => o,
            Ok(s) => match Command::new(&s.virsh).arg("--version").output() {
                Ok(o) if o.status.success() => Outcome::ok(),
                _ => Outcome::fail(
                    OcfRc::ErrInstalled,
                    format!("parameter `virsh`: cannot run {}", s.virsh),
                ),
            },
        }
    }

    fn start(&self, op: &Op<'_>) -> Outcome {
        self.do_start(op).unwrap_or_else(|o| o)
    }

    fn stop(&self, op: &Op<'_>) -> Outcome {
        self.do_stop(op).unwrap_or_else(|o| o)
    }

    fn monitor(&self, op: &Op<'_>) -> Outcome {
        self.do_monitor(op).unwrap_or_else(|o| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_name_comes_from_the_xml() {
        assert_eq!(
            domain_name("<domain type='test'><name> n1 </name></domain>"),
            Ok("n1".into())
        );
        assert!(domain_name("<domain/>").unwrap_err().contains("no <name>"));
        assert!(domain_name("<node/>").unwrap_err().contains("not <domain>"));
        assert!(domain_name("<domain").is_err());
    }
}
