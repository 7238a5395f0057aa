#!/usr/bin/env bash
# Node agent benchmark (issue 6): pod startup latency (create -> Running,
# image present) p50/p90/p99 over 50 pods created one after another and 50
# created at once, next to `ctr run` of the same container on the agent's
# own containerd (the ratio is rkube's overhead), and the agent's RSS idle
# and with 50 pods.
#
#   bench/agent.sh                       50 pods per round, 20 ctr runs
#   BENCH_PODS=100 BENCH_CTR=50 bench/agent.sh
#
# Needs root, containerd, runc, ctr, busybox-static and the CNI plugins
# (scripts/setup); says "skipping: ..." otherwise. Starts a release
# `rkube server --disable-agent` and a separate `rkube agent` on temp data
# dirs and removes all it started at the end. Prints figures only; nothing
# here asserts timings. The code is crates/rkube/benches/agent.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rkube/target}
cargo build --release -q -p rkube
cargo bench -q -p rkube --bench agent
