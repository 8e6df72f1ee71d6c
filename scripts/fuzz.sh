#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time and reports what it found.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; the targets default to all of them (`cargo fuzz list`).
# For each target it prints the executions, libFuzzer's final coverage (cov: edges, ft:
# features), the size of the corpus it grew, and every crash artifact with its first bytes. It
# exits 1 when a target crashed (a panic, an out-of-memory or a timeout), 2 when it could not
# build or run the fuzzers.
#
# Seeds are read from fuzz/corpus/<target>/ and never written; what a run learns goes to
# fuzz/target/corpus/<target>/ (kept between runs, not committed). Crashes are written to
# fuzz/artifacts/<target>/; reproduce one with `cargo fuzz run <target> <file>` and minimize it
# with `cargo fuzz tmin <target> <file>` (both with the environment below).
#
# Environment:
#   FUZZ_SANITIZER      address (default) or none; `address` falls back to `none` when the
#                       sanitizer cannot be built. Both are coverage-guided libFuzzer runs.
#   FUZZ_CODEGEN_UNITS  codegen units of the fuzz build (default 16: a much faster build of the
#                       crate's large dependency tree, for slightly slower fuzzing).
#   FUZZ_RSS_LIMIT_MB   libFuzzer's memory limit per process (default 2048).
#   FUZZ_TIMEOUT        seconds one input may take before libFuzzer calls it a hang (default
#                       30). It is wall-clock time: on a loaded machine a short timeout reports
#                       starvation as a hang (seen: a 41 ms input at 11 s under `nice 19`).
#                       Re-run a timeout artifact alone to tell the two apart.
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, sanitizer coverage options). On a
# stable toolchain the script sets RUSTC_BOOTSTRAP=1 so that stable rustc accepts them; the
# sanitizer runtimes ship with the stable standard library for x86_64-unknown-linux-gnu.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz_dir="$root/fuzz"
secs=${1:-60}
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
sanitizer=${FUZZ_SANITIZER:-address}
cgu=${FUZZ_CODEGEN_UNITS:-16}
rss_limit=${FUZZ_RSS_LIMIT_MB:-2048}
hang_secs=${FUZZ_TIMEOUT:-30}

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz into ${CARGO_HOME:-$HOME/.cargo}/bin"
    cargo install cargo-fuzz --locked
fi
echo "== $(cargo fuzz --version), $(rustc --version)"
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
    echo "== stable toolchain: RUSTC_BOOTSTRAP=1 for cargo-fuzz's -Z flags"
fi

build() {
    cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$1" --codegen-units "$cgu" "${@:2}"
}

echo "== building the fuzz targets (sanitizer: $sanitizer)"
if ! build "$sanitizer"; then
    if [ "$sanitizer" = none ]; then
        echo "fuzz.sh: the fuzz targets do not build" >&2
        exit 2
    fi
    echo "== the $sanitizer sanitizer does not build here; falling back to --sanitizer none"
    sanitizer=none
    build none || { echo "fuzz.sh: the fuzz targets do not build" >&2; exit 2; }
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

declare -A dicts=(
    [envelope_decode]=envelope.dict
    [records_stream]=records.dict
    [s3_key_decode]=envelope.dict
)

crashed=0
failed=0
summary=()
for target in "${targets[@]}"; do
    seeds="$fuzz_dir/corpus/$target"
    work="$fuzz_dir/target/corpus/$target"
    artifacts="$fuzz_dir/artifacts/$target"
    log="$fuzz_dir/target/fuzz-$target.log"
    mkdir -p "$seeds" "$work" "$artifacts"
    stamp="$fuzz_dir/target/.fuzz-start-$target"
    touch "$stamp"
    args=(
        "-max_total_time=$secs"
        -print_final_stats=1
        "-timeout=$hang_secs"
        "-rss_limit_mb=$rss_limit"
        "-artifact_prefix=$artifacts/"
    )
    if [ -n "${dicts[$target]:-}" ]; then
        args+=("-dict=$fuzz_dir/dicts/${dicts[$target]}")
    fi
    echo
    echo "== $target: fuzzing for ${secs}s (log: ${log#"$root"/})"
    set +e
    # The outer timeout only guards against a hung run: libFuzzer stops itself at
    # -max_total_time.
    timeout --kill-after=30 $((secs + 300)) \
        cargo fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" --codegen-units "$cgu" \
        "$target" "$work" "$seeds" -- "${args[@]}" >"$log" 2>&1
    status=$?
    set -e

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then
        execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    fi
    if [ -z "$execs" ]; then
        execs=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
    fi
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
    rate=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$last")
    line="$target: ${execs:-?} executions (${rate:-?}/s), cov: ${cov:-?}, ft: ${ft:-?}, corpus: ${corp:-?} (units/bytes)"
    echo "   $line"

    mapfile -t found < <(find "$artifacts" -maxdepth 1 -type f -newer "$stamp" | sort)
    if [ "${#found[@]}" -gt 0 ]; then
        crashed=1
        line="$line, ${#found[@]} CRASH ARTIFACT(S)"
        grep -m 3 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY:" "$log" \
            | sed 's/^/   | /' || true
        for artifact in "${found[@]}"; do
            echo "   crash artifact: ${artifact#"$root"/} ($(wc -c <"$artifact") bytes), first bytes:"
            head -c 96 "$artifact" | od -An -c | sed 's/^/     /'
        done
    elif [ "$status" -ne 0 ]; then
        failed=1
        line="$line, FAILED (exit $status, no artifact)"
        echo "   the run failed without an artifact; the end of its log:"
        tail -n 15 "$log" | sed 's/^/   | /'
    fi
    rm -f "$stamp"
    summary+=("$line")
done

echo
echo "== summary (${secs}s per target, sanitizer: $sanitizer)"
printf '   %s\n' "${summary[@]}"
if [ "$crashed" -ne 0 ]; then
    echo "== crashes found: see the artifacts above"
    exit 1
fi
if [ "$failed" -ne 0 ]; then
    exit 2
fi
echo "== no crash found"
