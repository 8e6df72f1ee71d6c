//! The fleet's side of pacing: tokens leased from the API key's bucket in the DynamoDB store
//! (a second's worth at a time, see [`crate::subscriptions::dynamodb::pace`]), and a pause
//! written there so every replica honours it.
//!
//! It must never spend a leased token late: leased tokens are used within [`LEASE_LIFETIME`]
//! or dropped, so a replica that stalled cannot add a burst on top of the fleet's rate.

use super::*;
use crate::subscriptions::dynamodb::pace::lease_size;
use crate::subscriptions::dynamodb::DynamoStore;

/// How long leased tokens stay usable.
pub(in crate::forward) const LEASE_LIFETIME: Duration = Duration::from_secs(2);
/// How long to wait before asking again when the store fails.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// The fleet's buckets: the store and the rate of one key for the whole fleet.
pub(in crate::forward) struct Fleet {
    pub(in crate::forward) store: DynamoStore,
    pub(in crate::forward) rate_per_minute: u32,
    /// `bigpanda.changes_per_week`; 0: not tracked.
    pub(in crate::forward) changes_per_week: u64,
    /// Per key fingerprint: the week, the level warned about and the share used.
    pub(in crate::forward) weekly: Mutex<HashMap<String, Weekly>>,
}

/// What this replica knows of one key's week.
#[derive(Debug, Clone, Copy, Default)]
pub(in crate::forward) struct Weekly {
    week: i64,
    level: Level,
    share: f64,
}

/// How much of the weekly cap a key used: the levels that log a warning once a week.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::forward) enum Level {
    #[default]
    Under,
    /// 80% or more.
    Near,
    /// 100% or more.
    Over,
}

/// The level of `count` changes against a weekly cap of `cap` (not 0).
pub(in crate::forward) fn level(count: u64, cap: u64) -> Level {
    if count >= cap {
        Level::Over
    } else if count.saturating_mul(5) >= cap.saturating_mul(4) {
        Level::Near
    } else {
        Level::Under
    }
}

/// Tokens this process leased for one key.
#[derive(Debug, Default)]
pub(in crate::forward) struct Leased {
    pub(in crate::forward) tokens: u32,
    pub(in crate::forward) expires: Option<Instant>,
}

impl Leased {
    /// Takes one token if one is left and still usable at `now`.
    pub(in crate::forward) fn take(&mut self, now: Instant) -> bool {
        if self.expires.is_none_or(|end| end <= now) {
            self.tokens = 0;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Adds `tokens` leased at `now`; unused ones expire together after [`LEASE_LIFETIME`].
    pub(in crate::forward) fn add(&mut self, tokens: u32, now: Instant) {
        if self.expires.is_none_or(|end| end <= now) {
            self.tokens = 0;
        }
        self.tokens += tokens;
        self.expires = Some(now + LEASE_LIFETIME);
    }
}

impl Fleet {
    /// Waits for one token of `key`: from this process's lease, else from a new lease.
    pub(in crate::forward) async fn wait_token(
        &self,
        key: &KeyState,
        until: &Until<'_>,
    ) -> Result<(), Interrupted> {
        loop {
            if key.take_leased() {
                return Ok(());
            }
            let _leasing = until.race(key.leasing.lock(), WAIT_TOKEN).await?;
            // Another sender of this process may have leased while this one waited.
            if key.take_leased() {
                return Ok(());
            }
            let wait = self.lease(key).await;
            if wait.is_zero() {
                continue;
            }
            let wake = Instant::now() + wait;
            if wake > until.deadline {
                return Err(Interrupted::Deadline(WAIT_TOKEN));
            }
            until.race(sleep_until(wake), WAIT_TOKEN).await?;
        }
    }

    /// One lease request; how long to wait before the next when nothing was leased.
    async fn lease(&self, key: &KeyState) -> Duration {
        let want = lease_size(self.rate_per_minute);
        match self
            .store
            .lease_tokens(&key.id.0, self.rate_per_minute, want)
            .await
        {
            Ok(grant) if grant.tokens > 0 => {
                metrics::counter!(m::PACE_LEASES, "outcome" => "granted").increment(1);
                self.note_week(key, grant.state.week, grant.state.week_count);
                key.leased
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .add(grant.tokens, Instant::now());
                Duration::ZERO
            }
            Ok(grant) => {
                metrics::counter!(m::PACE_LEASES, "outcome" => "empty").increment(1);
                Duration::from_millis(u64::try_from(grant.retry_in_ms.max(1)).unwrap_or(1))
            }
            Err(error) => {
                metrics::counter!(m::PACE_LEASES, "outcome" => "error").increment(1);
                tracing::warn!(key = %key.id.0, error = %error, "cannot lease tokens of the API key from the store; waiting");
                STORE_RETRY
            }
        }
    }

    /// Updates the weekly share of `key` (its fleet-wide count from the lease), the gauge of
    /// the highest share, and warns once a week per replica on reaching 80% and 100%.
    fn note_week(&self, key: &KeyState, week: i64, count: i64) {
        if self.changes_per_week == 0 {
            return;
        }
        let count = u64::try_from(count).unwrap_or(0);
        let now = level(count, self.changes_per_week);
        let mut weekly = self.weekly.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = weekly.entry(key.id.0.clone()).or_default();
        if entry.week != week {
            *entry = Weekly {
                week,
                ..Weekly::default()
            };
        }
        entry.share = count as f64 / self.changes_per_week as f64;
        if now > entry.level {
            entry.level = now;
            let percent = if now == Level::Over { 100 } else { 80 };
            tracing::warn!(
                key = %key.id.0, changes = count, changes_per_week = self.changes_per_week,
                "the API key has used {percent}% of its weekly BigPanda budget (changes are still sent)"
            );
        }
        let max = weekly
            .values()
            .filter(|w| w.week == week)
            .map(|w| w.share)
            .fold(0.0, f64::max);
        metrics::gauge!(m::WEEKLY_BUDGET_MAX_SHARE).set(max);
    }

    /// Writes `key`'s pause to the store so every replica waits for its end.
    pub(in crate::forward) async fn pause(&self, key: &KeyState, pause: Duration) {
        let until = SystemTime::now() + pause;
        let until_ms = until
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        if let Err(error) = self.store.pause_key(&key.id.0, until_ms).await {
            tracing::warn!(key = %key.id.0, error = %error, "cannot share the API key's pause through the store");
        }
    }
}

impl KeyState {
    fn take_leased(&self) -> bool {
        self.leased
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weekly_levels_are_at_eighty_and_one_hundred_percent() {
        assert_eq!(level(39_999, 50_000), Level::Under);
        assert_eq!(level(40_000, 50_000), Level::Near);
        assert_eq!(level(49_999, 50_000), Level::Near);
        assert_eq!(level(50_000, 50_000), Level::Over);
        assert_eq!(level(90_000, 50_000), Level::Over);
    }

    // `take` and `add` get `now` passed in, so the test moves time itself (no sleep, no
    // paused runtime needed).
    #[test]
    fn leased_tokens_are_used_within_their_lifetime_or_dropped() {
        let t0 = Instant::now();
        let mut leased = Leased::default();
        assert!(!leased.take(t0), "nothing leased yet");
        leased.add(2, t0);
        assert!(leased.take(t0));
        let t1 = t0 + LEASE_LIFETIME;
        assert!(!leased.take(t1), "the second token expired");
        leased.add(1, t1);
        let t2 = t1 + LEASE_LIFETIME / 2;
        leased.add(1, t2);
        let t3 = t2 + LEASE_LIFETIME * 3 / 4;
        assert!(leased.take(t3), "a new lease renews the lifetime");
        assert!(leased.take(t3));
        assert!(!leased.take(t3));
    }
}
