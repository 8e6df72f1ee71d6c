//! A shutdown on a message's last allowed receive: the daemon requeues a copy (send, then
//! delete) instead of releasing it, so SQS does not dead-letter a healthy message without a
//! reason, and the next daemon delivers it.

use crate::support::bigpanda::Reply;
use crate::support::stack::Stack;
use std::time::{Duration, Instant};

const FILE: &str = "218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json.gz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stopped_on_its_last_allowed_receive_is_requeued_and_delivered_later() {
    // maxReceiveCount 1: every first receive is the last one SQS allows.
    let stack = Stack::new("requeue", 1, None).await;
    // The first change hangs longer than the test: its message is in flight at the stop.
    stack
        .bigpanda
        .push_script(vec![Reply::Delay(Duration::from_secs(600), 204)]);
    // Short polls: a long poll abandoned at the stop would still take the copy at moto and
    // spend its only receive (SQS does the same with an abandoned ReceiveMessage).
    let settings = [
        ("CTC__WORKER__SHUTDOWN_GRACE_SECONDS", "0"),
        ("CTC__SQS__WAIT_TIME_SECONDS", "0"),
    ];
    let first = stack.start(&settings).await;
    stack.subscribe(first.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(FILE).await;
    let started = Instant::now();
    while stack.bigpanda.all().is_empty() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hung = stack.bigpanda.all()[0].identifier().map(str::to_owned);
    first.stop().await;

    // The stand-in recorded the hung request at its arrival; the change counts as delivered
    // only when a later request with its identifier was answered.
    let answered_again = || {
        stack.bigpanda.all()[1..]
            .iter()
            .any(|r| r.is_accepted() && r.identifier().map(str::to_owned) == hung)
    };
    let second = stack.start(&settings).await;
    let started = Instant::now();
    while !(answered_again() && stack.aws.queue_depth(&stack.queues.url).await == 0)
        && started.elapsed() < Duration::from_secs(90)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await;

    assert!(
        answered_again(),
        "the stopped change was sent again and accepted"
    );
    let ids: std::collections::HashSet<_> = stack
        .bigpanda
        .accepted()
        .iter()
        .filter_map(|r| r.identifier().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), expected.len(), "every change delivered");
    let dead = stack.dead_letters(1, Duration::from_secs(3)).await;
    assert!(dead.is_empty(), "the DLQ holds {dead:?}");
}
