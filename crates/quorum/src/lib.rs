//! Quorum: who may act.
//!
//! - [`votequorum`]: Corosync votequorum semantics over an agreed membership view: votes per
//!   node, expected votes that never fall on their own, `two_node`, `wait_for_all`,
//!   `last_man_standing`, `auto_tie_breaker`, `allow_downscale`, runtime expected-votes changes,
//!   and an arbiter (quorum device) vote. Every member computes the same answer from the view plus
//!   the node information exchanged over ordered delivery.
//!
//! - [`arbiter`]: the decision logic of the arbiter (`qnetd`), `ffsplit` and `lms`, with votes
//!   as leases so that a hung node cannot hold a vote the arbiter gives away.
//! - [`device`]: each node's client of the arbiter, feeding votequorum the arbiter's vote.
//!
//! The logic is sans-IO: it is fed `now` and inputs and returns effects. It never depends on
//! tokio, sockets or clocks (a tidy test enforces it).

pub mod arbiter;
pub mod config;
pub mod device;
pub mod votequorum;

pub use config::{ConfigError, QuorumConfig, TieBreaker};
pub use votequorum::{Effect, Input, NodeInfo, QUORUM_WIRE_KIND, QuorumMsg, QuorumStatus, Votequorum};
