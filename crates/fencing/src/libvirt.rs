//! Native libvirt agent: `virsh -c URI` (local or remote hypervisor) run as a child process.
//!
//! Exec-ing virsh keeps the crate free of a C library binding and its licence, and virsh's
//! command language is a stable interface. Every power change and its confirmation run in one
//! virsh invocation (`destroy D; domstate D`), so they share one connection: this is what
//! makes the mock `test:///` driver (whose state lives per connection) and remote URIs behave
//! the same. The state is read after the command, never assumed from virsh's exit code.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::agent::{AgentError, FenceAgent, Outcome, Plug, PowerState};
use crate::child::{self, ChildError};
use crate::metadata::{Metadata, fencer_parameters, param};
use crate::params::Params;

/// The native libvirt agent.
#[derive(Debug)]
pub struct LibvirtAgent {
    uri: String,
    virsh: PathBuf,
    default_plug: Option<String>,
}

const KNOWN: &[&str] = &["uri", "virsh_path"];

impl LibvirtAgent {
    /// Builds the agent: `uri` (e.g. `qemu+ssh://root@host/system`), optional `plug` (the
    /// domain when none is given per action), optional `virsh_path`.
    pub fn from_params(p: &Params) -> Result<LibvirtAgent, AgentError> {
        p.check_known("libvirt", KNOWN)?;
        let uri = p.require(&["uri"], "hypervisor URI, e.g. qemu:///system")?;
        if !uri.contains(':') || uri.contains(char::is_whitespace) {
            return Err(AgentError::Config {
                field: "uri".into(),
                problem: format!("`{uri}` is not a libvirt URI (e.g. qemu+ssh://root@host/system)"),
            });
        }
        let default_plug = p.get(&["plug", "port"]).map(str::to_owned);
        if let Some(d) = &default_plug {
            check_domain(d)?;
        }
        Ok(LibvirtAgent {
            uri: uri.to_owned(),
            virsh: PathBuf::from(p.get(&["virsh_path"]).unwrap_or("virsh")),
            default_plug,
        })
    }

    /// The built-in metadata.
    pub fn describe() -> Metadata {
        let mut parameters = vec![
            param(
                "uri",
                true,
                "string",
                None,
                "Hypervisor URI, e.g. qemu+ssh://root@host/system",
            ),
            param(
                "plug",
                false,
                "string",
                None,
                "Domain name, when not given per action",
            ),
            param(
                "virsh_path",
                false,
                "string",
                Some("virsh"),
                "The virsh binary",
            ),
        ];
        parameters.extend(fencer_parameters());
        Metadata {
            name: "libvirt".into(),
            shortdesc: "Native libvirt fencing (virsh destroy/start)".into(),
            longdesc: "Fences a virtual machine by destroying its domain on the hypervisor and confirms the domain is shut off. Uses virsh -c URI, so any libvirt transport (ssh, tls, unix) works.".into(),
            parameters,
            actions: ["on", "off", "reboot", "status", "list", "monitor", "metadata"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn domain<'a>(&'a self, plug: Option<&'a str>) -> Result<&'a str, AgentError> {
        let d = plug
            .or(self.default_plug.as_deref())
            .ok_or_else(|| AgentError::Config {
                field: "plug".into(),
                problem: "no domain given: set plug=<domain name>".into(),
            })?;
        check_domain(d)?;
        Ok(d)
    }

    /// Runs one virsh command line; maps spawn failures, timeouts and connection errors.
    fn virsh(&self, script: &str, deadline: Instant) -> Result<child::ChildOutput, AgentError> {
        let mut cmd = Command::new(&self.virsh);
        cmd.args(["-q", "-c", &self.uri, script]);
        match child::run(&mut cmd, None, deadline) {
            Ok(out) => {
                if out.stderr.contains("failed to connect to the hypervisor")
                    || out.stderr.contains("Failed to connect")
                {
                    return Err(AgentError::Unreachable {
                        device: self.uri.clone(),
                        detail: child::last_line(&out.stderr),
                    });
                }
                if out.stderr.contains("authentication failed") {
                    return Err(AgentError::Auth {
                        device: self.uri.clone(),
                        detail: child::last_line(&out.stderr),
                    });
                }
                Ok(out)
            }
            Err(ChildError::Spawn(e)) => Err(AgentError::Config {
                field: "virsh_path".into(),
                problem: format!(
                    "cannot run {}: {e} (install libvirt-clients)",
                    self.virsh.display()
                ),
            }),
            Err(ChildError::Timeout { waited, stderr }) => Err(AgentError::Timeout {
                device: self.uri.clone(),
                what: format!("virsh `{script}` ({})", child::last_line(&stderr)),
                waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Runs `<command> D; domstate D` and reads the state printed last.
    fn change(
        &self,
        command: &str,
        plug: Option<&str>,
        want: PowerState,
        deadline: Instant,
    ) -> Outcome<()> {
        let d = match self.domain(plug) {
            Ok(d) => d,
            Err(e) => return Outcome::Failed(e),
        };
        let out = match self.virsh(&format!("{command} {d}; domstate {d}"), deadline) {
            Ok(o) => o,
            // The command may have been executed before the timeout hit.
            Err(e @ AgentError::Timeout { .. }) => return Outcome::Unknown(e),
            Err(e) => return Outcome::Failed(e),
        };
        match parse_state(&out.stdout) {
            Some(s) if s == want => Outcome::Done(()),
            Some(seen) => Outcome::Failed(AgentError::NotConfirmed {
                device: self.uri.clone(),
                action: if want == PowerState::Off {
                    crate::Action::Off
                } else {
                    crate::Action::On
                },
                seen,
                waited_ms: 0,
            }),
            None => Outcome::from(self.classify(d, &out)),
        }
    }

    fn classify(&self, d: &str, out: &child::ChildOutput) -> AgentError {
        if out.stderr.contains("failed to get domain") || out.stderr.contains("Domain not found") {
            AgentError::NoSuchPlug {
                device: self.uri.clone(),
                plug: d.to_owned(),
            }
        } else if out.code != 0 {
            AgentError::Refused {
                device: self.uri.clone(),
                what: format!("domain {d}"),
                detail: child::last_line(&out.stderr),
            }
        } else {
            AgentError::Protocol {
                device: self.uri.clone(),
                detail: format!(
                    "no domain state in virsh output `{}`",
                    child::last_line(&out.stdout)
                ),
            }
        }
    }
}

/// Domain names we pass through virsh's command parser: no quoting or separators.
fn check_domain(d: &str) -> Result<(), AgentError> {
    if d.is_empty()
        || d.len() > 200
        || !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+:@".contains(&b))
    {
        return Err(AgentError::Config {
            field: "plug".into(),
            problem: format!(
                "`{d}` is not a domain name this agent accepts (letters, digits, . _ - + : @)"
            ),
        });
    }
    Ok(())
}

/// The state printed by the last `domstate`: only "shut off" counts as off (a paused or
/// crashed-but-preserved domain still holds its resources).
fn parse_state(stdout: &str) -> Option<PowerState> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    match line {
        "shut off" => Some(PowerState::Off),
        "running" | "idle" | "paused" | "in shutdown" | "crashed" | "pmsuspended" | "blocked" => {
            Some(PowerState::On)
        }
        _ => None,
    }
}

impl FenceAgent for LibvirtAgent {
    fn agent_type(&self) -> &str {
        "libvirt"
    }

    fn off(&self, plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        self.change("destroy", plug, PowerState::Off, deadline)
    }

    fn on(&self, plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        self.change("start", plug, PowerState::On, deadline)
    }

    fn status(&self, plug: Option<&str>, deadline: Instant) -> Outcome<PowerState> {
        let d = match self.domain(plug) {
            Ok(d) => d,
            Err(e) => return Outcome::Failed(e),
        };
        match self.virsh(&format!("domstate {d}"), deadline) {
            Ok(out) => match parse_state(&out.stdout) {
                Some(s) => Outcome::Done(s),
                None => Outcome::from(self.classify(d, &out)),
            },
            Err(e @ AgentError::Timeout { .. }) => Outcome::Unknown(e),
            Err(e) => Outcome::Failed(e),
        }
    }

    fn list(&self, deadline: Instant) -> Outcome<Vec<Plug>> {
        let out = match self.virsh("list --all", deadline) {
            Ok(o) if o.code == 0 => o,
            Ok(o) => {
                return Outcome::Failed(AgentError::Refused {
                    device: self.uri.clone(),
                    what: "list".into(),
                    detail: child::last_line(&o.stderr),
                });
            }
            Err(e) => return Outcome::from(e),
        };
        let mut plugs = Vec::new();
        for line in out.stdout.lines() {
            let mut f = line.split_whitespace();
            let (Some(_id), Some(name)) = (f.next(), f.next()) else {
                continue;
            };
            let state = f.collect::<Vec<_>>().join(" ");
            plugs.push(Plug {
                id: name.to_owned(),
                alias: None,
                power: parse_state(&state),
            });
        }
        Outcome::Done(plugs)
    }

    fn monitor(&self, deadline: Instant) -> Outcome<()> {
        match self.virsh("list --all --name", deadline) {
            Ok(o) if o.code == 0 => Outcome::Done(()),
            Ok(o) => Outcome::Failed(AgentError::Refused {
                device: self.uri.clone(),
                what: "list".into(),
                detail: child::last_line(&o.stderr),
            }),
            Err(e) => Outcome::from(e),
        }
    }

    fn metadata(&self, _deadline: Instant) -> Outcome<Metadata> {
        Outcome::Done(Self::describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shut_off_counts_as_off() {
        assert_eq!(parse_state("\nshut off\n"), Some(PowerState::Off));
        assert_eq!(parse_state("shut off\nrunning\n"), Some(PowerState::On));
        assert_eq!(parse_state("paused"), Some(PowerState::On));
        assert_eq!(parse_state("Domain 'x' destroyed"), None);
        assert_eq!(parse_state(""), None);
    }

    #[test]
    fn domain_names_cannot_inject_virsh_commands() {
        assert!(check_domain("node1").is_ok());
        assert!(check_domain("a; destroy b").is_err());
        assert!(check_domain("a'b").is_err());
        assert!(check_domain("").is_err());
    }
}
