//! Nothing dropped in silence (issue 12): a wrong endpoint answering 404 pages holds changes
//! back instead of dropping them, and the message comes home once the endpoint is right.

use crate::daemon::Stack;
use crate::support::proxy::{Fault, Match, Proxy};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A real CloudTrail file with 55 changes (the one of the reproduction).
const FILE: &str = "218007301253_CloudTrail_us-east-1_20230710T1215Z_YMDRJwtmC82bUwAo.json.gz";

const NOT_FOUND_PAGE: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n\
    <body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// Waits until `done()` or `limit` passed; returns whether it is done.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_endpoint_answering_404_pages_for_a_while_loses_no_change() {
    // maxReceiveCount 100: a short misconfiguration must not reach the DLQ.
    let stack = Stack::new("endpoint404", 100, None).await;
    let proxy = Proxy::start(&stack.bigpanda.base_url()).await;
    proxy.inject(
        Match::any(),
        usize::MAX,
        Fault::Raw {
            status: 404,
            content_type: "text/html".into(),
            body: NOT_FOUND_PAGE.into(),
        },
    );
    let base_url = proxy.endpoint();
    let daemon = stack
        .start(&[("CTC__BIGPANDA__BASE_URL", base_url.as_str())])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(FILE).await;
    assert_eq!(expected.len(), 55);

    // Several receives of the message meet the 404 page (each stops at its first answer).
    assert!(
        until(Duration::from_secs(60), || proxy.injected() >= 12).await,
        "the daemon never met the wrong endpoint: {} requests",
        proxy.injected()
    );
    assert!(stack.bigpanda.all().is_empty(), "the stand-in was hidden");
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);

    // The endpoint is right again: every change arrives, nothing is dead-lettered.
    proxy.clear();
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(90))
            .await,
        "only {} of {} changes arrived after the endpoint recovered",
        stack.bigpanda.accepted().len(),
        expected.len()
    );
    let sent: BTreeSet<String> = stack
        .bigpanda
        .accepted()
        .iter()
        .filter_map(|r| r.identifier().map(str::to_owned))
        .collect();
    let wanted: BTreeSet<String> = expected
        .iter()
        .filter_map(|c| c["identifier"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(sent, wanted);
    // The message is deleted once its last change was accepted.
    let started = Instant::now();
    while stack.aws.queue_depth(&stack.queues.url).await > 0
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
    daemon.stop().await;
}
