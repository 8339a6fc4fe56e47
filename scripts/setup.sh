#!/usr/bin/env bash
# Installs every package the build, the tests, the benchmarks and the demo need on a bare
# Debian 12 machine (as root). Does nothing when they are all present already.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    # build
    build-essential cmake pkg-config clang libclang-rt-14-dev
    libcurl4-openssl-dev libcjson-dev libarchive-dev libzstd-dev libblkid-dev libssl-dev
    libyaml-dev libcmocka-dev libmicrohttpd-dev
    # tests, benchmarks and the demo
    python3 python3-botocore openssl ca-certificates tar zstd acl attr util-linux
    e2fsprogs xfsprogs btrfs-progs valgrind
    # deploy/monitoring: promtool checks the alert rules; PyYAML reads the PrometheusRule
    prometheus python3-yaml
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v kubectl >/dev/null; then
    echo "setup: kubectl is not on this machine; the integration tests that drive it will be skipped" >&2
fi

# Test peers from npm (the S3 server), installed once into tests/s3/node_modules.
if [ -f tests/s3/package.json ] && [ ! -d tests/s3/node_modules/s3rver ]; then
    if ! command -v npm >/dev/null; then
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    (cd tests/s3 && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
