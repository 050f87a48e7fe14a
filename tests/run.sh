#!/usr/bin/env bash
# The test command: formatting, lints, then every test of the workspace.
# Tests that need root or a real counterpart (namespaces, nginx, ipmi_sim, ...) skip with a
# printed reason when it is missing, unless HA_REQUIRE_RIGS=1 (CI sets it) makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Simulation sweeps: a fixed wall-clock budget per sweep keeps CI time bounded, and a fixed base
# seed makes every run explore the same (verified) seeds, so a landing never depends on luck.
# Explore new seeds on demand with SIM_BASE_SEED=random (and a larger SIM_BUDGET_SECS); pin any
# seed that fails in the test's list.
export SIM_BUDGET_SECS="${SIM_BUDGET_SECS:-20}"
export SIM_BASE_SEED="${SIM_BASE_SEED:-20261123}"
# The same for property tests (unset it to let proptest draw a fresh seed).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261123}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (every binary: real-process tests run crmctl, clusterd and qnetd side by side)"
cargo build --workspace --bins --locked
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
