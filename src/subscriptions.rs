//! Subscriptions: which BigPanda keys and which IAM role belong to a bucket. The API writes
//! them, the workers read them (through [`cache::Lookup`]), on-call lists and removes them.
//! A removed subscription leaves a [`Tombstone`] for a while, so late notifications of an
//! offboarded bucket are acknowledged (and counted) rather than dead-lettered.
//! Keys are [`SecretString`]s in memory and sealed at rest ([`seal`]); they never reach a log
//! line or `Debug` output, and the API shows only their last four characters.
//!
//! - [`validate`]: the API's request bodies, parsed into checked types. Pure.
//! - [`seal`]: AES-256-GCM for keys at rest; [`rekey`] re-seals every row after a rotation.
//! - [`store`]: the storage contract; [`sqlite`] (one node) and [`dynamodb`] (a fleet) fulfil it.
//! - [`cache`]: the workers' lookup with a short TTL and negative caching.

pub mod api;
pub mod cache;
pub mod dynamodb;
pub mod rekey;
pub mod seal;
pub mod sqlite;
pub mod store;
pub mod validate;

use crate::core::envelope::ObjectRef;
use seal::{SealError, Sealer};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
pub use store::{
    Checkpoints, Put, Row, Rows, SealedKeys, Store, StoreError, Tombstone, Tombstones,
    TOMBSTONE_RETENTION_SECONDS,
};
use validate::SubscribeRequest;

/// Where subscriptions are kept (`subscriptions.store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `sqlite:PATH`: one file, for a single node.
    Sqlite(PathBuf),
    /// `dynamodb:TABLE`: one table shared by a fleet.
    DynamoDb(String),
}

impl StoreSpec {
    /// Parses `sqlite:PATH` or `dynamodb:TABLE`.
    ///
    /// # Errors
    /// A message naming the two accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(Self::Sqlite(PathBuf::from(path))),
            Some(("dynamodb", table))
                if (3..=255).contains(&table.len())
                    && table
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) =>
            {
                Ok(Self::DynamoDb(table.to_owned()))
            }
            _ => Err(format!(
                "must be sqlite:PATH or dynamodb:TABLE (a table name is 3..=255 of [A-Za-z0-9_.-]), got {text:?}"
            )),
        }
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::DynamoDb(table) => write!(f, "dynamodb:{table}"),
        }
    }
}

/// Who holds a bucket, from one API key's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Nobody,
    /// The same API key.
    This,
    /// Another key, not proven: a proven subscribe takes the bucket over.
    OtherPending,
    /// Another key, proven: only that key may change or remove it.
    OtherVerified,
}

/// A subscription with its keys opened.
#[derive(Clone)]
pub struct Subscription {
    pub bucket_name: String,
    pub bucket_region: String,
    pub iam_role_arn: String,
    pub iam_role_external_id: String,
    /// The account that owns the bucket (sent as `ExpectedBucketOwner` on every GetObject).
    pub bucket_owner: String,
    /// Not yet proven (see [`Row::pending`]).
    pub pending: bool,
    pub api_key: SecretString,
    pub app_key: SecretString,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("bucket_name", &self.bucket_name)
            .field("bucket_region", &self.bucket_region)
            .field("iam_role_arn", &self.iam_role_arn)
            .field("api_key", &redact(&self.api_key))
            .finish_non_exhaustive()
    }
}

/// What the API and the CLI show of a subscription: keys reduced to their last 4 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redacted {
    #[serde(rename = "apiKey")]
    pub api_key: String,
    #[serde(rename = "appKey")]
    pub app_key: String,
    pub bucket_name: String,
    pub bucket_region: String,
    pub iam_role_arn: String,
    pub iam_role_external_id: String,
    pub bucket_account_id: String,
    /// `verified` or `pending`.
    pub state: &'static str,
    /// For a pending subscription: how to verify it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<&'static str>,
    pub created_at: String,
    pub updated_at: String,
}

impl Subscription {
    /// The subscription as the API shows it.
    #[must_use]
    pub fn redacted(&self) -> Redacted {
        Redacted {
            api_key: redact(&self.api_key),
            app_key: redact(&self.app_key),
            bucket_name: self.bucket_name.clone(),
            bucket_region: self.bucket_region.clone(),
            iam_role_arn: self.iam_role_arn.clone(),
            iam_role_external_id: self.iam_role_external_id.clone(),
            bucket_account_id: self.bucket_owner.clone(),
            state: if self.pending { "pending" } else { "verified" },
            verify: self.pending.then_some(VERIFY_HINT),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// What a pending subscription's answers say to do.
pub const VERIFY_HINT: &str = "POST the same request again with \"sample_key\": the key of an \
     existing log file of the bucket; the role reads it to prove the bucket is yours. It is also \
     verified by the first log file we deliver. Until then another apiKey that proves it owns \
     the bucket takes the subscription over";

/// `****` and the last 4 characters; only `****` for keys too short to spare 4.
#[must_use]
pub fn redact(key: &SecretString) -> String {
    let key = key.expose_secret();
    let chars = key.chars().count();
    if chars < 12 {
        return "****".into();
    }
    let tail: String = key.chars().skip(chars - 4).collect();
    format!("****{tail}")
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
#[must_use]
pub fn rfc3339(unix_seconds: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The owner fingerprint of an API key: what writes and `GET` are conditioned on. API keys are
/// long random tokens, so an unsalted SHA-256 cannot be reversed; it stays stable when the
/// encryption key changes.
#[must_use]
pub fn fingerprint(api_key: &SecretString) -> String {
    let digest = Sha256::new()
        .chain_update(b"cloudtrail-changes owner v1\0")
        .chain_update(api_key.expose_secret().as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checkpoint key of one object version under one kind of work: bucket, key, the version
/// (versionId, else eTag: a rewritten object is a new object) and `work`, the fingerprint of
/// the settings that decide which changes an object yields and their order
/// (`Settings::checkpoint_fingerprint`). A checkpoint counted under other settings is never
/// read: its count would skip the wrong changes.
#[must_use]
pub fn checkpoint_id(object: &ObjectRef, work: &str) -> String {
    let version = object
        .version_id
        .as_deref()
        .or(object.etag.as_deref())
        .unwrap_or("");
    format!("{}/{}#{version}#{work}", object.bucket, object.key)
}

/// Either backend, behind the one [`Store`] trait.
pub enum AnyStore {
    Sqlite(sqlite::SqliteStore),
    DynamoDb(dynamodb::DynamoStore),
}

impl Rows for AnyStore {
    async fn put(&self, row: &Row) -> Result<Put, StoreError> {
        match self {
            Self::Sqlite(s) => s.put(row).await,
            Self::DynamoDb(s) => s.put(row).await,
        }
    }
    async fn get(&self, bucket: &str) -> Result<Option<Row>, StoreError> {
        match self {
            Self::Sqlite(s) => s.get(bucket).await,
            Self::DynamoDb(s) => s.get(bucket).await,
        }
    }
    async fn delete_owned(&self, bucket: &str, owner: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.delete_owned(bucket, owner).await,
            Self::DynamoDb(s) => s.delete_owned(bucket, owner).await,
        }
    }
    async fn remove(&self, bucket: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.remove(bucket).await,
            Self::DynamoDb(s) => s.remove(bucket).await,
        }
    }
    async fn reseal(
        &self,
        bucket: &str,
        old: &SealedKeys,
        new: &SealedKeys,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.reseal(bucket, old, new).await,
            Self::DynamoDb(s) => s.reseal(bucket, old, new).await,
        }
    }
    async fn mark_verified(&self, bucket: &str, owner: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.mark_verified(bucket, owner).await,
            Self::DynamoDb(s) => s.mark_verified(bucket, owner).await,
        }
    }
    async fn list(&self, owner: Option<&str>) -> Result<Vec<Row>, StoreError> {
        match self {
            Self::Sqlite(s) => s.list(owner).await,
            Self::DynamoDb(s) => s.list(owner).await,
        }
    }
}

impl Checkpoints for AnyStore {
    async fn checkpoint(&self, object: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Sqlite(s) => s.checkpoint(object).await,
            Self::DynamoDb(s) => s.checkpoint(object).await,
        }
    }
    async fn save_checkpoint(
        &self,
        object: &str,
        accepted: u64,
        ttl_seconds: u64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.save_checkpoint(object, accepted, ttl_seconds).await,
            Self::DynamoDb(s) => s.save_checkpoint(object, accepted, ttl_seconds).await,
        }
    }
    async fn clear_checkpoint(&self, object: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.clear_checkpoint(object).await,
            Self::DynamoDb(s) => s.clear_checkpoint(object).await,
        }
    }
    async fn clear_checkpoints(&self, bucket: &str) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.clear_checkpoints(bucket).await,
            Self::DynamoDb(s) => s.clear_checkpoints(bucket).await,
        }
    }
}

impl Tombstones for AnyStore {
    async fn tombstone(&self, bucket: &str, now: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.tombstone(bucket, now).await,
            Self::DynamoDb(s) => s.tombstone(bucket, now).await,
        }
    }
    async fn is_tombstoned(&self, bucket: &str) -> Result<Option<Tombstone>, StoreError> {
        match self {
            Self::Sqlite(s) => s.is_tombstoned(bucket).await,
            Self::DynamoDb(s) => s.is_tombstoned(bucket).await,
        }
    }
    async fn note_late_notification(&self, bucket: &str, now: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.note_late_notification(bucket, now).await,
            Self::DynamoDb(s) => s.note_late_notification(bucket, now).await,
        }
    }
    async fn clear_tombstone(&self, bucket: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.clear_tombstone(bucket).await,
            Self::DynamoDb(s) => s.clear_tombstone(bucket).await,
        }
    }
    async fn list_tombstones(&self) -> Result<Vec<(String, Tombstone)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.list_tombstones().await,
            Self::DynamoDb(s) => s.list_tombstones().await,
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The subscriptions: a store plus the sealer for its keys.
pub struct Subscriptions {
    store: AnyStore,
    sealer: Sealer,
}

impl Subscriptions {
    /// Wraps an opened store.
    #[must_use]
    pub fn new(store: AnyStore, sealer: Sealer) -> Self {
        Self { store, sealer }
    }

    /// Opens the store named by `spec`; DynamoDB uses `aws` for its client.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the SQLite file cannot be opened.
    pub fn open(
        spec: &StoreSpec,
        sealer: Sealer,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, StoreError> {
        let store = match spec {
            StoreSpec::Sqlite(path) => AnyStore::Sqlite(sqlite::SqliteStore::open(path)?),
            StoreSpec::DynamoDb(table) => AnyStore::DynamoDb(dynamodb::DynamoStore::new(
                aws_sdk_dynamodb::Client::new(aws),
                table.clone(),
            )),
        };
        Ok(Self::new(store, sealer))
    }

    /// The store (the worker keeps its checkpoints there).
    #[must_use]
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// Creates or updates the subscription of the request's bucket, at `now` (unix seconds),
    /// pending (nothing proves the role reads the bucket yet); see [`Self::subscribe_proven`].
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another API key holds the bucket.
    pub async fn subscribe(
        &self,
        request: &SubscribeRequest,
        now: i64,
    ) -> Result<(Put, Subscription), StoreError> {
        self.subscribe_proven(request, false, now).await
    }

    /// Like [`Self::subscribe`]; `proven` when the role has just read an object of the bucket
    /// (the sample key): the row is verified, and replaces another key's pending row.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another API key holds the bucket verified, or pending while
    /// this request is not proven.
    pub async fn subscribe_proven(
        &self,
        request: &SubscribeRequest,
        proven: bool,
        now: i64,
    ) -> Result<(Put, Subscription), StoreError> {
        let bucket = request.bucket_name.as_str();
        let row = Row {
            bucket_name: bucket.to_owned(),
            bucket_region: request.bucket_region.as_str().to_owned(),
            iam_role_arn: request.iam_role_arn.as_str().to_owned(),
            iam_role_external_id: request.iam_role_external_id.as_str().to_owned(),
            api_key: self.sealer.seal(bucket, &request.api_key),
            app_key: self.sealer.seal(bucket, &request.app_key),
            owner: fingerprint(&request.api_key),
            bucket_owner: request.bucket_owner(),
            pending: !proven,
            created_at: now,
            updated_at: now,
        };
        let put = self.store.put(&row).await?;
        // Subscribed (again): no longer offboarded. Best effort: a stale tombstone is only read
        // when the bucket has no subscription, and the next removal replaces it.
        if let Err(e) = self.store.clear_tombstone(bucket).await {
            tracing::warn!(bucket, error = %e, "cannot clear the tombstone of a subscribed bucket");
        }
        // An update keeps the stored creation time: read it back for the reply, and only from
        // our own row (it may have changed hands since the put; never show another's).
        let saved = match put {
            Put::Created | Put::TookOver => row,
            Put::Updated => match self.store.get(bucket).await? {
                Some(stored) if stored.owner == row.owner => Row {
                    created_at: stored.created_at,
                    pending: stored.pending,
                    ..row
                },
                _ => row,
            },
        };
        Ok((put, self.open_row(saved)?))
    }

    /// Who holds `bucket`, seen from `api_key`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    pub async fn holder(&self, bucket: &str, api_key: &SecretString) -> Result<Holder, StoreError> {
        let owner = fingerprint(api_key);
        Ok(match self.store.get(bucket).await? {
            None => Holder::Nobody,
            Some(row) if row.owner == owner => Holder::This,
            Some(row) if row.pending => Holder::OtherPending,
            Some(_) => Holder::OtherVerified,
        })
    }

    /// Marks `subscription` verified (the daemon delivered one of its bucket's objects with its
    /// role); `true` when it was pending. Only its own key's row is touched.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    pub async fn mark_verified(&self, subscription: &Subscription) -> Result<bool, StoreError> {
        self.store
            .mark_verified(
                &subscription.bucket_name,
                &fingerprint(&subscription.api_key),
            )
            .await
    }

    /// Removes the subscription of `bucket` if `api_key` owns it; `false` otherwise. A removal
    /// leaves a tombstone and clears the bucket's checkpoints (see [`Self::remove`]).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    pub async fn unsubscribe(
        &self,
        api_key: &SecretString,
        bucket: &str,
    ) -> Result<bool, StoreError> {
        let removed = self
            .store
            .delete_owned(bucket, &fingerprint(api_key))
            .await?;
        if removed {
            self.offboard(bucket, unix_now()).await;
        }
        Ok(removed)
    }

    /// After a removal: the tombstone, then the checkpoints. Both best effort (logged): the
    /// subscription is gone either way; without a tombstone late notifications go to the DLQ
    /// as `unknown_bucket`, and leftover checkpoints expire on their own.
    async fn offboard(&self, bucket: &str, now: i64) {
        if let Err(e) = self.store.tombstone(bucket, now).await {
            tracing::warn!(bucket, error = %e, "cannot record the removal; late notifications will be dead-lettered as unknown_bucket");
        }
        match self.store.clear_checkpoints(bucket).await {
            Ok(0) => {}
            Ok(cleared) => tracing::info!(
                bucket,
                cleared,
                "checkpoints of the removed subscription cleared"
            ),
            Err(e) => {
                tracing::warn!(bucket, error = %e, "cannot clear the checkpoints of a removed subscription; they expire on their own")
            }
        }
    }

    /// The tombstone of `bucket` if its subscription was removed recently.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be reached or the tombstone cannot be read.
    pub async fn tombstone(&self, bucket: &str) -> Result<Option<Tombstone>, StoreError> {
        self.store.is_tombstoned(bucket).await
    }

    /// Counts a notification received at `now` for the removed subscription of `bucket`.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be reached.
    pub async fn note_late_notification(&self, bucket: &str, now: i64) -> Result<(), StoreError> {
        self.store.note_late_notification(bucket, now).await
    }

    /// Recently removed subscriptions, ordered by bucket name.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be reached or a tombstone cannot be read.
    pub async fn recently_removed(&self) -> Result<Vec<(String, Tombstone)>, StoreError> {
        self.store.list_tombstones().await
    }

    /// The subscription of `bucket`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be reached or the row cannot be opened.
    pub async fn get(&self, bucket: &str) -> Result<Option<Subscription>, StoreError> {
        match self.store.get(bucket).await? {
            Some(row) => self.open_row(row).map(Some),
            None => Ok(None),
        }
    }

    /// The subscriptions of one API key, or all of them.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be reached or a row cannot be opened.
    pub async fn list(
        &self,
        api_key: Option<&SecretString>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let owner = api_key.map(fingerprint);
        let rows = self.store.list(owner.as_deref()).await?;
        rows.into_iter().map(|row| self.open_row(row)).collect()
    }

    /// Removes the subscription of `bucket` whoever owns it. Like [`Self::unsubscribe`], a
    /// removal is followed by a tombstone (so late notifications are acknowledged as
    /// `unsubscribed`) and the removal of the bucket's checkpoints; a failure of either is
    /// logged, not returned.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    pub async fn remove(&self, bucket: &str) -> Result<bool, StoreError> {
        let removed = self.store.remove(bucket).await?;
        if removed {
            self.offboard(bucket, unix_now()).await;
        }
        Ok(removed)
    }

    fn open_row(&self, row: Row) -> Result<Subscription, StoreError> {
        let open = |value: &str, what: &str| {
            self.sealer
                .open(&row.bucket_name, value)
                .map_err(|e: SealError| StoreError::Corrupt {
                    bucket: row.bucket_name.clone(),
                    detail: format!("{what}: {e}"),
                })
        };
        let api_key = open(&row.api_key, "apiKey")?;
        let app_key = open(&row.app_key, "appKey")?;
        let bucket_owner = if row.bucket_owner.is_empty() {
            validate::role_account(&row.iam_role_arn).to_owned()
        } else {
            row.bucket_owner
        };
        Ok(Subscription {
            bucket_owner,
            pending: row.pending,
            api_key,
            app_key,
            bucket_name: row.bucket_name,
            bucket_region: row.bucket_region,
            iam_role_arn: row.iam_role_arn,
            iam_role_external_id: row.iam_role_external_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[cfg(test)]
mod tests;
