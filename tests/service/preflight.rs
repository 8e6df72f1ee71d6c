//! `cloudtrail-changes check` and the daemon's start-up check against moto: a good setup
//! passes, and each thing an operator gets wrong (missing queue, no RedrivePolicy, a DLQ that
//! keeps messages shorter than its queue, a tiny visibility timeout, an unreachable endpoint, a
//! missing table, a role that refuses our external ID) fails with a line that says how to fix
//! it; the real binary exits 0 or 1 accordingly.

use crate::support::moto::ACCOUNT_ID;
use crate::support::stack::{set_aws_env, Stack};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;
use cloudtrail_changes::app::Parts;
use cloudtrail_changes::commands::preflight::{self, Problem, Summary};
use cloudtrail_changes::settings::{self, Settings};
use cloudtrail_changes::subscriptions::validate;
use serde_json::json;
use std::collections::HashMap;

const API_KEY: &str = "0123456789abcdef0123456789abcdef";
const APP_KEY: &str = "fedcba9876543210fedcba9876543210";
/// A data key for the store, so that a good setup has no warning about keys in clear.
const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const FOURTEEN_DAYS: &str = "1209600";

/// `check`'s output and whether it passed.
async fn check(settings: &Settings, subscriptions: bool) -> (bool, String) {
    let mut out = Vec::new();
    let passed = preflight::check(settings, subscriptions, &mut out)
        .await
        .expect("writing to a Vec cannot fail");
    (passed, String::from_utf8(out).expect("UTF-8 output"))
}

/// [`preflight::check_with`] with these AWS settings.
async fn check_with(
    settings: &Settings,
    aws: &SdkConfig,
    subscriptions: bool,
) -> (Summary, String) {
    let mut out = Vec::new();
    let summary = preflight::check_with(settings, aws, subscriptions, &mut out)
        .await
        .expect("writing to a Vec cannot fail");
    (summary, String::from_utf8(out).expect("UTF-8 output"))
}

fn has_line(output: &str, start: &str) -> bool {
    output.lines().any(|l| l.starts_with(start))
}

fn line<'a>(output: &'a str, start: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{output}"))
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
}

async fn set_attribute(stack: &Stack, url: &str, name: QueueAttributeName, value: &str) {
    stack
        .aws
        .sqs
        .set_queue_attributes()
        .queue_url(url)
        .attributes(name.clone(), value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("SetQueueAttributes {name} on {url}: {e:?}"));
}

/// A retry schedule that covers hours with the stack's maxReceiveCount of 5, so `check` has no
/// `retry schedule` warning (the stack's own 1 s backoff covers seconds).
const LONG_BACKOFF: (&str, &str) = ("CTC__WORKER__RETRY_BACKOFF_SECONDS", "3600");

/// A stack whose DLQ keeps messages 14 days and whose store seals keys: nothing to warn about.
async fn good_stack(name: &str) -> Stack {
    let stack = Stack::new(name, 5, None).await;
    let dlq = stack.queues.dlq_url.clone();
    set_attribute(
        &stack,
        &dlq,
        QueueAttributeName::MessageRetentionPeriod,
        FOURTEEN_DAYS,
    )
    .await;
    stack
}

fn good_settings(stack: &Stack, extra: &[(&str, &str)]) -> Settings {
    let mut all = vec![
        ("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", ENCRYPTION_KEY),
        LONG_BACKOFF,
    ];
    all.extend_from_slice(extra);
    stack.settings(&all)
}

/// Saves a subscription straight into the store named by `settings`.
async fn subscribe(settings: &Settings, bucket: &str, role_arn: &str, external_id: &str) {
    let parts = Parts::open(settings).await.expect("the store opens");
    let request = validate::subscribe_request(&json!({
        "apiKey": API_KEY,
        "appKey": APP_KEY,
        "bucket_name": bucket,
        "bucket_region": "us-east-1",
        "iam_role_arn": role_arn,
        "iam_role_external_id": external_id,
    }))
    .expect("a valid subscription");
    parts
        .subscriptions
        .subscribe(&request, 1_700_000_000)
        .await
        .expect("subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_passes_with_an_ok_line_for_every_check() {
    let stack = good_stack("pf-good").await;
    let settings = good_settings(&stack, &[]);
    subscribe(&settings, &stack.bucket, &role("Reader"), "ext-1").await;

    let (passed, output) = check(&settings, true).await;
    let (_, without_roles) = check(&settings, false).await;

    assert!(passed, "{output}");
    let (summary, lines) = output
        .trim_end()
        .lines()
        .collect::<Vec<_>>()
        .split_last()
        .map(|(s, l)| (*s, l.to_vec()))
        .expect("lines");
    assert!(
        summary.ends_with(" checks, 0 failed, 0 warnings"),
        "{output}"
    );
    assert!(lines.iter().all(|l| l.starts_with("ok   ")), "{output}");
    let url = &stack.queues.url;
    let dlq = &stack.queues.dlq_url;
    for expected in [
        format!("ok   sqs.queue_url: {url}"),
        "ok   AWS credentials: arn:aws:sts::123456789012:user/moto".to_owned(),
        format!("ok   queue {url}: reachable"),
        format!(
            "ok   redrive policy: to {} after 5 receives",
            stack.queues.dlq_arn
        ),
        "ok   maxReceiveCount: 5: a failing message is retried 4 times".to_owned(),
        format!(
            "ok   dead-letter queue {dlq}: reachable, keeps messages 14 days (the queue 4 days)"
        ),
        "ok   visibility timeout: 30 s (the heartbeat extends it every 15 s)".to_owned(),
        "ok   long polling: receives wait up to 1 s".to_owned(),
        format!(
            "ok   subscription store {}: reachable, 1 subscription",
            settings.subscriptions.store
        ),
        "ok   subscription keys: sealed".to_owned(),
        format!(
            "ok   bigpanda.base_url: changes go to {}/data/changes",
            stack.bigpanda.base_url()
        ),
        format!(
            "ok   role of bucket {}: {} assumed with its external ID",
            stack.bucket,
            role("Reader")
        ),
    ] {
        assert!(
            has_line(&output, &expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    assert!(
        !output.contains(API_KEY) && !output.contains(APP_KEY),
        "{output}"
    );
    assert!(!without_roles.contains("role of bucket"), "{without_roles}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_fails_naming_the_queue_and_the_fix() {
    let stack = good_stack("pf-missing").await;
    let missing = format!("{}/{ACCOUNT_ID}/no-such-queue", stack.moto.endpoint());
    let settings = good_settings(&stack, &[("CTC__SQS__QUEUE_URL", &missing)]);

    let (passed, output) = check(&settings, false).await;

    assert!(!passed, "{output}");
    let fail = line(&output, &format!("FAIL queue {missing}:"));
    assert!(fail.contains("it does not exist"), "{fail}");
    assert!(
        fail.contains("Fix: create the queue, or set sqs.queue_url (CTC__SQS__QUEUE_URL)"),
        "{fail}"
    );
    assert!(has_line(&output, "skip dead-letter queue"), "{output}");
    assert!(output.contains("checks, 1 failed,"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_without_a_redrive_policy_fails_unless_the_daemon_has_a_dlq_to_move_to() {
    let stack = good_stack("pf-bare").await;
    let (bare, bare_arn) = stack.aws.create_queue("pf-bare-alone").await;
    let settings = good_settings(&stack, &[("CTC__SQS__QUEUE_URL", &bare)]);
    let with_dlq = good_settings(
        &stack,
        &[
            ("CTC__SQS__QUEUE_URL", &bare),
            ("CTC__SQS__DLQ_URL", &stack.queues.dlq_url),
        ],
    );

    let (passed, output) = check(&settings, false).await;
    let (passed_with_dlq, output_with_dlq) = check(&with_dlq, false).await;

    assert!(!passed, "{output}");
    let fail = line(&output, "FAIL redrive policy:");
    assert!(
        fail.contains("the queue has no RedrivePolicy and sqs.dlq_url is not set"),
        "{fail}"
    );
    assert!(
        fail.contains(&format!(
            r#"Fix: create a dead-letter queue that keeps messages 14 days and set the queue's RedrivePolicy to {{"deadLetterTargetArn":"{bare_arn}-dlq","maxReceiveCount":5}}"#
        )),
        "{fail}"
    );
    assert!(
        passed_with_dlq,
        "a warning does not fail: {output_with_dlq}"
    );
    assert!(
        has_line(&output_with_dlq, "warn redrive policy: the queue has no RedrivePolicy: the daemon moves failed messages to sqs.dlq_url itself"),
        "{output_with_dlq}"
    );
    assert!(
        has_line(
            &output_with_dlq,
            &format!("ok   dead-letter queue {}: reachable", stack.queues.dlq_url)
        ),
        "{output_with_dlq}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_that_keeps_messages_shorter_than_its_queue_fails() {
    let stack = Stack::new("pf-retention", 5, None).await;
    let dlq = stack.queues.dlq_url.clone();
    set_attribute(
        &stack,
        &dlq,
        QueueAttributeName::MessageRetentionPeriod,
        "60",
    )
    .await;
    let settings = good_settings(&stack, &[]);

    let (passed, output) = check(&settings, false).await;

    assert!(!passed, "{output}");
    let fail = line(&output, &format!("FAIL dead-letter queue {dlq}:"));
    assert!(
        fail.contains("keeps messages 1 min but the queue keeps them 4 days"),
        "{fail}"
    );
    assert!(
        fail.contains("Fix: set the dead-letter queue's MessageRetentionPeriod to 1209600 (14 days, the maximum)"),
        "{fail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_that_keeps_messages_as_long_as_its_queue_is_a_warning() {
    let stack = Stack::new("pf-equal", 5, None).await;
    let settings = good_settings(&stack, &[]);

    let (passed, output) = check(&settings, false).await;

    assert!(passed, "{output}");
    assert!(
        has_line(
            &output,
            &format!(
                "warn dead-letter queue {}: keeps messages 4 days, no longer than the queue",
                stack.queues.dlq_url
            )
        ),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visibility_timeout_of_five_seconds_fails() {
    let stack = good_stack("pf-visibility").await;
    let url = stack.queues.url.clone();
    set_attribute(&stack, &url, QueueAttributeName::VisibilityTimeout, "5").await;
    let settings = good_settings(&stack, &[]);

    let (passed, output) = check(&settings, false).await;

    assert!(!passed, "{output}");
    let fail = line(&output, "FAIL visibility timeout:");
    assert!(
        fail.contains("5 s is too short: the heartbeat extends it every 2 s"),
        "{fail}"
    );
    assert!(
        fail.contains("Fix: set the queue's VisibilityTimeout to 60"),
        "{fail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_with_a_reachability_message() {
    set_aws_env();
    let port = crate::support::free_addr().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let queue = format!("{endpoint}/{ACCOUNT_ID}/cloudtrail-changes");
    let dir = std::env::temp_dir().join(format!(
        "ctc-preflight-closed-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("state dir");
    let env: HashMap<String, String> = [
        ("CTC__AWS__ENDPOINT_URL", endpoint.clone()),
        ("CTC__AWS__REGION", "us-east-1".to_owned()),
        ("CTC__SQS__QUEUE_URL", queue.clone()),
        (
            "CTC__SUBSCRIPTIONS__STORE",
            format!("sqlite:{}", dir.join("s.db").display()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = settings::load_with_env(None, env).expect("settings");

    let (passed, output) = check(&settings, false).await;
    let _ = std::fs::remove_dir_all(&dir);

    assert!(!passed, "{output}");
    let fail = line(&output, &format!("FAIL queue {queue}:"));
    assert!(
        fail.contains(&format!("cannot reach SQS at {endpoint}")),
        "{fail}"
    );
    assert!(fail.contains("Connection refused"), "{fail}");
    assert!(
        fail.contains("Fix: check aws.endpoint_url (CTC__AWS__ENDPOINT_URL"),
        "{fail}"
    );
    let sts = line(&output, "FAIL AWS credentials:");
    assert!(
        sts.contains(&format!("cannot reach STS at {endpoint}")),
        "{sts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dynamodb_table_says_to_run_init_table() {
    let stack = good_stack("pf-table").await;
    let settings = good_settings(
        &stack,
        &[("CTC__SUBSCRIPTIONS__STORE", "dynamodb:ctc-no-such-table")],
    );

    let (passed, output) = check(&settings, false).await;

    assert!(!passed, "{output}");
    let fail = line(
        &output,
        "FAIL subscription store dynamodb:ctc-no-such-table:",
    );
    assert!(
        fail.contains("run `cloudtrail-changes subscriptions init-table`"),
        "{fail}"
    );
}

/// One IAM query-protocol call to moto, before auth is on (the signature is not checked then).
async fn iam(endpoint: &str, params: &[(&str, &str)]) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let body = params
        .iter()
        .chain(&[("Version", "2010-05-08")])
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&");
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("IAM call");
    let status = response.status();
    let text = response.text().await.expect("IAM answer");
    assert!(status.is_success(), "IAM {params:?}: {status} {text}");
    text
}

fn xml_value(xml: &str, tag: &str) -> String {
    let start = xml
        .find(&format!("<{tag}>"))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + tag.len()
        + 2;
    let end = xml[start..].find('<').expect("closing tag") + start;
    xml[start..end].to_owned()
}

/// An IAM user allowed everything, and a role it may assume only with `external_id`: the
/// daemon's identity and a customer's role, as on AWS. Returns the user's SDK config.
async fn daemon_user_and_role(stack: &Stack, role_name: &str, external_id: &str) -> SdkConfig {
    let endpoint = stack.moto.endpoint();
    iam(
        &endpoint,
        &[("Action", "CreateUser"), ("UserName", "ctc-daemon")],
    )
    .await;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    iam(
        &endpoint,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "ctc-daemon"),
            ("PolicyName", "everything"),
            ("PolicyDocument", &policy.to_string()),
        ],
    )
    .await;
    let trust = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT_ID}:user/ctc-daemon")},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
    }]});
    iam(
        &endpoint,
        &[
            ("Action", "CreateRole"),
            ("RoleName", role_name),
            ("AssumeRolePolicyDocument", &trust.to_string()),
        ],
    )
    .await;
    let key = iam(
        &endpoint,
        &[("Action", "CreateAccessKey"), ("UserName", "ctc-daemon")],
    )
    .await;
    let credentials = aws_sdk_sts::config::Credentials::new(
        xml_value(&key, "AccessKeyId"),
        xml_value(&key, "SecretAccessKey"),
        None,
        None,
        "iam-user",
    );
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_subscriptions_a_role_that_refuses_our_external_id_is_reported_for_its_bucket() {
    let stack = good_stack("pf-roles").await;
    let settings = good_settings(&stack, &[]);
    let aws = daemon_user_and_role(&stack, "TrailReader", "right-external-id").await;
    subscribe(
        &settings,
        "pf-roles-good",
        &role("TrailReader"),
        "right-external-id",
    )
    .await;
    subscribe(
        &settings,
        "pf-roles-wrong",
        &role("TrailReader"),
        "wrong-external-id",
    )
    .await;
    stack.moto.enable_auth();

    let (summary, output) = check_with(&settings, &aws, true).await;

    assert_eq!(summary.failed, 1, "{output}");
    assert!(!summary.passed());
    assert!(
        has_line(
            &output,
            "ok   AWS credentials: arn:aws:iam::123456789012:user/ctc-daemon"
        ),
        "the daemon's own calls pass with auth on: {output}"
    );
    assert!(
        has_line(
            &output,
            &format!(
                "ok   role of bucket pf-roles-good: {} assumed with its external ID",
                role("TrailReader")
            )
        ),
        "{output}"
    );
    let fail = line(&output, "FAIL role of bucket pf-roles-wrong:");
    assert!(
        fail.contains(&format!(
            "AWS refused to let us assume {} (AccessDenied",
            role("TrailReader")
        )),
        "{fail}"
    );
    assert!(
        fail.contains(
            r#"Fix: the role's owner must let arn:aws:iam::123456789012:user/ctc-daemon assume"#
        ) && fail.contains(r#"sts:ExternalId = "wrong-external-id""#),
        "{fail}"
    );
    assert!(
        !output.contains(API_KEY) && !output.contains(APP_KEY),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refuses_a_missing_queue_with_a_message_that_says_how_to_fix_it() {
    let stack = Stack::new("pf-startup", 5, None).await;
    let good = stack.settings(&[]);
    let missing = format!("{}/{ACCOUNT_ID}/gone", stack.moto.endpoint());
    let bad = stack.settings(&[("CTC__SQS__QUEUE_URL", &missing)]);
    let unset = stack.settings(&[("CTC__SQS__QUEUE_URL", "")]);
    let aws = cloudtrail_changes::aws::credentials::sdk_config(&good.aws).await;

    let ok = preflight::startup(&good, &aws).await;
    let gone = preflight::startup(&bad, &aws)
        .await
        .expect_err("a missing queue");
    let not_set = preflight::startup(&unset, &aws)
        .await
        .expect_err("no queue URL");

    assert_eq!(ok, Ok(()));
    assert_eq!(gone.problem, Problem::NotFound);
    assert!(!gone.is_transient());
    let message = gone.to_string();
    assert!(
        message.starts_with(&format!("queue {missing}: it does not exist")),
        "{message}"
    );
    assert!(
        message.contains("Fix: create the queue, or set sqs.queue_url (CTC__SQS__QUEUE_URL)"),
        "{message}"
    );
    assert_eq!(not_set.problem, Problem::Settings);
    assert!(
        not_set.to_string().starts_with("sqs.queue_url: not set"),
        "{not_set}"
    );
    assert!(
        not_set.to_string().contains("CTC__SQS__QUEUE_URL"),
        "{not_set}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_command_exits_zero_for_a_good_setup_and_one_for_a_bad_one() {
    let stack = good_stack("pf-binary").await;
    let settings = good_settings(&stack, &[]);
    subscribe(&settings, &stack.bucket, &role("Reader"), "ext-1").await;
    let missing = format!("{}/{ACCOUNT_ID}/gone", stack.moto.endpoint());
    let run = |extra: &[(&str, &str)], args: &[&str]| {
        let mut env = vec![
            ("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", ENCRYPTION_KEY),
            LONG_BACKOFF,
        ];
        env.extend_from_slice(extra);
        crate::support::binary::command(&[&["check"], args].concat(), stack.env(&env))
            .output()
            .expect("run the binary")
    };

    let good = run(&[], &["--subscriptions"]);
    let bad = run(&[("CTC__SQS__QUEUE_URL", &missing)], &[]);

    let good_out = String::from_utf8_lossy(&good.stdout);
    let bad_out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{good_out}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        good_out
            .trim_end()
            .ends_with(" checks, 0 failed, 0 warnings"),
        "{good_out}"
    );
    assert!(
        has_line(&good_out, &format!("ok   role of bucket {}", stack.bucket)),
        "{good_out}"
    );
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{bad_out}{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(
        has_line(
            &bad_out,
            &format!("FAIL queue {missing}: it does not exist")
        ),
        "{bad_out}"
    );
    assert!(
        bad_out.trim_end().ends_with("1 failed, 0 warnings"),
        "{bad_out}"
    );
}
