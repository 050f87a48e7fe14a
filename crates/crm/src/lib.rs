//! The cluster resource manager's data and policy: the CIB model (configuration + status),
//! Pacemaker CIB XML import/export, and the policy engine that turns a CIB into a transition
//! graph. Everything here is pure: time comes in as an argument.

pub mod cib;
pub mod controller;
pub mod dc;
pub mod digest;
pub mod edit;
mod error;
pub mod exec;
pub mod node;
pub mod replica;
pub mod scheduler;
mod score;
pub mod simulate;

pub use error::{CibError, Diagnostic};
pub use scheduler::{Action, ActionKind, Edge, Transition, schedule};
pub use score::{INFINITY, Score};
