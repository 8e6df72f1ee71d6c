use super::*;
use crate::subscriptions::store::conformance::{self, row, Backend};

/// SQLite stores on one file in a temporary directory.
struct Sqlite(TempDir);

impl Backend for Sqlite {
    type Store = SqliteStore;
    async fn fresh(&self) -> SqliteStore {
        SqliteStore::open(&self.0.db()).expect("open")
    }
    async fn another(&self, _store: &SqliteStore) -> SqliteStore {
        SqliteStore::open(&self.0.db()).expect("open again")
    }
}

async fn backend(test: &str) -> Option<Sqlite> {
    Some(Sqlite(TempDir::new(test)))
}

conformance::suite!(backend);

/// A unique directory under the system temp dir, removed on drop (even when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("ctc-sqlite-{test}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A database path whose parent does not exist yet, so `open` must create it.
    fn db(&self) -> PathBuf {
        self.0.join("state").join("subscriptions.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn expired_checkpoints_are_purged() {
    let dir = TempDir::new("purge");
    SqliteStore::open(&dir.db())
        .expect("open")
        .save_checkpoint("old", 2, 0)
        .await
        .expect("save");
    // A new store's first save purges.
    let store = SqliteStore::open(&dir.db()).expect("open");
    store.save_checkpoint("new", 1, 3600).await.expect("save");

    let raw = Connection::open(dir.db()).expect("raw open");
    let objects: Vec<String> = raw
        .prepare("SELECT object FROM checkpoints")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(objects, ["new"]);
}

#[tokio::test]
async fn unreadable_row_is_corrupt_without_its_values() {
    let dir = TempDir::new("corrupt");
    let store = SqliteStore::open(&dir.db()).expect("open");
    store.put(&row("b1", "o1", 100)).await.expect("put");
    let raw = Connection::open(dir.db()).expect("raw open");
    raw.execute(
        "UPDATE subscriptions SET created_at = 'soon', api_key = x'00'",
        [],
    )
    .expect("damage");

    for err in [
        store.get("b1").await.unwrap_err(),
        store.list(None).await.unwrap_err(),
    ] {
        let StoreError::Corrupt { bucket, detail } = err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(bucket, "b1");
        assert!(detail.contains("api_key"), "{detail}");
        assert!(!detail.contains("sealed"), "{detail}");
    }
}

#[tokio::test]
async fn expired_tombstones_are_purged_from_the_file() {
    let dir = TempDir::new("tombstones-expire");
    let store = SqliteStore::open(&dir.db()).expect("open");
    let long_ago = now() - TOMBSTONE_RETENTION_SECONDS - 1;
    store.tombstone("old", long_ago).await.expect("tombstone");
    // The next tombstone purges it from the file.
    store.tombstone("new", now()).await.expect("tombstone");
    let raw = Connection::open(dir.db()).expect("raw open");
    let count: i64 = raw
        .query_row("SELECT count(*) FROM tombstones", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_version_1_file_is_upgraded_keeping_its_rows_without_a_bucket_owner() {
    let dir = TempDir::new("migrate");
    std::fs::create_dir_all(dir.db().parent().expect("parent")).expect("dir");
    {
        let raw = Connection::open(dir.db()).expect("raw open");
        raw.execute_batch(SCHEMA).expect("v1 schema");
        raw.pragma_update(None, "user_version", 1).expect("v1");
        raw.execute(
            "INSERT INTO subscriptions VALUES ('b1', 'us-east-1', 'arn', 'ext', 'sealed-api', \
             'sealed-app', 'o1', 100, 100)",
            [],
        )
        .expect("v1 row");
        raw.execute(
            "INSERT INTO checkpoints VALUES ('b1/k#e', 3, ?1)",
            [now() + 3600],
        )
        .expect("v1 checkpoint");
    }

    let store = SqliteStore::open(&dir.db()).expect("open upgrades");
    let raw = Connection::open(dir.db()).expect("raw open");
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    let upgraded = store.get("b1").await.expect("get").expect("the row");
    assert_eq!(upgraded.owner, "o1");
    // No bucket owner recorded before version 3: '' (read as the role's account).
    assert_eq!(upgraded.bucket_owner, "");
    // Rows of before version 3 worked: verified, never open to a takeover.
    assert!(!upgraded.pending);
    assert_eq!(store.checkpoint("b1/k#e").await.expect("read"), Some(3));
    store.tombstone("b1", now()).await.expect("tombstone");
    assert!(store.is_tombstoned("b1").await.expect("read").is_some());
    // Opening again is a no-op.
    drop(SqliteStore::open(&dir.db()).expect("reopen"));
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new("schema");
    drop(SqliteStore::open(&dir.db()).expect("open"));
    let raw = Connection::open(dir.db()).expect("raw open");
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("bump");

    let err = SqliteStore::open(&dir.db()).unwrap_err();
    let StoreError::Unavailable {
        backend,
        operation,
        detail,
    } = err
    else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert_eq!((backend, operation), ("sqlite", "open"));
    assert!(detail.contains("subscriptions.db"), "{detail}");
}
