//! `run` end to end: real CloudTrail files put into a moto bucket reach the BigPanda stand-in
//! through the real notification path, and every failure ends in delivery or in the DLQ with
//! its reason.

use crate::support::aws::{Aws, Queues, SnsDelivery};
use crate::support::bigpanda::{BigPanda, Reply};
use crate::support::moto::Moto;
use cloudtrail_changes::app::daemon::Daemon;
use cloudtrail_changes::settings::{self, Settings};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ACCOUNT: &str = "218007301253";
const API_KEY: &str = "0123456789abcdef0123456789abcdef";
const APP_KEY: &str = "fedcba9876543210fedcba9876543210";
const DATA: &str = "tests/data/cloudtrail/invictus-ir_aws_dataset";

/// Real files and how many changes `process` makes of each.
const FILES: [(&str, usize); 4] = [
    (
        "218007301253_CloudTrail_us-east-1_20230710T1215Z_YMDRJwtmC82bUwAo.json.gz",
        55,
    ),
    (
        "218007301253_CloudTrail_us-east-1_20230710T1210Z_6CICdbJQM3beT7n3.json.gz",
        42,
    ),
    (
        "218007301253_CloudTrail_us-east-1_20230710T1230Z_ZtUNbBkwAu98FPZb.json.gz",
        18,
    ),
    (
        "218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json.gz",
        8,
    ),
];

pub fn set_aws_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Every test sets the same values, so the race between test threads is harmless.
    ONCE.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(k, v);
        }
    });
}

fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The S3 key CloudTrail would give `file`.
fn cloudtrail_key(file: &str) -> String {
    format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2023/07/10/{file}")
}

/// What `process` prints for `file`, as JSON values, metadata key set to `key`.
fn expected_changes(file: &Path, bucket: &str, key: &str) -> Vec<Value> {
    let settings = settings::load_with_env(None, HashMap::new()).expect("defaults");
    let request = cloudtrail_changes::commands::process::Request {
        paths: vec![file.to_path_buf()],
        explain: false,
        bucket: Some(bucket.to_owned()),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let _ = cloudtrail_changes::commands::process::run(&settings, &request, &mut out, &mut err);
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).expect("json line");
            v["metadata"]["key"] = json!(key);
            v
        })
        .collect()
}

/// moto, the stand-in, a queue with its DLQ, a bucket notifying the queue, a state directory.
pub struct Stack {
    pub moto: Moto,
    pub aws: Aws,
    pub bigpanda: BigPanda,
    pub queues: Queues,
    pub bucket: String,
    pub dir: PathBuf,
}

impl Stack {
    pub async fn new(name: &str, max_receive_count: u32, delivery: Option<SnsDelivery>) -> Stack {
        set_aws_env();
        let moto = Moto::start();
        let aws = Aws::new(&moto.endpoint()).await;
        let bigpanda = BigPanda::start().await;
        let queues = aws.create_queue_with_dlq(name, max_receive_count, 30).await;
        let bucket = format!("{name}-trail");
        aws.create_bucket(&bucket).await;
        match delivery {
            Some(d) => {
                aws.subscribe_bucket_via_sns(&bucket, &queues.url, d).await;
            }
            None => {
                aws.notify_bucket_to_queue_directly(&bucket, &queues.url)
                    .await
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "ctc-daemon-{name}-{}-{}",
            std::process::id(),
            moto.port()
        ));
        std::fs::create_dir_all(&dir).expect("state dir");
        Stack {
            moto,
            aws,
            bigpanda,
            queues,
            bucket,
            dir,
        }
    }

    /// The daemon's environment: every setting the tests need, plus `extra`.
    pub fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let db = self.dir.join("subscriptions.db");
        let mut env: HashMap<String, String> = [
            ("CTC__AWS__ENDPOINT_URL", self.moto.endpoint()),
            ("CTC__AWS__REGION", "us-east-1".to_owned()),
            ("CTC__SQS__QUEUE_URL", self.queues.url.clone()),
            ("CTC__SQS__WAIT_TIME_SECONDS", "1".to_owned()),
            ("CTC__API__LISTEN", "127.0.0.1:0".to_owned()),
            ("CTC__ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
            (
                "CTC__SUBSCRIPTIONS__STORE",
                format!("sqlite:{}", db.display()),
            ),
            ("CTC__BIGPANDA__BASE_URL", self.bigpanda.base_url()),
            ("CTC__BIGPANDA__RATE_PER_MINUTE", "0".to_owned()),
            ("CTC__WORKER__RETRY_BACKOFF_SECONDS", "1".to_owned()),
            ("CTC__WORKER__CHANGE_RETRY_SECONDS", "5".to_owned()),
            // Unknown buckets go to the DLQ at once (nodrops.rs tests the grace).
            (
                "CTC__SUBSCRIPTIONS__UNKNOWN_BUCKET_GRACE_SECONDS",
                "0".to_owned(),
            ),
            ("CTC__LOG__LEVEL", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        env
    }

    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        settings::load_with_env(None, self.env(extra)).expect("test settings load")
    }

    /// Starts the daemon in this process.
    pub async fn start(&self, extra: &[(&str, &str)]) -> Running {
        let daemon = Daemon::build(self.settings(extra))
            .await
            .expect("daemon builds");
        let api = daemon.api_addr().expect("API enabled");
        let ops = daemon.ops_addr().expect("ops listener");
        let stop = CancellationToken::new();
        let task = tokio::spawn(daemon.run(stop.clone()));
        Running {
            api,
            ops,
            stop,
            task,
        }
    }

    /// Subscribes `bucket` through the daemon's API.
    pub async fn subscribe(&self, api: std::net::SocketAddr, bucket: &str) {
        let response = reqwest::Client::new()
            .post(format!("http://{api}/v1/subscriptions"))
            .header("content-type", "application/json")
            .body(
                json!({
                    "apiKey": API_KEY,
                    "appKey": APP_KEY,
                    "bucket_name": bucket,
                    "bucket_region": "us-east-1",
                    "iam_role_arn": format!("arn:aws:iam::{ACCOUNT}:role/BigPandaCloudTrailReader"),
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

    pub async fn put_file(&self, file: &str) -> (String, Vec<Value>) {
        self.put_file_as(file, &cloudtrail_key(file)).await
    }

    pub async fn put_file_as(&self, file: &str, key: &str) -> (String, Vec<Value>) {
        let path = manifest(DATA).join(file);
        let bytes = std::fs::read(&path).expect("read test file");
        self.aws.put_object(&self.bucket, key, bytes).await;
        (key.to_owned(), expected_changes(&path, &self.bucket, key))
    }

    /// The DLQ's messages with their `failure_reason` attribute.
    pub async fn dead_letters(&self, at_least: usize, timeout: Duration) -> Vec<(String, String)> {
        self.dead_letters_with_attributes(at_least, timeout)
            .await
            .into_iter()
            .map(|(attrs, body)| {
                (
                    attrs.get("failure_reason").cloned().unwrap_or_default(),
                    body,
                )
            })
            .collect()
    }

    /// The DLQ's messages with all their attributes.
    pub async fn dead_letters_with_attributes(
        &self,
        at_least: usize,
        timeout: Duration,
    ) -> Vec<(HashMap<String, String>, String)> {
        let started = Instant::now();
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while found.len() < at_least && started.elapsed() < timeout {
            let out = self
                .aws
                .sqs
                .receive_message()
                .queue_url(&self.queues.dlq_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive from the DLQ");
            for m in out.messages() {
                // A slow run may see a message again once its visibility timeout passed.
                if !seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                    continue;
                }
                let attrs = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                found.push((attrs, m.body().unwrap_or_default().to_owned()));
            }
        }
        found
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Running {
    pub api: std::net::SocketAddr,
    pub ops: std::net::SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), cloudtrail_changes::app::AppError>>,
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        let result = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("daemon stops within a minute")
            .expect("daemon task");
        result.expect("daemon ends cleanly");
    }
}

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
        assert!(
            stack
                .bigpanda
                .wait_for_accepted(expected.len(), Duration::from_secs(30))
                .await,
            "{name}"
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
    let total = e1.len() + e2.len();
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(total, Duration::from_secs(30))
            .await
    );
    // One CloudTrail notification naming both objects: both are sent again (upserts).
    stack
        .aws
        .send_message(
            &stack.queues.url,
            &cloudtrail_sns_notification(&stack.bucket, &[&k1, &k2]),
        )
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(2 * total, Duration::from_secs(30))
            .await
    );
    stack
        .aws
        .send_message(
            &stack.queues.url,
            &eventbridge_object_created(&stack.bucket, &k2),
        )
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(2 * total + e2.len(), Duration::from_secs(30))
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
    let stack = Stack::new("storm", 5, None).await;
    let mut script = vec![Reply::StatusWithRetryAfter(429, 1)];
    script.extend(std::iter::repeat_n(Reply::Status(429), 20));
    stack.bigpanda.push_script(script);
    // 600/minute: 10 per second, so pacing is visible in the arrival times.
    let daemon = stack
        .start(&[
            ("CTC__BIGPANDA__RATE_PER_MINUTE", "600"),
            ("CTC__WORKER__CHANGE_RETRY_SECONDS", "60"),
        ])
        .await;
    stack.subscribe(daemon.api, &stack.bucket).await;
    let (_, expected) = stack.put_file(FILES[1].0).await;
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
    assert_eq!(ids.len(), expected.len());
    // Pacing: every request (429s included) counts; the rate over any 3 s window stays near
    // 10/s plus the burst.
    let all = stack.bigpanda.all();
    let first = all[0].received;
    let in_first_3s = all
        .iter()
        .filter(|r| r.received.duration_since(first) < Duration::from_secs(3))
        .count();
    assert!(
        in_first_3s <= 30 + 60,
        "{in_first_3s} requests in the first 3 s"
    );
    daemon.stop().await;
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
    assert_eq!(expected.len(), 13);
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

/// The real binary, started with the stack's environment; logs go to a file in the state dir.
struct Binary {
    child: std::process::Child,
    api: std::net::SocketAddr,
    log: PathBuf,
}

impl Binary {
    async fn start(stack: &Stack, name: &str, extra: &[(&str, &str)]) -> Binary {
        let api = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr")
        };
        let listen = api.to_string();
        let mut extra = extra.to_vec();
        extra.push(("CTC__API__LISTEN", &listen));
        let log = stack.dir.join(format!("{name}.log"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cloudtrail-changes"))
            .arg("run")
            .env_clear()
            .envs(stack.env(&extra))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the daemon binary");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(api).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "daemon never listened: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Binary { child, api, log }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit status (panics after `timeout`).
    async fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (
                    status,
                    std::fs::read_to_string(&self.log).unwrap_or_default(),
                );
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    second.signal("-TERM");
    let (status, log) = second.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{log}");
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
    daemon.signal("-TERM");
    let (status, log) = daemon.wait(Duration::from_secs(40)).await;
    assert!(status.success(), "{log}");
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
    first.signal("-TERM");
    let (status, log) = first.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "{log}");
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
    second.signal("-TERM");
    assert!(second.wait(Duration::from_secs(30)).await.0.success());
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
    let _ = tokio::time::timeout(Duration::from_secs(60), daemon.task).await;
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
