use super::*;
use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, Method, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant as StdInstant;
use tokio::task::JoinSet;

// ---- pure parts ----

#[test]
fn backoff_doubles_from_250_ms_and_is_capped_at_30_s() {
    assert_eq!(backoff(1, 1.0), Duration::from_millis(250));
    assert_eq!(backoff(2, 1.0), Duration::from_millis(500));
    assert_eq!(backoff(3, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(8, 1.0), Duration::from_secs(30));
    assert_eq!(backoff(u32::MAX, 1.0), Duration::from_secs(30));
}

#[test]
fn backoff_is_full_jitter_over_the_ceiling() {
    assert_eq!(backoff(3, 0.5), Duration::from_millis(500));
    assert_eq!(backoff(3, 0.0), Duration::ZERO);
    assert_eq!(backoff(0, 1.0), Duration::from_millis(250));
    assert_eq!(backoff(3, 7.0), Duration::from_secs(1));
    assert_eq!(backoff(3, -1.0), Duration::ZERO);
    assert_eq!(backoff(3, f64::NAN), Duration::ZERO);
}

#[test]
fn retry_after_in_delta_seconds() {
    let now = SystemTime::now();
    assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
    assert_eq!(
        parse_retry_after(" 120 ", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(Duration::from_secs(u64::MAX))
    );
}

#[test]
fn retry_after_as_an_imf_fixdate_counts_from_now() {
    // The example of RFC 9110, 784111777 in Unix seconds.
    let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
    let value = "Sun, 06 Nov 1994 08:49:37 GMT";
    assert_eq!(
        parse_retry_after(value, at - Duration::from_secs(30)),
        Some(Duration::from_secs(30))
    );
    assert_eq!(parse_retry_after(value, at), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after(value, at + Duration::from_secs(5)),
        Some(Duration::ZERO)
    );
    let leap = "Thu, 29 Feb 2024 00:00:00 GMT";
    assert_eq!(
        parse_retry_after(leap, UNIX_EPOCH),
        Some(Duration::from_secs(1_709_164_800))
    );
    let new_year = "Wed, 01 Jan 2025 00:00:00 GMT";
    assert_eq!(
        parse_retry_after(new_year, UNIX_EPOCH),
        Some(Duration::from_secs(1_735_689_600))
    );
}

#[test]
fn retry_after_rejects_anything_else() {
    let now = SystemTime::now();
    for value in [
        "",
        "-1",
        "1.5",
        "soon",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 November 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        assert_eq!(parse_retry_after(value, now), None, "{value:?}");
    }
}

#[test]
fn quota_allows_a_tenth_of_the_rate_as_burst_then_paces_evenly() {
    use governor::clock::FakeRelativeClock;
    let clock = FakeRelativeClock::default();
    let Some(q) = quota(600) else {
        panic!("600 per minute is a quota")
    };
    let limiter = governor::RateLimiter::hashmap_with_clock(q, clock.clone());
    for _ in 0..60 {
        assert!(limiter.check_key(&"a").is_ok());
    }
    let Err(not_until) = limiter.check_key(&"a") else {
        panic!("the burst is 60")
    };
    assert_eq!(
        not_until.wait_time_from(clock.now()),
        Duration::from_millis(100)
    );
    assert!(
        limiter.check_key(&"b").is_ok(),
        "keys have their own bucket"
    );
    clock.advance(Duration::from_millis(100));
    assert!(limiter.check_key(&"a").is_ok());
    assert!(limiter.check_key(&"a").is_err());
}

#[test]
fn quota_is_off_at_zero_and_bursts_at_least_one() {
    assert!(quota(0).is_none());
    let Some(q) = quota(5) else {
        panic!("5 per minute is a quota")
    };
    assert_eq!(q.burst_size().get(), 1);
    assert_eq!(q.replenish_interval(), Duration::from_secs(12));
}

#[test]
fn settings_default_to_the_documented_values_and_refuse_unknown_keys() {
    let defaults = BigPandaSettings::default();
    assert_eq!(defaults.mode, SinkMode::Http);
    assert_eq!(defaults.base_url, "https://api.bigpanda.io");
    assert_eq!(defaults.rate_per_minute, 400);
    assert_eq!(defaults.max_concurrency_per_key, 4);
    assert_eq!(defaults.request_timeout_seconds, 10);
    assert_eq!(defaults.max_consecutive_rejections, 20);
    let json = r#"{"mode":"stdout","base_url":"https://eu-api.bigpanda.io","rate_per_minute":0,
        "max_concurrency_per_key":1,"request_timeout_seconds":3,"max_consecutive_rejections":0}"#;
    let parsed: BigPandaSettings = serde_json::from_str(json).unwrap();
    assert_eq!(parsed.mode, SinkMode::Stdout);
    let unknown = json.replace("\"mode\"", "\"modus\"");
    assert!(serde_json::from_str::<BigPandaSettings>(&unknown).is_err());
}

#[test]
fn bad_settings_do_not_build() {
    let bad_url = BigPandaSettings {
        base_url: "not a url".into(),
        ..BigPandaSettings::default()
    };
    assert!(matches!(
        Forwarder::new(&bad_url),
        Err(BuildError::BaseUrl { .. })
    ));
    let ftp = BigPandaSettings {
        base_url: "ftp://example.com".into(),
        ..BigPandaSettings::default()
    };
    assert!(matches!(
        Forwarder::new(&ftp),
        Err(BuildError::BaseUrl { .. })
    ));
    let no_slots = BigPandaSettings {
        max_concurrency_per_key: 0,
        ..BigPandaSettings::default()
    };
    let err = Forwarder::new(&no_slots).unwrap_err();
    assert!(err.to_string().contains("max_concurrency_per_key"));
}

#[test]
fn the_changes_url_ignores_a_trailing_slash() {
    let url = changes_url("https://eu-api.bigpanda.io/").unwrap();
    assert_eq!(url.as_str(), "https://eu-api.bigpanda.io/data/changes");
}

#[test]
fn debug_output_never_shows_keys() {
    let keys = keys("api-secret-123", "app-secret-456");
    let printed = format!("{keys:?}");
    assert!(!printed.contains("secret"), "{printed}");
    let forwarder = Forwarder::new(&BigPandaSettings::default()).unwrap();
    let printed = format!("{forwarder:?}");
    assert!(printed.contains("api.bigpanda.io"), "{printed}");
}

// ---- the BigPanda stand-in ----

#[derive(Clone, Default)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
    /// Wait for a permit of the stand-in's gate before answering.
    gated: bool,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        ..Reply::default()
    }
}

struct Seen {
    at: StdInstant,
    method: Method,
    path: String,
    headers: AxumHeaders,
    body: Bytes,
    api_key: String,
}

struct Stand {
    /// Replies per API key, in order; then `204`.
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    /// Replies per API key once its script is used up.
    fallback: Mutex<HashMap<String, Reply>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: Mutex<HashMap<String, usize>>,
    max_in_flight: Mutex<HashMap<String, usize>>,
    gate: tokio::sync::Semaphore,
}

impl Default for Stand {
    fn default() -> Self {
        Stand {
            script: Mutex::default(),
            fallback: Mutex::default(),
            seen: Mutex::default(),
            in_flight: Mutex::default(),
            max_in_flight: Mutex::default(),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Stand {
    fn script(&self, api_key: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .unwrap()
            .insert(api_key.into(), replies.into());
    }

    fn always(&self, api_key: &str, reply: Reply) {
        self.fallback.lock().unwrap().insert(api_key.into(), reply);
    }

    fn count(&self, api_key: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.api_key == api_key).count()
    }

    fn arrivals(&self, api_key: &str) -> Vec<StdInstant> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.api_key == api_key)
            .map(|s| s.at)
            .collect()
    }

    fn max_in_flight(&self, api_key: &str) -> usize {
        let max = self.max_in_flight.lock().unwrap();
        max.get(api_key).copied().unwrap_or(0)
    }

    fn next_reply(&self, api_key: &str) -> Reply {
        let scripted = self
            .script
            .lock()
            .unwrap()
            .get_mut(api_key)
            .and_then(VecDeque::pop_front);
        let fallback = || self.fallback.lock().unwrap().get(api_key).cloned();
        scripted.or_else(fallback).unwrap_or_else(|| reply(204))
    }

    fn enter(&self, api_key: &str, delta: isize) {
        let mut in_flight = self.in_flight.lock().unwrap();
        let now = in_flight.entry(api_key.into()).or_default();
        *now = now.saturating_add_signed(delta);
        let mut max = self.max_in_flight.lock().unwrap();
        let max = max.entry(api_key.into()).or_default();
        *max = (*max).max(*now);
    }
}

async fn answer(
    State(stand): State<Arc<Stand>>,
    method: Method,
    uri: Uri,
    headers: AxumHeaders,
    body: Bytes,
) -> Response {
    let api_key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let reply = stand.next_reply(&api_key);
    stand.enter(&api_key, 1);
    stand.seen.lock().unwrap().push(Seen {
        at: StdInstant::now(),
        method,
        path: uri.path().to_owned(),
        headers,
        body,
        api_key: api_key.clone(),
    });
    if reply.gated {
        stand.gate.acquire().await.unwrap().forget();
    }
    tokio::time::sleep(reply.delay).await;
    stand.enter(&api_key, -1);
    let mut response = (AxumStatus::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

async fn stand_in() -> (Arc<Stand>, SocketAddr) {
    let stand = Arc::new(Stand::default());
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(Arc::clone(&stand));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stand, addr)
}

fn forwarder(addr: SocketAddr, tune: impl FnOnce(&mut BigPandaSettings)) -> Forwarder {
    let mut settings = BigPandaSettings {
        base_url: format!("http://{addr}/"),
        rate_per_minute: 0,
        ..BigPandaSettings::default()
    };
    tune(&mut settings);
    Forwarder::new(&settings).unwrap()
}

fn keys(api_key: &str, app_key: &str) -> Keys {
    Keys {
        api_key: SecretString::from(api_key),
        app_key: SecretString::from(app_key),
    }
}

const BODY: &str = r#"{"identifier":"ev-1","status":"Done"}"#;

fn in_secs(seconds: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(seconds)
}

async fn send_one(
    forwarder: &Forwarder,
    api_key: &str,
    deadline: Instant,
) -> Result<Delivery, ForwardError> {
    let stop = CancellationToken::new();
    forwarder
        .send(
            &keys(api_key, "app-1"),
            "ev-1",
            Bytes::from(BODY),
            deadline,
            &stop,
        )
        .await
}

// ---- delivery over HTTP ----

#[tokio::test]
async fn a_2xx_is_accepted_and_the_request_carries_the_keys_and_the_body() {
    let (stand, addr) = stand_in().await;
    stand.script("api-1", vec![reply(204), reply(200), reply(201)]);
    let forwarder = forwarder(addr, |_| {});
    for _ in 0..3 {
        let delivery = send_one(&forwarder, "api-1", in_secs(5.0)).await.unwrap();
        assert_eq!(delivery, Delivery::Accepted);
    }
    let seen = stand.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let first = &seen[0];
    assert_eq!(first.method, Method::POST);
    assert_eq!(first.path, "/data/changes");
    assert_eq!(first.headers["authorization"], "Bearer api-1");
    assert_eq!(first.headers["x-bp-app-key"], "app-1");
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.body, BODY.as_bytes());
}

fn json_error(status: u16, error: &str) -> Reply {
    Reply {
        headers: vec![("content-type", "application/json".into())],
        body: serde_json::json!({"status": "error", "error": error}).to_string(),
        ..reply(status)
    }
}

#[tokio::test]
async fn a_400_or_409_with_bigpandas_json_rejects_the_change_with_its_error() {
    let (stand, addr) = stand_in().await;
    stand.script(
        "api-1",
        vec![json_error(400, "bad change"), json_error(409, "conflict")],
    );
    let forwarder = forwarder(addr, |_| {});
    let first = send_one(&forwarder, "api-1", in_secs(5.0)).await.unwrap();
    assert_eq!(
        first,
        Delivery::Rejected {
            status: 400,
            error: "bad change".into()
        }
    );
    let second = send_one(&forwarder, "api-1", in_secs(5.0)).await.unwrap();
    assert!(matches!(second, Delivery::Rejected { status: 409, .. }));
    assert_eq!(stand.count("api-1"), 2, "rejections are not retried");
}

#[tokio::test]
async fn a_404_or_a_400_that_is_not_bigpandas_json_is_the_endpoint_not_a_rejection() {
    let (stand, addr) = stand_in().await;
    let html = Reply {
        headers: vec![("content-type", "text/html".into())],
        body: "<html><body><h1>404 Not Found</h1></body></html>".into(),
        ..reply(404)
    };
    stand.script(
        "api-1",
        vec![
            html,
            json_error(404, "Not Found"),
            Reply {
                body: "bad request".into(),
                ..reply(400)
            },
            reply(409),
        ],
    );
    let forwarder = forwarder(addr, |_| {});
    for expected in [
        "HTTP 404, text/html: <html>",
        "HTTP 404, application/json",
        "HTTP 400, text/plain",
        "HTTP 409, text/plain; charset=utf-8, empty body",
    ] {
        let Err(ForwardError::Endpoint { url, answer, .. }) =
            send_one(&forwarder, "api-1", in_secs(5.0)).await
        else {
            panic!("{expected}: not the endpoint")
        };
        assert_eq!(url, format!("http://{addr}/data/changes"));
        assert!(answer.starts_with(expected), "{answer}");
    }
    assert_eq!(
        stand.count("api-1"),
        4,
        "an endpoint error is not retried per change"
    );
}

#[tokio::test]
async fn a_run_of_rejections_longer_than_the_maximum_is_the_endpoint_until_one_is_accepted() {
    let (stand, addr) = stand_in().await;
    let no = || json_error(400, "no");
    stand.script("api-1", vec![no(), no(), no(), reply(204), no()]);
    stand.script("api-2", vec![no()]);
    let forwarder = forwarder(addr, |s| s.max_consecutive_rejections = 2);
    for _ in 0..2 {
        let sent = send_one(&forwarder, "api-1", in_secs(5.0)).await;
        assert!(matches!(sent, Ok(Delivery::Rejected { .. })), "{sent:?}");
    }
    let third = send_one(&forwarder, "api-1", in_secs(5.0)).await;
    let Err(ForwardError::Endpoint { answer, .. }) = third else {
        panic!("the third rejection in a row is a configuration problem: {third:?}")
    };
    assert!(answer.contains("3 rejections in a row"), "{answer}");
    let other = send_one(&forwarder, "api-2", in_secs(5.0)).await;
    assert!(
        matches!(other, Ok(Delivery::Rejected { .. })),
        "keys have their own run"
    );
    let accepted = send_one(&forwarder, "api-1", in_secs(5.0)).await;
    assert_eq!(accepted.unwrap(), Delivery::Accepted);
    let after = send_one(&forwarder, "api-1", in_secs(5.0)).await;
    assert!(
        matches!(after, Ok(Delivery::Rejected { .. })),
        "an acceptance ends the run"
    );
}

#[tokio::test]
async fn a_401_or_403_is_unauthorized_without_a_retry() {
    let (stand, addr) = stand_in().await;
    stand.always("api-401", reply(401));
    stand.always("api-403", reply(403));
    let forwarder = forwarder(addr, |_| {});
    for (key, code) in [("api-401", 401), ("api-403", 403)] {
        let err = send_one(&forwarder, key, in_secs(5.0)).await.unwrap_err();
        assert!(
            matches!(&err, ForwardError::Unauthorized { status, identifier } if *status == code && identifier == "ev-1"),
            "{err}"
        );
        assert_eq!(stand.count(key), 1);
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_accepted() {
    let (stand, addr) = stand_in().await;
    stand.script("api-1", vec![reply(500), reply(500), reply(201)]);
    let forwarder = forwarder(addr, |_| {});
    let delivery = send_one(&forwarder, "api-1", in_secs(30.0)).await.unwrap();
    assert_eq!(delivery, Delivery::Accepted);
    assert_eq!(stand.count("api-1"), 3);
}

#[tokio::test]
async fn a_timed_out_request_is_retried() {
    let (stand, addr) = stand_in().await;
    let slow = Reply {
        delay: Duration::from_millis(1500),
        ..reply(204)
    };
    stand.script("api-1", vec![slow, reply(204)]);
    let forwarder = forwarder(addr, |s| s.request_timeout_seconds = 1);
    let delivery = send_one(&forwarder, "api-1", in_secs(30.0)).await.unwrap();
    assert_eq!(delivery, Delivery::Accepted);
    assert_eq!(stand.count("api-1"), 2);
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_then_succeeds() {
    let (stand, addr) = stand_in().await;
    let throttled = Reply {
        headers: vec![("retry-after", "1".into())],
        ..reply(429)
    };
    stand.script("api-1", vec![throttled, reply(204)]);
    let forwarder = forwarder(addr, |_| {});
    let delivery = send_one(&forwarder, "api-1", in_secs(30.0)).await.unwrap();
    assert_eq!(delivery, Delivery::Accepted);
    let arrivals = stand.arrivals("api-1");
    assert_eq!(arrivals.len(), 2);
    assert!(arrivals[1] - arrivals[0] >= Duration::from_millis(990));
}

#[tokio::test]
async fn retry_after_pauses_every_send_of_that_key_but_no_other_key() {
    let (stand, addr) = stand_in().await;
    let throttled = Reply {
        headers: vec![("retry-after", "1".into())],
        ..reply(429)
    };
    stand.script("api-a", vec![throttled]);
    let forwarder = forwarder(addr, |_| {});
    let first = tokio::spawn({
        let forwarder = forwarder.clone();
        async move { send_one(&forwarder, "api-a", in_secs(30.0)).await }
    });
    wait_for(|| stand.count("api-a") == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (second, other) = tokio::join!(
        send_one(&forwarder, "api-a", in_secs(30.0)),
        send_one(&forwarder, "api-b", in_secs(30.0)),
    );
    assert_eq!(second.unwrap(), Delivery::Accepted);
    assert_eq!(other.unwrap(), Delivery::Accepted);
    assert_eq!(first.await.unwrap().unwrap(), Delivery::Accepted);
    let a = stand.arrivals("api-a");
    let b = stand.arrivals("api-b");
    assert_eq!(a.len(), 3);
    assert!(a[1] - a[0] >= Duration::from_millis(990));
    assert!(a[2] - a[0] >= Duration::from_millis(990));
    assert!(b[0] < a[1], "the other key was not paused");
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_gives_up() {
    let (stand, addr) = stand_in().await;
    let throttled = Reply {
        headers: vec![("retry-after", "60".into())],
        ..reply(503)
    };
    stand.script("api-1", vec![throttled]);
    let forwarder = forwarder(addr, |_| {});
    let err = send_one(&forwarder, "api-1", in_secs(2.0))
        .await
        .unwrap_err();
    let ForwardError::GaveUp { attempts, last, .. } = &err else {
        panic!("expected GaveUp, got {err}")
    };
    assert_eq!(*attempts, 1);
    assert!(last.contains("503"), "{last}");
    assert_eq!(stand.count("api-1"), 1);
}

#[tokio::test]
async fn a_server_that_always_fails_is_given_up_at_the_deadline() {
    let (stand, addr) = stand_in().await;
    stand.always(
        "api-1",
        Reply {
            body: "down for maintenance".into(),
            ..reply(503)
        },
    );
    let forwarder = forwarder(addr, |_| {});
    let err = send_one(&forwarder, "api-1", in_secs(1.5))
        .await
        .unwrap_err();
    let ForwardError::GaveUp {
        identifier,
        attempts,
        last,
    } = &err
    else {
        panic!("expected GaveUp, got {err}")
    };
    assert_eq!(identifier, "ev-1");
    assert!(*attempts >= 2, "{attempts}");
    assert_eq!(*attempts as usize, stand.count("api-1"));
    assert!(
        last.contains("503") && last.contains("maintenance"),
        "{last}"
    );
    assert!(err.to_string().contains("ev-1"));
}

#[tokio::test]
async fn connection_errors_are_retried_until_the_deadline() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let forwarder = forwarder(closed, |_| {});
    let err = send_one(&forwarder, "api-1", in_secs(1.0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForwardError::GaveUp { attempts, .. } if attempts >= 1),
        "{err}"
    );
}

#[tokio::test]
async fn cancelling_stops_a_send_waiting_for_a_response() {
    let (stand, addr) = stand_in().await;
    stand.always(
        "api-1",
        Reply {
            delay: Duration::from_secs(30),
            ..reply(204)
        },
    );
    let forwarder = forwarder(addr, |_| {});
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let result = forwarder
        .send(
            &keys("api-1", "app-1"),
            "ev-1",
            Bytes::from(BODY),
            in_secs(60.0),
            &stop,
        )
        .await;
    assert!(
        matches!(result, Err(ForwardError::Stopped { ref identifier }) if identifier == "ev-1")
    );
}

#[tokio::test]
async fn cancelling_stops_a_send_paused_by_retry_after() {
    let (stand, addr) = stand_in().await;
    let throttled = Reply {
        headers: vec![("retry-after", "30".into())],
        ..reply(429)
    };
    stand.script("api-1", vec![throttled]);
    let forwarder = forwarder(addr, |_| {});
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    let watcher = Arc::clone(&stand);
    tokio::spawn(async move {
        wait_for(|| watcher.count("api-1") == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let result = forwarder
        .send(
            &keys("api-1", "app-1"),
            "ev-1",
            Bytes::from(BODY),
            in_secs(60.0),
            &stop,
        )
        .await;
    assert!(
        matches!(result, Err(ForwardError::Stopped { .. })),
        "{result:?}"
    );
    assert_eq!(stand.count("api-1"), 1);
}

#[tokio::test]
async fn sends_of_one_key_are_paced_by_its_token_bucket() {
    let (stand, addr) = stand_in().await;
    // 10 per second with a burst of 60: 65 sends need at least 5 more tokens, 500 ms.
    let forwarder = forwarder(addr, |s| {
        s.rate_per_minute = 600;
        s.max_concurrency_per_key = 100;
    });
    let started = StdInstant::now();
    let mut sends = JoinSet::new();
    for _ in 0..65 {
        let forwarder = forwarder.clone();
        sends.spawn(async move { send_one(&forwarder, "api-1", in_secs(30.0)).await });
    }
    while let Some(result) = sends.join_next().await {
        assert_eq!(result.unwrap().unwrap(), Delivery::Accepted);
    }
    assert_eq!(stand.count("api-1"), 65);
    // Governor's clock and ours may differ by a hair; no upper bound, the machine is shared.
    assert!(
        started.elapsed() >= Duration::from_millis(490),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn at_most_max_concurrency_per_key_requests_are_in_flight_and_other_keys_pass() {
    let (stand, addr) = stand_in().await;
    stand.always(
        "api-a",
        Reply {
            gated: true,
            ..reply(204)
        },
    );
    let forwarder = forwarder(addr, |s| s.max_concurrency_per_key = 2);
    let mut sends = JoinSet::new();
    for _ in 0..5 {
        let forwarder = forwarder.clone();
        sends.spawn(async move { send_one(&forwarder, "api-a", in_secs(30.0)).await });
    }
    wait_for(|| stand.count("api-a") == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stand.count("api-a"), 2, "a third request got through");
    // Key A has both its slots taken and its server is stuck: key B still goes through.
    let other = send_one(&forwarder, "api-b", in_secs(10.0)).await;
    assert_eq!(other.unwrap(), Delivery::Accepted);
    stand.gate.add_permits(5);
    while let Some(result) = sends.join_next().await {
        assert_eq!(result.unwrap().unwrap(), Delivery::Accepted);
    }
    assert_eq!(stand.count("api-a"), 5);
    assert_eq!(stand.max_in_flight("api-a"), 2);
}

#[tokio::test]
async fn debug_output_never_shows_keys_after_sending() {
    let (_stand, addr) = stand_in().await;
    let forwarder = forwarder(addr, |_| {});
    send_one(&forwarder, "api-secret-123", in_secs(5.0))
        .await
        .unwrap();
    let printed = format!("{forwarder:?}");
    assert!(!printed.contains("api-secret-123"), "{printed}");
    assert!(printed.contains("api_keys_seen: 1"), "{printed}");
}

/// Polls `done` until it holds (at most 10 s).
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the condition never held");
}

// ---- stdout mode ----

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn stdout_mode_prints_one_change_per_line_and_sends_nothing() {
    let captured = Captured::default();
    let forwarder = Forwarder {
        sink: Arc::new(Sink::Stdout(Mutex::new(Box::new(captured.clone())))),
    };
    let stop = CancellationToken::new();
    for (id, body) in [
        ("ev-1", r#"{"identifier":"ev-1"}"#),
        ("ev-2", r#"{"identifier":"ev-2"}"#),
    ] {
        let delivery = forwarder
            .send(
                &keys("api-1", "app-1"),
                id,
                Bytes::from(body),
                in_secs(1.0),
                &stop,
            )
            .await
            .unwrap();
        assert_eq!(delivery, Delivery::Accepted);
    }
    let printed = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        printed,
        "{\"identifier\":\"ev-1\"}\n{\"identifier\":\"ev-2\"}\n"
    );
}

#[test]
fn stdout_mode_builds_from_settings() {
    let settings = BigPandaSettings {
        mode: SinkMode::Stdout,
        base_url: "not even a url".into(),
        ..BigPandaSettings::default()
    };
    let forwarder = Forwarder::new(&settings).unwrap();
    assert!(format!("{forwarder:?}").contains("stdout"));
}

#[tokio::test]
async fn waiting_for_the_keys_turn_does_not_use_up_a_changes_patience() {
    let (stand, addr) = stand_in().await;
    stand.script(
        "api-1",
        vec![Reply {
            delay: Duration::from_millis(800),
            ..reply(204)
        }],
    );
    stand.always("api-1", reply(204));
    // One slot per key: the second change waits 800 ms for it, longer than its patience of
    // 300 ms, and is then sent and accepted.
    let forwarder = Arc::new(forwarder(addr, |s| s.max_concurrency_per_key = 1));
    let stop = CancellationToken::new();
    let first = {
        let (forwarder, stop) = (Arc::clone(&forwarder), stop.clone());
        tokio::spawn(async move {
            let keys = keys("api-1", "app-1");
            forwarder
                .send(&keys, "ev-1", Bytes::from(BODY), in_secs(5.0), &stop)
                .await
        })
    };
    wait_for(|| stand.count("api-1") == 1).await;
    let started = StdInstant::now();
    let second = forwarder
        .send(
            &keys("api-1", "app-1"),
            "ev-2",
            Bytes::from(BODY),
            in_secs(0.3),
            &stop,
        )
        .await;
    assert!(matches!(second, Ok(Delivery::Accepted)), "{second:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(matches!(first.await.unwrap(), Ok(Delivery::Accepted)));
    assert_eq!(stand.count("api-1"), 2);
}

#[tokio::test]
async fn a_429_is_pacing_and_uses_up_none_of_a_changes_patience() {
    let (stand, addr) = stand_in().await;
    let with_retry_after = Reply {
        headers: vec![("retry-after", "1".into())],
        ..reply(429)
    };
    stand.script("api-1", vec![reply(429), with_retry_after, reply(204)]);
    let forwarder = forwarder(addr, |_| {});
    // A patience of 0.5 s, far less than the pauses (2 s without Retry-After, then 1 s).
    let delivery = send_one(&forwarder, "api-1", in_secs(0.5)).await;
    assert_eq!(delivery.unwrap(), Delivery::Accepted);
    let arrivals = stand.arrivals("api-1");
    assert_eq!(arrivals.len(), 3);
    assert!(arrivals[1] - arrivals[0] >= THROTTLE_PAUSE - Duration::from_millis(10));
    assert!(arrivals[2] - arrivals[1] >= Duration::from_millis(990));
}
