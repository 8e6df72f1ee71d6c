//! The fate of a message: what the worker does with it once processing ended. Pure: takes the
//! outcome and the delivery count, returns the decision.

use crate::core::envelope::SkipReason;

/// Why processing a message failed, grouped by what can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing will ever make it work (bad body, unknown bucket, corrupt object): DLQ now.
    Poison {
        reason: &'static str,
        detail: String,
    },
    /// Might work later (AWS or BigPanda failing, keys refused, access denied): retry with a
    /// backoff, DLQ on the last attempt.
    Transient {
        reason: &'static str,
        detail: String,
    },
    /// The daemon is stopping: hand the message back at once, it was not its fault.
    Stopped,
    /// The subscription already has its share of objects in flight: give it back for a short
    /// while so other customers' messages get the workers (fairness), not counted as failure.
    Busy,
}

impl Failure {
    /// A short label for metrics and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Poison { reason, .. } | Self::Transient { reason, .. } => reason,
            Self::Stopped => "stopped",
            Self::Busy => "busy",
        }
    }
}

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// Every change of every object was accepted or rejected for good.
    Delivered {
        changes: u64,
    },
    /// Nothing to forward.
    Skipped {
        reason: &'static str,
    },
    Failed(Failure),
}

impl Processed {
    /// A message that named only skipped objects.
    #[must_use]
    pub fn skipped(reasons: &[SkipReason]) -> Self {
        Self::Skipped {
            reason: reasons.first().map_or("empty", |r| r.as_str()),
        }
    }
}

/// The decision for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Delete it: done.
    Delete { skipped: Option<&'static str> },
    /// Make it visible again after `seconds`.
    Retry {
        seconds: u32,
        reason: &'static str,
        detail: String,
    },
    /// Hand it back now (visibility 0): another worker or replica takes it.
    Release,
    /// Put a copy back on the queue, then delete this one: handed back without a real attempt
    /// on its last allowed receive, where a release would let SQS dead-letter it.
    Requeue,
    /// Give it back after a short delay without counting a failure.
    Defer { seconds: u32 },
    /// Copy it to the dead-letter queue with its reason, then delete it.
    DeadLetter {
        reason: &'static str,
        detail: String,
    },
}

/// The retry policy's knobs.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Visibility delays by attempt: the n-th failure waits `backoff[n-1]` seconds; the last
    /// entry repeats.
    pub backoff_seconds: Vec<u32>,
    /// How long a busy subscription's message waits before it is tried again.
    pub defer_seconds: u32,
    /// The number of receives after which SQS moves a message to the DLQ on its own
    /// (`maxReceiveCount`), if the queue has a redrive policy.
    pub max_receive_count: Option<u32>,
}

/// Decides the fate of a message that was received `receive_count` times (1 the first time).
///
/// The policy:
/// - **delivered** (every change accepted, or rejected for good by the Changes API): delete;
/// - **skipped** (test event, digest or Insights file, folder marker, zero changes, a bucket
///   unsubscribed within the last 30 days): delete;
/// - **poison** (malformed body, unknown bucket, corrupt or missing object): to the DLQ now,
///   with the reason, then delete;
/// - **transient** (AWS, the store or BigPanda failing; keys refused; access denied): make it
///   visible again after a backoff that grows with `receive_count` — *unless* this was the last
///   receive before SQS would move it to the DLQ on its own, in which case the daemon moves it
///   itself, so the DLQ copy carries the reason;
/// - **stopped** (shutdown before it finished): release at once (visibility 0), no penalty —
///   *unless* this was the last receive before SQS would move it to the DLQ on its own: then
///   requeue a copy (send, then delete the original), whose receive count starts again;
/// - **busy** (the subscription has its share of objects in flight): defer a few seconds
///   (`jitter` in 0..1 spreads them), no penalty beyond the receive count.
///
/// A Changes API outage (`bigpanda_unavailable` while no delivery of any customer succeeded
/// within a change's patience) never reaches this decision while it lasts: the message is held
/// in process with its heartbeat and tried again when delivery resumes
/// ([`super::backpressure`]), so an outage spends no receive. A 429 never fails a change.
/// A deferral spends a receive, so near `maxReceiveCount` a busy subscription's message waits
/// for its slot instead ([`super::handle`]'s `claim`); a release on the last receive becomes a
/// requeue.
#[must_use]
pub fn decide(processed: Processed, receive_count: u32, policy: &RetryPolicy, jitter: f64) -> Fate {
    match processed {
        Processed::Delivered { .. } => Fate::Delete { skipped: None },
        Processed::Skipped { reason } => Fate::Delete {
            skipped: Some(reason),
        },
        Processed::Failed(Failure::Poison { reason, detail }) => {
            Fate::DeadLetter { reason, detail }
        }
        Processed::Failed(Failure::Stopped) => {
            if policy
                .max_receive_count
                .is_some_and(|max| receive_count >= max)
            {
                return Fate::Requeue;
            }
            Fate::Release
        }
        Processed::Failed(Failure::Busy) => {
            let spread = f64::from(policy.defer_seconds) * (1.0 + jitter.clamp(0.0, 1.0));
            Fate::Defer {
                seconds: spread.round() as u32,
            }
        }
        Processed::Failed(Failure::Transient { reason, detail }) => {
            if policy
                .max_receive_count
                .is_some_and(|max| receive_count >= max)
            {
                return Fate::DeadLetter {
                    reason,
                    detail: format!("{detail} (gave up after {receive_count} attempts)"),
                };
            }
            Fate::Retry {
                seconds: retry_delay(receive_count, &policy.backoff_seconds, jitter),
                reason,
                detail,
            }
        }
    }
}

/// The visibility delay after the `receive_count`-th failed attempt, ±10% by `jitter` (0..1).
#[must_use]
pub fn retry_delay(receive_count: u32, backoff_seconds: &[u32], jitter: f64) -> u32 {
    let index = usize::try_from(receive_count.saturating_sub(1)).unwrap_or(usize::MAX);
    let base = backoff_seconds
        .get(index)
        .or(backoff_seconds.last())
        .copied()
        .unwrap_or(30);
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    ((f64::from(base) * factor).round() as u32).clamp(1, 43_200)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            backoff_seconds: vec![30, 120, 600],
            defer_seconds: 10,
            max_receive_count: max,
        }
    }

    fn transient() -> Processed {
        Processed::Failed(Failure::Transient {
            reason: "bigpanda_unavailable",
            detail: "500".into(),
        })
    }

    #[test]
    fn delivered_and_skipped_messages_are_deleted() {
        let p = policy(Some(5));
        assert_eq!(
            decide(Processed::Delivered { changes: 3 }, 1, &p, 0.5),
            Fate::Delete { skipped: None }
        );
        assert_eq!(
            decide(Processed::Skipped { reason: "digest" }, 1, &p, 0.5),
            Fate::Delete {
                skipped: Some("digest")
            }
        );
    }

    #[test]
    fn transient_failures_back_off_more_with_each_receive() {
        let p = policy(Some(10));
        let delays: Vec<u32> = (1..=5)
            .map(|n| match decide(transient(), n, &p, 0.5) {
                Fate::Retry { seconds, .. } => seconds,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, vec![30, 120, 600, 600, 600]);
    }

    #[test]
    fn the_last_receive_before_redrive_goes_to_the_dlq_with_its_reason() {
        let p = policy(Some(3));
        assert!(matches!(
            decide(transient(), 2, &p, 0.5),
            Fate::Retry { .. }
        ));
        match decide(transient(), 3, &p, 0.5) {
            Fate::DeadLetter { reason, detail } => {
                assert_eq!(reason, "bigpanda_unavailable");
                assert!(detail.contains("after 3 attempts"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_redrive_policy_transient_failures_retry_forever() {
        assert!(matches!(
            decide(transient(), 1000, &policy(None), 0.5),
            Fate::Retry { .. }
        ));
    }

    #[test]
    fn poison_goes_to_the_dlq_on_the_first_receive() {
        let poison = Processed::Failed(Failure::Poison {
            reason: "unknown_bucket",
            detail: "no subscription for bucket x".into(),
        });
        assert!(matches!(
            decide(poison, 1, &policy(Some(5)), 0.5),
            Fate::DeadLetter {
                reason: "unknown_bucket",
                ..
            }
        ));
    }

    #[test]
    fn stopping_releases_and_busy_defers_without_reaching_the_dlq() {
        let p = policy(Some(1));
        // On the only receive SQS allows, a release would be a dead letter: requeue instead.
        assert_eq!(
            decide(Processed::Failed(Failure::Stopped), 1, &p, 0.5),
            Fate::Requeue
        );
        assert_eq!(
            decide(Processed::Failed(Failure::Busy), 1, &p, 0.0),
            Fate::Defer { seconds: 10 }
        );
        assert_eq!(
            decide(Processed::Failed(Failure::Busy), 1, &p, 1.0),
            Fate::Defer { seconds: 20 }
        );
    }

    #[test]
    fn stopping_on_the_last_allowed_receive_requeues_a_copy_instead_of_releasing() {
        let p = policy(Some(3));
        let stopped = || Processed::Failed(Failure::Stopped);
        assert_eq!(decide(stopped(), 2, &p, 0.5), Fate::Release);
        assert_eq!(decide(stopped(), 3, &p, 0.5), Fate::Requeue);
        assert_eq!(decide(stopped(), 9, &policy(None), 0.5), Fate::Release);
    }

    #[test]
    fn retry_delays_stay_within_ten_percent_and_within_sqs_limits() {
        assert_eq!(retry_delay(1, &[100], 0.0), 90);
        assert_eq!(retry_delay(1, &[100], 1.0), 110);
        assert_eq!(retry_delay(1, &[100_000], 0.5), 43_200);
        assert_eq!(retry_delay(1, &[], 0.5), 30);
    }
}
