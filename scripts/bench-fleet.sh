#!/usr/bin/env bash
# Fleet pacing benchmark: three in-process replicas on one moto queue and DynamoDB table, one API
# key at 300 changes/min, against the BigPanda stand-in enforcing that limit (sliding 60 s window,
# 429 beyond it). Prints accepted changes per minute against the rate, 429s, the DynamoDB pace
# writes per minute (the whole fleet) and p50/p99 from PutObject to acceptance. Numbers only: it
# fails only when the run itself fails (the service test's own bar: all delivered, 429s <= 2%,
# >= 85% of the rate).
#
# A debug build is enough: the run is bound by the rate (300/min), not by the CPU.
#
# Usage: scripts/bench-fleet.sh   (needs scripts/moto.sh install, or CTC_MOTO_SERVER)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --test service fleet::three_replicas -- --nocapture --test-threads 1 2>&1 \
  | grep -E 'three replicas:|test result'
