//! One S3 object, from GetObject to changes accepted: fetch into a spool, run the pipeline on a
//! blocking thread, forward its changes in order with bounded concurrency, and keep a
//! checkpoint of how many were accepted so a retried message resumes instead of resending.

use super::fate::Failure;
use super::Shared;
use crate::aws::credentials::CredentialsError;
use crate::aws::download::{self, DownloadError};
use crate::aws::queue::QueueError;
use crate::core::envelope::ObjectRef;
use crate::core::filter::{Dedup, Reason};
use crate::core::normalize::Origin;
use crate::core::pipeline::{Outcome, PipelineError, Tally};
use crate::core::records::{self, RecordsError};
use crate::core::rejected::RejectedChange;
use crate::forward::{Delivery, ForwardError, Keys};
use crate::metrics as m;
use crate::subscriptions::{checkpoint_id, Checkpoints, Subscription};
use bytes::Bytes;
use std::collections::BTreeSet;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Changes buffered between the parsing thread and the forwarder.
const CHANNEL: usize = 256;
/// A checkpoint is written after this many more changes were accepted...
const CHECKPOINT_EVERY: u64 = 50;
/// ...or this long after the last one, whichever comes first (paced sends are slow).
const CHECKPOINT_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// What delivering one object did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivered {
    pub tally: Tally,
    /// Changes the Changes API accepted.
    pub accepted: u64,
    /// Changes it refused for good (BigPanda's JSON 400/409), each kept in the DLQ.
    pub rejected: u64,
    /// Changes skipped because a checkpoint said they were accepted before.
    pub resumed: u64,
    /// The object was rewritten since its notification and skipped (`object_replaced`): the
    /// newer version has its own notification.
    pub replaced: bool,
}

/// The highest index `n` such that changes `0..n` are all done, however they complete.
#[derive(Debug, Default)]
pub struct Watermark {
    next: u64,
    ahead: BTreeSet<u64>,
}

impl Watermark {
    /// Starts at `n` (a checkpoint).
    #[must_use]
    pub fn at(n: u64) -> Self {
        Self {
            next: n,
            ahead: BTreeSet::new(),
        }
    }

    /// Marks change `index` done; returns the new watermark.
    pub fn complete(&mut self, index: u64) -> u64 {
        if index >= self.next {
            self.ahead.insert(index);
        }
        while self.ahead.remove(&self.next) {
            self.next += 1;
        }
        self.next
    }

    /// Every change below this is done.
    #[must_use]
    pub fn value(&self) -> u64 {
        self.next
    }
}

/// Delivers every change of `object` for `subscription`.
///
/// # Errors
/// [`Failure`] saying whether to retry, dead-letter or release the message.
pub async fn deliver(
    shared: &Shared,
    object: &ObjectRef,
    subscription: &Subscription,
    abort: &CancellationToken,
) -> Result<Delivered, Failure> {
    let s3 = shared
        .roles
        .s3_client(
            &subscription.iam_role_arn,
            &subscription.iam_role_external_id,
            &subscription.bucket_region,
        )
        .await
        .map_err(|e| role_failure(&e))?;
    let settings = &shared.settings;
    let fetched = download::fetch(
        &s3,
        object,
        &subscription.bucket_owner,
        settings.worker.spool_memory_bytes,
        settings.records.max_object_bytes,
    )
    .await;
    if let Err(e @ DownloadError::Replaced { .. }) = &fetched {
        metrics::counter!(m::OBJECTS_REPLACED).increment(1);
        tracing::info!(reason = "object_replaced", detail = %e, "skipped: the newer version has its own notification");
        return Ok(Delivered {
            replaced: true,
            ..Delivered::default()
        });
    }
    let (spool, bytes) = fetched.map_err(|e| {
        if matches!(e, DownloadError::AccessDenied { .. }) {
            shared.roles.forget(
                &subscription.iam_role_arn,
                &subscription.iam_role_external_id,
            );
        }
        download_failure(&e)
    })?;
    metrics::counter!(m::OBJECT_BYTES).increment(bytes);
    let id = checkpoint_id(object, &settings.checkpoint_fingerprint());
    let start = match shared.subscriptions.store().checkpoint(&id).await {
        Ok(n) => n.unwrap_or(0),
        Err(e) => {
            metrics::counter!(m::CHECKPOINT_ERRORS).increment(1);
            tracing::warn!(error = %e, "cannot read the checkpoint; starting from the first change");
            0
        }
    };
    let (tx, rx) = mpsc::channel(CHANNEL);
    let parser = spawn_parser(shared, object, spool, tx);
    let keys = Keys {
        api_key: subscription.api_key.clone(),
        app_key: subscription.app_key.clone(),
    };
    let forwarded = forward_all(shared, &keys, object, &id, rx, start, abort).await;
    let (tally, parsed) = parser.await.map_err(|e| Failure::Transient {
        reason: "internal",
        detail: format!("the parsing thread of {object} failed: {e}"),
    })?;
    record_tally(&tally);
    let delivered = forwarded?;
    let delivered = Delivered { tally, ..delivered };
    match parsed {
        Ok(()) => Ok(delivered),
        // The handler only fails when the forwarder stopped listening, which it reported.
        Err(PipelineError::Handler(())) => Ok(delivered),
        Err(PipelineError::Records(e)) => Err(records_failure(object, &e)),
    }
}

type Parsed = (Tally, Result<(), PipelineError<()>>);

/// Runs records -> filter -> normalize on a blocking thread, sending each change's body down
/// `tx` in order. Stops early when the receiver goes away.
fn spawn_parser(
    shared: &Shared,
    object: &ObjectRef,
    spool: download::Spool,
    tx: mpsc::Sender<(String, i64, Bytes)>,
) -> tokio::task::JoinHandle<Parsed> {
    let settings = std::sync::Arc::clone(&shared.settings);
    let object = object.clone();
    tokio::task::spawn_blocking(move || {
        let mut tally = Tally::default();
        let pipeline = crate::core::pipeline::Pipeline {
            policy: &settings.policy,
            normalize: settings.normalize,
            max_record_bytes: settings.records.max_record_bytes,
            now: unix_now(),
        };
        let json = match records::open(spool, &settings.records) {
            Ok((_, json)) => json,
            Err(e) => return (tally, Err(PipelineError::Records(e))),
        };
        let origin = Origin {
            bucket: Some(&object.bucket),
            key: &object.key,
        };
        let mut dedup = Dedup::default();
        let result = pipeline.run(json, origin, &mut dedup, &mut tally, |outcome| {
            let Outcome::Change(change) = outcome else {
                return Ok(());
            };
            let body = serde_json::to_vec(&change).map_err(|_| ())?;
            tx.blocking_send((change.identifier, change.start, Bytes::from(body)))
                .map_err(|_| ())
        });
        (tally, result)
    })
}

/// Forwards the changes arriving on `rx`, skipping the first `start` (already accepted), with
/// at most `bigpanda.max_concurrency_per_key` in flight, checkpointing as the watermark grows.
/// A change BigPanda rejects for good is kept in the DLQ as its own message before it counts
/// as done.
async fn forward_all(
    shared: &Shared,
    keys: &Keys,
    object: &ObjectRef,
    id: &str,
    mut rx: mpsc::Receiver<(String, i64, Bytes)>,
    start: u64,
    abort: &CancellationToken,
) -> Result<Delivered, Failure> {
    let limit = shared.settings.bigpanda.max_concurrency_per_key.max(1);
    let mut done = Delivered::default();
    let mut watermark = Watermark::at(start);
    let mut saved = start;
    let mut saved_at = std::time::Instant::now();
    let mut in_flight = JoinSet::new();
    let mut failure = None;
    let mut index = 0u64;
    while failure.is_none() {
        let Some((identifier, event_time, body)) = rx.recv().await else {
            break;
        };
        index += 1;
        if index <= start {
            done.resumed += 1;
            continue;
        }
        while in_flight.len() >= limit && failure.is_none() {
            if let Some(joined) = in_flight.join_next().await {
                failure = settle(joined, &mut done, &mut watermark);
            }
        }
        let forwarder = std::sync::Arc::clone(&shared.forwarder);
        let keys = keys.clone();
        let abort = abort.clone();
        let deadline = tokio::time::Instant::now() + shared.settings.worker.change_retry();
        let at = index - 1;
        let queue = shared.queue.clone();
        let object = object.clone();
        in_flight.spawn(async move {
            let result = forwarder
                .send(&keys, &identifier, body.clone(), deadline, &abort)
                .await;
            if matches!(result, Ok(Delivery::Accepted)) {
                metrics::histogram!(m::CHANGE_LAG).record(lag_seconds(event_time));
            }
            let parked = match &result {
                Ok(Delivery::Rejected { status, error }) => {
                    let rejected = RejectedChange {
                        bucket: object.bucket.clone(),
                        key: object.key.clone(),
                        event_id: identifier.clone(),
                        status: *status,
                        error: error.clone(),
                    };
                    Some(super::rejected::park(&queue, &body, &rejected).await)
                }
                _ => None,
            };
            (at, identifier, result, parked)
        });
        let due = watermark.value() >= saved + CHECKPOINT_EVERY
            || (watermark.value() > saved && saved_at.elapsed() >= CHECKPOINT_PERIOD);
        if due {
            saved = watermark.value();
            saved_at = std::time::Instant::now();
            save_checkpoint(shared, id, saved).await;
        }
    }
    // Closing the channel stops the parser if we stopped early.
    drop(rx);
    while let Some(joined) = in_flight.join_next().await {
        let f = settle(joined, &mut done, &mut watermark);
        failure = failure.or(f);
    }
    metrics::counter!(m::CHANGES_RESUMED).increment(done.resumed);
    if watermark.value() > start {
        save_checkpoint(shared, id, watermark.value()).await;
    }
    failure.map_or(Ok(done), Err)
}

/// A change's index, identifier, how BigPanda answered and, for a rejection, whether it was
/// kept in the DLQ.
type Sent = (
    u64,
    String,
    Result<Delivery, ForwardError>,
    Option<Result<(), QueueError>>,
);

fn settle(
    joined: Result<Sent, tokio::task::JoinError>,
    done: &mut Delivered,
    watermark: &mut Watermark,
) -> Option<Failure> {
    let (index, identifier, result, parked) = match joined {
        Ok(sent) => sent,
        Err(e) => {
            return Some(Failure::Transient {
                reason: "internal",
                detail: format!("a forwarding task failed: {e}"),
            })
        }
    };
    match result {
        Ok(Delivery::Accepted) => done.accepted += 1,
        // Not done until it waits in the DLQ: otherwise the message is retried.
        Ok(Delivery::Rejected { .. }) => match parked {
            Some(Err(e)) => {
                return Some(Failure::Transient {
                    reason: "dlq_unavailable",
                    detail: format!("cannot keep rejected change {identifier} in the DLQ: {e}"),
                })
            }
            _ => done.rejected += 1,
        },
        Err(e) => return Some(forward_failure(e)),
    }
    watermark.complete(index);
    None
}

/// What a change that was not delivered means for its message.
pub(super) fn forward_failure(e: ForwardError) -> Failure {
    match e {
        ForwardError::Stopped { .. } => Failure::Stopped,
        ForwardError::Unauthorized { .. } => Failure::Transient {
            reason: "bigpanda_unauthorized",
            detail: format!("{e}; check the subscription's apiKey and appKey"),
        },
        ForwardError::Endpoint { .. } => Failure::Transient {
            reason: "bigpanda_endpoint",
            detail: e.to_string(),
        },
        ForwardError::GaveUp { .. } => Failure::Transient {
            reason: "bigpanda_unavailable",
            detail: e.to_string(),
        },
    }
}

async fn save_checkpoint(shared: &Shared, id: &str, accepted: u64) {
    let ttl = shared.settings.subscriptions.checkpoint_ttl_seconds;
    if let Err(e) = shared
        .subscriptions
        .store()
        .save_checkpoint(id, accepted, ttl)
        .await
    {
        metrics::counter!(m::CHECKPOINT_ERRORS).increment(1);
        tracing::warn!(error = %e, accepted, "cannot save the checkpoint; a retry may resend changes");
    }
}

/// The clock in Unix seconds (0 for a clock before 1970).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Seconds from a change's event time to now (0 for a clock that is behind).
fn lag_seconds(event_time: i64) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let event = u64::try_from(event_time).unwrap_or(0);
    now.saturating_sub(event) as f64
}

fn record_tally(tally: &Tally) {
    metrics::counter!(m::RECORDS).increment(tally.records);
    metrics::counter!(m::CHANGES_PRODUCED).increment(tally.changes);
    for reason in Reason::ALL {
        let n = tally.dropped(reason);
        if n > 0 {
            metrics::counter!(m::RECORDS_DROPPED, "reason" => reason.as_str()).increment(n);
        }
    }
}

fn role_failure(e: &CredentialsError) -> Failure {
    match e {
        CredentialsError::Refused { .. } => Failure::Transient {
            reason: "role_refused",
            detail: e.to_string(),
        },
        CredentialsError::Unavailable { .. } => Failure::Transient {
            reason: "sts_unavailable",
            detail: e.to_string(),
        },
    }
}

fn download_failure(e: &DownloadError) -> Failure {
    let detail = e.to_string();
    match e {
        DownloadError::NotFound { .. } => Failure::Poison {
            reason: "object_not_found",
            detail,
        },
        // `deliver` skips it before it gets here; a skip is no failure.
        DownloadError::Replaced { .. } => Failure::Poison {
            reason: "object_replaced",
            detail,
        },
        DownloadError::TooLarge { .. } => Failure::Poison {
            reason: "object_too_large",
            detail,
        },
        DownloadError::AccessDenied { bucket, .. } => Failure::Transient {
            reason: "access_denied",
            detail: access_denied_detail(bucket, &detail),
        },
        DownloadError::Unavailable { .. } => Failure::Transient {
            reason: "s3_unavailable",
            detail,
        },
    }
}

/// With a GetObject-only policy (no `s3:ListBucket`) S3 answers 403, not 404, for a key that
/// does not exist: the detail says both, and what to check.
fn access_denied_detail(bucket: &str, detail: &str) -> String {
    format!(
        "access denied, or the object does not exist (without s3:ListBucket S3 answers 403 for a \
         missing key): {detail}. Check that the object still exists (a lifecycle rule, a \
         stale notification), that the role's policy allows s3:GetObject on \
         arn:aws:s3:::{bucket}/*, that the bucket policy does not deny the role, and that the \
         role may use the bucket's KMS key (kms:Decrypt)"
    )
}

fn records_failure(object: &ObjectRef, e: &RecordsError) -> Failure {
    let detail = format!("{object}: {e}");
    if e.is_source_failure() {
        return Failure::Transient {
            reason: "s3_unavailable",
            detail,
        };
    }
    let limit = matches!(e, RecordsError::Read { source, .. } if records::is_limit_error(source))
        || matches!(e, RecordsError::RecordTooLarge { .. });
    Failure::Poison {
        reason: if limit {
            "object_too_large"
        } else {
            "corrupt_object"
        },
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_says_the_object_may_be_missing_and_what_to_check() {
        let e = DownloadError::AccessDenied {
            bucket: "trail".into(),
            key: "AWSLogs/x.json.gz".into(),
            detail: "AccessDenied".into(),
        };
        let Failure::Transient { reason, detail } = download_failure(&e) else {
            panic!("access denied is retried")
        };
        assert_eq!(reason, "access_denied");
        assert!(
            detail.starts_with("access denied, or the object does not exist"),
            "{detail}"
        );
        for needle in [
            "s3://trail/AWSLogs/x.json.gz",
            "s3:GetObject on arn:aws:s3:::trail/*",
            "kms:Decrypt",
            "lifecycle rule",
        ] {
            assert!(detail.contains(needle), "{needle}: {detail}");
        }
    }

    #[test]
    fn the_watermark_advances_only_over_a_gapless_prefix() {
        let mut w = Watermark::at(0);
        assert_eq!(w.complete(1), 0);
        assert_eq!(w.complete(2), 0);
        assert_eq!(w.complete(0), 3);
        assert_eq!(w.complete(4), 3);
        assert_eq!(w.complete(3), 5);
    }

    #[test]
    fn a_watermark_resumed_from_a_checkpoint_starts_there() {
        let mut w = Watermark::at(10);
        assert_eq!(w.value(), 10);
        assert_eq!(w.complete(3), 10);
        assert_eq!(w.complete(10), 11);
    }
}
