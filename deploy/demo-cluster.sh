#!/usr/bin/env bash
# A three-node cluster on this machine: each node is a network namespace with two links (two
# bridges), running clusterd over QUIC with mutual TLS from a freshly made cluster CA, and a
# simulated BMC (ipmi_sim) per node whose power-off kills that node. Shows the agreed view and
# quorum, imports a configuration (IPMI fencing, a web group of a virtual IP and an application)
# on one node; the DC starts the group on node3. Then node3's daemon is killed with SIGKILL: the
# survivors form a new view, the DC fences node3 through its BMC and starts the group on a
# survivor; the time from the kill to the virtual IP answering elsewhere is printed. Finally the
# administrator moves the group with `crmctl resource move web node1 --wait`.
# Needs root (namespaces) and ipmi_sim (without it, fencing is turned off and said so).
# Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo-cluster: needs root (network namespaces); skipped"; exit 0; }
cargo build -q -p clusterd -p crmctl
BIN=$PWD/target/debug
P=hcdemo$$
DIR=$(mktemp -d /tmp/$P.XXXX)
PIDS=()
SIMS=()
cleanup() {
  for p in "${PIDS[@]}" "${SIMS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in sw n1 n2 n3; do ip netns del "$P$n" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

# Two switches (bridges) in one namespace; each node plugs one cable into each.
ip netns add ${P}sw
ip -n ${P}sw link add br0 type bridge; ip -n ${P}sw link add br1 type bridge
ip -n ${P}sw link set br0 up; ip -n ${P}sw link set br1 up
for i in 1 2 3; do
  ip netns add ${P}n$i
  ip -n ${P}n$i link set lo up
  for l in 0 1; do
    ip link add ${P:0:6}$i$l type veth peer name e$l netns ${P}n$i
    ip link set ${P:0:6}$i$l netns ${P}sw
    ip -n ${P}sw link set ${P:0:6}$i$l master br$l up
    ip -n ${P}n$i addr add 10.213.$l.$i/24 dev e$l
    ip -n ${P}n$i link set e$l up
  done
done

# The BMCs listen on the first link's switch.
ip -n ${P}sw addr add 10.213.0.200/24 dev br0
FENCING=1
command -v ipmi_sim >/dev/null || FENCING=0

$BIN/clusterd gen-certs --nodes 3 --out $DIR/certs >/dev/null
for i in 1 2 3; do
  mkdir -p $DIR/n$i/run $DIR/n$i/state
  {
    echo "node_id = $i"
    echo 'cluster_name = "demo"'
    echo 'transport = "quic"'
    echo "run_dir = \"$DIR/n$i/run\""
    echo "state_dir = \"$DIR/n$i/state\""
    echo '[tls]'
    echo "ca = \"$DIR/certs/ca.pem\""
    echo "cert = \"$DIR/certs/node$i.pem\""
    echo "key = \"$DIR/certs/node$i.key\""
    for j in 1 2 3; do
      echo '[[nodes]]'; echo "id = $j"; echo "name = \"node$j\""
      echo "links = [\"10.213.0.$j:5405\", \"10.213.1.$j:5405\"]"
    done
    echo '[executor]'
    echo "rsctmp = \"$DIR/n$i/rsctmp\""
  } > $DIR/n$i/clusterd.toml
  nsenter --net=/run/netns/${P}n$i $BIN/clusterd -c $DIR/n$i/clusterd.toml >$DIR/n$i/log 2>&1 &
  PIDS+=($!); disown
  echo "${PIDS[-1]}" > $DIR/n$i/node.pid
done

# One BMC per node (TEST-RIGS §2): power-off kills the node's daemon and unplugs its cables.
if [ $FENCING = 1 ]; then
  for i in 1 2 3; do
    B=$DIR/bmc$i; mkdir -p $B/state
    cp ../shared/rigs/ipmi/sim.emu ../shared/rigs/ipmi/chassis.sh $B/
    sed -e "s|@RIG_DIR@|$B|g" -e "s|@ADDR@|10.213.0.200|g" -e "s|@PORT@|623$i|g" ../shared/rigs/ipmi/lan.conf > $B/lan.conf
    echo 1 > $B/power
    IPMISIM_ON_OFF="kill -9 \$(cat $DIR/n$i/node.pid); ip -n ${P}n$i link set e0 down; ip -n ${P}n$i link set e1 down" \
    IPMISIM_ON_ON="true" \
      setsid ip netns exec ${P}sw ipmi_sim -c $B/lan.conf -f $B/sim.emu -s $B/state -n >$B/out 2>&1 &
    SIMS+=($!); disown
  done
  CONFIG=deploy/demo-live-cib.xml
else
  echo "demo-cluster: ipmi_sim is not installed: fencing is turned off for this run (apt install openipmi)"
  sed 's/name="stonith-enabled" value="true"/name="stonith-enabled" value="false"/' deploy/demo-live-cib.xml > $DIR/live.xml
  CONFIG=$DIR/live.xml
fi

# How many members the node's current view has (0 when it cannot answer).
members() {
  $BIN/crmctl membership status --run-dir $DIR/n$1/run -o json 2>/dev/null | python3 -c '
import json, sys
def find(d):
    if isinstance(d, dict):
        if "members" in d and isinstance(d["members"], list): return len(d["members"])
        for v in d.values():
            n = find(v)
            if n is not None: return n
    return None
try: print(find(json.load(sys.stdin)) or 0)
except Exception: print(0)'
}
wait_members() { # node expected-count
  for _ in $(seq 200); do
    [ "$(members $1)" = "$2" ] && return 0; sleep 0.05
  done
  echo "demo-cluster: node$1 did not see $2 members; its log:"; tail -20 $DIR/n$1/log; exit 1
}
wait_members 1 3
echo "demo-cluster: three nodes agreed on one view"
$BIN/crmctl membership status --run-dir $DIR/n1/run
echo
$BIN/crmctl quorum status --run-dir $DIR/n1/run || true
echo
echo "demo-cluster: import the configuration ($CONFIG: IPMI fencing, a web group of a virtual IP and an application that prefers node3) on node1"
for try in $(seq 100); do
  out=$($BIN/crmctl config import $CONFIG --run-dir $DIR/n1/run 2>&1) && break
  [ $try = 100 ] && { echo "demo-cluster: the import was refused: $out"; exit 1; }
  sleep 0.1
done
# Which node has the virtual IP (0: none).
vip_on() {
  for i in 1 2 3; do
    ip -n ${P}n$i -4 addr show e0 2>/dev/null | grep -q '10.213.0.100/' && { echo $i; return; }
  done
  echo 0
}
for _ in $(seq 200); do
  [ "$(vip_on)" = 3 ] && [ -e $DIR/n3/rsctmp/Dummy-app.state ] && break; sleep 0.05
done
[ "$(vip_on)" = 3 ] || { echo "demo-cluster: the web group did not start on node3; node1's log:"; tail -30 $DIR/n1/log; exit 1; }
echo "demo-cluster: the DC started the web group on node3 (10.213.0.100 is on node3's e0); crmctl status on node2:"
$BIN/crmctl status --run-dir $DIR/n2/run
echo
echo "demo-cluster: kill -9 node3's clusterd (the node itself keeps running its resources until it is fenced)"
T0=$(date +%s.%N)
kill -9 "${PIDS[2]}"
for _ in $(seq 400); do
  v=$(vip_on); [ "$v" = 1 ] || [ "$v" = 2 ] && break; sleep 0.01
done
T1=$(date +%s.%N)
v=$(vip_on)
if [ "$v" = 1 ] || [ "$v" = 2 ]; then
  printf 'demo-cluster: 10.213.0.100 is up on node%s %.2f s after the kill\n' "$v" "$(echo "$T1 - $T0" | bc)"
else
  echo "demo-cluster: the virtual IP did not move; node1's log:"; tail -30 $DIR/n1/log; exit 1
fi
if [ $FENCING = 1 ]; then
  echo "demo-cluster: node3's BMC reports power $(cat $DIR/bmc3/power) (0 = off): node3 was fenced before its resources moved"
  grep -E "fencing|fenced" $DIR/n1/log | sed 's/^/  node1: /' | tail -2
fi
wait_members 1 2
echo
echo "demo-cluster: the administrator moves the web group to node1 and waits for it (crmctl resource move web node1 --wait):"
T0=$(date +%s.%N)
$BIN/crmctl resource move web node1 --wait=30s --run-dir $DIR/n1/run
T1=$(date +%s.%N)
printf 'demo-cluster: moved and settled in %.2f s; 10.213.0.100 is on node%s now\n' "$(echo "$T1 - $T0" | bc)" "$(vip_on)"
echo
$BIN/crmctl status --run-dir $DIR/n1/run
