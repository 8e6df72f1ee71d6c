//! One conformance suite for every [`Store`] backend: the contract of [`super`] written once as
//! generic cases, instantiated per backend with [`suite!`] (see the tests of
//! [`crate::subscriptions::sqlite`] and [`crate::subscriptions::dynamodb`]). What only one
//! backend has (schema migration, table creation, paging) stays in that backend's own tests.

use super::{
    Checkpoints, Put, Row, Rows, SealedKeys, Store, StoreError, Tombstone, Tombstones,
    TOMBSTONE_RETENTION_SECONDS,
};
use std::time::{SystemTime, UNIX_EPOCH};

/// How a test gets stores of one backend.
pub(crate) trait Backend {
    type Store: Store + Clone + 'static;
    /// A store on new, empty storage (a fresh file or table).
    async fn fresh(&self) -> Self::Store;
    /// Another store on the same storage with its own connection or client, like another
    /// process or node.
    async fn another(&self, store: &Self::Store) -> Self::Store;
}

/// The suite's copy of the tests' prerequisite rule (`tests/common/prerequisite.rs`).
#[path = "../../../tests/common/prerequisite.rs"]
mod prerequisite;

/// A missing prerequisite (say, no local DynamoDB endpoint): with `CI` set the test fails;
/// otherwise it writes a `SKIPPED:` line (counted in `scripts/test.sh`'s summary) and the
/// caller returns.
pub fn skip(test: &str, why: &str) {
    prerequisite::missing(test, why);
}

/// Instantiates every conformance case as a `#[tokio::test]` for one backend. `$backend` names an
/// `async fn(test: &str) -> Option<impl Backend>` called by each test; `None` means the test
/// was skipped (see [`skip`]).
macro_rules! suite {
    ($backend:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let test: &str = stringify!($case);
                let Some(backend) = $backend(test).await else { return };
                $crate::subscriptions::store::conformance::$case(&backend).await;
            }
        )*
    };
    ($backend:path) => {
        $crate::subscriptions::store::conformance::suite!($backend;
            put_creates_then_updates_keeping_created_at,
            put_by_another_owner_conflicts_and_writes_nothing,
            delete_owned_needs_the_owner,
            remove_deletes_whoever_owns,
            list_is_ordered_and_filters_by_owner,
            rows_and_checkpoints_persist_for_another_connection,
            another_connection_sees_writes_and_conflicts,
            concurrent_puts_from_several_connections_have_one_winner,
            checkpoints_save_read_clear_and_expire,
            tombstones_are_kept_counted_listed_and_cleared,
            tombstones_expire_after_the_retention,
            clearing_a_buckets_checkpoints_keeps_the_others_and_the_rows,
            reseal_swaps_the_keys_only_while_they_are_unchanged,
            a_pending_row_gives_way_only_to_a_proven_row_of_another_owner,
            mark_verified_needs_the_owner_and_a_verified_row_stays_verified,
        );
    };
}
pub(crate) use suite;

/// A row whose sealed values name its owner.
pub fn row(bucket: &str, owner: &str, at: i64) -> Row {
    Row {
        bucket_name: bucket.to_owned(),
        bucket_region: "us-east-1".to_owned(),
        iam_role_arn: format!("arn:aws:iam::123456789012:role/{bucket}"),
        iam_role_external_id: format!("ext-{bucket}"),
        api_key: format!("sealed-api-{owner}"),
        app_key: format!("sealed-app-{owner}"),
        owner: owner.to_owned(),
        bucket_owner: "123456789012".to_owned(),
        pending: false,
        created_at: at,
        updated_at: at,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn names(rows: Vec<Row>) -> Vec<String> {
    rows.into_iter().map(|r| r.bucket_name).collect()
}

pub async fn put_creates_then_updates_keeping_created_at(b: &impl Backend) {
    let store = b.fresh().await;
    assert_eq!(
        store.put(&row("b1", "o1", 100)).await.expect("put"),
        Put::Created
    );
    let mut changed = row("b1", "o1", 200);
    changed.bucket_region = "eu-west-1".to_owned();
    changed.api_key = "sealed-new".to_owned();
    changed.bucket_owner = "210987654321".to_owned();
    assert_eq!(store.put(&changed).await.expect("put"), Put::Updated);

    let stored = store.get("b1").await.expect("get").expect("row");
    assert_eq!(stored.created_at, 100);
    assert_eq!(stored.updated_at, 200);
    assert_eq!(stored.bucket_region, "eu-west-1");
    assert_eq!(stored.api_key, "sealed-new");
    assert_eq!(stored.bucket_owner, "210987654321");
    assert_eq!(store.get("missing").await.expect("get"), None);
}

pub async fn put_by_another_owner_conflicts_and_writes_nothing(b: &impl Backend) {
    let store = b.fresh().await;
    let original = row("b1", "o1", 100);
    store.put(&original).await.expect("put");

    let err = store.put(&row("b1", "o2", 200)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { ref bucket } if bucket == "b1"),
        "{err:?}"
    );
    assert_eq!(store.get("b1").await.expect("get"), Some(original));
}

pub async fn delete_owned_needs_the_owner(b: &impl Backend) {
    let store = b.fresh().await;
    store.put(&row("b1", "o1", 100)).await.expect("put");

    assert!(!store.delete_owned("b1", "o2").await.expect("delete"));
    assert!(store.get("b1").await.expect("get").is_some());
    assert!(!store.delete_owned("missing", "o1").await.expect("delete"));
    assert!(store.delete_owned("b1", "o1").await.expect("delete"));
    assert_eq!(store.get("b1").await.expect("get"), None);
}

pub async fn remove_deletes_whoever_owns(b: &impl Backend) {
    let store = b.fresh().await;
    store.put(&row("b1", "o1", 100)).await.expect("put");

    assert!(store.remove("b1").await.expect("remove"));
    assert!(!store.remove("b1").await.expect("remove"));
    assert_eq!(store.get("b1").await.expect("get"), None);
}

pub async fn list_is_ordered_and_filters_by_owner(b: &impl Backend) {
    let store = b.fresh().await;
    for (bucket, owner) in [("c", "o1"), ("a", "o2"), ("b", "o1")] {
        store.put(&row(bucket, owner, 1)).await.expect("put");
    }
    // A checkpoint and a tombstone are not subscriptions.
    store
        .save_checkpoint("a/key#etag", 4, 3600)
        .await
        .expect("save");
    store.tombstone("gone", now()).await.expect("tombstone");

    assert_eq!(
        names(store.list(None).await.expect("list")),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(store.list(Some("o1")).await.expect("list")),
        ["b", "c"]
    );
    assert!(store.list(Some("nobody")).await.expect("list").is_empty());
}

pub async fn rows_and_checkpoints_persist_for_another_connection(b: &impl Backend) {
    let original = row("b1", "o1", 100);
    let first = b.fresh().await;
    first.put(&original).await.expect("put");
    first.save_checkpoint("obj", 7, 3600).await.expect("save");
    let later = b.another(&first).await;
    drop(first);
    assert_eq!(later.get("b1").await.expect("get"), Some(original));
    assert_eq!(later.checkpoint("obj").await.expect("checkpoint"), Some(7));
}

pub async fn another_connection_sees_writes_and_conflicts(b: &impl Backend) {
    let first = b.fresh().await;
    let second = b.another(&first).await;

    first.put(&row("b1", "o1", 100)).await.expect("put");
    assert_eq!(
        second.get("b1").await.expect("get").map(|r| r.owner),
        Some("o1".into())
    );
    let err = second.put(&row("b1", "o2", 200)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(second.remove("b1").await.expect("remove"));
    assert_eq!(first.get("b1").await.expect("get"), None);
}

/// Eight owners race for one bucket, half through a shared store and half on connections of
/// their own: exactly one wins and keeps the row.
pub async fn concurrent_puts_from_several_connections_have_one_winner(b: &impl Backend) {
    let store = b.fresh().await;
    let mut racers = Vec::new();
    for i in 0..8 {
        racers.push(if i % 2 == 0 {
            store.clone()
        } else {
            b.another(&store).await
        });
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(racers.len()));
    let tasks: Vec<_> = racers
        .into_iter()
        .enumerate()
        .map(|(i, racer)| {
            let barrier = std::sync::Arc::clone(&barrier);
            tokio::spawn(async move {
                let owner = format!("owner-{i}");
                barrier.wait().await;
                (owner.clone(), racer.put(&row("contested", &owner, 1)).await)
            })
        })
        .collect();
    let (mut winners, mut conflicts) = (Vec::new(), 0);
    for task in tasks {
        match task.await.expect("task") {
            (owner, Ok(Put::Created)) => winners.push(owner),
            (_, Err(StoreError::Conflict { .. })) => conflicts += 1,
            (_, other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((winners.len(), conflicts), (1, 7));
    let stored = store.get("contested").await.expect("get").expect("row");
    assert_eq!(stored.owner, winners[0]);
}

pub async fn checkpoints_save_read_clear_and_expire(b: &impl Backend) {
    let store = b.fresh().await;
    assert_eq!(store.checkpoint("obj").await.expect("read"), None);

    store.save_checkpoint("obj", 3, 3600).await.expect("save");
    store.save_checkpoint("obj", 5, 3600).await.expect("save");
    assert_eq!(store.checkpoint("obj").await.expect("read"), Some(5));
    store.clear_checkpoint("obj").await.expect("clear");
    assert_eq!(store.checkpoint("obj").await.expect("read"), None);

    store.save_checkpoint("old", 2, 0).await.expect("save");
    assert_eq!(store.checkpoint("old").await.expect("read"), None);
}

pub async fn tombstones_are_kept_counted_listed_and_cleared(b: &impl Backend) {
    let store = b.fresh().await;
    store.put(&row("live", "o1", 1)).await.expect("put");
    assert_eq!(store.is_tombstoned("b1").await.expect("read"), None);
    // Nothing to count without a tombstone, and counting does not create one.
    store.note_late_notification("b1", 150).await.expect("note");
    assert_eq!(store.is_tombstoned("b1").await.expect("read"), None);

    let now = now();
    store.tombstone("b1", now).await.expect("tombstone");
    store.tombstone("a0", now - 10).await.expect("tombstone");
    let fresh = Tombstone {
        removed_at: now,
        last_seen: None,
        late_notifications: 0,
    };
    assert_eq!(store.is_tombstoned("b1").await.expect("read"), Some(fresh));

    store
        .note_late_notification("b1", now + 5)
        .await
        .expect("note");
    store
        .note_late_notification("b1", now + 9)
        .await
        .expect("note");
    let counted = Tombstone {
        last_seen: Some(now + 9),
        late_notifications: 2,
        ..fresh
    };
    assert_eq!(
        store.is_tombstoned("b1").await.expect("read"),
        Some(counted)
    );
    let listed = store.list_tombstones().await.expect("list");
    let listed_names: Vec<&str> = listed.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(listed_names, ["a0", "b1"]);
    assert_eq!(listed[1].1, counted);
    // Tombstones are not subscriptions.
    assert_eq!(store.get("b1").await.expect("get"), None);
    assert_eq!(names(store.list(None).await.expect("list")), ["live"]);

    // A second removal starts over.
    store.tombstone("b1", now + 20).await.expect("tombstone");
    let again = store
        .is_tombstoned("b1")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!((again.removed_at, again.late_notifications), (now + 20, 0));

    store.clear_tombstone("b1").await.expect("clear");
    assert_eq!(store.is_tombstoned("b1").await.expect("read"), None);
    assert_eq!(store.list_tombstones().await.expect("list").len(), 1);
}

pub async fn tombstones_expire_after_the_retention(b: &impl Backend) {
    let store = b.fresh().await;
    let long_ago = now() - TOMBSTONE_RETENTION_SECONDS - 1;
    store.tombstone("old", long_ago).await.expect("tombstone");
    assert_eq!(store.is_tombstoned("old").await.expect("read"), None);
    store
        .note_late_notification("old", now())
        .await
        .expect("note");
    assert!(store.list_tombstones().await.expect("list").is_empty());
}

pub async fn clearing_a_buckets_checkpoints_keeps_the_others_and_the_rows(b: &impl Backend) {
    let store = b.fresh().await;
    store.put(&row("b1", "o1", 1)).await.expect("put");
    let ids = [
        "b1/AWSLogs/a.json.gz#e1",
        "b1/AWSLogs/b.json.gz#",
        "b10/AWSLogs/a.json.gz#e1",
        "b1-x/AWSLogs/a.json.gz#e1",
        "B1/upper#e",
        "b0/k#e",
    ];
    for id in ids {
        store.save_checkpoint(id, 1, 3600).await.expect("save");
    }
    assert_eq!(store.clear_checkpoints("b1").await.expect("clear"), 2);
    for id in ids {
        let expected = if id.starts_with("b1/") { None } else { Some(1) };
        assert_eq!(store.checkpoint(id).await.expect("read"), expected, "{id}");
    }
    assert!(
        store.get("b1").await.expect("get").is_some(),
        "not a checkpoint"
    );
    assert_eq!(store.clear_checkpoints("b1").await.expect("clear"), 0);
}

pub async fn reseal_swaps_the_keys_only_while_they_are_unchanged(b: &impl Backend) {
    let store = b.fresh().await;
    let original = row("b1", "o1", 100);
    store.put(&original).await.expect("put");
    let resealed = SealedKeys {
        api_key: "resealed-api".to_owned(),
        app_key: "resealed-app".to_owned(),
    };

    // A stale `old` (the row changed since it was read) changes nothing.
    let stale = SealedKeys {
        api_key: original.api_key.clone(),
        app_key: "sealed-app-someone-else".to_owned(),
    };
    assert!(!store.reseal("b1", &stale, &resealed).await.expect("reseal"));
    assert_eq!(store.get("b1").await.expect("get"), Some(original.clone()));
    assert!(!store
        .reseal("missing", &original.sealed_keys(), &resealed)
        .await
        .expect("reseal"));
    assert_eq!(store.get("missing").await.expect("get"), None);

    // The current values are swapped; nothing else of the row changes, for another
    // connection too.
    assert!(store
        .reseal("b1", &original.sealed_keys(), &resealed)
        .await
        .expect("reseal"));
    let other = b.another(&store).await;
    let stored = other.get("b1").await.expect("get").expect("row");
    assert_eq!(stored.sealed_keys(), resealed);
    assert_eq!(
        Row {
            api_key: original.api_key.clone(),
            app_key: original.app_key.clone(),
            ..stored
        },
        original
    );
    // Once swapped, the old values no longer match.
    assert!(!other
        .reseal("b1", &original.sealed_keys(), &resealed)
        .await
        .expect("reseal"));
}

fn pending(bucket: &str, owner: &str, at: i64) -> Row {
    Row {
        pending: true,
        ..row(bucket, owner, at)
    }
}

pub async fn a_pending_row_gives_way_only_to_a_proven_row_of_another_owner(b: &impl Backend) {
    let store = b.fresh().await;
    let squatter = pending("b1", "squatter", 100);
    store.put(&squatter).await.expect("put");

    // Another pending row does not take it.
    let err = store.put(&pending("b1", "owner", 200)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(store.get("b1").await.expect("get"), Some(squatter));

    // A proven row does, whole (its own created_at), for another connection too.
    let proven = row("b1", "owner", 300);
    assert_eq!(store.put(&proven).await.expect("put"), Put::TookOver);
    let other = b.another(&store).await;
    assert_eq!(other.get("b1").await.expect("get"), Some(proven.clone()));

    // A verified row is never taken over, proven or not.
    let err = other.put(&row("b1", "squatter", 400)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(store.get("b1").await.expect("get"), Some(proven));
}

pub async fn mark_verified_needs_the_owner_and_a_verified_row_stays_verified(b: &impl Backend) {
    let store = b.fresh().await;
    store.put(&pending("b1", "o1", 100)).await.expect("put");
    assert!(!store.mark_verified("b1", "o2").await.expect("mark"));
    assert!(!store.mark_verified("missing", "o1").await.expect("mark"));
    assert!(store.get("b1").await.expect("get").expect("row").pending);
    assert!(store.mark_verified("b1", "o1").await.expect("mark"));
    assert!(
        !store.mark_verified("b1", "o1").await.expect("mark"),
        "only once"
    );
    assert!(!store.get("b1").await.expect("get").expect("row").pending);

    // The owner's update without a proof keeps it verified.
    assert_eq!(
        store.put(&pending("b1", "o1", 200)).await.expect("put"),
        Put::Updated
    );
    let stored = store.get("b1").await.expect("get").expect("row");
    assert!(!stored.pending);
    assert_eq!((stored.created_at, stored.updated_at), (100, 200));
}
