#!/usr/bin/env bash
# The server load bench: `imgret serve` (a small AlexNet with the paper's
# 4096-d FC7, random weights: the RPC path does not depend on the weights)
# preloaded with ITEMS vectors, then CLIENTS concurrent C clients for SECONDS
# of mixed Search (by vector, by id) and Add on loopback; then the same
# searches in-process straight into the index (FAISS), on the same store.
# Ends with the table figure | imgret | peer | ratio (imgret / peer).
#
#   bash bench/server_load.sh [SECONDS] [BUILD_DIR]   (default 60, build/release)
#   env: ITEMS (10000), CLIENTS (64), THREADS (server workers, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${2:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target imgret server_fixture bench_server_load bench_cpuinfo \
  >/dev/null
# The CPU, the kernel path, the sgemm rate and the GEMM floors (bench/
# cpuinfo.h); this load searches and adds by vector and id, so the net
# floors bound nothing in its table.
"$build/bench/bench_cpuinfo" "${THREADS:-2}"
work=$(mktemp -d "${TMPDIR:-/tmp}/imgret-bench-server-XXXXXX")
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
"$build/tests/server/server_fixture" "$work" 4096 >/dev/null
"$build/cli/imgret" serve --model "$work/model.imgret" --store "$work/store" --port 0 \
  --threads "${THREADS:-2}" --queue 256 >"$work/serve.out" 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/serve.out" && break; sleep 0.1; done
url=$(sed -n 's#^listening on \(http://[^ ]*\)/$#\1#p' "$work/serve.out")
echo "server bench: $url (pid $pid), $seconds s" >&2
"$build/bench/bench_server_load" "$url" "$pid" "$work/store" --items "${ITEMS:-10000}" \
  --clients "${CLIENTS:-64}" --seconds "$seconds"
wait $pid || true
