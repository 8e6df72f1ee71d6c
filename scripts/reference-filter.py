#!/usr/bin/env python3
"""An independent, deliberately plain reading of change-model.md, used to produce the golden
reference the Rust pipeline is tested against (tests/golden.rs): which records are changes
("Which records are changes", "Second round of decisions"), and for each kept record its
`identifier`, `summary`, `start`, `ticket_url` and user tags ("The mapping").

  scripts/reference-filter.py tests/data/cloudtrail > tests/data/golden/reference.json

Files are taken in sorted path order (as `process` takes a directory); duplicates are counted
across all files. Standard library only. Where the model is silent, the implementation's own
decision (README, "What is a change") is marked "IMPLEMENTATION:" below, so a reader sees which
rules check the model and which only mirror the code.
"""
import calendar, collections, fnmatch, glob, gzip, json, os, re, sys, time

READ = ["Get", "List", "Describe", "Head", "Lookup", "Search", "Query", "Scan", "BatchGet", "Check",
        "Test", "Validate", "Preview", "Estimate", "Simulate", "View", "Verify", "Decode"]
NOISE = ["AssumeRole*", "GetSessionToken", "GetFederationToken", "ConsoleLogin", "SwitchRole",
         "StartSession", "ResumeSession", "CreateLogStream", "PutLogEvents", "PutMetricData", "Decrypt",
         "Encrypt", "GenerateDataKey*", "CreateToken", "RegisterClient", "BatchCheckLayerAvailability",
         "UpdateInstanceInformation", "UpdateInstanceAssociationStatus"]
TYPES = ("AwsApiCall", "AwsConsoleAction", "AwsServiceEvent")
TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|([+-])(\d\d):(\d\d))?$")
EARLIEST = calendar.timegm((2013, 1, 1, 0, 0, 0))  # CloudTrail did not exist before
NOW = int(time.time())
MAX_TAG_CHARS = 1024


def as_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def unix_seconds(text):
    """eventTime -> Unix seconds, or None when it is not a date-time of the accepted forms."""
    m = TIME.match(text) if isinstance(text, str) else None
    if not m:
        return None
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    # IMPLEMENTATION: a leap second (:60) is accepted and counts as the next second.
    if not (1 <= mo <= 12 and h <= 23 and mi <= 59 and s <= 60) or y < 1:
        return None
    if not 1 <= d <= calendar.monthrange(y, mo)[1]:
        return None
    offset = 0
    if m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            return None
        offset = (oh * 3600 + om * 60) * (-1 if m.group(9) == "-" else 1)
    return calendar.timegm((y, mo, d, 0, 0, 0)) + h * 3600 + mi * 60 + s - offset


def reason(r):
    if not isinstance(r, dict):
        return "malformed"
    eid, t = r.get("eventID"), unix_seconds(r.get("eventTime"))
    if not isinstance(eid, str) or not eid or t is None:
        return "malformed"
    if not EARLIEST <= t <= NOW + 86400:  # second round: plausible times only
        return "malformed"
    cat = r.get("eventCategory")
    # IMPLEMENTATION: an eventCategory that is not a string counts as absent.
    cat = cat if isinstance(cat, str) else None
    if cat is not None and cat != "Management":
        return "category"
    if cat is None and as_bool(r.get("managementEvent")) is False:
        return "category"
    name = r.get("eventName") if isinstance(r.get("eventName"), str) else None
    ro = as_bool(r.get("readOnly"))
    if ro is None:
        ro = bool(name) and any(name.startswith(p) for p in READ)
    if ro:
        return "read_only"
    # IMPLEMENTATION: errorCode/errorMessage that are null or "" do not make a call failed.
    if r.get("errorCode") not in (None, "") or r.get("errorMessage") not in (None, ""):
        return "failed"
    # IMPLEMENTATION: no eventType (eventVersion < 1.02) counts as AwsApiCall.
    etype = r.get("eventType") if isinstance(r.get("eventType"), str) else "AwsApiCall"
    if etype not in TYPES:
        return "event_type"
    if name and any(fnmatch.fnmatchcase(name, g) for g in NOISE):
        return "noise"
    return None


def text(obj, key):
    """A string member; absent, another type, or "" count as absent (second round)."""
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, str) and v != "" else None


def cut(v):
    # IMPLEMENTATION: a cut value keeps limit - 1 characters and ends in the ellipsis.
    return v if len(v) <= MAX_TAG_CHARS else v[:MAX_TAG_CHARS - 1] + "\u2026"


def after_colon(v):
    return v.split(":", 1)[1] or None if v and ":" in v else None


def user_tags(ui):
    ui = ui if isinstance(ui, dict) else {}
    ctx = ui.get("sessionContext") if isinstance(ui.get("sessionContext"), dict) else {}
    issuer = ctx.get("sessionIssuer") if isinstance(ctx.get("sessionIssuer"), dict) else {}
    kind = text(ui, "type")
    name = session = None
    if kind in ("AssumedRole", "Role"):
        role = arn_session = None
        arn = text(ui, "arn") or ""
        if ":assumed-role/" in arn:
            path = arn.split(":assumed-role/", 1)[1]
            # IMPLEMENTATION: a role segment holding "/" keeps all but the last part.
            role, _, arn_session = path.rpartition("/") if "/" in path else (path, "", None)
            # IMPLEMENTATION: an ARN with an empty role segment is not read at all.
            arn_session = arn_session if role else None
        name = text(issuer, "userName") or role or None
        session = arn_session or after_colon(text(ui, "principalId"))
    elif kind == "IAMUser":
        name = text(ui, "userName")
    elif kind == "Root":
        name = text(ui, "userName") or "root"
    elif kind == "FederatedUser":
        name = after_colon(text(ui, "principalId"))
    elif kind == "AWSService":
        name = text(ui, "invokedBy")
    elif kind == "AWSAccount":
        name = text(ui, "accountId")
    elif kind == "IdentityCenterUser":
        name = text(ui.get("onBehalfOf"), "userId")
    name = name or text(ui, "invokedBy") or text(ui, "principalId") or "unknown"
    # IMPLEMENTATION: an empty arn counts as absent, so the issuer's ARN stands in.
    arn = text(ui, "arn") or text(issuer, "arn")
    tags = {"user_name": name, "user_type": kind, "user_arn": arn, "user_session": session}
    return {k: cut(v) for k, v in tags.items() if v is not None}


def fragment(event_id):
    # IMPLEMENTATION: the event ID is percent-encoded in the URL fragment (controls, non-ASCII,
    # space, " < > ` # %).
    return "".join(chr(b) if 0x20 < b < 0x7F and chr(b) not in '"<>`#%' else "%%%02X" % b
                   for b in event_id.encode("utf-8"))


def ticket_url(region, event_id):
    # IMPLEMENTATION: no ticket_url unless awsRegion is a plausible region name (it goes in a
    # host name): 1 to 32 characters of a-z, 0-9 and "-".
    if not isinstance(region, str) or not re.fullmatch(r"[a-z0-9-]{1,32}", region):
        return None
    tail = "home?region=%s#/events/%s" % (region, fragment(event_id))
    if region.startswith("cn-"):
        return "https://console.amazonaws.cn/cloudtrail/" + tail
    if region.startswith("us-gov-"):
        return "https://console.amazonaws-us-gov.com/cloudtrail/" + tail
    # IMPLEMENTATION: "us-iso*, eu-isoe* and the like" read as a second part starting "iso".
    if len(region.split("-")) > 1 and region.split("-")[1].startswith("iso"):
        return None
    return "https://%s.console.aws.amazon.com/cloudtrailv2/%s" % (region, tail)


def change(r):
    name = r.get("eventName")
    start = unix_seconds(r["eventTime"])
    return {
        "identifier": r["eventID"],
        # IMPLEMENTATION: a record without a string eventName is summarised "(no eventName)".
        "summary": name if isinstance(name, str) else "(no eventName)",
        "start": start,
        "ticket_url": ticket_url(r.get("awsRegion"), r["eventID"]),
        "user_tags": user_tags(r.get("userIdentity")),
    }


def main():
    root = sys.argv[1]
    counts = collections.Counter()
    seen, changes = set(), []
    # Digest and Insights files are not log files (model step 1).
    paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                   if p.endswith((".json.gz", ".json"))
                   and "CloudTrail-Digest" not in p and "CloudTrail-Insight" not in p)
    for path in paths:
        with gzip.open(path) as f:
            for r in json.load(f)["Records"]:
                counts["records"] += 1
                why = reason(r)
                if why is None and r["eventID"] in seen:
                    why = "duplicate"
                if why:
                    counts[why] += 1
                else:
                    seen.add(r["eventID"])
                    changes.append(change(r))
    counts["changes"] = len(changes)
    print(json.dumps({"counts": dict(sorted(counts.items())), "changes": changes}, indent=1))


if __name__ == "__main__":
    main()
