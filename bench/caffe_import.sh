#!/usr/bin/env bash
# Import speed of a full-size Caffe AlexNet (the aim: under 2 s): the median
# wall time, and CPU time (user + system: what waiting for a core on a busy
# machine does not inflate), of REPEATS runs of
#   imgret import caffe alexnet.caffemodel --mean ... --labels ... -o out.imgret
# for the 2014 V1 and the current format (synthetic files with bvlc_alexnet's
# shapes, bench/caffe_import.py), beside a floor measured in the same run:
# cp of the same file plus fsync (read 233 MB, write 233 MB durably), which
# an importer that writes its output durably cannot beat.
#
#   bash bench/caffe_import.sh [BUILD_DIR] [REPEATS]   (default build/release, 5)
#   IMGRET_BIN=/other/imgret bash bench/caffe_import.sh   times that binary
#                                     (e.g. an older build) and builds nothing
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
repeats=${2:-5}
imgret=${IMGRET_BIN:-$build/cli/imgret}
if [ -z "${IMGRET_BIN:-}" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j2 --target imgret >/dev/null
fi
# The inputs are generated once and kept (about 490 MB); outputs go to a
# scratch folder on the same filesystem.
data=${TMPDIR:-/tmp}/imgret-bench-caffe-data
if [ ! -s "$data/synset_words.txt" ]; then
  echo "caffe import bench: generating the inputs in $data" >&2
  /usr/bin/python3 bench/caffe_import.py "$data"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/imgret-bench-caffe-XXXXXX")
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
timed() { # prints "wall_s cpu_s" (cpu: user + system) of "$@"
  /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >/dev/null
  awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$work/time"
}

echo "$imgret; machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "| %-20s | %12s | %12s | %12s | %s |\n" "input" "imgret wall s" "imgret CPU s" \
  "cp+fsync s" "runs (imgret wall)"
printf "|%s|%s|%s|%s|%s|\n" "----------------------" "--------------" "--------------" \
  "--------------" "---"
for fmt in v1 new; do
  src=$data/alexnet_$fmt.caffemodel
  walls=() cpus=() floor=()
  for r in $(seq "$repeats"); do
    read -r w c < <(timed "$imgret" import caffe "$src" --mean "$data/imagenet_mean.binaryproto" \
                      --labels "$data/synset_words.txt" -o "$work/out.imgret")
    walls+=("$w") cpus+=("$c")
    read -r w c < <(timed sh -c 'cp "$1" "$2" && sync -d "$2"' cp_sync "$src" "$work/copy.caffemodel")
    floor+=("$w")
    rm -f "$work/out.imgret" "$work/copy.caffemodel"
  done
  mb=$(( $(stat -c %s "$src") / 1000000 ))
  printf "| %-20s | %12.2f | %12.2f | %12.2f | %s|\n" "$fmt format, $mb MB" \
    "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${cpus[@]}" | median)" \
    "$(printf '%s\n' "${floor[@]}" | median)" "$(printf '%.2f ' "${walls[@]}")"
done
