//! A fault-injecting stand-in for BigPanda's Changes API, for `scripts/soak.sh`.
//!
//!   cargo run --release --example soak_standin -- --out FILE [--port PORT]
//!
//! A hand-written HTTP/1.1 server (keep-alive, `Content-Length` bodies), so that it can fail the
//! way a real API and a real network do, not only with tidy status codes. Every
//! `POST /data/changes` it accepts (answers 201) is appended to `--out` as one JSON line
//! `{"t":<arrival unix ns>,"body":<the request body as sent>}` (flushed per line, so a reader
//! sees it at once and nothing is lost if the stand-in is killed). Requests it fails are not
//! recorded: a change the daemon must send again counts as missing until it does.
//!
//! Faults, set over HTTP on the same port (never themselves faulted):
//!
//! - `POST /_ctl/fault?kind=K&seconds=S[&p=P][&hang=H]`  for S seconds, a fraction P (default
//!   1.0) of change requests get fault K, then it reverts to answering normally by itself:
//!   - `500`     500 Internal Server Error with a JSON body
//!   - `503`     503 Service Unavailable with `Retry-After: 1`
//!   - `429`     429 Too Many Requests with `Retry-After: 2`
//!   - `429bare` 429 without `Retry-After`
//!   - `hang`    read the request, answer nothing for H seconds (default 5; longer than the
//!     daemon's request timeout), then close the connection
//!   - `reset`   read the request, then reset the connection (RST: SO_LINGER 0) unanswered
//!   - `close`   read the request, then close the connection (FIN) unanswered
//!   - `slow`    answer 201 after H seconds (default 1; shorter than the timeout): recorded
//! - `POST /_ctl/ok`      back to normal now
//! - `GET /_ctl/stats`    `{"accepted":N,"requests":N,"faults":{"500":N,...},"mode":"..."}`
//!
//! Port: `--port` (0, the default, picks a free one); the first stdout line is `listening ADDR`.
//! Exits 0 on SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head or body read; anything bigger is answered 413 and the connection closed.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    E500,
    E503,
    E429,
    E429Bare,
    Hang,
    Reset,
    Close,
    Slow,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "500" => Self::E500,
            "503" => Self::E503,
            "429" => Self::E429,
            "429bare" => Self::E429Bare,
            "hang" => Self::Hang,
            "reset" => Self::Reset,
            "close" => Self::Close,
            "slow" => Self::Slow,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::E500 => "500",
            Self::E503 => "503",
            Self::E429 => "429",
            Self::E429Bare => "429bare",
            Self::Hang => "hang",
            Self::Reset => "reset",
            Self::Close => "close",
            Self::Slow => "slow",
        }
    }
}

#[derive(Clone, Copy)]
struct Fault {
    kind: Kind,
    until: Instant,
    fraction: f64,
    hold: Duration,
}

struct State {
    out: Mutex<File>,
    fault: Mutex<Option<Fault>>,
    counts: Mutex<BTreeMap<Kind, u64>>,
    accepted: AtomicU64,
    requests: AtomicU64,
    /// A cheap deterministic sequence for the fraction `p` (no RNG dependency needed).
    tick: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl State {
    /// The fault this change request gets, if any (and counts it).
    fn pick(&self) -> Option<Fault> {
        let mut slot = lock(&self.fault);
        let fault = (*slot)?;
        if Instant::now() >= fault.until {
            *slot = None;
            return None;
        }
        drop(slot);
        // Golden-ratio sequence in [0, 1): an even spread of the chosen fraction.
        let n = self.tick.fetch_add(1, Ordering::Relaxed);
        let x = (n as f64 * 0.618_033_988_749_895).fract();
        if x >= fault.fraction {
            return None;
        }
        *lock(&self.counts).entry(fault.kind).or_insert(0) += 1;
        Some(fault)
    }

    fn record(&self, body: &[u8]) {
        let mut line = Vec::with_capacity(body.len() + 48);
        let valid =
            serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() && !body.contains(&b'\n');
        let _ = write!(line, "{{\"t\":{},\"body\":", now_ns());
        if valid {
            line.extend_from_slice(body);
        } else {
            // Not JSON: kept as a string so the file stays one JSON document per line.
            let text = String::from_utf8_lossy(body);
            line.extend_from_slice(
                serde_json::to_string(&text.as_ref())
                    .unwrap_or_default()
                    .as_bytes(),
            );
            line.extend_from_slice(b",\"invalid\":true");
        }
        line.extend_from_slice(b"}\n");
        let mut out = lock(&self.out);
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            eprintln!("soak_standin: cannot write the record file: {e}");
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> String {
        let faults: BTreeMap<&str, u64> = lock(&self.counts)
            .iter()
            .map(|(k, v)| (k.name(), *v))
            .collect();
        let mode = lock(&self.fault)
            .filter(|f| Instant::now() < f.until)
            .map_or("ok", |f| f.kind.name());
        serde_json::json!({
            "accepted": self.accepted.load(Ordering::Relaxed),
            "requests": self.requests.load(Ordering::Relaxed),
            "faults": faults,
            "mode": mode,
        })
        .to_string()
    }
}

struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Reads one request; `Ok(None)` when the client closed the connection between requests.
async fn read_request(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<Result<Request, &'static str>>> {
    let mut head = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(if head.is_empty() {
                None
            } else {
                Some(Err("connection closed inside the request head"))
            });
        }
        if head.is_empty() && (line == b"\r\n" || line == b"\n") {
            continue; // stray blank lines between requests
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD {
            return Ok(Some(Err("request head too large")));
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let version = first.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut keep_alive = version != "HTTP/1.0";
    for h in lines {
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => match value.parse() {
                Ok(n) => length = n,
                Err(_) => return Ok(Some(Err("bad content-length"))),
            },
            "transfer-encoding" => return Ok(Some(Err("chunked bodies are not supported"))),
            "connection" if value.eq_ignore_ascii_case("close") => keep_alive = false,
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Ok(Some(Err("body too large")));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(Ok(Request {
        method,
        target,
        body,
        keep_alive,
    })))
}

fn response(status: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn query(target: &str) -> BTreeMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn control(state: &State, req: &Request) -> Vec<u8> {
    let path = req.target.split('?').next().unwrap_or_default();
    match (req.method.as_str(), path) {
        ("GET", "/_ctl/stats") => response("200 OK", "", &state.stats()),
        ("POST", "/_ctl/ok") => {
            *lock(&state.fault) = None;
            response("200 OK", "", "{\"mode\":\"ok\"}")
        }
        ("POST", "/_ctl/fault") => {
            let q = query(&req.target);
            let kind = q.get("kind").and_then(|k| Kind::parse(k));
            let seconds: Option<f64> = q.get("seconds").and_then(|s| s.parse().ok());
            let fraction: f64 = q.get("p").and_then(|s| s.parse().ok()).unwrap_or(1.0);
            let default_hold = if kind == Some(Kind::Slow) { 1.0 } else { 5.0 };
            let hold: f64 = q
                .get("hang")
                .and_then(|s| s.parse().ok())
                .unwrap_or(default_hold);
            match (kind, seconds) {
                (Some(kind), Some(seconds)) if seconds > 0.0 && hold >= 0.0 => {
                    *lock(&state.fault) = Some(Fault {
                        kind,
                        until: Instant::now() + Duration::from_secs_f64(seconds),
                        fraction: fraction.clamp(0.0, 1.0),
                        hold: Duration::from_secs_f64(hold),
                    });
                    response("200 OK", "", &format!("{{\"mode\":\"{}\"}}", kind.name()))
                }
                _ => response(
                    "400 Bad Request",
                    "",
                    "{\"error\":\"kind=500|503|429|429bare|hang|reset|close|slow&seconds=S required\"}",
                ),
            }
        }
        _ => response("404 Not Found", "", "{\"error\":\"no such control\"}"),
    }
}

fn accepted(state: &State, body: &[u8]) -> Vec<u8> {
    state.record(body);
    response("201 Created", "", "{\"status\":\"created\"}")
}

/// Handles one connection; returns when it is closed (by either side or by a fault).
async fn serve(state: Arc<State>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    loop {
        let req = match read_request(&mut reader).await {
            Ok(Some(Ok(req))) => req,
            Ok(Some(Err(why))) => {
                let body = format!("{{\"error\":\"{why}\"}}");
                let out = response("400 Bad Request", "connection: close\r\n", &body);
                let _ = reader.get_mut().write_all(&out).await;
                return;
            }
            Ok(None) | Err(_) => return,
        };
        let out = if req.target.starts_with("/_ctl/") {
            control(&state, &req)
        } else if req.method == "POST" && req.target.split('?').next() == Some("/data/changes") {
            state.requests.fetch_add(1, Ordering::Relaxed);
            match state.pick() {
                None => accepted(&state, &req.body),
                Some(fault) => match fault.kind {
                    Kind::E500 => response(
                        "500 Internal Server Error",
                        "",
                        "{\"error\":\"injected internal error\"}",
                    ),
                    Kind::E503 => response(
                        "503 Service Unavailable",
                        "retry-after: 1\r\n",
                        "{\"error\":\"injected unavailable\"}",
                    ),
                    Kind::E429 => response(
                        "429 Too Many Requests",
                        "retry-after: 2\r\n",
                        "{\"error\":\"injected rate limit\"}",
                    ),
                    Kind::E429Bare => response(
                        "429 Too Many Requests",
                        "",
                        "{\"error\":\"injected rate limit, no Retry-After\"}",
                    ),
                    Kind::Slow => {
                        tokio::time::sleep(fault.hold).await;
                        accepted(&state, &req.body)
                    }
                    Kind::Hang => {
                        // Unanswered past the client's timeout; the client may give up first
                        // (then the read below sees EOF and the wait ends early).
                        let mut sink = [0u8; 1024];
                        let _ = tokio::time::timeout(fault.hold, async {
                            loop {
                                match reader.read(&mut sink).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(_) => {}
                                }
                            }
                        })
                        .await;
                        return;
                    }
                    Kind::Reset => {
                        let _ = reader.get_ref().set_zero_linger();
                        return;
                    }
                    Kind::Close => {
                        let _ = reader.get_mut().shutdown().await;
                        return;
                    }
                },
            }
        } else {
            response("404 Not Found", "", "{\"error\":\"not found\"}")
        };
        if reader.get_mut().write_all(&out).await.is_err() || !req.keep_alive {
            return;
        }
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> std::io::Result<()> {
    let port: u16 = arg("--port")
        .map(|p| p.parse().expect("--port: a port number"))
        .unwrap_or(0);
    let Some(out) = arg("--out") else {
        eprintln!("usage: soak_standin --out FILE [--port PORT]");
        std::process::exit(2);
    };
    let file = OpenOptions::new().create(true).append(true).open(&out)?;
    let state = Arc::new(State {
        out: Mutex::new(file),
        fault: Mutex::new(None),
        counts: Mutex::new(BTreeMap::new()),
        accepted: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        tick: AtomicU64::new(0),
    });
    // One thread: the machine is shared with moto and the daemon.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(Arc::clone(&state), stream));
                    }
                    Err(e) => {
                        eprintln!("soak_standin: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        eprintln!("soak_standin: {}", state.stats());
        Ok(())
    })
}
