//! [`Forwarder`]: one shared sink; each change goes through its pace, its HTTP attempts and
//! its retries, and ends in one [`Delivery`] or [`ForwardError`].

use super::*;

/// Delivers changes; one per process, shared by all workers (cloning shares the state).
#[derive(Clone)]
pub struct Forwarder {
    pub(super) sink: Arc<Sink>,
}

pub(super) enum Sink {
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

    /// Builds the forwarder of a fleet replica: like [`Forwarder::new`], but each API key's
    /// token bucket and pause live in `store`, shared by every replica, so
    /// `bigpanda.rate_per_minute` is the key's rate for the whole fleet.
    ///
    /// # Errors
    /// [`BuildError`] when a setting is out of range or the HTTP client cannot be built.
    pub fn for_fleet(
        settings: &BigPandaSettings,
        store: crate::subscriptions::dynamodb::DynamoStore,
    ) -> Result<Self, BuildError> {
        let sink = match settings.mode {
            SinkMode::Stdout => Sink::Stdout(Mutex::new(Box::new(std::io::stdout()))),
            SinkMode::Http => {
                let mut http = Http::new(settings)?;
                if settings.rate_per_minute > 0 {
                    http.pacer.fleet = Some(fleet::Fleet {
                        store,
                        rate_per_minute: settings.rate_per_minute,
                        changes_per_week: settings.changes_per_week,
                        weekly: Mutex::new(HashMap::new()),
                    });
                }
                Sink::Http(Box::new(http))
            }
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
    /// [`ForwardError::Unauthorized`] at once on 401/403, [`ForwardError::Endpoint`] at once on
    /// an answer that is not the Changes API's, [`ForwardError::GaveUp`] when no
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
pub(super) struct Job<'a> {
    pub(super) identifier: &'a str,
    pub(super) body: Bytes,
    pub(super) deadline: Instant,
    pub(super) stop: &'a CancellationToken,
}

impl Job<'_> {
    pub(super) fn gave_up(&self, attempts: u32, last: String) -> ForwardError {
        ForwardError::GaveUp {
            identifier: self.identifier.to_owned(),
            attempts,
            last,
        }
    }

    pub(super) fn unauthorized(&self, status: u16) -> ForwardError {
        ForwardError::Unauthorized {
            identifier: self.identifier.to_owned(),
            status,
        }
    }

    pub(super) fn endpoint(&self, url: &Url, answer: String) -> ForwardError {
        ForwardError::Endpoint {
            identifier: self.identifier.to_owned(),
            url: url.to_string(),
            answer,
        }
    }

    pub(super) fn stopped(&self) -> ForwardError {
        ForwardError::Stopped {
            identifier: self.identifier.to_owned(),
        }
    }

    /// The error for a wait that did not end in an attempt.
    pub(super) fn interrupted(&self, why: Interrupted, attempts: u32, last: &str) -> ForwardError {
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

pub(super) fn write_line(out: &Mutex<Box<dyn Write + Send>>, body: &[u8]) -> std::io::Result<()> {
    // One write of the whole line, so other writers of stdout cannot split it either.
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend_from_slice(body);
    line.push(b'\n');
    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
    out.write_all(&line)?;
    out.flush()
}

pub(super) fn record_outcome(identifier: &str, result: &Result<Delivery, ForwardError>) {
    let outcome = match result {
        Ok(Delivery::Accepted) => {
            tracing::debug!(identifier, "BigPanda accepted the change");
            "accepted"
        }
        Ok(Delivery::Rejected { status, error }) => {
            tracing::warn!(identifier, status, error = %error, "BigPanda rejected the change for good");
            "rejected"
        }
        Err(ForwardError::Endpoint { url, answer, .. }) => {
            tracing::error!(identifier, url = %url, answer = %answer, "the Changes API endpoint is wrong: not BigPanda's answer; the change was not delivered and will be retried");
            "endpoint"
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
    metrics::counter!(m::CHANGES_SENT, "outcome" => outcome).increment(1);
}
