#!/usr/bin/env bash
# Every C, C++ and CUDA file git tracks is formatted as .clang-format says:
# prints the files that are not (with clang-format's first complaints) and
# exits 1. `scripts/check_format.sh --fix` formats them in place instead.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=0
[ "${1:-}" = "--fix" ] && fix=1
command -v clang-format >/dev/null || { echo "check_format: clang-format is not installed" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.cu' '*.cuh')
if [ "$fix" -eq 1 ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! out=$(clang-format --dry-run --Werror "$f" 2>&1); then
    [ "$bad" -eq 0 ] && echo "check_format: not formatted as .clang-format says ($(clang-format --version | head -1)):"
    echo "  $f"
    printf '%s\n' "$out" | head -4 | sed 's/^/    /'
    bad=$((bad + 1))
  fi
done
if [ "$bad" -gt 0 ]; then
  echo "check_format: $bad file(s); run bash scripts/check_format.sh --fix"
  exit 1
fi
echo "check_format: ${#files[@]} files formatted"
