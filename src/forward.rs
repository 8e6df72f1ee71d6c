//! The sink that delivers changes: one `POST /data/changes` per change to the BigPanda Changes
//! API (or one JSON line on stdout in dry-run mode), paced per API key, retried with backoff
//! until the caller's deadline.
//!
//! Every send ends in one fate: accepted (any 2xx), rejected for good (400/404/409), the keys
//! are wrong (401/403), given up at the deadline (429, 5xx, timeouts, connection errors and
//! other statuses), or stopped by the cancellation token. The API is an upsert keyed on the
//! change's identifier, so sending a change again after an uncertain attempt is safe.
//!
//! It must never print or log an API key or app key: keys are [`SecretString`]s, the per-key
//! maps are keyed by a one-way fingerprint, and `Debug` is written by hand.

use bytes::Bytes;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

/// Changes by final outcome, label `outcome` = `accepted|rejected|unauthorized|gave_up`.
pub const CHANGES_SENT_TOTAL: &str = "ctc_changes_sent_total";
/// HTTP requests to BigPanda, label `status_class` = `2xx|4xx|429|5xx|error`.
pub const REQUESTS_TOTAL: &str = "ctc_bigpanda_requests_total";
/// Duration of each HTTP request to BigPanda, in seconds.
pub const REQUEST_DURATION_SECONDS: &str = "ctc_bigpanda_request_duration_seconds";
/// Responses that told us to slow down (429, or a `Retry-After` on 503).
pub const THROTTLED_TOTAL: &str = "ctc_bigpanda_throttled_total";

const CHANGES_PATH: &str = "/data/changes";
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest pause we take from a `Retry-After`: a mistaken header must not silence a customer
/// for hours, and one probe every few minutes is harmless to a throttled API.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How long a change may wait for its first turn (a slot, the end of a pause, a token) before
/// its patience starts: a backstop far beyond any real wait, never reached in practice.
const FIRST_TURN_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How much of a rejection's response body is kept and logged.
const REJECTED_BODY_LIMIT: usize = 1024;
/// How much of a transient failure's body goes into the retry reason.
const TRANSIENT_BODY_LIMIT: usize = 256;

/// Where changes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkMode {
    /// POST each change to the Changes API.
    #[default]
    Http,
    /// Dry run: print one JSON change per line to stdout instead.
    Stdout,
}

/// The `[bigpanda]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigPandaSettings {
    /// `http` (default) or `stdout` (dry run).
    pub mode: SinkMode,
    /// Changes are POSTed to `{base_url}/data/changes`.
    pub base_url: String,
    /// Changes per minute per API key; 0 turns pacing off (benchmarks).
    pub rate_per_minute: u32,
    /// POSTs in flight per API key.
    pub max_concurrency_per_key: usize,
    /// Timeout of one HTTP request, connection to end of body.
    pub request_timeout_seconds: u64,
}

impl Default for BigPandaSettings {
    fn default() -> Self {
        BigPandaSettings {
            mode: SinkMode::Http,
            base_url: "https://api.bigpanda.io".into(),
            rate_per_minute: 400,
            max_concurrency_per_key: 4,
            request_timeout_seconds: 10,
        }
    }
}

/// A subscription's BigPanda keys.
#[derive(Clone)]
pub struct Keys {
    pub api_key: SecretString,
    pub app_key: SecretString,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("api_key", &"[redacted]")
            .field("app_key", &"[redacted]")
            .finish()
    }
}

/// How BigPanda answered a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Any 2xx.
    Accepted,
    /// 400/404/409: this change is refused for good. `body` is the start of the response body.
    Rejected { status: u16, body: String },
}

/// Why a change was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// 401/403 (or keys that cannot be sent as HTTP headers, status 0): the subscription's
    /// keys are wrong; fail the whole message.
    #[error("change {identifier}: BigPanda refused the subscription's keys (HTTP {status})")]
    Unauthorized { identifier: String, status: u16 },
    /// Transient failures were still failing at the deadline; retry the message later.
    #[error("change {identifier}: gave up after {attempts} attempt(s): {last}")]
    GaveUp {
        identifier: String,
        attempts: u32,
        last: String,
    },
    /// The cancellation token fired first.
    #[error("change {identifier}: stopped before it was delivered")]
    Stopped { identifier: String },
}

/// Settings the forwarder cannot be built from.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("bigpanda.base_url {base_url:?} is not usable: {reason}")]
    BaseUrl { base_url: String, reason: String },
    #[error("Failed to build the BigPanda HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Delivers changes; one per process, shared by all workers (cloning shares the state).
#[derive(Clone)]
pub struct Forwarder {
    sink: Arc<Sink>,
}

enum Sink {
    Http(Box<Http>),
    /// A `Mutex` so concurrent sends never interleave their lines.
    Stdout(Mutex<Box<dyn Write + Send>>),
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.sink {
            Sink::Stdout(_) => f
                .debug_struct("Forwarder")
                .field("mode", &"stdout")
                .finish(),
            Sink::Http(http) => f
                .debug_struct("Forwarder")
                .field("mode", &"http")
                .field("url", &http.url.as_str())
                .field("timeout", &http.timeout)
                .field("api_keys_seen", &http.pacer.keys_seen())
                .finish_non_exhaustive(),
        }
    }
}

impl Forwarder {
    /// Builds the forwarder: the HTTP client and the per-key pacing state.
    ///
    /// # Errors
    /// [`BuildError`] when a setting is out of range or the HTTP client cannot be built.
    pub fn new(settings: &BigPandaSettings) -> Result<Self, BuildError> {
        let sink = match settings.mode {
            SinkMode::Stdout => Sink::Stdout(Mutex::new(Box::new(std::io::stdout()))),
            SinkMode::Http => Sink::Http(Box::new(Http::new(settings)?)),
        };
        Ok(Forwarder {
            sink: Arc::new(sink),
        })
    }

    /// Delivers one change (`body` is the serialized change JSON, `identifier` its eventID)
    /// with `keys`.
    ///
    /// Waits for the key's pause (a `Retry-After`), concurrency slot and token bucket; retries
    /// 429/5xx/timeouts/connection errors with exponential backoff and full jitter. The time
    /// left until `deadline` is the change's patience, counted from its first attempt: waiting
    /// for its first turn is pacing, not failing. A `Retry-After` on 429/503 pauses every send
    /// of that API key: slowing down, not failing. Logs and counts the outcome.
    ///
    /// # Errors
    /// [`ForwardError::Unauthorized`] at once on 401/403, [`ForwardError::GaveUp`] when no
    /// attempt succeeded within the patience, [`ForwardError::Stopped`] when `stop` fired.
    pub async fn send(
        &self,
        keys: &Keys,
        identifier: &str,
        body: Bytes,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<Delivery, ForwardError> {
        let job = Job {
            identifier,
            body,
            deadline,
            stop,
        };
        let result = match &*self.sink {
            Sink::Stdout(out) => write_line(out, &job.body)
                .map(|()| Delivery::Accepted)
                .map_err(|e| job.gave_up(1, format!("writing to stdout: {e}"))),
            Sink::Http(http) => http.deliver(keys, &job).await,
        };
        record_outcome(identifier, &result);
        result
    }
}

/// One change on its way.
struct Job<'a> {
    identifier: &'a str,
    body: Bytes,
    deadline: Instant,
    stop: &'a CancellationToken,
}

impl Job<'_> {
    fn gave_up(&self, attempts: u32, last: String) -> ForwardError {
        ForwardError::GaveUp {
            identifier: self.identifier.to_owned(),
            attempts,
            last,
        }
    }

    fn unauthorized(&self, status: u16) -> ForwardError {
        ForwardError::Unauthorized {
            identifier: self.identifier.to_owned(),
            status,
        }
    }

    fn stopped(&self) -> ForwardError {
        ForwardError::Stopped {
            identifier: self.identifier.to_owned(),
        }
    }

    /// The error for a wait that did not end in an attempt.
    fn interrupted(&self, why: Interrupted, attempts: u32, last: &str) -> ForwardError {
        match why {
            Interrupted::Stopped => self.stopped(),
            Interrupted::Deadline(waiting) if attempts == 0 => self.gave_up(
                0,
                format!("the deadline passed while waiting for {waiting}"),
            ),
            Interrupted::Deadline(waiting) => self.gave_up(
                attempts,
                format!("{last}; then the deadline passed while waiting for {waiting}"),
            ),
        }
    }
}

fn write_line(out: &Mutex<Box<dyn Write + Send>>, body: &[u8]) -> std::io::Result<()> {
    // One write of the whole line, so other writers of stdout cannot split it either.
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend_from_slice(body);
    line.push(b'\n');
    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
    out.write_all(&line)?;
    out.flush()
}

fn record_outcome(identifier: &str, result: &Result<Delivery, ForwardError>) {
    let outcome = match result {
        Ok(Delivery::Accepted) => {
            tracing::debug!(identifier, "BigPanda accepted the change");
            "accepted"
        }
        Ok(Delivery::Rejected { status, body }) => {
            tracing::warn!(identifier, status, body = %body, "BigPanda rejected the change for good");
            "rejected"
        }
        Err(ForwardError::Unauthorized { status, .. }) => {
            tracing::warn!(
                identifier,
                status,
                "BigPanda refused the subscription's keys"
            );
            "unauthorized"
        }
        Err(ForwardError::GaveUp { attempts, last, .. }) => {
            tracing::warn!(identifier, attempts, last = %last, "gave up delivering the change");
            "gave_up"
        }
        Err(ForwardError::Stopped { .. }) => {
            tracing::debug!(identifier, "stopped before the change was delivered");
            return;
        }
    };
    metrics::counter!(CHANGES_SENT_TOTAL, "outcome" => outcome).increment(1);
}

/// The HTTP sink.
struct Http {
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
    pacer: Pacer,
}

/// What one HTTP attempt came to.
enum Attempt {
    /// The send's fate is known: accepted, rejected, unauthorized or stopped.
    Final(Result<Delivery, ForwardError>),
    /// A transient failure; `retry_after` when the API asked to slow down.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Http {
    fn new(settings: &BigPandaSettings) -> Result<Self, BuildError> {
        if settings.max_concurrency_per_key == 0 {
            return Err(BuildError::Invalid(
                "bigpanda.max_concurrency_per_key must be at least 1",
            ));
        }
        if settings.request_timeout_seconds == 0 {
            return Err(BuildError::Invalid(
                "bigpanda.request_timeout_seconds must be at least 1",
            ));
        }
        let timeout = Duration::from_secs(settings.request_timeout_seconds);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A redirected POST may become a GET; treat a 3xx as a failure instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cloudtrail-changes/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Client)?;
        Ok(Http {
            client,
            url: changes_url(&settings.base_url)?,
            timeout,
            pacer: Pacer::new(settings.rate_per_minute, settings.max_concurrency_per_key),
        })
    }

    async fn deliver(&self, keys: &Keys, job: &Job<'_>) -> Result<Delivery, ForwardError> {
        let Some(headers) = auth_headers(keys) else {
            return Err(job.unauthorized(0));
        };
        let key = self.pacer.key(&keys.api_key);
        // The change's patience (`deadline - now`) starts with its first attempt: waiting for
        // the key's turn before that is pacing, not failing. With many replicas sharing a low
        // rate, the wait alone can outlast the patience. It stays bounded: slots are freed by
        // attempts, which have deadlines, tokens come at the rate and a pause lasts 300 s at most.
        let patience = job.deadline.saturating_duration_since(Instant::now());
        let mut job = Job {
            identifier: job.identifier,
            body: job.body.clone(),
            deadline: Instant::now() + FIRST_TURN_WAIT,
            stop: job.stop,
        };
        let (mut attempts, mut failures) = (0, 0);
        let mut last = String::new();
        loop {
            let outcome = match self.pacer.admit(&key, job.deadline, job.stop).await {
                Ok(_permit) => {
                    if attempts == 0 {
                        job.deadline = Instant::now() + patience;
                    }
                    attempts += 1;
                    self.attempt(&headers, &job).await
                }
                Err(why) => return Err(job.interrupted(why, attempts, &last)),
            };
            let retry_after = match outcome {
                Attempt::Final(result) => return result,
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    last = reason;
                    retry_after.filter(|pause| !pause.is_zero())
                }
            };
            let delay = if let Some(pause) = retry_after {
                // The key's pause does the waiting; being throttled is not a failure.
                key.pause(job.identifier, pause);
                Duration::ZERO
            } else {
                failures += 1;
                backoff(failures, rand::random())
            };
            tracing::debug!(identifier = job.identifier, attempts, reason = %last, ?delay, "retrying");
            if Instant::now() + delay >= job.deadline {
                return Err(job.gave_up(attempts, last));
            }
            if let Err(why) = race(tokio::time::sleep(delay), &job, "the retry backoff").await {
                return Err(job.interrupted(why, attempts, &last));
            }
        }
    }

    /// One POST, bounded by the request timeout and the deadline, abandoned when `stop` fires.
    async fn attempt(&self, headers: &HeaderMap, job: &Job<'_>) -> Attempt {
        let remaining = job.deadline.saturating_duration_since(Instant::now());
        let request = self
            .client
            .post(self.url.clone())
            .headers(headers.clone())
            .timeout(self.timeout.min(remaining))
            .body(job.body.clone());
        let started = Instant::now();
        let outcome = tokio::select! {
            biased;
            () = job.stop.cancelled() => return Attempt::Final(Err(job.stopped())),
            response = request.send() => match response {
                Ok(response) => classify(response, job).await,
                Err(error) => {
                    metrics::counter!(REQUESTS_TOTAL, "status_class" => "error").increment(1);
                    Attempt::Retry { reason: error_chain(&error), retry_after: None }
                }
            },
        };
        metrics::histogram!(REQUEST_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
        outcome
    }
}

fn changes_url(base_url: &str) -> Result<Url, BuildError> {
    let bad = |reason: String| BuildError::BaseUrl {
        base_url: base_url.to_owned(),
        reason,
    };
    let url = Url::parse(&format!("{}{CHANGES_PATH}", base_url.trim_end_matches('/')))
        .map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https".into()));
    }
    Ok(url)
}

/// The request headers, marked sensitive; `None` when a key is not a valid header value.
fn auth_headers(keys: &Keys) -> Option<HeaderMap> {
    let bearer = format!("Bearer {}", keys.api_key.expose_secret());
    let mut bearer = HeaderValue::from_str(&bearer).ok()?;
    bearer.set_sensitive(true);
    let mut app_key = HeaderValue::from_str(keys.app_key.expose_secret()).ok()?;
    app_key.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, bearer);
    headers.insert(HeaderName::from_static("x-bp-app-key"), app_key);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Some(headers)
}

/// Maps a response to what the sender does next.
async fn classify(mut response: reqwest::Response, job: &Job<'_>) -> Attempt {
    let status = response.status();
    let code = status.as_u16();
    let class = match code {
        200..=299 => "2xx",
        429 => "429",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "error",
    };
    metrics::counter!(REQUESTS_TOTAL, "status_class" => class).increment(1);
    if status.is_success() {
        // Reading the (small) body lets the connection go back to the pool.
        read_prefix(&mut response, REJECTED_BODY_LIMIT).await;
        return Attempt::Final(Ok(Delivery::Accepted));
    }
    match code {
        400 | 404 | 409 => Attempt::Final(Ok(Delivery::Rejected {
            status: code,
            body: read_prefix(&mut response, REJECTED_BODY_LIMIT).await,
        })),
        401 | 403 => Attempt::Final(Err(job.unauthorized(code))),
        _ => transient(response, status).await,
    }
}

/// A 429, 5xx or unexpected status: retried, after the `Retry-After` of a 429/503 if any.
async fn transient(mut response: reqwest::Response, status: StatusCode) -> Attempt {
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now())),
        _ => None,
    };
    if status == StatusCode::TOO_MANY_REQUESTS || retry_after.is_some() {
        metrics::counter!(THROTTLED_TOTAL).increment(1);
    }
    let body = read_prefix(&mut response, TRANSIENT_BODY_LIMIT).await;
    let code = status.as_u16();
    let reason = if body.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {body}")
    };
    Attempt::Retry {
        reason,
        retry_after,
    }
}

/// The first `limit` bytes of the body as text (cut on a character boundary, ending in `…`
/// when cut); never reads much more than `limit`.
async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() <= limit {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    if text.len() <= limit {
        return text.into_owned();
    }
    let cut = (0..=limit)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// An error with its causes, e.g. "error sending request: …: connection refused".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// The per-key pause, concurrency slots and token bucket.
struct Pacer {
    /// `None` when pacing is off.
    limiter: Option<DefaultKeyedRateLimiter<KeyId>>,
    concurrency: usize,
    keys: Mutex<HashMap<KeyId, Arc<KeyState>>>,
}

/// An API key's one-way fingerprint: what the per-key maps are keyed by, safe to print.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct KeyId(String);

struct KeyState {
    id: KeyId,
    slots: Semaphore,
    paused_until: Mutex<Option<Instant>>,
}

/// Why a wait ended without a go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupted {
    Stopped,
    /// The deadline passed (or would have) while waiting for this.
    Deadline(&'static str),
}

const WAIT_SLOT: &str = "a free request slot of the API key";
const WAIT_PAUSE: &str = "the API key's Retry-After pause";
const WAIT_TOKEN: &str = "the API key's rate limit";

/// The token bucket of one API key: `rate_per_minute`, with a burst of a tenth of it so a
/// backlog is smoothed rather than blasted; `None` (no pacing) for 0.
fn quota(rate_per_minute: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate_per_minute)?;
    let burst = NonZeroU32::new((rate_per_minute / 10).max(1))?;
    Some(Quota::per_minute(rate).allow_burst(burst))
}

impl Pacer {
    fn new(rate_per_minute: u32, concurrency: usize) -> Self {
        Pacer {
            limiter: quota(rate_per_minute).map(DefaultKeyedRateLimiter::keyed),
            concurrency,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn keys_seen(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The state of `api_key`, created on first use.
    fn key(&self, api_key: &SecretString) -> Arc<KeyState> {
        let id = KeyId(crate::subscriptions::fingerprint(api_key));
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let state = keys.entry(id.clone()).or_insert_with(|| {
            Arc::new(KeyState {
                id,
                slots: Semaphore::new(self.concurrency),
                paused_until: Mutex::new(None),
            })
        });
        Arc::clone(state)
    }

    /// Waits for a request slot, the end of any pause and a token of `key`.
    async fn admit<'k>(
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

    async fn wait_token(&self, key: &KeyState, until: &Until<'_>) -> Result<(), Interrupted> {
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

impl KeyState {
    /// The end of the key's pause, if it is still ahead.
    fn paused_until(&self) -> Option<Instant> {
        let paused = *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        paused.filter(|end| *end > Instant::now())
    }

    /// Pauses every send of this key for `pause` (capped at [`MAX_RETRY_AFTER`]).
    fn pause(&self, identifier: &str, pause: Duration) {
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
struct Until<'a> {
    deadline: Instant,
    stop: &'a CancellationToken,
}

impl Until<'_> {
    async fn race<F: Future>(
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

async fn race<F: Future>(
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

/// The delay before retry number `attempt` (1 after the first failure): full jitter, a
/// `rng_fraction` (0..1) of 250 ms doubling per attempt, capped at 30 s.
#[must_use]
pub fn backoff(attempt: u32, rng_fraction: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let ceiling = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP);
    // NaN would make `mul_f64` panic.
    let fraction = if rng_fraction.is_nan() {
        0.0
    } else {
        rng_fraction.clamp(0.0, 1.0)
    };
    ceiling.mul_f64(fraction)
}

/// How long a `Retry-After` value asks us to wait from `now`: delta seconds or an
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); a date in the past is zero. `None` for
/// anything else (the obsolete RFC 850 and asctime forms included).
#[must_use]
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 still means "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    let mut parts = value.split(' ');
    let weekday = parts.next()?;
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    let (time, zone) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || zone != "GMT" || weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let day = digits(day, 2).filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let year = digits(year, 4)?;
    let mut hms = time.split(':');
    let hour = digits(hms.next()?, 2).filter(|h| *h < 24)?;
    let minute = digits(hms.next()?, 2).filter(|m| *m < 60)?;
    let second = digits(hms.next()?, 2).filter(|s| *s <= 60)?;
    if hms.next().is_some() {
        return None;
    }
    let days = days_from_civil(i64::from(year), month as i64, i64::from(day));
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Exactly `len` ASCII digits.
fn digits(text: &str, len: usize) -> Option<u32> {
    if text.len() != len || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests;
