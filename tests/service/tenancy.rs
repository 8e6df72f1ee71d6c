//! Tenancy: keys sealed by default. `run` refuses to start without a data key unless the
//! operator deliberately allows keys in clear.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::Stack;

/// The data key every service test's daemon seals keys with (`Stack::env`).
pub const DATA_KEY: &str = "dGVuYW5jeS10ZXN0cy1kYXRhLWtleS0zMi1ieXRlcyE=";

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn binary(args: &[&str], env: &HashMap<String, String>, log: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudtrail-changes"));
    command
        .args(args)
        .env_clear()
        .envs(env)
        .envs([
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("CTC__LOG__FORMAT", "text"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("the log file"));
    command
}

/// `run` (or `serve-api`) without a data key: it exits at once, naming both settings.
async fn refused(stack: &Stack, command: &str) -> String {
    let mut env = stack.env(&[]);
    env.remove("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY");
    let log = stack.dir.join(format!("{command}-refused.log"));
    let mut child = binary(&[command], &env, &log).spawn().expect("starts");
    // A refusal is immediate; a daemon that is still up after 30 s has started (a guard
    // against hanging, not a measurement).
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(
        status.is_some_and(|s| !s.success()),
        "{command} started without a key: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_serve_api_refuse_to_start_without_an_encryption_key() {
    let stack = Stack::new("sealed-default", 3, None).await;
    for command in ["run", "serve-api"] {
        let text = refused(&stack, command).await;
        for named in [
            "subscriptions.encryption_key",
            "subscriptions.allow_plaintext_keys",
            "openssl rand -base64 32",
        ] {
            assert!(text.contains(named), "{command}: {named} in {text}");
        }
    }
    assert!(
        !stack.dir.join("subscriptions.db").exists(),
        "nothing was written before the refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_allow_plaintext_keys_run_starts_and_warns() {
    let stack = Stack::new("plaintext-allowed", 3, None).await;
    let (api, ops) = (free_addr(), free_addr());
    let (api_text, ops_text) = (api.to_string(), ops.to_string());
    let mut env = stack.env(&[
        ("CTC__SUBSCRIPTIONS__ALLOW_PLAINTEXT_KEYS", "true"),
        ("CTC__API__LISTEN", &api_text),
        ("CTC__ADMIN__LISTEN", &ops_text),
    ]);
    env.remove("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY");
    let log = stack.dir.join("plaintext.log");
    let mut child = binary(&["run"], &env, &log).spawn().expect("starts");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(api).await.is_err() {
        let exited = child.try_wait().expect("try_wait");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(exited.is_none(), "run exited ({exited:?}): {text}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run never listened: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("the log");
    let warning = text
        .lines()
        .find(|l| l.contains("allow_plaintext_keys"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(
        warning.contains("WARN") && warning.contains("stored in clear"),
        "{warning}"
    );
}
