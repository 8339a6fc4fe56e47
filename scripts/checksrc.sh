#!/usr/bin/env bash
# Fails when C sources use a function the house style bans (STYLE.md 15): unbounded string
# functions and unchecked number parsing. Use snprintf, checked strtoull/strtoll and memcpy
# with an explicit size instead.
set -uo pipefail
cd "$(dirname "$0")/.."
banned='\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|atoll|gets|strtok)[[:space:]]*\('
hits=$(git ls-files '*.c' '*.h' | xargs grep -nE "$banned" | grep -vE '\b(v?snprintf)\b' || true)
if [ -n "$hits" ]; then
    echo "checksrc: banned functions (see STYLE.md 15):"
    echo "$hits"
    exit 1
fi
echo "checksrc: no banned functions in $(git ls-files '*.c' '*.h' | wc -l) C files"
