//! Agents by name (`class:provider:type`): the native agents plus every OCF script found under
//! the OCF root, plus `systemd:` units where systemd runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::agent::ResourceAgent;
use crate::error::AgentError;
use crate::ocf::{self, OcfAgent};
use crate::{native, systemd};

/// A full agent name: `class:provider:type` (`systemd:` names have no provider).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentName {
    /// `native`, `ocf` or `systemd`.
    pub class: String,
    /// The provider (`heartbeat`, `builtin`); empty for systemd.
    pub provider: String,
    /// The type.
    pub kind: String,
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.provider.is_empty() {
            write!(f, "{}:{}", self.class, self.kind)
        } else {
            write!(f, "{}:{}:{}", self.class, self.provider, self.kind)
        }
    }
}

impl FromStr for AgentName {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<AgentName, AgentError> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = |problem: &str| AgentError::BadName { name: s.to_owned(), problem: problem.to_owned() };
        if parts.iter().any(|p| p.is_empty() || p.contains('/')) {
            return Err(bad("empty part or `/` in the name"));
        }
        match parts.as_slice() {
            [class, provider, kind] => {
                Ok(AgentName { class: (*class).to_owned(), provider: (*provider).to_owned(), kind: (*kind).to_owned() })
            }
            ["systemd", kind] => {
                Ok(AgentName { class: "systemd".into(), provider: String::new(), kind: (*kind).to_owned() })
            }
            _ => Err(bad("expected class:provider:type (or systemd:unit)")),
        }
    }
}

/// Resolves names to agents and lists what exists.
#[derive(Debug, Clone)]
pub struct Registry {
    ocf_root: PathBuf,
    env: BTreeMap<String, String>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(Path::new(ocf::OCF_ROOT))
    }
}

impl Registry {
    /// A registry whose OCF scripts live under `ocf_root`.
    pub fn new(ocf_root: &Path) -> Registry {
        Registry { ocf_root: ocf_root.to_owned(), env: BTreeMap::new() }
    }

    /// The same registry whose OCF scripts get `vars` in their environment (see
    /// [`OcfAgent::with_env`]).
    pub fn with_env(mut self, vars: BTreeMap<String, String>) -> Registry {
        self.env = vars;
        self
    }

    /// Every agent name available on this machine, sorted (systemd units are not enumerated).
    pub fn list(&self) -> Vec<AgentName> {
        let mut names: Vec<AgentName> = native::TYPES
            .iter()
            .map(|t| AgentName { class: "native".into(), provider: native::PROVIDER.into(), kind: (*t).to_owned() })
            .collect();
        names.extend(ocf::discover(&self.ocf_root).into_iter().map(|(provider, kind)| AgentName {
            class: "ocf".into(),
            provider,
            kind,
        }));
        names.sort();
        names
    }

    /// Resolves a full name, `provider:type`, or a short type name that is unambiguous.
    pub fn resolve(&self, name: &str) -> Result<AgentName, AgentError> {
        if name.starts_with("systemd:") || name.matches(':').count() == 2 {
            return name.parse();
        }
        let all = self.list();
        let matches: Vec<&AgentName> = all
            .iter()
            .filter(|n| match name.split_once(':') {
                Some((provider, kind)) => n.provider == provider && n.kind == kind,
                None => n.kind == name,
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(AgentError::NotFound {
                name: name.to_owned(),
                candidates: all
                    .iter()
                    .filter(|n| n.kind.eq_ignore_ascii_case(name.rsplit(':').next().unwrap_or(name)))
                    .map(ToString::to_string)
                    .collect(),
            }),
            many => Err(AgentError::Ambiguous {
                name: name.to_owned(),
                candidates: many.iter().map(ToString::to_string).collect(),
            }),
        }
    }

    /// Builds the agent for `name` (any form [`Registry::resolve`] accepts).
    pub fn get(&self, name: &str) -> Result<Arc<dyn ResourceAgent>, AgentError> {
        let full = self.resolve(name)?;
        match full.class.as_str() {
            "native" if full.provider == native::PROVIDER => native::build(&full.kind)
                .ok_or_else(|| AgentError::NotFound { name: full.to_string(), candidates: Vec::new() }),
            "ocf" => {
                Ok(Arc::new(OcfAgent::new(&self.ocf_root, &full.provider, &full.kind)?.with_env(self.env.clone())))
            }
            "systemd" => Ok(Arc::new(systemd::SystemdAgent::new(&full.kind)?)),
            _ => Err(AgentError::NotFound { name: full.to_string(), candidates: Vec::new() }),
        }
    }
}

/// A set of configured agents keyed by full name, for callers that hold them long-term.
pub type AgentTable = BTreeMap<AgentName, Arc<dyn ResourceAgent>>;
