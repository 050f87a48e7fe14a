//! The blockrepl integration tests: the engine pair in a deterministic harness (the daemon's
//! real-process tests live in blockrepld).

mod boundary;
mod harness;
mod model;
mod scenarios;
