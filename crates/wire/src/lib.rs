//! The shared vocabulary of the cluster stack and its wire encoding.
//!
//! - Newtype ids ([`NodeId`], [`RingId`], [`Generation`], [`CallId`]) so that a node id is
//!   never confused with a sequence number.
//! - Logical time ([`Instant`], [`Duration`]): protocol cores receive `now` as an argument and
//!   never read an OS clock; the driver maps its monotonic clock onto [`Instant`], the simulator
//!   its simulated clock.
//! - The envelope ([`encode`], [`decode`]): every message that leaves a process travels in a
//!   frame with a magic, a version, a kind, a length and a CRC-32C checksum around a postcard body.
//!
//! This crate must never depend on tokio, sockets, files or clocks: every core uses it.

mod envelope;
mod ids;
mod time;

pub use envelope::{
    DecodeError, EncodeError, FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, MAX_FRAME_BODY_LEN, WIRE_VERSION, decode,
    decode_header, encode, encode_into,
};
pub use ids::{CallId, Generation, LinkId, NodeId, RingId};
pub use time::{Duration, Instant};
