//! The `[sqs]` and `[worker]` settings (validated in [`crate::settings`]).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The `[sqs]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsSettings {
    /// The queue the bucket notifications arrive on (required by `run`).
    pub queue_url: String,
    /// The dead-letter queue; empty: the queue's RedrivePolicy target.
    pub dlq_url: String,
    /// Concurrent long-polling tasks.
    pub pollers: usize,
    /// Messages asked for per receive (1..=10).
    pub max_messages: i32,
    /// Long-poll wait (0..=20 seconds).
    pub wait_time_seconds: i32,
}

/// The `[worker]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Messages processed at once.
    pub max_inflight_messages: usize,
    /// Objects of one subscription (API key) processed at once.
    pub max_inflight_per_subscription: usize,
    /// After SIGTERM, how long in-flight messages may finish before they are released.
    pub shutdown_grace_seconds: u64,
    /// Visibility delays after the 1st, 2nd, ... failed attempt; the last repeats.
    #[serde(deserialize_with = "crate::util::de::numbers")]
    pub retry_backoff_seconds: Vec<u32>,
    /// How long a message of a busy subscription is given back for.
    pub defer_seconds: u32,
    /// Objects up to this size are held in memory; larger ones are spooled to a temporary file.
    pub spool_memory_bytes: u64,
    /// How long one change is retried (429, 5xx, timeouts), from its first attempt, before the
    /// message is retried later; waiting for its turn at the key's pace does not count.
    pub change_retry_seconds: u64,
}

impl WorkerSettings {
    /// [`Self::change_retry_seconds`] as a duration.
    #[must_use]
    pub fn change_retry(&self) -> Duration {
        Duration::from_secs(self.change_retry_seconds)
    }
}
