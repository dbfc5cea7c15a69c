#!/usr/bin/env bash
# GPU benchmark: the paper's grouped AlexNet with LRN on one GPU,
# fp32 with TF32 off in both (IMGRET_CUDA_TF32 unset; PyTorch allow_tf32 off):
# a training step at batch 128, inference at batch 1 and 256; imgret beside
# PyTorch eager (bench/alexnet_gpu_peer.py) in the same run on the same GPU,
# then the measured ceilings and the floor they give. As in PyTorch's own
# benchmarks the batch stays on the GPU for the three main figures (imgret
# --resident, the peer's device tensors); a fourth row times the training
# step with the batch copied from (pageable) host memory each step, on both
# sides, as a training loop that reads its batches on the host does.
#
#   bash bench/alexnet_gpu.sh            # gpu:0, 20 timed passes each
#   DEVICE=gpu:1 ITERS=50 bash bench/alexnet_gpu.sh
#   IMGRET=path/to/imgret PYTHON=python3 bash bench/alexnet_gpu.sh
#   LAYERS=0 bash bench/alexnet_gpu.sh   # without the per-layer breakdown
#
# Needs a CUDA build (cmake -DIMGRET_CUDA=ON) in $BUILD, or its imgret in
# $IMGRET (scripts/gpu_check.sh passes the bundled one), and python3 with a
# CUDA PyTorch. WARMUP (default 5) untimed passes precede each figure in both.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/release}
DEVICE=${DEVICE:-gpu:0}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-5}
PY=${PYTHON:-python3}
IMGRET=${IMGRET:-$BUILD/cli/imgret}
if [ ! -x "$IMGRET" ]; then
  echo "no $IMGRET: cmake -S . -B $BUILD -DCMAKE_BUILD_TYPE=Release -DIMGRET_CUDA=ON && cmake --build $BUILD -j" >&2
  exit 1
fi
if ! [[ $ITERS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ ]]; then
  echo "alexnet_gpu.sh: ITERS must be a positive and WARMUP a non-negative integer (got '$ITERS', '$WARMUP')" >&2
  exit 2
fi
unset IMGRET_CUDA_TF32

ours() { # prints img/s of one figure
  local out v
  if ! out=$("$IMGRET" forward --net alexnet --device "$DEVICE" --iters "$ITERS" --warmup "$WARMUP" "$@"); then
    echo "alexnet_gpu.sh: '$IMGRET forward $*' on $DEVICE failed (its message above)" >&2
    return 1
  fi
  echo "$out" >&2
  v=$(echo "$out" | sed -n 's/.*, \([0-9.]*\) img\/s$/\1/p')
  if [ -z "$v" ]; then
    echo "alexnet_gpu.sh: no 'N img/s' line from imgret forward $*" >&2
    return 1
  fi
  echo "$v"
}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader || true
i_train=$(ours --batch 128 --train --resident)
i_inf1=$(ours --batch 1 --resident)
i_inf256=$(ours --batch 256 --resident)
i_train_up=$(ours --batch 128 --train)
if ! peer=$("$PY" bench/alexnet_gpu_peer.py --iters "$ITERS" --warmup "$WARMUP" --device "cuda:${DEVICE#gpu:}"); then
  echo "alexnet_gpu.sh: the PyTorch peer ($PY bench/alexnet_gpu_peer.py) failed (its message above)" >&2
  exit 1
fi
echo "$peer" | grep -E '^peer_(version|settings)' || true
val() { echo "$peer" | awk -v k="$1" '$1 == k {print $2}'; }

printf '\n| figure (img/s, fp32, TF32 off) | imgret | peer (PyTorch eager) | ratio imgret/peer | floor |\n'
printf '|---|---|---|---|---|\n'
row() {
  local p; p=$(val "$2")
  awk -v n="$1" -v a="$3" -v b="$p" -v f="$(val "floor_$2")" \
    'BEGIN { printf "| %s | %.1f | %.1f | %.2f | %s |\n", n, a, b, (b > 0 ? a / b : 0), (f == "" ? "-" : sprintf("%.0f", f)) }'
}
row "training step, batch 128" train128 "$i_train"
row "inference, batch 1" infer1 "$i_inf1"
row "inference, batch 256" infer256 "$i_inf256"
row "training step, batch 128, batch uploaded each step" train128_upload "$i_train_up"
printf '\nceilings measured in this run: fp32 matmul %s TFLOP/s, copy %s GB/s; net %s GFLOP per image forward\n' \
  "$(val ceiling_fp32_tflops)" "$(val ceiling_copy_gbs)" "$(val net_gflop_per_image)"

# Where the time goes, for speed work after this run (not part of the table:
# these passes wait for the device after every layer). imgret: each layer's
# forward and backward in the training step at batch 128, and the cuDNN
# algorithm chosen for each convolution; the peer: each module's forward.
if [ "${LAYERS:-1}" = 1 ]; then
  printf '\n-- imgret per layer, training step batch 128 (IMGRET_CUDNN_LOG=1: the algorithms)\n'
  IMGRET_CUDNN_LOG=1 "$IMGRET" forward --net alexnet --device "$DEVICE" --iters "$ITERS" \
    --warmup "$WARMUP" --batch 128 --train --resident --layers 2>&1 || true
  printf '\n-- PyTorch per module, forward at batch 128 (train mode)\n'
  "$PY" bench/alexnet_gpu_peer.py --iters "$ITERS" --warmup "$WARMUP" \
    --device "cuda:${DEVICE#gpu:}" --layers 2>&1 || true
fi
