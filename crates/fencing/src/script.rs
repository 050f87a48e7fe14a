//! Runner for any fence-agents script (`fence_ipmilan`, `fence_virsh`, …).
//!
//! Options go on stdin as `key=value` lines (never on the command line, where other users
//! could read passwords in `ps`). Exit codes follow fence-agents: 0 success; for `status`,
//! 0 = on and 2 = off; anything else is an error. A non-zero exit of a power action is
//! `Unknown` (the script may have sent the command before failing), except when its message
//! says it never logged in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::agent::{Action, AgentError, FenceAgent, Outcome, Plug, PowerState};
use crate::child::{self, ChildError};
use crate::metadata::Metadata;
use crate::params::{Params, is_secret_key};

/// Where fence-agents scripts are looked up when given by name.
const SEARCH_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"];

/// A fence-agents script with its options.
#[derive(Debug)]
pub struct ScriptAgent {
    name: String,
    path: PathBuf,
    options: Params,
}

/// Finds a script: an absolute path, or a `fence_*` name in the usual directories.
pub(crate) fn locate(agent: &str) -> Result<PathBuf, AgentError> {
    let bad = |problem: String| AgentError::Config {
        field: "agent".into(),
        problem,
    };
    if agent.starts_with('/') {
        let p = PathBuf::from(agent);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(bad(format!("{agent} does not exist")))
        };
    }
    if !agent.starts_with("fence_")
        || !agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad(format!(
            "`{agent}` is neither a native agent (ipmi, libvirt, ec2) nor a fence_* script name"
        )));
    }
    SEARCH_DIRS
        .iter()
        .map(|d| Path::new(d).join(agent))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            bad(format!(
                "script {agent} not found in {} (install the fence-agents package)",
                SEARCH_DIRS.join(", ")
            ))
        })
}

impl ScriptAgent {
    /// Wraps the script `agent` (name or path); `params` minus the fencer's own keys become
    /// its options.
    pub fn new(agent: &str, params: &Params) -> Result<ScriptAgent, AgentError> {
        let path = locate(agent)?;
        let mut options = Params::default();
        for (k, v) in params.iter() {
            if k == "agent"
                || k == "action"
                || k == "option"
                || k.starts_with("pcmk_")
                || k == "timeout"
                || k == "retries"
            {
                continue;
            }
            options.set(k, v)?;
        }
        Ok(ScriptAgent {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| agent.to_owned()),
            path,
            options,
        })
    }

    fn redact(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for (k, v) in self.options.iter() {
            if is_secret_key(k) && v.len() >= 3 {
                t = t.replace(v, "***");
            }
        }
        t
    }

    fn run(
        &self,
        action: &str,
        plug: Option<&str>,
        deadline: Instant,
    ) -> Result<child::ChildOutput, AgentError> {
        let mut input = format!("action={action}\n");
        for (k, v) in self.options.iter() {
            if plug.is_some() && (k == "plug" || k == "port") {
                continue;
            }
            input.push_str(&format!("{k}={v}\n"));
        }
        if let Some(p) = plug {
            if p.contains(['\n', '\r']) {
                return Err(AgentError::Config {
                    field: "plug".into(),
                    problem: "plug names cannot contain newlines".into(),
                });
            }
            input.push_str(&format!("plug={p}\n"));
        }
        let mut cmd = Command::new(&self.path);
        // Python's warnings would otherwise end up as the "reason" on stderr.
        cmd.env("PYTHONWARNINGS", "ignore");
        match child::run(&mut cmd, Some(input.as_bytes()), deadline) {
            Ok(mut out) => {
                out.stderr = self.redact(&out.stderr);
                out.stdout = self.redact(&out.stdout);
                Ok(out)
            }
            Err(ChildError::Spawn(e)) => Err(AgentError::Config {
                field: "agent".into(),
                problem: format!("cannot run {}: {e}", self.path.display()),
            }),
            Err(ChildError::Timeout { waited, stderr }) => Err(AgentError::Timeout {
                device: self.name.clone(),
                what: format!("`{action}` ({})", child::last_line(&self.redact(&stderr))),
                waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    fn failure(&self, out: &child::ChildOutput) -> AgentError {
        let meaning = match out.code {
            1 => "error",
            2 => "bad arguments",
            3 => "login denied",
            4 => "connection lost",
            5 => "timed out",
            6 => "timed out waiting for power on",
            7 => "timed out waiting for power off",
            8 => "status error",
            c if c < 0 => "killed by a signal",
            _ => "unknown exit code",
        };
        AgentError::Script {
            agent: self.name.clone(),
            code: out.code,
            meaning: meaning.into(),
            stderr: child::last_line(&out.stderr),
        }
    }

    /// True when the script's message says it never got a session, so nothing was sent.
    fn never_connected(out: &child::ChildOutput) -> bool {
        let e = out.stderr.to_ascii_lowercase();
        e.contains("unable to connect/login")
            || e.contains("login denied")
            || (e.contains("password") && e.contains("missing"))
    }

    fn power(&self, action: Action, plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        match self.run(action.as_str(), plug, deadline) {
            Ok(out) if out.code == 0 => Outcome::Done(()),
            Ok(out) if Self::never_connected(&out) || out.code == 2 => {
                Outcome::Failed(self.failure(&out))
            }
            Ok(out) => Outcome::Unknown(self.failure(&out)),
            Err(e @ AgentError::Config { .. }) => Outcome::Failed(e),
            Err(e) => Outcome::Unknown(e),
        }
    }
}

/// Parses `list`/`list-status` output: `plug,alias[,status]` per line.
pub(crate) fn parse_list(stdout: &str) -> Vec<Plug> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split(',');
            let id = f.next().unwrap_or("").trim().to_owned();
            let alias = f
                .next()
                .map(str::trim)
                .filter(|a| !a.is_empty() && *a != "N/A")
                .map(str::to_owned);
            let power = match f.next().map(|s| s.trim().to_ascii_lowercase()) {
                Some(s) if s == "on" => Some(PowerState::On),
                Some(s) if s == "off" => Some(PowerState::Off),
                _ => None,
            };
            Plug { id, alias, power }
        })
        .filter(|p| !p.id.is_empty())
        .collect()
}

impl FenceAgent for ScriptAgent {
    fn agent_type(&self) -> &str {
        &self.name
    }

    fn off(&self, plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        self.power(Action::Off, plug, deadline)
    }

    fn on(&self, plug: Option<&str>, deadline: Instant) -> Outcome<()> {
        self.power(Action::On, plug, deadline)
    }

    /// fence-agents scripts reboot themselves (off, confirm, on) and exit 0 once the off
    /// half worked.
    fn reboot(&self, plug: Option<&str>, deadline: Instant) -> Outcome<Option<String>> {
        self.power(Action::Reboot, plug, deadline).map(|()| None)
    }

    fn status(&self, plug: Option<&str>, deadline: Instant) -> Outcome<PowerState> {
        match self.run("status", plug, deadline) {
            Ok(out) if out.code == 0 => Outcome::Done(PowerState::On),
            Ok(out) if out.code == 2 && out.stdout.contains("OFF") => {
                Outcome::Done(PowerState::Off)
            }
            Ok(out) if Self::never_connected(&out) || out.code == 2 => {
                Outcome::Failed(self.failure(&out))
            }
            Ok(out) => Outcome::Unknown(self.failure(&out)),
            Err(e @ AgentError::Config { .. }) => Outcome::Failed(e),
            Err(e) => Outcome::Unknown(e),
        }
    }

    fn list(&self, deadline: Instant) -> Outcome<Vec<Plug>> {
        match self.run("list-status", None, deadline) {
            Ok(out) if out.code == 0 => Outcome::Done(parse_list(&out.stdout)),
            Ok(out) => Outcome::Failed(self.failure(&out)),
            Err(e) => Outcome::from(e),
        }
    }

    fn monitor(&self, deadline: Instant) -> Outcome<()> {
        match self.run("monitor", None, deadline) {
            Ok(out) if out.code == 0 => Outcome::Done(()),
            Ok(out) => Outcome::Failed(self.failure(&out)),
            Err(e) => Outcome::from(e),
        }
    }

    fn metadata(&self, deadline: Instant) -> Outcome<Metadata> {
        match self.run("metadata", None, deadline) {
            Ok(out) if out.code == 0 => match Metadata::parse_xml(&out.stdout) {
                Ok(m) => Outcome::Done(m),
                Err(e) => Outcome::Failed(AgentError::Protocol {
                    device: self.name.clone(),
                    detail: e.to_string(),
                }),
            },
            Ok(out) => Outcome::Failed(self.failure(&out)),
            Err(e) => Outcome::from(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_output_is_parsed_with_and_without_status() {
        let p = parse_list("node1,uuid-1,on\nnode2,,OFF\n\nnode3\n");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].alias.as_deref(), Some("uuid-1"));
        assert_eq!(p[0].power, Some(PowerState::On));
        assert_eq!(p[1].power, Some(PowerState::Off));
        assert_eq!(p[2].alias, None);
    }

    #[test]
    fn script_names_are_checked() {
        assert!(locate("rm -rf").is_err());
        assert!(locate("fence_../x").is_err());
        assert!(locate("/nonexistent/fence_x").is_err());
    }
}
