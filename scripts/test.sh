#!/usr/bin/env bash
# The project's test command (README "Tests"; CI runs exactly this through .ci/run).
# Formatting and lints first (cheap), then every test, then a check that the golden reference
# still matches what the independent Python reading of change-model.md produces.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
python3 scripts/reference-filter.py tests/data/cloudtrail | diff -q - tests/data/golden/reference.json \
  || { echo "tests/data/golden/reference.json is stale: rerun scripts/reference-filter.py" >&2; exit 1; }
echo "reference golden: up to date"
# One closing line over every test binary (cargo prints one result line per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
