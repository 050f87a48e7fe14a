#!/usr/bin/env bash
# The main job: a local demo. Part 1 runs a real three-node cluster (clusterd in network
# namespaces: membership, quorum, the replicated CIB, a web group started by the DC, node3's
# daemon killed, node3 fenced through its simulated BMC and the group moved). Part 2 shows the
# policy engine offline on a two-node web cluster with recorded history (what-if questions), and
# part 3 the deterministic simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: part 1: a three-node cluster in network namespaces (needs root)"
./deploy/demo-cluster.sh
echo
echo "demo: part 2: the policy engine, offline, on a saved cluster with history (crmctl simulate -f):"
cargo build -q -p crmctl
CRMCTL=target/debug/crmctl

echo
echo "demo: 1/4 the policy engine on a two-node web cluster (deploy/demo-cib.xml): nothing to do"
$CRMCTL simulate -f deploy/demo-cib.xml | sed -n '/Transition Summary/,/^$/p'
echo "demo: 2/4 node1 is lost: fence it first, then move the web group to node2"
$CRMCTL simulate -f deploy/demo-cib.xml --node-fail node1 | sed -n '/Transition Summary/,/^$/p'
echo "demo: 3/4 nginx fails its monitor on node1: recovery in place"
$CRMCTL simulate -f deploy/demo-cib.xml --op-fail www_monitor_10000@node1=7 | sed -n '/Transition Summary/,/^$/p'

echo "demo: 4/4 the deterministic simulator on an example protocol: a planted bug is caught (its report is expected), the correct one passes"
SIM_SEEDS="${SIM_SEEDS:-500}" cargo test -q -p sim --test it heartbeat -- --nocapture 2>&1 | grep -E '(^|\.)sim |reproduce|simulation failed|test result'
