//! SQLite subscription store: one file shared by the API, the workers of the same process and any
//! other process (the CLI) that opens it. Every read-modify-write runs in a `BEGIN IMMEDIATE`
//! transaction so two writers can never both win a bucket, and every SQLite call runs on a
//! blocking thread, never on an async worker thread.
//!
//! It must never put a row's values (above all `api_key` / `app_key`) in an error or a log line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::store::{
    Checkpoints, Put, Row, Rows, SealedKeys, StoreError, Tombstone, Tombstones,
    TOMBSTONE_RETENTION_SECONDS,
};

const BACKEND: &str = "sqlite";
/// The `PRAGMA user_version` this build writes and understands. Versions 1 (no tombstones) and
/// 2 (no bucket owner) are upgraded on open.
const SCHEMA_VERSION: i64 = 3;
/// How long a writer waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Expired checkpoints are purged on one `save_checkpoint` in this many.
const PURGE_EVERY: u64 = 100;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subscriptions (
    bucket_name TEXT PRIMARY KEY NOT NULL,
    bucket_region TEXT NOT NULL,
    iam_role_arn TEXT NOT NULL,
    iam_role_external_id TEXT NOT NULL,
    api_key TEXT NOT NULL,
    app_key TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_owner ON subscriptions (owner);
CREATE TABLE IF NOT EXISTS checkpoints (
    object TEXT PRIMARY KEY NOT NULL,
    accepted INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);";

/// Version 2: tombstones of removed subscriptions.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS tombstones (
    bucket_name TEXT PRIMARY KEY NOT NULL,
    removed_at INTEGER NOT NULL,
    last_seen INTEGER,
    late_notifications INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL
);";

/// Version 3: the account that owns the bucket ('' in older rows: the role's account), and
/// whether the row is still pending (older rows worked before: verified).
const SCHEMA_V3: &str = "
ALTER TABLE subscriptions ADD COLUMN bucket_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE subscriptions ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;";

const SELECT_ROWS: &str = "SELECT bucket_name, bucket_region, iam_role_arn, iam_role_external_id, \
     api_key, app_key, owner, created_at, updated_at, bucket_owner, pending FROM subscriptions";

/// A [`Store`] in one SQLite file (WAL mode). Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// `save_checkpoint` calls so far, to purge expired checkpoints now and then.
    saves: AtomicU64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Why a blocking closure failed, before it becomes a [`StoreError`] naming the file.
enum Fail {
    Sql(rusqlite::Error),
    Other(String),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(err: rusqlite::Error) -> Self {
        Fail::Sql(err)
    }
}

impl From<StoreError> for Fail {
    fn from(err: StoreError) -> Self {
        Fail::Store(err)
    }
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directory) the store at `path`, switches it to
    /// WAL and creates the schema if absent.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened or configured, or its schema
    /// version is newer than this build.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let opened = create_parent(path).and_then(|()| {
            let mut conn = Connection::open(path)?;
            configure(&mut conn)?;
            Ok(conn)
        });
        let conn = opened.map_err(|fail| resolve(fail, path, "open"))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                conn: Arc::new(Mutex::new(conn)),
                path: path.to_path_buf(),
                saves: AtomicU64::new(0),
            }),
        })
    }

    /// The file this store lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on a blocking thread with the connection locked.
    async fn run<T, F>(&self, operation: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T, Fail> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .conn
                .lock()
                .map_err(|_| Fail::Other("connection lock poisoned by a panic".to_owned()))?;
            work(&mut conn, &inner)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(|fail| resolve(fail, &self.inner.path, operation)),
            Err(err) => Err(unavailable(
                &self.inner.path,
                operation,
                &format!("blocking task failed: {err}"),
            )),
        }
    }
}

fn create_parent(path: &Path) -> Result<(), Fail> {
    match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|err| {
            Fail::Other(format!("cannot create directory {}: {err}", dir.display()))
        }),
        None => Ok(()),
    }
}

/// Per-connection settings, then the schema.
fn configure(conn: &mut Connection) -> Result<(), Fail> {
    // Before anything else, so a second process opening the file waits instead of failing.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Fail::Other(format!("journal_mode is {mode}, not WAL")));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    migrate(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), Fail> {
    // IMMEDIATE: two processes opening a fresh file must not both create the schema.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        0..=2 => {
            if version == 0 {
                tx.execute_batch(SCHEMA)?;
            }
            if version <= 1 {
                tx.execute_batch(SCHEMA_V2)?;
            }
            tx.execute_batch(SCHEMA_V3)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        SCHEMA_VERSION => {}
        other => {
            return Err(Fail::Other(format!(
                "schema version {other} is not {SCHEMA_VERSION}, the one this build understands"
            )))
        }
    }
    tx.commit()?;
    Ok(())
}

fn unavailable(path: &Path, operation: &'static str, detail: &str) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        operation,
        detail: format!("{}: {detail}", path.display()),
    }
}

fn resolve(fail: Fail, path: &Path, operation: &'static str) -> StoreError {
    match fail {
        Fail::Sql(err) => unavailable(path, operation, &err.to_string()),
        Fail::Other(detail) => unavailable(path, operation, &detail),
        Fail::Store(err) => err,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The key a checkpoint is reported under when it is unreadable (same as DynamoDB's).
fn checkpoint_label(object: &str) -> String {
    format!("checkpoint:{object}")
}

/// A TEXT column; the message names the column, never its value.
fn text(row: &rusqlite::Row<'_>, idx: usize, name: &str) -> Result<String, String> {
    match row.get_ref(idx) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| format!("column {name} is not valid UTF-8")),
        Ok(other) => Err(format!("column {name} is {}, not TEXT", other.data_type())),
        Err(err) => Err(format!("column {name}: {err}")),
    }
}

fn integer(row: &rusqlite::Row<'_>, idx: usize, name: &str) -> Result<i64, String> {
    match row.get_ref(idx) {
        Ok(ValueRef::Integer(value)) => Ok(value),
        Ok(other) => Err(format!(
            "column {name} is {}, not INTEGER",
            other.data_type()
        )),
        Err(err) => Err(format!("column {name}: {err}")),
    }
}

/// Reads one `SELECT_ROWS` row; unreadable columns make it [`StoreError::Corrupt`].
fn read_row(row: &rusqlite::Row<'_>) -> Result<Row, Fail> {
    let fields = || -> Result<Row, String> {
        Ok(Row {
            bucket_name: text(row, 0, "bucket_name")?,
            bucket_region: text(row, 1, "bucket_region")?,
            iam_role_arn: text(row, 2, "iam_role_arn")?,
            iam_role_external_id: text(row, 3, "iam_role_external_id")?,
            api_key: text(row, 4, "api_key")?,
            app_key: text(row, 5, "app_key")?,
            owner: text(row, 6, "owner")?,
            created_at: integer(row, 7, "created_at")?,
            updated_at: integer(row, 8, "updated_at")?,
            bucket_owner: text(row, 9, "bucket_owner")?,
            pending: integer(row, 10, "pending")? != 0,
        })
    };
    fields().map_err(|detail| {
        let bucket = text(row, 0, "bucket_name").unwrap_or_else(|_| "<unreadable>".to_owned());
        Fail::Store(StoreError::Corrupt { bucket, detail })
    })
}

fn put_row(conn: &mut Connection, row: &Row) -> Result<Put, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stored = tx
        .query_row(
            "SELECT owner, pending FROM subscriptions WHERE bucket_name = ?1",
            [&row.bucket_name],
            |r| Ok(text(r, 0, "owner").and_then(|o| Ok((o, integer(r, 1, "pending")? != 0)))),
        )
        .optional()?;
    let put = match stored {
        None => {
            tx.execute(
                "INSERT INTO subscriptions (bucket_name, bucket_region, iam_role_arn, \
                 iam_role_external_id, api_key, app_key, owner, created_at, updated_at, \
                 bucket_owner, pending) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    row.bucket_name,
                    row.bucket_region,
                    row.iam_role_arn,
                    row.iam_role_external_id,
                    row.api_key,
                    row.app_key,
                    row.owner,
                    row.created_at,
                    row.updated_at,
                    row.bucket_owner,
                    row.pending,
                ],
            )?;
            Put::Created
        }
        Some(Ok((owner, pending))) if owner == row.owner => {
            update_row(&tx, row, pending && row.pending)?;
            Put::Updated
        }
        Some(Ok((_, true))) if !row.pending => {
            update_row(&tx, row, false)?;
            tx.execute(
                "UPDATE subscriptions SET created_at = ?2 WHERE bucket_name = ?1",
                params![row.bucket_name, row.created_at],
            )?;
            Put::TookOver
        }
        // Returning drops `tx`, which rolls it back.
        Some(Ok(_)) => {
            return Err(Fail::Store(StoreError::Conflict {
                bucket: row.bucket_name.clone(),
            }))
        }
        Some(Err(detail)) => {
            return Err(Fail::Store(StoreError::Corrupt {
                bucket: row.bucket_name.clone(),
                detail,
            }))
        }
    };
    tx.commit()?;
    Ok(put)
}

fn update_row(tx: &rusqlite::Transaction<'_>, row: &Row, pending: bool) -> Result<(), Fail> {
    tx.execute(
        "UPDATE subscriptions SET bucket_region = ?2, iam_role_arn = ?3, \
         iam_role_external_id = ?4, api_key = ?5, app_key = ?6, owner = ?7, updated_at = ?8, \
         bucket_owner = ?9, pending = ?10 WHERE bucket_name = ?1",
        params![
            row.bucket_name,
            row.bucket_region,
            row.iam_role_arn,
            row.iam_role_external_id,
            row.api_key,
            row.app_key,
            row.owner,
            row.updated_at,
            row.bucket_owner,
            pending,
        ],
    )?;
    Ok(())
}

fn select_rows(conn: &Connection, owner: Option<&str>) -> Result<Vec<Row>, Fail> {
    let (sql, args): (String, Vec<&str>) = match owner {
        Some(owner) => (
            format!("{SELECT_ROWS} WHERE owner = ?1 ORDER BY bucket_name"),
            vec![owner],
        ),
        None => (format!("{SELECT_ROWS} ORDER BY bucket_name"), Vec::new()),
    };
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read_row(row)?);
    }
    Ok(out)
}

fn read_checkpoint(conn: &Connection, object: &str) -> Result<Option<u64>, Fail> {
    let stored = conn
        .query_row(
            "SELECT accepted FROM checkpoints WHERE object = ?1 AND expires_at > ?2",
            params![object, now()],
            |r| Ok(integer(r, 0, "accepted")),
        )
        .optional()?;
    let corrupt = |detail: String| {
        Fail::Store(StoreError::Corrupt {
            bucket: checkpoint_label(object),
            detail,
        })
    };
    match stored {
        None => Ok(None),
        Some(Ok(accepted)) => u64::try_from(accepted)
            .map(Some)
            .map_err(|_| corrupt("column accepted is negative".to_owned())),
        Some(Err(detail)) => Err(corrupt(detail)),
    }
}

fn write_checkpoint(
    conn: &Connection,
    inner: &Inner,
    object: &str,
    accepted: u64,
    ttl_seconds: u64,
) -> Result<(), Fail> {
    let accepted = i64::try_from(accepted)
        .map_err(|_| Fail::Other(format!("accepted count {accepted} does not fit SQLite")))?;
    let now = now();
    let expires_at = now.saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX));
    conn.execute(
        "INSERT INTO checkpoints (object, accepted, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (object) DO UPDATE SET accepted = excluded.accepted, \
         expires_at = excluded.expires_at",
        params![object, accepted, expires_at],
    )?;
    // The first save of each process purges too, so a restart clears any backlog.
    if inner
        .saves
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(PURGE_EVERY)
    {
        // Best effort: the save itself succeeded, and the next purge will catch up.
        if let Err(err) = conn.execute("DELETE FROM checkpoints WHERE expires_at <= ?1", [now]) {
            tracing::warn!(path = %inner.path.display(), error = %err, "purging expired checkpoints failed");
        }
    }
    Ok(())
}

fn write_tombstone(conn: &Connection, bucket: &str, now: i64) -> Result<(), Fail> {
    conn.execute(
        "INSERT INTO tombstones (bucket_name, removed_at, last_seen, late_notifications, \
         expires_at) VALUES (?1, ?2, NULL, 0, ?3) \
         ON CONFLICT (bucket_name) DO UPDATE SET removed_at = excluded.removed_at, \
         last_seen = NULL, late_notifications = 0, expires_at = excluded.expires_at",
        params![bucket, now, now.saturating_add(TOMBSTONE_RETENTION_SECONDS)],
    )?;
    // Tombstones are written once per removal: purge the expired ones then, best effort.
    if let Err(err) = conn.execute("DELETE FROM tombstones WHERE expires_at <= ?1", [now]) {
        tracing::warn!(error = %err, "purging expired tombstones failed");
    }
    Ok(())
}

/// Reads `bucket_name, removed_at, last_seen, late_notifications`.
fn read_tombstone(row: &rusqlite::Row<'_>) -> Result<(String, Tombstone), Fail> {
    let fields = || -> Result<(String, Tombstone), String> {
        let last_seen = match row.get_ref(2) {
            Ok(ValueRef::Null) => None,
            _ => Some(integer(row, 2, "last_seen")?),
        };
        let late = integer(row, 3, "late_notifications")?;
        Ok((
            text(row, 0, "bucket_name")?,
            Tombstone {
                removed_at: integer(row, 1, "removed_at")?,
                last_seen,
                late_notifications: u64::try_from(late)
                    .map_err(|_| "column late_notifications is negative".to_owned())?,
            },
        ))
    };
    fields().map_err(|detail| {
        let bucket = text(row, 0, "bucket_name").unwrap_or_else(|_| "<unreadable>".to_owned());
        Fail::Store(StoreError::Corrupt {
            bucket: format!("tombstone:{bucket}"),
            detail,
        })
    })
}

fn select_tombstones(
    conn: &Connection,
    bucket: Option<&str>,
) -> Result<Vec<(String, Tombstone)>, Fail> {
    let select = "SELECT bucket_name, removed_at, last_seen, late_notifications FROM tombstones \
                  WHERE expires_at > ?1";
    let mut stmt;
    let mut rows = match bucket {
        Some(bucket) => {
            stmt = conn.prepare(&format!("{select} AND bucket_name = ?2"))?;
            stmt.query(params![now(), bucket])?
        }
        None => {
            stmt = conn.prepare(&format!("{select} ORDER BY bucket_name"))?;
            stmt.query([now()])?
        }
    };
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read_tombstone(row)?);
    }
    Ok(out)
}

/// Deletes the checkpoints whose id starts with `bucket/`. A range on the primary key rather
/// than `LIKE` (case-insensitive for ASCII, and `%`/`_` would need escaping): every id with
/// that prefix sorts in [`bucket/`, `bucket0`), '0' being the byte after '/'.
fn delete_checkpoints(conn: &Connection, bucket: &str) -> Result<u64, Fail> {
    let deleted = conn.execute(
        "DELETE FROM checkpoints WHERE object >= ?1 AND object < ?2",
        params![format!("{bucket}/"), format!("{bucket}0")],
    )?;
    Ok(deleted as u64)
}

impl Rows for SqliteStore {
    async fn put(&self, row: &Row) -> Result<Put, StoreError> {
        let row = row.clone();
        self.run("put", move |conn, _| put_row(conn, &row)).await
    }

    async fn get(&self, bucket: &str) -> Result<Option<Row>, StoreError> {
        let bucket = bucket.to_owned();
        self.run("get", move |conn, _| {
            let mut stmt = conn.prepare(&format!("{SELECT_ROWS} WHERE bucket_name = ?1"))?;
            let mut rows = stmt.query([&bucket])?;
            match rows.next()? {
                Some(row) => read_row(row).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn delete_owned(&self, bucket: &str, owner: &str) -> Result<bool, StoreError> {
        let (bucket, owner) = (bucket.to_owned(), owner.to_owned());
        self.run("delete_owned", move |conn, _| {
            let changed = conn.execute(
                "DELETE FROM subscriptions WHERE bucket_name = ?1 AND owner = ?2",
                params![bucket, owner],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn remove(&self, bucket: &str) -> Result<bool, StoreError> {
        let bucket = bucket.to_owned();
        self.run("remove", move |conn, _| {
            let changed =
                conn.execute("DELETE FROM subscriptions WHERE bucket_name = ?1", [bucket])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn reseal(
        &self,
        bucket: &str,
        old: &SealedKeys,
        new: &SealedKeys,
    ) -> Result<bool, StoreError> {
        let (bucket, old, new) = (bucket.to_owned(), old.clone(), new.clone());
        self.run("reseal", move |conn, _| {
            let changed = conn.execute(
                "UPDATE subscriptions SET api_key = ?4, app_key = ?5 \
                 WHERE bucket_name = ?1 AND api_key = ?2 AND app_key = ?3",
                params![bucket, old.api_key, old.app_key, new.api_key, new.app_key],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn mark_verified(&self, bucket: &str, owner: &str) -> Result<bool, StoreError> {
        let (bucket, owner) = (bucket.to_owned(), owner.to_owned());
        self.run("mark_verified", move |conn, _| {
            let changed = conn.execute(
                "UPDATE subscriptions SET pending = 0 \
                 WHERE bucket_name = ?1 AND owner = ?2 AND pending = 1",
                params![bucket, owner],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn list(&self, owner: Option<&str>) -> Result<Vec<Row>, StoreError> {
        let owner = owner.map(str::to_owned);
        self.run("list", move |conn, _| select_rows(conn, owner.as_deref()))
            .await
    }
}

impl Checkpoints for SqliteStore {
    async fn checkpoint(&self, object: &str) -> Result<Option<u64>, StoreError> {
        let object = object.to_owned();
        self.run("checkpoint", move |conn, _| read_checkpoint(conn, &object))
            .await
    }

    async fn save_checkpoint(
        &self,
        object: &str,
        accepted: u64,
        ttl_seconds: u64,
    ) -> Result<(), StoreError> {
        let object = object.to_owned();
        self.run("save_checkpoint", move |conn, inner| {
            write_checkpoint(conn, inner, &object, accepted, ttl_seconds)
        })
        .await
    }

    async fn clear_checkpoint(&self, object: &str) -> Result<(), StoreError> {
        let object = object.to_owned();
        self.run("clear_checkpoint", move |conn, _| {
            conn.execute("DELETE FROM checkpoints WHERE object = ?1", [object])?;
            Ok(())
        })
        .await
    }

    async fn clear_checkpoints(&self, bucket: &str) -> Result<u64, StoreError> {
        let bucket = bucket.to_owned();
        self.run("clear_checkpoints", move |conn, _| {
            delete_checkpoints(conn, &bucket)
        })
        .await
    }
}

impl Tombstones for SqliteStore {
    async fn tombstone(&self, bucket: &str, now: i64) -> Result<(), StoreError> {
        let bucket = bucket.to_owned();
        self.run("tombstone", move |conn, _| {
            write_tombstone(conn, &bucket, now)
        })
        .await
    }

    async fn is_tombstoned(&self, bucket: &str) -> Result<Option<Tombstone>, StoreError> {
        let bucket = bucket.to_owned();
        self.run("is_tombstoned", move |conn, _| {
            Ok(select_tombstones(conn, Some(&bucket))?
                .pop()
                .map(|(_, t)| t))
        })
        .await
    }

    async fn note_late_notification(&self, bucket: &str, now: i64) -> Result<(), StoreError> {
        let bucket = bucket.to_owned();
        self.run("note_late_notification", move |conn, _| {
            conn.execute(
                "UPDATE tombstones SET late_notifications = late_notifications + 1, \
                 last_seen = max(coalesce(last_seen, ?2), ?2) \
                 WHERE bucket_name = ?1 AND expires_at > ?2",
                params![bucket, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn clear_tombstone(&self, bucket: &str) -> Result<(), StoreError> {
        let bucket = bucket.to_owned();
        self.run("clear_tombstone", move |conn, _| {
            conn.execute("DELETE FROM tombstones WHERE bucket_name = ?1", [bucket])?;
            Ok(())
        })
        .await
    }

    async fn list_tombstones(&self) -> Result<Vec<(String, Tombstone)>, StoreError> {
        self.run("list_tombstones", |conn, _| select_tombstones(conn, None))
            .await
    }
}

#[cfg(test)]
mod tests;
