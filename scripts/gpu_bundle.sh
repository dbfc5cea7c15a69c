#!/usr/bin/env bash
# Builds the CUDA binaries here and packs them, with every shared library they
# need that the GPU machine lacks, into .gpu/ (git-ignored), for one device
# run with carry [".gpu"] and command "bash scripts/gpu_check.sh"
# (docs/gpu.md, "For the first session with a GPU").
#
#   bash scripts/gpu_bundle.sh          # JOBS=2 by default
#
# The GPU machine has the CUDA runtime, cuBLAS, cuDNN and NCCL (PyTorch's pip
# packages) and glibc >= 2.39, but none of our Debian libraries (OpenBLAS,
# TurboJPEG, libpng, SQLite, protobuf-c, libevent, OpenSSL, LAPACKE...). So:
# - the build is release, -DIMGRET_CUDA=ON, and without -march=native (the
#   GPU machine's CPU is not this one; sgemm picks AVX-512 at run time);
# - the binaries carry an old-style RPATH (DT_RPATH, --disable-new-dtags) of
#   $ORIGIN/../lib: it applies to the libraries' own dependencies too
#   (libopenblas -> libgfortran), and it keeps our libraries out of
#   LD_LIBRARY_PATH, where they would shadow newer ones for PyTorch;
# - bin/ and lib/ are staged in build/gpu/bundle/ and packed with xz into
#   .gpu/imgret-gpu.tar.xz: unpacked they are over 60 MiB (OpenBLAS alone is
#   35 MiB), more than the 64 MiB that a device run may carry with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build/gpu
STAGE=$BUILD/bundle
DEST=.gpu
JOBS=${JOBS:-2}
# What travels (tree + .gpu) must stay under the device tool's 64 MiB.
LIMIT_MIB=${LIMIT_MIB:-48}

# A fresh machine: the build's Debian packages first (quick when present).
bash scripts/deps.sh --runtime

# shellcheck disable=SC2016 # $ORIGIN is for the dynamic loader, not the shell
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DIMGRET_WERROR=ON -DIMGRET_CUDA=ON \
  -DIMGRET_NATIVE=OFF -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN/../lib' \
  -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target imgret test_gpu test_columns

BINS=("$BUILD/cli/imgret" "$BUILD/tests/gpu/test_gpu" "$BUILD/tests/test_columns")

# glibc's own libraries (the GPU machine's are newer) and the CUDA libraries
# the GPU machine provides; everything else goes into lib/.
is_provided() {
  case "$1" in
    linux-vdso.so.* | ld-linux-x86-64.so.* | libc.so.* | libm.so.* | libdl.so.* | librt.so.* | \
      libpthread.so.* | libresolv.so.* | libutil.so.* | libanl.so.*) return 0 ;;
    libcudart.so.* | libcublas.so.* | libcublasLt.so.* | libcudnn*.so.* | libnccl.so.* | \
      libcuda.so.* | libnvidia-*.so.*) return 0 ;;
  esac
  return 1
}

rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/lib"
for b in "${BINS[@]}"; do
  cp "$b" "$STAGE/bin/"
  if ldd "$b" | grep -q 'not found'; then
    ldd "$b" >&2
    echo "gpu_bundle: $b has unresolved libraries here" >&2
    exit 1
  fi
  # "soname => /path (0x...)": copy the file the soname resolves to, under
  # the soname, symlinks dereferenced.
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    is_provided "$name" && continue
    [ -e "$STAGE/lib/$name" ] || cp -L "$path" "$STAGE/lib/$name"
  done < <(ldd "$b")
done
chmod 644 "$STAGE"/lib/*

# Every library a staged binary loads must now come from lib/, from CUDA, or
# from glibc: anything else would be missing on the GPU machine.
bad=0
for b in "$STAGE"/bin/*; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    is_provided "$name" && continue
    case "$(readlink -f "$path")" in
      "$ROOT/$STAGE"/lib/*) ;;
      *)
        echo "gpu_bundle: $(basename "$b") loads $name from $path, not from the bundle" >&2
        bad=1
        ;;
    esac
  done < <(LD_LIBRARY_PATH=/usr/local/cuda/lib ldd "$b")
done
[ "$bad" -eq 0 ] || exit 1

# The newest glibc symbol version anything in the bundle needs (the GPU
# machine has >= 2.39).
glibc_max=$(for f in "$STAGE"/bin/* "$STAGE"/lib/*; do objdump -T "$f"; done |
  grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -1)

# What the binaries were built from, so that gpu_check.sh can say when the
# tree it runs in has moved on (documentation, benchmarks and scripts do not
# go into the binaries).
git ls-files -z -- . ':!*.md' ':!docs' ':!bench' ':!scripts' ':!.ci' |
  xargs -0 sha256sum >"$STAGE/sources.sha256"
ver() { sed -n "s/^#define $2 *\([0-9]*\).*/\1/p" "/usr/local/cuda/include/$1"; }
{
  echo "imgret GPU bundle"
  echo "built: $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n), $(ldd --version | head -1)"
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes')"
  echo "cmake: Release, IMGRET_CUDA=ON, IMGRET_NATIVE=OFF, RPATH \$ORIGIN/../lib (DT_RPATH)"
  echo "compiled against: CUDA $(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')," \
    "cuDNN $(ver cudnn_version.h CUDNN_MAJOR).$(ver cudnn_version.h CUDNN_MINOR).$(ver cudnn_version.h CUDNN_PATCHLEVEL)," \
    "cuBLAS $(ver cublas_api.h CUBLAS_VER_MAJOR).$(ver cublas_api.h CUBLAS_VER_MINOR).$(ver cublas_api.h CUBLAS_VER_PATCH)," \
    "NCCL $(ver nccl.h NCCL_MAJOR).$(ver nccl.h NCCL_MINOR).$(ver nccl.h NCCL_PATCH)"
  echo "newest glibc symbol needed: $glibc_max"
  echo "needed from the GPU machine: glibc, libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcudnn.so.9 (+ its sub-libraries), libnccl.so.2, the driver's libcuda.so.1"
  echo "files (bytes):"
  (cd "$STAGE" && find bin lib -type f -printf '  %p %s\n' | sort)
} >"$STAGE/MANIFEST.txt"

# Where we may (root, mount namespaces), run the staged binaries with this
# machine's library folder replaced by glibc alone, as on the GPU machine:
# nothing may come from a Debian package but glibc and CUDA.
if [ "$(id -u)" -eq 0 ] && unshare -m true 2>/dev/null; then
  sim=$(mktemp -d)
  trap 'rm -rf "$sim"' EXIT
  multiarch=/usr/lib/x86_64-linux-gnu
  for f in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libdl.so.2 librt.so.1 libpthread.so.0 libtinfo.so.6; do
    cp -L "$multiarch/$f" "$sim/"
  done
  # Only bash builtins and our binaries run in there (coreutils need more).
  cat >"$sim/run.sh" <<EOF
export LD_LIBRARY_PATH=/usr/local/cuda/lib
for b in $ROOT/$STAGE/bin/*; do
  l=\$(/lib64/ld-linux-x86-64.so.2 --list "\$b")
  if [[ \$l == *"not found"* ]]; then echo "\$l"; exit 1; fi
done
$ROOT/$STAGE/bin/imgret forward --net alexnet-small --device cpu --batch 4 || exit 1
$ROOT/$STAGE/bin/test_gpu
rc=\$?
[ \$rc -eq 0 ] || [ \$rc -eq 77 ]
EOF
  if ! unshare -m bash -c "mount --bind $sim $multiarch && exec /bin/bash $sim/run.sh"; then
    echo "gpu_bundle: the staged binaries fail with only glibc in $multiarch (above)" >&2
    exit 1
  fi
  echo "gpu_bundle: the staged binaries run with only glibc and CUDA's libraries (simulated GPU machine)"
fi

rm -rf "$DEST"
mkdir -p "$DEST"
cp "$STAGE/MANIFEST.txt" "$DEST/MANIFEST.txt"
tar -C "$STAGE" -cf - MANIFEST.txt sources.sha256 bin lib | xz -9 -T"$JOBS" >"$DEST/imgret-gpu.tar.xz"

unpacked=$(du -sb "$STAGE" | cut -f1)
packed=$(du -sb "$DEST" | cut -f1)
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null |
  awk '$2 == "total" {s += $1} END {print s + 0}')
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "gpu_bundle: bin/ $(find "$STAGE/bin" -type f -printf '%f\n' | sort | tr '\n' ' '), lib/ $(find "$STAGE/lib" -type f | wc -l) libraries"
echo "gpu_bundle: unpacked $(mib "$unpacked"), $DEST/ $(mib "$packed"); working tree $(mib "$tree");" \
  "together $(mib $((packed + tree))) of the 64 MiB a device run carries"
echo "gpu_bundle: newest glibc symbol needed: $glibc_max"
if [ $((packed + tree)) -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "gpu_bundle: over $LIMIT_MIB MiB: too close to the device tool's 64 MiB limit" >&2
  exit 1
fi
echo "gpu_bundle: done; device run: carry [\".gpu\"], command \"bash scripts/gpu_check.sh\", timeout_s 540"
