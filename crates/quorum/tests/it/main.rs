//! Votequorum behaviours, one test per documented option, plus a property test that at most
//! one partition is ever quorate.

mod arbiter;
mod harness;
mod properties;
mod votequorum;
