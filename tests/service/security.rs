//! Security properties of the running daemon: one customer's API key cannot touch another's
//! subscription; keys and the data key never leave the process except towards BigPanda (logs
//! at trace level in both formats, `/metrics`, the DLQ, API error bodies, the on-call CLI);
//! request bodies and headers are bounded; customer roles are assumed only for subscribed
//! buckets, only the notified objects are read, and a notification cannot make the daemon use
//! another customer's role.
//!
//! AWS traffic is observed through the fault proxy with a rule that never matches: its
//! predicate sees every request (method, path, headers, body) and records it.

use crate::support::free_addr;
use crate::support::proxy::{Fault, Match, Proxy};
use crate::support::stack::{Running, Stack};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GOOD_FILE: &str = "tests/data/cloudtrail/invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json.gz";
const GOOD_CHANGES: usize = 8;

fn good_file() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(GOOD_FILE)).expect("the good file")
}

/// A CloudTrail key in `account`'s prefix, unique by `name`.
fn log_key(account: &str, name: &str) -> String {
    format!(
        "AWSLogs/{account}/CloudTrail/us-east-1/2023/07/10/{account}_CloudTrail_us-east-1_20230710T1205Z_{name}.json.gz"
    )
}

/// One customer: keys, bucket and role.
#[derive(Debug, Clone)]
struct Customer {
    api_key: String,
    app_key: String,
    bucket: String,
    account: String,
    role: String,
    external_id: String,
}

impl Customer {
    fn new(name: &str, bucket: &str, account: &str) -> Customer {
        Customer {
            api_key: format!("{name}-api-{:032x}", rand::random::<u128>()),
            app_key: format!("{name}-app-{:032x}", rand::random::<u128>()),
            bucket: bucket.to_owned(),
            account: account.to_owned(),
            role: format!("arn:aws:iam::{account}:role/{name}-trail-reader"),
            external_id: format!("{name}-external-id"),
        }
    }

    fn body(&self) -> Value {
        json!({
            "apiKey": self.api_key, "appKey": self.app_key, "bucket_name": self.bucket,
            "bucket_region": "us-east-1", "iam_role_arn": self.role,
            "iam_role_external_id": self.external_id,
        })
    }
}

/// What the API shows of a key.
fn redacted(key: &str) -> String {
    format!("****{}", &key[key.len() - 4..])
}

/// One HTTP answer: status and body.
struct Answer {
    status: u16,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    Answer {
        status,
        text: response.text().await.expect("a body"),
    }
}

fn subscriptions_url(api: SocketAddr) -> String {
    format!("http://{api}/v1/subscriptions")
}

async fn post(api: SocketAddr, body: &Value) -> Answer {
    post_text(api, &body.to_string()).await
}

async fn post_text(api: SocketAddr, body: &str) -> Answer {
    send(
        reqwest::Client::new()
            .post(subscriptions_url(api))
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn delete(api: SocketAddr, api_key: &str, bucket: &str) -> Answer {
    send(
        reqwest::Client::new()
            .delete(subscriptions_url(api))
            .header("content-type", "application/json")
            .body(json!({"apiKey": api_key, "bucket_name": bucket}).to_string()),
    )
    .await
}

async fn get(api: SocketAddr, authorization: &str) -> Answer {
    send(
        reqwest::Client::new()
            .get(subscriptions_url(api))
            .header("authorization", authorization),
    )
    .await
}

/// The subscriptions `GET` shows to `api_key`.
async fn listed(api: SocketAddr, api_key: &str) -> Vec<Value> {
    let answer = get(api, &format!("Bearer {api_key}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["subscriptions"]
        .as_array()
        .expect("a list")
        .clone()
}

// ---- what the proxy saw ------------------------------------------------------------------

/// One AWS request the daemon made.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    action: Option<String>,
    body: String,
    /// The access key ID of the SigV4 `Authorization` header.
    access_key: Option<String>,
}

impl Seen {
    /// A form field of a query-protocol body (STS), decoded.
    fn form(&self, name: &str) -> Option<String> {
        self.body.split('&').find_map(|pair| {
            let value = pair.strip_prefix(name)?.strip_prefix('=')?;
            let value = value.replace('+', " ");
            Some(
                percent_encoding::percent_decode_str(&value)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
    }

    /// `(RoleArn, ExternalId)` of an AssumeRole call.
    fn assumed(&self) -> Option<(String, String)> {
        (self.action.as_deref() == Some("AssumeRole")).then(|| {
            (
                self.form("RoleArn").unwrap_or_default(),
                self.form("ExternalId").unwrap_or_default(),
            )
        })
    }

    /// `(bucket, decoded key)` of an S3 request (path style), or `None` for other services.
    fn s3_object(&self) -> Option<(String, String)> {
        if self.action.is_some() {
            return None;
        }
        let path = self.path.split('?').next().unwrap_or_default();
        let path = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        let (bucket, key) = path.split_once('/').unwrap_or((&path, ""));
        Some((bucket.to_owned(), key.to_owned()))
    }
}

/// Records every request through `proxy` with a rule that never matches.
fn spy(proxy: &Proxy) -> Arc<Mutex<Vec<Seen>>> {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    proxy.inject(
        Match::when(move |request| {
            let access_key = request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split("Credential=").nth(1))
                .and_then(|v| v.split('/').next())
                .map(str::to_owned);
            log.lock().unwrap_or_else(|p| p.into_inner()).push(Seen {
                method: request.method.to_string(),
                path: request.path.clone(),
                action: request.action(),
                body: String::from_utf8_lossy(&request.body).into_owned(),
                access_key,
            });
            false
        }),
        usize::MAX,
        Fault::Delay(Duration::ZERO),
    );
    seen
}

fn seen_since(seen: &Arc<Mutex<Vec<Seen>>>, from: usize) -> Vec<Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())[from..].to_vec()
}

fn seen_len(seen: &Arc<Mutex<Vec<Seen>>>) -> usize {
    seen.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// The daemon with every AWS call going through a spying proxy; the role check on.
async fn spied(stack: &Stack) -> (Proxy, Arc<Mutex<Vec<Seen>>>, Running) {
    let proxy = Proxy::start(&stack.moto.endpoint()).await;
    let seen = spy(&proxy);
    let endpoint = proxy.endpoint();
    let daemon = stack
        .start(&[("CTC__AWS__ENDPOINT_URL", endpoint.as_str())])
        .await;
    (proxy, seen, daemon)
}

/// Waits until the queue is empty (every message deleted or moved).
async fn drained(stack: &Stack) {
    let started = Instant::now();
    while stack.aws.queue_depth(&stack.queues.url).await > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "messages left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An S3 event for one object, with other fields claiming whatever `claims` says.
fn s3_event(bucket: &str, key: &str, claims: &Value) -> String {
    let mut event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2023-07-10T12:06:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AROAEXAMPLE:regionalDeliverySession"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "ct",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               // No eTag: a made-up one would not match the object (read as replaced, skipped).
               "object": {"key": key.replace('/', "%2F"), "size": 1}}}]});
    if let Some(claims) = claims.as_object() {
        for (path, value) in claims {
            let mut node = &mut event["Records"][0];
            for part in path.split('.') {
                node = &mut node[part];
            }
            *node = value.clone();
        }
    }
    event.to_string()
}

// ---- the subscription API across customers ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_api_key_can_neither_list_change_nor_delete_a_subscription() {
    let stack = Stack::new("sec-owners", 5, None).await;
    let (_proxy, seen, daemon) = spied(&stack).await;
    let api = daemon.api;
    let alice = Customer::new("alice", &stack.bucket, "111111111111");
    let bob_bucket = "sec-owners-bob";
    stack.aws.create_bucket(bob_bucket).await;
    let bob = Customer::new("bob", bob_bucket, "222222222222");
    let created = post(api, &alice.body()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    assert_eq!(post(api, &bob.body()).await.status, 201);

    // Listing: each key sees only its own, however the header is spelled; a near miss of
    // alice's key sees nothing.
    let buckets = |subs: Vec<Value>| -> Vec<String> {
        subs.iter()
            .map(|s| s["bucket_name"].as_str().expect("bucket").to_owned())
            .collect()
    };
    assert_eq!(buckets(listed(api, &bob.api_key).await), [bob_bucket]);
    for authorization in [
        format!("bearer {}", bob.api_key),
        format!("BEARER  {} ", bob.api_key),
    ] {
        let answer = get(api, &authorization).await;
        assert_eq!(answer.status, 200, "{authorization}: {}", answer.text);
        assert_eq!(
            buckets(
                answer.json()["subscriptions"]
                    .as_array()
                    .expect("list")
                    .clone()
            ),
            [bob_bucket]
        );
    }
    let near_misses = [
        alice.api_key[..alice.api_key.len() - 1].to_owned(),
        format!("{}x", alice.api_key),
        alice.api_key.to_uppercase(),
        format!("{}%00", alice.api_key),
    ];
    for key in &near_misses {
        assert!(
            listed(api, key).await.is_empty(),
            "{key} lists alice's buckets"
        );
    }
    for authorization in [
        format!("Bearer {},{}", bob.api_key, alice.api_key),
        format!("Bearer {} {}", bob.api_key, alice.api_key),
        format!("Basic {}", alice.api_key),
        alice.api_key.clone(),
    ] {
        let answer = get(api, &authorization).await;
        assert!(
            answer.status == 401
                || answer.json()["subscriptions"]
                    .as_array()
                    .is_some_and(|a| a.is_empty()),
            "{authorization}: {} {}",
            answer.status,
            answer.text
        );
        assert!(
            !answer.text.contains(&alice.bucket),
            "{authorization}: {}",
            answer.text
        );
    }

    // Changing: bob cannot take alice's bucket, whatever the body says, and learns nothing.
    let mut takeover = bob.body();
    takeover["bucket_name"] = json!(alice.bucket);
    let duplicated = format!(
        r#"{{"apiKey":"{}","appKey":"{}","bucket_name":"{}","bucket_region":"us-east-1","iam_role_arn":"{}","iam_role_external_id":"{}","apiKey":"{}"}}"#,
        alice.api_key, bob.app_key, alice.bucket, bob.role, bob.external_id, bob.api_key
    );
    for answer in [
        post(api, &takeover).await,
        post_text(api, &duplicated).await,
    ] {
        assert_eq!(answer.status, 409, "{}", answer.text);
        for secret in [&alice.api_key, &alice.app_key, &bob.api_key, &bob.app_key] {
            assert!(!answer.text.contains(secret.as_str()), "{}", answer.text);
        }
        assert!(!answer.text.contains(&alice.role), "{}", answer.text);
    }

    // Deleting: a wrong key, a near miss or an invalid key deletes nothing.
    assert_eq!(delete(api, &bob.api_key, &alice.bucket).await.status, 404);
    for key in &near_misses {
        let status = delete(api, key, &alice.bucket).await.status;
        assert!(status == 404 || status == 400, "{key}: {status}");
    }
    assert_eq!(
        delete(api, &format!("{} ", alice.api_key), &alice.bucket)
            .await
            .status,
        400
    );

    // Alice's subscription is exactly as she made it.
    let mine = listed(api, &alice.api_key).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0], created, "alice's subscription changed");
    assert_eq!(mine[0]["iam_role_arn"], json!(alice.role));
    assert_eq!(mine[0]["apiKey"], json!(redacted(&alice.api_key)));
    assert_eq!(mine[0]["appKey"], json!(redacted(&alice.app_key)));

    // And the worker still uses alice's keys and role for her bucket.
    let from = seen_len(&seen);
    stack
        .aws
        .put_object(
            &alice.bucket,
            &log_key(&alice.account, "owners"),
            good_file(),
        )
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(GOOD_CHANGES, Duration::from_secs(60))
            .await
    );
    for request in stack.bigpanda.all() {
        assert_eq!(request.api_key.as_deref(), Some(alice.api_key.as_str()));
        assert_eq!(request.app_key.as_deref(), Some(alice.app_key.as_str()));
    }
    let roles: BTreeSet<(String, String)> = seen_since(&seen, from)
        .iter()
        .filter_map(Seen::assumed)
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from([(alice.role.clone(), alice.external_id.clone())])
    );
    drained(&stack).await;
    daemon.stop().await;
}

// ---- roles and reads ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_assumed_only_for_subscribed_buckets_and_only_the_notified_objects_are_read() {
    let stack = Stack::new("sec-reads", 5, None).await;
    let (_proxy, seen, daemon) = spied(&stack).await;
    // Buckets without notifications of their own: the test forges every message.
    let quiet = "sec-reads-quiet";
    let stranger = "sec-reads-stranger";
    for bucket in [quiet, stranger] {
        stack.aws.create_bucket(bucket).await;
    }
    let owner = Customer::new("owner", quiet, "333333333333");
    let answer = post(daemon.api, &owner.body()).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let account = owner.account.clone();
    let notified = [log_key(&account, "one"), log_key(&account, "two")];
    let decoys = [
        log_key(&account, "decoy"),
        format!("AWSLogs/{account}/CloudTrail-Digest/us-east-1/2023/07/10/{account}_CloudTrail-Digest_us-east-1_t_us-east-1_20230710T1205Z.json.gz"),
        "other/prefix/secrets.json.gz".to_owned(),
    ];
    for key in notified.iter().chain(&decoys) {
        stack.aws.put_object(quiet, key, good_file()).await;
    }
    stack
        .aws
        .put_object(stranger, &log_key(&account, "stranger"), good_file())
        .await;
    let from = seen_len(&seen);

    // The stranger's bucket: several envelopes name it, with keys that exist.
    let stranger_key = log_key(&account, "stranger");
    let stranger_messages = [
        s3_event(stranger, &stranger_key, &json!({})),
        json!({"s3Bucket": stranger, "s3ObjectKey": [stranger_key]}).to_string(),
        json!({"detail-type": "Object Created", "source": "aws.s3", "account": account,
               "detail": {"bucket": {"name": stranger}, "object": {"key": stranger_key}}})
        .to_string(),
    ];
    for body in &stranger_messages {
        stack.aws.send_message(&stack.queues.url, body).await;
    }
    let dead = stack
        .dead_letters(stranger_messages.len(), Duration::from_secs(60))
        .await;
    assert_eq!(dead.len(), stranger_messages.len());
    assert!(
        dead.iter().all(|(reason, _)| reason == "unknown_bucket"),
        "{dead:?}"
    );
    let after_stranger = seen_since(&seen, from);
    assert!(
        after_stranger.iter().all(|s| s.assumed().is_none()),
        "a role was assumed for an unsubscribed bucket: {after_stranger:#?}"
    );
    assert!(
        after_stranger.iter().all(|s| s.s3_object().is_none()),
        "S3 was called for an unsubscribed bucket: {after_stranger:#?}"
    );

    // The subscribed bucket: two notified keys, and a digest key that is skipped.
    for key in &notified {
        stack
            .aws
            .send_message(&stack.queues.url, &s3_event(quiet, key, &json!({})))
            .await;
    }
    stack
        .aws
        .send_message(&stack.queues.url, &s3_event(quiet, &decoys[1], &json!({})))
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(2 * GOOD_CHANGES, Duration::from_secs(60))
            .await
    );
    drained(&stack).await;
    let all = seen_since(&seen, from);
    let s3: Vec<(String, String, String)> = all
        .iter()
        .filter_map(|s| {
            let (bucket, key) = s.s3_object()?;
            Some((s.method.clone(), bucket, key))
        })
        .collect();
    let read: BTreeSet<(String, String, String)> = s3.iter().cloned().collect();
    let expected: BTreeSet<(String, String, String)> = notified
        .iter()
        .map(|k| ("GET".to_owned(), quiet.to_owned(), k.clone()))
        .collect();
    assert_eq!(read, expected, "S3 requests: {s3:#?}");
    let roles: BTreeSet<(String, String)> = all.iter().filter_map(Seen::assumed).collect();
    assert_eq!(
        roles,
        BTreeSet::from([(owner.role.clone(), owner.external_id.clone())])
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_naming_one_customers_bucket_uses_that_customers_role_whatever_else_it_claims(
) {
    let stack = Stack::new("sec-roles", 5, None).await;
    let (_proxy, seen, daemon) = spied(&stack).await;
    let alice = Customer::new("alice", "sec-roles-alice", "111111111111");
    let bob = Customer::new("bob", "sec-roles-bob", "222222222222");
    for customer in [&alice, &bob] {
        stack.aws.create_bucket(&customer.bucket).await;
        let answer = post(daemon.api, &customer.body()).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    // Alice's bucket holds objects under bob's account prefix (an organization trail, or a
    // trick); bob's bucket holds the same keys.
    let key = |name: &str| log_key(&bob.account, name);
    for name in ["claims-1", "claims-2", "claims-3", "claims-4", "claims-5"] {
        for customer in [&alice, &bob] {
            stack
                .aws
                .put_object(&customer.bucket, &key(name), good_file())
                .await;
        }
    }
    let from = seen_len(&seen);
    let bob_arn = format!("arn:aws:s3:::{}", bob.bucket);
    let s3_claiming_bob = s3_event(
        &alice.bucket,
        &key("claims-1"),
        &json!({
            "s3.bucket.arn": bob_arn,
            "s3.bucket.ownerIdentity": {"principalId": bob.account},
            "userIdentity": {"principalId": format!("AWS:{}:bob", bob.account)},
            "recipientAccountId": bob.account,
            "iam_role_arn": bob.role,
            "apiKey": bob.api_key,
        }),
    );
    let messages = [
        s3_claiming_bob.clone(),
        json!({"Type": "Notification", "MessageId": "m-1",
               "TopicArn": format!("arn:aws:sns:us-east-1:{}:bob-topic", bob.account),
               "Message": s3_event(&alice.bucket, &key("claims-2"), &json!({"s3.bucket.arn": bob_arn}))})
        .to_string(),
        json!({"detail-type": "Object Created", "source": "aws.s3", "account": bob.account,
               "resources": [bob_arn],
               "detail": {"bucket": {"name": alice.bucket}, "object": {"key": key("claims-3")},
                          "requester": bob.account}})
        .to_string(),
        json!({"s3Bucket": alice.bucket, "s3ObjectKey": [key("claims-4")],
               "accountId": bob.account, "roleArn": bob.role})
        .to_string(),
    ];
    for body in &messages {
        stack.aws.send_message(&stack.queues.url, body).await;
    }
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(messages.len() * GOOD_CHANGES, Duration::from_secs(90))
            .await
    );
    drained(&stack).await;
    let phase_alice = seen_since(&seen, from);
    let roles: BTreeSet<(String, String)> = phase_alice.iter().filter_map(Seen::assumed).collect();
    assert_eq!(
        roles,
        BTreeSet::from([(alice.role.clone(), alice.external_id.clone())]),
        "only alice's role, with her external ID"
    );
    let alice_keys: BTreeSet<String> = phase_alice
        .iter()
        .filter(|s| s.s3_object().is_some_and(|(b, _)| b == alice.bucket))
        .filter_map(|s| s.access_key.clone())
        .collect();
    assert_eq!(
        alice_keys.len(),
        1,
        "alice's reads use one set of credentials"
    );
    assert!(
        phase_alice
            .iter()
            .all(|s| s.s3_object().is_none_or(|(b, _)| b == alice.bucket)),
        "bob's bucket was read"
    );
    for request in stack.bigpanda.all() {
        assert_eq!(request.api_key.as_deref(), Some(alice.api_key.as_str()));
        assert_eq!(request.body["metadata"]["bucket"], json!(alice.bucket));
    }

    // One message naming an object of each: each read with its own customer's credentials,
    // each change sent with its own customer's keys.
    let from = seen_len(&seen);
    let before = stack.bigpanda.all().len();
    let mut mixed: Value =
        serde_json::from_str(&s3_event(&alice.bucket, &key("claims-5"), &json!({}))).expect("json");
    let bobs: Value =
        serde_json::from_str(&s3_event(&bob.bucket, &key("claims-5"), &json!({}))).expect("json");
    mixed["Records"]
        .as_array_mut()
        .expect("records")
        .push(bobs["Records"][0].clone());
    stack
        .aws
        .send_message(&stack.queues.url, &mixed.to_string())
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(before + 2 * GOOD_CHANGES, Duration::from_secs(60))
            .await
    );
    drained(&stack).await;
    let phase_mixed = seen_since(&seen, from);
    let roles: BTreeSet<(String, String)> = phase_mixed.iter().filter_map(Seen::assumed).collect();
    assert_eq!(
        roles,
        BTreeSet::from([(bob.role.clone(), bob.external_id.clone())]),
        "bob's role assumed once for his object (alice's credentials are cached)"
    );
    let keys_of = |bucket: &str| -> BTreeSet<String> {
        phase_mixed
            .iter()
            .filter(|s| s.s3_object().is_some_and(|(b, _)| b == bucket))
            .filter_map(|s| s.access_key.clone())
            .collect()
    };
    assert_eq!(
        keys_of(&alice.bucket),
        alice_keys,
        "alice's object with alice's credentials"
    );
    let bob_keys = keys_of(&bob.bucket);
    assert_eq!(bob_keys.len(), 1);
    assert!(
        bob_keys.is_disjoint(&alice_keys),
        "bob's object with alice's credentials"
    );
    for request in &stack.bigpanda.all()[before..] {
        let bucket = request.body["metadata"]["bucket"]
            .as_str()
            .unwrap_or_default();
        let owner = if bucket == alice.bucket { &alice } else { &bob };
        assert_eq!(bucket, owner.bucket);
        assert_eq!(
            request.api_key.as_deref(),
            Some(owner.api_key.as_str()),
            "{bucket}"
        );
        assert_eq!(
            request.app_key.as_deref(),
            Some(owner.app_key.as_str()),
            "{bucket}"
        );
    }
    daemon.stop().await;
}

// ---- bounds ------------------------------------------------------------------------------

/// Sends `request` bytes on a fresh connection and returns the status line's code, or `None`
/// when the server closed the connection without one. Fails after 15 s (a hang).
async fn raw(addr: SocketAddr, request: Vec<u8>) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before it has read everything: a failed write is
        // an answer too.
        let _ = stream.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .expect("the server answers or closes within 15 s")
}

fn request(method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_and_headers_are_bounded_and_the_daemon_keeps_answering() {
    let stack = Stack::new("sec-bounds", 5, None).await;
    let daemon = stack
        .start(&[("CTC__SUBSCRIPTIONS__VERIFY_ROLE", "false")])
        .await;
    let (api, ops) = (daemon.api, daemon.ops);
    let customer = Customer::new("bounded", &stack.bucket, "444444444444");
    assert_eq!(post(api, &customer.body()).await.status, 201);
    let json_type = ("Content-Type".to_owned(), "application/json".to_owned());
    let refused = |status: Option<u16>| matches!(status, None | Some(400 | 413 | 414 | 431));

    // Headers: one of 1 MiB, or a thousand small ones.
    let huge = (
        "Authorization".to_owned(),
        format!("Bearer {}", "a".repeat(1 << 20)),
    );
    let many: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("X-Filler-{i}"), "x".repeat(100)))
        .collect();
    for addr in [api, ops] {
        let target = if addr == api {
            "/v1/subscriptions"
        } else {
            "/metrics"
        };
        let status = raw(
            addr,
            request("GET", target, std::slice::from_ref(&huge), b""),
        )
        .await;
        assert!(refused(status), "a 1 MiB header on {target}: {status:?}");
        let status = raw(addr, request("GET", target, &many, b"")).await;
        assert!(refused(status), "1000 headers on {target}: {status:?}");
        let long_target = format!("{target}?{}", "q".repeat(1 << 20));
        let status = raw(addr, request("GET", &long_target, &[], b"")).await;
        assert!(refused(status), "a 1 MiB request target: {status:?}");
    }

    // Bodies over 16 KiB, streamed without a length or sent with one: refused at the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    let head = b"{\"apiKey\":";
    let mut chunked = format!("{:x}\r\n", head.len()).into_bytes();
    chunked.extend_from_slice(head);
    chunked.extend_from_slice(b"\r\n");
    for _ in 0..32 {
        chunked.extend_from_slice(chunk.as_bytes());
    }
    let streamed = [
        json_type.clone(),
        ("Transfer-Encoding".to_owned(), "chunked".to_owned()),
    ];
    let status = raw(
        api,
        request("POST", "/v1/subscriptions", &streamed, &chunked),
    )
    .await;
    assert_eq!(status, Some(413), "a 2 MiB chunked body");
    for method in ["DELETE", "POST"] {
        let body = format!(
            "{{\"apiKey\":\"{}\",\"x\":\"{}\"}}",
            customer.api_key,
            "y".repeat(17 * 1024)
        );
        let length = ("Content-Length".to_owned(), body.len().to_string());
        let status = raw(
            api,
            request(
                method,
                "/v1/subscriptions",
                &[json_type.clone(), length],
                body.as_bytes(),
            ),
        )
        .await;
        assert_eq!(status, Some(413), "{method} with a 17 KiB body");
    }

    // Idle connections that never finish a request do not keep others from being answered.
    let mut idle = Vec::new();
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(api).await.expect("connect");
        stream
            .write_all(b"POST /v1/subscriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
            .await
            .expect("a partial request");
        idle.push(stream);
    }
    let started = Instant::now();
    let mine = listed(api, &customer.api_key).await;
    assert_eq!(mine.len(), 1, "the subscription is intact");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow beside idle connections"
    );
    drop(idle);
    for (addr, path) in [(ops, "/healthz"), (ops, "/metrics")] {
        let response = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("GET");
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_oversized_body_is_refused_at_once_and_an_incomplete_request_times_out() {
    let stack = Stack::new("sec-slow", 5, None).await;
    let daemon = stack
        .start(&[("CTC__SUBSCRIPTIONS__VERIFY_ROLE", "false")])
        .await;
    // Content-Length says 10 GB, one byte follows: the limit is known from the header.
    let declared = [
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("Content-Length".to_owned(), "10000000000".to_owned()),
    ];
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = tokio::net::TcpStream::connect(daemon.api)
            .await
            .expect("connect");
        stream
            .write_all(&request("POST", "/v1/subscriptions", &declared, b"{"))
            .await
            .expect("the head");
        let mut answer = vec![0; 64];
        let n = stream.read(&mut answer).await.unwrap_or(0);
        String::from_utf8_lossy(&answer[..n]).into_owned()
    })
    .await;
    assert!(
        answer
            .as_deref()
            .is_ok_and(|a| a.starts_with("HTTP/1.1 413")),
        "after {:?}: {answer:?}",
        started.elapsed()
    );
    // A request whose head never ends is dropped (hyper's default is 30 s), on both listeners.
    for addr in [daemon.api, daemon.ops] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("a partial head");
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(45), stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "{addr}: an incomplete request kept its connection for 45 s"
        );
    }
    daemon.stop().await;
}

// ---- secrets -----------------------------------------------------------------------------

/// Keys with a marker no other text has; grepped for in everything the daemon writes.
struct Canaries {
    alice_api: String,
    alice_app: String,
    bob_api: String,
    bob_app: String,
    /// 32 bytes of marker text, and their base64 (the encryption key setting).
    data_key: [u8; 32],
    data_key_b64: String,
    aws_secret: String,
    aws_token: String,
}

impl Canaries {
    fn new() -> Canaries {
        use base64::Engine;
        let tag = || format!("{:016x}", rand::random::<u64>());
        let data_key: [u8; 32] = *b"CANARY-data-key-0123456789abcdef";
        Canaries {
            alice_api: format!("CANARY-api-a-{}", tag()),
            alice_app: format!("CANARY-app-a-{}", tag()),
            bob_api: format!("CANARY-api-b-{}", tag()),
            bob_app: format!("CANARY-app-b-{}", tag()),
            data_key,
            data_key_b64: base64::engine::general_purpose::STANDARD.encode(data_key),
            aws_secret: format!("CANARY-aws-secret-{}", tag()),
            aws_token: format!("CANARY-aws-token-{}", tag()),
        }
    }

    /// Every form a leak could take: the marker (which every key holds, so any part of a key
    /// longer than its last four characters is caught), the data key in base64 and as a Rust
    /// byte list.
    fn needles(&self) -> Vec<String> {
        let bytes: Vec<String> = self.data_key[..8].iter().map(u8::to_string).collect();
        vec![
            "CANARY".to_owned(),
            self.data_key_b64.clone(),
            self.data_key_b64[..20].to_owned(),
            bytes.join(", "),
            bytes.join(","),
        ]
    }

    /// The first needle in `text`, with the text around it.
    fn find(&self, text: &str) -> Option<String> {
        self.needles().into_iter().find_map(|needle| {
            let at = text.find(&needle)?;
            let start = text[..at]
                .char_indices()
                .rev()
                .nth(200)
                .map_or(0, |(i, _)| i);
            let end = (at + 200).min(text.len());
            let end = (end..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            Some(format!("{needle:?} in …{}…", &text[start..end]))
        })
    }

    /// Panics naming `place` when `text` holds any needle.
    #[track_caller]
    fn assert_absent(&self, place: &str, text: &str) {
        if let Some(found) = self.find(text) {
            panic!("leaked into {place}: {found}");
        }
    }
}

/// The binary's environment: the stack's settings, trace logging in `format`, the canary
/// data key, and the daemon's own AWS credentials as canaries too.
fn binary_env(
    stack: &Stack,
    canaries: &Canaries,
    format: &str,
    api: SocketAddr,
    ops: SocketAddr,
) -> HashMap<String, String> {
    let (api, ops) = (api.to_string(), ops.to_string());
    let mut env = stack.env(&[
        ("CTC__LOG__LEVEL", "trace"),
        ("CTC__LOG__FORMAT", format),
        ("CTC__API__LISTEN", &api),
        ("CTC__ADMIN__LISTEN", &ops),
        ("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", &canaries.data_key_b64),
        ("CTC__WORKER__RETRY_BACKOFF_SECONDS", "1"),
    ]);
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", canaries.aws_secret.as_str()),
        ("AWS_SESSION_TOKEN", canaries.aws_token.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    env
}

fn binary(args: &[&str], env: &HashMap<String, String>) -> std::process::Command {
    crate::support::binary::command(args, env)
}

/// Runs a one-shot command of the binary; returns stdout and stderr together.
async fn one_shot(args: &[&str], env: &HashMap<String, String>) -> String {
    let mut command = binary(args, env);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task")
        .expect("the binary runs");
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

struct Daemon {
    child: std::process::Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    async fn start(env: &HashMap<String, String>, log: PathBuf, api: SocketAddr) -> Daemon {
        let child = binary(&["run"], env)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .spawn()
            .expect("the daemon starts");
        let daemon = Daemon { child, log };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(api).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the daemon never listened: {}",
                std::fs::read_to_string(&daemon.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        daemon
    }

    /// SIGTERM, then the exit status and the whole log.
    async fn stop(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let log = std::fs::read_to_string(&self.log).expect("the log");
                return (status.success(), log);
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the daemon did not stop"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A full run of the real binary, every path that handles keys exercised, then every output
/// searched for the canaries.
async fn no_secret_leaves_the_daemon(format: &str) {
    let stack = Stack::new(&format!("sec-canary-{format}"), 2, None).await;
    let canaries = Canaries::new();
    let (api, ops) = (free_addr(), free_addr());
    let env = binary_env(&stack, &canaries, format, api, ops);
    let daemon = Daemon::start(&env, stack.dir.join(format!("daemon-{format}.log")), api).await;
    let mut outputs: Vec<(String, String)> = Vec::new();

    let alice = Customer {
        api_key: canaries.alice_api.clone(),
        app_key: canaries.alice_app.clone(),
        bucket: stack.bucket.clone(),
        account: "218007301253".into(),
        role: "arn:aws:iam::218007301253:role/alice-reader".into(),
        external_id: "alice-external-id".into(),
    };
    let rejected_bucket = format!("sec-canary-{format}-rejected");
    stack.aws.create_bucket(&rejected_bucket).await;
    stack
        .aws
        .notify_bucket_to_queue_directly(&rejected_bucket, &stack.queues.url)
        .await;
    let bob = Customer {
        api_key: canaries.bob_api.clone(),
        app_key: canaries.bob_app.clone(),
        bucket: rejected_bucket.clone(),
        ..alice.clone()
    };
    for customer in [&alice, &bob] {
        let answer = post(api, &customer.body()).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        assert_eq!(answer.json()["apiKey"], json!(redacted(&customer.api_key)));
        outputs.push(("the subscribe answer".into(), answer.text));
    }

    // A full delivery with alice's keys.
    stack
        .aws
        .put_object(
            &alice.bucket,
            &log_key(&alice.account, "canary"),
            good_file(),
        )
        .await;
    assert!(
        stack
            .bigpanda
            .wait_for_accepted(GOOD_CHANGES, Duration::from_secs(60))
            .await
    );
    let first = &stack.bigpanda.accepted()[0];
    assert_eq!(
        first.api_key.as_deref(),
        Some(alice.api_key.as_str()),
        "the keys were used"
    );
    assert_eq!(first.app_key.as_deref(), Some(alice.app_key.as_str()));
    // The one place the keys belong, and proof that the search finds them.
    assert!(canaries.find(&format!("{first:?}")).is_some());
    assert!(canaries.find(&canaries.data_key_b64).is_some());
    assert!(canaries.find(&format!("{:?}", canaries.data_key)).is_some());

    // Bob's keys are refused: retried, then dead-lettered.
    stack.bigpanda.reject_api_key(&bob.api_key);
    stack
        .aws
        .put_object(&bob.bucket, &log_key(&bob.account, "refused"), good_file())
        .await;
    let started = Instant::now();
    while stack.aws.queue_depth(&stack.queues.dlq_url).await < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // On-call's view first (it puts the message back), then the message itself.
    let peek = one_shot(&["dlq", "peek"], &env).await;
    assert!(peek.contains("bigpanda_unauthorized"), "{peek}");
    outputs.push(("dlq peek".into(), peek));
    let dead = stack
        .dead_letters_with_attributes(1, Duration::from_secs(60))
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].0.get("failure_reason").map(String::as_str),
        Some("bigpanda_unauthorized")
    );
    stack.bigpanda.set_default(204);
    assert!(
        stack
            .bigpanda
            .all()
            .iter()
            .filter(|r| r.status == 401)
            .count()
            >= 2
    );
    for (attrs, body) in &dead {
        outputs.push(("a DLQ message".into(), format!("{attrs:?} {body}")));
    }

    // A notification whose bucket name holds a line break: no log line may be forged with it.
    let forged = s3_event(
        "evil\nFORGED-LOG-LINE ERROR fake entry",
        &log_key(&alice.account, "forged"),
        &json!({}),
    );
    stack.aws.send_message(&stack.queues.url, &forged).await;

    // API errors with the keys in every field they could be echoed from.
    let mut errors = Vec::new();
    let mut takeover = bob.body();
    takeover["bucket_name"] = json!(alice.bucket);
    errors.push(post(api, &takeover).await);
    let mut spaced = alice.body();
    spaced["apiKey"] = json!(format!("{} ", alice.api_key));
    spaced["appKey"] = json!([alice.app_key]);
    errors.push(post(api, &spaced).await);
    errors.push(
        post(
            api,
            &json!({"api_key": alice.api_key, "app_key": alice.app_key}),
        )
        .await,
    );
    errors.push(post_text(api, &format!("{{\"apiKey\": \"{}", alice.api_key)).await);
    errors.push(
        send(
            reqwest::Client::new()
                .post(subscriptions_url(api))
                .header("content-type", "text/plain")
                .body(alice.body().to_string()),
        )
        .await,
    );
    let mut padded = alice.body();
    padded["padding"] = json!("p".repeat(17 * 1024));
    errors.push(post(api, &padded).await);
    errors.push(delete(api, &bob.api_key, &alice.bucket).await);
    errors.push(delete(api, &format!("{}\u{7f}", alice.api_key), &alice.bucket).await);
    errors.push(get(api, &format!("Bearer {} extra", alice.api_key)).await);
    errors.push(get(api, &format!("Token {}", alice.api_key)).await);
    let statuses: Vec<u16> = errors.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [409, 400, 400, 400, 415, 413, 404, 400, 401, 401]);
    for (i, answer) in errors.into_iter().enumerate() {
        outputs.push((format!("API error {i} ({})", answer.status), answer.text));
    }
    let listing = get(api, &format!("Bearer {}", alice.api_key)).await;
    assert_eq!(listing.status, 200);
    outputs.push(("the listing".into(), listing.text));

    for path in ["/metrics", "/healthz", "/readyz"] {
        let page = reqwest::get(format!("http://{ops}{path}"))
            .await
            .expect("the admin listener")
            .text()
            .await
            .expect("a page");
        outputs.push((path.into(), page));
    }
    assert!(outputs
        .iter()
        .any(|(place, text)| place == "/metrics" && text.contains("ctc_messages_total")));

    let started = Instant::now();
    while stack.aws.queue_depth(&stack.queues.url).await > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "messages left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (stopped, log) = daemon.stop().await;
    assert!(
        log.contains("FORGED-LOG-LINE"),
        "the forged notification was logged"
    );
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "a log line was forged: {line}");
    }
    assert!(stopped, "{log}");
    assert!(
        log.contains("message finished") && log.contains("TRACE"),
        "a trace-level log"
    );
    if format == "json" {
        for line in log.lines().filter(|l| !l.is_empty()) {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
    }
    outputs.push(("the daemon's log".into(), log));

    // The on-call tools, with the same settings.
    outputs.push((
        "config check".into(),
        one_shot(&["config", "check"], &env).await,
    ));
    outputs.push((
        "subscriptions list".into(),
        one_shot(&["subscriptions", "list"], &env).await,
    ));
    for bucket in [&alice.bucket, &bob.bucket] {
        let shown = one_shot(&["subscriptions", "show", bucket], &env).await;
        assert!(
            shown.contains(&redacted(&alice.api_key)) || shown.contains(&redacted(&bob.api_key)),
            "{shown}"
        );
        outputs.push((format!("subscriptions show {bucket}"), shown));
    }
    let mut bad_key = env.clone();
    bad_key.insert(
        "CTC__SUBSCRIPTIONS__ENCRYPTION_KEY".into(),
        format!("{}!", canaries.data_key_b64),
    );
    outputs.push((
        "config check with a bad data key".into(),
        one_shot(&["config", "check"], &bad_key).await,
    ));

    // The store holds the keys sealed.
    let db = std::fs::read(stack.dir.join("subscriptions.db")).expect("the database");
    outputs.push((
        "the database file".into(),
        String::from_utf8_lossy(&db).into_owned(),
    ));

    for (place, text) in &outputs {
        canaries.assert_absent(place, text);
    }
}

#[test]
fn debug_and_serialized_forms_of_settings_subscriptions_keys_and_requests_hold_no_secret() {
    use cloudtrail_changes::subscriptions::{validate, Subscription};
    use secrecy::SecretString;
    let canaries = Canaries::new();
    let mut env = HashMap::from([(
        "CTC__SUBSCRIPTIONS__ENCRYPTION_KEY".to_owned(),
        canaries.data_key_b64.clone(),
    )]);
    let settings =
        cloudtrail_changes::settings::load_with_env(None, env.clone()).expect("settings");
    assert!(
        settings.subscriptions.sealer().encrypts(),
        "the canary data key is in use"
    );
    let mut forms = vec![
        format!("{settings:?}"),
        format!("{settings:#?}"),
        serde_json::to_string(&settings).expect("settings serialize"),
        format!("{:?}", settings.subscriptions),
        format!("{:?}", settings.subscriptions.sealer()),
    ];
    env.insert(
        "CTC__SUBSCRIPTIONS__ENCRYPTION_KEY".to_owned(),
        format!("{}=", &canaries.data_key_b64[..40]),
    );
    let error = cloudtrail_changes::settings::load_with_env(None, env).expect_err("a bad key");
    forms.push(format!("{error} {error:?}"));

    let subscription = Subscription {
        bucket_name: "debug-bucket".into(),
        bucket_region: "us-east-1".into(),
        iam_role_arn: "arn:aws:iam::123456789012:role/r".into(),
        iam_role_external_id: "ext-id".into(),
        bucket_owner: "123456789012".into(),
        pending: false,
        api_key: SecretString::from(canaries.alice_api.clone()),
        app_key: SecretString::from(canaries.alice_app.clone()),
        created_at: 0,
        updated_at: 0,
    };
    forms.push(format!("{subscription:?} {subscription:#?}"));
    forms.push(format!("{:?}", subscription.redacted()));
    forms.push(serde_json::to_string(&subscription.redacted()).expect("serializes"));
    let keys = cloudtrail_changes::forward::Keys {
        api_key: SecretString::from(canaries.alice_api.clone()),
        app_key: SecretString::from(canaries.alice_app.clone()),
    };
    forms.push(format!("{keys:?} {keys:#?}"));

    let body = json!({
        "apiKey": canaries.alice_api, "appKey": canaries.alice_app, "bucket_name": "debug-bucket",
        "bucket_region": "us-east-1", "iam_role_arn": "arn:aws:iam::123456789012:role/r",
        "iam_role_external_id": "ext-id",
    });
    let request = validate::subscribe_request(&body).expect("valid");
    forms.push(format!("{request:?}"));
    let mut bad = body.clone();
    bad["apiKey"] = json!(format!("{} x", canaries.alice_api));
    bad["appKey"] = json!(format!("{}\u{1}", canaries.alice_app));
    bad[canaries.bob_api.clone()] = json!(canaries.bob_app);
    let invalid = validate::subscribe_request(&bad).expect_err("invalid");
    // An unknown field is named by its name: a key sent as a field *name* is echoed, so only
    // the values are checked here.
    let shown: Vec<String> = invalid
        .0
        .iter()
        .filter(|e| e.field != canaries.bob_api)
        .map(|e| format!("{e:?}"))
        .collect();
    assert_eq!(shown.len(), 2, "{invalid:?}");
    forms.extend(shown);
    let request =
        validate::unsubscribe_request(&json!({"apiKey": canaries.bob_api, "bucket_name": "b"}))
            .expect("valid");
    forms.push(format!("{request:?}"));

    for form in &forms {
        canaries.assert_absent("a Debug or serialized form", form);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_secret_appears_in_trace_logs_metrics_dlq_api_errors_or_cli_output() {
    no_secret_leaves_the_daemon("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_secret_appears_in_json_trace_logs_either() {
    no_secret_leaves_the_daemon("json").await;
}
