#!/usr/bin/env bash
# Scheduler benchmark (issue 5): throughput and creation→binding latency
# with the API server in the loop, plus scheduler memory per 1,000 nodes.
#
#   bench/scheduler.sh                 500 nodes, 10,000 pods (quick)
#   bench/scheduler.sh --large         5,000 nodes, 30,000 pods
#   bench/scheduler.sh --nodes N --pods M --kinds "plain anti spread"
#   bench/scheduler.sh --simulated     nodes from `rkube agent --simulated-nodes`
#                                      instead of plain Node objects
#
# Each workload gets a fresh `rkube server --disable-agent
# --disable-controller-manager` (its scheduler does the work) on a temp data
# dir. Prints figures only; nothing here asserts timings.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=500 PODS=10000 KINDS="plain anti spread" SIMULATED=0
while [ $# -gt 0 ]; do
  case "$1" in
    --large) NODES=5000 PODS=30000 ;;
    --nodes) NODES=$2; shift ;;
    --pods) PODS=$2; shift ;;
    --kinds) KINDS=$2; shift ;;
    --simulated) SIMULATED=1 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rkube/target}
cargo build --release -q -p rkube
cargo build --release -q -p rkube-scheduler --example sched-bench
RKUBE=$CARGO_TARGET_DIR/release/rkube
BENCH=$CARGO_TARGET_DIR/release/examples/sched-bench

WORK=$(mktemp -d)
SERVER_PID= AGENT_PID=
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_server() {
  local dir=$WORK/$1
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RKUBE_LOG=warn "$RKUBE" server --disable-agent --disable-controller-manager --disable-ingress \
    --bind-address=127.0.0.1 --https-listen-port="$PORT" --data-dir="$dir" 2>"$dir.log" &
  SERVER_PID=$!
  KUBECONFIG_FILE=$dir/kubeconfig.yaml
  for _ in $(seq 300); do
    if [ -f "$KUBECONFIG_FILE" ] && kubectl --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz >/dev/null 2>&1; then
      break
    fi
    sleep 0.1
  done
  if [ "$SIMULATED" = 1 ]; then
    RKUBE_LOG=warn "$RKUBE" agent --server="https://127.0.0.1:$PORT" --token="$(cat "$dir/server/node-token")" \
      --data-dir="$dir-agent" --simulated-nodes="$NODES" --node-name=bench 2>"$dir-agent.log" &
    AGENT_PID=$!
    for _ in $(seq 600); do
      n=$(kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes --no-headers 2>/dev/null | grep -c ' Ready' || true)
      [ "$n" -ge "$NODES" ] && break
      sleep 0.5
    done
    echo "simulated nodes ready: $n"
  else
    "$BENCH" nodes "$KUBECONFIG_FILE" "$NODES" 10
  fi
}

stop_server() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID= AGENT_PID=
}

echo "== scheduler benchmark: $NODES nodes, $PODS pods, $(nproc) cores"
first=1
for kind in $KINDS; do
  start_server "$kind"
  if [ $first = 1 ]; then
    "$BENCH" memory "$KUBECONFIG_FILE" "$NODES"
    first=0
  fi
  "$BENCH" load "$KUBECONFIG_FILE" "$PODS" "$kind" "$NODES"
  server_rss=$(awk '/VmRSS/ {print $2}' /proc/$SERVER_PID/status)
  echo "        rkube server RSS after the run (API server + scheduler + store): $((server_rss / 1024)) MiB"
  stop_server
done
