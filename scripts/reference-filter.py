#!/usr/bin/env python3
"""An independent, deliberately plain reading of change-model.md's filter ("Which records are
changes"), used to produce the golden counts the Rust pipeline is tested against.

  scripts/reference-filter.py tests/data/cloudtrail > tests/data/golden/reference.json

Files are taken in sorted path order (as `process` takes a directory); duplicates are counted
across all files. Standard library only.
"""
import collections, fnmatch, glob, gzip, json, os, re, sys

READ = ["Get", "List", "Describe", "Head", "Lookup", "Search", "Query", "Scan", "BatchGet", "Check",
        "Test", "Validate", "Preview", "Estimate", "Simulate", "View", "Verify", "Decode"]
NOISE = ["AssumeRole*", "GetSessionToken", "GetFederationToken", "ConsoleLogin", "SwitchRole",
         "StartSession", "ResumeSession", "CreateLogStream", "PutLogEvents", "PutMetricData", "Decrypt",
         "Encrypt", "GenerateDataKey*", "CreateToken", "RegisterClient", "BatchCheckLayerAvailability"]
TYPES = ("AwsApiCall", "AwsConsoleAction", "AwsServiceEvent")
TIME = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)?$")


def as_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def reason(r):
    if not isinstance(r, dict):
        return "malformed"
    eid, et = r.get("eventID"), r.get("eventTime")
    if not isinstance(eid, str) or not eid or not isinstance(et, str) or not TIME.match(et):
        return "malformed"
    cat = r.get("eventCategory")
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
    if r.get("errorCode") not in (None, "") or r.get("errorMessage") not in (None, ""):
        return "failed"
    if r.get("eventType", "AwsApiCall") not in TYPES:  # eventVersion < 1.02 has no eventType
        return "event_type"
    if name and any(fnmatch.fnmatchcase(name, g) for g in NOISE):
        return "noise"
    return None


def main():
    root = sys.argv[1]
    counts = collections.Counter()
    seen, ids = set(), []
    paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                   if p.endswith((".json.gz", ".json")) and "CloudTrail-Digest" not in p)
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
                    ids.append(r["eventID"])
    counts["changes"] = len(ids)
    print(json.dumps({"counts": dict(sorted(counts.items())), "ids": ids}, indent=1))


if __name__ == "__main__":
    main()
