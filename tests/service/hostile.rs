//! Hostile input to the running daemon: message bodies sent straight into its queue and
//! objects put into its bucket. Each test checks the message's fate (poison in the DLQ with
//! its `failure_reason`, or a skip that deletes it), that nothing hostile reached BigPanda, and
//! that the daemon still delivers a good file afterwards. Where memory matters, the growth of
//! the test process's peak RSS (the daemon runs in-process) is bounded.
//!
//! The pure parts (decode, records, pipeline) are hammered in `tests/hostile_inputs.rs`.

use crate::support::bigpanda::Reply;
use crate::support::prerequisite;
use crate::support::stack::{Binary, Stack};
use flate2::write::GzEncoder;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ACCOUNT: &str = "218007301253";
/// A real CloudTrail file and the number of changes it makes.
const GOOD_FILE: &str = "tests/data/cloudtrail/invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json.gz";
const GOOD_CHANGES: usize = 8;

fn good_file() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(GOOD_FILE)).expect("the good file")
}

/// A key CloudTrail could have written, unique by `name`.
fn log_key(name: &str) -> String {
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2023/07/10/{ACCOUNT}_CloudTrail_us-east-1_20230710T1205Z_{name}.json.gz"
    )
}

/// An S3 event notification for one object; `encoded_key` is put as is (S3 form-encodes).
fn s3_event(bucket: &str, encoded_key: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2023-07-10T12:06:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AROAEXAMPLE:regionalDeliverySession"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "ct",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": encoded_key, "size": 1234, "eTag": "0123456789abcdef"}}}]})
    .to_string()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    gzip_at(data, flate2::Compression::fast())
}

fn gzip_at(data: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), level);
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

/// `head`, then `repeat` copies of `unit` (as separate gzip members, so a huge output costs
/// one small compression), then `tail`: one document to a multi-member reader.
fn gzip_members(head: &[u8], unit: &[u8], repeat: usize, tail: &[u8]) -> Vec<u8> {
    let member = gzip_at(unit, flate2::Compression::best());
    let mut out = gzip(head);
    out.reserve(member.len() * repeat + 64);
    for _ in 0..repeat {
        out.extend_from_slice(&member);
    }
    out.extend(gzip(tail));
    out
}

/// Waits until the DLQ holds `n` messages and returns them by body: (attributes, body).
async fn dead_letters(stack: &Stack, n: usize) -> Vec<(HashMap<String, String>, String)> {
    let found = stack
        .dead_letters_with_attributes(n, Duration::from_secs(90))
        .await;
    assert_eq!(
        found.len(),
        n,
        "DLQ reasons: {:?}",
        found
            .iter()
            .map(|(a, _)| a.get("failure_reason").cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    );
    found
}

/// Whether every character may appear in an SQS message body or String attribute
/// (`#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`): real SQS refuses the
/// others, moto does not check.
fn sqs_safe(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    })
}

/// Checks the attributes the daemon writes on every message it dead-letters.
#[track_caller]
fn assert_attributes(stack: &Stack, attrs: &HashMap<String, String>, reason: &str) {
    assert_eq!(
        attrs.get("failure_reason").map(String::as_str),
        Some(reason),
        "{attrs:?}"
    );
    let detail = attrs.get("failure_detail").expect("failure_detail");
    assert!(
        !detail.is_empty() && detail.chars().count() <= 1024,
        "{detail}"
    );
    assert_eq!(attrs.get("source_queue"), Some(&stack.queues.url));
    for (name, value) in attrs {
        assert!(
            sqs_safe(value),
            "attribute {name} holds characters SQS refuses: {value:?}"
        );
    }
}

/// Puts the good file under a new key and waits until its changes arrive: the daemon is alive.
async fn assert_still_delivers(stack: &Stack, tag: &str) {
    let before = stack.bigpanda.accepted().len();
    stack
        .aws
        .put_object(&stack.bucket, &log_key(tag), good_file())
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(before + GOOD_CHANGES, Duration::from_secs(60))
            .await,
        "the daemon stopped delivering after hostile input: {} of {} changes",
        stack.bigpanda.accepted().len(),
        before + GOOD_CHANGES
    );
}

/// Waits until the queue is empty (every message deleted or moved), or panics.
async fn assert_queue_drains(stack: &Stack) {
    assert_queue_drains_within(stack, Duration::from_secs(60)).await;
}

async fn assert_queue_drains_within(stack: &Stack, timeout: Duration) {
    let started = Instant::now();
    while stack.aws.queue_depth(&stack.queues.url).await > 0 {
        assert!(started.elapsed() < timeout, "messages left in the queue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metrics(ops: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{ops}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of one sample line of the Prometheus page (0 when absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

// ---- memory ------------------------------------------------------------------------------

/// Memory tests run the real binary, so what they measure is the daemon's own memory and not
/// the test process's (where other tests run at the same time), and they run one at a time so
/// that their large objects do not compete for the two cores.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Resets the daemon's peak RSS (Linux `clear_refs` 5) and returns the RSS to measure from.
/// Where the peak cannot be reset, growth measured from the peak so far would be under-reported
/// and a bound on it proves nothing: `None`, after reporting the missing prerequisite of `test`
/// (a failure with `CI` set), and the caller leaves the bound out.
fn peak_baseline_kib(test: &str, daemon: &Binary) -> Option<u64> {
    match daemon.reset_peak_rss() {
        Ok(()) => Some(daemon.status_kib("VmRSS:")),
        Err(e) => {
            let why = format!(
                "cannot reset the daemon's peak RSS (write 5 to /proc/{}/clear_refs: {e}), so the memory bound is not checked",
                daemon.child.id()
            );
            prerequisite::missing(test, &why);
            None
        }
    }
}

/// `N MiB`, or why there is no number.
fn shown(growth: Option<u64>) -> String {
    growth.map_or_else(|| "(not measured)".to_owned(), |g| format!("{g} MiB"))
}

/// The daemon's peak RSS's growth since `baseline` (see [`peak_baseline_kib`]).
fn peak_growth_mib(baseline_kib: Option<u64>, daemon: &Binary) -> Option<u64> {
    baseline_kib.map(|b| daemon.status_kib("VmHWM:").saturating_sub(b) / 1024)
}

// ---- message bodies ----------------------------------------------------------------------

/// A seeded generator (SplitMix64), so a failure names a reproducible body.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Text SQS accepts: printable ASCII with tabs and newlines, or any allowed code point.
    fn text(&mut self, len: usize, unicode: bool) -> String {
        (0..len)
            .map(|_| {
                let n = self.next();
                if unicode {
                    char::from_u32((n % 0x2_FFFF) as u32)
                        .filter(|c| sqs_safe(&c.to_string()))
                        .unwrap_or('?')
                } else {
                    match n % 40 {
                        0 => '\n',
                        1 => '\t',
                        _ => char::from(b' ' + (n % 95) as u8),
                    }
                }
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_message_bodies_are_dead_lettered_as_malformed_envelopes_and_delivery_goes_on() {
    let stack = Stack::new("hostile-bodies", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let mut rng = Rng(0x0bad_cafe);
    let mut bodies: Vec<String> = (0..6)
        .map(|i| {
            let len = 1 + (rng.next() % 3000) as usize;
            rng.text(len, i % 2 == 1)
        })
        .collect();
    let sns = |message: &str| {
        json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
               "Message": message})
        .to_string()
    };
    let key = log_key("never-read");
    bodies.extend([
        "{}".to_owned(),
        "[]".to_owned(),
        "null".to_owned(),
        "42".to_owned(),
        "\"CloudTrail validation message\"".to_owned(),
        r#"{"Records": 5}"#.to_owned(),
        r#"{"Records": []}"#.to_owned(),
        r#"{"Records": [1, "two", null]}"#.to_owned(),
        r#"{"Records": [{"eventName": "ObjectCreated:Put", "s3": "bucket"}]}"#.to_owned(),
        json!({"Records": [{"eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": stack.bucket}, "object": {"key": [key]}}}]})
        .to_string(),
        json!({"Records": [{"eventName": ["ObjectCreated:Put"],
                             "s3": {"bucket": {"name": stack.bucket}, "object": {"key": key}}}]})
        .to_string(),
        json!({"s3Bucket": stack.bucket, "s3ObjectKey": [key, 7]}).to_string(),
        json!({"s3Bucket": ["not", "a", "string"], "s3ObjectKey": key}).to_string(),
        json!({"detail-type": "Object Created", "source": "aws.ec2", "detail": {}}).to_string(),
        sns("not json {"),
        sns("[1, 2, 3]"),
        sns(""),
        sns(&sns("nested")),
        json!({"Type": 5, "Message": "{}"}).to_string(),
        json!({"Type": "Notification", "Message": {"Records": []}}).to_string(),
        "[".repeat(20_000),
        format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)),
        // A CloudTrail log file itself, sent by mistake as a message.
        r#"{"Records":[{"eventVersion":"1.08","eventSource":"iam.amazonaws.com","eventName":"CreateUser","eventID":"x"}]}"#.to_owned(),
        // 200 KiB of JSON-looking junk.
        format!("{{\"Records\": [{}", "{\"a\": [".repeat(200 * 1024 / 7)),
        // Keys in the thousands.
        format!(
            "{{{}}}",
            (0..5_000)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ]);
    for body in &bodies {
        assert!(sqs_safe(body));
        stack.aws.send_message(&stack.queues.url, body).await;
    }

    let dead = dead_letters(&stack, bodies.len()).await;
    let mut by_body: BTreeMap<&str, &HashMap<String, String>> = BTreeMap::new();
    for (attrs, body) in &dead {
        assert_attributes(&stack, attrs, "malformed_envelope");
        by_body.insert(body.as_str(), attrs);
    }
    for body in &bodies {
        let attrs = by_body.get(body.as_str());
        assert!(
            attrs.is_some(),
            "not dead-lettered unchanged: {:.200}",
            body
        );
    }
    // The detail says what was wrong where, e.g. the path inside an SNS envelope.
    let nested = by_body[sns("not json {").as_str()];
    assert!(nested["failure_detail"].contains("Message"), "{nested:?}");
    assert!(
        stack.bigpanda.all().is_empty(),
        "a hostile body made a request"
    );
    assert_still_delivers(&stack, "after-bodies").await;
    assert_queue_drains(&stack).await;
    daemon.stop().await;
}

/// Sends one S3 event per bucket name and returns the DLQ messages they became.
async fn unknown_buckets(
    stack: &Stack,
    names: &[String],
) -> Vec<(HashMap<String, String>, String)> {
    let key = log_key("unknown");
    let bodies: Vec<String> = names.iter().map(|b| s3_event(b, &key)).collect();
    for body in &bodies {
        stack.aws.send_message(&stack.queues.url, body).await;
    }
    let dead = dead_letters(stack, bodies.len()).await;
    let sent: std::collections::BTreeSet<&str> = bodies.iter().map(String::as_str).collect();
    for (_, body) in &dead {
        assert!(
            sent.contains(body.as_str()),
            "an unexpected DLQ body: {body:.200}"
        );
    }
    dead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_for_buckets_nobody_subscribed_are_dead_lettered_as_unknown_bucket() {
    let stack = Stack::new("hostile-buckets", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    // A subscribed object first, so the mixed message below has something to deliver.
    let good = log_key("mixed");
    stack
        .aws
        .put_object(&stack.bucket, &good, good_file())
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(GOOD_CHANGES, Duration::from_secs(60))
            .await
    );
    let key = log_key("unknown");
    // Real notifications from an unsubscribed bucket, through S3 itself (moto does not enforce
    // the queue policy this re-points, so the subscribed bucket keeps notifying too).
    let stranger = "stranger-trail-bucket";
    stack.aws.create_bucket(stranger).await;
    stack
        .aws
        .notify_bucket_to_queue_directly(stranger, &stack.queues.url)
        .await;
    stack.aws.put_object(stranger, &key, good_file()).await;
    // Forged ones for other unknown buckets, the other envelopes, and a message naming a
    // subscribed object then an unknown bucket (the first is delivered, then the message is
    // poison as a whole).
    let names: Vec<String> = vec![
        stranger.into(),
        "nobody-subscribed-this".into(),
        "a.b.c".into(),
        format!("{}-x", "z".repeat(61)),
        format!("{}-2", stack.bucket),
        "ct-unknown-bucket".into(),
        "eb-unknown-bucket".into(),
        "mixed-unknown".into(),
    ];
    let mut mixed: Value = serde_json::from_str(&s3_event(&stack.bucket, &good)).expect("json");
    // Its made-up eTag would not match the object, which then reads as replaced and skipped.
    if let Some(object) = mixed["Records"][0]["s3"]["object"].as_object_mut() {
        object.remove("eTag");
    }
    let unknown: Value = serde_json::from_str(&s3_event("mixed-unknown", &key)).expect("json");
    let second = unknown["Records"][0].clone();
    mixed["Records"]
        .as_array_mut()
        .expect("records")
        .push(second);
    let mut bodies: Vec<String> = names[1..5].iter().map(|b| s3_event(b, &key)).collect();
    bodies.extend([
        json!({"s3Bucket": "ct-unknown-bucket", "s3ObjectKey": [key]}).to_string(),
        json!({"detail-type": "Object Created", "source": "aws.s3",
               "detail": {"bucket": {"name": "eb-unknown-bucket"}, "object": {"key": key}}})
        .to_string(),
        mixed.to_string(),
    ]);
    for body in &bodies {
        stack.aws.send_message(&stack.queues.url, body).await;
    }
    let dead = dead_letters(&stack, names.len()).await;
    for (attrs, _) in &dead {
        assert_attributes(&stack, attrs, "unknown_bucket");
    }
    for name in &names {
        assert!(
            dead.iter()
                .any(|(a, _)| a["failure_detail"].contains(&format!("bucket {name} "))),
            "no DLQ detail names {name}"
        );
    }
    assert_eq!(
        stack.bigpanda.accepted().len(),
        2 * GOOD_CHANGES,
        "the mixed message delivered its subscribed object, nothing else arrived"
    );
    assert_still_delivers(&stack, "after-buckets").await;
    assert_queue_drains(&stack).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_naming_impossible_bucket_names_are_dead_lettered_and_delivery_goes_on() {
    let stack = Stack::new("hostile-names", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let names: Vec<String> = vec![
        "b".repeat(2048),
        "../../etc".into(),
        "bücket-ünïcode".into(),
        stack.bucket.to_uppercase(),
        format!("{} ", stack.bucket),
        format!("{}/../{}", stack.bucket, stack.bucket),
        "x".into(),
    ];
    let dead = unknown_buckets(&stack, &names).await;
    for (attrs, _) in &dead {
        // No subscription can have such a name: refusing it as a malformed envelope is as
        // right as not finding it.
        let reason = attrs.get("failure_reason").map(String::as_str);
        let reason = match reason {
            Some("malformed_envelope") => "malformed_envelope",
            _ => "unknown_bucket",
        };
        assert_attributes(&stack, attrs, reason);
    }
    assert!(
        stack.bigpanda.all().is_empty(),
        "a look-alike name reached the subscribed bucket"
    );
    assert_still_delivers(&stack, "after-names").await;
    assert_queue_drains(&stack).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_names_with_control_characters_are_dead_lettered_with_a_detail_sqs_accepts() {
    let stack = Stack::new("hostile-ctl", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let names: Vec<String> = vec![
        "evil\u{0}bucket".into(),
        "ctl\u{1}\u{1b}[31m\u{7f}".into(),
        "line\nbreak\rreturn".into(),
        "\u{FFFF}\u{FFFE}".into(),
        "\u{8}\u{b}\u{c}".into(),
    ];
    let dead = unknown_buckets(&stack, &names).await;
    for (attrs, _) in &dead {
        let reason = match attrs.get("failure_reason").map(String::as_str) {
            Some("malformed_envelope") => "malformed_envelope",
            _ => "unknown_bucket",
        };
        assert_attributes(&stack, attrs, reason);
    }
    assert_still_delivers(&stack, "after-control-characters").await;
    assert_queue_drains(&stack).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_dot_segments_control_characters_or_over_1024_bytes_are_skipped_never_fetched() {
    let stack = Stack::new("hostile-keys", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let skipped_before = sample(
        &metrics(daemon.ops).await,
        "ctc_messages_skipped_total{reason=\"not_cloudtrail\"}",
    );
    // Real objects holding a good file under keys the daemon must refuse: had it read any of
    // them, its changes would reach BigPanda.
    let prefix = format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2023/07/10");
    let long = |len: usize| {
        let tail = log_key("long");
        format!("{}/{tail}", "p".repeat(len - tail.len() - 1))
    };
    let refused = [
        format!("{prefix}/../../../../../../etc/passwd.json.gz"),
        format!("{}/../{}", "AWSLogs", &log_key("dots")["AWSLogs/".len()..]),
        format!("{prefix}/..\\..\\x.json.gz/../y.json.gz"),
        format!("tab\tprefix/{}", log_key("tab")),
        format!("esc\u{1b}[2Jprefix/{}", log_key("esc")),
        long(1025),
        long(2048),
    ];
    for key in &refused {
        stack.aws.put_object(&stack.bucket, key, good_file()).await;
    }
    // Keys only a forged notification can carry (%00, encoded dot segments), naming nothing.
    let forged = [
        format!("{}%00.json.gz", log_key("nul")),
        format!(
            "AWSLogs%2F%2E%2E%2F{ACCOUNT}%2FCloudTrail%2Fus-east-1%2F2023%2F07%2F10%2Fx.json.gz"
        ),
        format!("{prefix}/%2E%2E/10/x.json.gz"),
        format!("{prefix}/x%0A.json.gz"),
    ];
    for key in &forged {
        stack
            .aws
            .send_message(&stack.queues.url, &s3_event(&stack.bucket, key))
            .await;
    }
    // A well-formed key naming no object is poison: object_not_found.
    let missing = log_key("missing");
    stack
        .aws
        .send_message(&stack.queues.url, &s3_event(&stack.bucket, &missing))
        .await;
    // The longest key S3 allows, 1024 bytes, is read and delivered.
    stack
        .aws
        .put_object(&stack.bucket, &long(1024), good_file())
        .await;

    let dead = dead_letters(&stack, 1).await;
    assert_attributes(&stack, &dead[0].0, "object_not_found");
    assert!(
        dead[0].0["failure_detail"].contains(&missing),
        "{:?}",
        dead[0].0
    );
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(GOOD_CHANGES, Duration::from_secs(60))
            .await
    );
    assert_queue_drains(&stack).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stack.bigpanda.all().len(),
        GOOD_CHANGES,
        "only the 1024-byte key was delivered"
    );
    let skipped = sample(
        &metrics(daemon.ops).await,
        "ctc_messages_skipped_total{reason=\"not_cloudtrail\"}",
    ) - skipped_before;
    assert!(
        skipped >= (refused.len() + forged.len()) as f64,
        "{skipped} skips counted"
    );
    // Only the missing object's message is in the DLQ (received above, so in flight).
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 1);
    assert_still_delivers(&stack, "after-keys").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_that_are_not_gzip_or_are_broken_are_dead_lettered_as_corrupt_after_their_good_records(
) {
    let stack = Stack::new("hostile-objects", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let good = good_file();
    let json_of_good = {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&good[..]), &mut out)
            .expect("the good file inflates");
        out
    };
    let mut rng = Rng(0x000b_1ec7);
    let random: Vec<u8> = (0..4096).map(|_| rng.next() as u8 | 0x80).collect();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0x55;
    let bad_utf8 = b"{\"Records\":[{\"eventID\":\"u\",\"eventName\":\"Create\xff\xfe\"}]}".to_vec();
    let corrupt: Vec<(&str, Vec<u8>)> = vec![
        ("random", random),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped", flipped),
        ("bad-crc", bad_crc),
        ("gzip-header-only", good[..10].to_vec()),
        ("zip", b"PK\x03\x04\x14\x00\x00\x00".to_vec()),
        ("array", gzip(b"[1, 2, 3]")),
        ("records-number", gzip(b"{\"Records\": 5}")),
        ("no-records", gzip(b"{\"Digest\": true}")),
        (
            "trailing-junk",
            gzip(&[&json_of_good[..], b" garbage"].concat()),
        ),
        ("cut-json", gzip(&json_of_good[..json_of_good.len() - 3])),
    ];
    for (name, bytes) in &corrupt {
        stack
            .aws
            .put_object(&stack.bucket, &log_key(name), bytes.clone())
            .await;
    }
    // Readable but holding nothing to send: skipped and deleted, not poison. Invalid UTF-8
    // inside one record costs only that record.
    let odd_only = gzip(b"{\"Records\": [1, \"x\", null, [], {\"eventID\": 5}]}");
    stack
        .aws
        .put_object(&stack.bucket, &log_key("odd-only"), odd_only)
        .await;
    stack
        .aws
        .put_object(&stack.bucket, &log_key("bad-utf8"), gzip(&bad_utf8))
        .await;
    stack
        .aws
        .put_object(&stack.bucket, &log_key("plain-json"), json_of_good.clone())
        .await;

    let dead = dead_letters(&stack, corrupt.len()).await;
    let mut reasons = BTreeMap::new();
    for (attrs, body) in &dead {
        assert_attributes(&stack, attrs, "corrupt_object");
        let name = corrupt
            .iter()
            .map(|(name, _)| *name)
            .find(|name| {
                body.contains(&log_key(name).replace('/', "%2F")) || body.contains(&log_key(name))
            })
            .unwrap_or_else(|| panic!("a DLQ message for no corrupt object: {body:.300}"));
        assert!(
            attrs["failure_detail"].contains(&log_key(name)),
            "{name}: {attrs:?}"
        );
        reasons.insert(name, attrs["failure_detail"].clone());
    }
    assert_eq!(reasons.len(), corrupt.len(), "{reasons:#?}");
    // The plain-JSON copy is delivered whole; the changes of the damaged copies that came
    // before the damage were delivered too (upserts of the same identifiers).
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(GOOD_CHANGES, Duration::from_secs(60))
            .await
    );
    for (name, bytes) in &corrupt {
        if bytes.is_empty() {
            continue;
        }
        let detail = &reasons[name];
        assert!(
            detail.contains("byte") || detail.contains("gzip") || detail.contains("JSON"),
            "{name}: the detail says where or what: {detail}"
        );
    }
    assert_still_delivers(&stack, "after-objects").await;
    assert_queue_drains(&stack).await;
    assert_eq!(
        stack.aws.queue_depth(&stack.queues.dlq_url).await,
        corrupt.len() as u64,
        "nothing but the corrupt objects (received above, so in flight)"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_and_an_oversized_object_are_refused_as_too_large_with_bounded_memory() {
    let _serial = MEMORY.lock().await;
    let stack = Stack::new("hostile-bomb", 5, None).await;
    let limit = 64 << 20;
    let daemon = Binary::start(
        &stack,
        "daemon",
        &[
            ("CTC__RECORDS__MAX_DECOMPRESSED_BYTES", &limit.to_string()),
            ("CTC__RECORDS__MAX_OBJECT_BYTES", &(4 << 20).to_string()),
        ],
    )
    .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    // 1 GiB of whitespace inside `Records` from about 1 MB stored: the reader holds none of it,
    // so only the decompressed limit stops it.
    let spaces = gzip_members(b"{\"Records\":[", &vec![b' '; 1 << 20], 1024, b"]}");
    // 1 GiB of one string: the record limit (4 MiB) stops it first.
    let string = gzip_members(
        b"{\"Records\":[{\"eventID\":\"",
        &vec![b'a'; 1 << 20],
        1024,
        b"\"}]}",
    );
    // Random bytes compress to nothing: 5 MiB stored is over the 4 MiB object limit.
    let mut rng = Rng(0x000b_1a57);
    let big: Vec<u8> = (0..5 << 20).map(|_| rng.next() as u8).collect();
    assert!(
        spaces.len() < 2 << 20 && string.len() < 2 << 20,
        "small on disk: {} and {} bytes",
        spaces.len(),
        string.len()
    );
    let baseline = peak_baseline_kib(
        "a_gzip_bomb_and_an_oversized_object_are_refused_as_too_large_with_bounded_memory",
        &daemon,
    );
    let started = Instant::now();
    for (name, bytes) in [
        ("bomb-spaces", spaces),
        ("bomb-string", string),
        ("big", big),
    ] {
        stack
            .aws
            .put_object(&stack.bucket, &log_key(name), bytes)
            .await;
    }

    let dead = dead_letters(&stack, 3).await;
    let growth = peak_growth_mib(baseline, &daemon);
    let details: Vec<&str> = dead
        .iter()
        .map(|(attrs, _)| {
            assert_attributes(&stack, attrs, "object_too_large");
            attrs["failure_detail"].as_str()
        })
        .collect();
    for (name, setting) in [
        ("bomb-spaces", "records.max_decompressed_bytes"),
        ("bomb-string", "records.max_record_bytes"),
    ] {
        assert!(
            details
                .iter()
                .any(|d| d.contains(&log_key(name)) && d.contains(setting)),
            "{name} refused for {setting}: {details:#?}"
        );
    }
    assert!(
        details
            .iter()
            .any(|d| d.contains(&log_key("big")) && d.contains(&(4 << 20).to_string())),
        "{details:#?}"
    );
    eprintln!(
        "gzip bombs (2 x 1 GiB decompressed) and a 5 MiB object: peak RSS grew {} in {:?}",
        shown(growth),
        started.elapsed()
    );
    // Holding the decompressed document up to its limit would take 64 MiB.
    if let Some(growth) = growth {
        assert!(growth < 32, "peak RSS grew {growth} MiB");
    }
    assert!(stack.bigpanda.all().is_empty());
    assert_still_delivers(&stack, "after-bomb").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_record_is_refused_as_too_large_after_the_records_before_it_with_bounded_memory() {
    let _serial = MEMORY.lock().await;
    let stack = Stack::new("hostile-record", 5, None).await;
    // The default limits: max_record_bytes is 4 MiB.
    let daemon = Binary::start(&stack, "daemon", &[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let before = r#"{"eventVersion":"1.08","eventID":"before-the-giant","eventTime":"2024-03-01T10:20:30Z","eventName":"CreateUser","eventSource":"iam.amazonaws.com","awsRegion":"us-east-1","userIdentity":{"type":"IAMUser","userName":"bob"}}"#;
    let head = format!(
        r#"{{"Records":[{before},{{"eventID":"giant","eventTime":"2024-03-01T10:20:31Z","eventName":"PutThing","requestParameters":{{"blob":""#
    );
    let object = gzip_members(head.as_bytes(), &vec![b'x'; 1 << 20], 100, b"\"}}]}");
    assert!(object.len() < 1 << 20, "{} bytes stored", object.len());
    let baseline = peak_baseline_kib(
        "a_100_mb_record_is_refused_as_too_large_after_the_records_before_it_with_bounded_memory",
        &daemon,
    );
    let key = log_key("giant-record");
    stack.aws.put_object(&stack.bucket, &key, object).await;

    let dead = dead_letters(&stack, 1).await;
    let growth = peak_growth_mib(baseline, &daemon);
    let (attrs, _) = &dead[0];
    assert_attributes(&stack, attrs, "object_too_large");
    let detail = &attrs["failure_detail"];
    assert!(detail.contains(&key), "{detail}");
    assert!(
        detail.contains("record 1") && detail.contains("records.max_record_bytes"),
        "{detail}"
    );
    let sent: Vec<String> = stack
        .bigpanda
        .accepted()
        .iter()
        .filter_map(|r| r.identifier().map(str::to_owned))
        .collect();
    assert_eq!(
        sent,
        ["before-the-giant"],
        "the record before the giant is delivered"
    );
    eprintln!("a 100 MiB record: peak RSS grew {}", shown(growth));
    // Holding the record would take 100 MiB.
    if let Some(growth) = growth {
        assert!(growth < 50, "peak RSS grew {growth} MiB");
    }
    assert_still_delivers(&stack, "after-giant").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_records_in_a_real_object_are_delivered_as_the_pipeline_maps_them_deep_nesting_included(
) {
    let stack = Stack::new("hostile-records", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let record = |id: &str, extra: &str| {
        format!(
            r#"{{"eventVersion":"1.08","eventID":"{id}","eventTime":"2024-03-01T10:20:30Z","eventName":"CreateUser","eventSource":"iam.amazonaws.com","awsRegion":"us-east-1","userIdentity":{{"type":"IAMUser","userName":"bob"}}{extra}}}"#
        )
    };
    let deep = 100_000;
    let records = [
        record(
            "deep-arrays",
            &format!(
                r#","requestParameters":{{"d":{}{}}}"#,
                "[".repeat(deep),
                "]".repeat(deep)
            ),
        ),
        record(
            "deep-objects",
            &format!(
                r#","resources":[{}1{}]"#,
                "{\"a\":".repeat(deep),
                "}".repeat(deep)
            ),
        ),
        record(
            "deep-identity",
            &format!(
                r#","userIdentity":{}{}"#,
                "[".repeat(deep),
                "]".repeat(deep)
            ),
        ),
        record("leap-second", r#","eventTime":"2024-03-01T23:59:60Z""#),
        record("offset", r#","eventTime":"2024-03-01t12:20:30.5+02:00""#),
        record("bad-time", r#","eventTime":"2024-03-01T10:20:30+0200""#),
        record("number-time", r#","eventTime":1709288430"#),
        record(
            "dup",
            r#","eventName":"DeleteUser","requestParameters":{"a":1,"a":2}"#,
        ),
        record(
            "huge-numbers",
            r#","requestParameters":{"n":1e400,"m":123456789012345678901234567890}"#,
        ),
        record(
            "odd-types",
            r#","userIdentity":"root","requestParameters":[1],"resources":{"ARN":"x"},"awsRegion":5"#,
        ),
        "7".to_owned(),
        "[[[]]]".to_owned(),
        record("last", ""),
    ];
    let json = format!(r#"{{"Records":[{}]}}"#, records.join(","));
    let key = log_key("odd-records");
    // What the pipeline makes of it, outside the daemon.
    let settings = stack.settings(&[]);
    let pipeline = cloudtrail_changes::core::pipeline::Pipeline {
        policy: &settings.policy,
        normalize: settings.normalize,
        max_record_bytes: settings.records.max_record_bytes,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    let mut expected = BTreeMap::new();
    let mut tally = cloudtrail_changes::core::pipeline::Tally::default();
    let origin = cloudtrail_changes::core::normalize::Origin {
        bucket: Some(&stack.bucket),
        key: &key,
    };
    let ran = pipeline.run(
        json.as_bytes(),
        origin,
        &mut cloudtrail_changes::core::filter::Dedup::default(),
        &mut tally,
        |outcome| {
            if let cloudtrail_changes::core::pipeline::Outcome::Change(c) = outcome {
                let value = serde_json::to_value(&c).expect("a change serializes");
                expected.insert(c.identifier.clone(), value);
            }
            Ok::<(), std::io::Error>(())
        },
    );
    assert!(ran.is_ok(), "{ran:?}");
    let ids: Vec<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "deep-arrays",
            "deep-identity",
            "deep-objects",
            "dup",
            "huge-numbers",
            "last",
            "leap-second",
            "odd-types",
            "offset"
        ]
    );
    assert_eq!(expected["leap-second"]["start"], 1_709_337_600);
    assert_eq!(expected["offset"]["start"], 1_709_288_430);
    stack
        .aws
        .put_object(&stack.bucket, &key, gzip(json.as_bytes()))
        .await;

    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(60))
            .await
    );
    let got: BTreeMap<String, Value> = stack
        .bigpanda
        .accepted()
        .into_iter()
        .map(|r| (r.identifier().unwrap_or_default().to_owned(), r.body))
        .collect();
    assert_eq!(got, expected);
    assert_queue_drains(&stack).await;
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
    assert_eq!(
        stack.bigpanda.all().len(),
        expected.len(),
        "each change sent once"
    );
    assert_still_delivers(&stack, "after-odd-records").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_notifications_naming_long_unknown_buckets_does_not_accumulate_in_memory() {
    let _serial = MEMORY.lock().await;
    let stack = Stack::new("hostile-flood", 5, None).await;
    // Few messages at a time: what is in flight is small next to what could be kept.
    let daemon = Binary::start(
        &stack,
        "daemon",
        &[("CTC__WORKER__MAX_INFLIGHT_MESSAGES", "4")],
    )
    .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    // S3 bucket names are at most 63 characters; a forged notification can name anything.
    let (n, size) = (1000usize, 100 * 1024);
    let named_mib = (n * size) >> 20;
    let key = log_key("flood");
    let before = daemon.status_kib("VmRSS:");
    // Each body names the bucket twice (name and ARN): four fit in one 1 MiB batch.
    for batch in 0..n / 4 {
        let entries: Vec<_> = (0..4)
            .map(|i| {
                let bucket = format!("{:05}{}", batch * 4 + i, "b".repeat(size));
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(s3_event(&bucket, &key))
                    .build()
                    .expect("an entry")
            })
            .collect();
        stack
            .aws
            .sqs
            .send_message_batch()
            .queue_url(&stack.queues.url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("SendMessageBatch");
    }
    let started = Instant::now();
    while stack.aws.queue_depth(&stack.queues.dlq_url).await < n as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "not all dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_queue_drains(&stack).await;
    let grown = daemon.status_kib("VmRSS:").saturating_sub(before) / 1024;
    eprintln!(
        "{n} notifications naming distinct unknown buckets ({named_mib} MiB of names): RSS grew {grown} MiB in {:?}",
        started.elapsed()
    );
    assert!(
        grown < named_mib as u64 / 2,
        "RSS grew {grown} MiB: the names are kept"
    );
    assert_still_delivers(&stack, "after-flood").await;
    daemon.stop().await;
}

/// Stated bound for 32 large objects in flight at once: at most 6 MiB of peak RSS per object
/// (its spool when under `worker.spool_memory_bytes`, the parse buffer, the decompressing
/// thread's chunks and the changes queued for forwarding), whatever the objects' size.
const MIB_PER_OBJECT_IN_FLIGHT: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_large_objects_in_flight_at_once_stay_within_the_stated_memory_bound() {
    const OBJECTS: usize = 32;
    // 8 MiB of JSON each by default (a debug build parses about 5 MB/s); by hand, e.g.
    // `CTC_TEST_LARGE_OBJECT_MIB=64 cargo test --release --test service thirty_two`.
    let mib_per_object: usize = std::env::var("CTC_TEST_LARGE_OBJECT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let _serial = MEMORY.lock().await;
    let stack = Stack::new("hostile-large", 5, None).await;
    let daemon = Binary::start(
        &stack,
        "daemon",
        &[
            ("CTC__WORKER__MAX_INFLIGHT_MESSAGES", "32"),
            ("CTC__WORKER__MAX_INFLIGHT_PER_SUBSCRIPTION", "32"),
            ("CTC__BIGPANDA__MAX_CONCURRENCY_PER_KEY", "32"),
            ("CTC__BIGPANDA__REQUEST_TIMEOUT_SECONDS", "300"),
            ("CTC__WORKER__CHANGE_RETRY_SECONDS", "600"),
        ],
    )
    .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    // Each object: one change first, then `mib_per_object` MiB of read-only records (dropped by
    // the filter). Its change is held until every object's change has arrived, so all the
    // objects are in flight at once however slowly a loaded machine puts them, while their
    // parsers stream the rest: by default 32 x 8 MiB = 256 MiB of JSON in flight at once.
    let gate = CancellationToken::new();
    stack.bigpanda.push_script(
        std::iter::repeat_n(
            Reply::Held(gate.clone(), Duration::from_secs(280), 204),
            OBJECTS,
        )
        .collect(),
    );
    let read = r#"{"eventVersion":"1.08","eventID":"0b1f6d6e-read","eventTime":"2023-07-10T12:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","readOnly":true,"awsRegion":"us-east-1","userIdentity":{"type":"IAMUser","userName":"bob"},"requestParameters":{"maxResults":1000,"filterSet":{"items":[{"name":"instance-state-name","valueSet":{"items":[{"value":"running"}]}}]}}},"#;
    let unit = read.repeat((1 << 20) / read.len());
    let objects: Vec<(String, Vec<u8>, String)> = (0..OBJECTS)
        .map(|i| {
            let id = format!("large-object-change-{i:02}");
            let head = format!(
                r#"{{"Records":[{{"eventVersion":"1.08","eventID":"{id}","eventTime":"2023-07-10T12:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"AuthorizeSecurityGroupIngress","awsRegion":"us-east-1","userIdentity":{{"type":"IAMUser","userName":"bob"}},"requestParameters":{{"groupId":"sg-{i}"}}}},"#
            );
            let tail = read.trim_end_matches(',').to_owned() + "]}";
            let object =
                gzip_members(head.as_bytes(), unit.as_bytes(), mib_per_object, tail.as_bytes());
            (log_key(&format!("large-{i:02}")), object, id)
        })
        .collect();
    let stored: usize = objects.iter().map(|(_, o, _)| o.len()).sum();

    let baseline = peak_baseline_kib(
        "thirty_two_large_objects_in_flight_at_once_stay_within_the_stated_memory_bound",
        &daemon,
    );
    let started = Instant::now();
    let sample_stop = CancellationToken::new();
    let sampler = {
        let (stop, ops) = (sample_stop.clone(), daemon.ops);
        tokio::spawn(async move {
            let mut max = 0.0_f64;
            while !stop.is_cancelled() {
                if let Ok(page) = reqwest::get(format!("http://{ops}/metrics")).await {
                    if let Ok(text) = page.text().await {
                        max = max.max(sample(&text, "ctc_messages_in_flight"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            max
        })
    };
    for (key, object, _) in &objects {
        stack
            .aws
            .put_object(&stack.bucket, key, object.clone())
            .await;
    }
    // Requests are recorded on arrival, before their held answer.
    let arrived = stack
        .bigpanda
        .wait_for_accepted(OBJECTS, Duration::from_secs(240))
        .await;
    gate.cancel();
    assert!(
        arrived,
        "{} of {OBJECTS} changes arrived: {}",
        stack.bigpanda.all().len(),
        std::fs::read_to_string(&daemon.log).unwrap_or_default()
    );
    // Then every parser streams to its object's end and every message is deleted.
    assert_queue_drains_within(&stack, Duration::from_secs(600)).await;
    sample_stop.cancel();
    let max_in_flight = sampler.await.expect("sampler");
    let growth = peak_growth_mib(baseline, &daemon);
    let mut sent: Vec<String> = stack
        .bigpanda
        .accepted()
        .iter()
        .filter_map(|r| r.identifier().map(str::to_owned))
        .collect();
    sent.sort();
    // At least once: on a loaded machine a message whose visibility lapsed is delivered
    // twice (seen once: one identifier twice). Every change, each at least once.
    sent.dedup();
    let mut expected: Vec<String> = objects.iter().map(|(_, _, id)| id.clone()).collect();
    expected.sort();
    assert_eq!(sent, expected);
    let page = metrics(daemon.ops).await;
    let dropped = sample(&page, r#"ctc_records_dropped_total{reason="read_only"}"#);
    eprintln!(
        "{OBJECTS} objects of {mib_per_object} MiB of JSON ({} MiB stored), at most {max_in_flight} \
         in flight at once, {dropped} read-only records dropped: peak RSS grew {} in {:?}",
        stored >> 20,
        shown(growth),
        started.elapsed()
    );
    assert_eq!(
        max_in_flight, OBJECTS as f64,
        "all objects in flight at once"
    );
    let bound = MIB_PER_OBJECT_IN_FLIGHT * OBJECTS as u64;
    if let Some(growth) = growth {
        assert!(
            growth < bound,
            "peak RSS grew {growth} MiB (bound {bound} MiB)"
        );
    }
    daemon.stop().await;
}
