//! A fault-injecting HTTP proxy to put in front of moto: AWS as it is on a bad day.
//!
//! Point the SDK at `proxy.endpoint()`; every request is forwarded to the target unchanged
//! (`Host` included, so SigV4 signatures and the queue URLs moto builds from it stay valid)
//! unless a rule catches it first. [`Proxy::inject`] adds a rule: the next `n` requests that
//! match get the fault instead (a canned AWS error, or a delay before forwarding). Rules are
//! tried in the order they were added; a used-up rule is dropped.
//!
//! Limits: HTTP/1.1 only, bodies are buffered whole (fine for test objects), no connection
//! resets or half-written answers.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;

/// What a rule looks at: one request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Path and query, e.g. `/bucket/key?x-id=GetObject`.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// The AWS operation, where the request names it: `X-Amz-Target: AmazonSQS.ReceiveMessage`
    /// (JSON protocols, the SDK's SQS) or `Action=AssumeRole` (query protocol: STS, SNS).
    /// REST protocols (S3) have none: match them by method and path.
    pub fn action(&self) -> Option<String> {
        if let Some(target) = self
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
        {
            return Some(target.rsplit('.').next().unwrap_or(target).to_string());
        }
        let query = self.path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let body = std::str::from_utf8(&self.body).unwrap_or("");
        [query, body]
            .into_iter()
            .flat_map(|form| form.split('&'))
            .find_map(|pair| pair.strip_prefix("Action="))
            .map(str::to_string)
    }

    fn uses_json_protocol(&self) -> bool {
        self.headers.contains_key("x-amz-target")
    }

    fn uses_query_protocol(&self) -> bool {
        self.action().is_some() && !self.uses_json_protocol()
    }
}

/// Which requests a rule applies to.
#[derive(Clone)]
pub struct Match(Arc<dyn Fn(&Seen) -> bool + Send + Sync>);

impl Match {
    pub fn any() -> Match {
        Match::when(|_| true)
    }

    /// By AWS operation name (see [`Seen::action`]), e.g. `"ReceiveMessage"`, `"AssumeRole"`.
    pub fn action(name: &str) -> Match {
        let name = name.to_string();
        Match::when(move |seen| seen.action().as_deref() == Some(name.as_str()))
    }

    /// The path (with query) starts with `prefix`, e.g. `"/my-bucket/AWSLogs/"`.
    pub fn path_prefix(prefix: &str) -> Match {
        let prefix = prefix.to_string();
        Match::when(move |seen| seen.path.starts_with(&prefix))
    }

    /// The method is `method` and the path starts with `prefix` (S3: `GET /bucket/key`).
    pub fn method_and_path_prefix(method: Method, prefix: &str) -> Match {
        let prefix = prefix.to_string();
        Match::when(move |seen| seen.method == method && seen.path.starts_with(&prefix))
    }

    /// The path or the body contains `needle`, e.g. `"Action=ReceiveMessage"`.
    pub fn contains(needle: &str) -> Match {
        let needle = needle.to_string();
        Match::when(move |seen| {
            seen.path.contains(&needle) || String::from_utf8_lossy(&seen.body).contains(&needle)
        })
    }

    pub fn when(predicate: impl Fn(&Seen) -> bool + Send + Sync + 'static) -> Match {
        Match(Arc::new(predicate))
    }
}

impl fmt::Debug for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Match(..)")
    }
}

/// What a caught request gets.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An AWS error in the request's own protocol: JSON `{"__type", "message"}` for JSON
    /// protocols, `<ErrorResponse>` XML for the query protocol, `<Error>` XML for S3.
    /// E.g. `(500, "InternalError")`, `(503, "ServiceUnavailable")`, `(503, "SlowDown")`,
    /// `(400, "ThrottlingException")`.
    AwsError { status: u16, code: String },
    /// Exactly this answer.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Waits, then forwards the request as usual.
    Delay(Duration),
}

impl Fault {
    pub fn aws_error(status: u16, code: &str) -> Fault {
        Fault::AwsError {
            status,
            code: code.to_string(),
        }
    }
}

/// One request the proxy handled.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: Method,
    pub path: String,
    pub action: Option<String>,
    pub status: u16,
    /// Answered by a rule rather than by the target (a delayed request is not injected).
    pub injected: bool,
}

struct Rule {
    matches: Match,
    remaining: usize,
    fault: Fault,
}

#[derive(Default)]
struct Inner {
    rules: Vec<Rule>,
    log: Vec<Logged>,
}

struct Shared {
    target: String,
    client: reqwest::Client,
    inner: Mutex<Inner>,
}

/// The running proxy; stops serving when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on a random loopback port and forwards to `target` (e.g. `moto.endpoint()`).
    pub async fn start(target: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port for the proxy");
        let addr = listener.local_addr().expect("a bound address");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("a reqwest client");
        let shared = Arc::new(Shared {
            target: target.trim_end_matches('/').to_string(),
            client,
            inner: Mutex::default(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        });
        Proxy { addr, shared, stop }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` requests that match get `fault`.
    pub fn inject(&self, matches: Match, n: usize, fault: Fault) {
        self.lock().rules.push(Rule {
            matches,
            remaining: n,
            fault,
        });
    }

    /// Drops every rule not yet used up.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Every request handled so far, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// How many requests a rule answered instead of the target.
    pub fn injected(&self) -> usize {
        self.lock().log.iter().filter(|l| l.injected).count()
    }

    /// How many faults are still to be injected.
    pub fn pending(&self) -> usize {
        self.lock().rules.iter().map(|r| r.remaining).sum()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The fault of the first rule that matches, using it up.
    fn take_fault(&self, seen: &Seen) -> Option<Fault> {
        let mut inner = self.lock();
        let index = inner
            .rules
            .iter()
            .position(|rule| rule.remaining > 0 && (rule.matches.0)(seen))?;
        let rule = &mut inner.rules[index];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            inner.rules.remove(index);
        }
        Some(fault)
    }

    fn record(&self, seen: &Seen, status: u16, injected: bool) {
        self.lock().log.push(Logged {
            method: seen.method.clone(),
            path: seen.path.clone(),
            action: seen.action(),
            status,
            injected,
        });
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let seen = Seen {
        method: parts.method,
        path,
        headers: parts.headers,
        body,
    };
    match shared.take_fault(&seen) {
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(fault) => {
            let response = canned(&seen, fault);
            shared.record(&seen, response.status().as_u16(), true);
            return response;
        }
        None => {}
    }
    let response = forward(&shared, &seen).await;
    shared.record(&seen, response.status().as_u16(), false);
    response
}

/// Headers that belong to one connection, not to the request.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
    ]
    .contains(name)
}

async fn forward(shared: &Shared, seen: &Seen) -> Response {
    let sent = shared
        .client
        .request(
            seen.method.clone(),
            format!("{}{}", shared.target, seen.path),
        )
        .headers(end_to_end(&seen.headers))
        .body(seen.body.clone())
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answer.status();
    let headers = end_to_end(answer.headers());
    let body = match answer.bytes().await {
        Ok(body) => body,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A copy of `headers` without the hop-by-hop ones (the client recomputes the length).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_hop_by_hop(name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// The answer of a non-delay fault, in the protocol of the request.
fn canned(seen: &Seen, fault: Fault) -> Response {
    let (status, content_type, body) = match fault {
        Fault::Raw {
            status,
            content_type,
            body,
        } => (status, content_type, body),
        Fault::AwsError { status, code } => aws_error_body(seen, status, &code),
        Fault::Delay(_) => unreachable!("a delay is forwarded, not answered"),
    };
    let status = StatusCode::from_u16(status).expect("a valid injected status");
    let mut response = (status, body).into_response();
    let content_type =
        HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("text/plain"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response.headers_mut().insert(
        "x-amzn-requestid",
        HeaderValue::from_static("proxy-injected"),
    );
    response
}

fn aws_error_body(seen: &Seen, status: u16, code: &str) -> (u16, String, String) {
    let message = format!("injected by the test proxy ({status} {code})");
    if seen.uses_json_protocol() {
        let body = serde_json::json!({"__type": code, "message": message}).to_string();
        (status, "application/x-amz-json-1.0".to_string(), body)
    } else if seen.uses_query_protocol() {
        let body = format!(
            "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message>\
             </Error><RequestId>proxy-injected</RequestId></ErrorResponse>",
            if status >= 500 { "Receiver" } else { "Sender" }
        );
        (status, "text/xml".to_string(), body)
    } else {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>{message}</Message><RequestId>proxy-injected</RequestId></Error>"
        );
        (status, "application/xml".to_string(), body)
    }
}
