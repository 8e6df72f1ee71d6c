//! The storage contract both backends ([`super::sqlite`], [`super::dynamodb`]) fulfil: rows of
//! plain strings (secrets already sealed by the caller) plus the worker's delivery checkpoints.
//! A store never sees a key in clear when encryption is on, and never logs a row.
//!
//! It also keeps a tombstone per removed subscription for [`TOMBSTONE_RETENTION_SECONDS`], so
//! the workers can tell a late notification of an offboarded bucket (acknowledged) from one of
//! a bucket that was never subscribed (dead-lettered).

use std::future::Future;

/// One subscription as stored. `api_key` and `app_key` are sealed (see [`super::seal`]);
/// `owner` is the API key's fingerprint, which is what writes are conditioned on.
#[derive(Clone, PartialEq, Eq)]
pub struct Row {
    pub bucket_name: String,
    pub bucket_region: String,
    pub iam_role_arn: String,
    pub iam_role_external_id: String,
    pub api_key: String,
    pub app_key: String,
    pub owner: String,
    /// The 12-digit account that owns the bucket, sent as `ExpectedBucketOwner` on every
    /// GetObject. Empty in rows written before it was recorded: the role's account then.
    pub bucket_owner: String,
    /// Not yet proven: the role has read no object of the bucket (no `sample_key` read, no
    /// delivered object). A pending row of another owner gives way to a proven one.
    pub pending: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("bucket_name", &self.bucket_name)
            .field("bucket_region", &self.bucket_region)
            .field("iam_role_arn", &self.iam_role_arn)
            .field("owner", &self.owner)
            .field("bucket_owner", &self.bucket_owner)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

/// A row's two sealed values, as [`Rows::reseal`] compares and replaces them.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKeys {
    pub api_key: String,
    pub app_key: String,
}

impl std::fmt::Debug for SealedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedKeys { .. }")
    }
}

impl Row {
    /// The row's sealed values.
    #[must_use]
    pub fn sealed_keys(&self) -> SealedKeys {
        SealedKeys {
            api_key: self.api_key.clone(),
            app_key: self.app_key.clone(),
        }
    }
}

/// How long a removed subscription's tombstone is kept: 30 days from the removal. A fixed
/// retention rather than `subscriptions.checkpoint_ttl_seconds` (hours, and about another
/// thing): a customer who forgot the bucket's event notification is acknowledged for a month,
/// then its notifications go to the DLQ as `unknown_bucket` like any stranger's.
pub const TOMBSTONE_RETENTION_SECONDS: i64 = 30 * 24 * 3600;

/// What is left of a removed subscription while its tombstone is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// Unix seconds of the removal.
    pub removed_at: i64,
    /// Unix seconds of the last notification received after the removal, if any.
    pub last_seen: Option<i64>,
    /// How many notifications arrived after the removal.
    pub late_notifications: u64,
}

/// What a successful [`Store::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The bucket had no subscription; `created_at` is the row's.
    Created,
    /// The bucket was subscribed by the same owner; everything but `created_at` was replaced
    /// (a verified row stays verified).
    Updated,
    /// The bucket was held by another owner's pending row and `row` is proven (not pending):
    /// the whole row was replaced.
    TookOver,
}

/// Why a store operation failed, grouped by what the caller does.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket is subscribed by another owner; nothing was written.
    #[error("bucket {bucket} is subscribed with another API key")]
    Conflict { bucket: String },
    /// The backend could not be reached or refused the call: retry later.
    #[error("subscription store ({backend}) unavailable during {operation}: {detail}")]
    Unavailable {
        backend: &'static str,
        operation: &'static str,
        detail: String,
    },
    /// A stored row cannot be read (missing attribute, undecryptable value): an operator fixes it.
    #[error("subscription for bucket {bucket} is unreadable: {detail}")]
    Corrupt { bucket: String, detail: String },
}

/// The subscriptions themselves. Every write that depends on the current row is atomic in the
/// backend (a transaction in SQLite, a conditional write in DynamoDB), so two API nodes racing on
/// one bucket cannot both win.
pub trait Rows: Send + Sync {
    /// Creates the row, or replaces it (keeping `created_at`, and verified if it was) when the
    /// stored `owner` equals `row.owner`, or replaces it whole when another owner's row is
    /// pending and `row` is not.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another owner holds the bucket verified, or pending while
    /// `row` is pending too.
    fn put(&self, row: &Row) -> impl Future<Output = Result<Put, StoreError>> + Send;

    /// The row of `bucket`, if any.
    fn get(&self, bucket: &str) -> impl Future<Output = Result<Option<Row>, StoreError>> + Send;

    /// Deletes the row of `bucket` if its owner is `owner`. `false` when there is no such row or
    /// it has another owner (the caller cannot tell which, on purpose).
    fn delete_owned(
        &self,
        bucket: &str,
        owner: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the row of `bucket` whoever owns it (on-call's `subscriptions remove`).
    fn remove(&self, bucket: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces the sealed keys of `bucket` with `new` if they are still `old` (a
    /// compare-and-swap on both values; nothing else of the row changes). `false` when the row
    /// is gone or its keys changed meanwhile: a concurrent write wins over a re-seal.
    fn reseal(
        &self,
        bucket: &str,
        old: &SealedKeys,
        new: &SealedKeys,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks the row of `bucket` verified if `owner` holds it pending; `false` otherwise.
    fn mark_verified(
        &self,
        bucket: &str,
        owner: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every row, or those of one owner, ordered by bucket name.
    fn list(
        &self,
        owner: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;
}

/// The worker's delivery checkpoints: how many changes of an object were accepted, so a message
/// that comes back resumes instead of starting over.
pub trait Checkpoints: Send + Sync {
    /// How many changes of `object` (a [`super::checkpoint_id`]) the Changes API has accepted.
    fn checkpoint(
        &self,
        object: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Records that the first `accepted` changes of `object` were accepted. Kept for
    /// `ttl_seconds` at most, so an object whose message never comes back is forgotten.
    fn save_checkpoint(
        &self,
        object: &str,
        accepted: u64,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the checkpoint of `object` (its message was deleted).
    fn clear_checkpoint(&self, object: &str)
        -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets every checkpoint of `bucket` (every id starting with `bucket/`); returns how
    /// many were removed.
    fn clear_checkpoints(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What is left of removed subscriptions for [`TOMBSTONE_RETENTION_SECONDS`], so a late
/// notification of an offboarded bucket is acknowledged rather than dead-lettered.
pub trait Tombstones: Send + Sync {
    /// Records that the subscription of `bucket` was removed at `now` (unix seconds): a new
    /// tombstone, replacing any older one, kept for [`TOMBSTONE_RETENTION_SECONDS`].
    fn tombstone(
        &self,
        bucket: &str,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The unexpired tombstone of `bucket`, if any.
    fn is_tombstoned(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Option<Tombstone>, StoreError>> + Send;

    /// Counts a notification for `bucket` received at `now` after its removal. Does nothing
    /// when `bucket` has no tombstone.
    fn note_late_notification(
        &self,
        bucket: &str,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the tombstone of `bucket` (it was subscribed again).
    fn clear_tombstone(&self, bucket: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every unexpired tombstone, ordered by bucket name.
    fn list_tombstones(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, Tombstone)>, StoreError>> + Send;
}

/// A whole subscription store: what both backends implement and the daemon holds.
pub trait Store: Rows + Checkpoints + Tombstones {}

impl<T: Rows + Checkpoints + Tombstones> Store for T {}

#[cfg(test)]
pub(crate) mod conformance;
