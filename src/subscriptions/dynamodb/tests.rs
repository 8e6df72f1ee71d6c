//! Run against a local endpoint (moto in server mode):
//! `CTC_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:5055 cargo test --lib dynamodb`.
use super::*;
use crate::subscriptions::store::conformance::{self, row, Backend};

const ENDPOINT_VAR: &str = "CTC_TEST_DYNAMODB_ENDPOINT";

async fn client(endpoint: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    Client::new(&config)
}

/// A store on a fresh table, or `None` (a skip; a failure with `CI` set) when no endpoint
/// is configured.
async fn store(test: &str) -> Option<DynamoStore> {
    let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
        conformance::skip(
            &format!("dynamodb::{test}"),
            &format!("{ENDPOINT_VAR} is not set"),
        );
        return None;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let table = format!("ctc-{test}-{}-{nanos}", std::process::id());
    let store = DynamoStore::new(client(&endpoint).await, table);
    assert!(store.create_table().await.expect("create table"));
    Some(store)
}

/// DynamoDB stores on one fresh table, each made by its own client like another node.
struct Dynamo(String);

impl Backend for Dynamo {
    type Store = DynamoStore;
    async fn fresh(&self) -> DynamoStore {
        store(&self.0).await.expect("checked by backend()")
    }
    async fn another(&self, store: &DynamoStore) -> DynamoStore {
        second(store).await
    }
}

async fn backend(test: &str) -> Option<Dynamo> {
    if std::env::var(ENDPOINT_VAR).is_err() {
        conformance::skip(
            &format!("dynamodb::{test}"),
            &format!("{ENDPOINT_VAR} is not set"),
        );
        return None;
    }
    Some(Dynamo(test.to_owned()))
}

conformance::suite!(backend);

/// Another store on the same table with its own client, like another node.
async fn second(store: &DynamoStore) -> DynamoStore {
    let endpoint = std::env::var(ENDPOINT_VAR).expect("endpoint");
    DynamoStore::new(client(&endpoint).await, store.table())
}

#[tokio::test]
async fn create_table_is_idempotent() {
    let Some(store) = store("idempotent").await else {
        return;
    };
    assert!(!store.create_table().await.expect("create again"));
    let ttl = store
        .client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .expect("describe ttl");
    let ttl = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(ttl.attribute_name(), Some(TTL_ATTRIBUTE));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

#[tokio::test]
async fn list_pages_through_many_items() {
    let Some(store) = store("pages").await else {
        return;
    };
    // ~1.2 MB of items: more than one 1 MB Scan/Query page.
    let padding = "x".repeat(40_000);
    for i in 0..30 {
        let mut r = row(&format!("bucket-{i:02}"), "o1", 1);
        r.iam_role_external_id.clone_from(&padding);
        store.put(&r).await.expect("put");
    }
    let first = store.client.scan().table_name(store.table()).send().await;
    assert!(
        first.expect("scan").last_evaluated_key.is_some(),
        "one page only"
    );
    assert_eq!(store.list(None).await.expect("scan").len(), 30);
    assert_eq!(store.list(Some("o1")).await.expect("query").len(), 30);
}

#[tokio::test]
async fn checkpoint_keys_are_not_subscriptions() {
    let Some(store) = store("keys").await else {
        return;
    };
    store.save_checkpoint("obj", 4, 3600).await.expect("save");
    let key = checkpoint_key("obj");

    assert_eq!(store.get(&key).await.expect("get"), None);
    assert!(!store.delete_owned(&key, "o1").await.expect("delete"));
    assert!(!store.remove(&key).await.expect("remove"));
    let err = store.put(&row(&key, "o1", 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(store.checkpoint("obj").await.expect("read"), Some(4));
}

#[tokio::test]
async fn unreadable_item_is_corrupt_without_its_values() {
    let Some(store) = store("corrupt").await else {
        return;
    };
    let mut item = row_item(&row("b1", "o1", 100));
    item.remove("created_at");
    item.insert("updated_at".to_owned(), s("sealed-not-a-number"));
    store
        .client
        .put_item()
        .table_name(store.table())
        .set_item(Some(item))
        .send()
        .await
        .expect("raw put");

    for err in [
        store.get("b1").await.unwrap_err(),
        store.list(None).await.unwrap_err(),
        store.list(Some("o1")).await.unwrap_err(),
    ] {
        let StoreError::Corrupt { bucket, detail } = err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(bucket, "b1");
        assert!(detail.contains("created_at"), "{detail}");
        assert!(!detail.contains("sealed"), "{detail}");
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_naming_the_table() {
    if std::env::var(ENDPOINT_VAR).is_err() {
        conformance::skip(
            "dynamodb::unreachable",
            &format!("{ENDPOINT_VAR} is not set"),
        );
        return;
    }
    // Port 9 (discard) on localhost: nothing listens there.
    let store = DynamoStore::new(client("http://127.0.0.1:9").await, "ctc-nowhere");
    let err = store.get("b1").await.unwrap_err();
    let StoreError::Unavailable {
        backend,
        operation,
        detail,
    } = err
    else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert_eq!((backend, operation), ("dynamodb", "get"));
    assert!(detail.contains("ctc-nowhere"), "{detail}");
}

// ---- the fleet's pace items ----

#[tokio::test]
async fn replicas_racing_for_one_keys_tokens_never_lease_more_than_the_rate_allows() {
    let Some(first) = store("pace-race").await else {
        return;
    };
    let rate = 1200; // 20 a second, leases of 20
    let started = Instant::now();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = second(&first).await;
        replicas.push(tokio::spawn(async move {
            let mut leased = 0u64;
            while started.elapsed() < Duration::from_secs(3) {
                let grant = store
                    .lease_tokens("fp-busy", rate, 20)
                    .await
                    .expect("lease");
                leased += u64::from(grant.tokens);
                if grant.tokens == 0 {
                    let wait = u64::try_from(grant.retry_in_ms).unwrap_or(1);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
            leased
        }));
    }
    let mut leased = 0;
    for replica in replicas {
        leased += replica.await.expect("replica");
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The bucket starts empty and holds one lease at most: never more than the rate over
    // the elapsed time plus one lease, whatever the interleaving of the replicas.
    let ceiling = f64::from(rate) * elapsed / 60.0 + 20.0;
    assert!(leased as f64 <= ceiling, "leased {leased} > {ceiling:.0}");
    assert!(leased > 0, "the replicas leased nothing");
    // The weekly count (bigpanda.changes_per_week) is the fleet's: every replica's leases.
    let last = first
        .lease_tokens("fp-busy", rate, 20)
        .await
        .expect("lease");
    assert_eq!(
        u64::try_from(last.state.week_count).unwrap(),
        leased + u64::from(last.tokens),
        "the week's count holds every lease of every replica"
    );
    let other = first
        .lease_tokens("fp-idle", rate, 20)
        .await
        .expect("lease");
    assert_eq!(
        other.tokens, 0,
        "another key starts with its own empty bucket"
    );
}

#[tokio::test]
async fn a_pause_written_by_one_replica_stops_the_leases_of_another_and_lists_stay_clean() {
    let Some(first) = store("pace-pause").await else {
        return;
    };
    let other = second(&first).await;
    let until = SystemTime::now() + Duration::from_secs(30);
    let until_ms = i64::try_from(until.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    first
        .pause_key("fp-throttled", until_ms)
        .await
        .expect("pause");
    let grant = other
        .lease_tokens("fp-throttled", 600, 10)
        .await
        .expect("lease");
    assert_eq!(grant.tokens, 0);
    assert!(
        (25_000..=30_000).contains(&grant.retry_in_ms),
        "{}",
        grant.retry_in_ms
    );
    assert!(
        first.list(None).await.expect("list").is_empty(),
        "a pace item is no subscription"
    );
    assert!(first.get("pace:fp-throttled").await.expect("get").is_none());
}
