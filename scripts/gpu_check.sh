#!/usr/bin/env bash
# The GPU checks (the CUDA backend against the CPU one, and its benchmark) in
# one command, for a lent GPU machine that has CUDA, PyTorch and its pip CUDA
# libraries but none of our Debian libraries.
# Runs the binaries that scripts/gpu_bundle.sh packed into .gpu/ here:
#
#   device run: carry [".gpu"], command "bash scripts/gpu_check.sh", timeout_s 540
#
# Steps, each under its own timeout and all inside GPU_CHECK_BUDGET seconds
# (default 470), each going on after a failure: the libraries (fails early if
# one is missing), a forward pass on gpu:0 beside the CPU, test_gpu (fp32),
# the benchmark (bench/alexnet_gpu.sh), test_gpu with IMGRET_CUDA_TF32=1,
# test_columns. Logs and summary.txt go to $OUT (the device tool's folder),
# or to out/gpu-check here; the summary is printed last.
#
# Settings: GPU_BUNDLE (the .tar.xz), GPU_CHECK_CUDA_DIRS (colon-separated
# CUDA library folders instead of the ones found), PYTHON, ITERS (benchmark
# passes, default 20), GPU_CHECK_BUDGET.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUTDIR=${OUT:-$ROOT/out/gpu-check}
BUNDLE=${GPU_BUNDLE:-$ROOT/.gpu/imgret-gpu.tar.xz}
BUDGET=${GPU_CHECK_BUDGET:-470}
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
mkdir -p "$OUTDIR"
rm -f "$OUTDIR"/*.log "$OUTDIR/summary.txt"
ENVLOG=$OUTDIR/env.log

STEPS=()
note() { echo "$*" | tee -a "$ENVLOG"; }
record() { # name result seconds log
  STEPS+=("$(printf '%-22s %-8s %5ss  %s' "$1" "$2" "$3" "$4")")
}

summary() {
  {
    echo "== gpu_check summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(($(date +%s) - T0)) s in all)"
    echo "bundle: $(sed -n 's/^commit: //p' "$WORK/MANIFEST.txt" 2>/dev/null || echo '?')"
    echo "gpu: ${GPU_NAME:-none found}"
    if [ -n "${VERSIONS:-}" ]; then echo "loaded: $VERSIONS"; fi
    if [ -n "${STALE:-}" ]; then echo "$STALE"; fi
    if [ -n "${UNDEFINED:-}" ]; then printf '%s' "$UNDEFINED"; fi
    printf '%s\n' "${STEPS[@]}"
    if [ -f "$OUTDIR/bench.log" ] && grep -q '^|' "$OUTDIR/bench.log"; then
      echo "-- benchmark (bench.log)"
      grep -E '^\||^ceilings|^peer_version' "$OUTDIR/bench.log"
    fi
    for l in forward.log test_gpu.log bench.log test_gpu_tf32.log test_columns.log; do
      [ -f "$OUTDIR/$l" ] || continue
      f=$(grep -E '^FAIL |^SKIP|check failed|^imgret [a-z]*: |^alexnet_gpu|Error|^== .*: (fail|timeout)' \
        "$OUTDIR/$l" | head -4 || true)
      if [ -n "$f" ]; then printf -- '-- %s (first 4 notable lines)\n%s\n' "$l" "$f"; fi
    done
    echo "logs: $OUTDIR/{env,forward,test_gpu,bench,test_gpu_tf32,test_columns}.log"
  } | tee "$OUTDIR/summary.txt"
}

# --- the bundle -------------------------------------------------------------
: >"$ENVLOG"
if [ ! -f "$BUNDLE" ]; then
  note "gpu_check: no $BUNDLE: run 'bash scripts/gpu_bundle.sh' on the build machine and carry .gpu"
  WORK=/nonexistent
  record bundle fail 0 env.log
  summary
  exit 1
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgret-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if command -v xz >/dev/null 2>&1; then
  tar -C "$WORK" -xJf "$BUNDLE"
else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$BUNDLE" "$WORK"
fi
BIN=$WORK/bin
IMGRET=$BIN/imgret
note "== bundle $BUNDLE, unpacked in $WORK"
cat "$WORK/MANIFEST.txt" >>"$ENVLOG"
# Sources changed since the bundle was built: its binaries may be stale.
changed=$( (cd "$ROOT" && sha256sum --quiet -c "$WORK/sources.sha256" 2>/dev/null) | cut -d: -f1 || true)
if [ -n "$changed" ]; then
  STALE="WARNING: $(echo "$changed" | wc -l) source file(s) differ from the bundle's build (rebuild with scripts/gpu_bundle.sh): $(echo "$changed" | head -3 | tr '\n' ' ')"
  note "$STALE"
else
  note "sources: the tree matches the bundle's build"
fi

# --- python (PyTorch) and the CUDA libraries ----------------------------------
PY=""
for p in ${PYTHON:-} python3 /opt/torch/.venv/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then
    PY=$(command -v "$p")
    break
  fi
done
[ -n "$PY" ] || PY=$(command -v python3 || echo python3)
note "python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1))"

# The pip packages' library folders (nvidia/cu13/lib, nvidia/cudnn/lib,
# nvidia/nccl/lib, ...: whatever holds lib*.so* under the nvidia namespace),
# then the toolkit's. Our own libraries are found through the binaries' RPATH
# and stay out of LD_LIBRARY_PATH, which PyTorch (the benchmark's peer) sees.
if [ -n "${GPU_CHECK_CUDA_DIRS:-}" ]; then
  CUDA_DIRS=$GPU_CHECK_CUDA_DIRS
else
  CUDA_DIRS=$("$PY" - <<'EOF' 2>/dev/null || true
import os, site, sys
roots = []
try:
    import nvidia
    roots += list(nvidia.__path__)
except Exception:
    pass
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    roots.append(os.path.join(sp, "nvidia"))
seen, dirs = set(), []
for r in roots:
    r = os.path.realpath(r)
    if r in seen or not os.path.isdir(r):
        continue
    seen.add(r)
    for dp, dn, fn in os.walk(r):
        dn.sort()
        if dp[len(r):].count(os.sep) >= 3:
            dn[:] = []
        if any(f.startswith("lib") and ".so" in f for f in fn) and dp not in dirs:
            dirs.append(dp)
print(":".join(dirs))
EOF
  )
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && CUDA_DIRS=${CUDA_DIRS:+$CUDA_DIRS:}$d
  done
fi
# Kept behind them: what the machine set (the driver's folder, say).
LD_LIBRARY_PATH=$CUDA_DIRS${LD_LIBRARY_PATH:+${CUDA_DIRS:+:}$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
note "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# --- ldd: fail early on a missing library -------------------------------------
missing=""
UNDEFINED=""
for b in "$BIN"/*; do
  note "== ldd -r $(basename "$b")"
  out=$(ldd -r "$b" 2>&1 || true)
  echo "$out" | tee -a "$ENVLOG"
  m=$(echo "$out" | grep -E 'not found' || true)
  [ -z "$m" ] || missing+="$(basename "$b"): $(echo "$m" | tr -s '\t\n ' ' ')"$'\n'
  # An undefined symbol of our own binary (a cuDNN/cuBLAS/NCCL older than the
  # one we compiled against, lacking a function) fails only at its first
  # call: said here and in the summary, the steps still run.
  u=$(echo "$out" | grep -F "undefined symbol" | grep -F "($b)" || true)
  if [ -n "$u" ]; then
    UNDEFINED+="WARNING: $(basename "$b"): $(echo "$u" | head -3 | tr -s '\t\n ' ' ')"$'\n'
  fi
done
if [ -n "$UNDEFINED" ]; then note "$UNDEFINED"; fi
if [ -n "$missing" ]; then
  note "gpu_check: FAIL: libraries or symbols not found:"
  note "$missing"
  note "Add the library to the bundle (scripts/gpu_bundle.sh) or its folder to the CUDA folders above; nothing else ran."
  record ldd fail 0 env.log
  summary
  exit 1
fi
record ldd pass 0 env.log

note "== nvidia-smi"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi 2>&1 | tee -a "$ENVLOG" || true
  GPU_NAME=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)
else
  note "no nvidia-smi here"
fi

# The versions of the CUDA libraries the binaries resolve to, read from the
# libraries themselves.
note "== CUDA library versions (the files ldd resolves for imgret)"
VERSIONS=$(ldd "$IMGRET" | awk '$2 == "=>" && $1 ~ /^lib(cudart|cublas|cudnn|nccl)\.so/ {print $3}' |
  "$PY" -c '
import ctypes, os, sys
out = []
for path in sys.stdin.read().split():
    name = os.path.basename(path)
    try:
        lib = ctypes.CDLL(path)
        v = ctypes.c_int(0)
        if name.startswith("libcudnn"):
            lib.cudnnGetVersion.restype = ctypes.c_size_t
            n = lib.cudnnGetVersion()
            out.append("cuDNN %d.%d.%d" % (n // 10000, n // 100 % 100, n % 100))
        elif name.startswith("libcublas"):
            p = []
            for t in range(3):
                lib.cublasGetProperty(t, ctypes.byref(v))
                p.append(v.value)
            out.append("cuBLAS %d.%d.%d" % tuple(p))
        elif name.startswith("libcudart"):
            lib.cudaRuntimeGetVersion(ctypes.byref(v))
            r = v.value
            lib.cudaDriverGetVersion(ctypes.byref(v))
            out.append("CUDA runtime %d.%d (driver supports %d.%d)" % (r // 1000, r % 1000 // 10, v.value // 1000, v.value % 1000 // 10))
        elif name.startswith("libnccl"):
            lib.ncclGetVersion(ctypes.byref(v))
            n = v.value
            out.append("NCCL %d.%d.%d" % (n // 10000, n // 100 % 100, n % 100))
    except Exception as e:
        out.append("%s: %s" % (name, e))
print(", ".join(out))
' 2>&1 || true)
note "$VERSIONS"
# Every library a GPU forward pass loads, dlopen'd ones (cuDNN's engines, the
# driver) included.
rm -f "$WORK"/lddebug.*
timeout 60 env LD_DEBUG=libs LD_DEBUG_OUTPUT="$WORK/lddebug" "$IMGRET" forward --net alexnet-small \
  --device gpu:0 >/dev/null 2>&1 || true
note "== libraries loaded by 'imgret forward --net alexnet-small --device gpu:0'"
cat "$WORK"/lddebug.* 2>/dev/null | sed -n 's/.*calling init: //p' | sort -u | tee -a "$ENVLOG" || true

# --- the steps ----------------------------------------------------------------
# run_step NAME LOG CAP_SECONDS COMMAND...: under timeout, output into LOG;
# exit 0 pass, 77 skip (test_gpu without a GPU), 124/137 timeout, else fail.
run_step() {
  local name=$1 log=$OUTDIR/$2 cap=$3 rc t0 left t result
  shift 3
  t0=$(date +%s)
  left=$((DEADLINE - t0))
  if [ "$left" -lt 20 ]; then
    record "$name" skip 0 "no time left in GPU_CHECK_BUDGET=$BUDGET"
    return 0
  fi
  t=$((cap < left ? cap : left))
  echo "== $name: $* (timeout ${t}s)" | tee -a "$log"
  set +e
  timeout -k 10 "$t" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  set -e
  case $rc in
    0) result=pass ;;
    77) result=skip ;;
    124 | 137) result=timeout ;;
    *) result="fail($rc)" ;;
  esac
  echo "== $name: $result, exit $rc, $(($(date +%s) - t0)) s" | tee -a "$log"
  record "$name" "$result" $(($(date +%s) - t0)) "$(basename "$log")"
}

# A forward pass of the paper's net on gpu:0 and on the CPU (same weights and
# input; their top-5 should agree), then a few training steps of the small
# net on gpu:0.
# shellcheck disable=SC2317 # called through bash -c, under timeout
forward_checks() {
  local rc=0 g c
  g=$("$IMGRET" forward --net alexnet --device gpu:0 --batch 8) || rc=1
  echo "$g"
  c=$("$IMGRET" forward --net alexnet --device cpu --batch 8) || rc=1
  echo "$c"
  if [ "$rc" -eq 0 ]; then
    if [ "$(echo "$g" | grep -o 'top-5 classes.*' | sed 's/([0-9.]*)//g')" = \
      "$(echo "$c" | grep -o 'top-5 classes.*' | sed 's/([0-9.]*)//g')" ]; then
      echo "top-5 classes: gpu:0 and cpu agree"
    else
      echo "top-5 classes: gpu:0 and cpu DIFFER"
    fi
  fi
  "$IMGRET" forward --net alexnet-small --device gpu:0 --batch 64 --iters 5 --warmup 2 --train || rc=1
  return "$rc"
}
export -f forward_checks
export IMGRET

run_step forward forward.log 90 bash -c forward_checks
run_step test_gpu test_gpu.log 150 "$BIN/test_gpu"
run_step bench bench.log 220 env IMGRET="$IMGRET" PYTHON="$PY" ITERS="${ITERS:-20}" bash bench/alexnet_gpu.sh
run_step test_gpu_tf32 test_gpu_tf32.log 120 env IMGRET_CUDA_TF32=1 "$BIN/test_gpu"
run_step test_columns test_columns.log 90 env OMP_WAIT_POLICY=passive "$BIN/test_columns"

summary
for s in "${STEPS[@]}"; do
  case $s in *" fail"* | *" timeout"*) exit 1 ;; esac
done
exit 0
