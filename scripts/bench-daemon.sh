#!/usr/bin/env bash
# End-to-end benchmark of `cloudtrail-changes run` against a local AWS (moto), next to a minimal
# client on the same endpoint in the same run. A report, not a test: exits 0 when a target is
# missed, non-zero only when the benchmark itself cannot run.
#
#   scripts/bench-daemon.sh [--objects N] [--runs R] [--quick]
#       N objects (default 300; --quick 60), R throughput rounds (default 3; --quick 1)
#
# Set-up (moto): a bucket whose s3:ObjectCreated notification goes to an SNS topic, subscribed
# by a queue with a DLQ (RedrivePolicy maxReceiveCount 5, visibility 30 s), as a customer sets
# it up (its s3:TestEvent is drained); the bucket subscribed through the daemon's own API
# (`serve-api`, verify_role off). Each phase gets a fresh queue of that kind, unsubscribed after
# it: a consumer that stops abandons its long poll, which moto still completes, and it would
# hide the next phase's first messages for the visibility timeout.
# Objects: N small CloudTrail files (20-49 real records each from tests/data/cloudtrail, fresh
# eventIDs), cached in target/bench-daemon/corpus-N; expected changes from `process`.
#
# Throughput (R rounds, alternating which goes first): a queue is pre-filled with N
# notifications through the real path (PutObject -> S3 -> SNS -> SQS) while nothing consumes
# it, then drained either by
#   - the minimal client (examples/drain_baseline: receive, GetObject, DeleteMessageBatch at the
#     daemon's concurrency: sqs.pollers loops, min(worker.max_inflight_messages,
#     worker.max_inflight_per_subscription) objects in flight): the endpoint's ceiling, or
#   - the daemon (`run`, pacing off, forwarding to examples/bigpanda_sink): timed from its API
#     answering (the pollers start right after) to the last change's arrival at the sink.
# Latency: the daemon running, N objects put at BENCH_RATE/s (10); for each change, the time
# from just before its object's PutObject to its arrival at the sink.
# CPU (user+sys) and peak RSS of the daemon come from wait4() on its process.
#
# Env: BENCH_RATE (10 objects/s in the latency phase); BENCH_KEEP=1 (keep the work directory
#      target/bench-daemon/run-PID with every log); BENCH_SKIP_BUILD=1 (use the release
#      binaries as they are); BENCH_BASELINE_POLLERS, BENCH_BASELINE_INFLIGHT (default: the
#      daemon's effective values); any CTC__* setting is passed to the daemon (and `config check`
#      reads the effective ones), e.g. CTC__WORKER__MAX_INFLIGHT_PER_SUBSCRIPTION=32.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

OBJECTS=300 RUNS=3 QUICK=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --objects) OBJECTS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h | --help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "usage: scripts/bench-daemon.sh [--objects N] [--runs R] [--quick]" >&2; exit 2 ;;
  esac
done
if [[ $QUICK == 1 ]]; then
  [[ $OBJECTS == 300 ]] && OBJECTS=60
  RUNS=1
fi
[[ $OBJECTS =~ ^[0-9]+$ && $OBJECTS -ge 1 && $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || {
  echo "bench-daemon: --objects and --runs must be positive integers" >&2
  exit 2
}

LOCKED=()
[[ -f Cargo.lock ]] && LOCKED=(--locked)
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  cargo build --release "${LOCKED[@]}" --bins --examples
fi
MOTO=$(scripts/moto.sh install)
PY=$(dirname "$MOTO")/python

DIR=$REPO/target/bench-daemon
WORK=$DIR/run-$$
mkdir -p "$WORK"
: > "$WORK/pids"
MOTO_PID=""
cleanup() {
  local pid
  # Children the Python driver started (it kills them itself; this is for a driver killed hard).
  while read -r pid; do
    [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  done < "$WORK/pids"
  if [[ -n $MOTO_PID ]]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    echo "bench-daemon: kept $WORK (logs of moto, serve-api and each daemon run)" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_ACCOUNT_ID=123456789012 "$MOTO" -H 127.0.0.1 -p "$PORT" > "$WORK/moto.log" 2>&1 &
MOTO_PID=$!

"$PY" - "$REPO" "$DIR" "$WORK" "http://127.0.0.1:$PORT" "$OBJECTS" "$RUNS" <<'PY'
import atexit, base64, csv, glob, gzip, io, json, os, random, resource, signal, socket, statistics, subprocess, sys, time
import urllib.request, uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

REPO, DIR, WORK, ENDPOINT = sys.argv[1:5]
N, RUNS = int(sys.argv[5]), int(sys.argv[6])
RATE = float(os.environ.get("BENCH_RATE", "10"))
BIN = os.path.join(REPO, "target/release/cloudtrail-changes")
SINK = os.path.join(REPO, "target/release/examples/bigpanda_sink")
BASELINE = os.path.join(REPO, "target/release/examples/drain_baseline")
ACCOUNT = "123456789012"
BUCKET = "bench-trail"
API_KEY, APP_KEY = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
med = statistics.median
children = []


def log(msg):
    print(f"bench-daemon: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    children.append(p)
    with open(os.path.join(WORK, "pids"), "a") as f:
        f.write(f"{p.pid}\n")
    return p


def kill_children(*signum):
    for p in children:
        if p.returncode is None and p.poll() is None:
            p.kill()
            p.wait()
    # Everything is reaped: the shell's trap must not kill these (maybe reused) pids.
    open(os.path.join(WORK, "pids"), "w").close()
    if signum:
        sys.exit(130)


signal.signal(signal.SIGTERM, kill_children)
atexit.register(kill_children)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30.0, proc=None):
    """Polls every 2 ms until 127.0.0.1:port accepts; returns the time it did."""
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return None
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return time.time()
        except OSError:
            time.sleep(0.002)
    return None


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---------------------------------------------------------------- moto and the AWS set-up
port = int(ENDPOINT.rsplit(":", 1)[1])
if wait_port(port, 60) is None:
    die(f"moto_server did not start; see its log:\n{open(os.path.join(WORK, 'moto.log')).read()[-2000:]}")
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
             max_pool_connections=16)
kw = dict(endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="test",
          aws_secret_access_key="test", config=cfg)
s3, sqs, sns = boto3.client("s3", **kw), boto3.client("sqs", **kw), boto3.client("sns", **kw)

s3.create_bucket(Bucket=BUCKET)
topic_arn = sns.create_topic(Name=f"{BUCKET}-events")["TopicArn"]


def allow(service, action, resource, source):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": action, "Resource": resource,
        "Condition": {"ArnLike": {"aws:SourceArn": source}, "StringEquals": {"aws:SourceAccount": ACCOUNT}}}]})


sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy",
                         AttributeValue=allow("s3.amazonaws.com", "SNS:Publish", topic_arn, f"arn:aws:s3:::{BUCKET}"))


class Queue:
    """bench-I with its DLQ bench-I-dlq (maxReceiveCount 5, visibility 30 s), subscribed to the
    topic. Each phase gets a fresh one: a consumer that stops abandons its long poll, which moto
    (like SQS) still completes, hiding the next phase's first messages for the visibility
    timeout; a fresh queue, unsubscribed after its phase, keeps the phases apart."""

    def __init__(self, i):
        self.dlq = sqs.create_queue(QueueName=f"bench-{i}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.url = sqs.create_queue(QueueName=f"bench-{i}", Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            "VisibilityTimeout": "30"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sqs.set_queue_attributes(QueueUrl=self.url, Attributes={
            "Policy": allow("sns.amazonaws.com", "sqs:SendMessage", arn, topic_arn)})
        self.subscription = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn,
                                          ReturnSubscriptionArn=True)["SubscriptionArn"]

    def retire(self):
        sns.unsubscribe(SubscriptionArn=self.subscription)


def depth(url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return sum(int(v) for v in a.values())


first_queue = Queue(0)
s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
    "TopicConfigurations": [{"TopicArn": topic_arn, "Events": ["s3:ObjectCreated:*"]}]})
# The s3:TestEvent of the notification set-up, as a customer's queue gets it.
test_events = 0
while True:
    got = sqs.receive_message(QueueUrl=first_queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    if not got:
        break
    test_events += sum("s3:TestEvent" in m["Body"] for m in got)
    sqs.delete_message_batch(QueueUrl=first_queue.url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
if test_events != 1:
    log(f"note: {test_events} s3:TestEvent messages after the notification set-up (expected 1)")

# ---------------------------------------------------------------- the corpus
corpus = os.path.join(DIR, f"corpus-{N}")
marker = os.path.join(corpus, ".made")
SPEC = f"v1 objects={N} records=20..49 seed=42"
if not (os.path.exists(marker) and open(marker).readline().strip() == SPEC):
    log(f"generating {corpus} ({N} objects)...")
    pool = []
    for path in sorted(glob.glob(os.path.join(REPO, "tests/data/cloudtrail/**/*.json.gz"), recursive=True)):
        if "partial" in path or "Digest" in path:
            continue
        with gzip.open(path) as f:
            pool += [r for r in json.load(f).get("Records", []) if isinstance(r, dict) and "eventID" in r]
    rng = random.Random(42)
    rng.shuffle(pool)
    ns = uuid.UUID("0b5e1c0e-57a1-4f2b-9c3e-6f1d2a3b4c5d")
    tmp = corpus + ".tmp"
    subprocess.run(["rm", "-rf", tmp, corpus], check=True)
    os.makedirs(tmp)
    at = 0
    for k in range(N):
        recs = []
        for j in range(rng.randint(20, 49)):
            r = dict(pool[at % len(pool)])
            r["eventID"] = str(uuid.uuid5(ns, f"{k}/{j}"))
            recs.append(r)
            at += 1
        name = f"{ACCOUNT}_CloudTrail_us-east-1_20240501T{(k // 60) % 24:02d}{k % 60:02d}Z_bench{k:06d}.json.gz"
        with gzip.open(os.path.join(tmp, name), "wb", compresslevel=6) as f:
            f.write(json.dumps({"Records": recs}, separators=(",", ":")).encode())
    with open(os.path.join(tmp, ".made"), "w") as f:
        f.write(SPEC + "\n")
    os.rename(tmp, corpus)
files = sorted(glob.glob(os.path.join(corpus, "*.json.gz")))
blobs = {os.path.basename(p): open(p, "rb").read() for p in files}
json_bytes = sum(len(gzip.decompress(b)) for b in blobs.values())
gzip_bytes = sum(len(b) for b in blobs.values())
records = sum(len(json.loads(gzip.decompress(b))["Records"]) for b in blobs.values())
# What `process` makes of them: the expected changes, per object.
out = subprocess.run([BIN, "process", corpus], capture_output=True, text=True)
if out.returncode != 0:
    die(f"process {corpus} failed: {out.stderr[-2000:]}")
per_file = {name: 0 for name in blobs}
for line in out.stdout.splitlines():
    per_file[os.path.basename(json.loads(line)["metadata"]["key"])] += 1
CHANGES = sum(per_file.values())
if CHANGES == 0:
    die("the corpus makes no changes")


def key_of(day, name):
    return f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/05/{day:02d}/{name}"


# ---------------------------------------------------------------- the daemon's environment
SUBS_DB = os.path.join(WORK, "subscriptions.db")
api_port = free_port()
daemon_env = dict(os.environ)
daemon_env.update({
    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "CTC__AWS__ENDPOINT_URL": ENDPOINT, "CTC__AWS__REGION": "us-east-1",
    "CTC__SQS__QUEUE_URL": first_queue.url,
    "CTC__SUBSCRIPTIONS__STORE": f"sqlite:{SUBS_DB}",
    "CTC__SUBSCRIPTIONS__ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
    "CTC__SUBSCRIPTIONS__VERIFY_ROLE": "false",
    "CTC__BIGPANDA__RATE_PER_MINUTE": "0",
    "CTC__API__LISTEN": f"127.0.0.1:{api_port}",
    "CTC__LOG__LEVEL": os.environ.get("CTC__LOG__LEVEL", "warn"),
})
daemon_env.setdefault("CTC__BIGPANDA__BASE_URL", "http://127.0.0.1:9")
out = subprocess.run([BIN, "config", "check"], env=daemon_env, capture_output=True, text=True)
if out.returncode != 0:
    die(f"config check: {out.stderr}")
settings = json.loads(out.stdout)
if "admin" in settings:
    # /metrics and /healthz: a free port, not 9464, which a test or another daemon may hold.
    daemon_env["CTC__ADMIN__LISTEN"] = f"127.0.0.1:{free_port()}"
pollers = settings["sqs"]["pollers"]
inflight_msgs = settings["worker"]["max_inflight_messages"]
per_sub = settings["worker"]["max_inflight_per_subscription"]
b_pollers = int(os.environ.get("BENCH_BASELINE_POLLERS", pollers))
b_inflight = int(os.environ.get("BENCH_BASELINE_INFLIGHT", min(inflight_msgs, per_sub)))

# Subscribe the bucket through the API, served alone so that nothing consumes the queue yet.
api = spawn([BIN, "serve-api"], env=daemon_env, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(WORK, "serve-api.log"), "w"))
if wait_port(api_port, 30, api) is None:
    die(f"serve-api did not start: {open(os.path.join(WORK, 'serve-api.log')).read()[-2000:]}")
status, body = http("POST", f"http://127.0.0.1:{api_port}/v1/subscriptions", json.dumps({
    "apiKey": API_KEY, "appKey": APP_KEY, "bucket_name": BUCKET, "bucket_region": "us-east-1",
    "iam_role_arn": f"arn:aws:iam::{ACCOUNT}:role/BigPandaCloudTrailReader",
    "iam_role_external_id": "bp-external-id-1"}).encode(), {"content-type": "application/json"})
api.send_signal(signal.SIGTERM)
api.wait(30)
if status not in (200, 201):
    die(f"POST /v1/subscriptions: {status} {body[:500]!r}")
first_queue.retire()


# ---------------------------------------------------------------- phases
def upload(q, day, threads=4):
    """Puts every object under day `day`; returns once queue `q` holds all N notifications."""
    before = depth(q.url)
    t0 = time.time()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda name: s3.put_object(Bucket=BUCKET, Key=key_of(day, name), Body=blobs[name]), blobs))
    end = time.time() + 60
    while depth(q.url) < before + N:
        if time.time() > end:
            die(f"only {depth(q.url) - before} of {N} notifications reached the queue")
        time.sleep(0.1)
    return time.time() - t0


def start_sink():
    p = spawn([SINK, "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 2 or line[0] != "listening":
        die(f"bigpanda_sink: unexpected first line {line}")
    return p, "http://" + line[1]


def sink_stats(url):
    return json.loads(http("GET", url + "/stats")[1])


def stop(p, timeout=60):
    """SIGTERM, then wait4: (exit code, cpu seconds, peak RSS KiB)."""
    p.send_signal(signal.SIGTERM)
    end = time.time() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.time() > end:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def daemon_log_tail(path, n=15):
    lines = open(path).read().splitlines()
    return "\n".join(lines[-n:])


problems, notes = [], []


def fates():
    """The daemon's message counters from its /metrics: {"received": n, "<fate>": n, ...}."""
    listen = daemon_env.get("CTC__ADMIN__LISTEN")
    if not listen:
        return {}
    try:
        text = http("GET", f"http://{listen}/metrics")[1].decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("ctc_messages_received_total"):
            out["received"] = int(float(line.split()[-1]))
        elif line.startswith("ctc_messages_total{") and 'fate="' in line:
            fate = line.split('fate="', 1)[1].split('"', 1)[0]
            out[fate] = out.get(fate, 0) + int(float(line.split()[-1]))
    return out


def fates_text(f):
    if not f:
        return "n/a"
    rest = ", ".join(f"{k} {v}" for k, v in sorted(f.items()) if k != "received")
    return f"{f.get('received', 0)} receipts: {rest}"


def run_daemon(tag, q, sink_url):
    env = dict(daemon_env, CTC__BIGPANDA__BASE_URL=sink_url, CTC__SQS__QUEUE_URL=q.url)
    logpath = os.path.join(WORK, f"daemon-{tag}.log")
    t_spawn = time.time()
    p = spawn([BIN, "run"], env=env, stdout=subprocess.DEVNULL, stderr=open(logpath, "w"))
    t_ready = wait_port(api_port, 60, p)
    if t_ready is None:
        die(f"the daemon did not start:\n{daemon_log_tail(logpath)}")
    return p, t_spawn, t_ready, logpath


def wait_changes(sink_url, want, timeout):
    end = time.time() + timeout
    while True:
        st = sink_stats(sink_url)
        if st["count"] >= want or time.time() > end:
            return st
        time.sleep(0.02)


def wait_empty(url, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if depth(url) == 0:
            return True
        time.sleep(0.1)
    return False


def check_arrivals(tag, q, sink_url, want, logpath):
    rows = list(csv.DictReader(io.StringIO(http("GET", sink_url + "/arrivals")[1].decode())))
    ids = {r["identifier"] for r in rows}
    if len(ids) != want:
        problems.append(f"{tag}: the sink got {len(rows)} changes ({len(ids)} distinct), expected {want}")
    elif len(rows) > want:
        # At-least-once: moto (like SQS) can hand one message to two concurrent receives.
        notes.append(f"{tag}: {len(rows) - want} changes arrived twice (every one of the {want} arrived)")
    left, dead = depth(q.url), depth(q.dlq)
    if left or dead:
        problems.append(f"{tag}: {left} messages left in the queue, {dead} in the DLQ")
    warns = [l for l in open(logpath).read().splitlines() if " WARN " in l or " ERROR " in l]
    if warns:
        problems.append(f"{tag}: {len(warns)} warnings/errors in the daemon's log, e.g. {warns[0][:300]}")
    return rows


day = 0
base_runs, daemon_runs = [], []
for r in range(RUNS):
    order = ("baseline", "daemon") if r % 2 == 0 else ("daemon", "baseline")
    for who in order:
        day += 1
        q = Queue(day)
        up = upload(q, day)
        tag = f"{who}-{r + 1}"
        if who == "baseline":
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = spawn([BASELINE, "--endpoint", ENDPOINT, "--queue-url", q.url,
                          "--pollers", str(b_pollers), "--inflight", str(b_inflight),
                          "--wait-seconds", "1", "--idle-seconds", "3", "--expect", str(N)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            o, e = proc.communicate(timeout=600)
            if proc.returncode != 0:
                die(f"drain_baseline exited {proc.returncode}: {e[-2000:]}")
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            res = json.loads(o.strip().splitlines()[-1])
            res["cpu"] = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
            if res["distinct"] != N or res["errors"]:
                problems.append(f"{tag}: drain_baseline read {res['distinct']} of {N} objects, {res['errors']} errors")
            if res["objects"] > res["distinct"]:
                notes.append(f"{tag}: moto handed {res['objects'] - res['distinct']} message(s) to two "
                             f"concurrent receives (the baseline read an object twice)")
            if not wait_empty(q.url, 10):
                problems.append(f"{tag}: the queue is not empty after the baseline drained it")
            q.retire()
            base_runs.append(res)
            log(f"{tag}: upload {up:.1f} s, drained {res['distinct']} objects in {res['seconds']:.2f} s "
                f"({res['objects_per_s']:.1f}/s)")
        else:
            sink, sink_url = start_sink()
            p, t_spawn, t_ready, logpath = run_daemon(tag, q, sink_url)
            st = wait_changes(sink_url, CHANGES, 600)
            emptied = wait_empty(q.url, 60)
            time.sleep(0.1)  # let the last deletes finish
            f = fates()
            code, cpu, rss = stop(p)
            rows = check_arrivals(tag, q, sink_url, CHANGES, logpath)
            stop(sink)
            if code != 0:
                problems.append(f"{tag}: the daemon exited {code} after SIGTERM")
            if not emptied:
                problems.append(f"{tag}: the queue did not empty within 60 s of the last change")
            secs = st["last_ns"] / 1e9 - t_ready
            q.retire()
            daemon_runs.append({"seconds": secs, "startup": t_ready - t_spawn, "cpu": cpu, "rss": rss,
                                "changes": st["count"], "fates": f})
            log(f"{tag}: upload {up:.1f} s, drained {N} objects / {st['count']} changes in {secs:.2f} s "
                f"({N / secs:.1f} objects/s), cpu {cpu:.2f} s, peak RSS {rss / 1024:.1f} MiB; "
                f"messages: {fates_text(f)}")

# Latency: the daemon running, objects put at RATE/s.
day += 1
q = Queue(day)
sink, sink_url = start_sink()
p, _, _, logpath = run_daemon("latency", q, sink_url)
put_ns = {}
t0 = time.time()
for i, name in enumerate(blobs):
    delay = t0 + i / RATE - time.time()
    if delay > 0:
        time.sleep(delay)
    key = key_of(day, name)
    put_ns[key] = time.time_ns()
    s3.put_object(Bucket=BUCKET, Key=key, Body=blobs[name])
put_secs = time.time() - t0
st = wait_changes(sink_url, CHANGES, 300)
wait_empty(q.url, 60)
time.sleep(0.1)
lat_fates = fates()
code, lat_cpu, lat_rss = stop(p)
rows = check_arrivals("latency", q, sink_url, CHANGES, logpath)
q.retire()
stop(sink)
if code != 0:
    problems.append(f"latency: the daemon exited {code} after SIGTERM")
lat = sorted((int(r["arrival_ns"]) - put_ns[r["key"]]) / 1e9 for r in rows if r["key"] in put_ns)
obj_last = {}
for r in rows:
    if r["key"] in put_ns:
        obj_last[r["key"]] = max(obj_last.get(r["key"], 0), (int(r["arrival_ns"]) - put_ns[r["key"]]) / 1e9)
obj_lat = sorted(obj_last.values())


def pct(xs, q):
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * len(xs) + 0.5)) - 1))]


# ---------------------------------------------------------------- report
def verdict(ok):
    return "PASS" if ok else "FAIL  <<<<<<<<<<"


b_rate = [x["distinct"] / x["seconds"] for x in base_runs]
d_rate = [N / x["seconds"] for x in daemon_runs]
ratios = [d / b for d, b in zip(d_rate, b_rate)]
cpu = [x["cpu"] for x in daemon_runs]
peak = max([x["rss"] for x in daemon_runs] + [lat_rss]) / 1024
print(f"corpus: {N} objects, {records:,} records, {CHANGES:,} changes, {json_bytes / 1e6:.2f} MB JSON, "
      f"{gzip_bytes / 1e6:.2f} MB gzip   (runs: {RUNS}; moto 5.2.5 on {os.cpu_count()} cores)")
print(f"daemon: sqs.pollers {pollers}, worker.max_inflight_messages {inflight_msgs}, "
      f"max_inflight_per_subscription {per_sub}, bigpanda.max_concurrency_per_key "
      f"{settings['bigpanda']['max_concurrency_per_key']}, pacing off; "
      f"baseline: {b_pollers} pollers, {b_inflight} in flight")
print("throughput (pre-filled queue of N notifications, drained):")
print("  baseline runs (objects/s): " + "  ".join(f"{x:.1f}" for x in b_rate))
print("  daemon   runs (objects/s): " + "  ".join(f"{x:.1f}" for x in d_rate)
      + "   (startup before the clock: " + " ".join(f"{x['startup']:.2f}" for x in daemon_runs) + " s)")
b_cpu = med([x["cpu"] for x in base_runs])
print(f"  baseline median {med(b_rate):6.1f} objects/s   (the endpoint's ceiling; its cpu "
      f"{b_cpu / N * 1000:.2f} s per 1,000 objects)")
print(f"  daemon   median {med(d_rate):6.1f} objects/s   {med(d_rate) * CHANGES / N:7.1f} changes/s")
r_med = med(ratios)
print("  daemon messages per run: " + "   ".join(fates_text(x["fates"]) for x in daemon_runs))
deferred = sum(x["fates"].get("deferred", 0) for x in daemon_runs)
if deferred:
    print(f"  note: {deferred} messages were deferred (subscription busy: more than "
          f"max_inflight_per_subscription={per_sub} of its objects in flight while "
          f"max_inflight_messages={inflight_msgs} were received); each comes back after "
          f"{settings['worker']['defer_seconds']}-{2 * settings['worker']['defer_seconds']} s")
print(f"  ratio daemon/baseline: " + "  ".join(f"{x:.2f}" for x in ratios)
      + f"   median {r_med:.2f}   target >= 0.80   {verdict(r_med >= 0.80)}")
print(f"latency PutObject -> change at the sink ({N} objects at {RATE:g}/s, put in {put_secs:.1f} s, "
      f"{len(lat)} changes):")
print(f"  per change: p50 {pct(lat, 50) * 1000:.0f} ms   p99 {pct(lat, 99) * 1000:.0f} ms   "
      f"max {lat[-1] * 1000 if lat else float('nan'):.0f} ms   target p50 < 1 s   {verdict(pct(lat, 50) < 1.0)}")
print(f"  per object (its last change): p50 {pct(obj_lat, 50) * 1000:.0f} ms   "
      f"p99 {pct(obj_lat, 99) * 1000:.0f} ms   (messages: {fates_text(lat_fates)})")
print(f"daemon cost (throughput runs, whole process incl. start-up and shutdown):")
print(f"  cpu runs (s): " + "  ".join(f"{x:.2f}" for x in cpu))
print(f"  cpu {med(cpu) / N * 1000:.2f} s per 1,000 objects   {med(cpu) / (json_bytes / 1e8):.2f} s per 100 MB JSON   "
      f"(latency phase: {lat_cpu:.2f} s for {N} objects over {put_secs:.0f} s)")
print(f"  peak RSS {peak:.1f} MiB (max over every daemon run)")
if notes:
    print("notes:")
    for x in notes:
        print("  - " + x)
if problems:
    print("PROBLEMS:")
    for x in problems:
        print("  - " + x)
PY
