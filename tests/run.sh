#!/usr/bin/env bash
# The test command: formatting, lints, then every test of the workspace.
# Tests that need root or a real counterpart (namespaces, nginx, ipmi_sim, ...) skip with a
# printed reason when it is missing, unless HA_REQUIRE_RIGS=1 (CI sets it) makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Simulation sweeps: a fixed wall-clock budget per sweep keeps CI time bounded.
export SIM_BUDGET_SECS="${SIM_BUDGET_SECS:-20}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
