//! The daemon against real servers: moto for AWS, an HTTP stand-in for BigPanda, a
//! fault-injecting proxy between them when a test needs a bad day. Needs
//! `scripts/moto.sh install` first.
//!
//! These first tests check the harness itself, each against an outcome that would differ if
//! the harness were broken (a missing notification, a message that never reaches the DLQ, a
//! script that is not replayed, a fault that is not injected).

mod api;
mod daemon;
mod dlq;
mod fleet;
mod hostile;
mod metrics;
mod nodrops;
mod offboard;
mod outage;
mod preflight;
mod requeue;
mod security;
mod support;
mod tenancy;
mod worker;

use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use support::aws::{self, bucket_and_key, s3_records, Aws, SnsDelivery};
use support::bigpanda::{BigPanda, Reply};
use support::moto::Moto;
use support::proxy::{Fault, Match, Proxy};

const KEY: &str =
    "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/123456789012_CloudTrail_us-east-1_20240501T0000Z_abc.json.gz";

/// The (bucket, key) pairs of every S3 event record in these messages; test events have none.
fn objects(messages: &[aws_sdk_sqs::types::Message]) -> Vec<(String, String)> {
    messages
        .iter()
        .flat_map(|m| s3_records(m.body().unwrap_or_default()))
        .map(|record| bucket_and_key(&record))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_starts_and_a_reset_clears_its_state() {
    let moto = Moto::start();
    let aws = Aws::new(&moto.endpoint()).await;
    aws.create_bucket("before-reset").await;
    let buckets = aws.s3.list_buckets().send().await.expect("ListBuckets");
    assert_eq!(buckets.buckets().len(), 1);

    moto.reset();

    let buckets = aws.s3.list_buckets().send().await.expect("ListBuckets");
    assert!(buckets.buckets().is_empty(), "{buckets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_object_reaches_the_queue_through_sns() {
    let moto = Moto::start();
    let aws = Aws::new(&moto.endpoint()).await;
    aws.create_bucket("trail-bucket").await;
    let queues = aws.create_queue_with_dlq("changes", 5, 30).await;
    aws.subscribe_bucket_via_sns("trail-bucket", &queues.url, SnsDelivery::Envelope)
        .await;

    aws.put_object("trail-bucket", KEY, b"not really gzip".to_vec())
        .await;

    let messages = aws
        .receive_all(&queues.url, 2, Duration::from_secs(5))
        .await;
    let bodies: Vec<&str> = messages.iter().filter_map(|m| m.body()).collect();
    assert!(
        bodies
            .iter()
            .all(|b| b.contains("\"Type\": \"Notification\"")
                || b.contains("\"Type\":\"Notification\"")),
        "every message is in an SNS envelope: {bodies:?}"
    );
    assert!(
        bodies.iter().any(|b| b.contains("s3:TestEvent")),
        "the notification configuration's test event arrives too: {bodies:?}"
    );
    assert_eq!(
        objects(&messages),
        vec![("trail-bucket".to_string(), KEY.to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_object_reaches_the_queue_directly_and_through_raw_sns() {
    let moto = Moto::start();
    let aws = Aws::new(&moto.endpoint()).await;
    aws.create_bucket("direct-bucket").await;
    aws.create_bucket("raw-bucket").await;
    let (direct, _) = aws.create_queue("direct").await;
    let (raw, _) = aws.create_queue("raw").await;
    aws.notify_bucket_to_queue_directly("direct-bucket", &direct)
        .await;
    aws.subscribe_bucket_via_sns("raw-bucket", &raw, SnsDelivery::Raw)
        .await;

    aws.put_object("direct-bucket", "a b/c.json.gz", b"x".to_vec())
        .await;
    aws.put_object("raw-bucket", KEY, b"x".to_vec()).await;

    let direct = aws.receive_all(&direct, 2, Duration::from_secs(5)).await;
    let raw = aws.receive_all(&raw, 2, Duration::from_secs(5)).await;
    assert_eq!(
        objects(&direct),
        vec![("direct-bucket".to_string(), "a b/c.json.gz".to_string())]
    );
    assert_eq!(
        objects(&raw),
        vec![("raw-bucket".to_string(), KEY.to_string())]
    );
    assert!(
        raw.iter()
            .all(|m| !m.body().unwrap_or_default().contains("\"TopicArn\"")),
        "raw delivery has no SNS envelope"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_moves_to_the_dlq_after_max_receive_count_receives() {
    let moto = Moto::start();
    let aws = Aws::new(&moto.endpoint()).await;
    let queues = aws.create_queue_with_dlq("poison", 2, 30).await;
    aws.send_message(&queues.url, "{\"not\": \"an event\"}")
        .await;

    // Each receive makes the message visible again at once, as a failed attempt would later.
    for attempt in 1..=2 {
        let got = aws.receive(&queues.url, 1, Some(0)).await;
        assert_eq!(got.len(), 1, "receive {attempt} gets the message");
    }
    let third = aws.receive(&queues.url, 1, Some(0)).await;

    assert!(
        third.is_empty(),
        "the third receive finds it gone: {third:?}"
    );
    let dead = aws.receive(&queues.dlq_url, 1, None).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("{\"not\": \"an event\"}"));
    assert_eq!(aws.queue_depth(&queues.url).await, 0);
    assert_eq!(aws.queue_depth(&queues.dlq_url).await, 1);
}

async fn post_change(base_url: &str, api_key: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base_url}/data/changes"))
        .header("authorization", format!("Bearer {api_key}"))
        .header("x-bp-app-key", "app-1")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the stand-in answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bigpanda_stand_in_records_headers_and_body_and_replays_its_script() {
    let bigpanda = BigPanda::start().await;
    bigpanda.push_script(vec![
        Reply::StatusWithRetryAfter(429, 7),
        Reply::Status(201),
    ]);
    let change = r#"{"identifier":"e-1","status":"Done","summary":"RunInstances","start":1,"end":1,"tags":{}}"#;

    let first = post_change(&bigpanda.base_url(), "key-1", change).await;
    let second = post_change(&bigpanda.base_url(), "key-1", change).await;
    let third = post_change(&bigpanda.base_url(), "key-1", change).await;

    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "7");
    assert_eq!(second.status(), 201);
    assert_eq!(
        third.status(),
        204,
        "the default once the script is used up"
    );
    let all = bigpanda.all();
    assert_eq!(
        all.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 201, 204]
    );
    assert!(all.windows(2).all(|w| w[0].received <= w[1].received));
    let accepted = bigpanda.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].authorization.as_deref(), Some("Bearer key-1"));
    assert_eq!(accepted[0].api_key.as_deref(), Some("key-1"));
    assert_eq!(accepted[0].app_key.as_deref(), Some("app-1"));
    assert_eq!(accepted[0].identifier(), Some("e-1"));
    assert_eq!(accepted[0].body["summary"], "RunInstances");
    assert!(bigpanda.wait_for_accepted(2, Duration::ZERO).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bigpanda_stand_in_refuses_bad_requests_and_can_time_out() {
    let bigpanda = BigPanda::start().await;
    bigpanda.reject_api_key("revoked");
    bigpanda.push_script(vec![Reply::Delay(Duration::from_millis(300), 200)]);

    let revoked = post_change(&bigpanda.base_url(), "revoked", r#"{"identifier":"x"}"#).await;
    let no_identifier = post_change(&bigpanda.base_url(), "key", r#"{"summary":"x"}"#).await;
    let started = Instant::now();
    let slow = post_change(&bigpanda.base_url(), "key", r#"{"identifier":"x"}"#).await;

    assert_eq!(revoked.status(), 401);
    assert_eq!(no_identifier.status(), 400);
    assert_eq!(
        slow.status(),
        200,
        "refused requests do not consume the script"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(bigpanda.all().len(), 3);
    assert!(
        !bigpanda
            .wait_for_accepted(2, Duration::from_millis(200))
            .await,
        "only one request was accepted"
    );
    bigpanda.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_injects_a_500_then_passes_through() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint()).await;
    let aws = Aws::new(&proxy.endpoint()).await;
    let once = Aws::from_config(aws::sdk_config_without_retries(&proxy.endpoint()).await);
    aws.create_bucket("flaky").await;
    aws.put_object("flaky", "k.json.gz", b"hello".to_vec())
        .await;
    proxy.inject(
        Match::method_and_path_prefix(axum::http::Method::GET, "/flaky/k.json.gz"),
        1,
        Fault::aws_error(500, "InternalError"),
    );

    let failed = once
        .s3
        .get_object()
        .bucket("flaky")
        .key("k.json.gz")
        .send()
        .await;
    let passed = once
        .s3
        .get_object()
        .bucket("flaky")
        .key("k.json.gz")
        .send()
        .await;

    let error = failed.expect_err("the first GET gets the injected 500");
    assert_eq!(error.code(), Some("InternalError"), "{error:?}");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(500));
    let body = passed
        .expect("the second GET reaches moto")
        .body
        .collect()
        .await;
    assert_eq!(
        body.expect("the object's bytes").into_bytes().as_ref(),
        b"hello"
    );
    assert_eq!(proxy.injected(), 1);
    assert_eq!(proxy.pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_speaks_each_protocol_and_the_sdk_retries_through_it() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint()).await;
    let aws = Aws::new(&proxy.endpoint()).await;
    let once = Aws::from_config(aws::sdk_config_without_retries(&proxy.endpoint()).await);
    let (queue, _) = aws.create_queue("through-proxy").await;
    aws.send_message(&queue, "m").await;
    proxy.inject(
        Match::action("ReceiveMessage"),
        1,
        Fault::aws_error(503, "ServiceUnavailable"),
    );
    proxy.inject(
        Match::action("GetCallerIdentity"),
        1,
        Fault::aws_error(400, "Throttling"),
    );
    proxy.inject(
        Match::action("ReceiveMessage"),
        1,
        Fault::aws_error(500, "InternalError"),
    );
    proxy.inject(
        Match::action("ListQueues"),
        1,
        Fault::Delay(Duration::from_millis(300)),
    );

    let sqs_error = once
        .sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .expect_err("the injected 503");
    let sts_error = once
        .sts
        .get_caller_identity()
        .send()
        .await
        .expect_err("the injected throttling");
    let retried = aws.receive(&queue, 1, None).await;
    let started = Instant::now();
    aws.sqs.list_queues().send().await.expect("ListQueues");
    let delayed = started.elapsed();

    assert_eq!(
        sqs_error.code(),
        Some("ServiceUnavailable"),
        "{sqs_error:?}"
    );
    assert_eq!(sts_error.code(), Some("Throttling"), "{sts_error:?}");
    assert_eq!(retried.len(), 1, "the SDK retried past the 500");
    assert!(delayed >= Duration::from_millis(300), "{delayed:?}");
    let injected: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.injected)
        .map(|l| (l.action.unwrap_or_default(), l.status))
        .collect();
    assert_eq!(
        injected,
        [
            ("ReceiveMessage".to_string(), 503),
            ("GetCallerIdentity".to_string(), 400),
            ("ReceiveMessage".to_string(), 500),
        ]
    );
}
