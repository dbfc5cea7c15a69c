#!/usr/bin/env bash
# The index benchmark: imgret's index module (bench_index) beside the same
# FAISS indexes driven directly from Python (Debian's python3-faiss), on the
# same data, in one run on this machine. Ends with the table
# figure | imgret | peer | ratio (imgret / peer).
#
#   bash bench/index.sh [BUILD_DIR]     (default build/release; TMPDIR for data)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_index >/dev/null
data=${TMPDIR:-/tmp}/imgret-bench-index-data
work=$(mktemp -d "${TMPDIR:-/tmp}/imgret-bench-index-XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ ! -s "$data/fc7_q.f32" ]; then
  mkdir -p "$data"
  echo "index bench: generating data in $data" >&2
  /usr/bin/python3 bench/index_peer.py gen "$data"
fi
echo "index bench: imgret" >&2
"$build/bench/bench_index" "$data" "$work" | tee "$work/imgret.txt" >&2
nprobe=$(awk '$1 == "ivf_nprobe" { print $2 }' "$work/imgret.txt")
echo "index bench: peer (python3-faiss), IVF nprobe $nprobe" >&2
/usr/bin/python3 bench/index_peer.py run "$data" "$nprobe" | tee "$work/peer.txt" >&2
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
awk 'NR == FNR { peer[$1] = $2; next }
     BEGIN { printf "| %-22s | %12s | %12s | %7s |\n", "figure", "imgret", "peer", "ratio";
             printf "|%s|%s|%s|%s|\n", "------------------------", "--------------", "--------------", "---------" }
     { p = ($1 in peer) ? peer[$1] : ""
       r = (p != "" && p + 0 != 0) ? sprintf("%.3f", $2 / p) : "-"
       printf "| %-22s | %12s | %12s | %7s |\n", $1, $2, (p == "" ? "-" : p), r }' \
  "$work/peer.txt" "$work/imgret.txt"
