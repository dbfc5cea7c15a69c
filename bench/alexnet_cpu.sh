#!/usr/bin/env bash
# The paper's AlexNet on CPU: imgret beside PyTorch (Debian's python3-torch),
# same run, same machine, same thread count.
#
#   bench/alexnet_cpu.sh [REPS [ROUNDS]]
#
# Each round runs both sides once, each timing every figure over REPS calls
# (batch 1: 3 x REPS) after two warm-up calls and printing its median; the
# rounds alternate which side goes first, and the table gives, per figure and
# side, the median over the rounds. This machine's memory bandwidth moves
# with its neighbours' load (batch 1's fully connected layers stream 234 MB
# of weights: fc6 took 2.0 to 3.2 ms within minutes), so the two sides are
# measured in short turns rather than one after the other.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
rounds=${2:-5}
threads=${THREADS:-$(nproc)}
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target bench_alexnet_cpu >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "paper AlexNet (227x227, groups, LRN), $threads threads, $rounds rounds alternating the sides, each the median of $reps calls (batch 1: $((reps * 3)))"
ours() { OMP_NUM_THREADS=$threads build/release/bench/bench_alexnet_cpu "$reps" | sed "s/^/imgret $r /"; }
peer() { /usr/bin/python3 bench/alexnet_cpu_torch.py "$reps" "$threads" | sed "s/^/pytorch $r /"; }
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then ours; peer; else peer; ours; fi
done | tee "$out/rounds"
echo
/usr/bin/python3 - "$out/rounds" <<'EOF'
import statistics, sys
vals = {}
order = []
for line in open(sys.argv[1]):
    side, _, fig, v = line.split()
    if fig not in order:
        order.append(fig)
    vals.setdefault((side, fig), []).append(float(v))
print(f"| {'figure':<16} | {'imgret':>10} | {'pytorch':>10} | {'ratio':<22} | {'per-round ratios':<32} |")
print(f"|{'-' * 18}|{'-' * 12}|{'-' * 12}|{'-' * 24}|{'-' * 34}|")
for fig in order:
    a, b = vals[("imgret", fig)], vals[("pytorch", fig)]
    ma, mb = statistics.median(a), statistics.median(b)
    kind = "latency, lower" if fig.endswith("_ms") else "speed, higher"
    each = " ".join(f"{x / y:.2f}" for x, y in zip(a, b))
    print(f"| {fig:<16} | {ma:>10.2f} | {mb:>10.2f} | {f'{ma / mb:.2f}x ({kind})':<22} | {each:<32} |")
EOF
