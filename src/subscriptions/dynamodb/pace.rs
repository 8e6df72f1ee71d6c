//! The fleet's token bucket per API key, in the subscription table: one `pace:<fingerprint>`
//! item per key (the key's one-way fingerprint, never the key), updated with conditional
//! writes so replicas racing on one key cannot both spend the same tokens.
//!
//! Replicas lease small batches (a second's worth of the rate) rather than one token per
//! change, so a busy key costs about one read and one write per second for the whole fleet,
//! whatever the number of replicas. The item also holds the key's pause (a 429 pauses the key
//! for every replica). A crashed replica's lease needs no clean-up: its tokens were spent from
//! the bucket when leased, and nothing waits for them.
//!
//! [`grant`] is the arithmetic (pure, `now` passed in); [`DynamoStore::lease_tokens`] and
//! [`DynamoStore::pause_key`] are the read-compute-conditional-write loops around it.

use super::*;

/// Prefix of the pace items' `bucket_name` (a bucket name never contains ':').
pub(super) const PACE_PREFIX: &str = "pace:";
/// How often a lease or pause retries after losing a race to another replica.
const RACE_ATTEMPTS: usize = 8;
/// An idle key's item expires (DynamoDB TTL) a day after its last write.
const PACE_TTL_SECONDS: i64 = 24 * 3600;

/// A key's bucket as stored: milli-tokens at `at_ms` (unix milliseconds), the end of its
/// pause, and the version the conditional write checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketState {
    pub milli_tokens: i64,
    pub at_ms: i64,
    pub paused_until_ms: i64,
    pub version: i64,
    /// The week [`week_of`] the count is for, and the tokens leased in it (the changes sent,
    /// give or take the few a lease leaves unused).
    pub week: i64,
    pub week_count: i64,
}

/// What a lease request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens leased now (0 when the bucket is empty or the key is paused).
    pub tokens: u32,
    /// With no token: milliseconds until a lease can be granted (the end of the pause, or
    /// the refill of the tokens asked for).
    pub retry_in_ms: i64,
    /// The bucket after the lease; written only when tokens were leased or it is new.
    pub state: BucketState,
}

/// The week of `now_ms`, counted from Monday 5 January 1970 00:00 UTC: weeks start on
/// Monday 00:00 UTC.
#[must_use]
pub fn week_of(now_ms: i64) -> i64 {
    const MONDAY_MS: i64 = 4 * 86_400_000;
    const WEEK_MS: i64 = 7 * 86_400_000;
    (now_ms - MONDAY_MS).div_euclid(WEEK_MS)
}

/// A second's worth of `rate_per_minute` (at least one token): the size of one lease and the
/// bucket's capacity. A small capacity keeps any 60 s window within `rate + rate/60`.
#[must_use]
pub fn lease_size(rate_per_minute: u32) -> u32 {
    rate_per_minute.div_ceil(60).max(1)
}

/// Leases `want` tokens (at most [`lease_size`]) from `state` at `now_ms`, or none.
///
/// A new key starts empty, so the first minute sends no more than the rate either; refill is
/// `rate_per_minute` tokens per 60 000 ms, capped at [`lease_size`]. A paused key leases
/// nothing until its pause ends. `rate_per_minute` must be at least 1.
#[must_use]
pub fn grant(state: Option<BucketState>, rate_per_minute: u32, want: u32, now_ms: i64) -> Grant {
    let rate = i64::from(rate_per_minute.max(1));
    let capacity = i64::from(lease_size(rate_per_minute)) * 1000;
    let mut state = state.unwrap_or(BucketState {
        at_ms: now_ms,
        ..BucketState::default()
    });
    // Nothing refills during a pause; a clock behind the stored one (another replica's)
    // refills nothing rather than draining.
    let from = state.at_ms.max(state.paused_until_ms.min(now_ms));
    let elapsed = (now_ms - from).max(0);
    state.milli_tokens = (state.milli_tokens + elapsed.saturating_mul(rate) / 60).min(capacity);
    state.at_ms = state.at_ms.max(now_ms);
    if state.paused_until_ms > now_ms {
        return Grant {
            tokens: 0,
            retry_in_ms: state.paused_until_ms - now_ms,
            state,
        };
    }
    // All or nothing: a replica waits for a whole lease rather than taking each token as it
    // refills, so a busy key costs one write per lease, not one per change.
    let want = i64::from(want.clamp(1, lease_size(rate_per_minute))) * 1000;
    if state.week != week_of(now_ms) {
        state.week = week_of(now_ms);
        state.week_count = 0;
    }
    let (tokens, retry_in_ms) = if state.milli_tokens >= want {
        state.milli_tokens -= want;
        state.week_count += want / 1000;
        (want / 1000, 0)
    } else {
        // Milliseconds until the missing milli-tokens have refilled, rounded up.
        let missing = want - state.milli_tokens;
        (0, (missing * 60 + rate - 1) / rate)
    };
    Grant {
        tokens: u32::try_from(tokens).unwrap_or(0),
        retry_in_ms,
        state,
    }
}

/// `state` paused until `until_ms` (a later pause already there wins), its tokens dropped:
/// the API said the key is over its limit, so what was saved up is not really there.
#[must_use]
pub fn paused(state: Option<BucketState>, until_ms: i64, now_ms: i64) -> BucketState {
    let mut state = state.unwrap_or(BucketState {
        at_ms: now_ms,
        ..BucketState::default()
    });
    state.paused_until_ms = state.paused_until_ms.max(until_ms);
    state.milli_tokens = 0;
    state.at_ms = state.at_ms.max(now_ms);
    state
}

impl DynamoStore {
    /// Leases `want` tokens (or none) of the key whose fingerprint is `key_id`, at
    /// `rate_per_minute` for the whole fleet.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when DynamoDB fails, or the item stayed contended for
    /// [`RACE_ATTEMPTS`] rounds.
    pub async fn lease_tokens(
        &self,
        key_id: &str,
        rate_per_minute: u32,
        want: u32,
    ) -> Result<Grant, StoreError> {
        for _ in 0..RACE_ATTEMPTS {
            let (stored, now_ms) = self.read_pace(key_id).await?;
            let granted = grant(stored, rate_per_minute, want, now_ms);
            if granted.tokens == 0 && stored.is_some() {
                return Ok(granted);
            }
            if self.write_pace(key_id, stored, &granted.state).await? {
                return Ok(granted);
            }
        }
        Err(self.contended("lease_tokens"))
    }

    /// Pauses the key whose fingerprint is `key_id` for every replica until `until_ms`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when DynamoDB fails or the item stayed contended.
    pub async fn pause_key(&self, key_id: &str, until_ms: i64) -> Result<(), StoreError> {
        for _ in 0..RACE_ATTEMPTS {
            let (stored, now_ms) = self.read_pace(key_id).await?;
            if stored.is_some_and(|s| s.paused_until_ms >= until_ms) {
                return Ok(());
            }
            if self
                .write_pace(key_id, stored, &paused(stored, until_ms, now_ms))
                .await?
            {
                return Ok(());
            }
        }
        Err(self.contended("pause_key"))
    }

    /// The stored bucket (consistent read) and the time of the read, unix milliseconds.
    async fn read_pace(&self, key_id: &str) -> Result<(Option<BucketState>, i64), StoreError> {
        let item = self.get_item(&pace_key(key_id), "lease_tokens").await?;
        let now_ms = now_ms();
        let Some(item) = item else {
            return Ok((None, now_ms));
        };
        let number = |name: &str| -> i64 {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let state = BucketState {
            milli_tokens: number("milli_tokens"),
            at_ms: number("at_ms"),
            paused_until_ms: number("paused_until_ms"),
            version: number("version"),
            week: number("week"),
            week_count: number("week_count"),
        };
        Ok((Some(state), now_ms))
    }

    /// Writes `next` if the item is still as read (`stored`); `false` when another replica
    /// wrote first.
    async fn write_pace(
        &self,
        key_id: &str,
        stored: Option<BucketState>,
        next: &BucketState,
    ) -> Result<bool, StoreError> {
        let version = stored.map_or(0, |s| s.version);
        let item = HashMap::from([
            ("bucket_name".to_owned(), s(&pace_key(key_id))),
            ("milli_tokens".to_owned(), n(next.milli_tokens)),
            ("at_ms".to_owned(), n(next.at_ms)),
            ("paused_until_ms".to_owned(), n(next.paused_until_ms)),
            ("version".to_owned(), n(version + 1)),
            ("week".to_owned(), n(next.week)),
            ("week_count".to_owned(), n(next.week_count)),
            (TTL_ATTRIBUTE.to_owned(), n(now() + PACE_TTL_SECONDS)),
        ]);
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let request = match stored {
            None => request.condition_expression("attribute_not_exists(bucket_name)"),
            Some(_) => request
                .condition_expression("version = :version")
                .expression_attribute_values(":version", n(version)),
        };
        match request.send().await {
            Ok(_) => {
                metrics::counter!(crate::metrics::PACE_TABLE_WRITES, "outcome" => "ok")
                    .increment(1);
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                metrics::counter!(crate::metrics::PACE_TABLE_WRITES, "outcome" => "conflict")
                    .increment(1);
                Ok(false)
            }
            Err(e) => Err(self.unavailable("lease_tokens", &e)),
        }
    }

    fn contended(&self, operation: &'static str) -> StoreError {
        self.unavailable_because(
            operation,
            format!("the pace item stayed contended for {RACE_ATTEMPTS} attempts"),
        )
    }
}

fn pace_key(key_id: &str) -> String {
    format!("{PACE_PREFIX}{key_id}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 600; // 10 a second

    #[test]
    fn a_lease_is_a_seconds_worth_and_at_least_one_token() {
        assert_eq!(lease_size(600), 10);
        assert_eq!(lease_size(400), 7);
        assert_eq!(lease_size(1), 1);
    }

    #[test]
    fn a_new_key_starts_empty_and_says_when_its_first_lease_comes() {
        let g = grant(None, RATE, 10, 1_000_000);
        assert_eq!(g.tokens, 0);
        assert_eq!(g.retry_in_ms, 1_000, "10 tokens take a second at 600/min");
        assert_eq!(g.state.at_ms, 1_000_000);
        assert_eq!(
            grant(None, RATE, 1, 0).retry_in_ms,
            100,
            "one token, 100 ms"
        );
    }

    #[test]
    fn refill_follows_the_rate_and_stops_at_one_lease() {
        let start = grant(None, RATE, 10, 0).state;
        let g = grant(Some(start), RATE, 10, 450);
        assert_eq!(
            g.tokens, 0,
            "450 ms at 10/s refill 4.5 tokens: not a whole lease"
        );
        assert_eq!((g.state.milli_tokens, g.retry_in_ms), (4_500, 550));
        let g = grant(Some(g.state), RATE, 4, 450);
        assert_eq!((g.tokens, g.state.milli_tokens), (4, 500));
        let idle = grant(Some(start), RATE, 10, 3_600_000);
        assert_eq!(idle.tokens, 10, "an hour idle saves only one lease");
        assert_eq!(idle.state.milli_tokens, 0);
    }

    #[test]
    fn leases_over_a_minute_never_exceed_the_rate_plus_one_lease() {
        // Three replicas asking in turn every 7 ms for a whole minute.
        let mut state = grant(None, RATE, 10, 0).state;
        let mut leased = 0;
        let mut now = 0;
        while now <= 60_000 {
            let g = grant(Some(state), RATE, 10, now);
            leased += g.tokens;
            state = g.state;
            now += 7;
        }
        assert!((590..=RATE + 10).contains(&leased), "leased {leased}");
    }

    #[test]
    fn weeks_start_on_monday_and_the_count_restarts_with_each_week() {
        // 2024-05-06 was a Monday.
        let monday = 1_714_953_600_000;
        assert_eq!(week_of(monday - 1) + 1, week_of(monday));
        assert_eq!(week_of(monday), week_of(monday + 7 * 86_400_000 - 1));
        let start = grant(None, RATE, 10, monday - 3_000).state;
        let sunday = grant(Some(start), RATE, 10, monday - 2_000);
        assert_eq!((sunday.tokens, sunday.state.week_count), (10, 10));
        let again = grant(Some(sunday.state), RATE, 10, monday - 1);
        assert_eq!(
            (again.tokens, again.state.week_count),
            (10, 20),
            "the same week adds up"
        );
        let monday_lease = grant(Some(sunday.state), RATE, 10, monday);
        assert_eq!(
            (monday_lease.tokens, monday_lease.state.week_count),
            (10, 10),
            "a new week starts from 0"
        );
        assert_eq!(monday_lease.state.week, week_of(monday));
    }

    #[test]
    fn a_paused_key_leases_nothing_until_the_pause_ends() {
        let start = grant(None, RATE, 10, 0).state;
        let p = paused(Some(start), 5_000, 2_000);
        assert_eq!(p.milli_tokens, 0);
        let g = grant(Some(p), RATE, 10, 3_000);
        assert_eq!((g.tokens, g.retry_in_ms), (0, 2_000));
        let after = grant(Some(g.state), RATE, 3, 5_300);
        assert_eq!(after.tokens, 3, "refill restarts after the pause");
        assert_eq!(after.state.milli_tokens, 0);
    }

    #[test]
    fn a_later_pause_is_kept_and_a_clock_behind_refills_nothing() {
        let p = paused(None, 9_000, 1_000);
        assert_eq!(paused(Some(p), 4_000, 1_000).paused_until_ms, 9_000);
        let state = BucketState {
            milli_tokens: 2_000,
            at_ms: 10_000,
            paused_until_ms: 0,
            version: 3,
            ..BucketState::default()
        };
        let g = grant(Some(state), RATE, 2, 9_000);
        assert_eq!((g.tokens, g.state.at_ms), (2, 10_000));
    }
}
