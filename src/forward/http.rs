//! The HTTP sink: one attempt is one POST, and its answer is classified into a final fate or
//! a transient failure to retry.

use super::*;
use crate::util::errors::error_chain;

/// The HTTP sink.
pub(super) struct Http {
    pub(super) client: reqwest::Client,
    pub(super) url: Url,
    pub(super) timeout: Duration,
    pub(super) pacer: Pacer,
    pub(super) rejections: Rejections,
}

/// What one HTTP attempt came to.
pub(super) enum Attempt {
    /// The send's fate is known: accepted, rejected, unauthorized or stopped.
    Final(Result<Delivery, ForwardError>),
    /// A transient failure; `retry_after` when the API asked to slow down, `throttled` for a
    /// 429 (pacing: it uses up no patience).
    Retry {
        reason: String,
        retry_after: Option<Duration>,
        throttled: bool,
    },
}

impl Http {
    pub(super) fn new(settings: &BigPandaSettings) -> Result<Self, BuildError> {
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
            rejections: Rejections::new(settings.max_consecutive_rejections),
        })
    }

    pub(super) async fn deliver(
        &self,
        keys: &Keys,
        job: &Job<'_>,
    ) -> Result<Delivery, ForwardError> {
        let Some(headers) = auth_headers(keys) else {
            return Err(job.unauthorized(0));
        };
        let key = self.pacer.key(&keys.api_key);
        // The change's patience (`deadline - now`) starts with its first attempt: waiting for
        // the key's turn before that is pacing, not failing. With many replicas sharing a low
        // rate, the wait alone can outlast the patience. It stays bounded: slots are freed by
        // attempts, which have deadlines, tokens come at the rate and a pause lasts 300 s at most.
        // A 429 is pacing too: its attempt gives its time back and the next turn is waited for
        // like the first.
        let mut patience = job.deadline.saturating_duration_since(Instant::now());
        let mut job = Job {
            identifier: job.identifier,
            body: job.body.clone(),
            deadline: Instant::now() + FIRST_TURN_WAIT,
            stop: job.stop,
        };
        let (mut attempts, mut failures, mut waiting_turn) = (0, 0, true);
        let mut last = String::new();
        loop {
            let (started, outcome) = match self.pacer.admit(&key, job.deadline, job.stop).await {
                Ok(_permit) => {
                    if waiting_turn {
                        job.deadline = Instant::now() + patience;
                        waiting_turn = false;
                    }
                    attempts += 1;
                    let started = Instant::now();
                    (started, self.attempt(&headers, &job).await)
                }
                Err(why) => return Err(job.interrupted(why, attempts, &last)),
            };
            let (retry_after, throttled) = match outcome {
                Attempt::Final(result) => {
                    return self.rejections.judge(keys, &job, &self.url, result)
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                    throttled,
                } => {
                    last = reason;
                    (retry_after.filter(|pause| !pause.is_zero()), throttled)
                }
            };
            if throttled {
                patience = job.deadline.saturating_duration_since(started);
                job.deadline = Instant::now() + FIRST_TURN_WAIT;
                waiting_turn = true;
            }
            let delay = if let Some(pause) = retry_after {
                // The key's pause does the waiting; being throttled is not a failure.
                self.pacer.pause(&key, job.identifier, pause).await;
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
    pub(super) async fn attempt(&self, headers: &HeaderMap, job: &Job<'_>) -> Attempt {
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
                Ok(response) => judge(response, job, &self.url).await,
                Err(error) => {
                    metrics::counter!(m::BIGPANDA_REQUESTS, "status_class" => "error").increment(1);
                    Attempt::Retry { reason: error_chain(&error), retry_after: None, throttled: false }
                }
            },
        };
        metrics::histogram!(m::BIGPANDA_REQUEST_DURATION).record(started.elapsed().as_secs_f64());
        outcome
    }
}

pub(super) fn changes_url(base_url: &str) -> Result<Url, BuildError> {
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
pub(super) fn auth_headers(keys: &Keys) -> Option<HeaderMap> {
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

/// Maps a response to what the sender does next (the rules are in [`classify`]).
pub(super) async fn judge(mut response: reqwest::Response, job: &Job<'_>, url: &Url) -> Attempt {
    let status = response.status();
    let code = status.as_u16();
    let class = match code {
        200..=299 => "2xx",
        429 => "429",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "error",
    };
    metrics::counter!(m::BIGPANDA_REQUESTS, "status_class" => class).increment(1);
    if code == 429 || status.is_server_error() {
        return transient(response, status).await;
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Reading the (small) body also lets the connection go back to the pool.
    let body = read_prefix(&mut response, REJECTED_BODY_LIMIT).await;
    match classify::classify(code, content_type.as_deref(), &body) {
        Verdict::Accepted => Attempt::Final(Ok(Delivery::Accepted)),
        Verdict::Rejected { error } => Attempt::Final(Ok(Delivery::Rejected {
            status: code,
            error,
        })),
        Verdict::Unauthorized => Attempt::Final(Err(job.unauthorized(code))),
        Verdict::Endpoint { answer } => Attempt::Final(Err(job.endpoint(url, answer))),
        Verdict::Transient => Attempt::Retry {
            reason: format!("HTTP {code}: {body}"),
            retry_after: None,
            throttled: false,
        },
    }
}

/// Runs of rejections per API key (by fingerprint): a long run is a configuration problem
/// (a wrong base URL answering with JSON, a broken normalisation), not many bad changes. Kept
/// per process: each replica counts its own run, which holds back the same kind of mistake.
pub(super) struct Rejections {
    max: u32,
    runs: Mutex<HashMap<String, u32>>,
}

impl Rejections {
    pub(super) fn new(max: u32) -> Self {
        Rejections {
            max,
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// Passes `result` on, except a rejection that makes the key's run longer than the
    /// maximum: that one becomes [`ForwardError::Endpoint`]. An acceptance ends the run.
    pub(super) fn judge(
        &self,
        keys: &Keys,
        job: &Job<'_>,
        url: &Url,
        result: Result<Delivery, ForwardError>,
    ) -> Result<Delivery, ForwardError> {
        if self.max == 0 {
            return result;
        }
        let key = crate::subscriptions::fingerprint(&keys.api_key);
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Ok(Delivery::Accepted) => {
                runs.remove(&key);
                result
            }
            Ok(Delivery::Rejected { status, error }) => {
                let run = runs.entry(key).or_insert(0);
                *run = run.saturating_add(1);
                if *run <= self.max {
                    return result;
                }
                Err(job.endpoint(
                    url,
                    format!(
                        "{run} rejections in a row for this API key, more than \
                         bigpanda.max_consecutive_rejections ({}); the last: HTTP {status}: {error}",
                        self.max
                    ),
                ))
            }
            Err(_) => result,
        }
    }
}

/// A 429, 5xx or unexpected status: retried, after the `Retry-After` of a 429/503 if any; a
/// 429 without one pauses the key for [`THROTTLE_PAUSE`].
pub(super) async fn transient(mut response: reqwest::Response, status: StatusCode) -> Attempt {
    let throttled = status == StatusCode::TOO_MANY_REQUESTS;
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now())),
        _ => None,
    };
    let retry_after = retry_after.or(throttled.then_some(THROTTLE_PAUSE));
    if throttled || retry_after.is_some() {
        metrics::counter!(m::BIGPANDA_THROTTLED).increment(1);
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
        throttled,
    }
}

/// The first `limit` bytes of the body as text (cut on a character boundary, ending in `…`
/// when cut); never reads much more than `limit`.
pub(super) async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> String {
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
