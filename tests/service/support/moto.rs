//! A moto server child process on a free loopback port: the AWS-protocol endpoint of the tests.
//!
//! One `Moto` per test is the simple rule (start ~1 s, state never shared between tests).
//! The child is killed when the `Moto` is dropped. Its output goes to
//! `target/moto-logs/moto-<pid>-<port>.log`, removed on a clean drop and kept when the test
//! panicked, so a failing test leaves moto's request log behind.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The account moto answers as; fixed so that AssumeRole does not switch accounts.
pub const ACCOUNT_ID: &str = "123456789012";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers HTTP.
    ///
    /// # Panics
    /// When moto_server is not installed (run `scripts/moto.sh install`) or does not become
    /// ready within 30 s.
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// As [`Moto::start`], with extra environment variables for the server
    /// (e.g. `("INITIAL_NO_AUTH_ACTION_COUNT", "0")`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let server = moto_server();
        let mut last_error = String::new();
        // The port is free when picked and taken by moto a moment later: another process may
        // win that race, so a failed start is retried on a new port.
        for _ in 0..START_ATTEMPTS {
            match Moto::spawn(&server, env) {
                Ok(moto) => return moto,
                Err(error) => last_error = error,
            }
        }
        panic!("moto did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    fn spawn(server: &Path, env: &[(&str, &str)]) -> Result<Moto, String> {
        let port = super::free_addr().port();
        let log = log_path(port);
        let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(server);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ACCOUNT_ID", ACCOUNT_ID)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", server.display()))?;
        let mut moto = Moto { child, port, log };
        moto.wait_ready()?;
        Ok(moto)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto exited with {status}: {}", self.log_tail()));
            }
            if http(self.port, "GET", "/moto-api/", "").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto not ready after {READY_TIMEOUT:?}: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Clears all of moto's state (buckets, queues, topics, ...), ~20 ms.
    pub fn reset(&self) {
        self.post("/moto-api/reset", "");
    }

    /// Turns on moto's IAM/STS authorization from the next request on: from then on a wrong
    /// external ID in AssumeRole is AccessDenied (403, with a code the SDK cannot parse).
    pub fn enable_auth(&self) {
        self.post("/moto-api/reset-auth", "0");
    }

    /// Where the server's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn post(&self, path: &str, body: &str) {
        match http(self.port, "POST", path, body) {
            Ok(200) => {}
            Ok(status) => panic!("moto answered {status} to POST {path}"),
            Err(error) => panic!("POST {path} to moto failed: {error}"),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        format!("log {}: {}", self.log.display(), &text[start..])
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// `CTC_MOTO_SERVER`, else the venv `scripts/moto.sh install` makes.
fn moto_server() -> PathBuf {
    let path = std::env::var_os("CTC_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/moto_server")
        });
    assert!(
        path.is_file(),
        "moto_server not found at {}: run scripts/moto.sh install (or set CTC_MOTO_SERVER)",
        path.display()
    );
    path
}

fn log_path(port: u16) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-logs");
    std::fs::create_dir_all(&dir).expect("target/moto-logs can be created");
    dir.join(format!("moto-{}-{port}.log", std::process::id()))
}

/// A minimal blocking HTTP/1.0 request to moto's control API: the status code.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:.200}")))
}
