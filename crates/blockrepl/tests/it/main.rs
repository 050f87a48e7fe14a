//! The blockrepl integration tests: the engine pair in a deterministic harness, and (later
//! modules) the daemon in network namespaces.

mod daemon;
mod harness;
mod model;
mod scenarios;
