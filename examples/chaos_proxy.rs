//! A TCP proxy that can make an endpoint go away, for `scripts/soak.sh`: the daemon talks to
//! the local AWS (moto) through it, and the soak "stops AWS" for a while without losing moto's
//! in-memory state.
//!
//!   cargo run --release --example chaos_proxy -- --upstream 127.0.0.1:5000 \
//!       [--port PORT] [--control-port PORT]
//!
//! The first stdout line is `listening ADDR control ADDR` (port 0, the default, picks free ones).
//! Control, over HTTP on the control port:
//!
//! - `POST /down?mode=refuse`     the endpoint is stopped: the listening socket is closed (new
//!   connections are refused) and every open connection is reset (RST)
//! - `POST /down?mode=blackhole`  the endpoint's host vanished: new connections are accepted and
//!   open ones kept, but nothing is relayed or answered any more; such connections stay silent
//!   even after `/up` (as a TCP connection to a host that lost its state does), until the
//!   client closes them
//! - `POST /up`                   relay again (re-binds the same port after `refuse`)
//! - `GET /stats`                 `{"mode":..,"connections":N,"active":N,"reset":N,"held":N,"outages":N}`
//!
//! Exits 0 on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    Refuse,
    Blackhole,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Refuse => "refuse",
            Self::Blackhole => "blackhole",
        }
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    active: AtomicU64,
    reset: AtomicU64,
    held: AtomicU64,
    outages: AtomicU64,
}

struct Active<'a>(&'a AtomicU64);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads and discards what the client sends, answering nothing, until it closes.
async fn hold(mut client: TcpStream, counters: &Counters) {
    counters.held.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

enum Ended {
    Closed,
    Outage(Mode),
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    counters.connections.fetch_add(1, Ordering::Relaxed);
    counters.active.fetch_add(1, Ordering::Relaxed);
    let _active = Active(&counters.active);
    let _ = client.set_nodelay(true);
    let current = *mode.borrow();
    match current {
        Mode::Up => {}
        Mode::Blackhole => return hold(client, &counters).await,
        Mode::Refuse => {
            // Accepted just before the listener closed.
            let _ = client.set_zero_linger();
            counters.reset.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    let mut server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(_) => {
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let ended = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => Ended::Closed,
        m = mode.wait_for(|m| *m != Mode::Up) => Ended::Outage(m.map_or(Mode::Refuse, |m| *m)),
    };
    match ended {
        Ended::Closed => {
            let _ = client.shutdown().await;
        }
        Ended::Outage(Mode::Blackhole) => {
            drop(server);
            hold(client, &counters).await;
        }
        Ended::Outage(_) => {
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
            counters.reset.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    let mut warned = false;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                if !warned {
                    eprintln!("chaos_proxy: cannot re-bind {addr} yet ({e}); retrying");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn accept_loop(
    first: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    let addr = first.local_addr().expect("a bound listener has an address");
    let mut listener = Some(first);
    let mut rx = mode.clone();
    loop {
        let current = *rx.borrow_and_update();
        if current == Mode::Refuse {
            listener = None;
            let _ = rx.changed().await;
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => listener.insert(bind(addr).await),
        };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(relay(stream, upstream, mode.clone(), Arc::clone(&counters)));
                }
            }
            _ = rx.changed() => {}
        }
    }
}

async fn control(
    stream: TcpStream,
    mode: &watch::Sender<Mode>,
    counters: &Counters,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).await?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (status, body) = match (method, target) {
        ("POST", "/down?mode=refuse" | "/down") => {
            counters.outages.fetch_add(1, Ordering::Relaxed);
            mode.send_replace(Mode::Refuse);
            ("200 OK", "{\"mode\":\"refuse\"}".to_owned())
        }
        ("POST", "/down?mode=blackhole") => {
            counters.outages.fetch_add(1, Ordering::Relaxed);
            mode.send_replace(Mode::Blackhole);
            ("200 OK", "{\"mode\":\"blackhole\"}".to_owned())
        }
        ("POST", "/up") => {
            mode.send_replace(Mode::Up);
            ("200 OK", "{\"mode\":\"up\"}".to_owned())
        }
        ("GET", "/stats") => (
            "200 OK",
            format!(
                "{{\"mode\":\"{}\",\"connections\":{},\"active\":{},\"reset\":{},\"held\":{},\"outages\":{}}}",
                mode.borrow().name(),
                counters.connections.load(Ordering::Relaxed),
                counters.active.load(Ordering::Relaxed),
                counters.reset.load(Ordering::Relaxed),
                counters.held.load(Ordering::Relaxed),
                counters.outages.load(Ordering::Relaxed),
            ),
        ),
        _ => ("404 Not Found", "{\"error\":\"no such control\"}".to_owned()),
    };
    let out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    reader.get_mut().write_all(out.as_bytes()).await?;
    reader.get_mut().shutdown().await
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> std::io::Result<()> {
    let Some(upstream) = arg("--upstream").and_then(|u| u.parse::<SocketAddr>().ok()) else {
        eprintln!("usage: chaos_proxy --upstream HOST:PORT [--port P] [--control-port P]");
        std::process::exit(2);
    };
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let control_port: u16 = arg("--control-port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let ctl = TcpListener::bind(("127.0.0.1", control_port)).await?;
        println!(
            "listening {} control {}",
            listener.local_addr()?,
            ctl.local_addr()?
        );
        std::io::Write::flush(&mut std::io::stdout())?;
        let (tx, rx) = watch::channel(Mode::Up);
        let counters = Arc::new(Counters::default());
        tokio::spawn(accept_loop(listener, upstream, rx, Arc::clone(&counters)));
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        loop {
            tokio::select! {
                accepted = ctl.accept() => {
                    if let Ok((stream, _)) = accepted {
                        if let Err(e) = control(stream, &tx, &counters).await {
                            eprintln!("chaos_proxy: control: {e}");
                        }
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        Ok(())
    })
}
