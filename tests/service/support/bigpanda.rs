//! An HTTP stand-in for the BigPanda Changes API (`POST /data/changes`) on a random loopback
//! port. It records every request and answers from a script, then with a default.
//!
//! Each request is answered, in this order:
//! 1. `401` without `Authorization: Bearer <key>`, or with a key given to `reject_api_key`;
//! 2. `400` without `x-bp-app-key`, or when the body is not a JSON object with a non-empty
//!    string `identifier` (what the real API does with a malformed change);
//! 3. `429` (no `Retry-After`) when `limit_per_key` is set and the API key already had that
//!    many requests accepted within the sliding window (BigPanda's limit per organisation);
//! 4. the next scripted [`Reply`], if any;
//! 5. the default: `204` with no body, the documented answer (change-model.md; 200 and 201
//!    are seen too, `set_default` picks another).
//!
//! Requests refused in steps 1-3 do not consume the script. It stops serving when dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio_util::sync::CancellationToken;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// The status with a `Retry-After: <secs>` header (e.g. a 429).
    StatusWithRetryAfter(u16, u64),
    /// Waits, then answers the status (a slow API; the client may time out first).
    Delay(Duration, u16),
    /// Waits until the token is cancelled (a test's gate), then answers the status; after
    /// `Duration` at most, so a test that fails before opening the gate never hangs the server.
    Held(CancellationToken, Duration, u16),
}

/// One request to `POST /data/changes`, as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub received: Instant,
    /// The whole `Authorization` header value, e.g. `Bearer key`.
    pub authorization: Option<String>,
    /// The key after `Bearer `.
    pub api_key: Option<String>,
    pub app_key: Option<String>,
    pub content_type: Option<String>,
    /// The parsed body; `Null` when it was not JSON.
    pub body: serde_json::Value,
    pub raw_body: String,
    /// What the stand-in answered.
    pub status: u16,
}

impl Recorded {
    pub fn identifier(&self) -> Option<&str> {
        self.body.get("identifier").and_then(|v| v.as_str())
    }

    pub fn is_accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default_status: Option<u16>,
    rejected_keys: HashSet<String>,
    requests: Vec<Recorded>,
    /// Accepted requests per API key within the window, and the window.
    limit: Option<(usize, Duration)>,
    windows: HashMap<String, VecDeque<Instant>>,
}

type Shared = Arc<Mutex<Inner>>;

/// The running stand-in; shuts down when dropped.
pub struct BigPanda {
    addr: SocketAddr,
    shared: Shared,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BigPanda {
    /// Binds a random loopback port and serves on the current tokio runtime.
    pub async fn start() -> BigPanda {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port for the BigPanda stand-in");
        let addr = listener.local_addr().expect("a bound address");
        let shared = Shared::default();
        let app = Router::new()
            .route("/data/changes", post(changes))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        });
        BigPanda {
            addr,
            shared,
            stop,
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`: the daemon's `bigpanda.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next requests with these replies, in order (appended to any left).
    pub fn push_script(&self, replies: Vec<Reply>) {
        self.lock().script.extend(replies);
    }

    /// The status answered once the script is used up.
    pub fn set_default(&self, status: u16) {
        self.lock().default_status = Some(status);
    }

    /// From now on, an API key gets `429` once `limit` of its requests were accepted within
    /// the last `window` (a sliding window, like the Changes API's limit per organisation).
    pub fn limit_per_key(&self, limit: usize, window: Duration) {
        self.lock().limit = Some((limit, window));
    }

    /// The requests answered with a 429, in arrival order.
    pub fn throttled(&self) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status == 429)
            .cloned()
            .collect()
    }

    /// Requests with `Authorization: Bearer <key>` get 401 from now on.
    pub fn reject_api_key(&self, key: &str) {
        self.lock().rejected_keys.insert(key.to_string());
    }

    /// Every request so far, in arrival order.
    pub fn all(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The requests answered with a 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.is_accepted())
            .cloned()
            .collect()
    }

    /// Waits until at least `n` requests were accepted; false if `timeout` passed first.
    pub async fn wait_for_accepted(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.accepted().len() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving and waits until the server has stopped (at most 5 s).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.shared)
    }
}

impl Drop for BigPanda {
    fn drop(&mut self) {
        // Graceful: idle keep-alive connections close at once, the listener stops accepting.
        self.stop.cancel();
    }
}

/// A poisoned lock only means another test thread panicked while holding it; the data is
/// still the record of what happened.
fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn changes(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    let text = |name: header::HeaderName| -> Option<String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = text(header::AUTHORIZATION);
    let api_key = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    let app_key = text(header::HeaderName::from_static("x-bp-app-key"));
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let has_identifier = parsed
        .get("identifier")
        .and_then(|v| v.as_str())
        .is_some_and(|s| !s.is_empty());

    let reply = {
        let mut inner = lock(&shared);
        let reply = if api_key
            .as_ref()
            .is_none_or(|k| inner.rejected_keys.contains(k))
        {
            Reply::Status(401)
        } else if app_key.is_none() || !has_identifier {
            Reply::Status(400)
        } else if over_limit(&mut inner, api_key.as_deref().unwrap_or_default(), received) {
            Reply::Status(429)
        } else {
            let default = Reply::Status(inner.default_status.unwrap_or(204));
            inner.script.pop_front().unwrap_or(default)
        };
        let status = status_of(&reply);
        if let (Some(key), true) = (&api_key, (200..300).contains(&status)) {
            if inner.limit.is_some() {
                inner
                    .windows
                    .entry(key.clone())
                    .or_default()
                    .push_back(received);
            }
        }
        inner.requests.push(Recorded {
            received,
            authorization,
            api_key,
            app_key,
            content_type: text(header::CONTENT_TYPE),
            body: parsed,
            raw_body,
            status,
        });
        reply
    };
    answer(reply).await
}

/// Whether `api_key` is at its limit at `now` (forgetting acceptances older than the window).
fn over_limit(inner: &mut Inner, api_key: &str, now: Instant) -> bool {
    let Some((limit, window)) = inner.limit else {
        return false;
    };
    let accepted = inner.windows.entry(api_key.to_owned()).or_default();
    while accepted
        .front()
        .is_some_and(|at| now.duration_since(*at) >= window)
    {
        accepted.pop_front();
    }
    accepted.len() >= limit
}

fn status_of(reply: &Reply) -> u16 {
    match *reply {
        Reply::Status(status)
        | Reply::StatusWithRetryAfter(status, _)
        | Reply::Delay(_, status)
        | Reply::Held(_, _, status) => status,
    }
}

async fn answer(reply: Reply) -> Response {
    let mut retry_after = None;
    match reply {
        Reply::Delay(delay, _) => tokio::time::sleep(delay).await,
        Reply::Held(ref gate, most, _) => {
            let _ = tokio::time::timeout(most, gate.cancelled()).await;
        }
        Reply::StatusWithRetryAfter(_, secs) => retry_after = Some(secs),
        Reply::Status(_) => {}
    }
    let status = StatusCode::from_u16(status_of(&reply)).expect("a valid scripted status");
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else if status.is_success() {
        (status, axum::Json(serde_json::json!({"status": "ok"}))).into_response()
    } else {
        let error = status.canonical_reason().unwrap_or("error");
        let body = serde_json::json!({"status": "error", "error": error});
        (status, axum::Json(body)).into_response()
    };
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
