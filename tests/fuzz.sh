#!/usr/bin/env bash
# Runs the cargo-fuzz targets of one fuzz crate (proxy/wire/fuzz, proxy/fuzz) for SECONDS each
# (default 60) on the nightly toolchain — every target of the crate, or only the TARGETs named.
#
#   bash tests/fuzz.sh proxy/fuzz 30
#   bash tests/fuzz.sh proxy/fuzz 600 dialect_request sse_events
#
# Installs cargo-fuzz when missing. Each target reads its committed seeds (FUZZ_DIR/seeds/TARGET,
# when present) and its working corpus (FUZZ_DIR/corpus/TARGET, git-ignored; new inputs go
# there), with FUZZ_DIR/dicts/TARGET.dict as libFuzzer dictionary when present. Prints, per
# target, libFuzzer's "Done N runs in S second(s)"; the full log is in
# FUZZ_DIR/target/fuzz-logs/TARGET.log. Every target runs; the script exits non-zero when any
# of them found a crash (or a leak, timeout, out-of-memory), naming the artifact directory that
# holds the reproducer (`cargo +nightly fuzz run TARGET FUZZ_DIR/artifacts/TARGET/<file>`).
set -euo pipefail

usage() {
    echo "usage: $0 FUZZ_DIR [SECONDS [TARGET...]]  (a positive number of seconds per target)" >&2
    exit 2
}
[ $# -ge 1 ] && [ -f "$1/Cargo.toml" ] || usage
fuzz_dir="$1"
seconds="${2:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || usage
shift $(($# >= 2 ? 2 : 1))

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi

cd "$fuzz_dir"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
# Build first, in the open (a release build with sanitizers takes minutes), then run quietly.
if [ "$#" -eq 1 ]; then
    cargo +nightly fuzz build "$1"
else
    cargo +nightly fuzz build
fi

mkdir -p target/fuzz-logs
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    dirs=("corpus/$target")
    [ -d "seeds/$target" ] && dirs+=("seeds/$target")
    flags=(-max_total_time="$seconds")
    [ -f "dicts/$target.dict" ] && flags+=(-dict="dicts/$target.dict")
    log="target/fuzz-logs/$target.log"
    echo "== fuzzing $target for ${seconds}s (log: $fuzz_dir/$log)" >&2
    if cargo +nightly fuzz run "$target" "${dirs[@]}" -- "${flags[@]}" >"$log" 2>&1; then
        done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
        echo "== $target: ${done_line:-finished (no \"Done\" line in the log)}" >&2
    else
        # The panic (or sanitizer report) and libFuzzer's lines about the reproducer.
        grep -E -A12 "panicked at|^==[0-9]+==ERROR|^SUMMARY" "$log" | head -n 40 >&2 || true
        grep -E "Test unit written to|^Base64:" "$log" >&2 || tail -n 20 "$log" >&2
        echo "== $target: FAILED — reproducer in $fuzz_dir/artifacts/$target/" >&2
        failed+=("$target")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== fuzz targets with a crash in $fuzz_dir: ${failed[*]}" >&2
    exit 1
fi
echo "== every fuzz target of $fuzz_dir ran ${seconds}s without a crash" >&2
