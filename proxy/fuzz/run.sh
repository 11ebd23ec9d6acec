#!/usr/bin/env bash
# Runs every cargo-fuzz target of palisade-proxy (config loading, JWT claims → principal, path
# canonicalization) for SECONDS each (default 60) with the nightly toolchain, or only the TARGETs
# named. Same pattern as proxy/wire/fuzz/run.sh: installs cargo-fuzz when missing, exits non-zero
# as soon as a target finds a crash; the reproducer is left in proxy/fuzz/artifacts/TARGET/.
# New inputs go to corpus/TARGET (not committed); the committed seeds/TARGET are read too.
#
#   proxy/fuzz/run.sh 20
#   proxy/fuzz/run.sh 600 path_canonical
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS [TARGET...]]  (a positive number of seconds per target)" >&2
    exit 2
fi
shift || true

cd "$(dirname "$0")"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s" >&2
    mkdir -p "corpus/$target"
    dirs=("corpus/$target")
    [ -d "seeds/$target" ] && dirs+=("seeds/$target")
    if ! cargo +nightly fuzz run "$target" "${dirs[@]}" -- -max_total_time="$seconds"; then
        echo "== $target: crash found (see proxy/fuzz/artifacts/$target/)" >&2
        exit 1
    fi
done
echo "== all palisade-proxy fuzz targets ran ${seconds}s without a crash" >&2
