#!/usr/bin/env bash
# AlexNet on CPU: imgret beside PyTorch (Debian's python3-torch), same run,
# same machine, same thread count — the paper's net (inference at batch 1
# and 64, the training step at batch 32) and the demo's alexnet-small
# (1x28x28, the training step at batch 128).
#
#   bench/alexnet_cpu.sh [REPS [ROUNDS]]
#   env: THREADS (default nproc), BUILD (build folder, default build/release)
#
# The AVX2 paths of both sides on a CPU that has AVX-512:
#   IMGRET_SGEMM=avx2 OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 \
#     ONEDNN_MAX_CPU_ISA=AVX2 bash bench/alexnet_cpu.sh 5 3
# The header says what each side ran, read back from the libraries.
#
# Each round times every figure on both sides in turn, figure by figure (a
# process per side and figure), over REPS calls (batch 1: 3 x REPS) after
# two warm-up calls, printing its median; the rounds alternate which side
# goes first, and the table gives, per figure and side, the median over the
# rounds. This machine's speed moves with its neighbours' load (batch 1's
# fully connected layers stream 234 MB of weights: fc6 took 2.0 to 3.2 ms
# within minutes; a shared machine's load moves faster), so the two sides
# are measured in short turns rather than one after the other.
#
# The floor (bench/cpuinfo.h): the net's GEMM FLOPs at the better of two
# 2048^3 sgemm rates on the same threads, OpenBLAS's and imgret's own, which
# imgret measures again at the start of each round; the table's floor is the
# median over the rounds, and "of floor" is figure / floor (batch 1: floor /
# latency). It counts direct convolution's FLOPs: Winograd can pass it.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
rounds=${2:-5}
threads=${THREADS:-$(nproc)}
build=${BUILD:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_alexnet_cpu bench_cpuinfo >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=$threads "$build/bench/bench_cpuinfo" "$threads"
/usr/bin/python3 bench/torch_cpu.py "$threads"
echo "paper AlexNet (227x227, groups, LRN) and the demo's alexnet-small (1x28x28, dropout 0)," \
  "$threads threads, $rounds rounds alternating the sides, each the median of $reps calls" \
  "(batch 1: $((reps * 3)))"
ours() {
  OMP_NUM_THREADS=$threads "$build/bench/bench_alexnet_cpu" "$reps" "$1" | sed "s/^/imgret $r /"
}
peer() {
  /usr/bin/python3 bench/alexnet_cpu_torch.py "$reps" "$threads" "$1" | sed "s/^/pytorch $r /"
}
for r in $(seq 1 "$rounds"); do
  ours floor
  for fig in b1 b64 train small; do
    if [ $((r % 2)) -eq 1 ]; then ours $fig; peer $fig; else peer $fig; ours $fig; fi
  done
done | tee "$out/rounds"
echo
/usr/bin/python3 - "$out/rounds" <<'PY'
import statistics, sys
vals, floors, paths, order = {}, {}, set(), []
for line in open(sys.argv[1]):
    side, _, fig, v = line.split()
    if fig == "kernels":
        paths.add(v)
    elif fig.startswith("floor:"):
        floors.setdefault(fig[6:], []).append(float(v))
    elif fig != "sgemm_gflops":
        if fig not in order:
            order.append(fig)
        vals.setdefault((side, fig), []).append(float(v))
print(f"imgret kernel path in every round: {', '.join(sorted(paths))}")
print(f"| {'figure':<22} | {'imgret':>8} | {'pytorch':>8} | {'ratio':<22} | {'floor':>8} "
      f"| {'imgret of floor':>15} | {'pytorch of floor':>16} | {'per-round ratios':<24} |")
print(f"|{'-' * 24}|{'-' * 10}|{'-' * 10}|{'-' * 24}|{'-' * 10}|{'-' * 17}|{'-' * 18}|{'-' * 26}|")
for fig in order:
    a, b = vals[("imgret", fig)], vals[("pytorch", fig)]
    ma, mb = statistics.median(a), statistics.median(b)
    latency = fig.endswith("_ms")
    kind = "latency, lower" if latency else "speed, higher"
    each = " ".join(f"{x / y:.2f}" for x, y in zip(a, b))
    fl = statistics.median(floors[fig])
    of = (lambda m: fl / m) if latency else (lambda m: m / fl)
    print(f"| {fig:<22} | {ma:>8.2f} | {mb:>8.2f} | {f'{ma / mb:.2f}x ({kind})':<22} | {fl:>8.2f} "
          f"| {of(ma):>15.2f} | {of(mb):>16.2f} | {each:<24} |")
PY
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
