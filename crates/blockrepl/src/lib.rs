//! Replicated block volumes in the manner of DRBD: two nodes keep identical copies of a volume,
//! one Primary serves the application and mirrors every write to the Secondary.
//!
//! - [`Engine`] is the sans-IO core of one volume on one node: roles, DRBD's connection,
//!   replication and disk states, generation identifiers, the dirty bitmap, the activity log,
//!   protocols A/B/C, resync (bitmap and checksum based), online verify and split-brain
//!   handling. It takes `now` and [`Input`]s and returns [`Effect`]s; it never touches a
//!   file, socket, clock or thread.
//! - [`Msg`] is the link protocol (a `wire` envelope of kind [`msg::KIND`]).
//! - `blockrepld` (the binary) drives the engine: backing file, TCP link, metadata file, FUSE
//!   and NBD frontends, control socket.
//!
//! The engine must never depend on tokio, sockets, files or clocks.

mod al;
mod bitmap;
pub mod control;
mod engine;
mod handshake;
pub mod msg;
mod types;

pub use engine::{AdminError, Effect, Engine, Input, IoId, ReqId, SplitBrainReport, Stats, Status, VerifyReport};
pub use handshake::{Decision, Refusal};
pub use msg::{Hello, Msg};
pub use types::{
    AL_EXTENT_SIZE, AfterSb0Pri, AfterSb1Pri, AfterSb2Pri, BLOCK_SIZE, Config, ConnState, DiskState, Gi, IoError,
    META_VERSION, Meta, Protocol, REQUEST_MAX, ReplState, Role, SplitBrainPolicy,
};
