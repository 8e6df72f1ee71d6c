//! Hostile input to the pure parts, no AWS: message bodies for `envelope::decode`, stored
//! objects for `records::open` and the pipeline. Each test asserts the documented outcome (an
//! error naming where, a record dropped as malformed with its reason, a change with a given
//! start), not only the absence of a panic.
//!
//! Already covered elsewhere, not repeated here: `src/envelope/tests.rs` (one case per error
//! kind, over-long and NUL keys, 10 000-deep nesting in a body), `src/records/tests.rs` (read
//! sizes, truncation, broken JSON offsets, invalid UTF-8 in `eventID`, the record limit, deep
//! nesting in the reader, gzip bomb and size limits, `parse_event_time` directly) and
//! `tests/properties.rs` (generated records and short random tails).

use cloudtrail_changes::core::envelope::{self, classify_key, Decoded, EnvelopeError, SkipReason};
use cloudtrail_changes::core::filter::{Dedup, Policy, Reason};
use cloudtrail_changes::core::normalize::{self, Change, Origin};
use cloudtrail_changes::core::pipeline::{Outcome, Pipeline, PipelineError, Tally};
use cloudtrail_changes::core::records::{self, Limits, RecordsError};
use flate2::write::GzEncoder;
use serde_json::{json, Value};
use std::io::{Cursor, Write};
use std::path::Path;

// ---- helpers ---------------------------------------------------------------------------

/// A small seeded generator (SplitMix64): the same cases on every run, no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

/// What the pipeline did with one document: every outcome in order, and how it ended.
struct Run {
    changes: Vec<Change>,
    /// `(index, reason, detail)` of each dropped record.
    dropped: Vec<(u64, Reason, Option<&'static str>)>,
    tally: Tally,
    result: Result<(), PipelineError<std::convert::Infallible>>,
}

impl Run {
    fn records_error(&self) -> Option<&RecordsError> {
        match &self.result {
            Err(PipelineError::Records(e)) => Some(e),
            _ => None,
        }
    }

    fn ids(&self) -> Vec<&str> {
        self.changes.iter().map(|c| c.identifier.as_str()).collect()
    }
}

/// Runs the daemon's pipeline (default policy and limits) over decompressed JSON bytes.
fn pipeline(json: &[u8]) -> Run {
    pipeline_with(json, 4 << 20)
}

fn pipeline_with(json: &[u8], max_record_bytes: usize) -> Run {
    let policy = Policy::default();
    let pipeline = Pipeline {
        policy: &policy,
        normalize: normalize::Options::default(),
        max_record_bytes,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    let (mut changes, mut dropped, mut tally) = (Vec::new(), Vec::new(), Tally::default());
    let origin = Origin {
        bucket: Some("hostile-bucket"),
        key: "hostile.json.gz",
    };
    let result = pipeline.run(json, origin, &mut Dedup::default(), &mut tally, |o| {
        match o {
            Outcome::Change(c) => changes.push(c),
            Outcome::Dropped(d) => dropped.push((d.index, d.reason, d.detail)),
        }
        Ok(())
    });
    Run {
        changes,
        dropped,
        tally,
        result,
    }
}

/// `records::open` then the pipeline, as the daemon reads a stored object.
fn stored(bytes: Vec<u8>, limits: &Limits) -> Result<Run, RecordsError> {
    let (_, mut json) = records::open(Cursor::new(bytes), limits)?;
    let mut all = Vec::new();
    // Read through the limits the way the pipeline would; a read error ends the document.
    let read = std::io::Read::read_to_end(&mut json, &mut all);
    let mut run = pipeline(&all);
    if let Err(source) = read {
        let offset = all.len() as u64;
        run.result = Err(PipelineError::Records(RecordsError::Read {
            offset,
            source,
        }));
    }
    Ok(run)
}

/// A well-formed change record; `extra` members are appended (a later duplicate wins).
fn record(id: &str, extra: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","eventID":"{id}","eventTime":"2024-03-01T10:20:30Z","eventName":"CreateUser","eventSource":"iam.amazonaws.com","eventType":"AwsApiCall","eventCategory":"Management","managementEvent":true,"readOnly":false,"awsRegion":"us-east-1","recipientAccountId":"123456789012","sourceIPAddress":"1.2.3.4","requestID":"r-1","userIdentity":{{"type":"IAMUser","userName":"bob","arn":"arn:aws:iam::123456789012:user/bob"}},"requestParameters":{{"userName":"alice"}},"resources":[{{"ARN":"arn:aws:iam::123456789012:user/alice"}}]{extra}}}"#
    )
}

fn doc(records: &[String]) -> Vec<u8> {
    format!(r#"{{"Records":[{}]}}"#, records.join(",")).into_bytes()
}

/// Unix seconds of 2024-03-01T10:20:30Z, the `eventTime` of [`record`].
const START: i64 = 1_709_288_430;

fn envelope_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/envelopes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The JSON path an envelope error names.
fn error_path(e: &EnvelopeError) -> &str {
    match e {
        EnvelopeError::NotJson { .. } => "<not json>",
        EnvelopeError::UnknownShape { path, .. }
        | EnvelopeError::Invalid { path, .. }
        | EnvelopeError::BadKey { path, .. }
        | EnvelopeError::LogFileNotNotification { path, .. } => path,
    }
}

/// The longest error text a message-supplied value can produce: ten keys quoted at 200
/// characters each, plus the sentence around them (escapes can triple a character).
const MAX_ERROR_CHARS: usize = 8 * 1024;

// ---- message bodies ----------------------------------------------------------------------

#[test]
fn random_bytes_as_a_message_body_are_a_not_json_error_of_bounded_length() {
    let mut rng = Rng(0x5eed_0001);
    let mut not_json = 0;
    for case in 0..4000 {
        let len = rng.below(600);
        let raw = rng.bytes(len);
        // SQS bodies are text: the SDK hands the daemon a `String`.
        let body = String::from_utf8_lossy(&raw).into_owned();
        let result = envelope::decode(&body);
        let error = result.expect_err(&format!("case {case}: {body:?} decoded"));
        let text = error.to_string();
        assert!(
            text.chars().count() < MAX_ERROR_CHARS,
            "case {case}: {text}"
        );
        match error {
            EnvelopeError::NotJson { .. } => not_json += 1,
            // A body of digits or whitespace and digits is a JSON number: not an object.
            EnvelopeError::Invalid { ref path, .. } if path == "$" => {}
            other => panic!("case {case}: {body:?}: {other:?}"),
        }
    }
    assert!(not_json > 3900, "{not_json}");
}

#[test]
fn mutated_real_envelopes_never_panic_and_only_ever_yield_cloudtrail_log_keys() {
    let files = [
        "s3_event.json",
        "s3_event_encoded_keys.json",
        "s3_event_skipped_objects.json",
        "sns_s3_event.json",
        "sns_s3_event_moto.json",
        "sns_cloudtrail_notification.json",
        "cloudtrail_notification.json",
        "eventbridge_object_created.json",
        "sns_subscription_confirmation.json",
    ];
    let tokens: [&[u8]; 12] = [
        b"null", b"[", b"]", b"{", b"}", b"\"", b"\\", b",", b":", b"1e400", b"%00", b"\\u0000",
    ];
    let mut rng = Rng(0x5eed_0002);
    let (mut ok, mut errors) = (0, 0);
    for case in 0..6000 {
        let file = files[rng.below(files.len())];
        let original = envelope_file(file).into_bytes();
        let mut bytes = original.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(4) {
                0 => bytes.truncate(at),
                1 if at < bytes.len() => bytes[at] = rng.next() as u8,
                2 => {
                    let token = *rng.pick(&tokens);
                    bytes.splice(at..at, token.iter().copied());
                }
                _ => {
                    let end = (at + rng.below(40)).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
        }
        let body = String::from_utf8_lossy(&bytes);
        match envelope::decode(&body) {
            Ok(decoded) => {
                ok += 1;
                for object in &decoded.objects {
                    assert_eq!(classify_key(&object.key), Ok(()), "case {case}: {body}");
                    assert!(!object.bucket.is_empty(), "case {case}: {body}");
                }
            }
            Err(e) => {
                errors += 1;
                assert!(
                    e.to_string().chars().count() < MAX_ERROR_CHARS,
                    "case {case}"
                );
            }
        }
    }
    assert!(ok > 100 && errors > 1000, "ok {ok}, errors {errors}");
}

/// Values of every JSON type, put in place of each field in turn.
fn replacements() -> Vec<Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(""),
        json!("x"),
        json!([]),
        json!([1]),
        json!({}),
        json!({"a": 1}),
    ]
}

/// Every path in `value` with the value there, depth first, the root (`$`) first.
fn paths(value: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_owned());
    let join = |child: &str| {
        if at == "$" {
            child.to_owned()
        } else {
            format!("{at}.{child}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                paths(v, &join(k), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                paths(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `value` with the node at `path` replaced.
fn replaced(value: &Value, path: &str, with: &Value) -> Value {
    let mut out = value.clone();
    if path == "$" {
        return with.clone();
    }
    let mut node = &mut out;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        node = &mut node[name];
        if let Some(i) = index {
            node = &mut node[i];
        }
    }
    *node = with.clone();
    out
}

/// What a field of an envelope must hold, as `decode` reads it.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// A non-empty array of objects.
    Records,
    /// An object; `first` is its first required member (the error path of an empty object).
    Object { first: &'static str },
    /// A non-empty string; `ok_x` is what decoding gives when it is `"x"`.
    Text { ok_x: WithX },
    /// Missing/null is fine, else a non-negative integer.
    OptU64,
    /// Missing/null is fine, else a string.
    OptString,
    /// Exactly one string (`"aws.s3"`, SNS `Type`, a JSON `Message`): anything else is an error.
    Exact,
    /// CloudTrail's `s3ObjectKey`: a string or a non-empty array of strings, none empty.
    CtKeys,
    /// One element of `s3ObjectKey`.
    CtKey,
}

/// What `"x"` in a [`Rule::Text`] field gives.
#[derive(Debug, Clone, Copy)]
enum WithX {
    /// The object is skipped as not a CloudTrail key.
    SkipKey,
    /// The object is skipped as not an object-created event.
    SkipEvent,
    /// The object is kept, with bucket `x`.
    Bucket,
}

/// The outcome a replacement must have.
enum Expect {
    Unchanged,
    ErrorAt(String),
    Check(Box<dyn Fn(&Decoded) -> bool>),
}

fn expect(rules: &[(&str, Rule)], prefix: &str, path: &str, with: &Value) -> Expect {
    let full = |p: &str| {
        if prefix.is_empty() {
            p.to_owned()
        } else if p == "$" {
            prefix.to_owned()
        } else {
            format!("{prefix}.{p}")
        }
    };
    if path == "$" {
        // Not an object: invalid at the root; an object of no known shape: unknown at the root.
        return Expect::ErrorAt(full("$"));
    }
    let Some((_, rule)) = rules.iter().find(|(p, _)| *p == path) else {
        return Expect::Unchanged;
    };
    let at = full(path);
    let is_empty_string = with.as_str() == Some("");
    match *rule {
        Rule::Records => match with {
            Value::Array(items) if !items.is_empty() => Expect::ErrorAt(format!("{at}[0]")),
            _ => Expect::ErrorAt(at),
        },
        Rule::Object { first } => match with {
            Value::Object(_) => Expect::ErrorAt(format!("{at}.{first}")),
            _ => Expect::ErrorAt(at),
        },
        Rule::Text { ok_x } => match (with.as_str(), ok_x) {
            (Some("x"), WithX::SkipKey) => Expect::Check(Box::new(|d: &Decoded| {
                d.objects.is_empty()
                    && d.skipped.len() == 1
                    && d.skipped[0].reason == SkipReason::NotCloudTrail
            })),
            (Some("x"), WithX::SkipEvent) => Expect::Check(Box::new(|d: &Decoded| {
                d.objects.is_empty()
                    && d.skipped.len() == 1
                    && d.skipped[0].reason == SkipReason::NotObjectCreated
            })),
            (Some("x"), WithX::Bucket) => Expect::Check(Box::new(|d: &Decoded| {
                d.objects.len() == 1 && d.objects[0].bucket == "x"
            })),
            _ => Expect::ErrorAt(at),
        },
        Rule::OptU64 => match with {
            Value::Null => Expect::Check(Box::new(|d: &Decoded| d.objects[0].size.is_none())),
            v if v.as_u64().is_some() => {
                Expect::Check(Box::new(|d: &Decoded| d.objects[0].size == Some(0)))
            }
            _ => Expect::ErrorAt(at),
        },
        Rule::OptString => match with {
            Value::Null | Value::String(_) => {
                Expect::Check(Box::new(|d: &Decoded| d.objects.len() == 1))
            }
            _ => Expect::ErrorAt(at),
        },
        Rule::Exact => Expect::ErrorAt(at),
        Rule::CtKeys => match with {
            Value::String(_) if is_empty_string => Expect::ErrorAt(at),
            Value::String(_) => Expect::Check(Box::new(|d: &Decoded| {
                d.objects.is_empty() && d.skipped[0].reason == SkipReason::NotCloudTrail
            })),
            Value::Array(items) if !items.is_empty() => Expect::ErrorAt(format!("{at}[0]")),
            _ => Expect::ErrorAt(at),
        },
        Rule::CtKey => match with {
            Value::String(_) if !is_empty_string => Expect::Check(Box::new(|d: &Decoded| {
                d.objects.is_empty() && d.skipped[0].reason == SkipReason::NotCloudTrail
            })),
            _ => Expect::ErrorAt(at),
        },
    }
}

const S3_EVENT_RULES: [(&str, Rule); 12] = [
    ("Records", Rule::Records),
    ("Records[0]", Rule::Object { first: "eventName" }),
    (
        "Records[0].eventName",
        Rule::Text {
            ok_x: WithX::SkipEvent,
        },
    ),
    ("Records[0].s3", Rule::Object { first: "object" }),
    ("Records[0].s3.bucket", Rule::Object { first: "name" }),
    (
        "Records[0].s3.bucket.name",
        Rule::Text {
            ok_x: WithX::Bucket,
        },
    ),
    ("Records[0].s3.object", Rule::Object { first: "key" }),
    (
        "Records[0].s3.object.key",
        Rule::Text {
            ok_x: WithX::SkipKey,
        },
    ),
    ("Records[0].s3.object.size", Rule::OptU64),
    ("Records[0].s3.object.eTag", Rule::OptString),
    ("Records[0].s3.object.sequencer", Rule::OptString),
    ("Records[0].s3.object.versionId", Rule::OptString),
    // Not listed, so ignored: a record's `eventSource` only matters without an `s3` member.
];

const EVENTBRIDGE_RULES: [(&str, Rule); 11] = [
    ("source", Rule::Exact),
    (
        "detail-type",
        Rule::Text {
            ok_x: WithX::SkipEvent,
        },
    ),
    ("detail", Rule::Object { first: "object" }),
    ("detail.bucket", Rule::Object { first: "name" }),
    (
        "detail.bucket.name",
        Rule::Text {
            ok_x: WithX::Bucket,
        },
    ),
    ("detail.object", Rule::Object { first: "key" }),
    (
        "detail.object.key",
        Rule::Text {
            ok_x: WithX::SkipKey,
        },
    ),
    ("detail.object.size", Rule::OptU64),
    ("detail.object.etag", Rule::OptString),
    ("detail.object.sequencer", Rule::OptString),
    ("detail.object.version-id", Rule::OptString),
];

const CLOUDTRAIL_RULES: [(&str, Rule); 3] = [
    (
        "s3Bucket",
        Rule::Text {
            ok_x: WithX::Bucket,
        },
    ),
    ("s3ObjectKey", Rule::CtKeys),
    ("s3ObjectKey[0]", Rule::CtKey),
];

const SNS_RULES: [(&str, Rule); 2] = [("Type", Rule::Exact), ("Message", Rule::Exact)];

/// Replaces every node of `doc` with every replacement; returns how many cases were checked.
fn check_every_field(
    doc: &Value,
    rules: &[(&str, Rule)],
    prefix: &str,
    wrap: &dyn Fn(&Value) -> String,
) -> usize {
    let original = envelope::decode(&wrap(doc)).expect("the original decodes");
    assert!(!original.objects.is_empty(), "the original names an object");
    let mut all = Vec::new();
    paths(doc, "$", &mut all);
    let mut checked = 0;
    for path in &all {
        for with in replacements() {
            let body = wrap(&replaced(doc, path, &with));
            let got = envelope::decode(&body);
            let what = format!("{path} = {with}: {got:?}");
            match (expect(rules, prefix, path, &with), got) {
                // Fields `decode` does not read change nothing.
                (Expect::Unchanged, Ok(d)) => assert_eq!(d, original, "{what}"),
                (Expect::ErrorAt(want), Err(e)) => {
                    assert_eq!(error_path(&e), want, "{what}");
                    assert!(e.to_string().contains(&want), "{what}");
                }
                (Expect::Check(check), Ok(d)) => assert!(check(&d), "{what}"),
                (_, got) => panic!("unexpected outcome for {path} = {with}: {got:?}"),
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_field_of_every_envelope_given_each_json_type_is_ignored_or_an_error_naming_that_field() {
    let s3: Value = serde_json::from_str(&envelope_file("s3_event.json")).expect("JSON");
    let plain = |v: &Value| v.to_string();
    let mut checked = check_every_field(&s3, &S3_EVENT_RULES, "", &plain);

    let eventbridge: Value =
        serde_json::from_str(&envelope_file("eventbridge_object_created.json")).expect("JSON");
    checked += check_every_field(&eventbridge, &EVENTBRIDGE_RULES, "", &plain);

    let cloudtrail: Value =
        serde_json::from_str(&envelope_file("cloudtrail_notification.json")).expect("JSON");
    checked += check_every_field(&cloudtrail, &CLOUDTRAIL_RULES, "", &plain);

    // Inside SNS: the SNS fields themselves, then the S3 event in `Message`, paths prefixed.
    let sns: Value = serde_json::from_str(&envelope_file("sns_s3_event.json")).expect("JSON");
    checked += check_every_field(&sns, &SNS_RULES, "", &plain);
    let inner: Value =
        serde_json::from_str(sns["Message"].as_str().expect("Message")).expect("JSON");
    let in_sns = |v: &Value| {
        let mut outer = sns.clone();
        outer["Message"] = json!(v.to_string());
        outer.to_string()
    };
    checked += check_every_field(&inner, &S3_EVENT_RULES, "Message", &in_sns);
    assert!(checked > 800, "{checked}");
}

#[test]
fn duplicate_keys_in_an_envelope_take_their_last_value() {
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/06/f.json.gz";
    let body = format!(
        r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"first-bucket","name":"last-bucket"}},"object":{{"key":"images/cat.png","key":"{key}","size":1,"size":2}}}}}}]}}"#
    );
    let decoded = envelope::decode(&body).expect("decodes");
    assert_eq!(decoded.objects.len(), 1);
    assert_eq!(decoded.objects[0].bucket, "last-bucket");
    assert_eq!(decoded.objects[0].key, key);
    assert_eq!(decoded.objects[0].size, Some(2));

    // A later `Records` replaces the earlier one entirely, whatever it held.
    let body = format!(
        r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"b"}},"object":{{"key":"{key}"}}}}}}],"Records":"gone"}}"#
    );
    let error = envelope::decode(&body).expect_err("the last Records is a string");
    assert_eq!(error_path(&error), "Records");

    // SNS: the last `Message` and the last `Type` count.
    let inner = json!({"s3Bucket": "ct-bucket", "s3ObjectKey": key}).to_string();
    let body = format!(
        r#"{{"Type":"SubscriptionConfirmation","Type":"Notification","Message":"not json","Message":{}}}"#,
        json!(inner)
    );
    let decoded = envelope::decode(&body).expect("decodes");
    assert_eq!(decoded.objects.len(), 1);
    assert_eq!(decoded.objects[0].bucket, "ct-bucket");
}

#[test]
fn numbers_out_of_range_in_an_envelope_are_errors_naming_the_field_or_the_body() {
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/06/f.json.gz";
    let with_size = |size: &str| {
        format!(
            r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"b"}},"object":{{"key":"{key}","size":{size}}}}}}}]}}"#
        )
    };
    let decoded = envelope::decode(&with_size("18446744073709551615")).expect("u64::MAX");
    assert_eq!(decoded.objects[0].size, Some(u64::MAX));
    for size in ["18446744073709551616", "-1", "1.0", "1e3", "-0.0"] {
        let error = envelope::decode(&with_size(size)).expect_err(size);
        assert_eq!(error_path(&error), "Records[0].s3.object.size", "{size}");
    }
    // JSON allows 1e400; serde_json cannot hold it: the body is refused as not JSON, naming
    // the position, not a panic.
    for size in ["1e400", "-1e400"] {
        match envelope::decode(&with_size(size)) {
            Err(EnvelopeError::NotJson { detail }) => {
                assert!(detail.contains("out of range"), "{detail}")
            }
            other => panic!("{size}: {other:?}"),
        }
    }
}

// ---- stored objects ------------------------------------------------------------------------

#[test]
fn random_bytes_as_an_object_are_refused_as_content_never_as_a_failing_source() {
    // A source failure is retried (S3 may answer better next time); broken content is poison.
    // Random bytes must never be mistaken for the former, or a bad file is retried for days.
    let mut rng = Rng(0x5eed_0003);
    let prefixes: [&[u8]; 5] = [
        b"",
        b"\x1f\x8b",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff",
        b"{\"Records\":[",
        b" {",
    ];
    let mut refused = 0;
    for case in 0..3000 {
        let mut bytes = rng.pick(&prefixes).to_vec();
        let len = rng.below(2048);
        bytes.extend(rng.bytes(len));
        if case % 5 == 0 {
            // Valid gzip around random content: the JSON is what is broken.
            bytes = gzip(&bytes);
        }
        let outcome = stored(bytes, &Limits::default());
        let error = match &outcome {
            Err(e) => Some(e),
            Ok(run) => run.records_error(),
        };
        match error {
            Some(e) => {
                refused += 1;
                assert!(!e.is_source_failure(), "case {case}: {e}");
            }
            None => {
                let run = outcome.as_ref().expect("ok");
                assert!(
                    run.changes.is_empty(),
                    "case {case}: random bytes made a change"
                );
            }
        }
    }
    assert!(refused > 2900, "{refused}");
}

#[test]
fn an_object_that_is_not_cloudtrail_at_the_top_level_is_refused_before_any_record() {
    for json in [
        "",
        "   ",
        "null",
        "5",
        "\"Records\"",
        "[]",
        "[{\"eventID\":\"a\"}]",
        "{}",
        "{\"Records\":5}",
        "{\"Records\":\"x\"}",
        "{\"Records\":true}",
        "{\"Records\":{\"0\":{}}}",
    ] {
        let run = pipeline(json.as_bytes());
        assert!(
            matches!(
                run.records_error(),
                Some(RecordsError::NotCloudTrail { .. })
            ),
            "{json:?}: {:?}",
            run.result
        );
        assert_eq!(run.tally.records, 0, "{json:?}");
    }
    // `"Records": null` holds no records: a valid, empty document.
    let run = pipeline(b"{\"Records\":null}");
    assert!(run.result.is_ok());
    assert_eq!(run.tally.records, 0);
}

/// The reason, detail and change of one record of [`record`] with `extra` appended.
fn one(extra: &str) -> (Option<(Reason, Option<&'static str>)>, Option<Change>) {
    let run = pipeline(&doc(&[record("e-1", extra)]));
    assert!(run.result.is_ok(), "{extra}: {:?}", run.result);
    assert_eq!(run.tally.records, 1);
    (
        run.dropped
            .first()
            .map(|(_, reason, detail)| (*reason, *detail)),
        run.changes.into_iter().next(),
    )
}

fn kept(extra: &str) -> Change {
    match one(extra) {
        (None, Some(change)) => change,
        other => panic!("{extra}: expected a change, got {other:?}"),
    }
}

fn dropped(extra: &str) -> (Reason, Option<&'static str>) {
    match one(extra) {
        (Some(drop), None) => drop,
        other => panic!("{extra}: expected a drop, got {other:?}"),
    }
}

#[test]
fn records_with_fields_of_the_wrong_type_are_dropped_as_malformed_or_read_as_absent() {
    let missing_id = Some("eventID is missing or not a non-empty string");
    let missing_time = Some("eventTime is missing or not a string");
    let bad_time = Some("eventTime is not a date-time");
    let odd = [
        "null",
        "true",
        "0",
        "-1",
        "1.5",
        "[]",
        "[\"x\"]",
        "{}",
        "{\"a\":1}",
    ];

    // Not an object at all.
    let run = pipeline(b"{\"Records\":[1,\"x\",null,true,[],[{}],-0.5e-3]}");
    assert!(run.result.is_ok());
    assert_eq!(run.dropped.len(), 7);
    assert!(run
        .dropped
        .iter()
        .all(|(_, r, d)| *r == Reason::Malformed && *d == Some("the record is not a JSON object")));

    for v in odd {
        assert_eq!(
            dropped(&format!(",\"eventID\":{v}")),
            (Reason::Malformed, missing_id),
            "{v}"
        );
        assert_eq!(
            dropped(&format!(",\"eventTime\":{v}")),
            (Reason::Malformed, missing_time),
            "{v}"
        );
        // A mistyped name is absent: not a read, not noise; the change has a placeholder.
        assert_eq!(
            kept(&format!(",\"eventName\":{v}")).summary,
            "(no eventName)",
            "{v}"
        );
        // A mistyped eventType is absent, which means AwsApiCall (event versions < 1.02).
        kept(&format!(",\"eventType\":{v}"));
        // A mistyped category is absent; managementEvent true decides.
        kept(&format!(",\"eventCategory\":{v}"));
        // userIdentity that is not an object: the user is unknown.
        let change = kept(&format!(",\"userIdentity\":{v}"));
        assert_eq!(change.tags.get("user_name"), Some("unknown"), "{v}");
        assert_eq!(change.tags.get("user_arn"), None, "{v}");
        // requestParameters that is not an object is one tag `rp` (an object is one tag a
        // member, so `{"a":1}` gives `rp_a`); null and empty values give none.
        let change = kept(&format!(",\"requestParameters\":{v}"));
        let rp: Vec<&(String, String)> = change
            .tags
            .0
            .iter()
            .filter(|(k, _)| k == "rp" || k.starts_with("rp_"))
            .collect();
        let want: &[(&str, &str)] = match v {
            "{\"a\":1}" => &[("rp_a", "1")],
            "null" | "[]" | "{}" => &[],
            _ => &[("rp", v)],
        };
        let rp: Vec<(&str, &str)> = rp.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(rp, want, "{v}");
        // awsRegion that is not a string: no region tag and no console link.
        let change = kept(&format!(",\"awsRegion\":{v}"));
        assert_eq!(
            (change.tags.get("aws_region"), change.ticket_url),
            (None, None),
            "{v}"
        );
    }
    assert_eq!(
        dropped(",\"eventID\":\"\""),
        (Reason::Malformed, missing_id)
    );
    for v in ["\"\"", "\"x\"", "\"2024-03-01\""] {
        assert_eq!(
            dropped(&format!(",\"eventTime\":{v}")),
            (Reason::Malformed, bad_time),
            "{v}"
        );
    }
    // readOnly: only booleans and "true"/"false" in any case count; anything else is absent,
    // and then the name decides (CreateUser is a write).
    for v in ["true", "\"TRUE\"", "\"True\""] {
        assert_eq!(
            dropped(&format!(",\"readOnly\":{v}")).0,
            Reason::ReadOnly,
            "{v}"
        );
    }
    for v in [
        "false",
        "\"false\"",
        "\"maybe\"",
        "null",
        "0",
        "1",
        "[]",
        "{}",
    ] {
        kept(&format!(",\"readOnly\":{v}"));
    }
    // errorCode/errorMessage: any value but null or "" marks a failed call.
    for field in ["errorCode", "errorMessage"] {
        for v in ["\"x\"", "0", "false", "[]", "{}"] {
            assert_eq!(
                dropped(&format!(",\"{field}\":{v}")).0,
                Reason::Failed,
                "{field} {v}"
            );
        }
        for v in ["null", "\"\""] {
            kept(&format!(",\"{field}\":{v}"));
        }
    }
    assert_eq!(dropped(",\"eventType\":\"\"").0, Reason::EventType);
    assert_eq!(dropped(",\"eventCategory\":\"Data\"").0, Reason::Category);
    // resources: not an array gives no tag; elements that are not objects are tagged whole.
    for v in ["null", "0", "\"x\"", "{}", "{\"ARN\":\"a\"}"] {
        let change = kept(&format!(",\"resources\":{v}"));
        assert!(
            !change
                .tags
                .0
                .iter()
                .any(|(k, _)| k.starts_with("resources")),
            "{v}"
        );
    }
    let change = kept(",\"resources\":[1,\"x\",null,[2,{\"a\":3}],{\"ARN\":\"arn\"}]");
    let resource_tags: Vec<(&str, &str)> = change
        .tags
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("resources"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        resource_tags,
        [
            ("resources0", "1"),
            ("resources1", "x"),
            ("resources3", "[2,{\"a\":3}]"),
            ("resources4_ARN", "arn"),
        ]
    );
    // userIdentity of the right type with members of the wrong type: those members are absent.
    let change = kept(",\"userIdentity\":{\"type\":[\"IAMUser\"],\"userName\":5,\"arn\":{}}");
    assert_eq!(change.tags.get("user_name"), Some("unknown"));
    assert_eq!(change.tags.get("user_type"), None);
}

#[test]
fn odd_event_time_formats_are_kept_with_a_normalized_start_or_dropped_as_malformed() {
    let day = 86_400;
    let kept_at = [
        ("2024-03-01T10:20:30Z", START),
        ("2024-03-01T10:20:30", START),
        ("2024-03-01 10:20:30Z", START),
        // RFC 3339 allows lower-case `t` and `z`.
        ("2024-03-01t10:20:30z", START),
        ("2024-03-01T10:20:30.999999999Z", START),
        ("2024-03-01T10:20:30.5+00:00", START),
        ("2024-03-01T12:20:30+02:00", START),
        ("2024-03-01T10:20:30-00:00", START),
        ("2024-03-01T00:50:30-09:30", START),
        ("2024-03-02T09:20:30+23:00", START),
        // A leap second is the first second of the next day.
        (
            "2024-03-01T23:59:60Z",
            START - 10 * 3600 - 20 * 60 - 30 + day,
        ),
        // The first second CloudTrail could have written, in another zone.
        ("2013-01-01T01:00:00+01:00", 1_356_998_400),
    ];
    for (time, start) in kept_at {
        let change = kept(&format!(",\"eventTime\":\"{time}\""));
        assert_eq!((change.start, change.end), (start, start), "{time}");
    }
    // Date-times before CloudTrail existed or far ahead are implausible: malformed too, with
    // their own reason. (Year 0 is a valid proleptic Gregorian year: a date-time, implausible.)
    for time in [
        "1970-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "2012-12-31T23:59:59Z",
        "2013-01-01T00:59:59+01:00",
        "9999-12-31T23:59:59Z",
    ] {
        assert_eq!(
            dropped(&format!(",\"eventTime\":\"{time}\"")),
            (
                Reason::Malformed,
                Some("eventTime is implausible: before 2013-01-01T00:00:00Z or more than a day after now")
            ),
            "{time}"
        );
    }
    let malformed = [
        "",
        " 2024-03-01T10:20:30Z",
        "2024-03-01T10:20:30Z ",
        "2024-03-01T10:20:30Z\n",
        "2024-03-01T10:20:30\u{0}",
        "10000-01-01T00:00:00Z",
        "+2024-03-01T10:20:30Z",
        "2024-03-01T10:20:61Z",
        "2024-03-01T24:00:00Z",
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-03-01T10:20:30+24:00",
        "2024-03-01T10:20:30+02:60",
        "2024-03-01T10:20:30+02",
        "2024-03-01T10:20:30+0200",
        "2024-03-01T10:20:30.Z",
        "2024-03-01T10:20:30,5Z",
        "2024-03-01T10:20:30 Z",
        "2024-03-01T10:20:30UTC",
        "2024-03-01X10:20:30Z",
        "2024/03/01T10:20:30Z",
        "1709288430",
        "Fri, 01 Mar 2024 10:20:30 GMT",
        "2024-03-01T10:20:30Z2024-03-01T10:20:30Z",
        "２０２４-03-01T10:20:30Z",
        "2024-03-01T10:20:30.١Z",
    ];
    for time in malformed {
        let extra = format!(",\"eventTime\":{}", json!(time));
        assert_eq!(
            dropped(&extra),
            (Reason::Malformed, Some("eventTime is not a date-time")),
            "{time:?}"
        );
    }
}

#[test]
fn numbers_out_of_range_in_request_parameters_and_resources_are_tagged_with_their_json_text() {
    let huge = "123456789012345678901234567890123456789012345678901234567890";
    let change = kept(&format!(
        r#","requestParameters":{{"big":{huge},"inf":1e400,"neg":-1e400,"tiny":-0.0e-999,"max":18446744073709551616}},"resources":[{{"n":1e400}}]"#
    ));
    assert_eq!(change.tags.get("rp_big"), Some(huge));
    assert_eq!(change.tags.get("rp_inf"), Some("1e400"));
    assert_eq!(change.tags.get("rp_neg"), Some("-1e400"));
    assert_eq!(change.tags.get("rp_tiny"), Some("-0.0e-999"));
    assert_eq!(change.tags.get("rp_max"), Some("18446744073709551616"));
    assert_eq!(change.tags.get("resources0_n"), Some("1e400"));
}

#[test]
fn a_number_out_of_range_in_a_field_the_filter_reads_drops_only_that_record() {
    // fields.rs: "a value of an unexpected type reads as absent instead of failing the record,
    // so one odd record cannot break a file". 1e400 is valid JSON (RFC 8259) that serde_json
    // cannot hold as a number; read as absent it is merely odd.
    // The record holding the value is dropped as malformed; the ones around it are kept.
    for (field, expect) in [
        ("eventID", Some(Reason::Malformed)),
        ("eventTime", Some(Reason::Malformed)),
        ("eventName", Some(Reason::Malformed)),
        ("readOnly", Some(Reason::Malformed)),
        ("errorCode", Some(Reason::Malformed)),
        ("awsRegion", Some(Reason::Malformed)),
    ] {
        let doc = doc(&[
            record("before", ""),
            record("odd", &format!(",\"{field}\":1e400")),
            record("after", ""),
        ]);
        let run = pipeline(&doc);
        assert!(run.result.is_ok(), "{field}: {:?}", run.result);
        assert_eq!(run.tally.records, 3, "{field}");
        let ids = run.ids();
        assert!(
            ids.contains(&"before") && ids.contains(&"after"),
            "{field}: {ids:?}"
        );
        assert_eq!(run.dropped.first().map(|d| d.1), expect, "{field}");
    }
}

#[test]
fn a_number_out_of_range_in_one_identity_member_loses_only_that_member() {
    let change = kept(r#","userIdentity":{"type":"IAMUser","userName":"bob","accountId":1e400}"#);
    assert_eq!(change.tags.get("user_name"), Some("bob"));
    assert_eq!(change.tags.get("user_type"), Some("IAMUser"));
}

/// Runs `f` on a thread with the stack size of tokio's blocking threads (where the daemon
/// parses objects): a recursion that overflows it would abort the daemon.
fn on_daemon_sized_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("a thread")
        .join()
        .expect("no stack overflow or panic")
}

#[test]
fn deeply_nested_values_in_every_raw_field_are_mapped_without_deep_recursion() {
    const DEPTH: usize = 100_000;
    let arrays = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let objects = format!("{}1{}", "{\"a\":".repeat(DEPTH), "}".repeat(DEPTH));
    let cases = [
        format!(",\"requestParameters\":{arrays}"),
        format!(",\"requestParameters\":{{\"deep\":{arrays}}}"),
        format!(",\"requestParameters\":{{\"deep\":{objects}}}"),
        format!(",\"requestParameters\":{objects}"),
        format!(",\"resources\":{arrays}"),
        format!(",\"resources\":[{objects}]"),
        format!(",\"userIdentity\":{arrays}"),
        format!(",\"userIdentity\":{{\"type\":\"AssumedRole\",\"sessionContext\":{{\"sessionIssuer\":{objects}}}}}"),
        format!(",\"userIdentity\":{{\"type\":\"IAMUser\",\"userName\":{arrays}}}"),
        format!(",\"unknownField\":{objects}"),
        format!(",\"eventName\":{arrays}"),
    ];
    for extra in cases {
        let label: String = extra.chars().take(60).collect();
        let json = doc(&[record("deep", &extra), record("next", "")]);
        let run = on_daemon_sized_stack(move || pipeline_with(&json, 8 << 20));
        assert!(run.result.is_ok(), "{label}: {:?}", run.result);
        assert_eq!(run.ids(), ["deep", "next"], "{label}");
        for (name, value) in &run.changes[0].tags.0 {
            assert!(value.chars().count() <= 1024, "{label}: {name} is not cut");
        }
    }
    // The nested value itself becomes a tag, cut to the limit.
    let json = doc(&[record(
        "deep",
        &format!(",\"requestParameters\":{{\"deep\":{arrays}}}"),
    )]);
    let run = on_daemon_sized_stack(move || pipeline_with(&json, 8 << 20));
    let tag = run.changes[0]
        .tags
        .get("rp_deep")
        .expect("rp_deep")
        .to_owned();
    assert_eq!(tag, format!("{}…", "[".repeat(1023)));
}

#[test]
fn invalid_utf8_inside_one_record_drops_that_record_and_keeps_the_others() {
    let bad = |field: &str| -> Vec<u8> {
        let mut json = format!(
            r#"{{"Records":[{},{{"eventID":"bad","{field}":"a"#,
            record("before", "")
        )
        .into_bytes();
        json.extend(b"\xff\xfe\xc0\x80");
        json.extend(format!(r#""}},{}]}}"#, record("after", "")).into_bytes());
        json
    };
    for field in [
        "eventName",
        "eventTime",
        "awsRegion",
        "errorCode",
        "readOnly",
        "requestParameters",
    ] {
        let run = pipeline(&bad(field));
        assert!(run.result.is_ok(), "{field}: {:?}", run.result);
        assert_eq!(run.ids(), ["before", "after"], "{field}");
        assert_eq!(
            run.dropped.iter().map(|d| d.1).collect::<Vec<_>>(),
            [Reason::Malformed],
            "{field}"
        );
    }
    // Bytes that are not JSON at all still end the object, as content (never a failing source).
    let mut broken = format!(r#"{{"Records":[{},"#, record("before", "")).into_bytes();
    broken.extend(b"{\"eventID\":\"x\" \"y\"}]}");
    let run = pipeline(&broken);
    assert_eq!(run.ids(), ["before"]);
    assert!(matches!(
        run.records_error(),
        Some(RecordsError::Json { .. })
    ));
    let error = stored(gzip(&broken), &Limits::default())
        .expect("gzip")
        .records_error()
        .map(|e| e.is_source_failure());
    assert_eq!(error, Some(false));
}

#[test]
fn duplicate_keys_in_a_record_keep_their_last_value_and_two_records_arrays_are_both_read() {
    let change = kept(
        r#","eventID":"e-2","eventName":"DeleteUser","eventTime":"2024-03-01T10:20:31Z","requestParameters":{"a":1,"b":2,"a":3}"#,
    );
    assert_eq!(change.identifier, "e-2");
    assert_eq!(change.summary, "DeleteUser");
    assert_eq!(change.start, START + 1);
    let rp: Vec<(&str, &str)> = change
        .tags
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("rp_"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        rp,
        [("rp_a", "3"), ("rp_b", "2")],
        "first place, last value"
    );
    // A read-only flag given twice: the last one decides.
    assert_eq!(
        dropped(r#","readOnly":false,"readOnly":true"#).0,
        Reason::ReadOnly
    );
    kept(r#","readOnly":true,"readOnly":false"#);

    // Two `Records` members: records stream out as they are read, so the first array cannot be
    // taken back when the second arrives; both are read, in document order. (Undocumented:
    // `json.load` in scripts/reference-filter.py would keep only the second.)
    let json = format!(
        r#"{{"Records":[{}],"Other":1,"Records":[{}]}}"#,
        record("first", ""),
        record("second", "")
    );
    let run = pipeline(json.as_bytes());
    assert!(run.result.is_ok());
    assert_eq!(run.ids(), ["first", "second"]);
}

#[test]
fn a_key_given_twice_in_user_identity_keeps_its_last_value() {
    // README: "a key given twice in JSON keeps its first position and its last value".
    let change = kept(r#","userIdentity":{"type":"IAMUser","userName":"bob","userName":"carol"}"#);
    assert_eq!(change.tags.get("user_name"), Some("carol"));
    assert_eq!(change.tags.get("user_type"), Some("IAMUser"));
    let change = kept(
        r#","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/R/s","sessionContext":{"sessionIssuer":{"userName":"Old"},"sessionIssuer":{"userName":"Ops"}}}"#,
    );
    assert_eq!(change.tags.get("user_name"), Some("Ops"));
}

#[test]
fn a_record_just_under_and_just_over_the_record_limit_is_kept_or_refused_with_its_index() {
    let limit = 64 * 1024;
    let pad = |n: usize| {
        record(
            "big",
            &format!(",\"requestParameters\":{{\"p\":\"{}\"}}", "x".repeat(n)),
        )
    };
    let base = pad(0).len();
    let fits = pad(limit - base);
    assert_eq!(fits.len(), limit);
    let run = pipeline_with(&doc(&[fits, record("after", "")]), limit);
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(run.ids(), ["big", "after"]);

    let over = pad(limit * 4);
    let run = pipeline_with(&doc(&[record("before", ""), over]), limit);
    assert_eq!(run.ids(), ["before"]);
    match run.records_error() {
        Some(RecordsError::RecordTooLarge {
            index, limit: l, ..
        }) => {
            assert_eq!((*index, *l), (1, limit))
        }
        other => panic!("{other:?}"),
    }
}
