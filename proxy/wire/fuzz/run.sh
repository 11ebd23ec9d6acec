#!/usr/bin/env bash
# Runs every cargo-fuzz target of palisade-wire for SECONDS each (default 60) with the nightly
# toolchain. Installs cargo-fuzz when missing. Exits non-zero as soon as a target finds a crash;
# the reproducer is left in fuzz/artifacts/TARGET/.
#
#   proxy/wire/fuzz/run.sh 20
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS]  (a positive number of seconds per target)" >&2
    exit 2
fi

cd "$(dirname "$0")"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi

for target in $(cargo +nightly fuzz list); do
    echo "== fuzzing $target for ${seconds}s" >&2
    mkdir -p "corpus/$target"
    if ! cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds"; then
        echo "== $target: crash found (see fuzz/artifacts/$target/)" >&2
        exit 1
    fi
done
echo "== all fuzz targets ran ${seconds}s without a crash" >&2
