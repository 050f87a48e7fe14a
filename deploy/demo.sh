#!/usr/bin/env bash
# The main job. The local demo cluster (several clusterd nodes in network namespaces on this
# machine) arrives with the membership and crm daemons; until then this runs what exists and
# says so.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: the multi-node demo cluster is not built yet; showing what exists today."
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
