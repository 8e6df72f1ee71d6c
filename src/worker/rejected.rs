//! Rejected changes: kept in the DLQ as their own messages ([`park`]), and replayed when
//! `dlq redrive` puts them back on the queue ([`replay`]): the body is posted as is, with the
//! bucket's current subscription keys (the message never carries keys).

use super::object::forward_failure;
use super::*;
use crate::core::rejected::{RejectedChange, REASON};
use crate::forward::{Delivery, Keys};

/// Sends a rejected change's exact body to the DLQ with its envelope attributes.
///
/// # Errors
/// [`QueueError`] when the DLQ cannot take it; the caller then retries the whole message, so
/// the change is never in neither place.
pub(super) async fn park(
    queue: &Queue,
    body: &[u8],
    rejected: &RejectedChange,
) -> Result<(), QueueError> {
    let failed_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let detail = rejected.detail();
    let failure = DlqFailure {
        reason: REASON,
        detail: &detail,
        failed_at: &failed_at,
    };
    let body = String::from_utf8_lossy(body);
    let result = queue
        .send_to_dlq_with(&body, &failure, &rejected.attributes())
        .await;
    match &result {
        Ok(()) => {
            metrics::counter!(m::MESSAGES_DEAD_LETTERED, "reason" => REASON).increment(1);
            tracing::error!(
                identifier = %rejected.event_id,
                bucket = %rejected.bucket,
                key = %rejected.key,
                status = rejected.status,
                error = %rejected.error,
                "BigPanda rejected the change; kept in the dead-letter queue as its own message"
            );
        }
        Err(e) => {
            metrics::counter!(m::SQS_ERRORS, "operation" => "send_to_dlq").increment(1);
            tracing::warn!(identifier = %rejected.event_id, error = %e, "cannot keep the rejected change in the DLQ; the message will be retried");
        }
    }
    result
}

/// Replays a rejected change that `dlq redrive` put back on the queue: posts its body as is
/// with the bucket's current keys. Accepted: done. Rejected again: kept in the DLQ again, with
/// BigPanda's new answer. Otherwise the message fails as any delivery would.
pub(super) async fn replay(
    shared: &Shared,
    message: &Received,
    envelope: Result<RejectedChange, &'static str>,
    abort: &CancellationToken,
) -> Report {
    let rejected = match envelope {
        Ok(r) => r,
        Err(missing) => {
            return Report::early(Processed::Failed(Failure::Poison {
                reason: "malformed_envelope",
                detail: format!(
                "message {} is marked as a rejected change but has no usable {missing} attribute",
                message.message_id
            ),
            }))
        }
    };
    let mut report = Report::early(Processed::Delivered { changes: 0 });
    report.first = Some(ObjectRef {
        bucket: rejected.bucket.clone(),
        key: rejected.key.clone(),
        size: None,
        etag: None,
        sequencer: None,
        version_id: None,
    });
    report.processed = match send(shared, message, &rejected, abort).await {
        Ok(changes) => {
            report.changes = changes;
            Processed::Delivered { changes }
        }
        Err(failure) => Processed::Failed(failure),
    };
    report
}

/// The changes delivered (1, or 0 when it was rejected again and kept in the DLQ again).
async fn send(
    shared: &Shared,
    message: &Received,
    rejected: &RejectedChange,
    abort: &CancellationToken,
) -> Result<u64, Failure> {
    let bucket = &rejected.bucket;
    let subscription = match shared.lookup.get(bucket, Instant::now()).await {
        Ok(Answer::Subscribed(s)) => s,
        Ok(Answer::Unsubscribed) => {
            tracing::info!(bucket, "rejected change of a removed subscription; dropped with it");
            return Ok(0);
        }
        Ok(Answer::Unknown) => {
            return Err(Failure::Poison {
                reason: "unknown_bucket",
                detail: format!(
                    "no subscription for bucket {bucket} of rejected change {} (subscribe it, then redrive)",
                    rejected.event_id
                ),
            })
        }
        Err(e) => {
            return Err(Failure::Transient {
                reason: "store_unavailable",
                detail: e.to_string(),
            })
        }
    };
    let keys = Keys {
        api_key: subscription.api_key.clone(),
        app_key: subscription.app_key.clone(),
    };
    let deadline = tokio::time::Instant::now() + shared.settings.worker.change_retry();
    let body = bytes::Bytes::from(message.body.clone());
    let sent = shared
        .forwarder
        .send(&keys, &rejected.event_id, body.clone(), deadline, abort)
        .await;
    match sent {
        Ok(Delivery::Accepted) => {
            tracing::info!(identifier = %rejected.event_id, "replayed rejected change accepted");
            Ok(1)
        }
        Ok(Delivery::Rejected { status, error }) => {
            let again = RejectedChange {
                status,
                error,
                ..rejected.clone()
            };
            park(&shared.queue, &body, &again)
                .await
                .map(|()| 0)
                .map_err(|e| Failure::Transient {
                    reason: "dlq_unavailable",
                    detail: format!(
                        "cannot keep rejected change {} in the DLQ: {e}",
                        rejected.event_id
                    ),
                })
        }
        Err(e) => Err(forward_failure(e)),
    }
}
