//! The daemon's stack for service tests: moto, the BigPanda stand-in, a queue with its DLQ and a
//! bucket notifying it ([`Stack`]); the daemon in this process ([`Running`]) or as the real
//! binary ([`Binary`], [`super::binary::command`]).

use super::aws::{Aws, Queues, SnsDelivery};
use super::bigpanda::BigPanda;
use super::moto::Moto;
use cloudtrail_changes::app::daemon::Daemon;
use cloudtrail_changes::settings::{self, Settings};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const ACCOUNT: &str = "218007301253";
pub const API_KEY: &str = "0123456789abcdef0123456789abcdef";
pub const APP_KEY: &str = "fedcba9876543210fedcba9876543210";
pub const DATA: &str = "tests/data/cloudtrail/invictus-ir_aws_dataset";

/// Real files and how many changes `process` makes of each.
pub const FILES: [(&str, usize); 4] = [
    (
        "218007301253_CloudTrail_us-east-1_20230710T1215Z_YMDRJwtmC82bUwAo.json.gz",
        55,
    ),
    (
        "218007301253_CloudTrail_us-east-1_20230710T1210Z_6CICdbJQM3beT7n3.json.gz",
        40,
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

pub fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The S3 key CloudTrail would give `file`.
pub fn cloudtrail_key(file: &str) -> String {
    format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2023/07/10/{file}")
}

/// What `process` prints for `file`, as JSON values, metadata key set to `key`.
pub fn expected_changes(file: &Path, bucket: &str, key: &str) -> Vec<Value> {
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
            (
                "CTC__SUBSCRIPTIONS__ENCRYPTION_KEY",
                crate::tenancy::DATA_KEY.to_owned(),
            ),
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

/// The real binary, started with the stack's environment; logs go to a file in the state dir.
pub struct Binary {
    pub child: std::process::Child,
    pub api: std::net::SocketAddr,
    /// The admin listener (metrics, health).
    pub ops: std::net::SocketAddr,
    pub log: PathBuf,
}

impl Binary {
    pub async fn start(stack: &Stack, name: &str, extra: &[(&str, &str)]) -> Binary {
        let (api, ops) = (super::free_addr(), super::free_addr());
        let (listen, admin) = (api.to_string(), ops.to_string());
        let mut extra = extra.to_vec();
        extra.push(("CTC__API__LISTEN", &listen));
        extra.push(("CTC__ADMIN__LISTEN", &admin));
        let log = stack.dir.join(format!("{name}.log"));
        let child = super::binary::command(&["run"], stack.env(&extra))
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
        Binary {
            child,
            api,
            ops,
            log,
        }
    }

    /// A `kB` field of the daemon's `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB: the
    /// daemon's own memory, whatever else the test process runs at the same time.
    pub fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Resets the daemon's peak RSS (`VmHWM`) to its current RSS (Linux `clear_refs` 5).
    pub fn reset_peak_rss(&self) -> std::io::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
    }

    /// SIGTERM, then the exit within a minute with status 0 (panics otherwise, with the log).
    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(60)).await;
    }

    /// SIGTERM, then the exit within `timeout` with status 0 (panics otherwise, with the log);
    /// returns the log.
    pub async fn stop_within(self, timeout: Duration) -> String {
        self.signal("-TERM");
        let (status, log) = self.wait(timeout).await;
        assert!(status.success(), "daemon exit {status}: {log}");
        log
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit status (panics after `timeout`).
    pub async fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
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
