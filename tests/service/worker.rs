//! The worker's seam: a built daemon takes one batch at a time to its fates
//! (`Daemon::poll_once`), so a message's fate is asserted without running the pollers.

use crate::support::stack::Stack;
use cloudtrail_changes::app::daemon::Daemon;
use cloudtrail_changes::worker::fate::Fate;
use cloudtrail_changes::worker::Handled;
use std::time::{Duration, Instant};

/// A real CloudTrail file (tests/data/cloudtrail).
const FILE: &str = "218007301253_CloudTrail_us-east-1_20230710T1210Z_6CICdbJQM3beT7n3.json.gz";

/// Polls until a message that is not S3's test event has been handled, or `timeout`.
async fn first_real(daemon: &Daemon, timeout: Duration) -> (Handled, Vec<Handled>) {
    let started = Instant::now();
    let mut tests = Vec::new();
    while started.elapsed() < timeout {
        for handled in daemon.poll_once().await.expect("receive") {
            if handled.fate
                == (Fate::Delete {
                    skipped: Some("test_event"),
                })
            {
                tests.push(handled);
            } else {
                return (handled, tests);
            }
        }
    }
    panic!("no message handled within {timeout:?} (test events: {tests:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_returns_the_fate_of_each_message_it_handled() {
    let stack = Stack::new("poll-once", 5, None).await;
    let daemon = Daemon::build(stack.settings(&[]))
        .await
        .expect("daemon builds");
    // The bucket has no subscription: the fate is the DLQ, decided and carried out in line.
    stack.put_file(FILE).await;
    let (handled, _) = first_real(&daemon, Duration::from_secs(30)).await;
    assert!(
        matches!(handled.fate, Fate::DeadLetter { reason: "unknown_bucket", ref detail } if detail.contains(&stack.bucket)),
        "{handled:?}"
    );
    assert_eq!(handled.outcome, "dead_lettered");
    let dead = stack.dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(
        dead.len(),
        1,
        "the fate was carried out: the message is in the DLQ"
    );
    // Nothing else waits: the one message was settled, not left in flight.
    assert!(daemon.poll_once().await.expect("receive").is_empty());
}
