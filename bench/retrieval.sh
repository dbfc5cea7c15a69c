#!/usr/bin/env bash
# The retrieval table of docs/retrieval.md: FC7 of the Fashion-MNIST model
# for the 60,000 training images (database) and the 10,000 test images
# (queries), autoencoders at 32/64/256 bits, then imgret eval-retrieval
# (raw pixels, FC7, AE, ITQ, LSH, two-stage) and the precision-recall plot.
#
# usage: bench/retrieval.sh MODEL OUTDIR [AE_LIMIT]
#   AE_LIMIT: training rows per autoencoder (default 10000: more training
#   rows or epochs lowered the mAP, docs/retrieval.md)
# The autoencoders (imgret ae-train's defaults, spelt out): L2-normalised FC7
# with one common scale, code balance term 0.03, lr 0.0001, up to 8 epochs
# with the noise (std 4) ramped in over 6, keeping the epoch whose codes rank
# the last 2,000 training images best against the first 10,000 (about 20
# seconds each on 2 cores); the recipe was chosen on validation splits of the
# training images (docs/retrieval.md), never on the test queries.
set -euo pipefail
MODEL=$1
OUT=$2
AE_LIMIT=${3:-10000}
IMGRET=${IMGRET:-build/release/cli/imgret}
mkdir -p "$OUT"
# What the extraction runs on (bench/cpuinfo.h): bench_cpuinfo of imgret's build.
cpuinfo=${CPUINFO:-$(dirname "$IMGRET")/../bench/bench_cpuinfo}
if [ -x "$cpuinfo" ]; then "$cpuinfo"; else echo "no $cpuinfo (target bench_cpuinfo; or CPUINFO=)" >&2; fi
# Both extractions resume where an interrupted run stopped.
"$IMGRET" extract --model "$MODEL" --data fashion-mnist-test -o "$OUT/test.feat"
"$IMGRET" extract --model "$MODEL" --data fashion-mnist -o "$OUT/train.feat"
for bits in 32 64 256; do
  [ -f "$OUT/ae$bits.imgret" ] ||
    "$IMGRET" ae-train --features "$OUT/train.feat" -o "$OUT/ae$bits.imgret" --bits "$bits" \
      --hidden 512,128 --epochs 8 --noise-ramp 6 --lr 0.0001 --standardise global \
      --normalise l2 --balance 0.03 \
      --limit "$AE_LIMIT" --val-rows 2000
done
"$IMGRET" eval-retrieval --db "$OUT/train.feat" --queries "$OUT/test.feat" \
  --ae 32="$OUT/ae32.imgret" --ae 64="$OUT/ae64.imgret" --ae 256="$OUT/ae256.imgret" \
  --csv "$OUT/pr.csv" -o "$OUT/table.md"
/usr/bin/python3 "$(dirname "$0")/plot_pr.py" "$OUT/pr.csv" "$OUT/pr.png"
cat "$OUT/table.md"
