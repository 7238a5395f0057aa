#!/usr/bin/env bash
# Networking benchmarks (issue 7):
#   - cluster DNS: UDP queries/s and latency of the DNS server's query path
#     with 1,000 Services (crates/net/benches/dns.rs; no root needed);
#   - service proxy: TCP connections/s from the host to a busybox httpd pod
#     through its Service's ClusterIP next to its pod IP; the ratio is the
#     proxy's overhead (crates/rkube/benches/net.rs: starts a release
#     `rkube server` with its local node on a temp data dir, own bridge and
#     ranges; removes all it started at the end).
#
#   bench/net.sh
#   BENCH_SECONDS=3 BENCH_WORKERS=8 bench/net.sh
#
# The proxy part needs root, containerd, runc, ctr, busybox-static, the CNI
# plugins and nft (scripts/setup) and says "skipping: ..." otherwise. The
# time to program 1,000 Services x 10 endpoints is the proxy bench:
# `cargo bench -p rkube-net --bench proxy`. Prints figures only; nothing
# here asserts timings. BENCH_* variables: see the two files.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rkube/target}
cargo build --release -q -p rkube
# BENCH_SECONDS means per round in both; the DNS default is 10 s.
cargo bench -q -p rkube-net --bench dns
cargo bench -q -p rkube --bench net
