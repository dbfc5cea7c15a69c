#!/usr/bin/env bash
# The index benchmark: imgret's index module (bench_index) beside the same
# FAISS indexes driven directly from Python (Debian's python3-faiss), on the
# same data, in one run on this machine. Ends with the table
# figure | imgret | peer | ratio (imgret / peer).
#
# Both sides run with the same OpenBLAS (Debian's OpenMP build, which imgret
# links: the peer gets it through LD_LIBRARY_PATH instead of the default
# pthreads build), the same thread counts, queries, batches and nprobe, and
# search the same IVF index (the peer reads imgret's snapshot of it). Each
# figure is timed in rounds alternating the two sides, after a warm-up
# round (bench/index_peer.py drive). The environment (OMP_WAIT_POLICY...) is
# inherited by both alike.
#
#   bash bench/index.sh [BUILD_DIR]     (default build/release; TMPDIR for data)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_index bench_cpuinfo >/dev/null
data=${TMPDIR:-/tmp}/imgret-bench-index-data
work=$(mktemp -d "${TMPDIR:-/tmp}/imgret-bench-index-XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ ! -s "$data/fc7_q.f32" ]; then
  mkdir -p "$data"
  echo "index bench: generating data in $data" >&2
  /usr/bin/python3 bench/index_peer.py gen "$data"
fi
echo "machine: $(nproc) cores, load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
# The CPU, the kernel path, OpenBLAS's core and the sgemm rate (FAISS's
# flat search is an sgemm); the net floors it prints do not apply here.
"$build/bench/bench_cpuinfo"
/usr/bin/python3 bench/index_peer.py drive "$build/bench/bench_index" "$data" "$work"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
