//! The vocabulary of a replicated volume: roles, DRBD's state names, generation identifiers,
//! configuration and the persisted metadata.

use serde::{Deserialize, Serialize};
use wire::{Duration, Generation, NodeId};

/// Bytes per bitmap bit and per resync/verify unit.
pub const BLOCK_SIZE: u64 = 4096;
/// Largest application write or read accepted in one request (one link frame).
pub const REQUEST_MAX: u64 = 1 << 20;
/// Bytes covered by one activity-log extent.
pub const AL_EXTENT_SIZE: u64 = 4 << 20;

/// Whether this node serves application I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Serves reads and writes; replicates writes to the peer.
    Primary,
    /// Receives replicated writes; serves no application I/O.
    Secondary,
    /// The peer's role when not connected.
    Unknown,
}

/// The connection state (DRBD's vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnState {
    /// Not trying to connect: administratively down, or after a refused handshake.
    StandAlone,
    /// Trying to (re)establish the link.
    Connecting,
    /// The link is up and the handshake completed.
    Connected,
}

/// The replication state (DRBD's vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplState {
    /// Not connected.
    Off,
    /// Connected, handshake exchanged, decision pending (waiting for the peer's bitmap).
    WFBitMap,
    /// Connected and in sync: writes are mirrored.
    Established,
    /// This node sends the blocks the peer lacks.
    SyncSource,
    /// This node receives the blocks it lacks.
    SyncTarget,
    /// Resync as source, paused (rate limited to zero or administratively paused).
    PausedSyncS,
    /// Resync as target, paused.
    PausedSyncT,
    /// Online verify, this node drives it.
    VerifyS,
    /// Online verify, the peer drives it.
    VerifyT,
}

/// The local (or peer) disk state (DRBD's vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskState {
    /// No backing storage attached (never attached, or detached after an I/O error).
    Diskless,
    /// The backing storage failed; about to become Diskless.
    Failed,
    /// Data is being overwritten by a resync; not usable on its own.
    Inconsistent,
    /// Consistent but known to be older than the peer's.
    Outdated,
    /// The peer's disk when not connected.
    DUnknown,
    /// Consistent; whether it is the newest is not known (no peer contact).
    Consistent,
    /// Consistent and known to be current.
    UpToDate,
}

/// When a write completes towards the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// Local disk done and handed to the link.
    A,
    /// Local disk done and received in the peer's memory.
    B,
    /// Local disk done and written by the peer (the default).
    C,
}

/// After-split-brain policy when no node is Primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AfterSb0Pri {
    /// Stay StandAlone and let an operator decide (the safe default).
    Disconnect,
    /// If only one node wrote since the split, the other discards (nothing is lost).
    DiscardZeroChanges,
    /// The node with fewer changed blocks discards.
    DiscardLeastChanges,
    /// The node that became Primary after the split discards.
    DiscardYoungerPrimary,
    /// The node that was Primary before the split discards.
    DiscardOlderPrimary,
}

/// After-split-brain policy when one node is Primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AfterSb1Pri {
    /// Stay StandAlone (the safe default).
    Disconnect,
    /// Apply the 0pri policy if its victim is the Secondary, else disconnect.
    Consensus,
    /// The Secondary discards its changes.
    DiscardSecondary,
}

/// After-split-brain policy when both nodes are Primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AfterSb2Pri {
    /// Stay StandAlone (the only safe choice).
    Disconnect,
}

/// Split-brain policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrainPolicy {
    /// No Primary at handshake.
    pub after_sb_0pri: AfterSb0Pri,
    /// One Primary.
    pub after_sb_1pri: AfterSb1Pri,
    /// Two Primaries.
    pub after_sb_2pri: AfterSb2Pri,
}

impl Default for SplitBrainPolicy {
    fn default() -> Self {
        Self {
            after_sb_0pri: AfterSb0Pri::Disconnect,
            after_sb_1pri: AfterSb1Pri::Disconnect,
            after_sb_2pri: AfterSb2Pri::Disconnect,
        }
    }
}

/// Engine configuration (the volume's `net`/`disk` options).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// This node.
    pub node: NodeId,
    /// The only peer this volume accepts.
    pub peer: NodeId,
    /// Volume size in bytes (a multiple of [`BLOCK_SIZE`]).
    pub size_bytes: u64,
    /// Write completion rule.
    pub protocol: Protocol,
    /// Allow both nodes to be Primary while connected.
    pub dual_primary: bool,
    /// Compare checksums before sending resync data (`csums-alg`).
    pub csums: bool,
    /// Split-brain policies.
    pub split_brain: SplitBrainPolicy,
    /// Activity-log capacity in extents.
    pub al_extents: u32,
    /// Resync rate without application I/O, bytes per second (0: unlimited).
    pub resync_rate_max_bytes_per_sec: u64,
    /// Resync rate floor while the application writes, bytes per second.
    pub resync_rate_min_bytes_per_sec: u64,
    /// Resync/verify runs in flight at once.
    pub resync_inflight_max: u32,
    /// Idle time after which a ping is sent.
    pub ping_interval: Duration,
    /// Silence after which the link is declared dead.
    pub timeout: Duration,
}

impl Config {
    /// A configuration with DRBD-like defaults for a volume of `size_bytes` between `node` and `peer`.
    pub fn new(node: NodeId, peer: NodeId, size_bytes: u64) -> Self {
        Self {
            node,
            peer,
            size_bytes,
            protocol: Protocol::C,
            dual_primary: false,
            csums: false,
            split_brain: SplitBrainPolicy::default(),
            al_extents: 257,
            resync_rate_max_bytes_per_sec: 0,
            resync_rate_min_bytes_per_sec: 250 * 1024,
            resync_inflight_max: 16,
            ping_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(6),
        }
    }

    /// Number of 4 KiB blocks.
    pub fn blocks(&self) -> u64 {
        self.size_bytes.div_ceil(BLOCK_SIZE)
    }
}

/// Generation identifiers: which data history a disk holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gi {
    /// The current generation (0: never had data).
    pub current: Generation,
    /// The generation at which the dirty bitmap started tracking (0: none).
    pub bitmap: Generation,
    /// Older generations, newest first.
    pub history: [Generation; 2],
    /// The bitmap generation was started by a Primary that lost its peer (as opposed to a node
    /// promoted while disconnected): used by discard-younger/older-primary.
    pub bitmap_by_primary: bool,
}

impl Gi {
    pub(crate) fn in_history(&self, g: Generation) -> bool {
        g.0 != 0 && self.history.contains(&g)
    }

    pub(crate) fn push_history(&mut self, g: Generation) {
        if g.0 != 0 && self.history[0] != g {
            self.history[1] = self.history[0];
            self.history[0] = g;
        }
    }
}

/// The persisted state of one node's copy of a volume. Written atomically by the driver each
/// time the engine emits it; given back to [`crate::Engine::new`] on start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Layout version of this struct.
    pub version: u32,
    /// The node that owns this copy.
    pub node: NodeId,
    /// The peer it replicates with.
    pub peer: NodeId,
    /// Volume size in bytes.
    pub size_bytes: u64,
    /// Generation identifiers.
    pub gi: Gi,
    /// Disk state as last persisted (UpToDate, Outdated, Inconsistent or Consistent).
    pub disk: DiskState,
    /// True while Primary: found true at start means this node crashed as Primary.
    pub primary: bool,
    /// Hot activity-log extents (extent numbers).
    pub al: Vec<u64>,
    /// Out-of-sync blocks as `(start, count)` runs.
    pub bitmap: Vec<(u64, u64)>,
}

/// Current [`Meta::version`].
pub const META_VERSION: u32 = 1;

impl Meta {
    /// Metadata for a newly created copy. With `initial` set (both copies start as identical,
    /// for example zero-filled new files) the copy is UpToDate in that generation; otherwise it
    /// is Inconsistent with no generation and needs a full sync or a forced promotion.
    pub fn new(node: NodeId, peer: NodeId, size_bytes: u64, initial: Option<Generation>) -> Self {
        let (gi, disk) = match initial {
            Some(g) => (Gi { current: g, ..Gi::default() }, DiskState::UpToDate),
            None => (Gi::default(), DiskState::Inconsistent),
        };
        Self {
            version: META_VERSION,
            node,
            peer,
            size_bytes,
            gi,
            disk,
            primary: false,
            al: Vec::new(),
            bitmap: Vec::new(),
        }
    }
}

/// Why an application request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum IoError {
    /// The volume is not Primary here.
    #[error("volume is {role:?} on this node; promote it first")]
    NotPrimary {
        /// Current role.
        role: Role,
    },
    /// Offset or length outside the volume.
    #[error("request at offset {offset} length {len} is outside the {size}-byte volume")]
    OutOfRange {
        /// Request offset.
        offset: u64,
        /// Request length.
        len: u64,
        /// Volume size.
        size: u64,
    },
    /// A single request larger than one link frame carries; split it.
    #[error("request of {len} bytes exceeds the {max}-byte limit per request; split it")]
    TooLarge {
        /// Request length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Neither the local disk nor the peer can serve it.
    #[error("no up-to-date data reachable (local disk {disk:?}, peer unreachable)")]
    NoData {
        /// Local disk state.
        disk: DiskState,
    },
    /// The backing device failed and the peer could not take over.
    #[error("backing i/o error and no peer to fall back to")]
    Io,
}
