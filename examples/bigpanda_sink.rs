//! A tiny, fast stand-in for BigPanda's Changes API, for `scripts/bench-daemon.sh`.
//!
//!   cargo run --release --example bigpanda_sink -- [--port PORT] [--out FILE]
//!
//! Answers 204 to every `POST /data/changes` and records, per request, the arrival time (unix
//! nanoseconds), the change's `identifier` and its `metadata.key`. Port: `--port` or
//! `SINK_PORT` (0, the default, picks a free one); the first stdout line is `listening ADDR`.
//!
//! - `GET /stats`     `{"count":N,"first_ns":..,"last_ns":..}`
//! - `GET /arrivals`  the arrivals as CSV: `arrival_ns,identifier,key`
//! - `POST /reset`    forgets every arrival
//! - `POST /dump`     writes the CSV to `--out FILE` (or `SINK_OUT`)
//!
//! On SIGTERM or SIGINT it writes the CSV to the `--out` file, if any, and exits 0.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct Sink {
    arrivals: Mutex<Vec<Arrival>>,
    out: Option<PathBuf>,
}

struct Arrival {
    ns: u128,
    identifier: String,
    key: String,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    key: String,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn lock(sink: &Sink) -> std::sync::MutexGuard<'_, Vec<Arrival>> {
    sink.arrivals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn change(State(sink): State<Arc<Sink>>, body: Bytes) -> StatusCode {
    let ns = now_ns();
    let (identifier, key) = match serde_json::from_slice::<Change>(&body) {
        Ok(c) => (c.identifier, c.metadata.map(|m| m.key).unwrap_or_default()),
        Err(_) => (String::new(), String::new()),
    };
    lock(&sink).push(Arrival {
        ns,
        identifier,
        key,
    });
    StatusCode::NO_CONTENT
}

async fn stats(State(sink): State<Arc<Sink>>) -> impl IntoResponse {
    let a = lock(&sink);
    let first = a.iter().map(|x| x.ns).min().unwrap_or(0);
    let last = a.iter().map(|x| x.ns).max().unwrap_or(0);
    (
        [("content-type", "application/json")],
        format!(
            "{{\"count\":{},\"first_ns\":{first},\"last_ns\":{last}}}",
            a.len()
        ),
    )
}

fn csv(sink: &Sink) -> String {
    let a = lock(sink);
    let mut s = String::with_capacity(a.len() * 120 + 32);
    s.push_str("arrival_ns,identifier,key\n");
    for x in a.iter() {
        // Identifiers and keys never hold commas or newlines in the benchmark's corpus.
        let _ = writeln!(s, "{},{},{}", x.ns, x.identifier, x.key);
    }
    s
}

async fn arrivals(State(sink): State<Arc<Sink>>) -> impl IntoResponse {
    ([("content-type", "text/csv")], csv(&sink))
}

async fn reset(State(sink): State<Arc<Sink>>) -> StatusCode {
    lock(&sink).clear();
    StatusCode::NO_CONTENT
}

fn dump_to_file(sink: &Sink) -> std::io::Result<usize> {
    let Some(path) = &sink.out else {
        return Ok(0);
    };
    let text = csv(sink);
    std::fs::write(path, &text)?;
    Ok(text.lines().count().saturating_sub(1))
}

async fn dump(State(sink): State<Arc<Sink>>) -> impl IntoResponse {
    match dump_to_file(&sink) {
        Ok(n) => (StatusCode::OK, format!("{n}\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn arg(name: &str, env: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

fn main() -> std::io::Result<()> {
    let port: u16 = arg("--port", "SINK_PORT")
        .map(|p| p.parse().expect("--port: a port number"))
        .unwrap_or(0);
    let sink = Arc::new(Sink {
        arrivals: Mutex::new(Vec::with_capacity(1 << 16)),
        out: arg("--out", "SINK_OUT").map(PathBuf::from),
    });
    // One thread: the sink must cost the machine (shared with moto and the daemon) little.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = Router::new()
            .route("/data/changes", post(change))
            .route("/stats", get(stats))
            .route("/arrivals", get(arrivals))
            .route("/reset", post(reset))
            .route("/dump", post(dump))
            .with_state(Arc::clone(&sink));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening {}", listener.local_addr()?);
        use std::io::Write as _;
        std::io::stdout().flush()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        let n = dump_to_file(&sink)?;
        if sink.out.is_some() {
            eprintln!("bigpanda_sink: wrote {n} arrivals");
        }
        Ok(())
    })
}
