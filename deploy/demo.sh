#!/usr/bin/env bash
# The main job. The local demo cluster (several clusterd nodes in network namespaces on this
# machine) arrives with the membership and crm daemons; until then this runs what exists and
# says so.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: the multi-node demo cluster is not built yet; showing what exists today."
echo
echo "demo: 1/2 the deterministic simulator proving itself on an example protocol"
SIM_SEEDS="${SIM_SEEDS:-500}" cargo test -q -p sim --test it heartbeat -- --nocapture 2>&1 | grep -E '(^|\.)sim |reproduce|simulation failed|test result'
echo
echo "demo: 2/2 simulator throughput"
cargo bench -q -p sim --bench throughput 2>/dev/null
