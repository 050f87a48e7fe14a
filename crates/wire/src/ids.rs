//! Identifier newtypes shared by every crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's configured id (`nodeid` in corosync.conf). Never zero in a valid config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one agreed membership view: the representative that formed it and a sequence
/// number that only grows (persisted across restarts). Printed as `rep.seq` with the sequence
/// in hexadecimal, as Corosync prints ring ids (`1.12a`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RingId {
    /// The sequence number; compared first, so a newer ring always sorts after an older one.
    pub seq: u64,
    /// The node that formed the ring (its representative).
    pub rep: NodeId,
}

impl RingId {
    /// Creates a ring id.
    pub const fn new(rep: NodeId, seq: u64) -> Self {
        Self { seq, rep }
    }
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:x}", self.rep, self.seq)
    }
}

/// A data generation identifier (replicated volumes: current/bitmap/history UUIDs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// The id of one resource or fence operation, unique per node and executor lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One of a node's network links (redundant rings): link 0, link 1, ...
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkId(pub u8);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link{}", self.0)
    }
}
