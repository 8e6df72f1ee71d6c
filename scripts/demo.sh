#!/usr/bin/env bash
# The daemon end to end on one machine, no AWS account: a local AWS (moto), a bucket whose
# object-created events go S3 -> SNS -> SQS (with a dead-letter queue), `cloudtrail-changes run`
# printing changes instead of POSTing them (bigpanda.mode = "stdout"), a subscription made with
# curl as a customer would, and the real CloudTrail files of tests/data/cloudtrail uploaded to
# the bucket. It waits until every change `process` finds in those files came out of the daemon,
# compares them, and stops the daemon with SIGTERM.
#
#   scripts/demo.sh           run it; exit status 0 when every expected change arrived
#   scripts/demo.sh --keep    the same, then leave moto and the daemon running to play with
#   scripts/demo.sh --stop    stop what a --keep run left running
#   --no-build                use target/release/cloudtrail-changes as it is (no cargo build)
#
# Output: target/demo/ (recreated each run): changes.jsonl (the daemon's stdout), daemon.log
# (its stderr), moto.log, subscriptions.db, expected.jsonl, manifest.tsv (file -> S3 key).
# Needs: cargo, python3 (for the venv of scripts/moto.sh), curl. Talks to loopback only.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
BIN=$TARGET/release/cloudtrail-changes
VENV=${CTC_MOTO_VENV:-$REPO/target/moto-venv}
PY=$VENV/bin/python
DEMO_PY=$REPO/scripts/demo.py
DEMO=$REPO/target/demo
DATA=$REPO/tests/data/cloudtrail

BUCKET=demo-cloudtrail
API_KEY=demo0123456789abcdef0123456789ab
APP_KEY=demoapp0123456789abcdef
WAIT_TIMEOUT=120

KEEP=0 BUILD=1 STOP_ONLY=0
for arg in "$@"; do
  case $arg in
    --keep) KEEP=1 ;;
    --no-build) BUILD=0 ;;
    --stop) STOP_ONLY=1 ;;
    -h | --help)
      sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: scripts/demo.sh [--keep] [--no-build] | --stop" >&2
      exit 2
      ;;
  esac
done

# --- output helpers --------------------------------------------------------------------------

if [[ -t 1 ]]; then
  BOLD=$'\e[1m' RED=$'\e[31m' GREEN=$'\e[32m' OFF=$'\e[0m'
else
  BOLD='' RED='' GREEN='' OFF=''
fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$OFF"; }
info() { printf '    %s\n' "$*"; }
now_ms() { date +%s%3N; }
T_START=$(now_ms)

# The daemon's text logs carry ANSI colours even into a file.
strip_ansi() { sed 's/\x1b\[[0-9;]*m//g'; }

log_tail() {
  local file=$1 lines=${2:-20}
  if [[ -s $file ]]; then
    echo "--- last $lines lines of ${file#"$REPO"/}:" >&2
    tail -n "$lines" "$file" | strip_ansi | cut -c1-400 >&2
    echo "---" >&2
  fi
}

# die MESSAGE: the failure, named, with the tail of the daemon's log when it was started.
die() {
  printf '\n%sdemo failed: %s%s\n' "$RED" "$*" "$OFF" >&2
  [[ -n ${DAEMON_PID:-} ]] && log_tail "$DEMO/daemon.log" 25
  exit 1
}

# The command line as one would type it (single quotes where needed).
shell_words() {
  local out='' w
  for w in "$@"; do
    if [[ $w =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+="$w "
    else
      out+="'${w//\'/\'\\\'\'}' "
    fi
  done
  printf '%s\n' "${out% }"
}

# --- processes: ours only, by PID ------------------------------------------------------------

MOTO_PID='' DAEMON_PID='' LEAVE_RUNNING=0

# exited PID: the process is gone or a zombie (exited, not yet reaped).
exited() {
  local pid=$1 stat
  [[ -e /proc/$pid ]] || { kill -0 "$pid" 2>/dev/null && return 1 || return 0; }
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ ${stat%% *} == Z ]]
}

# stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS; returns when it has exited.
stop_pid() {
  local pid=$1 limit=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < limit * 10; i++)); do
    exited "$pid" && return 0
    sleep 0.1
  done
  echo "pid $pid still running after SIGTERM and $limit s: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ $LEAVE_RUNNING == 0 ]]; then
    [[ -n $DAEMON_PID ]] && stop_pid "$DAEMON_PID" 30
    [[ -n $MOTO_PID ]] && stop_pid "$MOTO_PID" 5
    wait 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# What a --keep run left running (target/demo/pids: "pid command line", the daemon first so
# that it stops while moto still answers), checked by command line so that a reused PID is
# never signalled.
stop_kept() {
  local file=$DEMO/pids pid cmd
  [[ -f $file ]] || return 0
  while read -r pid cmd; do
    if [[ -n $pid && $(cmdline "$pid") == "$cmd "* ]]; then
      info "stopping pid $pid ($cmd) left by an earlier --keep run"
      stop_pid "$pid" 30
    fi
  done <"$file"
  rm -f "$file"
}

if [[ $STOP_ONLY == 1 ]]; then
  [[ -f $DEMO/pids ]] || { echo "nothing to stop (no $DEMO/pids)"; exit 0; }
  stop_kept
  echo "stopped"
  exit 0
fi

# --- a clean, local-only environment ---------------------------------------------------------

# No real AWS: drop every AWS_* variable (profiles, tokens, endpoints, roles), never ask instance
# metadata, keep CTC__LOG__* only; loopback never through a proxy.
while read -r var; do
  case $var in
    AWS_* | CTC__*) [[ $var == CTC__LOG__* ]] || unset "$var" ;;
  esac
done < <(compgen -e)
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export NO_PROXY=127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY} no_proxy=127.0.0.1,localhost${no_proxy:+,$no_proxy}

for tool in curl python3 $( ((BUILD)) && echo cargo); do
  command -v "$tool" >/dev/null || die "$tool is not installed (the demo needs cargo, curl, python3)"
done
[[ -d $DATA ]] || die "no test data at $DATA"

# --- 1. local AWS and the build --------------------------------------------------------------

step "1/6 local AWS (moto) and the release build"
stop_kept
rm -rf "$DEMO"
mkdir -p "$DEMO"

"$REPO/scripts/moto.sh" install >/dev/null || die "scripts/moto.sh install failed"
info "moto venv:  ${VENV#"$REPO"/} (moto[server]==5.2.5, boto3)"

# The free port may be taken between picking and binding it: try a few.
for attempt in 1 2 3; do
  MOTO_PORT=$("$PY" "$DEMO_PY" free-port) || die "could not pick a free port"
  MOTO_ACCOUNT_ID=123456789012 "$REPO/scripts/moto.sh" start "$MOTO_PORT" \
    >"$DEMO/moto.log" 2>&1 </dev/null &
  MOTO_PID=$!
  if "$PY" "$DEMO_PY" wait-http "http://127.0.0.1:$MOTO_PORT/moto-api/" \
    --timeout 30 --pid "$MOTO_PID" --what moto_server; then
    break
  fi
  log_tail "$DEMO/moto.log" 10
  stop_pid "$MOTO_PID" 5
  MOTO_PID=''
  ((attempt < 3)) || die "moto_server did not start (3 attempts; log: target/demo/moto.log)"
done
ENDPOINT=http://127.0.0.1:$MOTO_PORT
info "moto:       $ENDPOINT (pid $MOTO_PID, account 123456789012, log target/demo/moto.log)"

if [[ $BUILD == 1 ]]; then
  info "building target/release/cloudtrail-changes (cargo build --release)"
  info "  the first build compiles about 260 crates: 6 to 15 minutes on 2 cores; later ones"
  info "  only what changed. Cargo shows its progress below."
  T_BUILD=$(now_ms)
  if [[ -t 2 ]]; then
    # A terminal: cargo's own progress bar (crates built of the total, the ones compiling).
    cargo build --release --manifest-path "$REPO/Cargo.toml" ||
      die "cargo build --release failed (its errors are above)"
  else
    # Not a terminal (CI, a log): cargo's line per crate as it goes; a copy in build.log.
    if ! cargo build --release --manifest-path "$REPO/Cargo.toml" 2>&1 |
      tee "$DEMO/build.log" | sed -u 's/^ */      /'; then
      die "cargo build --release failed (full output: target/demo/build.log)"
    fi
  fi
  [[ -x $BIN ]] || die "the build succeeded but $BIN is missing"
  info "built:      ${BIN#"$REPO"/} in $((($(now_ms) - T_BUILD) / 1000)) s"
else
  [[ -x $BIN ]] || die "--no-build, but there is no $BIN (run without --no-build)"
  info "not building (--no-build): ${BIN#"$REPO"/} of $(date -r "$BIN" '+%F %T')"
fi

# --- 2. the customer's AWS side --------------------------------------------------------------

step "2/6 bucket, SNS topic, SQS queue with DLQ, notification, role"
QUEUE_URL=$("$PY" "$DEMO_PY" setup --endpoint "$ENDPOINT" --bucket "$BUCKET" \
  --queue cloudtrail-changes) || die "setting up the bucket, topic and queues in moto failed"
[[ $QUEUE_URL == http* ]] || die "setup printed no queue URL (got '$QUEUE_URL')"
info "queue URL:  $QUEUE_URL"

# --- 3. the daemon ---------------------------------------------------------------------------

step "3/6 the daemon: cloudtrail-changes run (bigpanda.mode = stdout)"
# Keys are sealed by default: a fresh data key for this demo's fresh store.
DATA_KEY=$("$PY" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())') \
  || die "could not make a data key"
for attempt in 1 2 3; do
  API_PORT=$("$PY" "$DEMO_PY" free-port) || die "could not pick a free port"
  ADMIN_PORT=$("$PY" "$DEMO_PY" free-port) || die "could not pick a free port"
  env AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    CTC__AWS__ENDPOINT_URL="$ENDPOINT" \
    CTC__AWS__REGION=us-east-1 \
    CTC__SQS__QUEUE_URL="$QUEUE_URL" \
    CTC__SQS__WAIT_TIME_SECONDS=2 \
    CTC__SUBSCRIPTIONS__STORE="sqlite:$DEMO/subscriptions.db" \
    CTC__SUBSCRIPTIONS__ENCRYPTION_KEY="$DATA_KEY" \
    CTC__BIGPANDA__MODE=stdout \
    CTC__API__LISTEN="127.0.0.1:$API_PORT" \
    CTC__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
    "$BIN" run >"$DEMO/changes.jsonl" 2>"$DEMO/daemon.log" </dev/null &
  DAEMON_PID=$!
  if "$PY" "$DEMO_PY" wait-http "http://127.0.0.1:$API_PORT/v1/subscriptions" \
    --timeout 30 --pid "$DAEMON_PID" --what "cloudtrail-changes run"; then
    break
  fi
  if grep -q "cannot listen" "$DEMO/daemon.log" && ((attempt < 3)); then
    info "port $API_PORT or $ADMIN_PORT was taken; trying others"
    stop_pid "$DAEMON_PID" 5
    continue
  fi
  die "the daemon did not start serving its API on 127.0.0.1:$API_PORT"
done
API=http://127.0.0.1:$API_PORT
OPS=http://127.0.0.1:$ADMIN_PORT
info "daemon:     pid $DAEMON_PID, API $API, metrics/health $OPS"
info "changes ->  target/demo/changes.jsonl   logs -> target/demo/daemon.log"
info "readyz:     $("$PY" "$DEMO_PY" get "$OPS/readyz")"
grep -m1 "queue resolved" "$DEMO/daemon.log" | strip_ansi | cut -c1-200 | sed 's/^/    log: /' || true

# --- 4. subscribe, as a customer -------------------------------------------------------------

step "4/6 subscribe the bucket through the API"
BODY=$(printf '{"apiKey":"%s","appKey":"%s","bucket_name":"%s","bucket_region":"us-east-1","iam_role_arn":"arn:aws:iam::123456789012:role/BigPandaCloudTrailReader","iam_role_external_id":"demo-external-id"}' \
  "$API_KEY" "$APP_KEY" "$BUCKET")
CURL=(curl -sS -X POST "$API/v1/subscriptions" -H 'Content-Type: application/json' -d "$BODY")
echo "\$ $(shell_words "${CURL[@]}")"
"${CURL[@]}" >"$DEMO/subscribe.json" || die "curl could not reach the subscription API at $API"
echo
"$PY" "$DEMO_PY" response "$DEMO/subscribe.json" --secret "$API_KEY" --secret "$APP_KEY" |
  sed 's/^/    /' || die "the subscribe answer echoed a key whole"
grep -q '"bucket_name" *: *"'"$BUCKET"'"' "$DEMO/subscribe.json" ||
  die "the API did not save the subscription (answer above)"

# --- 5. expected changes, then the upload ----------------------------------------------------

step "5/6 upload real CloudTrail files to s3://$BUCKET"
mapfile -d '' FILES < <(find "$DATA" -type f -name '*.json.gz' \
  ! -name '*CloudTrail-Digest*' ! -name '*CloudTrail-Insight*' \
  ! -path '*/CloudTrail-Digest/*' ! -path '*/CloudTrail-Insight/*' -print0 | sort -z)
((${#FILES[@]} > 0)) || die "no *.json.gz files under $DATA"

# The daemon reads each object on its own (an eventID is dropped as a duplicate within its
# file): the expected changes are process's, file by file. One process run over all the files
# is also shown: it drops an eventID repeated in another file too.
: >"$DEMO/expected.jsonl"
for f in "${FILES[@]}"; do
  "$BIN" process --bucket "$BUCKET" "$f" >>"$DEMO/expected.jsonl" 2>>"$DEMO/process.log" ||
    die "cloudtrail-changes process failed on $f (see target/demo/process.log)"
done
EXPECTED=$(wc -l <"$DEMO/expected.jsonl")
ALL_AT_ONCE=$("$BIN" process --bucket "$BUCKET" "${FILES[@]}" 2>"$DEMO/process-all.log" | wc -l) ||
  die "cloudtrail-changes process failed (see target/demo/process-all.log)"
info "expected:   $EXPECTED changes (cloudtrail-changes process --bucket $BUCKET, one run per file)"
info "            $(sed -n 2p "$DEMO/process-all.log")"
if ((ALL_AT_ONCE != EXPECTED)); then
  info "            one process run over all ${#FILES[@]} files prints $ALL_AT_ONCE: it also drops"
  info "            $((EXPECTED - ALL_AT_ONCE)) eventID(s) repeated in another file; the daemon deduplicates per object"
fi

T_UPLOAD=$(now_ms)
UPLOADED=$("$PY" "$DEMO_PY" upload --endpoint "$ENDPOINT" --bucket "$BUCKET" --root "$DATA" \
  --manifest "$DEMO/manifest.tsv" "${FILES[@]}") || die "uploading to s3://$BUCKET failed"
info "uploaded:   $UPLOADED objects in $((($(now_ms) - T_UPLOAD) / 1000)) s, keys like:"
{ head -n 2 "$DEMO/manifest.tsv"; grep '/o-' "$DEMO/manifest.tsv" | head -n 1; tail -n 1 "$DEMO/manifest.tsv"; } |
  cut -f2 | awk '!seen[$0]++' | sed 's/^/              /'

# --- 6. wait, check, stop --------------------------------------------------------------------

step "6/6 waiting for the changes (timeout ${WAIT_TIMEOUT} s)"
WAITED=$("$PY" "$DEMO_PY" wait --endpoint "$ENDPOINT" --queue-url "$QUEUE_URL" \
  --changes "$DEMO/changes.jsonl" --expected "$EXPECTED" --timeout "$WAIT_TIMEOUT" \
  --pid "$DAEMON_PID") || die "could not watch the queue"
SECONDS_TAKEN=$(awk -v ms=$(($(now_ms) - T_UPLOAD)) 'BEGIN { printf "%.1f", ms / 1000 }')
OUTCOME=$(sed -E 's/.*"outcome": "([^"]*)".*/\1/' <<<"$WAITED")
ARRIVED=$(grep -c '' "$DEMO/changes.jsonl" || true)
STATE=$("$PY" "$DEMO_PY" queue-state --endpoint "$ENDPOINT" --queue-url "$QUEUE_URL") ||
  die "could not read the queues' depth"
QUEUE_LEFT=$(sed -E 's/.*"queue": ([0-9]+).*/\1/' <<<"$STATE")
DLQ=$(sed -E 's/.*"dlq": ([0-9]+).*/\1/' <<<"$STATE")

echo
echo "${BOLD}content${OFF} (target/demo/changes.jsonl against target/demo/expected.jsonl)"
COMPARED=OK
"$PY" "$DEMO_PY" compare --changes "$DEMO/changes.jsonl" --expected "$DEMO/expected.jsonl" \
  --manifest "$DEMO/manifest.tsv" || COMPARED=DIFFERENT

echo
echo "${BOLD}examples${OFF} (pretty, long values cut)"
"$PY" "$DEMO_PY" examples --changes "$DEMO/changes.jsonl" -n 3 --width 90 --max-tags 10 |
  sed 's/^/    /'

echo
echo "${BOLD}metrics${OFF} ($OPS/metrics)"
SENT=$("$PY" "$DEMO_PY" metrics "$OPS/metrics") || die "could not read the daemon's metrics"
grep -v '^accepted ' <<<"$SENT" | sed 's/^/  /'
ACCEPTED=$(sed -n 's/^accepted //p' <<<"$SENT")

FAILED=()
((ACCEPTED == ARRIVED)) || FAILED+=("ctc_changes_sent_total{outcome=\"accepted\"} is $ACCEPTED, changes.jsonl has $ARRIVED lines")
((ARRIVED == EXPECTED)) || FAILED+=("changes arrived $ARRIVED != expected $EXPECTED ($OUTCOME)")
[[ $COMPARED == OK ]] || FAILED+=("the changes differ from process's (see content above)")
((DLQ == 0)) || FAILED+=("$DLQ message(s) in the dead-letter queue")
((QUEUE_LEFT == 0)) || FAILED+=("$QUEUE_LEFT message(s) still in the queue")

echo
echo "${BOLD}summary${OFF}"
info "objects uploaded:      $UPLOADED"
info "changes expected:      $EXPECTED"
info "changes arrived:       $ARRIVED"
info "content:               $COMPARED"
info "queue left:            $QUEUE_LEFT"
info "dead-letter queue:     $DLQ"
info "accepted (metrics):    $ACCEPTED"
info "seconds taken:         $SECONDS_TAKEN (first upload to last change; wait ended: $OUTCOME)"
info "daemon warnings:       $(strip_ansi <"$DEMO/daemon.log" | grep -cE '^\S+ +(WARN|ERROR) |"level":"(WARN|ERROR)"' || true) (WARN/ERROR lines in daemon.log)"

if [[ $KEEP == 1 ]]; then
  for pid in "$DAEMON_PID" "$MOTO_PID"; do
    printf '%s %s\n' "$pid" "$(cmdline "$pid" | sed 's/ $//')"
  done >"$DEMO/pids"
  LEAVE_RUNNING=1
  echo
  echo "${BOLD}left running (--keep)${OFF}"
  info "moto:    pid $MOTO_PID   $ENDPOINT"
  info "daemon:  pid $DAEMON_PID   API $API   queue $QUEUE_URL"
  info "watch:   tail -f $DEMO/changes.jsonl"
  info "         tail -f $DEMO/daemon.log"
  info "more:    $PY $DEMO_PY upload --endpoint $ENDPOINT --bucket $BUCKET --root $DATA --manifest /dev/null FILE.json.gz"
  info "         (keys outside AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/ are skipped by the daemon)"
  info "list:    curl -sS $API/v1/subscriptions -H 'Authorization: Bearer $API_KEY'"
  info "stop:    scripts/demo.sh --stop    (or: kill $DAEMON_PID $MOTO_PID)"
else
  echo
  echo "${BOLD}stopping the daemon${OFF} (SIGTERM to pid $DAEMON_PID)"
  T_STOP=$(now_ms)
  stop_pid "$DAEMON_PID" 40
  DAEMON_STATUS=0
  wait "$DAEMON_PID" || DAEMON_STATUS=$?
  DAEMON_PID_DONE=$DAEMON_PID
  DAEMON_PID=''
  info "exit status: $DAEMON_STATUS ($(awk -v ms=$(($(now_ms) - T_STOP)) 'BEGIN { printf "%.1f", ms / 1000 }') s after SIGTERM)"
  echo "    last lines of target/demo/daemon.log:"
  tail -n 6 "$DEMO/daemon.log" | strip_ansi | cut -c1-200 | sed 's/^/      /'
  ((DAEMON_STATUS == 0)) || FAILED+=("the daemon (pid $DAEMON_PID_DONE) exited with status $DAEMON_STATUS after SIGTERM")
fi

echo
if ((${#FILES[@]} > 0 && ${#FAILED[@]} == 0)); then
  echo "${GREEN}${BOLD}demo OK${OFF}: $ARRIVED/$EXPECTED changes from $UPLOADED objects in $SECONDS_TAKEN s (whole demo $((($(now_ms) - T_START) / 1000)) s)"
else
  printf '%sdemo FAILED%s:\n' "$RED$BOLD" "$OFF" >&2
  printf '  - %s\n' "${FAILED[@]}" >&2
  [[ $KEEP == 1 ]] || log_tail "$DEMO/daemon.log" 25
  exit 1
fi
