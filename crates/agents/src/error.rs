//! Errors of the agents crate (operation outcomes are values: see [`crate::Outcome`]).

use std::path::PathBuf;

use crate::schema::MetadataError;

/// An agent could not be found, described or run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// No agent by that name.
    #[error("no resource agent named `{name}`{}", hint(candidates))]
    NotFound {
        /// The name asked for.
        name: String,
        /// Similar names.
        candidates: Vec<String>,
    },
    /// A short name matches several agents.
    #[error("agent name `{name}` is ambiguous: use one of {}", candidates.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The full names it matches.
        candidates: Vec<String>,
    },
    /// A malformed `class:provider:type` name.
    #[error("`{name}` is not an agent name: {problem}")]
    BadName {
        /// The text given.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// An action name that the OCF API does not have.
    #[error(
        "unknown action `{action}` (use start, stop, monitor, promote, demote, notify, reload, validate-all or meta-data)"
    )]
    UnknownAction {
        /// The text given.
        action: String,
    },
    /// The agent's meta-data could not be read or parsed.
    #[error("meta-data of {agent}: {source}")]
    Metadata {
        /// The agent.
        agent: String,
        /// Why.
        #[source]
        source: MetadataError,
    },
    /// The agent's meta-data action failed.
    #[error("meta-data of {agent} failed: {detail}")]
    MetadataAction {
        /// The agent.
        agent: String,
        /// rc, reason and output.
        detail: String,
    },
    /// An agent executable could not be run.
    #[error("cannot run {}: {source}", path.display())]
    Exec {
        /// The executable.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn hint(candidates: &[String]) -> String {
    if candidates.is_empty() {
        " (see `crmctl agent list`)".to_owned()
    } else {
        format!(" (did you mean {}?)", candidates.join(", "))
    }
}
