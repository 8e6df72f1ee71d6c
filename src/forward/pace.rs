//! Pacing per API key: a concurrency limit, the pause a 429 or 503 with Retry-After asks for,
//! and a token bucket at `bigpanda.rate_per_minute`: in this process with a SQLite store (one
//! node), shared by the whole fleet through the DynamoDB store otherwise ([`fleet`]).

use super::*;

pub(super) mod fleet;

/// The per-key pause, concurrency slots and token bucket.
pub(super) struct Pacer {
    /// `None` when pacing is off.
    pub(super) limiter: Option<DefaultKeyedRateLimiter<KeyId>>,
    /// The fleet's bucket, which replaces `limiter` when set.
    pub(super) fleet: Option<fleet::Fleet>,
    pub(super) concurrency: usize,
    pub(super) keys: Mutex<HashMap<KeyId, Arc<KeyState>>>,
}

/// An API key's one-way fingerprint: what the per-key maps are keyed by, safe to print.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct KeyId(pub(super) String);

pub(super) struct KeyState {
    pub(super) id: KeyId,
    pub(super) slots: Semaphore,
    pub(super) paused_until: Mutex<Option<Instant>>,
    /// Tokens leased from the fleet's bucket and not used yet.
    pub(super) leased: Mutex<fleet::Leased>,
    /// One lease request per key per process at a time.
    pub(super) leasing: tokio::sync::Mutex<()>,
}

/// Why a wait ended without a go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Interrupted {
    Stopped,
    /// The deadline passed (or would have) while waiting for this.
    Deadline(&'static str),
}

pub(super) const WAIT_SLOT: &str = "a free request slot of the API key";
pub(super) const WAIT_PAUSE: &str = "the API key's Retry-After pause";
pub(super) const WAIT_TOKEN: &str = "the API key's rate limit";

/// The token bucket of one API key: `rate_per_minute`, with a burst of a tenth of it so a
/// backlog is smoothed rather than blasted; `None` (no pacing) for 0.
pub(super) fn quota(rate_per_minute: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate_per_minute)?;
    let burst = NonZeroU32::new((rate_per_minute / 10).max(1))?;
    Some(Quota::per_minute(rate).allow_burst(burst))
}

impl Pacer {
    pub(super) fn new(rate_per_minute: u32, concurrency: usize) -> Self {
        Pacer {
            limiter: quota(rate_per_minute).map(DefaultKeyedRateLimiter::keyed),
            fleet: None,
            concurrency,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn keys_seen(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The state of `api_key`, created on first use.
    pub(super) fn key(&self, api_key: &SecretString) -> Arc<KeyState> {
        let id = KeyId(crate::subscriptions::fingerprint(api_key));
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let state = keys.entry(id.clone()).or_insert_with(|| {
            Arc::new(KeyState {
                id,
                slots: Semaphore::new(self.concurrency),
                paused_until: Mutex::new(None),
                leased: Mutex::new(fleet::Leased::default()),
                leasing: tokio::sync::Mutex::new(()),
            })
        });
        Arc::clone(state)
    }

    /// Waits for a request slot, the end of any pause and a token of `key`.
    pub(super) async fn admit<'k>(
        &self,
        key: &'k KeyState,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<SemaphorePermit<'k>, Interrupted> {
        let until = Until { deadline, stop };
        // The semaphore is never closed, so an error cannot happen; treat it as a stop.
        let permit = until
            .race(key.slots.acquire(), WAIT_SLOT)
            .await?
            .map_err(|_| Interrupted::Stopped)?;
        loop {
            while let Some(end) = key.paused_until() {
                if end >= deadline {
                    return Err(Interrupted::Deadline(WAIT_PAUSE));
                }
                until.race(sleep_until(end), WAIT_PAUSE).await?;
            }
            self.wait_token(key, &until).await?;
            // Another send may have been throttled while this one waited for its token.
            if key.paused_until().is_none() {
                return Ok(permit);
            }
        }
    }

    pub(super) async fn wait_token(
        &self,
        key: &KeyState,
        until: &Until<'_>,
    ) -> Result<(), Interrupted> {
        if let Some(fleet) = &self.fleet {
            return fleet.wait_token(key, until).await;
        }
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        loop {
            let Err(not_until) = limiter.check_key(&key.id) else {
                return Ok(());
            };
            let wake = Instant::now() + not_until.wait_time_from(limiter.clock().now());
            if wake > until.deadline {
                return Err(Interrupted::Deadline(WAIT_TOKEN));
            }
            until.race(sleep_until(wake), WAIT_TOKEN).await?;
        }
    }
}

impl Pacer {
    /// Pauses every send of `key` for `pause` in this process, and in the whole fleet when
    /// the bucket is shared.
    pub(super) async fn pause(&self, key: &KeyState, identifier: &str, pause: Duration) {
        key.pause(identifier, pause);
        if let Some(fleet) = &self.fleet {
            fleet.pause(key, pause.min(MAX_RETRY_AFTER)).await;
        }
    }
}

impl KeyState {
    /// The end of the key's pause, if it is still ahead.
    pub(super) fn paused_until(&self) -> Option<Instant> {
        let paused = *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        paused.filter(|end| *end > Instant::now())
    }

    /// Pauses every send of this key for `pause` (capped at [`MAX_RETRY_AFTER`]).
    pub(super) fn pause(&self, identifier: &str, pause: Duration) {
        let pause = pause.min(MAX_RETRY_AFTER);
        let end = Instant::now() + pause;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *paused = Some(paused.map_or(end, |current| current.max(end)));
        tracing::info!(
            identifier,
            ?pause,
            "BigPanda asked to slow down; pausing the API key"
        );
    }
}

/// The two things that end any wait: the deadline and the stop token.
pub(super) struct Until<'a> {
    pub(super) deadline: Instant,
    pub(super) stop: &'a CancellationToken,
}

impl Until<'_> {
    pub(super) async fn race<F: Future>(
        &self,
        wait: F,
        waiting: &'static str,
    ) -> Result<F::Output, Interrupted> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(Interrupted::Stopped),
            out = wait => Ok(out),
            () = sleep_until(self.deadline) => Err(Interrupted::Deadline(waiting)),
        }
    }
}

pub(super) async fn race<F: Future>(
    wait: F,
    job: &Job<'_>,
    waiting: &'static str,
) -> Result<F::Output, Interrupted> {
    Until {
        deadline: job.deadline,
        stop: job.stop,
    }
    .race(wait, waiting)
    .await
}
