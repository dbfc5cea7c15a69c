#!/usr/bin/env bash
# The main job on the built-in default, from a fresh Debian 12 machine:
# installs the Debian packages building and running imgret need (when
# missing), builds imgret, then runs `imgret demo`: trains the small AlexNet
# on Fashion-MNIST (Debian's dataset-fashion-mnist) with the quick recipe,
# extracts FC7 of the 60,000 training images, trains the 64-bit autoencoder,
# fills the item store with its Euclidean and Hamming indexes, and serves
# similar-image search on http://127.0.0.1:8080/ (web page, Twirp API).
# Everything lands in imgret-demo/; a rerun reuses every finished stage, and
# after Ctrl-C a rerun resumes. Options go to `imgret demo` (--port, --dir...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --runtime
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target imgret
exec build/release/cli/imgret demo "$@"
