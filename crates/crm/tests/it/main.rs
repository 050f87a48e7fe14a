//! Integration tests for the crm crate.

mod bad_input;
mod container;
mod controller;
mod corpus;
mod digests;
mod documented;
mod explain;
mod fuzz_corpus;
mod graph;
mod replica;
mod roundtrip;
mod stability;
