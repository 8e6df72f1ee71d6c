//! The workers' subscription lookup: a cache in front of the store with a short TTL and
//! negative caching, so a new subscription reaches every replica within the TTL without a
//! store round trip per message. When the store is down, an expired entry is served for a while
//! longer (stale-if-error) rather than failing every message.
//!
//! A bucket without a subscription is either [`Answer::Unsubscribed`] (removed recently: it has
//! a tombstone) or [`Answer::Unknown`]; telling them apart costs one more store read, on a cache
//! miss only.

use super::{StoreError, Subscription, Subscriptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many buckets are cached before expired entries are swept.
const SWEEP_AT: usize = 10_000;
/// How many TTLs an entry may be served past its expiry while the store fails.
const STALE_TTLS: u32 = 10;

/// A cached subscription lookup.
pub struct Lookup {
    subscriptions: Arc<Subscriptions>,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

/// What the lookup knows of a bucket.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Subscribed: deliver its changes.
    Subscribed(Arc<Subscription>),
    /// Its subscription was removed recently (it has a tombstone): a late notification,
    /// acknowledged.
    Unsubscribed,
    /// Never subscribed (or removed long ago).
    Unknown,
}

#[derive(Clone)]
struct Entry {
    fetched: Instant,
    value: Answer,
}

impl Lookup {
    /// A lookup over `subscriptions` that trusts an answer (found or not) for `ttl`.
    #[must_use]
    pub fn new(subscriptions: Arc<Subscriptions>, ttl: Duration) -> Self {
        Self {
            subscriptions,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// What is known of `bucket`; `now` is the caller's clock.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails and no recent answer is cached.
    pub async fn get(&self, bucket: &str, now: Instant) -> Result<Answer, StoreError> {
        let cached = self.cached(bucket);
        if let Some(entry) = &cached {
            if now.saturating_duration_since(entry.fetched) < self.ttl {
                return Ok(entry.value.clone());
            }
        }
        match self.fetch(bucket).await {
            Ok(value) => {
                self.insert(bucket, now, value.clone());
                Ok(value)
            }
            Err(e @ StoreError::Unavailable { .. }) => match cached {
                Some(entry)
                    if now.saturating_duration_since(entry.fetched) < self.ttl * STALE_TTLS =>
                {
                    tracing::warn!(bucket, error = %e, "subscription store unavailable; using the cached answer");
                    Ok(entry.value)
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The subscription of `bucket`, or else whether it has a tombstone.
    async fn fetch(&self, bucket: &str) -> Result<Answer, StoreError> {
        if let Some(found) = self.subscriptions.get(bucket).await? {
            return Ok(Answer::Subscribed(Arc::new(found)));
        }
        match self.subscriptions.tombstone(bucket).await {
            Ok(Some(_)) => Ok(Answer::Unsubscribed),
            Ok(None) => Ok(Answer::Unknown),
            // The tombstone is there, only unreadable: the bucket was removed all the same.
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!(bucket, error = %e, "unreadable tombstone; taking the bucket as unsubscribed");
                Ok(Answer::Unsubscribed)
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets everything (tests, and after this node changed a subscription).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Forgets one bucket.
    pub fn forget(&self, bucket: &str) {
        self.lock().remove(bucket);
    }

    fn cached(&self, bucket: &str) -> Option<Entry> {
        self.lock().get(bucket).cloned()
    }

    fn insert(&self, bucket: &str, now: Instant, value: Answer) {
        let mut entries = self.lock();
        if entries.len() >= SWEEP_AT {
            let keep = self.ttl * STALE_TTLS;
            entries.retain(|_, e| now.saturating_duration_since(e.fetched) < keep);
        }
        if entries.len() >= SWEEP_AT {
            // A flood of notifications for buckets nobody subscribed: forget the negative
            // answers rather than grow (they cost one store read each to learn again).
            entries.retain(|_, e| !matches!(e.value, Answer::Unknown));
        }
        entries.insert(
            bucket.to_owned(),
            Entry {
                fetched: now,
                value,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds no invariant a panicking holder could break.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriptions::seal::Sealer;
    use crate::subscriptions::sqlite::SqliteStore;
    use crate::subscriptions::{validate, AnyStore};

    fn subscriptions(test: &str) -> (Arc<Subscriptions>, std::path::PathBuf) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("ctc-cache-{test}-{}-{nanos}", std::process::id()));
        let store = SqliteStore::open(&dir.join("subs.db")).expect("open");
        let subs = Subscriptions::new(AnyStore::Sqlite(store), Sealer::plain());
        (Arc::new(subs), dir)
    }

    fn request(bucket: &str) -> validate::SubscribeRequest {
        validate::subscribe_request(&serde_json::json!({
            "apiKey": "0123456789abcdef0123456789abcdef",
            "appKey": "fedcba9876543210fedcba9876543210",
            "bucket_name": bucket,
            "bucket_region": "us-east-1",
            "iam_role_arn": "arn:aws:iam::123456789012:role/Reader",
            "iam_role_external_id": "ext-1",
        }))
        .expect("valid request")
    }

    #[tokio::test]
    async fn tells_subscribed_unsubscribed_and_unknown_buckets_apart() {
        let (subs, dir) = subscriptions("answers");
        let lookup = Lookup::new(Arc::clone(&subs), Duration::from_secs(60));
        subs.subscribe(&request("gone-logs"), 1)
            .await
            .expect("subscribe");
        let now = Instant::now();
        assert!(matches!(
            lookup.get("gone-logs", now).await.expect("get"),
            Answer::Subscribed(s) if s.bucket_name == "gone-logs"
        ));
        assert!(matches!(
            lookup.get("never-logs", now).await.expect("get"),
            Answer::Unknown
        ));

        assert!(subs.remove("gone-logs").await.expect("remove"));
        // Cached until forgotten (the API forgets on DELETE) or the TTL passes.
        assert!(matches!(
            lookup.get("gone-logs", now).await.expect("get"),
            Answer::Subscribed(_)
        ));
        assert!(matches!(
            lookup
                .get("gone-logs", now + Duration::from_secs(61))
                .await
                .expect("get"),
            Answer::Unsubscribed
        ));
        lookup.forget("gone-logs");
        assert!(matches!(
            lookup.get("gone-logs", now).await.expect("get"),
            Answer::Unsubscribed
        ));
        assert!(matches!(
            lookup.get("never-logs", now).await.expect("get"),
            Answer::Unknown
        ));

        subs.subscribe(&request("gone-logs"), 2)
            .await
            .expect("again");
        lookup.clear();
        assert!(matches!(
            lookup.get("gone-logs", now).await.expect("get"),
            Answer::Subscribed(_)
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
