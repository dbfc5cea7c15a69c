#!/usr/bin/env bash
# FC7 extraction throughput, JPEG decode included, on the paper's AlexNet
# (227x227x3, groups, LRN): `imgret extract` beside PyTorch (torchvision
# decode and resize in DataLoader workers, the same net), same photos, batch
# and thread count, same run. Usage: bench/extract.sh [N] [REPS]
#   N     photos (default 256), generated once under build/bench-extract/
#   REPS  timed passes each side after one warm-up (default 3); medians
# Environment: THREADS (default nproc), BATCH (64), SIZE (1600x1200; every
# fourth photo is portrait), QUALITY (JPEG, 90), BUILD (build/release).
# The header (bench/cpuinfo.h, bench/torch_cpu.py) says what each side runs
# on; "of floor" is img/s over the forward pass's GEMM floor (FLOPs at the
# 2048^3 sgemm rate measured at the start on the same threads).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-256}
reps=${2:-3}
threads=${THREADS:-$(nproc)}
batch=${BATCH:-64}
size=${SIZE:-1600x1200}
quality=${QUALITY:-90}
mean=(123.68 116.78 103.94) # ImageNet's mean pixel, RGB: both sides subtract it
build=${BUILD:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target imgret bench_extract_model bench_cpuinfo >/dev/null
work=build/bench-extract
photos=$work/photos-$size-q$quality
model=$work/alexnet-random.imgret
mkdir -p "$work"
[ -f "$model" ] || "$build/bench/bench_extract_model" "$model" "${mean[@]}"
kib=$(/usr/bin/python3 bench/extract_photos.py "$photos" "$n" "$size" "$quality")
list=$photos/list-$n.txt
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "paper AlexNet (227x227x3, groups, LRN, random weights), FC7 after ReLU; $n JPEGs of" \
  "$size (every 4th portrait), quality $quality, $kib KiB average; batch $batch, $threads threads" \
  "each side; median of $reps passes after one warm-up; load average at start:" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "imgret: $threads decode threads (--threads) + OMP_NUM_THREADS=$threads;" \
  "pytorch: DataLoader num_workers=$threads + torch.set_num_threads($threads)"
OMP_NUM_THREADS=$threads "$build/bench/bench_cpuinfo" "$threads" | tee "$out/cpuinfo"
/usr/bin/python3 bench/torch_cpu.py "$threads"
floor=$(sed -n 's/^floor infer_b64_img_s: //p' "$out/cpuinfo")

# imgret: the whole `imgret extract` command into a fresh feature file. Its
# figure is the extraction time it reports (from after the model is loaded
# and the net built until the last batch is committed, decode and per-batch
# fsync included); the whole command's wall time is shown beside it.
imgret_pass() {
  rm -f "$out/imgret.feat"
  local t0 t1
  t0=$(date +%s.%N)
  OMP_NUM_THREADS=$threads "$build/cli/imgret" extract --model "$model" --images "$list" \
    -o "$out/imgret.feat" --batch "$batch" --threads "$threads" 2>"$out/imgret.log" ||
    { cat "$out/imgret.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  # The summary gives seconds to 0.1 and the last progress line img/s to 1:
  # take whichever is the finer for this run.
  awk -v n="$n" -v t0="$t0" -v t1="$t1" '
    /^extract [0-9]+\/[0-9]+ rows/ { for (i = 1; i < NF; i++) if ($(i + 1) == "img/s") rate = $i }
    /^extract: .* rows of .* new, .* skipped\) in / {
      s = $0; sub(/.*\(/, "", s); split(s, f, /[ ,)]+/); fresh = f[1]; skipped = f[3]
      secs = $(NF - 1)
    }
    END {
      if (fresh != n || skipped != 0) { print "imgret: " fresh " rows, " skipped " skipped of " n > "/dev/stderr"; exit 1 }
      if (rate == 0 || (secs > 0 && 0.05 / secs < 0.5 / rate)) rate = fresh / secs
      printf "%.2f %.3f\n", rate, t1 - t0
    }' "$out/imgret.log"
}

: >"$out/imgret"
for r in $(seq 0 "$reps"); do
  read -r rate wall < <(imgret_pass)
  [ -n "$rate" ] || exit 1
  [ "$r" -eq 0 ] && tag=" (warm-up)" || tag=""
  echo "imgret pass $r$tag: $rate img/s; whole command $wall s" >&2
  [ "$r" -eq 0 ] || echo "$rate $wall" >>"$out/imgret"
done
/usr/bin/python3 bench/extract_torch.py "$list" "$batch" "$threads" "$reps" "${mean[@]}" \
  >"$out/torch"
echo
sort -n "$out/imgret" | awk -v peer="$(awk '$1 == "extract_img_s" { print $2 }' "$out/torch")" \
  -v floor="$floor" '
  { rate[NR] = $1; wall[NR] = $2 }
  END {
    m = NR % 2 ? rate[(NR + 1) / 2] : (rate[NR / 2] + rate[NR / 2 + 1]) / 2
    printf "| %-13s | %10s | %10s | %-22s | %8s | %15s | %16s |\n", "figure", "imgret", "pytorch",
      "ratio", "floor", "imgret of floor", "pytorch of floor"
    printf "|---------------|------------|------------|------------------------|----------|-----------------|------------------|\n"
    printf "| %-13s | %10.1f | %10.1f | %-22s | %8.1f | %15.2f | %16.2f |\n", "extract img/s", m,
      peer, sprintf("%.2fx (speed, higher)", m / peer), floor, m / floor, peer / floor
  }'
echo "imgret whole command (process start, model load, extraction, close), median:" \
  "$(sort -n -k2 "$out/imgret" | awk '{ w[NR] = $2 } END { print (NR % 2 ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2) }') s"
