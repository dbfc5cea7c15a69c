#!/usr/bin/env bash
# The paper's AlexNet on CPU: imgret beside PyTorch (Debian's python3-torch),
# same run, same machine, same thread count. Usage: bench/alexnet_cpu.sh [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-7}
threads=${THREADS:-$(nproc)}
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target bench_alexnet_cpu >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "paper AlexNet (227x227, groups, LRN), $threads threads, median of $reps runs (batch 1: $((reps * 3)))"
OMP_NUM_THREADS=$threads build/release/bench/bench_alexnet_cpu "$reps" | tee "$out/imgret"
/usr/bin/python3 bench/alexnet_cpu_torch.py "$reps" "$threads" | sed 's/^/torch /' | tee "$out/torch"
echo
awk '
  FNR == NR { ours[$1] = $2; order[n++] = $1; next }
  { peer[$2] = $3 }
  END {
    printf "| %-16s | %10s | %10s | %-22s |\n", "figure", "imgret", "pytorch", "ratio"
    printf "|------------------|------------|------------|------------------------|\n"
    for (i = 0; i < n; i++) {
      f = order[i]
      if (f ~ /_ms$/) r = sprintf("%.2fx (latency, lower)", ours[f] / peer[f])
      else r = sprintf("%.2fx (speed, higher)", ours[f] / peer[f])
      printf "| %-16s | %10s | %10s | %-22s |\n", f, ours[f], peer[f], r
    }
  }' "$out/imgret" "$out/torch"
