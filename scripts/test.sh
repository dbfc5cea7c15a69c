#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): installs what is missing,
# builds with warnings as errors, runs every test, then builds again under
# AddressSanitizer + UBSan and runs the unit tests there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

# Every C, C++ and CUDA file as .clang-format says (a failure names the files;
# `bash scripts/check_format.sh --fix` formats them).
bash scripts/check_format.sh

jobs=$(nproc)
# ctest runs $jobs test programs at once, each with an OpenMP team as large as
# the machine: spinning OpenMP threads then starve each other (a 4 s test
# took 25 s). Tests are not benchmarks: let idle threads sleep.
export OMP_WAIT_POLICY=passive
# IMGRET_CUDA=AUTO: where nvcc and cuDNN exist (as on CI), the CUDA backend
# compiles here too, host code under -Werror; test_gpu skips without a GPU.
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DIMGRET_WERROR=ON -DIMGRET_CUDA=AUTO >/dev/null
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs"

# The sanitizer build is CPU-only: the CUDA runtime does not run under ASan,
# and the CUDA code was compiled above.
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DIMGRET_WERROR=ON -DIMGRET_SANITIZE=ON \
  -DIMGRET_CUDA=OFF >/dev/null
cmake --build build/asan -j"$jobs"
# OpenMP's runtime keeps its thread pool alive at exit: not a leak of ours.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
  ctest --test-dir build/asan --output-on-failure -j"$jobs" -L unit

# The libFuzzer targets, over the server's request decoding and validation, gRPC's framing
# and over data_decode's image decoders, each for a bounded time
# (IMGRET_FUZZ_SECONDS, default 30), when clang is here.
if command -v clang >/dev/null 2>&1; then
  CC=clang CXX=clang++ cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMGRET_WERROR=ON \
    -DIMGRET_FUZZ=ON -DIMGRET_FUZZ_SECONDS="${IMGRET_FUZZ_SECONDS:-30}" -DIMGRET_CUDA=OFF >/dev/null
  cmake --build build/fuzz -j"$jobs" --target fuzz_server_request fuzz_server_grpc fuzz_data_decode
  ctest --test-dir build/fuzz --output-on-failure -L fuzz
fi
