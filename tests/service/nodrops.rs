//! Nothing dropped in silence (issue 12): a wrong endpoint answering 404 pages holds changes
//! back instead of dropping them, and the message comes home once the endpoint is right; a
//! change BigPanda rejects waits in the DLQ as its own message until `dlq redrive`.

use crate::support::bigpanda::Reply;
use crate::support::proxy::{Fault, Match, Proxy};
use crate::support::stack::Stack;
use cloudtrail_changes::cli::RedriveArgs;
use cloudtrail_changes::commands::dlq;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The keys `Stack::subscribe` subscribes with (daemon.rs keeps its own private copy).
const API_KEY: &str = "0123456789abcdef0123456789abcdef";
const APP_KEY: &str = "fedcba9876543210fedcba9876543210";

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

/// A real CloudTrail file with 8 changes.
const SMALL_FILE: &str =
    "218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json.gz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_bigpanda_rejects_waits_in_the_dlq_and_redrive_delivers_it() {
    let stack = Stack::new("rejected-kept", 5, None).await;
    // The first change gets BigPanda's JSON 400; one in flight at a time makes it the first.
    stack.bigpanda.push_script(vec![Reply::Status(400)]);
    let daemon = stack
        .start(&[("CTC__BIGPANDA__MAX_CONCURRENCY_PER_KEY", "1")])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let (key, expected) = stack.put_file(SMALL_FILE).await;
    assert_eq!(expected.len(), 8);
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(7, Duration::from_secs(60))
            .await
    );
    let rejected = stack.bigpanda.all()[0].clone();
    assert_eq!(rejected.status, 400);
    let identifier = rejected.identifier().expect("an identifier").to_owned();

    // `dlq peek` shows it readably, without consuming it.
    let settings = stack.settings(&[]);
    let mut shown = String::new();
    let started = Instant::now();
    while !shown.contains("change_rejected") && started.elapsed() < Duration::from_secs(30) {
        let mut out = Vec::new();
        dlq::peek_until(&settings, 10, &mut out, &CancellationToken::new())
            .await
            .expect("peek");
        shown = String::from_utf8(out).expect("utf-8");
    }
    assert!(shown.contains("  reason:  change_rejected"), "{shown}");
    assert!(
        shown.contains(&format!(
            "  change:  {identifier} from s3://{}/{key}",
            stack.bucket
        )),
        "{shown}"
    );
    assert!(
        shown.contains("  answer:  BigPanda said HTTP 400: Bad Request"),
        "{shown}"
    );

    // The DLQ message is the exact body, with its reason and origin, and no key.
    let letters = stack
        .dead_letters_with_attributes(1, Duration::from_secs(10))
        .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (attributes, body) = &letters[0];
    assert_eq!(body, &rejected.raw_body);
    assert_eq!(attributes["failure_reason"], "change_rejected");
    assert_eq!(attributes["bigpanda_status"], "400");
    assert_eq!(attributes["bigpanda_error"], "Bad Request");
    assert_eq!(attributes["bucket"], stack.bucket);
    assert_eq!(attributes["key"], key);
    assert_eq!(attributes["event_id"], identifier);
    let everything = format!("{attributes:?} {body}");
    assert!(
        !everything.contains(API_KEY) && !everything.contains(APP_KEY),
        "a key reached the DLQ"
    );
    // The stand-in was the only one to see it so far.
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);

    // BigPanda accepts it now: redrive brings it home, posted as is.
    let args = RedriveArgs {
        max: None,
        reason: Some("change_rejected".into()),
        dry_run: false,
        rate: None,
    };
    // The receive above holds the DLQ message for its visibility timeout: wait until it moves.
    let started = Instant::now();
    let mut moved = 0;
    while moved == 0 && started.elapsed() < Duration::from_secs(60) {
        let mut out = Vec::new();
        moved = dlq::redrive_until(&settings, &args, &mut out, &CancellationToken::new())
            .await
            .expect("redrive");
        if moved == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert_eq!(moved, 1);
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(8, Duration::from_secs(60))
            .await
    );
    let replayed = stack
        .bigpanda
        .accepted()
        .into_iter()
        .find(|r| r.identifier() == Some(identifier.as_str()))
        .expect("the rejected change was delivered");
    assert_eq!(replayed.raw_body, rejected.raw_body);
    assert_eq!(replayed.api_key.as_deref(), Some(API_KEY));
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

/// A file whose list of changes differs under `filter.keep_failed = true` from the third
/// change on (40 changes by default, 44 keeping failed calls).
const MIXED_FILE: &str =
    "218007301253_CloudTrail_us-east-1_20230710T1210Z_6CICdbJQM3beT7n3.json.gz";

fn identifiers(records: &[crate::support::bigpanda::Recorded]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.is_accepted())
        .filter_map(|r| r.identifier().map(str::to_owned))
        .collect()
}

fn expected_ids(expected: &[serde_json::Value]) -> BTreeSet<String> {
    expected
        .iter()
        .filter_map(|c| c["identifier"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_counted_under_other_filter_settings_is_not_trusted() {
    let stack = Stack::new("fingerprint", 100, None).await;
    // The first daemon keeps failed calls; BigPanda accepts 20 of its changes, then fails.
    stack.bigpanda.push_script(vec![Reply::Status(204); 20]);
    stack.bigpanda.set_default(500);
    let first = stack
        .start(&[
            ("CTC__FILTER__KEEP_FAILED", "true"),
            ("CTC__BIGPANDA__MAX_CONCURRENCY_PER_KEY", "1"),
        ])
        .await;
    stack.subscribe(first.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(MIXED_FILE).await;
    assert_eq!(expected.len(), 40);
    assert!(
        until(Duration::from_secs(60), || {
            stack.bigpanda.all().iter().any(|r| r.status == 500)
        })
        .await
    );
    // Stopping saves the checkpoint of the 20 accepted changes.
    first.stop().await;
    let sent_first = identifiers(&stack.bigpanda.all());
    assert_eq!(sent_first.len(), 20);

    // A rolling deploy: the default filter (failed calls dropped) resumes the message.
    stack.bigpanda.set_default(204);
    let second = stack.start(&[]).await;
    let wanted = expected_ids(&expected);
    let delivered = until(Duration::from_secs(90), || {
        identifiers(&stack.bigpanda.all()).is_superset(&wanted)
    })
    .await;
    let missing: Vec<String> = wanted
        .difference(&identifiers(&stack.bigpanda.all()))
        .cloned()
        .collect();
    assert!(delivered, "never delivered: {missing:?}");
    second.stop().await;
}

/// Two real files: the first version of the object, and what replaces it.
const FIRST_VERSION: &str = SMALL_FILE;
const SECOND_VERSION: &str =
    "218007301253_CloudTrail_us-east-1_20230710T1230Z_ZtUNbBkwAu98FPZb.json.gz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_rewritten_since_its_notification_is_skipped_as_object_replaced() {
    let stack = Stack::new("replaced", 5, None).await;
    // Subscribe with a first daemon, then stop it so both notifications wait in the queue.
    let setup = stack.start(&[]).await;
    stack.subscribe(setup.api, &stack.bucket).await;
    setup.stop().await;
    let (key, old) = stack.put_file(FIRST_VERSION).await;
    let (same_key, new) = stack.put_file_as(SECOND_VERSION, &key).await;
    assert_eq!(key, same_key);

    let daemon = stack.start(&[]).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(new.len(), Duration::from_secs(60))
            .await
    );
    let started = Instant::now();
    while stack.aws.queue_depth(&stack.queues.url).await > 0
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    // Only the version that is there now was read: the first notification's eTag no longer
    // matches, so its message was skipped, not parsed against the new bytes.
    let sent = identifiers(&stack.bigpanda.all());
    assert_eq!(sent, expected_ids(&new));
    assert!(sent.is_disjoint(&expected_ids(&old)));
    assert_eq!(
        stack.bigpanda.all().len(),
        new.len(),
        "the new version was sent twice"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", daemon.ops))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ctc_objects_replaced_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains("ctc_messages_skipped_total{reason=\"object_replaced\"}"),
        "{metrics}"
    );
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_sent_before_its_subscription_is_delivered_within_the_grace() {
    let stack = Stack::new("early", 100, None).await;
    let daemon = stack
        .start(&[("CTC__SUBSCRIPTIONS__UNKNOWN_BUCKET_GRACE_SECONDS", "900")])
        .await;
    // The bucket notifies before the customer subscribes (the CloudFormation order).
    let (_, expected) = stack.put_file(SMALL_FILE).await;
    let metrics_url = format!("http://{}/metrics", daemon.ops);
    let failures = || async {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find(|l| l.starts_with("ctc_message_failures_total{reason=\"unknown_bucket\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Wait until the daemon met the unknown bucket at least twice (retried, not dead-lettered).
    let started = Instant::now();
    while failures().await < 2.0 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        failures().await >= 2.0,
        "the message never met the unknown bucket"
    );
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);

    stack.subscribe(daemon.api, &stack.bucket).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(60))
            .await
    );
    assert_eq!(identifiers(&stack.bigpanda.all()), expected_ids(&expected));
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probes_the_base_url_and_fails_a_wrong_path_without_creating_a_change() {
    let stack = Stack::new("probe", 5, None).await;
    let check = |base_url: String| {
        let settings = stack.settings(&[("CTC__BIGPANDA__BASE_URL", base_url.as_str())]);
        async move {
            let mut out = Vec::new();
            cloudtrail_changes::commands::preflight::check(&settings, false, &mut out)
                .await
                .expect("check runs");
            String::from_utf8(out).expect("utf-8")
        }
    };
    let right = check(stack.bigpanda.base_url()).await;
    assert!(
        right
            .lines()
            .any(|l| l.starts_with("ok   bigpanda.base_url probe: ")
                && l.contains("answers like the Changes API")),
        "{right}"
    );
    // A path the stand-in does not serve answers 404, as a wrong base URL would.
    let wrong = format!("{}/v2", stack.bigpanda.base_url());
    let out = check(wrong.clone()).await;
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "FAIL bigpanda.base_url probe: {wrong}/data/changes does not answer like the Changes API: HTTP 404"
        ))),
        "{out}"
    );
    // The probes carried no key and created nothing.
    let seen = stack.bigpanda.all();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].authorization.is_none() && seen[0].app_key.is_none());
    assert!(!seen[0].is_accepted());
}
