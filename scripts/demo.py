#!/usr/bin/env python3
"""The AWS and JSON half of scripts/demo.sh; run with the moto venv's python (it has boto3).

    demo.py free-port
    demo.py wait-http URL [--timeout S] [--pid PID] [--what NAME]
    demo.py setup --endpoint URL [--bucket B] [--queue Q]          prints the queue URL
    demo.py upload --endpoint URL --bucket B --root DIR --manifest F FILE...
    demo.py queue-state --endpoint URL --queue-url U
    demo.py wait --endpoint URL --queue-url U --changes F --expected N [--timeout S] [--pid PID]
    demo.py compare --changes F --expected F --manifest F
    demo.py examples --changes F [-n 3] [--width 100]
    demo.py response FILE --secret KEY...                          pretty-prints a curl answer
    demo.py get URL                                                 status and body of a GET
    demo.py metrics URL                                             the counters demo.sh shows

Every AWS call goes to the moto endpoint with static credentials test/test in us-east-1 and
path-style S3 addressing. Progress goes to stderr; what demo.sh captures goes to stdout.
"""

import argparse
import collections
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
ROLE_NAME = "BigPandaCloudTrailReader"
EXTERNAL_ID = "demo-external-id"
# BigPanda's AWS account in the customer's trust policy (a placeholder: moto does not check it).
BIGPANDA_PRINCIPAL = f"arn:aws:iam::{ACCOUNT_ID}:root"

# A CloudTrail log-file key: [o-<org>/]<account>/CloudTrail/<region>/YYYY/MM/DD/<name>.json.gz
# after AWSLogs/ (organization trails have the org ID before the account).
CLOUDTRAIL_KEY = re.compile(
    r"(?:^|/)(AWSLogs/(?:o-[a-z0-9]{1,32}/)?\d{12}/CloudTrail/[a-z0-9-]+/"
    r"\d{4}/\d{2}/\d{2}/[^/]+\.json\.gz)$"
)
DEFAULT_PREFIX = f"AWSLogs/{ACCOUNT_ID}/CloudTrail/{REGION}/2023/07/10/"


def fail(message):
    print(f"demo.py: {message}", file=sys.stderr)
    sys.exit(1)


def say(message):
    print(message, file=sys.stderr, flush=True)


def clients(endpoint):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name=REGION,
    )
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )

    def client(name):
        return session.client(name, endpoint_url=endpoint, config=config)

    return client


def call(what, fn, **kwargs):
    """One AWS call; a failure names the operation and exits."""
    try:
        return fn(**kwargs)
    except Exception as e:  # botocore's errors and connection errors alike
        fail(f"{what} failed: {e}")


# ---------------------------------------------------------------------------------------------


def cmd_free_port(_args):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def pid_alive(pid):
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by demo.sh) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def cmd_wait_http(args):
    """Waits until URL answers HTTP at all (any status: 401 is an answer)."""
    deadline = time.monotonic() + args.timeout
    last = "no attempt"
    while True:
        if not pid_alive(args.pid):
            fail(f"{args.what} (pid {args.pid}) exited before answering {args.url}")
        try:
            with urllib.request.urlopen(args.url, timeout=2) as r:
                r.read()
            return
        except urllib.error.HTTPError:
            return
        except Exception as e:
            last = str(e)
        if time.monotonic() > deadline:
            fail(f"{args.what} did not answer {args.url} within {args.timeout:.0f} s ({last})")
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------


def policy(statements):
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def cmd_setup(args):
    client = clients(args.endpoint)
    s3, sns, sqs, iam = client("s3"), client("sns"), client("sqs"), client("iam")
    bucket, name = args.bucket, args.queue
    bucket_arn = f"arn:aws:s3:::{bucket}"

    call(f"CreateBucket {bucket}", s3.create_bucket, Bucket=bucket)
    say(f"  bucket      s3://{bucket}")

    # The dead-letter queue first: the queue's RedrivePolicy names it.
    dlq_url = call(f"CreateQueue {name}-dlq", sqs.create_queue, QueueName=f"{name}-dlq")[
        "QueueUrl"
    ]
    dlq_arn = queue_arn(sqs, dlq_url)
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queue_url = call(
        f"CreateQueue {name}",
        sqs.create_queue,
        QueueName=name,
        Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "60"},
    )["QueueUrl"]
    arn = queue_arn(sqs, queue_url)
    say(f"  queue       {queue_url} (VisibilityTimeout 60, maxReceiveCount 5)")
    say(f"  dlq         {dlq_url}")

    topic_arn = call(f"CreateTopic {bucket}-events", sns.create_topic, Name=f"{bucket}-events")[
        "TopicArn"
    ]
    condition = {
        "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
    }
    # S3 may publish to the topic, for this bucket only; the topic may send to the queue.
    topic_policy = policy(
        [
            {
                "Sid": "S3Publish",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "SNS:Publish",
                "Resource": topic_arn,
                "Condition": {**condition, "ArnLike": {"aws:SourceArn": bucket_arn}},
            }
        ]
    )
    call(
        "SetTopicAttributes Policy",
        sns.set_topic_attributes,
        TopicArn=topic_arn,
        AttributeName="Policy",
        AttributeValue=topic_policy,
    )
    queue_policy = policy(
        [
            {
                "Sid": "SnsSend",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ]
    )
    call(
        "SetQueueAttributes Policy",
        sqs.set_queue_attributes,
        QueueUrl=queue_url,
        Attributes={"Policy": queue_policy},
    )
    call(
        "SNS Subscribe",
        sns.subscribe,
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        ReturnSubscriptionArn=True,
    )
    say(f"  topic       {topic_arn} -> sqs {name}")

    call(
        "PutBucketNotificationConfiguration",
        s3.put_bucket_notification_configuration,
        Bucket=bucket,
        NotificationConfiguration={
            "TopicConfigurations": [
                {
                    "Id": "cloudtrail-changes",
                    "TopicArn": topic_arn,
                    "Events": ["s3:ObjectCreated:*"],
                }
            ]
        },
    )
    say(f"  notify      s3:ObjectCreated:* on {bucket} -> {topic_arn}")

    # The customer's read-only role for BigPanda, as the README asks customers to create it.
    # moto's STS does not enforce it (auth is off), but it is what AWS would need.
    trust = policy(
        [
            {
                "Effect": "Allow",
                "Principal": {"AWS": BIGPANDA_PRINCIPAL},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
            }
        ]
    )
    call(
        f"CreateRole {ROLE_NAME}",
        iam.create_role,
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=trust,
    )
    read = policy(
        [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"{bucket_arn}/AWSLogs/*",
            }
        ]
    )
    call(
        "PutRolePolicy",
        iam.put_role_policy,
        RoleName=ROLE_NAME,
        PolicyName="read-cloudtrail",
        PolicyDocument=read,
    )
    say(f"  role        arn:aws:iam::{ACCOUNT_ID}:role/{ROLE_NAME} (external ID {EXTERNAL_ID})")
    print(queue_url)


def queue_arn(sqs, url):
    attributes = call(
        f"GetQueueAttributes {url}",
        sqs.get_queue_attributes,
        QueueUrl=url,
        AttributeNames=["QueueArn"],
    )["Attributes"]
    return attributes["QueueArn"]


# ---------------------------------------------------------------------------------------------


def key_for(path, root, used):
    """The S3 key of a local file: its own relative path when that is a CloudTrail key, else
    one under DEFAULT_PREFIX; unique among `used`."""
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    match = CLOUDTRAIL_KEY.search(rel)
    if match:
        key = match.group(1)
    else:
        key = DEFAULT_PREFIX + os.path.basename(path)
    stem, n = key[: -len(".json.gz")], 2
    while key in used:
        key = f"{stem}-{n}.json.gz"
        n += 1
    used.add(key)
    return key


def cmd_upload(args):
    s3 = clients(args.endpoint)("s3")
    used, rows = set(), []
    for path in args.files:
        rows.append((path, key_for(path, args.root, used)))
    width = max((len(k) for _, k in rows), default=0)
    for path, key in rows:
        with open(path, "rb") as f:
            body = f.read()
        call(f"PutObject s3://{args.bucket}/{key}", s3.put_object, Bucket=args.bucket, Key=key, Body=body)
        if args.verbose:
            say(f"  {key:<{width}}  {len(body):>7} B")
    with open(args.manifest, "w") as f:
        for path, key in rows:
            f.write(f"{os.path.abspath(path)}\t{key}\n")
    print(len(rows))


# ---------------------------------------------------------------------------------------------


def queue_depths(sqs, url):
    """(visible, in flight, delayed) of a queue."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = call(
        f"GetQueueAttributes {url}", sqs.get_queue_attributes, QueueUrl=url, AttributeNames=names
    )["Attributes"]
    return tuple(int(attributes.get(n, 0)) for n in names)


def dlq_url(sqs, url):
    attributes = call(
        f"GetQueueAttributes {url}",
        sqs.get_queue_attributes,
        QueueUrl=url,
        AttributeNames=["RedrivePolicy"],
    )["Attributes"]
    target = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    name = target.rsplit(":", 1)[1]
    return call(f"GetQueueUrl {name}", sqs.get_queue_url, QueueName=name)["QueueUrl"]


def cmd_queue_state(args):
    sqs = clients(args.endpoint)("sqs")
    queue = queue_depths(sqs, args.queue_url)
    dlq = queue_depths(sqs, dlq_url(sqs, args.queue_url))
    print(json.dumps({"queue": sum(queue), "queue_detail": queue, "dlq": sum(dlq)}))


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))
    except FileNotFoundError:
        return 0


def cmd_wait(args):
    """Waits until `expected` changes arrived and the queue is empty. Gives up early when the
    queue stays empty for `--settle` seconds with changes missing (nothing more can come), or
    when the daemon exits."""
    sqs = clients(args.endpoint)("sqs")
    start = time.monotonic()
    deadline = start + args.timeout
    empty_since, last_report, last = None, 0.0, None
    while True:
        arrived = count_lines(args.changes)
        visible, in_flight, delayed = queue_depths(sqs, args.queue_url)
        depth = visible + in_flight + delayed
        now = time.monotonic()
        state = (arrived, depth)
        if state != last and (now - last_report >= 1 or depth == 0):
            say(
                f"  {now - start:5.1f} s  changes {arrived:>4}/{args.expected}"
                f"  queue: {visible} waiting, {in_flight} in flight, {delayed} delayed"
            )
            last, last_report = state, now
        if depth == 0 and arrived >= args.expected:
            print(json.dumps({"outcome": "done", "seconds": round(now - start, 1)}))
            return
        if not pid_alive(args.pid):
            print(json.dumps({"outcome": "daemon exited", "seconds": round(now - start, 1)}))
            return
        if depth == 0:
            empty_since = empty_since or now
            if now - empty_since >= args.settle:
                print(json.dumps({"outcome": "queue empty, changes missing", "seconds": round(now - start, 1)}))
                return
        else:
            empty_since = None
        if now > deadline:
            print(json.dumps({"outcome": "timeout", "seconds": round(now - start, 1)}))
            return
        time.sleep(0.25)


# ---------------------------------------------------------------------------------------------


def read_changes(path):
    changes, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                changes.append(json.loads(line))
            except ValueError:
                bad += 1
    return changes, bad


def canonical(change):
    return json.dumps(change, sort_keys=True, ensure_ascii=False)


def cmd_compare(args):
    """Identifiers first (as multisets), then whole bodies with each expected change's
    metadata.key (the local path) replaced by the S3 key it was uploaded as."""
    arrived, bad_arrived = read_changes(args.changes)
    expected, bad_expected = read_changes(args.expected)
    ok = True
    for label, bad in (("changes.jsonl", bad_arrived), ("expected", bad_expected)):
        if bad:
            say(f"  {label}: {bad} lines are not JSON")
            ok = False

    ids_a = collections.Counter(c.get("identifier") for c in arrived)
    ids_e = collections.Counter(c.get("identifier") for c in expected)
    if ids_a == ids_e:
        say(f"  identifiers: OK ({sum(ids_e.values())} sorted identifiers equal, {len(ids_e)} distinct)")
    else:
        ok = False
        missing, extra = ids_e - ids_a, ids_a - ids_e
        say(f"  identifiers: DIFFERENT ({sum(missing.values())} missing, {sum(extra.values())} extra)")
        for label, diff in (("missing", missing), ("extra", extra)):
            for ident, n in sorted(diff.items())[:10]:
                say(f"    {label}: {ident}" + (f" x{n}" if n > 1 else ""))

    keys = {}
    with open(args.manifest) as f:
        for line in f:
            path, key = line.rstrip("\n").split("\t")
            keys[path] = key
    for change in expected:
        meta = change.get("metadata") or {}
        local = meta.get("key")
        if local is not None:
            meta["key"] = keys.get(os.path.abspath(local), local)
    bodies_a = collections.Counter(canonical(c) for c in arrived)
    bodies_e = collections.Counter(canonical(c) for c in expected)
    if bodies_a == bodies_e:
        say("  bodies:      OK (every change equal to process's, metadata.key = the S3 key)")
    else:
        ok = False
        missing, extra = bodies_e - bodies_a, bodies_a - bodies_e
        say(f"  bodies:      DIFFERENT ({sum(missing.values())} expected bodies not seen, {sum(extra.values())} unexpected)")
        by_id = {json.loads(b).get("identifier"): json.loads(b) for b in extra}
        for body in list(missing)[:3]:
            want = json.loads(body)
            ident = want.get("identifier")
            got = by_id.get(ident)
            if got is None:
                say(f"    {ident}: no arrived change with this identifier differs only in content")
                continue
            for path, a, b in differences(want, got)[:5]:
                say(f"    {ident} {path}: expected {json.dumps(a)[:120]}, arrived {json.dumps(b)[:120]}")
    sys.exit(0 if ok else 1)


def differences(a, b, path=""):
    """(path, a's value, b's value) where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [(path, a, b)]


def truncate(value, width):
    if isinstance(value, dict):
        return {k: truncate(v, width) for k, v in value.items()}
    if isinstance(value, list):
        return [truncate(v, width) for v in value]
    if isinstance(value, str) and len(value) > width:
        return value[: width - 1] + "…"
    return value


def cmd_examples(args):
    changes, _ = read_changes(args.changes)
    if not changes:
        say("  (no changes)")
        return
    # Spread over the file, so the examples come from different objects.
    step = max(1, len(changes) // args.n)
    picked = changes[::step][: args.n]
    for n, change in enumerate(picked, 1):
        change = dict(change)
        tags = change.get("tags")
        if isinstance(tags, dict) and len(tags) > args.max_tags:
            shown = dict(list(tags.items())[: args.max_tags])
            shown["…"] = f"{len(tags) - args.max_tags} more tags"
            change["tags"] = shown
        text = json.dumps(truncate(change, args.width), indent=2, ensure_ascii=False)
        print(f"--- example {n} of {len(changes)}")
        print(text)


def cmd_response(args):
    """Pretty-prints the subscribe answer; masks any key it would echo whole (it should not)."""
    with open(args.file, encoding="utf-8", errors="replace") as f:
        text = f.read()
    leaked = [s for s in args.secret if s and s in text]
    for s in leaked:
        text = text.replace(s, "****" + s[-4:])
    try:
        text = json.dumps(json.loads(text), indent=2)
    except ValueError:
        pass
    print(text)
    if leaked:
        say(f"  WARNING: the API echoed {len(leaked)} key(s) whole (masked above)")
        sys.exit(3)


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except Exception as e:
        fail(f"GET {url} failed: {e}")


def cmd_get(args):
    status, body = http_get(args.url)
    print(f"{status} {body.strip()}")


# The counters worth a glance after a run (histogram buckets left out).
METRICS = (
    "ctc_messages_received_total",
    "ctc_messages_total",
    "ctc_messages_skipped_total",
    "ctc_message_failures_total",
    "ctc_objects_total",
    "ctc_records_total",
    "ctc_changes_produced_total",
    "ctc_changes_sent_total",
    "ctc_messages_dead_lettered_total",
    "ctc_sts_assume_role_total",
)


def cmd_metrics(args):
    """Prints the chosen counters, one per line, and the sum of ctc_changes_sent_total
    {outcome="accepted"} on stdout's last line as `accepted N`."""
    status, body = http_get(args.url)
    if status != 200:
        fail(f"GET {args.url} answered {status}")
    accepted = 0
    for line in body.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in METRICS:
            print(f"  {line}")
            if name == "ctc_changes_sent_total" and 'outcome="accepted"' in line:
                accepted += int(float(line.rsplit(" ", 1)[1]))
    print(f"accepted {accepted}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("free-port").set_defaults(fn=cmd_free_port)

    s = sub.add_parser("wait-http")
    s.add_argument("url")
    s.add_argument("--timeout", type=float, default=30)
    s.add_argument("--pid", type=int)
    s.add_argument("--what", default="the server")
    s.set_defaults(fn=cmd_wait_http)

    s = sub.add_parser("setup")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", default="demo-cloudtrail")
    s.add_argument("--queue", default="cloudtrail-changes")
    s.set_defaults(fn=cmd_setup)

    s = sub.add_parser("upload")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", required=True)
    s.add_argument("--root", required=True)
    s.add_argument("--manifest", required=True)
    s.add_argument("--verbose", action="store_true")
    s.add_argument("files", nargs="+")
    s.set_defaults(fn=cmd_upload)

    s = sub.add_parser("queue-state")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--queue-url", required=True)
    s.set_defaults(fn=cmd_queue_state)

    s = sub.add_parser("wait")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--queue-url", required=True)
    s.add_argument("--changes", required=True)
    s.add_argument("--expected", type=int, required=True)
    s.add_argument("--timeout", type=float, default=120)
    s.add_argument("--settle", type=float, default=10)
    s.add_argument("--pid", type=int)
    s.set_defaults(fn=cmd_wait)

    s = sub.add_parser("compare")
    s.add_argument("--changes", required=True)
    s.add_argument("--expected", required=True)
    s.add_argument("--manifest", required=True)
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("examples")
    s.add_argument("--changes", required=True)
    s.add_argument("-n", type=int, default=3)
    s.add_argument("--width", type=int, default=100)
    s.add_argument("--max-tags", type=int, default=12)
    s.set_defaults(fn=cmd_examples)

    s = sub.add_parser("response")
    s.add_argument("file")
    s.add_argument("--secret", action="append", default=[])
    s.set_defaults(fn=cmd_response)

    s = sub.add_parser("get")
    s.add_argument("url")
    s.set_defaults(fn=cmd_get)

    s = sub.add_parser("metrics")
    s.add_argument("url")
    s.set_defaults(fn=cmd_metrics)

    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
