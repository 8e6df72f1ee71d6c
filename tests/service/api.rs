//! The subscription API over real HTTP, in-process on a random port, against both stores
//! (SQLite in a temporary directory, DynamoDB in moto) and moto's STS for the role check; the
//! on-call CLI as the real binary against the same stores.

use crate::support::moto::{Moto, ACCOUNT_ID};
use crate::support::proxy::{Fault, Match, Proxy};
use base64::Engine;
use cloudtrail_changes::app::Parts;
use cloudtrail_changes::http;
use cloudtrail_changes::settings::{self, Settings};
use cloudtrail_changes::subscriptions::api;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TABLE: &str = "ctc-subscriptions";

/// The AWS SDK's default chain reads credentials and region from the process environment.
/// Every test (here and in the other modules) sets the same values, so the race between
/// test threads is harmless.
fn aws_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (key, value) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(key, value);
        }
    });
}

/// A fresh realistic key: 32 hex characters.
fn key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// What the API shows of `key`.
fn redacted(key: &str) -> String {
    format!("****{}", &key[key.len() - 4..])
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
}

fn subscription(api_key: &str, app_key: &str, bucket: &str) -> Value {
    json!({
        "apiKey": api_key,
        "appKey": app_key,
        "bucket_name": bucket,
        "bucket_region": "us-east-1",
        "iam_role_arn": role("BigPandaCloudTrail"),
        "iam_role_external_id": "bp-7f3a9c21-ext",
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "ctc-api-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    DynamoDb,
}

/// A store, the settings that name it and, when AWS is needed, the moto behind them.
struct World {
    env: HashMap<String, String>,
    moto: Option<Moto>,
    dir: TempDir,
}

impl World {
    /// moto for STS (and DynamoDB), the store of `backend`, the role check on (the default).
    async fn new(backend: Backend) -> World {
        aws_env();
        let moto = Moto::start();
        let mut world = World::bare(Some(moto));
        if let Backend::DynamoDb = backend {
            world.set("CTC__SUBSCRIPTIONS__STORE", &format!("dynamodb:{TABLE}"));
            let created =
                cloudtrail_changes::commands::subscriptions::init_table(&world.settings())
                    .await
                    .expect("the table is created");
            assert!(created);
        }
        world
    }

    /// A SQLite store and no AWS at all: the role check off.
    fn offline() -> World {
        aws_env();
        let mut world = World::bare(None);
        world.set("CTC__SUBSCRIPTIONS__VERIFY_ROLE", "false");
        world
    }

    fn bare(moto: Option<Moto>) -> World {
        let dir = TempDir::new();
        let mut env = HashMap::from([
            (
                "CTC__SUBSCRIPTIONS__STORE".to_owned(),
                format!("sqlite:{}", dir.0.join("subs.db").display()),
            ),
            ("CTC__AWS__REGION".to_owned(), "us-east-1".to_owned()),
            ("CTC__API__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ]);
        if let Some(moto) = &moto {
            env.insert("CTC__AWS__ENDPOINT_URL".to_owned(), moto.endpoint());
        }
        World { env, moto, dir }
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_owned(), value.to_owned());
    }

    fn unset(&mut self, key: &str) {
        self.env.remove(key);
    }

    fn settings(&self) -> Settings {
        settings::load_with_env(None, self.env.clone()).expect("the test settings load")
    }

    fn moto(&self) -> &Moto {
        self.moto.as_ref().expect("this world has moto")
    }

    fn db_path(&self) -> PathBuf {
        self.dir.0.join("subs.db")
    }

    async fn api(&self) -> Api {
        Api::start(&self.settings()).await
    }

    /// Runs the binary with this world's settings (the role check off, as on-call runs it).
    async fn cli(&self, args: &[&str]) -> Output {
        let mut command = crate::support::binary::command(args, &self.env);
        command
            .env("CTC__SUBSCRIPTIONS__VERIFY_ROLE", "false")
            .env("AWS_REGION", "us-east-1");
        tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the blocking task")
            .expect("the binary runs")
    }
}

/// The API served in-process on a random loopback port.
struct Api {
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    parts: Parts,
}

/// One HTTP answer.
struct Answer {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// The JSON body of an answer with `status`.
    #[track_caller]
    fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        self.json()
    }

    /// The human message of an error answer with `status`: every error is `{"error": ...}`.
    #[track_caller]
    fn error(&self, status: u16) -> String {
        let body = self.expect(status);
        let message = body["error"].as_str().unwrap_or_default().to_owned();
        assert!(message.len() > 10, "a human message: {}", self.text);
        message
    }

    /// The `(field, message)` pairs of a 400.
    #[track_caller]
    fn field_errors(&self) -> Vec<(String, String)> {
        let summary = self.error(400);
        let body = self.json();
        let errors: Vec<(String, String)> = body["errors"]
            .as_array()
            .expect("errors is a list")
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().expect("field").to_owned(),
                    e["message"].as_str().expect("message").to_owned(),
                )
            })
            .collect();
        for (field, message) in &errors {
            assert!(
                summary.contains(&format!("{field} {message}")),
                "the summary names every error: {summary}"
            );
        }
        errors
    }

    /// The fields of a 400.
    #[track_caller]
    fn bad_fields(&self) -> Vec<String> {
        self.field_errors().into_iter().map(|(f, _)| f).collect()
    }
}

impl Api {
    async fn start(settings: &Settings) -> Api {
        let parts = Parts::open(settings).await.expect("the store opens");
        let server = http::Server::bind(
            "127.0.0.1:0".parse().expect("an address"),
            api::router(parts.api_state(settings)),
        )
        .await
        .expect("the API binds");
        let base = format!(
            "http://{}/v1/subscriptions",
            server.local_addr().expect("an address")
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone()));
        Api {
            base,
            http: reqwest::Client::new(),
            stop,
            task,
            parts,
        }
    }

    /// Stops the server and closes the store.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the API stops within 10 s")
            .expect("the server task")
            .expect("the server ran cleanly");
        drop(self.parts);
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the API answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let www_authenticate = header("www-authenticate");
        let status = response.status().as_u16();
        let text = response.text().await.expect("the body");
        Answer {
            status,
            content_type,
            www_authenticate,
            text,
        }
    }

    async fn post(&self, body: &Value) -> Answer {
        self.post_raw(Some("application/json"), body.to_string().into_bytes())
            .await
    }

    async fn post_raw(&self, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = self.http.post(&self.base).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request).await
    }

    async fn delete(&self, api_key: &str, bucket: &str) -> Answer {
        self.delete_raw(
            Some("application/json"),
            json!({"apiKey": api_key, "bucket_name": bucket})
                .to_string()
                .into_bytes(),
        )
        .await
    }

    async fn delete_raw(&self, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = self.http.delete(&self.base).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request).await
    }

    async fn get_with(&self, authorization: Option<&str>) -> Answer {
        let mut request = self.http.get(&self.base);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        self.send(request).await
    }

    /// `GET` with `api_key`: its subscriptions.
    async fn list(&self, api_key: &str) -> Vec<Value> {
        let answer = self.get_with(Some(&format!("Bearer {api_key}"))).await;
        let body = answer.expect(200);
        assert!(
            !answer.text.contains(api_key),
            "the key is never echoed whole"
        );
        body["subscriptions"]
            .as_array()
            .expect("subscriptions is a list")
            .clone()
    }

    /// The bucket names `GET` shows to `api_key`.
    async fn buckets(&self, api_key: &str) -> Vec<String> {
        self.list(api_key)
            .await
            .iter()
            .map(|s| s["bucket_name"].as_str().expect("bucket_name").to_owned())
            .collect()
    }
}

/// Checks that `shown` is the redacted form of `sent`, keys reduced to their last 4 characters.
#[track_caller]
fn assert_shows(shown: &Value, sent: &Value) {
    let api_key = sent["apiKey"].as_str().expect("apiKey");
    let app_key = sent["appKey"].as_str().expect("appKey");
    assert_eq!(shown["apiKey"], redacted(api_key), "{shown}");
    assert_eq!(shown["appKey"], redacted(app_key), "{shown}");
    for field in [
        "bucket_name",
        "bucket_region",
        "iam_role_arn",
        "iam_role_external_id",
    ] {
        assert_eq!(shown[field], sent[field], "{field}");
    }
    let text = shown.to_string();
    assert!(!text.contains(api_key) && !text.contains(app_key), "{text}");
    for time in ["created_at", "updated_at"] {
        let value = shown[time].as_str().expect("a timestamp");
        humantime::parse_rfc3339(value).unwrap_or_else(|e| panic!("{time} {value}: {e}"));
    }
}

/// Every row of the issue's status table, on the store of `world`.
async fn status_table(world: &World) {
    let api = world.api().await;
    let (alice, alice_app, bob, bob_app) = (key(), key(), key(), key());
    let first = subscription(&alice, &alice_app, "acme-trail-logs");

    // 201: a new subscription, keys redacted.
    let created = api.post(&first).await.expect(201);
    assert_shows(&created, &first);
    assert_eq!(created["created_at"], created["updated_at"]);

    // 200: the same bucket with the same apiKey updates everything else.
    let new_app = key();
    let update = json!({
        "apiKey": alice,
        "appKey": new_app,
        "bucket_name": "acme-trail-logs",
        "bucket_region": "eu-west-1",
        "iam_role_arn": role("path/to/TrailReader"),
        "iam_role_external_id": "second-ext-id",
    });
    let updated = api.post(&update).await.expect(200);
    assert_shows(&updated, &update);
    assert_eq!(updated["created_at"], created["created_at"], "kept");

    // 409: another apiKey cannot take the bucket, and changes nothing.
    let taken = api
        .post(&subscription(&bob, &bob_app, "acme-trail-logs"))
        .await;
    let message = taken.error(409);
    assert!(message.contains("acme-trail-logs"), "{message}");
    assert!(!taken.text.contains(&bob), "{}", taken.text);
    let alices = api.list(&alice).await;
    assert_eq!(alices.len(), 1);
    assert_shows(&alices[0], &update);
    assert!(api.list(&bob).await.is_empty());

    // GET shows each key its own subscriptions, sorted by bucket.
    let bobs = subscription(&bob, &bob_app, "bob-trail-logs");
    api.post(&bobs).await.expect(201);
    let earlier = subscription(&alice, &new_app, "aaa-trail-logs");
    api.post(&earlier).await.expect(201);
    assert_eq!(
        api.buckets(&alice).await,
        ["aaa-trail-logs", "acme-trail-logs"]
    );
    let listed = api.list(&bob).await;
    assert_eq!(listed.len(), 1);
    assert_shows(&listed[0], &bobs);
    assert!(api.list(&key()).await.is_empty(), "an unknown key has none");

    // 401 without a bearer apiKey.
    for authorization in [
        None,
        Some("Basic YWxpY2U6c2VjcmV0"),
        Some("Bearer "),
        Some(alice.as_str()),
    ] {
        let answer = api.get_with(authorization).await;
        answer.error(401);
        assert_eq!(answer.www_authenticate.as_deref(), Some("Bearer"));
    }

    // 404: a wrong apiKey, or no such bucket; the two cannot be told apart.
    let wrong_key = api.delete(&bob, "acme-trail-logs").await;
    wrong_key.error(404);
    let unknown = api.delete(&alice, "never-subscribed").await;
    unknown.error(404);
    assert_eq!(
        api.buckets(&alice).await,
        ["aaa-trail-logs", "acme-trail-logs"],
        "a wrong key deletes nothing"
    );

    // 204: the owner unsubscribes.
    let deleted = api.delete(&alice, "acme-trail-logs").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert!(deleted.text.is_empty());
    assert_eq!(api.buckets(&alice).await, ["aaa-trail-logs"]);
    assert_eq!(api.buckets(&bob).await, ["bob-trail-logs"]);

    // Now the bucket is gone: the same wrong key gets exactly the same answer as before.
    let gone = api.delete(&bob, "acme-trail-logs").await;
    assert_eq!(
        (gone.status, &gone.content_type, &gone.text),
        (wrong_key.status, &wrong_key.content_type, &wrong_key.text),
        "an existing bucket with a wrong key looks exactly like no bucket"
    );
    api.delete(&alice, "acme-trail-logs").await.error(404);

    // The freed bucket can be taken by another key.
    let taken_over = subscription(&bob, &bob_app, "acme-trail-logs");
    assert_shows(&api.post(&taken_over).await.expect(201), &taken_over);
    assert_eq!(
        api.buckets(&bob).await,
        ["acme-trail-logs", "bob-trail-logs"]
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_of_the_subscription_api_holds_with_the_sqlite_store() {
    status_table(&World::new(Backend::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_of_the_subscription_api_holds_with_the_dynamodb_store() {
    status_table(&World::new(Backend::DynamoDb).await).await;
}

async fn survives_a_restart(world: &World) {
    let (api_key, app_key) = (key(), key());
    let sent = subscription(&api_key, &app_key, "persistent-logs");
    let api = world.api().await;
    let created = api.post(&sent).await.expect(201);
    api.stop().await;

    let api = world.api().await;
    let listed = api.list(&api_key).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_shows(&listed[0], &sent);
    assert_eq!(listed[0]["created_at"], created["created_at"]);
    // The owner is remembered too: another key still cannot take the bucket.
    api.post(&subscription(&key(), &key(), "persistent-logs"))
        .await
        .error(409);
    api.delete(&api_key, "persistent-logs").await;
    api.stop().await;

    let api = world.api().await;
    assert!(api.list(&api_key).await.is_empty(), "the delete persisted");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_a_restart_of_the_api_with_the_sqlite_store() {
    survives_a_restart(&World::new(Backend::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_a_restart_of_the_api_with_the_dynamodb_store() {
    survives_a_restart(&World::new(Backend::DynamoDb).await).await;
}

/// How long the proxy holds the first role check of a race.
const RACE_HOLD: Duration = Duration::from_secs(2);

/// The AssumeRole calls the proxy has handled so far.
fn assume_role_calls(proxy: &Proxy) -> usize {
    proxy
        .log()
        .iter()
        .filter(|l| l.action.as_deref() == Some("AssumeRole"))
        .count()
}

/// Two subscribes of one bucket by different apiKeys, made to race rather than hoped to: the
/// proxy in front of moto holds the first role check (AssumeRole, which the API makes after its
/// "owned by another key" pre-check and before the store write) for [`RACE_HOLD`]. The other
/// request passes the pre-check meanwhile and saves the bucket; the held one then reaches the
/// store's write with the bucket taken, so its 409 can only come from the write itself. Two
/// AssumeRole calls per round show both requests were past the pre-check at once (one the
/// pre-check refuses makes none); with DynamoDB the log also shows the conditional PutItem
/// that was refused.
async fn racing_subscribes(mut world: World, backend: Backend) {
    let proxy = Proxy::start(&world.moto().endpoint()).await;
    world.set("CTC__AWS__ENDPOINT_URL", &proxy.endpoint());
    let api = world.api().await;
    for round in 0..3 {
        let bucket = format!("contested-bucket-{round}");
        let (first_key, second_key) = (key(), key());
        let first = subscription(&first_key, &key(), &bucket);
        let second = subscription(&second_key, &key(), &bucket);
        let (assumed, logged) = (assume_role_calls(&proxy), proxy.log().len());
        proxy.inject(Match::action("AssumeRole"), 1, Fault::Delay(RACE_HOLD));
        let (a, b) = tokio::join!(api.post(&first), api.post(&second));
        assert_eq!(proxy.pending(), 0, "round {round}: the hold was used");
        assert_eq!(
            assume_role_calls(&proxy) - assumed,
            2,
            "round {round}: both requests passed the pre-check before either saved"
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [201, 409],
            "round {round}: {} / {}",
            a.text,
            b.text
        );
        if let Backend::DynamoDb = backend {
            let refused_puts = proxy.log()[logged..]
                .iter()
                .filter(|l| l.action.as_deref() == Some("PutItem") && l.status == 400)
                .count();
            assert_eq!(
                refused_puts, 1,
                "round {round}: one conditional PutItem refused"
            );
        }
        let (winner, loser, sent, refused) = if a.status == 201 {
            (&first_key, &second_key, &first, &b)
        } else {
            (&second_key, &first_key, &second, &a)
        };
        refused.error(409);
        let listed = api.list(winner).await;
        assert_eq!(listed.len(), 1, "round {round}");
        assert_shows(&listed[0], sent);
        assert!(api.list(loser).await.is_empty(), "round {round}");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_racing_subscribes_of_one_bucket_give_one_201_and_one_409_with_sqlite() {
    let world = World::new(Backend::Sqlite).await;
    racing_subscribes(world, Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_racing_subscribes_of_one_bucket_give_one_201_and_one_409_with_dynamodb() {
    let world = World::new(Backend::DynamoDb).await;
    racing_subscribes(world, Backend::DynamoDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_field_gets_its_own_message_in_one_400() {
    let world = World::offline();
    let api = world.api().await;
    let everything_wrong = json!({
        "apiKey": "",
        "appKey": 42,
        "bucket_name": "Not_A_Bucket",
        "bucket_region": "moon-1",
        "iam_role_arn": "arn:aws:iam::123456789012:user/alice",
        "iam_role_external_id": "x",
        "callback_url": "https://example.com",
    });
    let answer = api.post(&everything_wrong).await;
    let mut fields = answer.bad_fields();
    fields.sort();
    assert_eq!(
        fields,
        [
            "apiKey",
            "appKey",
            "bucket_name",
            "bucket_region",
            "callback_url",
            "iam_role_arn",
            "iam_role_external_id"
        ]
    );

    let missing = api.post(&json!({"apiKey": key(), "appKey": null})).await;
    let mut fields = missing.field_errors();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("appKey".to_owned(), "is required".to_owned()),
            ("bucket_name".to_owned(), "is required".to_owned()),
            ("bucket_region".to_owned(), "is required".to_owned()),
            ("iam_role_arn".to_owned(), "is required".to_owned()),
            ("iam_role_external_id".to_owned(), "is required".to_owned()),
        ]
    );

    for not_an_object in [json!([]), json!("apiKey"), json!(null), json!(7)] {
        let answer = api.post(&not_an_object).await;
        assert_eq!(answer.bad_fields(), ["body"], "{not_an_object}");
    }

    // Unsubscribe bodies are checked the same way.
    let answer = api
        .delete_raw(
            Some("application/json"),
            json!({"apiKey": "", "bucket": "x"})
                .to_string()
                .into_bytes(),
        )
        .await;
    let mut fields = answer.bad_fields();
    fields.sort();
    assert_eq!(fields, ["apiKey", "bucket", "bucket_name"]);
    api.stop().await;
}

/// Posts a good subscription with `field` set to each of `bad` (one 400 naming only that
/// field) and to each of `good` (201).
async fn check_field(api: &Api, field: &str, bad: &[String], good: &[String]) {
    let api_key = key();
    for (i, value) in bad.iter().enumerate() {
        let body = with(
            subscription(&api_key, &key(), &format!("bad-{i}-bucket")),
            field,
            json!(value),
        );
        let answer = api.post(&body).await;
        assert_eq!(answer.status, 400, "{field} {value:?}: {}", answer.text);
        assert_eq!(answer.bad_fields(), [field], "{field} {value:?}");
    }
    for (i, value) in good.iter().enumerate() {
        let body = with(
            subscription(&api_key, &key(), &format!("good-{i}-bucket")),
            field,
            json!(value),
        );
        let answer = api.post(&body).await;
        assert_eq!(answer.status, 201, "{field} {value:?}: {}", answer.text);
    }
    assert_eq!(
        api.list(&api_key).await.len(),
        good.len(),
        "only the good ones were saved"
    );
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|&v| v.to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_names_must_follow_the_s3_naming_rules() {
    let world = World::offline();
    let api = world.api().await;
    let mut bad = strings(&[
        "",
        "ab",
        "My-Bucket",
        "my_bucket",
        "my bucket",
        "-bucket",
        "bucket-",
        ".bucket",
        "my..bucket",
        "192.168.5.4",
        "xn--bucket",
        "sthree-bucket",
        "amzn-s3-demo-bucket",
        "bucket-s3alias",
        "bucket--ol-s3",
        "bucket.mrap",
        "bucket--x-s3",
        "bucket--table-s3",
    ]);
    bad.push("a".repeat(64));
    let mut good = strings(&["abc", "my.trail.logs", "123-logs", "192.168.5.4.logs"]);
    good.push("a".repeat(63));
    check_field(&api, "bucket_name", &bad, &good).await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_regions_must_be_region_codes() {
    let world = World::offline();
    let api = world.api().await;
    let bad = strings(&[
        "",
        "us-east",
        "US-EAST-1",
        "useast1",
        "us-east-123",
        "u-east-1",
        "us--1",
        "us-east-1-",
        "us_east_1",
        "us-east-one",
        "us-east-1 ",
    ]);
    let good = strings(&[
        "us-east-1",
        "eu-central-2",
        "us-gov-west-1",
        "ap-southeast-5",
        "cn-north-1",
    ]);
    check_field(&api, "bucket_region", &bad, &good).await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_arns_must_be_iam_role_arns() {
    let world = World::offline();
    let api = world.api().await;
    let mut bad = strings(&[
        "",
        "BigPandaCloudTrail",
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::12345678901:role/r",
        "arn:aws:iam::1234567890123:role/r",
        "arn:aws:iam::12345678901x:role/r",
        "arn:aws:s3:::bucket",
        "arn:aws:iam:us-east-1:123456789012:role/r",
        "arn:foo:iam::123456789012:role/r",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/bad name",
        "arn:aws:iam::123456789012:role/path with space/r",
    ]);
    bad.push(format!("arn:aws:iam::123456789012:role/{}", "r".repeat(65)));
    let mut good = strings(&[
        "arn:aws:iam::123456789012:role/BigPandaCloudTrail",
        "arn:aws-us-gov:iam::123456789012:role/r",
        "arn:aws-cn:iam::123456789012:role/path/to/Role+=,.@_-",
    ]);
    good.push(format!("arn:aws:iam::123456789012:role/{}", "r".repeat(64)));
    check_field(&api, "iam_role_arn", &bad, &good).await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_ids_must_be_2_to_1224_allowed_characters() {
    let world = World::offline();
    let api = world.api().await;
    let mut bad = strings(&["", "x", "has space", "bad!char", "semi;colon", "ünïcode"]);
    bad.push("x".repeat(1225));
    let mut good = strings(&["ab", "A+z=0,.@:/-", "bp-7f3a9c21-ext"]);
    good.push("x".repeat(1224));
    check_field(&api, "iam_role_external_id", &bad, &good).await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_must_be_non_empty_visible_ascii_and_are_never_echoed() {
    let world = World::offline();
    let api = world.api().await;
    let spaced = "0123456789abcdef 0123456789abcdef".to_owned();
    let bad = vec![
        String::new(),
        spaced.clone(),
        "k".repeat(513),
        "ключ-ключ".into(),
    ];
    for field in ["apiKey", "appKey"] {
        check_field(&api, field, &bad, &[]).await;
        let answer = api
            .post(&with(
                subscription(&key(), &key(), "echo-bucket"),
                field,
                json!(spaced),
            ))
            .await;
        assert!(!answer.text.contains(&spaced), "{}", answer.text);
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_gets_415_and_one_over_16_kib_gets_413() {
    let world = World::offline();
    let api = world.api().await;
    let api_key = key();
    let body = subscription(&api_key, &key(), "sized-bucket").to_string();

    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let answer = api.post_raw(content_type, body.clone().into_bytes()).await;
        answer.error(415);
        let answer = api
            .delete_raw(
                content_type,
                json!({"apiKey": api_key, "bucket_name": "sized-bucket"})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        answer.error(415);
    }
    let answer = api
        .post_raw(Some("application/json"), b"{\"apiKey\": ".to_vec())
        .await;
    let message = answer.error(400);
    assert!(message.contains("not valid JSON"), "{message}");

    // 16 KiB exactly is read; one byte more is refused unread.
    let limit = api::MAX_BODY_BYTES;
    assert_eq!(limit, 16 * 1024);
    let mut padded = body.clone().into_bytes();
    padded.resize(limit + 1, b' ');
    let answer = api.post_raw(Some("application/json"), padded.clone()).await;
    let message = answer.error(413);
    assert!(message.contains("16384"), "{message}");
    let answer = api
        .delete_raw(Some("application/json"), padded.clone())
        .await;
    answer.error(413);
    assert!(api.list(&api_key).await.is_empty());

    padded.truncate(limit);
    let answer = api
        .post_raw(Some("application/json; charset=utf-8"), padded)
        .await;
    answer.expect(201);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_with_a_json_error() {
    let world = World::offline();
    let api = world.api().await;
    let root = api.base.trim_end_matches("/v1/subscriptions").to_owned();
    let answer = api.send(api.http.get(format!("{root}/v1/other"))).await;
    answer.error(404);
    let answer = api.send(api.http.put(&api.base)).await;
    answer.error(405);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_aws_refuses_to_let_us_assume_is_a_422_and_nothing_is_saved() {
    let world = World::new(Backend::Sqlite).await;
    let api = world.api().await;
    let (api_key, app_key) = (key(), key());
    let kept = subscription(&api_key, &app_key, "verified-bucket");
    api.post(&kept).await.expect(201);

    // From now on moto checks credentials: ours are unknown to its IAM, so STS refuses.
    world.moto().enable_auth();
    let refused = subscription(&api_key, &app_key, "refused-bucket");
    let answer = api.post(&refused).await;
    let message = answer.error(422);
    let body = answer.json();
    let code = body["aws_error_code"].as_str().expect("aws_error_code");
    assert!(!code.is_empty(), "{body}");
    assert!(body["aws_error_message"].is_string(), "{body}");
    assert!(message.contains(code), "{message}");
    assert!(message.contains(&role("BigPandaCloudTrail")), "{message}");
    assert!(!answer.text.contains(&api_key), "{}", answer.text);

    // An update is checked too, and a refused one changes nothing.
    let update = with(kept.clone(), "bucket_region", json!("eu-west-1"));
    api.post(&update).await.error(422);
    let listed = api.list(&api_key).await;
    assert_eq!(listed.len(), 1, "nothing saved: {listed:?}");
    assert_shows(&listed[0], &kept);

    // Another key's bucket is refused before any STS call.
    api.post(&subscription(&key(), &key(), "verified-bucket"))
        .await
        .error(409);

    // The check is what refused: without it the same request is saved.
    let mut unchecked = world.env.clone();
    unchecked.insert("CTC__SUBSCRIPTIONS__VERIFY_ROLE".into(), "false".into());
    let unchecked = settings::load_with_env(None, unchecked).expect("settings");
    let unchecked_api = Api::start(&unchecked).await;
    unchecked_api.post(&refused).await.expect(201);
    unchecked_api.stop().await;
    assert_eq!(
        api.buckets(&api_key).await,
        ["refused-bucket", "verified-bucket"]
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_carries_the_code_and_message_aws_sent_and_an_sts_outage_is_a_503() {
    let mut world = World::new(Backend::Sqlite).await;
    let proxy = Proxy::start(&world.moto().endpoint()).await;
    world.set("CTC__AWS__ENDPOINT_URL", &proxy.endpoint());
    let api = world.api().await;
    let api_key = key();
    let sent = subscription(&api_key, &key(), "proxied-bucket");

    proxy.inject(
        Match::action("AssumeRole"),
        1,
        Fault::aws_error(403, "AccessDenied"),
    );
    let answer = api.post(&sent).await;
    let message = answer.error(422);
    let body = answer.json();
    assert_eq!(body["aws_error_code"], "AccessDenied", "{body}");
    assert_eq!(
        body["aws_error_message"], "injected by the test proxy (403 AccessDenied)",
        "{body}"
    );
    assert!(message.contains("AccessDenied"), "{message}");
    // The sentence names the three causes AWS does not tell apart, with the values to compare.
    assert!(message.contains("sts:ExternalId"), "{message}");
    assert!(message.contains("trust policy"), "{message}");

    // Our own credentials being refused is not the customer's to fix: 503.
    proxy.inject(
        Match::action("AssumeRole"),
        1,
        Fault::aws_error(403, "InvalidClientTokenId"),
    );
    let answer = api.post(&sent).await;
    let message = answer.error(503);
    assert!(
        message.contains("nothing is wrong on your side"),
        "{message}"
    );

    // STS failing on every retry is not the customer's fault: 503, try again.
    proxy.inject(
        Match::action("AssumeRole"),
        10,
        Fault::aws_error(500, "InternalFailure"),
    );
    let answer = api.post(&sent).await;
    answer.error(503);
    assert!(!answer.text.contains("InternalFailure"), "{}", answer.text);
    assert!(api.list(&api_key).await.is_empty(), "nothing saved");

    proxy.clear();
    api.post(&sent).await.expect(201);
    api.stop().await;
}

/// The bytes of the SQLite database and its write-ahead log.
fn database_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).expect("the database file");
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(more) = std::fs::read(PathBuf::from(wal)) {
        bytes.extend(more);
    }
    bytes
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn encryption_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Subscribes with `world`'s settings and reports whether each key can be found in the
/// database file, while the API runs and after it has stopped.
async fn keys_in_the_file(world: &World) -> [bool; 2] {
    let (api_key, app_key) = (key(), key());
    let api = world.api().await;
    api.post(&subscription(&api_key, &app_key, "sealed-bucket"))
        .await
        .expect(201);
    let running = database_bytes(&world.db_path());
    api.stop().await;
    let stopped = database_bytes(&world.db_path());
    for bytes in [&running, &stopped] {
        assert!(holds(bytes, "sealed-bucket"), "the row is in these bytes");
    }
    [
        holds(&running, &api_key) || holds(&stopped, &api_key),
        holds(&running, &app_key) || holds(&stopped, &app_key),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_encryption_key_the_sqlite_file_never_holds_the_keys_in_clear() {
    let mut world = World::offline();
    world.set("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", &encryption_key());
    assert_eq!(keys_in_the_file(&world).await, [false, false]);

    // The check can fail: the same steps without a key find both keys.
    let plain = World::offline();
    assert_eq!(keys_in_the_file(&plain).await, [true, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_with_an_encryption_key_cannot_be_read_without_it() {
    let mut world = World::offline();
    let data_key = encryption_key();
    world.set("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", &data_key);
    let (api_key, app_key) = (key(), key());
    let sent = subscription(&api_key, &app_key, "sealed-bucket");
    let api = world.api().await;
    api.post(&sent).await.expect(201);
    api.stop().await;

    world.unset("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY");
    let show = world.cli(&["subscriptions", "show", "sealed-bucket"]).await;
    let stderr = String::from_utf8_lossy(&show.stderr);
    assert_eq!(show.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("subscriptions.encryption_key"),
        "the error names the setting: {stderr}"
    );
    assert!(show.stdout.is_empty());
    let list = world.cli(&["subscriptions", "list"]).await;
    assert_eq!(list.status.code(), Some(1));

    // The API without the key cannot read it either, and says so without details.
    let api = world.api().await;
    let answer = api.get_with(Some(&format!("Bearer {api_key}"))).await;
    let message = answer.error(500);
    assert!(message.contains("sealed-bucket"), "{message}");
    api.stop().await;

    // Another key does not open it.
    world.set("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", &encryption_key());
    let show = world.cli(&["subscriptions", "show", "sealed-bucket"]).await;
    let stderr = String::from_utf8_lossy(&show.stderr);
    assert_eq!(show.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("subscriptions.encryption_key"), "{stderr}");

    // The right key reads it, through the CLI and the API.
    world.set("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", &data_key);
    let show = world.cli(&["subscriptions", "show", "sealed-bucket"]).await;
    assert_eq!(
        show.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let shown: Value = serde_json::from_slice(&show.stdout).expect("show prints JSON");
    assert_shows(&shown, &sent);
    let api = world.api().await;
    let listed = api.list(&api_key).await;
    assert_eq!(listed.len(), 1);
    assert_shows(&listed[0], &sent);
    api.stop().await;
}

async fn cli_tools(world: &World) {
    let api = world.api().await;
    let (alice, alice_app, bob, bob_app) = (key(), key(), key(), key());
    let first = subscription(&alice, &alice_app, "alpha-logs");
    let second = with(
        subscription(&bob, &bob_app, "beta-logs"),
        "bucket_region",
        json!("eu-west-1"),
    );
    api.post(&first).await.expect(201);
    api.post(&second).await.expect(201);

    let list = world.cli(&["subscriptions", "list"]).await;
    let stdout = String::from_utf8(list.stdout).expect("UTF-8");
    assert_eq!(
        list.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per bucket: {stdout}");
    for (line, sent) in lines.iter().zip([&first, &second]) {
        let bucket = sent["bucket_name"].as_str().expect("bucket");
        let region = sent["bucket_region"].as_str().expect("region");
        let api_key = sent["apiKey"].as_str().expect("apiKey");
        let app_key = sent["appKey"].as_str().expect("appKey");
        assert!(line.starts_with(&format!("{bucket}\t{region}\t")), "{line}");
        assert!(
            line.contains(&format!("apiKey={}", redacted(api_key))),
            "{line}"
        );
        assert!(
            line.contains(&format!("appKey={}", redacted(app_key))),
            "{line}"
        );
    }
    for whole in [&alice, &alice_app, &bob, &bob_app] {
        assert!(!stdout.contains(whole.as_str()), "{stdout}");
    }

    let show = world.cli(&["subscriptions", "show", "beta-logs"]).await;
    assert_eq!(show.status.code(), Some(0));
    let shown: Value = serde_json::from_slice(&show.stdout).expect("show prints JSON");
    assert_shows(&shown, &second);

    let unknown = world
        .cli(&["subscriptions", "show", "no-such-bucket"])
        .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(unknown.stdout.is_empty());

    let remove = world.cli(&["subscriptions", "remove", "beta-logs"]).await;
    assert_eq!(
        remove.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&remove.stderr)
    );
    assert!(api.list(&bob).await.is_empty(), "the API sees the removal");
    assert_eq!(api.buckets(&alice).await, ["alpha-logs"]);
    let again = world.cli(&["subscriptions", "remove", "beta-logs"]).await;
    assert_eq!(again.status.code(), Some(1), "nothing left to remove");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_shows_and_removes_subscriptions_in_the_sqlite_store() {
    cli_tools(&World::new(Backend::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_shows_and_removes_subscriptions_in_the_dynamodb_store() {
    cli_tools(&World::new(Backend::DynamoDb).await).await;
}
