//! `blockrepld`: serves replicated volumes (placeholder until the driver lands).

fn main() {}
