#!/usr/bin/env bash
# Builds one flavour of the tree:  scripts/build.sh [release|asan|fuzz]
#   release -> build/       (binaries in build/bin/)
#   asan    -> build-asan/  (AddressSanitizer + UndefinedBehaviorSanitizer)
#   fuzz    -> build-fuzz/  (clang, libFuzzer targets in build-fuzz/fuzz/)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
jobs=$(nproc)
werror=${ORDINAL_WERROR:-ON}

case "$flavour" in
release) dir=build; args=() ;;
asan) dir=build-asan; args=(-DORDINAL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug) ;;
fuzz) dir=build-fuzz; args=(-DORDINAL_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug) ;;
*) echo "usage: scripts/build.sh [release|asan|fuzz]" >&2; exit 2 ;;
esac

cmake -S . -B "$dir" -DORDINAL_WERROR="$werror" "${args[@]}" >/dev/null
cmake --build "$dir" -j "$jobs" >/dev/null || cmake --build "$dir" -j 1
