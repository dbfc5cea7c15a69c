#!/usr/bin/env bash
# Installs the Debian packages imgret needs, when any is missing.
#   deps.sh             everything: building, running, tests and benchmarks
#   deps.sh --runtime   only what building and running imgret needs (the demo)
# Each module adds the packages it needs to RUNTIME or TESTS below.
set -euo pipefail

runtime_only=0
if [ "${1:-}" = "--runtime" ]; then
  runtime_only=1
  shift
fi

RUNTIME=(
  build-essential cmake pkg-config git
  libopenblas-openmp-dev        # model/: sgemm (the OpenMP build)
  zlib1g-dev                    # data/: IDX files read straight from .gz
  libturbojpeg0-dev libpng-dev  # data/: JPEG decode/encode (TurboJPEG), PNG decode
  libwebp-dev libgif-dev libtiff-dev  # data/: WebP (+ demux: animation, EXIF), GIF, TIFF decode
  libheif-dev                   # data/: HEIF/HEIC (libde265) and AVIF (dav1d/libaom) decode
  dataset-fashion-mnist         # data/ tests and training: Fashion-MNIST IDX files
  protobuf-c-compiler libprotobuf-c-dev  # model/, server/: model files, interop, RPC (protoc-c at build time)
  libssl-dev                    # model/: SHA-256 content hash of model files (libcrypto)
  libsqlite3-dev                # index/: the item store
  libpq-dev                     # index/: the PostgreSQL store backend (libpq)
  libfaiss-dev liblapack-dev    # index/: FAISS (static lib + C API headers; imgret builds the C API)
  liblapacke-dev                # autoencoder/: ITQ (PCA eigenvectors, Procrustes SVD) via LAPACKE
  libevent-dev                  # server/: evhttp (libevent_extra), event_active from workers (pthreads)
  libnghttp2-dev                # server/: gRPC over HTTP/2 (framing, HPACK, flow control) on the same loop
)
TESTS=(
  python3 python3-numpy python3-torch   # tests: the PyTorch oracle, bench: the peer
  python3-torchvision           # bench/extract.sh: the peer's JPEG decode and resize (torchvision.io)
  python3-onnx python3-protobuf # tests/interop: ONNX files and onnx.checker; tests/server: the client
  python3-pil                   # tests/server/image_identity_test.py: writes the PNG and JPEG queries
  imagemagick libimage-exiftool-perl  # tests/data/formats_test.py: other programs' files of every format
  protobuf-compiler             # tests/server: protoc --python_out; protoc --decode (docs/interop.md)
  python3-grpcio protobuf-compiler-grpc  # tests/server/grpc_test.py: the gRPC client, grpc_python_plugin
  python3-faiss                 # bench/index.sh: the FAISS-from-Python peer
  python3-matplotlib            # bench/plot_pr.py: the precision-recall plot in docs/retrieval.md
  clang libclang-rt-14-dev      # scripts/test.sh: the libFuzzer target (-fsanitize=fuzzer) of server/
  clang-format                  # scripts/check_format.sh: the formatting check of scripts/test.sh
  postgresql                    # tests/: the store on a real PostgreSQL 15 (initdb, pg_ctl in /usr/lib/postgresql/15/bin)
)
PACKAGES=("${RUNTIME[@]}")
[ "$runtime_only" -eq 1 ] || PACKAGES+=("${TESTS[@]}")
# tests/web: the web page in a real (headless) browser, and Node.js to run
# playwright-core. Debian's nodejs/npm only where no node is installed (a
# newer one, e.g. NodeSource's, is kept).
if [ "$runtime_only" -eq 0 ]; then
  PACKAGES+=(chromium)
  command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
  command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
fi
# Optional extra packages for a single call: deps.sh pkg1 pkg2 ...
PACKAGES+=("$@")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# tests/web: playwright-core, pinned by tests/web/package-lock.json, into
# tests/web/node_modules (git-ignored); only when it is not there yet.
web_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/web"
if [ "$runtime_only" -eq 0 ] && [ ! -d "$web_dir/node_modules/playwright-core" ]; then
  echo "deps: npm ci in tests/web (playwright-core)"
  (cd "$web_dir" && npm ci --no-audit --no-fund)
fi
