//! `run` end to end: real CloudTrail files put into a moto bucket reach the BigPanda stand-in
//! through the real notification path, and every failure ends in delivery or in the DLQ with
//! its reason.

use crate::support::aws::SnsDelivery;
use crate::support::bigpanda::{BigPanda, Reply};
use crate::support::stack::{
    cloudtrail_key, expected_changes, manifest, Binary, Stack, ACCOUNT, API_KEY, APP_KEY, FILES,
};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The accepted changes as JSON values, by identifier.
fn accepted_by_id(bigpanda: &BigPanda) -> HashMap<String, Value> {
    bigpanda
        .accepted()
        .into_iter()
        .map(|r| (r.identifier().unwrap_or_default().to_owned(), r.body))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_of_real_files_arrives_exactly_as_process_prints_it() {
    let stack = Stack::new("full", 5, Some(SnsDelivery::Envelope)).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let mut expected = Vec::new();
    for (file, n) in FILES {
        let (_, changes) = stack.put_file(file).await;
        assert_eq!(changes.len(), n, "{file}");
        expected.extend(changes);
    }
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(60))
            .await,
        "only {} of {} changes arrived",
        stack.bigpanda.accepted().len(),
        expected.len()
    );
    let got = accepted_by_id(&stack.bigpanda);
    for change in &expected {
        let id = change["identifier"].as_str().expect("identifier");
        assert_eq!(got.get(id), Some(change), "change {id}");
    }
    let first = &stack.bigpanda.accepted()[0];
    assert_eq!(first.api_key.as_deref(), Some(API_KEY));
    assert_eq!(first.app_key.as_deref(), Some(APP_KEY));
    // Every message was deleted: nothing left in the queue or the DLQ.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
    assert_eq!(
        stack.bigpanda.all().len(),
        expected.len(),
        "no change sent twice"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_s3_and_raw_sns_notifications_are_delivered_too() {
    for (name, delivery) in [("rawsqs", None), ("rawsns", Some(SnsDelivery::Raw))] {
        let stack = Stack::new(name, 5, delivery).await;
        let daemon = stack.start(&[]).await;
        stack.subscribe(daemon.api, &stack.bucket).await;
        let (_, expected) = stack.put_file(FILES[3].0).await;
        assert_eq!(expected.len(), FILES[3].1, "{name}: changes expected");
        assert!(
            stack
                .bigpanda
                .wait_for_accepted(expected.len(), Duration::from_secs(30))
                .await,
            "{name}"
        );
        // Exactly the expected changes, each once, as `process` prints them; let a late
        // duplicate show up before counting.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let got = accepted_by_id(&stack.bigpanda);
        let want: HashMap<String, Value> = expected
            .iter()
            .map(|c| {
                (
                    c["identifier"].as_str().unwrap_or_default().to_owned(),
                    c.clone(),
                )
            })
            .collect();
        assert_eq!(got, want, "{name}");
        assert_eq!(
            stack.bigpanda.all().len(),
            expected.len(),
            "{name}: sent once"
        );
        daemon.stop().await;
    }
}

/// The message bodies of the two other envelope kinds, naming objects already in the bucket.
fn cloudtrail_sns_notification(bucket: &str, keys: &[&str]) -> String {
    let inner = json!({"s3Bucket": bucket, "s3ObjectKey": keys}).to_string();
    json!({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:218007301253:ct",
           "Message": inner, "Timestamp": "2023-07-10T12:20:00.000Z"})
    .to_string()
}

// No eTag: a made-up one would not match the object, which now reads (rightly) as an object
// replaced since its notification and skipped.
fn eventbridge_object_created(bucket: &str, key: &str) -> String {
    json!({"version": "0", "id": "e-1", "detail-type": "Object Created", "source": "aws.s3",
           "account": ACCOUNT, "time": "2023-07-10T12:20:00Z", "region": "us-east-1",
           "resources": [format!("arn:aws:s3:::{bucket}")],
           "detail": {"version": "0", "bucket": {"name": bucket},
                      "object": {"key": key, "size": 1}, "reason": "PutObject"}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_notifications_and_eventbridge_events_naming_several_objects_are_delivered() {
    let stack = Stack::new("kinds", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    // Objects put under a prefix the direct notification ignores would still notify: put them
    // first, let those notifications deliver, then send the other kinds by hand.
    let (k1, e1) = stack.put_file(FILES[2].0).await;
    let (k2, e2) = stack.put_file(FILES[3].0).await;
    let (k3, e3) = stack.put_file(FILES[1].0).await;
    let total = e1.len() + e2.len() + e3.len();
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(total, Duration::from_secs(30))
            .await
    );
    // One CloudTrail notification naming two objects: both are sent again (upserts).
    stack
        .aws
        .send_message(
            &stack.queues.url,
            &cloudtrail_sns_notification(&stack.bucket, &[&k1, &k2]),
        )
        .await;
    let again = total + e1.len() + e2.len();
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(again, Duration::from_secs(30))
            .await
    );
    // An EventBridge event for the third object. Not for one the CloudTrail notification named:
    // while that message's checkpoint is not yet cleared (it is, after the batched delete), a
    // second notification of the same object without an eTag rightly resumes at its end.
    stack
        .aws
        .send_message(
            &stack.queues.url,
            &eventbridge_object_created(&stack.bucket, &k3),
        )
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(again + e3.len(), Duration::from_secs(30))
            .await
    );
    let ids: BTreeSet<String> = accepted_by_id(&stack.bigpanda).into_keys().collect();
    assert_eq!(ids.len(), total);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_429s_slows_delivery_down_but_every_change_arrives() {
    // 300/minute: 5 tokens a second, a burst of 30 (rate / 10), at most 4 requests of a key in
    // flight (the default `bigpanda.max_concurrency_per_key`). 42 changes and 21 429s make 63
    // requests, twice the burst: they cannot all arrive at once unless pacing is broken.
    const RATE_PER_SECOND: f64 = 5.0;
    const BURST: usize = 30;
    const IN_FLIGHT: usize = 4;
    const SCRIPTED_429S: usize = 21;
    let stack = Stack::new("storm", 5, None).await;
    let mut script = vec![Reply::StatusWithRetryAfter(429, 1)];
    script.extend(std::iter::repeat_n(Reply::Status(429), SCRIPTED_429S - 1));
    stack.bigpanda.push_script(script);
    let daemon = stack
        .start(&[
            ("CTC__BIGPANDA__RATE_PER_MINUTE", "300"),
            ("CTC__WORKER__CHANGE_RETRY_SECONDS", "60"),
        ])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(FILES[1].0).await;
    assert_eq!(expected.len(), FILES[1].1);
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(90))
            .await,
        "{} of {}",
        stack.bigpanda.accepted().len(),
        expected.len()
    );
    let accepted = stack.bigpanda.accepted();
    let ids: BTreeSet<_> = accepted.iter().filter_map(|r| r.identifier()).collect();
    let expected_ids: BTreeSet<_> = expected
        .iter()
        .filter_map(|c| c["identifier"].as_str())
        .collect();
    assert_eq!(ids, expected_ids);
    let all = stack.bigpanda.all();
    // Every scripted 429 was served, the first (with `Retry-After: 1`) to the first request.
    let throttled = all.iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, SCRIPTED_429S, "429s served");
    assert_eq!(all[0].status, 429, "the first request got the Retry-After");
    // The pause was honoured: within the second after it, only requests already in flight
    // (the other slots, and one that took a freed slot just before the pause was recorded)
    // may arrive; without the pause the burst would send about 30.
    let paused_at = all[0].received;
    let during_pause = all[1..]
        .iter()
        .filter(|r| r.received.duration_since(paused_at) < Duration::from_millis(950))
        .count();
    assert!(
        during_pause <= IN_FLIGHT,
        "{during_pause} requests arrived during the 1 s Retry-After pause"
    );
    // Pacing: every request (429s included) takes a token, so no stretch of arrivals holds
    // more than the burst plus the rate times its length (plus the in-flight slack for
    // requests granted in order but arriving a little apart).
    let excess = paced_excess(&all, RATE_PER_SECOND);
    eprintln!(
        "429 storm: {} requests over {:?}, {throttled} 429s, {during_pause} during the pause, \
         at most {excess:.1} beyond the rate in one stretch",
        all.len(),
        all[all.len() - 1].received.duration_since(paused_at)
    );
    assert!(
        excess <= (BURST + IN_FLIGHT) as f64,
        "{excess:.1} requests beyond the rate in one stretch (burst {BURST}), {} requests",
        all.len()
    );
    daemon.stop().await;
}

/// The most requests beyond `rate_per_second` in any stretch of consecutive arrivals: the max
/// over i <= j of (j - i + 1) - rate * (t_j - t_i). A token bucket keeps it within its burst.
fn paced_excess(requests: &[crate::support::bigpanda::Recorded], rate_per_second: f64) -> f64 {
    let mut worst = 0.0_f64;
    for (i, first) in requests.iter().enumerate() {
        for (j, last) in requests.iter().enumerate().skip(i) {
            let span = last.received.duration_since(first.received).as_secs_f64();
            worst = worst.max((j - i + 1) as f64 - rate_per_second * span);
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_api_recovers() {
    let stack = Stack::new("fivehundreds", 5, None).await;
    stack
        .bigpanda
        .push_script(std::iter::repeat_n(Reply::Status(500), 6).collect());
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(FILES[3].0).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(60))
            .await
    );
    assert!(
        stack
            .bigpanda
            .all()
            .iter()
            .filter(|r| r.status == 500)
            .count()
            == 6
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_are_retried_then_dead_lettered_with_the_reason() {
    let stack = Stack::new("unauthorized", 2, None).await;
    stack.bigpanda.reject_api_key(API_KEY);
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let (key, _) = stack.put_file(FILES[3].0).await;
    let dead = stack.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, "bigpanda_unauthorized");
    assert!(dead[0].1.contains(&key.replace('/', "%2F")) || dead[0].1.contains(&key));
    // Retried: at least one request per receive, never accepted.
    assert!(stack.bigpanda.all().len() >= 2);
    assert!(stack.bigpanda.accepted().is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_for_an_unknown_bucket_is_dead_lettered_at_once() {
    let stack = Stack::new("unknown", 5, None).await;
    let daemon = stack.start(&[]).await;
    // No subscription for the bucket.
    stack.put_file(FILES[3].0).await;
    let dead = stack
        .dead_letters_with_attributes(1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1);
    let attrs = &dead[0].0;
    assert_eq!(
        attrs.get("failure_reason").map(String::as_str),
        Some("unknown_bucket")
    );
    assert!(attrs["failure_detail"].contains(&stack.bucket), "{attrs:?}");
    assert_eq!(attrs.get("source_queue"), Some(&stack.queues.url));
    assert!(
        attrs["failed_at"].ends_with('Z') && attrs["failed_at"].len() == 20,
        "{attrs:?}"
    );
    assert!(stack.bigpanda.all().is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_object_is_dead_lettered_after_its_readable_changes_are_delivered() {
    let stack = Stack::new("corrupt", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let path = manifest("tests/data/edge/truncated.json.gz");
    let key =
        cloudtrail_key("218007301253_CloudTrail_us-east-1_20230710T1200Z_truncated00.json.gz");
    stack
        .aws
        .put_object(&stack.bucket, &key, std::fs::read(&path).expect("read"))
        .await;
    let expected = expected_changes(&path, &stack.bucket, &key);
    assert_eq!(expected.len(), 12);
    let dead = stack.dead_letters(1, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "corrupt_object");
    let got = accepted_by_id(&stack.bigpanda);
    for change in &expected {
        let id = change["identifier"].as_str().expect("id");
        assert_eq!(got.get(id), Some(change));
    }
    // Test events and digest files are acknowledged without a trace in the DLQ.
    stack
        .aws
        .put_object(
            &stack.bucket,
            &format!("AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2023/07/10/x_CloudTrail-Digest_us-east-1_t_20230710T1200Z.json.gz"),
            b"{}".to_vec(),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    // Only the corrupt object's message (received above, so in flight) is in the DLQ.
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 1);
    daemon.stop().await;
}

/// Replies that make every change take `ms` milliseconds.
fn slow_replies(n: usize, ms: u64) -> Vec<Reply> {
    std::iter::repeat_n(Reply::Delay(Duration::from_millis(ms), 204), n).collect()
}

async fn wait_for_count(bigpanda: &BigPanda, n: usize, timeout: Duration) -> usize {
    let started = Instant::now();
    while bigpanda.accepted().len() < n && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bigpanda.accepted().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_object_resumes_from_its_checkpoint_and_delivers_everything() {
    let mut stack = Stack::new("killed", 5, None).await;
    // A short visibility timeout brings the message back soon after the kill.
    stack.queues = {
        let q = stack.aws.create_queue_with_dlq("killed-short", 5, 4).await;
        stack
            .aws
            .notify_bucket_to_queue_directly(&stack.bucket, &q.url)
            .await;
        q
    };
    let (file, total) = FILES[0];
    stack.bigpanda.push_script(slow_replies(400, 100));
    let slow = [("CTC__BIGPANDA__MAX_CONCURRENCY_PER_KEY", "1")];
    let first = Binary::start(&stack, "first", &slow).await;
    stack.subscribe(first.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(file).await;
    assert_eq!(expected.len(), total);
    let before = wait_for_count(&stack.bigpanda, 25, Duration::from_secs(60)).await;
    assert!(before >= 25, "only {before} changes before the kill");
    first.signal("-KILL");
    let (status, _) = first.wait(Duration::from_secs(10)).await;
    assert!(!status.success());
    let sent_before_kill = stack.bigpanda.all().len();

    let second = Binary::start(&stack, "second", &slow).await;
    let started = Instant::now();
    let ids = || -> BTreeSet<String> {
        stack
            .bigpanda
            .accepted()
            .iter()
            .filter_map(|r| r.identifier().map(str::to_owned))
            .collect()
    };
    while ids().len() < total && started.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected_ids: BTreeSet<String> = expected
        .iter()
        .map(|c| c["identifier"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids(), expected_ids, "every change delivered");
    // Resumed: the second daemon sent fewer than the whole object again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resent = stack.bigpanda.all().len() - sent_before_kill;
    assert!(
        resent < total,
        "the second daemon sent {resent} of {total}: no resume"
    );
    let first_after = &stack.bigpanda.all()[sent_before_kill];
    assert_ne!(
        first_after.identifier(),
        expected[0]["identifier"].as_str(),
        "restarted from the beginning"
    );
    second.stop_within(Duration::from_secs(30)).await;
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_messages_finish_and_exits_zero() {
    let stack = Stack::new("sigterm", 5, None).await;
    let (file, total) = FILES[2];
    stack.bigpanda.push_script(slow_replies(100, 100));
    let daemon = Binary::start(
        &stack,
        "term",
        &[("CTC__BIGPANDA__MAX_CONCURRENCY_PER_KEY", "1")],
    )
    .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    stack.put_file(file).await;
    assert!(wait_for_count(&stack.bigpanda, 3, Duration::from_secs(30)).await >= 3);
    let log = daemon.stop_within(Duration::from_secs(40)).await;
    assert!(log.contains("stopped receiving"), "{log}");
    let ids: BTreeSet<_> = stack
        .bigpanda
        .accepted()
        .iter()
        .filter_map(|r| r.identifier().map(str::to_owned))
        .collect();
    assert_eq!(
        ids.len(),
        total,
        "the in-flight object was finished before exiting"
    );
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_period_unfinished_messages_are_released_and_delivered_by_the_next_daemon()
{
    let stack = Stack::new("grace", 5, None).await;
    let (file, total) = FILES[1];
    stack.bigpanda.push_script(slow_replies(300, 100));
    let extra = [
        ("CTC__BIGPANDA__MAX_CONCURRENCY_PER_KEY", "1"),
        ("CTC__WORKER__SHUTDOWN_GRACE_SECONDS", "1"),
    ];
    let first = Binary::start(&stack, "first", &extra).await;
    stack.subscribe(first.api, &stack.bucket).await;
    stack.put_file(file).await;
    assert!(wait_for_count(&stack.bigpanda, 3, Duration::from_secs(30)).await >= 3);
    let stopping = Instant::now();
    let log = first.stop_within(Duration::from_secs(20)).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "took {:?}",
        stopping.elapsed()
    );
    assert!(log.contains("released"), "{log}");
    let partial = stack.bigpanda.accepted().len();
    assert!(
        partial < total,
        "finished anyway ({partial}); the test proves nothing"
    );
    // Released with visibility 0: the next daemon takes it at once and resumes.
    let second = Binary::start(&stack, "second", &[]).await;
    let ids = || -> BTreeSet<String> {
        stack
            .bigpanda
            .accepted()
            .iter()
            .filter_map(|r| r.identifier().map(str::to_owned))
            .collect()
    };
    let started = Instant::now();
    while ids().len() < total && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ids().len(), total);
    second.stop_within(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_rejected_for_good_does_not_fail_the_others() {
    let stack = Stack::new("rejected", 5, None).await;
    stack
        .bigpanda
        .push_script(vec![Reply::Status(400), Reply::Status(409)]);
    let daemon = stack
        .start(&[("CTC__BIGPANDA__MAX_CONCURRENCY_PER_KEY", "1")])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(FILES[2].0).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len() - 2, Duration::from_secs(30))
            .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Not retried: each change was sent once, and the message is gone; the two rejected
    // changes wait in the DLQ as their own messages (tests/service/nodrops.rs looks closer).
    assert_eq!(stack.bigpanda.all().len(), expected.len());
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 2);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_a_long_message_from_being_delivered_twice() {
    let mut stack = Stack::new("heartbeat", 5, None).await;
    // A 2 s visibility timeout and an object that takes about 4 s to deliver.
    stack.queues = {
        let q = stack
            .aws
            .create_queue_with_dlq("heartbeat-short", 5, 2)
            .await;
        stack
            .aws
            .notify_bucket_to_queue_directly(&stack.bucket, &q.url)
            .await;
        q
    };
    let (file, total) = FILES[1];
    stack.bigpanda.push_script(slow_replies(total, 100));
    let daemon = stack
        .start(&[("CTC__BIGPANDA__MAX_CONCURRENCY_PER_KEY", "1")])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    stack.put_file(file).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(total, Duration::from_secs(60))
            .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.bigpanda.all().len(), total, "a change was sent twice");
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_failures_on_receive_assume_role_and_get_object_are_retried_until_delivered() {
    use crate::support::proxy::{Fault, Match, Proxy};
    let stack = Stack::new("awsfaults", 10, None).await;
    let proxy = Proxy::start(&stack.moto.endpoint()).await;
    let endpoint = proxy.endpoint();
    let daemon = stack
        .start(&[
            ("CTC__AWS__ENDPOINT_URL", endpoint.as_str()),
            ("CTC__SUBSCRIPTIONS__VERIFY_ROLE", "false"),
        ])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    // More failures than the SDK's own three attempts, so the daemon's retry path runs too.
    proxy.inject(
        Match::action("ReceiveMessage"),
        4,
        Fault::aws_error(500, "InternalError"),
    );
    proxy.inject(
        Match::action("AssumeRole"),
        4,
        Fault::aws_error(503, "ServiceUnavailable"),
    );
    proxy.inject(
        Match::method_and_path_prefix(reqwest::Method::GET, &format!("/{}/", stack.bucket)),
        4,
        Fault::aws_error(500, "InternalError"),
    );
    let (_, expected) = stack.put_file(FILES[3].0).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(60))
            .await,
        "injected {} faults, {} changes arrived",
        proxy.injected(),
        stack.bigpanda.accepted().len()
    );
    assert_eq!(proxy.injected(), 12, "every fault was met");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
    daemon.stop().await;
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_describe_a_working_daemon() {
    let stack = Stack::new("ops", 5, None).await;
    let daemon = stack.start(&[]).await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(FILES[3].0).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(30))
            .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(daemon.ops, "/healthz").await.0, 200);
    let (status, body) = get(daemon.ops, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = get(daemon.ops, "/metrics").await;
    assert_eq!(status, 200);
    // The recorder is global to the test process: assert presence, not exact values.
    for needle in [
        "ctc_build_info{version=",
        "ctc_messages_received_total",
        "ctc_messages_total{fate=\"delivered\"}",
        "ctc_changes_sent_total{outcome=\"accepted\"}",
        "ctc_change_lag_seconds_bucket",
        "ctc_object_duration_seconds_bucket",
        "ctc_records_dropped_total{reason=\"read_only\"}",
        "ctc_bigpanda_request_duration_seconds_bucket",
        "ctc_sts_assume_role_total{outcome=\"ok\"}",
        "ctc_object_bytes_total",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    assert!(!metrics.contains(API_KEY) && !metrics.contains(&stack.bucket));
    // A slow object in flight keeps the daemon draining for a while after the stop.
    let before = stack.bigpanda.accepted().len();
    stack.bigpanda.push_script(slow_replies(20, 300));
    let (_, slow) = stack.put_file(FILES[2].0).await;
    assert!(wait_for_count(&stack.bigpanda, before + 1, Duration::from_secs(30)).await > before);
    daemon.stop.cancel();
    // While draining, readiness fails at once.
    let started = Instant::now();
    let mut saw_not_ready = false;
    while started.elapsed() < Duration::from_secs(5) {
        match reqwest::get(format!("http://{}/readyz", daemon.ops)).await {
            Ok(r) if r.status().as_u16() == 503 => {
                saw_not_ready = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => break,
        }
    }
    assert!(saw_not_ready, "/readyz never reported the shutdown");
    let ended = tokio::time::timeout(Duration::from_secs(60), daemon.task)
        .await
        .expect("the daemon drains and stops within 60 s of the stop")
        .expect("the daemon task did not panic");
    ended.expect("the daemon ends cleanly after draining");
    assert_eq!(
        stack.bigpanda.accepted().len(),
        before + slow.len(),
        "drained"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_key_proves_the_role_can_read_the_bucket_before_subscribing() {
    let stack = Stack::new("sample", 5, None).await;
    let daemon = stack.start(&[]).await;
    let post = |sample_key: &str| {
        let body = json!({
            "apiKey": API_KEY, "appKey": APP_KEY, "bucket_name": stack.bucket,
            "bucket_region": "us-east-1",
            "iam_role_arn": format!("arn:aws:iam::{ACCOUNT}:role/BigPandaCloudTrailReader"),
            "iam_role_external_id": "bp-external-id-1", "sample_key": sample_key,
        });
        reqwest::Client::new()
            .post(format!("http://{}/v1/subscriptions", daemon.api))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let missing = post("AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/nope.json.gz")
        .await
        .expect("POST");
    assert_eq!(missing.status().as_u16(), 422);
    let text = missing.text().await.unwrap_or_default();
    assert!(text.contains("does not exist"), "{text}");
    let (key, _) = stack.put_file(FILES[3].0).await;
    let present = post(&key).await.expect("POST");
    assert_eq!(present.status().as_u16(), 201, "{:?}", present.text().await);
    daemon.stop().await;
}
