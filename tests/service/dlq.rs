//! `dlq peek` and `dlq redrive` against moto: a DLQ holding what the daemon puts there (bodies
//! with `failure_*` attributes) and what SQS's own redrive puts there (no attributes).

use crate::support::stack::Stack;
use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use cloudtrail_changes::cli::RedriveArgs;
use cloudtrail_changes::commands::dlq::{self, DlqError};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const KEY: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/123456789012_CloudTrail_us-east-1_20240501T0000Z_";

/// One message put into the DLQ.
struct Letter {
    id: String,
    body: String,
    /// `failure_reason`, or `None` for a message SQS's redrive moved.
    reason: Option<&'static str>,
    /// What `peek` and `redrive` show as its object.
    object: String,
}

/// A raw S3 event notification naming `bucket`/`key`.
fn s3_event(bucket: &str, key: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T00:05:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "ct",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": 1234, "eTag": "abc"}}}]})
    .to_string()
}

fn text(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("a string attribute")
}

/// A stack whose DLQ holds four messages: `unknown_bucket`, `corrupt_object`, one moved by SQS
/// (no attributes), and an undecodable body (`malformed_envelope`). The source queue is empty.
async fn stack_with_dead_letters(name: &str) -> (Stack, Vec<Letter>) {
    let stack = Stack::new(name, 5, None).await;
    // The bucket notification's s3:TestEvent.
    stack.aws.drain(&stack.queues.url).await;
    let specs: [(Option<&'static str>, &str, String); 4] = [
        (
            Some("unknown_bucket"),
            "no subscription for bucket gone-bucket",
            s3_event("gone-bucket", &format!("{KEY}a.json.gz")),
        ),
        (
            Some("corrupt_object"),
            "gzip: invalid header",
            s3_event(&stack.bucket, &format!("{KEY}b.json.gz")),
        ),
        (
            None,
            "",
            s3_event(&stack.bucket, &format!("{KEY}c.json.gz")),
        ),
        (
            Some("malformed_envelope"),
            "message body is not JSON: expected value at line 1 column 1",
            "not json at all".to_owned(),
        ),
    ];
    let mut letters = Vec::new();
    for (reason, detail, body) in specs {
        let mut request = stack
            .aws
            .sqs
            .send_message()
            .queue_url(&stack.queues.dlq_url)
            .message_body(&body);
        if let Some(reason) = reason {
            request = request
                .message_attributes("failure_reason", text(reason))
                .message_attributes("failure_detail", text(detail))
                .message_attributes("source_queue", text(&stack.queues.url))
                .message_attributes("failed_at", text("2024-05-01T00:06:00Z"));
        }
        let id = request
            .send()
            .await
            .expect("SendMessage to the DLQ")
            .message_id
            .expect("a message id");
        let object = dlq::objects_text(&body);
        letters.push(Letter {
            id,
            body,
            reason,
            object,
        });
    }
    (stack, letters)
}

/// Every message of a queue with its string attributes, visible again right away.
async fn visible(stack: &Stack, url: &str) -> Vec<(String, HashMap<String, String>)> {
    let out = stack
        .aws
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_attribute_names("All")
        .send()
        .await
        .expect("ReceiveMessage");
    out.messages().iter().map(body_and_attributes).collect()
}

fn body_and_attributes(m: &Message) -> (String, HashMap<String, String>) {
    let attributes = m
        .message_attributes()
        .map(|a| {
            a.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    (m.body().unwrap_or_default().to_owned(), attributes)
}

fn bodies(messages: &[(String, HashMap<String, String>)]) -> BTreeSet<String> {
    messages.iter().map(|(b, _)| b.clone()).collect()
}

fn bodies_of<'a>(letters: impl IntoIterator<Item = &'a Letter>) -> BTreeSet<String> {
    letters.into_iter().map(|l| l.body.clone()).collect()
}

fn args(max: Option<usize>, reason: Option<&str>, dry_run: bool) -> RedriveArgs {
    RedriveArgs {
        max,
        reason: reason.map(str::to_owned),
        dry_run,
        rate: None,
    }
}

async fn redrive(stack: &Stack, args: &RedriveArgs) -> (Result<usize, DlqError>, String) {
    let mut out = Vec::new();
    let result = dlq::redrive_until(
        &stack.settings(&[]),
        args,
        &mut out,
        &CancellationToken::new(),
    )
    .await;
    (result, String::from_utf8(out).expect("utf-8 output"))
}

/// The `moved` (or `would move`) line of a letter.
fn line(what: &str, letter: &Letter) -> String {
    format!(
        "{what}\t{}\t{}\t{}",
        letter.id,
        letter.reason.unwrap_or(dlq::NO_REASON),
        letter.object
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_shows_every_message_with_its_reason_detail_object_and_age_and_consumes_nothing() {
    let (stack, letters) = stack_with_dead_letters("peek").await;
    let mut out = Vec::new();

    let shown = dlq::peek_until(
        &stack.settings(&[]),
        10,
        &mut out,
        &CancellationToken::new(),
    )
    .await
    .expect("peek");

    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(shown, 4, "{out}");
    let blocks: Vec<&str> = out.split("\n\n").collect();
    for letter in &letters {
        let block = blocks
            .iter()
            .find(|b| b.starts_with(&letter.id))
            .unwrap_or_else(|| panic!("no block for {}: {out}", letter.id));
        let reason = letter.reason.unwrap_or(dlq::NO_REASON);
        assert!(block.contains(&format!("  reason:  {reason}\n")), "{block}");
        assert!(
            block.contains(&format!("  object:  {}\n", letter.object)),
            "{block}"
        );
        let age = block
            .lines()
            .find_map(|l| l.strip_prefix("  age:     "))
            .unwrap_or_else(|| panic!("no age: {block}"));
        assert!(
            age.split(' ')
                .next()
                .is_some_and(|a| a.ends_with('s') && a.len() <= 3),
            "seconds old: {age}"
        );
        if letter.reason.is_some() {
            assert!(age.contains("failed at 2024-05-01T00:06:00Z"), "{age}");
        }
    }
    assert!(
        out.contains("  detail:  no subscription for bucket gone-bucket\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("s3://{}/{KEY}b.json.gz", stack.bucket)),
        "{out}"
    );
    assert!(out.contains(dlq::UNDECODABLE), "{out}");
    assert!(
        out.trim_end().ends_with(&format!(
            "4 message(s) shown; {} holds about 4",
            stack.queues.dlq_url
        )),
        "{out}"
    );
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 4);
    assert_eq!(
        bodies(&visible(&stack, &stack.queues.dlq_url).await),
        bodies_of(&letters),
        "every message is visible again at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_with_a_max_shows_that_many_and_releases_them() {
    let (stack, letters) = stack_with_dead_letters("peekmax").await;
    let mut out = Vec::new();

    let shown = dlq::peek_until(&stack.settings(&[]), 2, &mut out, &CancellationToken::new())
        .await
        .expect("peek");

    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(shown, 2, "{out}");
    assert_eq!(out.matches("  reason:  ").count(), 2, "{out}");
    assert!(out.contains("2 message(s) shown;"), "{out}");
    assert_eq!(
        bodies(&visible(&stack, &stack.queues.dlq_url).await),
        bodies_of(&letters)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_redrive_lists_what_it_would_move_and_moves_nothing() {
    let (stack, letters) = stack_with_dead_letters("dryrun").await;

    let (result, out) = redrive(&stack, &args(None, None, true)).await;

    assert_eq!(result.expect("dry run"), 4, "{out}");
    for letter in &letters {
        assert!(out.contains(&line("would move", letter)), "{out}");
    }
    assert!(
        out.contains("dry run: would move 4, skipped 0; nothing was moved"),
        "{out}"
    );
    assert_eq!(stack.aws.queue_depth(&stack.queues.url).await, 0);
    assert_eq!(
        bodies(&visible(&stack, &stack.queues.dlq_url).await),
        bodies_of(&letters)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_for_one_reason_moves_only_that_message_with_its_body_unchanged() {
    let (stack, letters) = stack_with_dead_letters("reason").await;

    let (result, out) = redrive(&stack, &args(None, Some("unknown_bucket"), false)).await;

    assert_eq!(result.expect("redrive"), 1, "{out}");
    let moved = &letters[0];
    assert!(
        out.contains(&format!("{}\n", line("moved", moved))),
        "{out}"
    );
    assert!(out.contains("moved 1, skipped 3, failed 0"), "{out}");
    let source = visible(&stack, &stack.queues.url).await;
    assert_eq!(source.len(), 1, "{source:?}");
    let (body, attributes) = &source[0];
    assert_eq!(body, &moved.body, "the body is moved byte for byte");
    assert!(
        attributes.keys().all(|k| k == dlq::REDRIVEN_AT),
        "no failure attributes go back: {attributes:?}"
    );
    assert!(attributes.contains_key(dlq::REDRIVEN_AT), "{attributes:?}");
    assert_eq!(
        bodies(&visible(&stack, &stack.queues.dlq_url).await),
        bodies_of(&letters[1..]),
        "the others stay, visible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_with_max_one_moves_exactly_one_message() {
    let (stack, letters) = stack_with_dead_letters("maxone").await;

    let (result, out) = redrive(&stack, &args(Some(1), None, false)).await;

    assert_eq!(result.expect("redrive"), 1, "{out}");
    assert_eq!(out.matches("moved\t").count(), 1, "{out}");
    let source = bodies(&visible(&stack, &stack.queues.url).await);
    let left = bodies(&visible(&stack, &stack.queues.dlq_url).await);
    assert_eq!(source.len(), 1);
    assert_eq!(left.len(), 3);
    assert_eq!(
        source.union(&left).cloned().collect::<BTreeSet<_>>(),
        bodies_of(&letters)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_without_a_filter_moves_everything_and_empties_the_dlq() {
    let (stack, letters) = stack_with_dead_letters("all").await;

    let (result, out) = redrive(&stack, &args(None, None, false)).await;

    assert_eq!(result.expect("redrive"), 4, "{out}");
    for letter in &letters {
        assert!(out.contains(&line("moved", letter)), "{out}");
    }
    assert!(out.contains("moved 4, skipped 0, failed 0"), "{out}");
    assert_eq!(
        bodies(&visible(&stack, &stack.queues.url).await),
        bodies_of(&letters)
    );
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_redrive_finishes_its_current_message_and_releases_the_rest() {
    let (stack, letters) = stack_with_dead_letters("stopped").await;
    let stop = CancellationToken::new();
    let settings = stack.settings(&[]);
    let args = RedriveArgs {
        rate: Some(2.0),
        ..args(None, None, false)
    };
    let canceller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            stop.cancel();
        })
    };
    let mut out = Vec::new();

    let moved = dlq::redrive_until(&settings, &args, &mut out, &stop)
        .await
        .expect("redrive");

    canceller.await.expect("canceller");
    let out = String::from_utf8(out).expect("utf-8");
    assert!((1..4).contains(&moved), "moved {moved}: {out}");
    assert!(
        out.contains(&format!("interrupted: moved {moved},")),
        "{out}"
    );
    let source = bodies(&visible(&stack, &stack.queues.url).await);
    let left = bodies(&visible(&stack, &stack.queues.dlq_url).await);
    assert_eq!(source.len(), moved);
    assert_eq!(
        left.len(),
        4 - moved,
        "what was not moved is visible in the DLQ at once"
    );
    assert_eq!(
        source.union(&left).cloned().collect::<BTreeSet<_>>(),
        bodies_of(&letters),
        "nothing lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_queue_url_or_a_dead_letter_queue_the_commands_say_what_is_missing() {
    let stack = Stack::new("missing", 5, None).await;
    let (plain, _) = stack.aws.create_queue("no-redrive-policy").await;
    let mut out = Vec::new();

    let no_url = dlq::peek_until(
        &stack.settings(&[("CTC__SQS__QUEUE_URL", "")]),
        10,
        &mut out,
        &CancellationToken::new(),
    )
    .await;
    let no_dlq = dlq::redrive_until(
        &stack.settings(&[("CTC__SQS__QUEUE_URL", &plain)]),
        &args(None, None, false),
        &mut out,
        &CancellationToken::new(),
    )
    .await;
    let bad_rate = dlq::redrive_until(
        &stack.settings(&[]),
        &RedriveArgs {
            rate: Some(0.0),
            ..args(None, None, false)
        },
        &mut out,
        &CancellationToken::new(),
    )
    .await;

    let no_url = no_url.expect_err("no queue URL");
    assert!(matches!(no_url, DlqError::NoQueueUrl), "{no_url:?}");
    assert!(no_url.to_string().contains("sqs.queue_url"), "{no_url}");
    let no_dlq = no_dlq.expect_err("no DLQ");
    assert!(
        matches!(&no_dlq, DlqError::NoDlq { queue } if *queue == plain),
        "{no_dlq:?}"
    );
    assert!(no_dlq
        .to_string()
        .contains("no RedrivePolicy and sqs.dlq_url is empty"));
    assert!(
        matches!(bad_rate, Err(DlqError::BadRate(_))),
        "{bad_rate:?}"
    );
    assert!(
        out.is_empty(),
        "nothing printed: {}",
        String::from_utf8_lossy(&out)
    );
}

/// The binary with the stack's environment.
fn binary(stack: &Stack, args: &[&str]) -> Command {
    crate::support::binary::command(args, stack.env(&[]))
}

async fn run_binary(stack: &Stack, args: &[&str]) -> std::process::Output {
    let mut command = binary(stack, args);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task")
        .expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_peeks_then_redrives_one_reason_and_exits_zero() {
    let (stack, letters) = stack_with_dead_letters("binary").await;

    let peek = run_binary(&stack, &["dlq", "peek"]).await;
    let redrive = run_binary(&stack, &["dlq", "redrive", "--reason", "corrupt_object"]).await;

    let peek_out = String::from_utf8_lossy(&peek.stdout);
    assert!(
        peek.status.success(),
        "{peek_out}{}",
        String::from_utf8_lossy(&peek.stderr)
    );
    for letter in &letters {
        assert!(
            peek_out.contains(&format!("{}\n  reason:  ", letter.id)),
            "{peek_out}"
        );
    }
    assert!(peek_out.contains("4 message(s) shown;"), "{peek_out}");
    let redrive_out = String::from_utf8_lossy(&redrive.stdout);
    assert!(
        redrive.status.success(),
        "{redrive_out}{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    assert!(
        redrive_out.contains(&line("moved", &letters[1])),
        "{redrive_out}"
    );
    assert!(
        redrive_out.contains("moved 1, skipped 3, failed 0"),
        "{redrive_out}"
    );
    assert_eq!(
        bodies(&visible(&stack, &stack.queues.url).await),
        bodies_of([&letters[1]])
    );
    assert_eq!(stack.aws.queue_depth(&stack.queues.dlq_url).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_stops_a_redrive_on_sigint_after_the_message_it_was_moving() {
    let (stack, letters) = stack_with_dead_letters("sigint").await;
    let mut child = binary(&stack, &["dlq", "redrive", "--rate", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the binary");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let first = lines_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a first line");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the redrive did not stop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    reader.join().expect("reader");
    let rest: Vec<String> = lines_rx.try_iter().collect();

    assert!(status.success());
    assert!(exit.success(), "{exit:?}");
    assert!(first.starts_with("moved\t"), "{first}");
    let moved = 1 + rest.iter().filter(|l| l.starts_with("moved\t")).count();
    assert!(moved < 4, "stopped early: {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with(&format!("interrupted: moved {moved},"))),
        "{rest:?}"
    );
    let source = bodies(&visible(&stack, &stack.queues.url).await);
    let left = bodies(&visible(&stack, &stack.queues.dlq_url).await);
    assert_eq!((source.len(), left.len()), (moved, 4 - moved));
    assert_eq!(
        source.union(&left).cloned().collect::<BTreeSet<_>>(),
        bodies_of(&letters)
    );
}
