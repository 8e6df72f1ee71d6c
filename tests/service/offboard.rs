//! Offboarding end to end: after `DELETE /v1/subscriptions`, the bucket's late notifications
//! (the customer forgot its event notification) are acknowledged as `unsubscribed`, not
//! forwarded and not dead-lettered; its checkpoints are gone; `subscriptions list` shows it
//! under the recently removed buckets still sending notifications.

use crate::support::stack::Stack;
use cloudtrail_changes::subscriptions::sqlite::SqliteStore;
use cloudtrail_changes::subscriptions::{Checkpoints, Tombstone, Tombstones};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const API_KEY: &str = "offboard-api-key-0123456789abcdef";
const APP_KEY: &str = "offboard-app-key-0123456789abcdef";
const ROLE: &str = "arn:aws:iam::218007301253:role/BigPandaCloudTrailReader";
/// A real CloudTrail file of 8 changes.
const FILE: &str = "218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json.gz";
const CHANGES: usize = 8;

fn file_bytes() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cloudtrail/invictus-ir_aws_dataset")
        .join(FILE);
    std::fs::read(path).expect("read test file")
}

fn key(n: u32) -> String {
    format!("AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/{n}-{FILE}")
}

async fn subscribe(api: std::net::SocketAddr, bucket: &str) {
    let response = reqwest::Client::new()
        .post(format!("http://{api}/v1/subscriptions"))
        .header("content-type", "application/json")
        .body(
            json!({
                "apiKey": API_KEY, "appKey": APP_KEY, "bucket_name": bucket,
                "bucket_region": "us-east-1", "iam_role_arn": ROLE,
                "iam_role_external_id": "bp-external-id-1",
            })
            .to_string(),
        )
        .send()
        .await
        .expect("POST /v1/subscriptions");
    assert_eq!(
        response.status().as_u16(),
        201,
        "{:?}",
        response.text().await
    );
}

async fn unsubscribe(api: std::net::SocketAddr, bucket: &str) {
    let response = reqwest::Client::new()
        .delete(format!("http://{api}/v1/subscriptions"))
        .header("content-type", "application/json")
        .body(json!({"apiKey": API_KEY, "bucket_name": bucket}).to_string())
        .send()
        .await
        .expect("DELETE /v1/subscriptions");
    assert_eq!(
        response.status().as_u16(),
        204,
        "{:?}",
        response.text().await
    );
}

/// An S3 event notification naming one object in each of `objects`' buckets.
fn s3_event(objects: &[(&str, &str)]) -> String {
    let records: Vec<_> = objects
        .iter()
        .map(|(bucket, key)| {
            json!({"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                   "eventTime": "2023-07-10T12:20:00.000Z", "eventName": "ObjectCreated:Put",
                   "s3": {"s3SchemaVersion": "1.0", "configurationId": "ct",
                          "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                          "object": {"key": key, "size": 1, "sequencer": "0A"}}})
        })
        .collect();
    json!({ "Records": records }).to_string()
}

/// Polls the store until the bucket's tombstone has counted `n` late notifications.
async fn wait_for_late(store: &SqliteStore, bucket: &str, n: u64) -> Option<Tombstone> {
    let started = Instant::now();
    loop {
        let tombstone = store.is_tombstoned(bucket).await.expect("read tombstone");
        if tombstone.is_some_and(|t| t.late_notifications >= n)
            || started.elapsed() > Duration::from_secs(30)
        {
            return tombstone;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `subscriptions list`, run by the binary with the stack's settings.
async fn list(stack: &Stack) -> String {
    let mut command = crate::support::binary::command(&["subscriptions", "list"], stack.env(&[]));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task")
        .expect("the binary runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn from_bucket(stack: &Stack, bucket: &str) -> usize {
    stack
        .bigpanda
        .accepted()
        .iter()
        .filter(|r| r.body["metadata"]["bucket"] == bucket)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_notifications_of_an_unsubscribed_bucket_are_acknowledged_and_listed() {
    let stack = Stack::new("offboard", 5, None).await;
    let gone = stack.bucket.clone();
    // A second subscribed bucket, without a notification of its own: messages are sent by hand.
    let kept = "offboard-kept";
    stack.aws.create_bucket(kept).await;
    stack.aws.put_object(kept, &key(1), file_bytes()).await;
    let daemon = stack.start(&[]).await;
    subscribe(daemon.api, &gone).await;
    subscribe(daemon.api, kept).await;
    let store = SqliteStore::open(&stack.dir.join("subscriptions.db")).expect("open the store");

    // Subscribed: delivered.
    stack.aws.put_object(&gone, &key(1), file_bytes()).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(CHANGES, Duration::from_secs(30))
            .await
    );
    // A checkpoint of the bucket, as a message interrupted mid-object would leave.
    let checkpoint = format!("{gone}/{}#abc", key(9));
    store
        .save_checkpoint(&checkpoint, 3, 3600)
        .await
        .expect("save checkpoint");

    unsubscribe(daemon.api, &gone).await;
    assert_eq!(store.checkpoint(&checkpoint).await.expect("read"), None);
    let tombstone = store.is_tombstoned(&gone).await.expect("read");
    assert_eq!(
        tombstone.map(|t| (t.last_seen, t.late_notifications)),
        Some((None, 0))
    );

    // The customer forgot the bucket's notification: the next object is acknowledged.
    let sent_before = stack.bigpanda.all().len();
    stack.aws.put_object(&gone, &key(2), file_bytes()).await;
    let tombstone = wait_for_late(&store, &gone, 1).await.expect("tombstone");
    assert_eq!(tombstone.late_notifications, 1);
    assert!(tombstone
        .last_seen
        .is_some_and(|t| t >= tombstone.removed_at));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
    assert_eq!(stack.bigpanda.all().len(), sent_before, "nothing forwarded");

    let listed = list(&stack).await;
    let (subscribed, removed) = listed
        .split_once("recently removed buckets still sending notifications")
        .unwrap_or_else(|| panic!("no recently removed section: {listed}"));
    assert!(
        subscribed
            .lines()
            .any(|l| l.starts_with(&format!("{kept}\t"))),
        "{listed}"
    );
    assert!(!subscribed.contains(&gone), "{listed}");
    assert!(
        removed.contains("remove the bucket's event notification"),
        "{listed}"
    );
    let line = removed
        .lines()
        .find(|l| l.starts_with(&format!("{gone}\t")))
        .unwrap_or_else(|| panic!("{gone} not listed: {listed}"));
    assert!(line.contains("late_notifications=1"), "{line}");
    assert!(!removed.contains(kept), "{listed}");

    // One message naming objects of both buckets: the subscribed one is delivered, the
    // unsubscribed one skipped, and the message deleted.
    stack
        .aws
        .send_message(
            &stack.queues.url,
            &s3_event(&[(gone.as_str(), key(2).as_str()), (kept, key(1).as_str())]),
        )
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(2 * CHANGES, Duration::from_secs(30))
            .await
    );
    let tombstone = wait_for_late(&store, &gone, 2).await.expect("tombstone");
    assert_eq!(tombstone.late_notifications, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(from_bucket(&stack, kept), CHANGES);
    assert_eq!(
        from_bucket(&stack, &gone),
        CHANGES,
        "only before the DELETE"
    );
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);

    let metrics = reqwest::get(format!("http://{}/metrics", daemon.ops))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.contains("ctc_messages_skipped_total{reason=\"unsubscribed\"}"),
        "{metrics}"
    );

    // Subscribed again: delivered again, and no longer listed as removed.
    subscribe(daemon.api, &gone).await;
    assert_eq!(store.is_tombstoned(&gone).await.expect("read"), None);
    stack.aws.put_object(&gone, &key(3), file_bytes()).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(3 * CHANGES, Duration::from_secs(30))
            .await
    );
    assert!(!list(&stack).await.contains("recently removed"));
    daemon.stop().await;
}
