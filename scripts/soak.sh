#!/usr/bin/env bash
# Soak-and-chaos test of the daemon: `cloudtrail-changes run` against a local AWS (moto, behind a
# TCP proxy that can stop it) and a BigPanda stand-in that fails on a schedule, with real-shaped
# CloudTrail objects (scripts/make-corpus) arriving through S3 -> SNS -> SQS, while the
# stand-in answers 500/503/429 (with and without Retry-After), hangs past the request timeout and
# resets connections, the daemon is killed with SIGKILL and restarted, gets SIGTERM mid-burst and
# is restarted, and the AWS endpoint is stopped and started again. Then what the stand-in
# accepted is compared with `cloudtrail-changes process` on the same files. See scripts/soak.py.
#
#   scripts/soak.sh [--short]       CI form: 200 objects, each fault once (~2.5 min + build)
#   scripts/soak.sh --long          by hand: 3000 objects over a 15-minute chaos phase, the
#                                   faults on a 150 s cycle (restarts in its first half only, so
#                                   the last daemon run lives through every other fault)
#   --objects N                     objects to upload (default 200 short, 3000 long)
#   --minutes M                     long: length of the chaos phase (default 15)
#   --records-per-file R            records per object (default 40 short, 50 long)
#   --blackhole                     also a "black hole" outage: the endpoint accepts connections
#                                   and never answers (open ones stay silent after it is back)
#   --no-build                      use the release binaries as they are
#   --debug                         use the debug binaries (`cargo build --bins --examples`, or
#                                   those `cargo test` built): what CI runs, after the tests
#   --keep                          keep target/soak/run-PID (logs) even when it passes
#
# Prints a table: objects, changes expected and delivered, duplicates, DLQ by reason, faults
# scheduled and served, restarts survived, outages, lag, the daemon's fds/threads/RSS
# first/last/max. Exit status 0 when every change arrived with process's body, the source queue
# is empty, the DLQ holds exactly the planned poison, every SIGTERM exited 0, and every scheduled
# fault happened (each stand-in fault served, each outage counted SQS errors, work in flight at
# each signal, changes resumed after the kill -9); 1 when one of these failed, naming it; 2 when
# the soak itself could not run. Env: any CTC__* setting is passed to the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

MODE=short BUILD=1 KEEP=0 PROFILE=release ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --short) MODE=short; shift ;;
    --long) MODE=long; shift ;;
    --objects | --minutes | --records-per-file) ARGS+=("$1" "$2"); shift 2 ;;
    --blackhole) ARGS+=("$1"); shift ;;
    --no-build) BUILD=0; shift ;;
    --debug) PROFILE=debug; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/soak.sh [--short|--long] [--objects N] [--minutes M] [--records-per-file R] [--blackhole] [--no-build] [--debug] [--keep]" >&2; exit 2 ;;
  esac
done

if [[ $BUILD == 1 ]]; then
  LOCKED=()
  [[ -f Cargo.lock ]] && LOCKED=(--locked)
  if [[ $PROFILE == release ]]; then
    cargo build --release "${LOCKED[@]}" --bins --examples
  else
    cargo build "${LOCKED[@]}" --bins --examples
  fi
fi
MOTO=$(scripts/moto.sh install)
PY=$(dirname "$MOTO")/python

WORK=$REPO/target/soak/run-$$
mkdir -p "$WORK"
status=0
"$PY" scripts/soak.py --mode "$MODE" --profile "$PROFILE" "${ARGS[@]}" --work "$WORK" --repo "$REPO" || status=$?
if [[ $status == 0 && $KEEP == 0 ]]; then
  rm -rf "$WORK"
else
  echo "soak: logs kept in ${WORK#"$REPO"/}" >&2
fi
exit "$status"
