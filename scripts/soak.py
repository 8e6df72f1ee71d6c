#!/usr/bin/env python3
"""Soak-and-chaos test of `cloudtrail-changes run` (driven by scripts/soak.sh; run it with the
moto venv's python, which has boto3).

    soak.py --mode short|long [--objects N] [--minutes M] [--records-per-file R]
            [--blackhole] [--keep] --work DIR

The daemon (the release binary, or the debug one with `--profile debug`, `run`) against a local AWS (moto) reached through a TCP proxy
that can stop it (examples/chaos_proxy), forwarding to a BigPanda stand-in that can fail
(examples/soak_standin). Real-shaped CloudTrail objects (scripts/make-corpus) are put
into a bucket whose notifications go S3 -> SNS -> SQS (with a DLQ), in bursts, while on a
schedule: the stand-in answers 500s, 503s, 429s with and without Retry-After, hangs past the
daemon's request timeout, resets and closes connections; the daemon is killed with SIGKILL and
restarted, and gets SIGTERM in the middle of a burst and is restarted; the AWS endpoint is
stopped (the proxy refuses and resets connections) and started again. A few poison messages are
planned (a truncated gzip, objects of an unsubscribed bucket, a body that is no notification, a
notification of a missing object).

At the end what the stand-in accepted is compared with what `cloudtrail-changes process`
produces for the same files: every change present with the same body, duplicates counted, the
source queue empty, the DLQ holding exactly the planned poison (by failure_reason). The daemon's
open fds, threads and RSS are sampled from /proc throughout. Exit status 0 only if all of that
holds, every SIGTERM ended in exit status 0, and every scheduled fault really happened: each
control request accepted; each stand-in window served its fault to at least one request (a
window that served none is opened again, up to WINDOW_MOVES times, the schedule moving later);
each endpoint outage counted SQS errors in the daemon and cut connections at the proxy; work in
flight at every SIGKILL and SIGTERM (the signal waits for it); and changes resumed from
checkpoints by the runs after the kill -9. A fault that did not happen is named in PROBLEMS.

Uploads (and the test's own look at the queues) go straight to moto, never through the proxy:
only the daemon sees the outage.
"""

import argparse
import base64
import collections
import glob
import gzip
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "soak-trail"
UNKNOWN_BUCKET = "soak-unsubscribed"  # notifies our topic, never subscribed: unknown_bucket
API_KEY = "soak0123456789abcdef0123456789ab"
APP_KEY = "soakapp0123456789abcdef"
PREFIX = f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/01/01/"
VISIBILITY = 20
MAX_RECEIVE = 10
MAX_DEPTH = 300  # the uploader waits while the source queue holds more (moto slows down)

T_START = time.time()


def log(msg):
    print(f"[{time.time() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"soak: {msg}")
    sys.exit(2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=5):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def control(url, what, problems):
    """POSTs a fault-control request; a refusal or no answer is a problem (the fault did not
    happen), said with `what`."""
    try:
        status, body = http("POST", url)
    except OSError as e:
        status, body = 0, str(e).encode()
    if status != 200:
        problems.append(f"{what}: the control request was not accepted ({status} {body[:200]!r})")
        log(f"!!! {what}: control request answered {status}")
        return False
    return True


def metric_value(body, name):
    """The sum of every sample of counter `name` on a /metrics page (all label sets)."""
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * len(xs) + 0.5)) - 1))]


# --------------------------------------------------------------------------- child processes
CHILDREN = []


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    CHILDREN.append(p)
    return p


def kill_children():
    # Ours only, by PID (the daemon first, so it does not log moto's disappearance).
    for p in reversed(CHILDREN):
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p in CHILDREN:
        try:
            p.wait(5)
        except Exception:
            pass


def on_signal(signum, _frame):
    kill_children()
    sys.exit(128 + signum)


def first_line(p, what, timeout=30):
    """The first stdout line of a child (its `listening ...` line)."""
    box = []
    t = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not box or not box[0]:
        die(f"{what} did not start (no first line within {timeout} s)")
    return box[0].split()


# --------------------------------------------------------------------------- AWS (moto, direct)
def aws_clients(endpoint):
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                 max_pool_connections=16, connect_timeout=5, read_timeout=30)
    kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="test",
              aws_secret_access_key="test", config=cfg)
    return {n: boto3.client(n, **kw) for n in ("s3", "sqs", "sns", "iam")}


def policy(statements):
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def setup_aws(c):
    s3, sqs, sns = c["s3"], c["sqs"], c["sns"]
    for b in (BUCKET, UNKNOWN_BUCKET):
        s3.create_bucket(Bucket=b)
    dlq = sqs.create_queue(QueueName="soak-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="soak", Attributes={
        "VisibilityTimeout": str(VISIBILITY),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE)}),
    })["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="soak-events")["TopicArn"]
    sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=policy([{
        "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "SNS:Publish",
        "Resource": topic, "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]))
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": policy([{
        "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}])})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True)
    for b in (BUCKET, UNKNOWN_BUCKET):
        s3.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration={
            "TopicConfigurations": [{"Id": "cloudtrail-changes", "TopicArn": topic,
                                     "Events": ["s3:ObjectCreated:*"]}]})
    return queue, dlq, topic


def depth(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return (int(a.get("ApproximateNumberOfMessages", 0)),
            int(a.get("ApproximateNumberOfMessagesNotVisible", 0)),
            int(a.get("ApproximateNumberOfMessagesDelayed", 0)))


def read_dlq(sqs, url):
    """Every DLQ message (received with a long visibility so none comes twice): reason, detail, body."""
    out, seen = [], set()
    empty = 0
    while empty < 2:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  VisibilityTimeout=300, MessageAttributeNames=["All"],
                                  AttributeNames=["All"]).get("Messages", [])
        if not got:
            empty += 1
            continue
        for m in got:
            if m["MessageId"] in seen:
                continue
            seen.add(m["MessageId"])
            attrs = m.get("MessageAttributes") or {}
            val = lambda k: (attrs.get(k) or {}).get("StringValue")
            out.append({"reason": val("failure_reason") or "(none: moved by SQS)",
                        "detail": val("failure_detail") or "", "body": m["Body"],
                        "receives": (m.get("Attributes") or {}).get("ApproximateReceiveCount")})
    return out


# --------------------------------------------------------------------------- corpus and expectations
def make_corpus(repo, cache, objects, rpf):
    """`objects` files of `rpf` records each from scripts/make-corpus, cached."""
    tool = os.path.join(repo, "scripts", "make-corpus")
    if not os.path.exists(tool):
        die(f"no {tool}")
    out = os.path.join(cache, f"corpus-{objects}x{rpf}")
    marker = os.path.join(out, ".made")
    if os.path.exists(marker):
        return out, sorted(glob.glob(os.path.join(out, "*.json.gz")))
    probe = out + ".probe"
    shutil.rmtree(probe, ignore_errors=True)
    # make-corpus is sized in MB of JSON: measure the bytes per record once, then ask for a bit
    # more than `objects` full files and keep the first `objects` (the last may be short).
    r = subprocess.run([sys.executable, tool, probe, "--mb", "0.5", "--records-per-file", "1000000"],
                       capture_output=True, text=True, check=True)
    stats = dict(kv.split("=") for kv in r.stdout.split())
    per_record = int(stats["json_bytes"]) / int(stats["records"])
    shutil.rmtree(probe, ignore_errors=True)
    mb = (objects + 1) * rpf * per_record * 1.05 / 2**20
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    r = subprocess.run([sys.executable, tool, tmp, "--mb", f"{mb:.3f}", "--records-per-file", str(rpf)],
                       capture_output=True, text=True, check=True)
    files = sorted(glob.glob(os.path.join(tmp, "*.json.gz")))
    if len(files) < objects:
        die(f"make-corpus made {len(files)} files, wanted {objects}: {r.stdout}")
    for extra in files[objects:]:
        os.remove(extra)
    with open(os.path.join(tmp, ".made"), "w") as f:
        f.write(r.stdout)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return out, sorted(glob.glob(os.path.join(out, "*.json.gz")))


def canonical(change, key=None):
    change = json.loads(json.dumps(change))
    if key is not None:
        (change.setdefault("metadata", {}))["key"] = key
    return json.dumps(change, sort_keys=True, ensure_ascii=False)


def expected_changes(binary, corpus, files, work):
    """{identifier: (s3 key, canonical body)} that `process` produces for the corpus.

    The daemon deduplicates eventIDs within one object (it reads each object on its own);
    `process` over a directory deduplicates across all the files of the call. The two agree when
    no eventID appears in two files, which make-corpus guarantees (a fresh eventID per record
    copy) and which is checked here; if it ever did not hold, `process` is run once per file,
    which is exactly the daemon's view."""
    owner = {}
    shared_ids = 0
    for path in files:
        with gzip.open(path) as f:
            for rec in json.load(f).get("Records", []):
                eid = rec.get("eventID") if isinstance(rec, dict) else None
                if eid is None:
                    continue
                if owner.setdefault(eid, path) != path:
                    shared_ids += 1
    runs = [[corpus]] if shared_ids == 0 else [[p] for p in files]
    lines = []
    with open(os.path.join(work, "process.log"), "w") as errlog:
        for args in runs:
            r = subprocess.run([binary, "process", "--bucket", BUCKET, *args], stdout=subprocess.PIPE,
                               stderr=errlog, text=True)
            if r.returncode != 0:
                die(f"process {' '.join(args)} failed (see {work}/process.log)")
            lines += r.stdout.splitlines()
    out = {}
    dup_in_process = 0
    for line in lines:
        c = json.loads(line)
        key = PREFIX + os.path.basename(c["metadata"]["key"])
        if c["identifier"] in out:
            dup_in_process += 1
        out[c["identifier"]] = (key, canonical(c, key))
    if dup_in_process:
        die(f"process printed {dup_in_process} identifiers twice; the comparison assumes unique ones")
    with open(os.path.join(work, "expected.jsonl"), "w") as f:
        f.writelines(line + "\n" for line in lines)
    return out, ("one process run over the directory (no eventID in two files)" if shared_ids == 0
                 else f"process per file ({shared_ids} eventIDs shared between files)")


def partial_changes(binary, path, key):
    """The changes `process` reads from a damaged file before the damage (it exits 1)."""
    r = subprocess.run([binary, "process", "--bucket", BUCKET, path], capture_output=True, text=True)
    return {json.loads(l)["identifier"]: canonical(json.loads(l), key) for l in r.stdout.splitlines()}


# --------------------------------------------------------------------------- the stand-in's record
class Arrivals:
    """Reads the stand-in's record file incrementally: one JSON line per accepted request."""

    def __init__(self, path):
        self.path, self.offset, self.rows = path, 0, []
        self.first = {}  # identifier -> first arrival ns

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            row = json.loads(line)
            body = row["body"]
            ident = body.get("identifier") if isinstance(body, dict) else None
            self.rows.append((row["t"], ident, body))
            if ident is not None and ident not in self.first:
                self.first[ident] = row["t"]


# --------------------------------------------------------------------------- the daemon
class Daemon:
    def __init__(self, binary, overlay, env, work, admin):
        self.binary, self.overlay, self.env, self.work, self.admin = binary, overlay, env, work, admin
        self.proc, self.runs, self.expected_exit = None, 0, False
        self.lock = threading.RLock()
        self.metrics = {}  # run -> last scraped counters
        self.samples = collections.defaultdict(list)  # run -> [(t, fds, threads, rss_kb, hwm_kb)]
        self.crashes, self.term_results = [], []
        self.health_samples = []  # (t, run, healthz status, readyz status, readyz body)

    def log_path(self, run=None):
        return os.path.join(self.work, f"daemon-{run or self.runs}.log")

    def start(self):
        with self.lock:
            self.runs += 1
            self.expected_exit = False
            self.proc = spawn([self.binary, "--config", self.overlay, "run"], env=self.env, stdout=subprocess.DEVNULL,
                              stderr=open(self.log_path(), "w"), stdin=subprocess.DEVNULL)
        end = time.time() + 30
        while time.time() < end:
            if self.proc.poll() is not None:
                die(f"the daemon (run {self.runs}) exited {self.proc.returncode} at start:\n"
                    + tail(self.log_path(), 15))
            try:
                if http("GET", f"http://{self.admin}/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        die(f"the daemon (run {self.runs}) did not answer /healthz within 30 s:\n" + tail(self.log_path(), 15))

    def kill9(self):
        with self.lock:
            self.expected_exit = True
            self.scrape()
            self.proc.kill()
            self.proc.wait()

    def sigterm(self, limit):
        """SIGTERM, then wait for the exit: (exit status, seconds)."""
        with self.lock:
            self.expected_exit = True
            self.scrape()
            t0 = time.time()
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = f"still running after {limit} s: SIGKILLed"
            self.proc.wait()
        took = time.time() - t0
        self.term_results.append((self.runs, code, took))
        return code, took

    def wait_in_flight(self, n, timeout):
        """Polls /metrics until `ctc_messages_in_flight` >= n; returns the last value seen."""
        end, value = time.time() + timeout, 0.0
        while time.time() < end:
            try:
                body = http("GET", f"http://{self.admin}/metrics", timeout=1)[1].decode()
                for line in body.splitlines():
                    if line.startswith("ctc_messages_in_flight"):
                        value = float(line.rsplit(" ", 1)[1])
            except (OSError, ValueError):
                pass
            if value >= n:
                break
            time.sleep(0.1)
        return value

    def counter_now(self, name):
        """Counter `name` (all labels summed) of the running daemon now; None if it did not answer."""
        try:
            status, body = http("GET", f"http://{self.admin}/metrics", timeout=2)
        except OSError:
            return None
        return metric_value(body.decode(), name) if status == 200 else None

    def scrape(self):
        try:
            status, body = http("GET", f"http://{self.admin}/metrics", timeout=2)
        except OSError:
            return
        if status != 200:
            return
        counters = {}
        for line in body.decode().splitlines():
            if line.startswith("#") or "_bucket{" in line or "_sum" in line or "_count" in line:
                continue
            name, _, value = line.rpartition(" ")
            if name.startswith("ctc_"):
                try:
                    counters[name] = float(value)
                except ValueError:
                    pass
        self.metrics[self.runs] = counters

    def sample(self):
        pid = self.proc.pid if self.proc else None
        if pid is None or self.proc.poll() is not None:
            return
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            st = {}
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    st[k] = v.split()[0] if v.split() else "0"
            self.samples[self.runs].append((time.time(), fds, int(st["Threads"]), int(st["VmRSS"]),
                                            int(st["VmHWM"])))
        except (OSError, KeyError, ValueError):
            pass

    def health(self):
        """(healthz status, readyz status, readyz body) now; 0 when it did not answer."""
        out = []
        for path in ("healthz", "readyz"):
            try:
                code, body = http("GET", f"http://{self.admin}/{path}", timeout=1)
            except OSError:
                code, body = 0, b""
            out += [code, body.decode(errors="replace").strip()[:200]]
        self.health_samples.append((time.time(), self.runs, out[0], out[2], out[3]))
        return out

    def check_alive(self):
        """A daemon that exited without being told is a crash: recorded, then restarted."""
        with self.lock:
            if self.proc is None or self.expected_exit or self.proc.poll() is None:
                return
            code = self.proc.returncode
            self.crashes.append((self.runs, code, tail(self.log_path(), 20)))
            log(f"!!! the daemon (run {self.runs}) exited by itself with status {code}; restarting")
        self.start()


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- the uploader
class Uploader(threading.Thread):
    """Puts the corpus in bursts; records each object's put time (just before PutObject)."""

    def __init__(self, s3, sqs, queue, files, bursts, every, poison_at, poison_fn):
        super().__init__(daemon=True)
        self.s3, self.sqs, self.queue, self.files = s3, sqs, queue, files
        self.bursts, self.every = bursts, every
        self.poison_at, self.poison_fn = poison_at, poison_fn
        self.put_ns = {}
        self.cond = threading.Condition()
        self.burst_no = 0
        self.done = False
        self.error = None
        self.waited_for_depth = 0.0

    def wait_next_burst(self, timeout):
        with self.cond:
            n = self.burst_no
            self.cond.wait_for(lambda: self.burst_no > n or self.done, timeout)
            return self.burst_no > n

    def put(self, path):
        key = PREFIX + os.path.basename(path)
        with open(path, "rb") as f:
            body = f.read()
        self.put_ns[key] = time.time_ns()
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    def run(self):
        try:
            per = -(-len(self.files) // self.bursts)
            t0 = time.time()
            with ThreadPoolExecutor(4) as ex:
                for b in range(self.bursts):
                    chunk = self.files[b * per:(b + 1) * per]
                    if not chunk:
                        break
                    delay = t0 + b * self.every - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    w0 = time.time()
                    while sum(depth(self.sqs, self.queue)) > MAX_DEPTH:
                        time.sleep(1)
                    self.waited_for_depth += time.time() - w0
                    with self.cond:
                        self.burst_no += 1
                        self.cond.notify_all()
                    list(ex.map(self.put, chunk))
                    if b in self.poison_at:
                        self.poison_fn(self.poison_at[b])
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = repr(e)
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()


# --------------------------------------------------------------------------- the schedule
def schedule(mode, chaos_seconds, blackhole):
    """(seconds after the first upload, action, args), in time order."""
    ev = []
    if mode == "short":
        ev = [
            (2, "standin", dict(kind="500", seconds=8)),
            (13, "standin", dict(kind="429", seconds=6)),
            (21, "standin", dict(kind="429bare", seconds=5)),
            (28, "standin", dict(kind="hang", seconds=6, hang=5)),
            (36, "standin", dict(kind="reset", seconds=5, p=0.5)),
            (43, "standin", dict(kind="close", seconds=4, p=0.5)),
            (47, "kill9", {}),
            (55, "outage", dict(mode="refuse", seconds=15)),
            (74, "sigterm", {}),
            (86, "standin", dict(kind="503", seconds=4)),
        ]
        if blackhole:
            ev.append((92, "outage", dict(mode="blackhole", seconds=10)))
    else:
        cycle = 150
        n = 0
        for c in range(0, int(chaos_seconds), cycle):
            restarts = c < chaos_seconds * 0.5  # the last half: one daemon run through every fault
            ev += [
                (c + 5, "standin", dict(kind="500", seconds=10)),
                (c + 20, "standin", dict(kind="429", seconds=8)),
                (c + 32, "standin", dict(kind="429bare", seconds=6)),
                (c + 42, "standin", dict(kind="hang", seconds=8, hang=5)),
                (c + 55, "standin", dict(kind="reset", seconds=6, p=0.5)),
                (c + 65, "standin", dict(kind="close", seconds=5, p=0.5)),
                (c + 72, "standin", dict(kind="503", seconds=5)),
                (c + 95, "outage", dict(mode="blackhole" if blackhole and n % 2 else "refuse", seconds=15)),
                (c + 135, "standin", dict(kind="slow", seconds=5, hang=1)),
            ]
            if restarts:
                ev += [(c + 80, "kill9", {}), (c + 120, "sigterm", {})]
            n += 1
    out = []
    for t, action, args in ev:
        out.append((t, action, args))
        if action == "outage":
            out.append((t + args["seconds"], "up", {}))
        if action == "standin":
            # Was the window's fault served? Checked just after it closes.
            out.append((t + args["seconds"] + 0.5, "served?", args))
    return sorted(out, key=lambda e: e[0])


# A stand-in window that served nothing (no change request came while it was open) is opened
# again right away, up to this many more times, and the rest of the schedule moves later.
WINDOW_MOVES = 3


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("short", "long"), default="short")
    ap.add_argument("--objects", type=int)
    ap.add_argument("--minutes", type=float, help="long: length of the chaos phase (default 15)")
    ap.add_argument("--records-per-file", type=int)
    ap.add_argument("--blackhole", action="store_true",
                    help="also make the endpoint a black hole (connections accepted, never answered)")
    ap.add_argument("--profile", choices=("release", "debug"), default="release",
                    help="which build's binaries to run (debug: the ones `cargo test` built)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--repo", required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run(a)
    finally:
        kill_children()


def run(a):
    short = a.mode == "short"
    objects = a.objects or (200 if short else 3000)
    rpf = a.records_per_file or (40 if short else 50)
    chaos_seconds = 90 if short else (a.minutes or 15) * 60
    repo, work = a.repo, a.work
    binary = os.path.join(repo, f"target/{a.profile}/cloudtrail-changes")
    examples = os.path.join(repo, f"target/{a.profile}/examples")
    for p in (binary, f"{examples}/soak_standin", f"{examples}/chaos_proxy"):
        if not os.access(p, os.X_OK):
            die(f"missing {p}: cargo build {'--release ' if a.profile == 'release' else ''}--bins --examples")
    os.makedirs(work, exist_ok=True)

    # --- moto, the proxy in front of it, the stand-in
    moto_port = free_port()
    moto = spawn([os.path.join(repo, "scripts/moto.sh"), "start", str(moto_port)],
                 stdout=open(f"{work}/moto.log", "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    moto_url = f"http://127.0.0.1:{moto_port}"
    end = time.time() + 60
    while True:
        try:
            if http("GET", f"{moto_url}/moto-api/", timeout=1)[0] == 200:
                break
        except OSError:
            pass
        if moto.poll() is not None or time.time() > end:
            die("moto_server did not start:\n" + tail(f"{work}/moto.log", 15))
        time.sleep(0.2)
    proxy = spawn([f"{examples}/chaos_proxy", "--upstream", f"127.0.0.1:{moto_port}"],
                  stdout=subprocess.PIPE, stderr=open(f"{work}/proxy.log", "w"), text=True)
    words = first_line(proxy, "chaos_proxy")
    proxy_url, proxy_ctl = f"http://{words[1]}", f"http://{words[3]}"
    accepted_path = f"{work}/accepted.jsonl"
    if os.path.exists(accepted_path):
        os.remove(accepted_path)
    standin = spawn([f"{examples}/soak_standin", "--out", accepted_path], stdout=subprocess.PIPE,
                    stderr=open(f"{work}/standin.log", "w"), text=True)
    standin_url = "http://" + first_line(standin, "soak_standin")[1]
    log(f"moto {moto_url}, proxy {proxy_url} (control {proxy_ctl}), stand-in {standin_url}")

    c = aws_clients(moto_url)
    s3, sqs, sns = c["s3"], c["sqs"], c["sns"]
    queue, dlq, topic = setup_aws(c)

    # --- corpus and what `process` makes of it
    corpus, files = make_corpus(repo, os.path.join(repo, "target/soak"), objects, rpf)
    expected, how = expected_changes(binary, corpus, files, work)
    truncated = os.path.join(repo, "tests/data/edge/truncated.json.gz")
    truncated_key = PREFIX + f"{ACCOUNT}_CloudTrail_{REGION}_20260101T2359Z_soakTruncated.json.gz"
    partial = partial_changes(binary, truncated, truncated_key)
    records = 0
    for p in files:
        with gzip.open(p) as f:
            records += len(json.load(f)["Records"])
    log(f"corpus {corpus}: {len(files)} objects, {records} records, {len(expected)} changes ({how})")

    # --- the daemon
    api, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CTC__"))}
    env.update({
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "CTC__AWS__ENDPOINT_URL": proxy_url, "CTC__AWS__REGION": REGION,
        # The queue URL as the daemon would see it: on the endpoint it talks to (the proxy).
        "CTC__SQS__QUEUE_URL": queue.replace(moto_url, proxy_url),
        "CTC__SUBSCRIPTIONS__STORE": f"sqlite:{work}/subscriptions.db",
        # Sealed by default; one key for every restart of this soak's store.
        "CTC__SUBSCRIPTIONS__ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CTC__BIGPANDA__BASE_URL": standin_url,
        "CTC__BIGPANDA__RATE_PER_MINUTE": "0",
        "CTC__BIGPANDA__REQUEST_TIMEOUT_SECONDS": "2",
        "CTC__WORKER__CHANGE_RETRY_SECONDS": "5" if short else "10",
        # Short, so that a SIGTERM mid-delivery releases some messages (visibility 0) to be
        # resumed from their checkpoints by the next run, not only lets them finish.
        "CTC__WORKER__SHUTDOWN_GRACE_SECONDS": "3",
        "CTC__API__LISTEN": api, "CTC__ADMIN__LISTEN": admin,
        "CTC__LOG__FORMAT": "json", "CTC__LOG__LEVEL": "info",
    })
    # The caller's own CTC__* settings win (e.g. CTC__SQS__POLLERS=4), except where they point.
    for k, v in os.environ.items():
        if k.startswith("CTC__") and k not in ("CTC__AWS__ENDPOINT_URL", "CTC__SQS__QUEUE_URL",
                                               "CTC__BIGPANDA__BASE_URL", "CTC__SUBSCRIPTIONS__STORE",
                                               "CTC__API__LISTEN", "CTC__ADMIN__LISTEN"):
            env[k] = v
    # The overlay file is the operator's way in; the environment carries the rest.
    overlay = f"{work}/soak.toml"
    with open(overlay, "w") as f:
        f.write("[worker]\nretry_backoff_seconds = [2, 5, 10]\n")
    r = subprocess.run([binary, "--config", overlay, "config", "check"], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        die(f"config check: {r.stderr}")
    settings = json.loads(r.stdout)
    grace = settings["worker"]["shutdown_grace_seconds"]
    daemon = Daemon(binary, overlay, env, work, admin)
    daemon.start()
    status, body = http("POST", f"http://{api}/v1/subscriptions", json.dumps({
        "apiKey": API_KEY, "appKey": APP_KEY, "bucket_name": BUCKET, "bucket_region": REGION,
        "iam_role_arn": f"arn:aws:iam::{ACCOUNT}:role/BigPandaCloudTrailReader",
        "iam_role_external_id": "soak-external-id"}).encode(), {"content-type": "application/json"}, timeout=30)
    if status not in (200, 201):
        die(f"subscribe: {status} {body[:400]!r}")
    log(f"daemon run 1 pid {daemon.proc.pid}; bucket subscribed ({status})")

    # --- poison, planned: what the DLQ must hold at the end, by failure_reason
    first_body = open(files[0], "rb").read()

    def poison(kind):
        if kind == "corrupt_object":
            with open(truncated, "rb") as f:
                s3.put_object(Bucket=BUCKET, Key=truncated_key, Body=f.read())
        elif kind == "unknown_bucket":
            key = PREFIX + f"{ACCOUNT}_CloudTrail_{REGION}_20260101T2358Z_unsub{time.time_ns()}.json.gz"
            s3.put_object(Bucket=UNKNOWN_BUCKET, Key=key, Body=first_body)
        elif kind == "malformed_envelope":
            sqs.send_message(QueueUrl=queue, MessageBody='{"soak": "this is no notification"}')
        elif kind == "object_not_found":
            key = PREFIX + f"{ACCOUNT}_CloudTrail_{REGION}_20260101T2357Z_missing.json.gz"
            sns.publish(TopicArn=topic, Message=json.dumps({"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
                "eventTime": "2026-01-01T23:57:00.000Z", "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                       "object": {"key": key, "size": 1234}}}]}))
        log(f"poison injected: {kind}")

    every = 8 if short else 10
    upload_seconds = 72 if short else max(every, chaos_seconds - 30)
    bursts = max(1, int(upload_seconds // every))
    plan = ["corrupt_object", "unknown_bucket", "malformed_envelope", "object_not_found", "unknown_bucket"]
    poison_at = {}
    for i, kind in enumerate(plan):
        b = int((i + 1) * bursts / (len(plan) + 1))
        poison_at.setdefault(b, [])
        poison_at[b].append(kind)
    planned = collections.Counter(plan)
    uploader = Uploader(s3, sqs, queue, files, bursts, every,
                        {b: ks for b, ks in poison_at.items()},
                        lambda ks: [poison(k) for k in ks])

    # --- samplers: /proc every second, /metrics every 5 s, crash watch
    stop_sampling = threading.Event()

    def sampler():
        n = 0
        while not stop_sampling.is_set():
            with daemon.lock:
                daemon.sample()
                if n % 5 == 0:
                    daemon.scrape()
            if n % 2 == 0 and not daemon.expected_exit:
                daemon.health()
            daemon.check_alive()
            n += 1
            stop_sampling.wait(1.0 if short else 2.0)

    threading.Thread(target=sampler, daemon=True).start()

    # --- chaos
    events = schedule(a.mode, chaos_seconds, a.blackhole)
    chaos_problems = []  # faults that did not happen as scheduled
    served = collections.Counter()  # stand-in faults served, by kind, in the scheduled windows
    moves = collections.Counter()  # windows opened again because nothing was served
    opened_at = {}  # kind -> the stand-in's count of that kind when its window opened
    outage_effects = []  # (mode, SQS errors counted by the daemon, proxy resets, proxy held)
    outage_before = None
    killed_runs = []  # the runs ended by SIGKILL
    faults = collections.Counter()
    restarts = collections.Counter()
    term_codes = []
    outage_log = []
    in_flight_at_signal = []
    event_times = []  # (ns, label) for attributing duplicates
    t0 = time.time()
    log(f"chaos: {len(events)} events over {events[-1][0] if events else 0} s; "
        f"{objects} objects in {bursts} bursts every {every} s")
    uploader.start()
    def standin_counts():
        try:
            status, body = http("GET", f"{standin_url}/_ctl/stats")
            return json.loads(body).get("faults", {}) if status == 200 else {}
        except (OSError, ValueError):
            return {}

    def open_window(args):
        q = "&".join(f"{k}={v}" for k, v in args.items())
        opened_at[args["kind"]] = standin_counts().get(args["kind"], 0)
        ok = control(f"{standin_url}/_ctl/fault?{q}", f"stand-in {args['kind']} window", chaos_problems)
        faults[f"stand-in {args['kind']}"] += 1
        event_times.append((time.time_ns(), f"stand-in {args['kind']}"))
        log(f"stand-in: {args['kind']} for {args['seconds']} s" + (f" (p={args['p']})" if "p" in args else ""))
        return ok

    def window_served(kind):
        return standin_counts().get(kind, 0) - opened_at.get(kind, 0)

    shift = 0.0  # how much later the rest of the schedule runs (moved windows, waits for work)
    for at, action, args in events:
        delay = t0 + shift + at - time.time()
        if delay > 0:
            time.sleep(delay)
        if action == "standin":
            open_window(args)
        elif action == "served?":
            kind = args["kind"]
            n, tries = window_served(kind), 0
            while n <= 0 and tries < WINDOW_MOVES:
                # Nothing came while it was open: open it again and let the schedule wait.
                tries += 1
                moves[kind] += 1
                log(f"stand-in {kind}: no request got it; opening the window again ({tries}) "
                    "with two objects put again for traffic")
                started = time.time()
                if open_window(args):
                    # The daemon may have caught up with every burst: a window after the last
                    # one would see no request. Put two delivered objects again (their changes
                    # are upserts; the copies count as duplicates) so the fault meets traffic.
                    for path in files[tries - 1::len(files) // 2 or 1][:2]:
                        uploader.put(path)
                    time.sleep(args["seconds"] + 0.5)
                n = window_served(kind)
                shift += time.time() - started
            served[kind] += max(0, n)
            if n <= 0:
                chaos_problems.append(f"stand-in fault {kind} was never served "
                                      f"({1 + tries} windows of {args['seconds']} s)")
        elif action in ("kill9", "sigterm"):
            # Mid-burst, mid-delivery: slow answers (under the request timeout) keep the burst's
            # objects in flight, and the signal waits until several are (at least one: a signal
            # to an idle daemon proves nothing, so it waits longer for work rather than hit one).
            control(f"{standin_url}/_ctl/fault?kind=slow&seconds=15&hang=1.5",
                    f"stand-in slow window before the {action}", chaos_problems)
            faults["stand-in slow"] += 1
            mid = uploader.wait_next_burst(every + 2)
            if not mid:
                # The bursts are over (the daemon kept up with them): put a few delivered
                # objects again (upserts; counted as duplicates) so the signal meets work.
                for path in files[:: max(1, len(files) // 6)][:6]:
                    uploader.put(path)
            inflight = daemon.wait_in_flight(4, 10)
            if inflight < 1:
                started = time.time()
                inflight = daemon.wait_in_flight(1, 30)
                shift += time.time() - started
            if inflight < 1:
                chaos_problems.append(f"{action} of daemon run {daemon.runs}: no message in flight "
                                      "at the signal (waited 40 s)")
            if action == "kill9" and inflight >= 1:
                # Resuming needs a checkpoint: let a few changes of the objects in flight be
                # accepted and the checkpoints (saved at least every second) be written first.
                accepted = daemon.counter_now("ctc_changes_sent_total") or 0
                started = time.time()
                while time.time() - started < 20:
                    now = daemon.counter_now("ctc_changes_sent_total") or 0
                    if now - accepted >= 4:
                        break
                    time.sleep(0.2)
                time.sleep(2.0)
                shift += time.time() - started
            event_times.append((time.time_ns(), action))
            pid = daemon.proc.pid
            what = f"daemon run {daemon.runs} (pid {pid}){' mid-burst' if mid else ''}, {inflight:.0f} in flight"
            in_flight_at_signal.append((action, inflight))
            if action == "kill9":
                killed_runs.append(daemon.runs)
                daemon.kill9()
                log(f"SIGKILL {what}")
                time.sleep(1.0)
            else:
                code, took = daemon.sigterm(grace + 30)
                term_codes.append((code, took))
                log(f"SIGTERM {what}: exit {code} after {took:.1f} s")
            daemon.start()
            restarts[action] += 1
            log(f"daemon run {daemon.runs} pid {daemon.proc.pid} up")
        elif action == "outage":
            outage_before = (args["mode"], daemon.runs, daemon.counter_now("ctc_sqs_errors_total"),
                             json.loads(http("GET", f"{proxy_ctl}/stats")[1]))
            control(f"{proxy_ctl}/down?mode={args['mode']}", f"endpoint {args['mode']} outage", chaos_problems)
            faults[f"endpoint {args['mode']}"] += 1
            event_times.append((time.time_ns(), f"endpoint {args['mode']}"))
            outage_log.append((args["mode"], args["seconds"]))
            log(f"AWS endpoint down ({args['mode']}) for {args['seconds']} s")
        elif action == "up":
            errors_after = daemon.counter_now("ctc_sqs_errors_total")
            stats_after = json.loads(http("GET", f"{proxy_ctl}/stats")[1])
            control(f"{proxy_ctl}/up", "endpoint back up", chaos_problems)
            log("AWS endpoint up")
            mode, run_, errors_before, stats_before = outage_before
            cut = {k: stats_after.get(k, 0) - stats_before.get(k, 0) for k in ("reset", "held")}
            if run_ != daemon.runs or errors_before is None or errors_after is None:
                errors = None
                chaos_problems.append(f"endpoint {mode} outage: the daemon's SQS errors could not be "
                                      f"measured (run {run_} -> {daemon.runs}, metrics {errors_before} -> "
                                      f"{errors_after})")
            else:
                errors = errors_after - errors_before
                if errors <= 0:
                    chaos_problems.append(f"endpoint {mode} outage: the daemon counted no SQS error")
            # refuse resets the open connections; a black hole holds new ones.
            if cut["reset" if mode == "refuse" else "held"] <= 0:
                chaos_problems.append(f"endpoint {mode} outage: the proxy cut no connection ({cut})")
            outage_effects.append((mode, errors, cut["reset"], cut["held"]))
    uploader.join()
    if uploader.error:
        die(f"the uploader failed: {uploader.error}")
    http("POST", f"{standin_url}/_ctl/ok")
    http("POST", f"{proxy_ctl}/up")
    t_chaos_end = time.time()
    log(f"chaos over; uploads done ({len(uploader.put_ns)} objects; waited {uploader.waited_for_depth:.0f} s "
        f"for the queue to shrink); waiting for the drain")

    # --- drain: every change in, the source queue empty, the planned poison in the DLQ
    arrivals = Arrivals(accepted_path)
    drain_limit = 180 if short else 900
    deadline = time.time() + drain_limit
    last_report = 0
    state = None
    while True:
        arrivals.poll()
        got = sum(1 for i in expected if i in arrivals.first)
        qd, dd = depth(sqs, queue), depth(sqs, dlq)
        done = got == len(expected) and sum(qd) == 0 and sum(dd) >= len(plan)
        state = (got, qd, dd)
        if time.time() - last_report > 10 or done:
            log(f"drain: {got}/{len(expected)} changes; queue {qd[0]} visible {qd[1]} in flight {qd[2]} delayed;"
                f" DLQ {sum(dd)}")
            last_report = time.time()
        if done:
            # Settle: nothing may come back (a message still hidden would show up again).
            time.sleep(3)
            if sum(depth(sqs, queue)) == 0:
                break
        if time.time() > deadline:
            log(f"drain: gave up after {drain_limit} s")
            break
        time.sleep(1)
    t_drained = time.time()
    time.sleep(2)
    with daemon.lock:
        daemon.sample()  # the final idle sample
        daemon.scrape()
    stop_sampling.set()
    final_run = daemon.runs
    code, took = daemon.sigterm(grace + 30)
    term_codes.append((code, took))
    log(f"final SIGTERM: exit {code} after {took:.1f} s")
    arrivals.poll()
    proxy_stats = json.loads(http("GET", f"{proxy_ctl}/stats")[1])
    standin_stats = json.loads(http("GET", f"{standin_url}/_ctl/stats")[1])
    final_queue = depth(sqs, queue)
    dead = read_dlq(sqs, dlq)
    t_end = time.time()

    # --- figures
    problems = []
    main_rows = [(t, i, b) for t, i, b in arrivals.rows if i in expected]
    partial_rows = [(t, i, b) for t, i, b in arrivals.rows if i in partial]
    stray = [(t, i, b) for t, i, b in arrivals.rows if i not in expected and i not in partial]
    distinct = set(i for _, i, _ in main_rows)
    missing = [i for i in expected if i not in distinct]
    dups = len(main_rows) - len(distinct)
    body_diff = 0
    body_diff_example = None
    for t, i, b in main_rows:
        if canonical(b) != expected[i][1]:
            body_diff += 1
            body_diff_example = body_diff_example or (i, canonical(b)[:300], expected[i][1][:300])
    # Duplicates by the nearest chaos event before the copy (within 60 s), to see what causes them.
    copies = collections.Counter(i for _, i, _ in main_rows)
    seen = set()
    dup_cause = collections.Counter()
    dup_objects = collections.Counter()
    for t, i, b in sorted(main_rows, key=lambda r: r[0]):
        if i in seen:
            before = [lbl for ns, lbl in event_times if ns <= t and t - ns <= 60e9]
            dup_cause[before[-1] if before else "no fault in the 60 s before"] += 1
            dup_objects[expected[i][0]] += 1
        seen.add(i)
    lags = [(arrivals.first[i] - uploader.put_ns[expected[i][0]]) / 1e9 for i in distinct
            if expected[i][0] in uploader.put_ns]
    # Moving to the DLQ is at-least-once too (a copy, then a delete): equal copies of one message
    # count once here and are reported; `dlq redrive` moves only one of equal bodies.
    dlq_by = collections.Counter(reason for reason, _ in set((d["reason"], d["body"]) for d in dead))
    dlq_copies = len(dead) - sum(dlq_by.values())

    if missing:
        problems.append(f"{len(missing)} changes never accepted by the stand-in")
    if stray:
        problems.append(f"{len(stray)} accepted requests with an identifier process never produced")
    if body_diff:
        problems.append(f"{body_diff} accepted bodies differ from process's")
    if sum(final_queue):
        problems.append(f"source queue not empty: {final_queue[0]} visible, {final_queue[1]} in flight, "
                        f"{final_queue[2]} delayed")
    if dlq_by != planned:
        problems.append(f"DLQ holds {dict(dlq_by)}, planned {dict(planned)}")
    for code_, took_ in term_codes:
        if code_ != 0:
            problems.append(f"a SIGTERM ended with exit status {code_} after {took_:.1f} s")
    for run_, code_, tail_ in daemon.crashes:
        problems.append(f"daemon run {run_} exited by itself with status {code_}")
    panics = []
    warn_counts = collections.Counter()
    for run_ in range(1, daemon.runs + 1):
        for line in open(daemon.log_path(run_), errors="replace"):
            if "panicked" in line:
                panics.append((run_, line.strip()[:400]))
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("level") in ("WARN", "ERROR"):
                msg = j.get("fields", {}).get("message", "")
                reason = j.get("fields", {}).get("reason", "")
                warn_counts[f"{j['level']} {msg}" + (f" ({reason})" if reason else "")] += 1
    if panics:
        problems.append(f"{len(panics)} panics in the daemon logs, e.g. run {panics[0][0]}: {panics[0][1]}")
    problems += chaos_problems
    # A kill -9 mid-delivery leaves checkpoints: a later run must skip changes thanks to them.
    resumed_after_kill = None
    if killed_runs:
        resumed_after_kill = sum(daemon.metrics.get(r, {}).get("ctc_changes_resumed_total", 0)
                                 for r in range(killed_runs[0] + 1, daemon.runs + 1))
        if resumed_after_kill <= 0:
            problems.append(f"no change was resumed from a checkpoint by the runs after the kill -9 "
                            f"of run {killed_runs[0]}")

    # --- report
    def fmt_s(s):
        return f"{int(s // 60)}m{int(s % 60):02d}s"

    def run_line(run_):
        ss = daemon.samples.get(run_) or []
        if not ss:
            return "no samples"
        first, last = ss[0], ss[-1]
        mx = lambda k: max(s[k] for s in ss)
        life = last[0] - first[0]
        return (f"lived {fmt_s(life)}, {len(ss)} samples: fds {first[1]} -> {last[1]} (max {mx(1)}); "
                f"threads {first[2]} -> {last[2]} (max {mx(2)}); RSS {first[3] / 1024:.1f} -> "
                f"{last[3] / 1024:.1f} MiB (max {mx(3) / 1024:.1f}, HWM {mx(4) / 1024:.1f})")

    sums = collections.Counter()
    for run_, counters in daemon.metrics.items():
        for k, v in counters.items():
            sums[k] += v

    def metric_group(prefix, label):
        out = []
        for k, v in sorted(sums.items()):
            if k.startswith(prefix + "{") and label in k:
                value = k.split(label + '="', 1)[1].split('"', 1)[0]
                out.append(f"{value} {int(v)}")
        return ", ".join(out) or "-"

    all_samples = [s for ss in daemon.samples.values() for s in ss]

    def health_line():
        hs = daemon.health_samples
        if not hs:
            return "no samples"
        bad_h = sum(1 for h in hs if h[2] != 200)
        bad_r = sum(1 for h in hs if h[3] != 200)
        last = hs[-1]
        return (f"{len(hs)} samples: /healthz non-200 {bad_h}, /readyz non-200 {bad_r}; at the end "
                f"/healthz {last[2]}, /readyz {last[3]} {last[4][:80]}")

    # A daemon that stopped working without saying so: messages waiting, nothing logged.
    last_log = 0.0
    for line in open(daemon.log_path(final_run), errors="replace"):
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("fields", {}).get("message") == "signal received: stopping":
            break
        last_log = j.get("timestamp", last_log)
    if sum(final_queue) and last_log:
        problems.append(f"the last daemon run logged nothing after {last_log} while the queue held "
                        f"{sum(final_queue)} messages (a stuck poller?)")
    verdict = "PASS" if not problems else "FAIL"
    faults_standin = standin_stats.get("faults", {})
    print()
    print(f"soak ({a.mode}): {verdict}   wall {fmt_s(t_end - T_START)}  (set-up {fmt_s(t0 - T_START)}, "
          f"chaos {fmt_s(t_chaos_end - t0)}, drain {fmt_s(t_drained - t_chaos_end)})")
    rows = [
        ("objects", f"{len(uploader.put_ns)} uploaded through S3 -> SNS -> SQS ({records} records, "
                    f"{rpf} per object) + {len(plan)} planned poison"),
        ("changes expected", f"{len(expected)} ({how})"),
        ("delivered (distinct)", f"{len(distinct)} / {len(expected)}   missing {len(missing)}   "
                                 f"unexpected {len(stray)}   bodies differing {body_diff}"),
        ("duplicates", f"{dups} ({100 * dups / max(1, len(expected)):.2f}% of expected) in "
                       f"{len(main_rows)} accepted requests; {sum(1 for v in copies.values() if v > 1)} "
                       f"identifiers sent more than once, max {max(copies.values(), default=0)} copies"),
        ("  by nearest fault", ", ".join(f"{k} {v}" for k, v in dup_cause.most_common()) or "-"),
        ("  objects with dups", f"{len(dup_objects)}" + (f" (most: {dup_objects.most_common(1)[0][1]} in one)"
                                                          if dup_objects else "")),
        ("partial (corrupt obj)", f"{len(set(i for _, i, _ in partial_rows))} / {len(partial)} changes before "
                                  f"the damage accepted ({len(partial_rows)} requests)"),
        ("DLQ", (", ".join(f"{k} {v}" for k, v in sorted(dlq_by.items())) or "empty")
         + f"   (distinct messages; {dlq_copies} extra equal copies)"),
        ("  planned", ", ".join(f"{k} {v}" for k, v in sorted(planned.items()))),
        ("source queue", f"{final_queue[0]} visible, {final_queue[1]} in flight, {final_queue[2]} delayed"),
        ("stand-in faults", ", ".join(f"{k} {v}" for k, v in sorted(faults_standin.items()))
         + f" requests (of {standin_stats.get('requests')}; {standin_stats.get('accepted')} accepted)"),
        ("fault windows", ", ".join(f"{k} x{v}" for k, v in sorted(faults.items()))),
        ("  served in them", ", ".join(f"{k} {v}" for k, v in sorted(served.items()))
         + (f"   (moved: {', '.join(f'{k} x{v}' for k, v in sorted(moves.items()))})" if moves else "")),
        ("restarts survived", f"kill -9: {restarts['kill9']}, SIGTERM: {restarts['sigterm']} "
                              f"(+ the final one); crashes: {len(daemon.crashes)}"),
        ("SIGTERM exits", ", ".join(f"{c_} in {t_:.1f} s" for c_, t_ in term_codes)),
        ("in flight at signal", ", ".join(f"{a_} {n_:.0f}" for a_, n_ in in_flight_at_signal)),
        ("endpoint outages", f"{len(outage_log)} ("
                             + ", ".join(f"{m} {s} s" for m, s in outage_log)
                             + f"); proxy: {proxy_stats.get('connections')} connections, "
                               f"{proxy_stats.get('reset')} reset, {proxy_stats.get('held')} black-holed"),
        ("  each outage", ", ".join(f"{m}: {e if e is not None else '?'} SQS errors, {r} reset, {h} held"
                                    for m, e, r, h in outage_effects) or "-"),
        ("lag put -> accepted", f"p50 {pct(lags, 50):.1f} s   p90 {pct(lags, 90):.1f} s   "
                                f"p99 {pct(lags, 99):.1f} s   max {max(lags, default=float('nan')):.1f} s"),
        ("health (sampled)", health_line()),
        ("peak RSS", f"{max((s[4] for s in all_samples), default=0) / 1024:.1f} MiB (VmHWM, max over "
                     f"{daemon.runs} daemon runs)"),
        (f"final run #{final_run}", run_line(final_run)),
        ("all runs", f"fds max {max((s[1] for s in all_samples), default=0)}, threads max "
                     f"{max((s[2] for s in all_samples), default=0)}"),
        ("messages (metrics)", metric_group("ctc_messages_total", "fate") + "   (sum of the runs' last "
                                                                            "scrapes; killed runs approx.)"),
        ("failures (metrics)", metric_group("ctc_message_failures_total", "reason")),
        ("BigPanda requests", metric_group("ctc_bigpanda_requests_total", "status_class")),
        ("resumed changes", f"{int(sums.get('ctc_changes_resumed_total', 0))} (skipped thanks to checkpoints; "
                            f"{'-' if resumed_after_kill is None else int(resumed_after_kill)} "
                            f"by the runs after the kill -9)"),
        ("SQS errors", metric_group("ctc_sqs_errors_total", "operation")),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for run_ in range(1, daemon.runs + 1):
        print(f"  run {run_:<{width - 4}}  {run_line(run_)}")
    if warn_counts:
        print("  daemon warnings/errors (all runs):")
        for k, v in warn_counts.most_common(12):
            print(f"    {v:6d}  {k[:150]}")
    if problems:
        print("PROBLEMS:")
        for p in problems:
            print(f"  - {p}")
        for i in missing[:10]:
            key = expected[i][0]
            print(f"    missing {i} of s3://{BUCKET}/{key}")
        if body_diff_example:
            print(f"    body differs, e.g. {body_diff_example[0]}:\n      got      {body_diff_example[1]}\n"
                  f"      expected {body_diff_example[2]}")
        for d in dead:
            if dlq_by[d["reason"]] != planned.get(d["reason"]):
                print(f"    DLQ: {d['reason']} (receives {d['receives']}): {d['detail'][:200]} "
                      f"body {d['body'][:200]}")
        for run_, code_, tail_ in daemon.crashes:
            print(f"    crash of run {run_} (status {code_}), log tail:\n{tail_}")
    print(f"  logs: {work} (daemon-N.log per run, accepted.jsonl, expected.jsonl, moto/proxy/stand-in logs)")
    with open(f"{work}/summary.json", "w") as f:
        json.dump({"verdict": verdict, "problems": problems, "missing": missing,
                   "dlq": [{k: d[k] for k in ("reason", "detail", "receives")} for d in dead],
                   "duplicates": dups, "dup_cause": dup_cause, "term_codes": term_codes,
                   "samples": {str(k): v for k, v in daemon.samples.items()}}, f, default=str)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
