//! Integration tests for the crm crate.

mod bad_input;
mod corpus;
mod graph;
mod roundtrip;
