//! The sink that delivers changes: one `POST /data/changes` per change to the BigPanda Changes
//! API (or one JSON line on stdout in dry-run mode), paced per API key, retried with backoff
//! until the caller's deadline.
//!
//! Every send ends in one fate: accepted (any 2xx), rejected for good (a 400/409 with
//! BigPanda's JSON error body, see [`classify`]), the keys are wrong (401/403), the endpoint is
//! wrong (a 404, a redirect, a 4xx that is not BigPanda's JSON, or a run of more than
//! `max_consecutive_rejections` rejections for one key), given up at the deadline (5xx,
//! timeouts, connection errors and other statuses), or stopped by the cancellation token. A 429
//! is pacing: it pauses the key (for the whole fleet with the DynamoDB store) and uses up none
//! of the change's patience. The API is an upsert keyed on the
//! change's identifier, so sending a change again after an uncertain attempt is safe.
//!
//! It must never print or log an API key or app key: keys are [`SecretString`]s, the per-key
//! maps are keyed by a one-way fingerprint, and `Debug` is written by hand.

use crate::metrics as m;
use bytes::Bytes;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

pub mod classify;
mod forwarder;
mod http;
mod pace;
mod retry_after;

pub use classify::Verdict;
pub use forwarder::Forwarder;
use forwarder::*;
use http::*;
use pace::*;
pub use retry_after::{backoff, parse_retry_after};

const CHANGES_PATH: &str = "/data/changes";
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest pause we take from a `Retry-After`: a mistaken header must not silence a customer
/// for hours, and one probe every few minutes is harmless to a throttled API.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How long a 429 without `Retry-After` pauses its API key (for the whole fleet with the
/// DynamoDB store).
const THROTTLE_PAUSE: Duration = Duration::from_secs(2);
/// How long a change may wait for its first turn (a slot, the end of a pause, a token) before
/// its patience starts: a backstop far beyond any real wait, never reached in practice.
const FIRST_TURN_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How much of a rejection's response body is kept and logged.
const REJECTED_BODY_LIMIT: usize = 1024;
/// How much of a transient failure's body goes into the retry reason.
const TRANSIENT_BODY_LIMIT: usize = 256;

/// Where changes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkMode {
    /// POST each change to the Changes API.
    #[default]
    Http,
    /// Dry run: print one JSON change per line to stdout instead.
    Stdout,
}

/// The `[bigpanda]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigPandaSettings {
    /// `http` (default) or `stdout` (dry run).
    pub mode: SinkMode,
    /// Changes are POSTed to `{base_url}/data/changes`.
    pub base_url: String,
    /// Changes per minute per API key; 0 turns pacing off (benchmarks).
    pub rate_per_minute: u32,
    /// BigPanda's weekly cap per API key, counted across the fleet (DynamoDB store) to show
    /// the share used and warn at 80% and 100%; 0: not tracked. It never drops a change.
    #[serde(default = "default_changes_per_week")]
    pub changes_per_week: u64,
    /// POSTs in flight per API key.
    pub max_concurrency_per_key: usize,
    /// Timeout of one HTTP request, connection to end of body.
    pub request_timeout_seconds: u64,
    /// Consecutive rejections for one API key after which further rejections are treated as
    /// a configuration problem (retried, not rejected) until one change is accepted; 0: off.
    pub max_consecutive_rejections: u32,
}

impl Default for BigPandaSettings {
    fn default() -> Self {
        BigPandaSettings {
            mode: SinkMode::Http,
            base_url: "https://api.bigpanda.io".into(),
            rate_per_minute: 400,
            changes_per_week: default_changes_per_week(),
            max_concurrency_per_key: 4,
            request_timeout_seconds: 10,
            max_consecutive_rejections: 20,
        }
    }
}

fn default_changes_per_week() -> u64 {
    50_000
}

/// A subscription's BigPanda keys.
#[derive(Clone)]
pub struct Keys {
    pub api_key: SecretString,
    pub app_key: SecretString,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("api_key", &"[redacted]")
            .field("app_key", &"[redacted]")
            .finish()
    }
}

/// How BigPanda answered a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Any 2xx.
    Accepted,
    /// A 400/409 with BigPanda's JSON error: this change is refused for good. `error` is
    /// BigPanda's error text.
    Rejected { status: u16, error: String },
}

/// Why a change was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// 401/403 (or keys that cannot be sent as HTTP headers, status 0): the subscription's
    /// keys are wrong; fail the whole message.
    #[error("change {identifier}: BigPanda refused the subscription's keys (HTTP {status})")]
    Unauthorized { identifier: String, status: u16 },
    /// Not the Changes API answering (a wrong `bigpanda.base_url`, a proxy), or a run of
    /// rejections long enough to be a configuration problem: the change was not delivered;
    /// retry the message later.
    #[error("change {identifier}: {url} does not answer like the BigPanda Changes API ({answer}); check bigpanda.base_url and any proxy in front of it")]
    Endpoint {
        identifier: String,
        url: String,
        answer: String,
    },
    /// Transient failures were still failing at the deadline; retry the message later.
    #[error("change {identifier}: gave up after {attempts} attempt(s): {last}")]
    GaveUp {
        identifier: String,
        attempts: u32,
        last: String,
    },
    /// The cancellation token fired first.
    #[error("change {identifier}: stopped before it was delivered")]
    Stopped { identifier: String },
}

/// Settings the forwarder cannot be built from.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("bigpanda.base_url {base_url:?} is not usable: {reason}")]
    BaseUrl { base_url: String, reason: String },
    #[error("Failed to build the BigPanda HTTP client")]
    Client(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests;
