//! The workers' subscription lookup: a cache in front of the store with a short TTL and
//! negative caching, so a new subscription reaches every replica within the TTL without a
//! store round trip per message. When the store is down, an expired entry is served for a while
//! longer (stale-if-error) rather than failing every message.

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

#[derive(Clone)]
struct Entry {
    fetched: Instant,
    value: Option<Arc<Subscription>>,
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

    /// The subscription of `bucket`, `None` if it has none; `now` is the caller's clock.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails and no recent answer is cached.
    pub async fn get(
        &self,
        bucket: &str,
        now: Instant,
    ) -> Result<Option<Arc<Subscription>>, StoreError> {
        let cached = self.cached(bucket);
        if let Some(entry) = &cached {
            if now.saturating_duration_since(entry.fetched) < self.ttl {
                return Ok(entry.value.clone());
            }
        }
        match self.subscriptions.get(bucket).await {
            Ok(found) => {
                let value = found.map(Arc::new);
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

    fn insert(&self, bucket: &str, now: Instant, value: Option<Arc<Subscription>>) {
        let mut entries = self.lock();
        if entries.len() >= SWEEP_AT {
            let keep = self.ttl * STALE_TTLS;
            entries.retain(|_, e| now.saturating_duration_since(e.fetched) < keep);
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
