//! Tenancy: keys sealed by default (`run` refuses to start without a data key unless the
//! operator deliberately allows keys in clear), and a bucket read only as its owner's: every
//! GetObject carries `ExpectedBucketOwner`, checked by a proxy that plays S3's rule.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::free_addr;
use crate::support::proxy::{Fault, Match, Proxy};
use crate::support::stack::Stack;

/// The data key every service test's daemon seals keys with (`Stack::env`).
pub const DATA_KEY: &str = "dGVuYW5jeS10ZXN0cy1kYXRhLWtleS0zMi1ieXRlcyE=";

fn binary(args: &[&str], env: &HashMap<String, String>, log: &Path) -> Command {
    let mut command = crate::support::binary::command(args, env);
    command
        .env("CTC__LOG__FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("the log file"));
    command
}

/// `run` (or `serve-api`) without a data key: it exits at once, naming both settings.
async fn refused(stack: &Stack, command: &str) -> String {
    let mut env = stack.env(&[]);
    env.remove("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY");
    let log = stack.dir.join(format!("{command}-refused.log"));
    let mut child = binary(&[command], &env, &log).spawn().expect("starts");
    // A refusal is immediate; a daemon that is still up after 30 s has started (a guard
    // against hanging, not a measurement).
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(
        status.is_some_and(|s| !s.success()),
        "{command} started without a key: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_serve_api_refuse_to_start_without_an_encryption_key() {
    let stack = Stack::new("sealed-default", 3, None).await;
    for command in ["run", "serve-api"] {
        let text = refused(&stack, command).await;
        for named in [
            "subscriptions.encryption_key",
            "subscriptions.allow_plaintext_keys",
            "openssl rand -base64 32",
        ] {
            assert!(text.contains(named), "{command}: {named} in {text}");
        }
    }
    assert!(
        !stack.dir.join("subscriptions.db").exists(),
        "nothing was written before the refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_allow_plaintext_keys_run_starts_and_warns() {
    let stack = Stack::new("plaintext-allowed", 3, None).await;
    let log = stack.dir.join("plaintext.log");
    // A port picked free may be taken before the daemon binds it: try again then.
    for _attempt in 0..3 {
        let (api, ops) = (free_addr(), free_addr());
        let (api_text, ops_text) = (api.to_string(), ops.to_string());
        let mut env = stack.env(&[
            ("CTC__SUBSCRIPTIONS__ALLOW_PLAINTEXT_KEYS", "true"),
            ("CTC__API__LISTEN", &api_text),
            ("CTC__ADMIN__LISTEN", &ops_text),
        ]);
        env.remove("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY");
        let mut child = binary(&["run"], &env, &log).spawn().expect("starts");
        let started = Instant::now();
        let listening = loop {
            if tokio::net::TcpStream::connect(api).await.is_ok() {
                break true;
            }
            if child.try_wait().expect("try_wait").is_some() {
                break false;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run never listened: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).expect("the log");
        if !listening {
            assert!(text.contains("cannot listen"), "run exited: {text}");
            continue;
        }
        let warning = text
            .lines()
            .find(|l| l.contains("allow_plaintext_keys"))
            .unwrap_or_else(|| panic!("no warning in {text}"));
        assert!(
            warning.contains("WARN") && warning.contains("stored in clear"),
            "{warning}"
        );
        return;
    }
    panic!("run could not bind a free port in 3 attempts");
}

/// The account that owns the test bucket, as the proxy's S3 rule has it.
const OWNER: &str = "218007301253";
const FILE: &str = "218007301253_CloudTrail_us-east-1_20230710T1210Z_6CICdbJQM3beT7n3.json.gz";

/// Every GetObject of `bucket` as (path, ExpectedBucketOwner header) that went through the
/// proxy; the rule added answers like S3 does: 403 AccessDenied when the header is absent or
/// names another account than `owner` (moto does not enforce the header).
fn play_s3_owner_rule(
    proxy: &Proxy,
    bucket: &str,
    owner: &str,
) -> Arc<Mutex<Vec<(String, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (record, prefix, owner) = (Arc::clone(&seen), format!("/{bucket}/"), owner.to_owned());
    proxy.inject(
        Match::when(move |request| {
            if request.method != reqwest::Method::GET || !request.path.starts_with(&prefix) {
                return false;
            }
            let header = request
                .headers
                .get("x-amz-expected-bucket-owner")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let refused = header != owner;
            record
                .lock()
                .expect("the record")
                .push((request.path.clone(), header));
            refused
        }),
        usize::MAX,
        Fault::aws_error(403, "AccessDenied"),
    );
    seen
}

fn subscribe_body(bucket: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    subscribe_as("owner", OWNER, bucket, extra)
}

/// A subscribe request with `who`'s keys and a role in `account`.
fn subscribe_as(
    who: &str,
    account: &str,
    bucket: &str,
    extra: &[(&str, &str)],
) -> serde_json::Value {
    let mut body = json!({
        "apiKey": format!("{who}-api-key-0123456789abcdef"),
        "appKey": format!("{who}-app-key-0123456789abcdef"),
        "bucket_name": bucket,
        "bucket_region": "us-east-1",
        "iam_role_arn": format!("arn:aws:iam::{account}:role/BigPandaCloudTrailReader"),
        "iam_role_external_id": "bp-external-id-1",
    });
    for (k, v) in extra {
        body[*k] = json!(v);
    }
    body
}

async fn post(api: SocketAddr, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{api}/v1/subscriptions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /v1/subscriptions");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_get_object_names_the_bucket_owner_and_a_wrong_owner_fails_the_sample_read() {
    let stack = Stack::new("owner", 3, None).await;
    let proxy = Proxy::start(&stack.moto.endpoint()).await;
    let seen = play_s3_owner_rule(&proxy, &stack.bucket, OWNER);
    let endpoint = proxy.endpoint();
    let daemon = stack
        .start(&[("CTC__AWS__ENDPOINT_URL", endpoint.as_str())])
        .await;
    let (sample, _) = stack.put_file_as(FILE, "AWSLogs/sample.json.gz").await;

    // A bucket_account_id that does not own the bucket: S3 refuses the sample read, 422.
    let wrong = subscribe_body(
        &stack.bucket,
        &[
            ("sample_key", &sample),
            ("bucket_account_id", "111122223333"),
        ],
    );
    let (status, answer) = post(daemon.api, &wrong).await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not owned by account 111122223333") && error.contains("bucket_account_id"),
        "{error}"
    );
    assert_eq!(answer["expected_bucket_owner"], "111122223333");

    // The role's account (the default) owns it: 201, recorded in the answer.
    let right = subscribe_body(&stack.bucket, &[("sample_key", &sample)]);
    let (status, answer) = post(daemon.api, &right).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["bucket_account_id"], OWNER);

    // The daemon's own GetObject names the owner too, so the changes flow.
    let (key, expected) = stack.put_file(FILE).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(60))
            .await,
        "{} of {} changes arrived; GetObjects: {:?}",
        stack.bigpanda.accepted().len(),
        expected.len(),
        seen.lock().expect("the record")
    );
    let seen = seen.lock().expect("the record").clone();
    let owners = |path_end: &str| -> Vec<String> {
        seen.iter()
            .filter(|(path, _)| path.split('?').next().unwrap_or("").ends_with(path_end))
            .map(|(_, owner)| owner.clone())
            .collect()
    };
    assert_eq!(
        owners("sample.json.gz"),
        ["111122223333", OWNER],
        "{seen:?}"
    );
    let daemon_reads = owners(FILE);
    assert!(!daemon_reads.is_empty(), "{key}: {seen:?}");
    assert!(daemon_reads.iter().all(|o| o == OWNER), "{seen:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reads_nothing_from_a_bucket_its_subscription_says_another_account_owns() {
    let stack = Stack::new("not-owner", 2, None).await;
    let proxy = Proxy::start(&stack.moto.endpoint()).await;
    let seen = play_s3_owner_rule(&proxy, &stack.bucket, OWNER);
    let endpoint = proxy.endpoint();
    let daemon = stack
        .start(&[("CTC__AWS__ENDPOINT_URL", endpoint.as_str())])
        .await;
    // Saved without a sample key: the role can be assumed, the owner is not checked yet.
    let body = subscribe_body(&stack.bucket, &[("bucket_account_id", "111122223333")]);
    let (status, answer) = post(daemon.api, &body).await;
    assert_eq!(status, 201, "{answer}");

    stack.put_file(FILE).await;
    let dead = stack.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(stack.bigpanda.all().is_empty(), "nothing was delivered");
    let seen = seen.lock().expect("the record").clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|(_, o)| o == "111122223333"), "{seen:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatters_pending_subscription_gives_way_to_the_owners_proof_and_a_verified_one_stays() {
    let stack = Stack::new("squat", 2, None).await;
    let proxy = Proxy::start(&stack.moto.endpoint()).await;
    play_s3_owner_rule(&proxy, &stack.bucket, OWNER);
    let endpoint = proxy.endpoint();
    let daemon = stack
        .start(&[("CTC__AWS__ENDPOINT_URL", endpoint.as_str())])
        .await;
    let bucket = stack.bucket.clone();

    // The squatter claims the bucket with a role of its own account and no proof: pending.
    let squat = subscribe_as("squatter", "999988887777", &bucket, &[]);
    let (status, answer) = post(daemon.api, &squat).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["state"], "pending");
    assert!(
        answer["verify"]
            .as_str()
            .unwrap_or_default()
            .contains("sample_key"),
        "{answer}"
    );

    // The owner without a proof is told how to take it over; with one, it does.
    let sample = "AWSLogs/sample.json.gz";
    stack
        .aws
        .put_object(&bucket, sample, b"not a log".to_vec())
        .await;
    let (status, answer) = post(daemon.api, &subscribe_body(&bucket, &[])).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("sample_key"),
        "{answer}"
    );
    let (status, answer) = post(
        daemon.api,
        &subscribe_body(&bucket, &[("sample_key", sample)]),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["state"], "verified");
    assert!(answer.get("verify").is_none(), "{answer}");

    // The owner's changes flow with the owner's keys.
    let (_, expected) = stack.put_file(FILE).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(60))
            .await,
        "{} of {} changes",
        stack.bigpanda.accepted().len(),
        expected.len()
    );
    let accepted = stack.bigpanda.accepted();
    assert!(
        accepted
            .iter()
            .all(|r| r.app_key.as_deref() == Some("owner-app-key-0123456789abcdef")),
        "every change went with the owner's keys"
    );

    // A verified subscription is not taken over, even by a request whose sample read works.
    let again = subscribe_as(
        "squatter",
        "999988887777",
        &bucket,
        &[("sample_key", sample), ("bucket_account_id", OWNER)],
    );
    let (status, answer) = post(daemon.api, &again).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("verified"),
        "{answer}"
    );
    let removed = reqwest::Client::new()
        .delete(format!("http://{}/v1/subscriptions", daemon.api))
        .header("content-type", "application/json")
        .body(
            json!({"apiKey": "squatter-api-key-0123456789abcdef", "bucket_name": bucket})
                .to_string(),
        )
        .send()
        .await
        .expect("DELETE");
    assert_eq!(removed.status().as_u16(), 404);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_subscription_is_verified_by_its_first_delivered_object() {
    let stack = Stack::new("first-delivery", 3, None).await;
    let daemon = stack.start(&[]).await;
    let (status, answer) = post(daemon.api, &subscribe_body(&stack.bucket, &[])).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["state"], "pending");
    let (_, expected) = stack.put_file(FILE).await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(expected.len(), Duration::from_secs(60))
            .await
    );
    daemon.stop().await;
    let settings = stack.settings(&[]);
    let mut out = Vec::new();
    cloudtrail_changes::commands::subscriptions::list(&settings, &mut out)
        .await
        .expect("list");
    let out = String::from_utf8(out).expect("UTF-8");
    assert!(out.contains("state=verified"), "{out}");
    assert!(out.contains(&format!("bucket_account={OWNER}")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_posts_gets_429s_and_never_more_sts_calls_at_once_than_configured() {
    const FLOOD: usize = 40;
    const PER_CLIENT: usize = 8;
    const AT_ONCE: usize = 2;
    const HOLD: Duration = Duration::from_millis(800);
    let stack = Stack::new("flood", 3, None).await;
    let proxy = Proxy::start(&stack.moto.endpoint()).await;
    // Every AssumeRole is held for HOLD before it reaches STS, and its arrival is recorded.
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&arrivals);
    proxy.inject(
        Match::when(move |request| {
            let assume = request.action().as_deref() == Some("AssumeRole");
            if assume {
                record.lock().expect("arrivals").push(Instant::now());
            }
            assume
        }),
        usize::MAX,
        Fault::Delay(HOLD),
    );
    let endpoint = proxy.endpoint();
    let (per_client, at_once) = (PER_CLIENT.to_string(), AT_ONCE.to_string());
    let daemon = stack
        .start(&[
            ("CTC__AWS__ENDPOINT_URL", endpoint.as_str()),
            ("CTC__API__WRITES_PER_CLIENT_PER_MINUTE", &per_client),
            ("CTC__API__MAX_CONCURRENT_ROLE_CHECKS", &at_once),
        ])
        .await;
    let body = subscribe_body(&stack.bucket, &[]).to_string();
    let client = reqwest::Client::new();
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        let request = client
            .post(format!("http://{}/v1/subscriptions", daemon.api))
            .header("content-type", "application/json")
            .body(body.clone());
        posts.spawn(async move {
            let answer = request.send().await.expect("POST");
            let retry_after = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            (answer.status().as_u16(), retry_after)
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = posts.join_next().await {
        let (status, retry_after) = joined.expect("the POST task");
        if status == 429 {
            assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
        }
        statuses.push(status);
    }
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    let passed: Vec<u16> = statuses.iter().copied().filter(|s| *s != 429).collect();
    println!("flood: {FLOOD} POSTs, {throttled} answered 429, passed {passed:?}");
    // The burst of one client is PER_CLIENT; a token or two may refill while the flood lands.
    assert!(throttled >= FLOOD - PER_CLIENT - 2, "{statuses:?}");
    assert!(
        passed.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );

    // Each STS call is held for HOLD, so with at most AT_ONCE in flight the call AT_ONCE
    // places later cannot arrive before one of them finished: at least HOLD later.
    let mut arrivals = arrivals.lock().expect("arrivals").clone();
    arrivals.sort();
    assert_eq!(
        arrivals.len(),
        passed.len(),
        "one STS call per admitted POST"
    );
    let gaps: Vec<Duration> = arrivals
        .windows(AT_ONCE + 1)
        .map(|w| w[AT_ONCE] - w[0])
        .collect();
    println!("flood: STS arrivals {AT_ONCE} places apart: {gaps:?}");
    assert!(
        gaps.iter().all(|g| *g >= HOLD),
        "more than {AT_ONCE} at once: {gaps:?}"
    );
    daemon.stop().await;
}

/// Runs a one-shot command of the binary with `env`; (exit code, stdout, stderr).
async fn one_shot(args: &[&str], env: &HashMap<String, String>) -> (Option<i32>, String, String) {
    let mut command = crate::support::binary::command(args, env);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task")
        .expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_rekey_rotates_the_store_to_the_new_key() {
    const NEW_KEY: &str = "bmV3LXRlbmFuY3ktZGF0YS1rZXktMzItYnl0ZXMhISE=";
    let stack = Stack::new("rekey", 3, None).await;
    let daemon = stack
        .start(&[("CTC__SUBSCRIPTIONS__VERIFY_ROLE", "false")])
        .await;
    let (status, answer) = post(daemon.api, &subscribe_body(&stack.bucket, &[])).await;
    assert_eq!(status, 201, "{answer}");
    daemon.stop().await;

    let only_new = stack.env(&[("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", NEW_KEY)]);
    let show = ["subscriptions", "show", stack.bucket.as_str()];
    let (code, _, stderr) = one_shot(&show, &only_new).await;
    assert_eq!(
        code,
        Some(1),
        "not readable with the new key alone yet: {stderr}"
    );

    let rotating = stack.env(&[
        ("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", NEW_KEY),
        ("CTC__SUBSCRIPTIONS__PREVIOUS_ENCRYPTION_KEYS", DATA_KEY),
    ]);
    let (code, _, stderr) = one_shot(&show, &rotating).await;
    assert_eq!(code, Some(0), "readable during the rotation: {stderr}");
    let (code, stdout, stderr) = one_shot(&["subscriptions", "rekey"], &rotating).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("re-sealed 1 subscriptions"), "{stdout}");

    let (code, stdout, stderr) = one_shot(&show, &only_new).await;
    assert_eq!(code, Some(0), "the new key alone opens it: {stderr}");
    assert!(stdout.contains("****cdef"), "{stdout}");

    let mut no_key = stack.env(&[]);
    no_key.remove("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY");
    let (code, _, stderr) = one_shot(&["subscriptions", "rekey"], &no_key).await;
    assert_ne!(code, Some(0));
    assert!(stderr.contains("subscriptions.encryption_key"), "{stderr}");
}
