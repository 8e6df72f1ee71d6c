//! An outage of the Changes API longer than the whole retry schedule: the daemon pauses
//! delivery (no new receives, in-flight messages held and probed) instead of spending the
//! messages' receives, so every change arrives afterwards and the DLQ stays empty.

use crate::fleet::{delivered, put_backlog, wait_delivered};
use crate::support::stack::Stack;
use std::time::{Duration, Instant};

/// The queue's maxReceiveCount, and the schedule it allows with the settings below: three
/// receives of a 2 s patience and a 1 s backoff, about 9 s before a message is dead-lettered.
const MAX_RECEIVE_COUNT: u32 = 3;
/// Longer than the whole schedule, twice over.
const OUTAGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_outage_longer_than_the_retry_schedule_ends_with_every_change_and_an_empty_dlq() {
    let stack = Stack::new("outage", MAX_RECEIVE_COUNT, None).await;
    stack.bigpanda.set_default(503);
    let daemon = stack
        .start(&[
            ("CTC__WORKER__RETRY_BACKOFF_SECONDS", "1"),
            ("CTC__WORKER__CHANGE_RETRY_SECONDS", "2"),
        ])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let expected = put_backlog(&stack, &stack.bucket, 1).await;

    let started = Instant::now();
    while stack.bigpanda.all().is_empty() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !stack.bigpanda.all().is_empty(),
        "the daemon tried to deliver"
    );
    tokio::time::sleep(OUTAGE).await;
    let failed = stack.bigpanda.all().len();
    stack.bigpanda.set_default(204);
    wait_delivered(&stack, None, expected, Duration::from_secs(180)).await;
    daemon.stop().await;

    println!(
        "outage of {} s: {failed} requests answered 503, then {} changes accepted",
        OUTAGE.as_secs(),
        stack.bigpanda.accepted().len()
    );
    assert_eq!(delivered(&stack, None), expected, "every change delivered");
    let dead = stack.dead_letters(1, Duration::from_secs(3)).await;
    assert!(dead.is_empty(), "the DLQ holds {dead:?}");
}

/// GetObject failures on our side (S3 answering 500 for every attempt, the SDK's retries
/// included) for more attempts than the whole retry schedule allows: delivery pauses and
/// probes instead of spending receives, so the object arrives afterwards and the DLQ stays
/// empty. Without the pause the message would be dead-lettered after its third receive
/// (3 receives x 3 SDK attempts = 9 failed GetObjects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_longer_than_the_retry_schedule_pauses_delivery_and_loses_no_receive() {
    use crate::support::proxy::{Fault, Match, Proxy};
    const FAILED_GETS: usize = 15;
    let stack = Stack::new("s3-outage", MAX_RECEIVE_COUNT, None).await;
    let proxy = Proxy::start(&stack.moto.endpoint()).await;
    let endpoint = proxy.endpoint();
    let daemon = stack
        .start(&[
            ("CTC__AWS__ENDPOINT_URL", endpoint.as_str()),
            ("CTC__SUBSCRIPTIONS__VERIFY_ROLE", "false"),
            ("CTC__WORKER__RETRY_BACKOFF_SECONDS", "1"),
            ("CTC__WORKER__CHANGE_RETRY_SECONDS", "2"),
        ])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    proxy.inject(
        Match::method_and_path_prefix(reqwest::Method::GET, &format!("/{}/", stack.bucket)),
        FAILED_GETS,
        Fault::aws_error(500, "InternalError"),
    );
    let (_, expected) = stack.put_file(crate::support::stack::FILES[3].0).await;
    let arrived = stack
        .bigpanda
        .wait_for_accepted(expected.len(), Duration::from_secs(120))
        .await;
    daemon.stop().await;
    assert!(
        arrived,
        "{} of {} changes after {} injected GetObject failures",
        stack.bigpanda.accepted().len(),
        expected.len(),
        proxy.injected()
    );
    assert_eq!(proxy.injected(), FAILED_GETS, "the whole outage was met");
    let dead = stack.dead_letters(1, Duration::from_secs(3)).await;
    assert!(dead.is_empty(), "the DLQ holds {dead:?}");
}
