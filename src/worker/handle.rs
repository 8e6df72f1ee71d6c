//! One message from receive to fate: decode the envelope, deliver each object it names (with a
//! heartbeat on its visibility), decide the fate with [`super::fate::decide`] and settle it.

use super::*;
use crate::core::rejected::RejectedChange;

/// How one message ended: the fate decided for it and what settling it did (`delivered`,
/// `skipped`, `retry`, `released`, `deferred`, `dead_lettered`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub message_id: String,
    pub fate: Fate,
    pub outcome: &'static str,
}

/// One message from receive to fate, with a heartbeat while it runs; returns the fate.
pub(super) async fn handle_one(
    shared: &Arc<Shared>,
    message: Received,
    abort: &CancellationToken,
) -> Handled {
    let span = tracing::info_span!("message", message_id = %message.message_id, receive_count = message.receive_count);
    async {
        let started = Instant::now();
        metrics::gauge!(m::MESSAGES_IN_FLIGHT).increment(1.0);
        let done = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            Arc::clone(shared),
            message.receipt_handle.clone(),
            done.clone(),
        ));
        let report = process_held(shared, &message, abort).await;
        done.cancel();
        let _ = heartbeat.await;
        let fate = fate::decide(
            report.processed,
            message.receive_count,
            &shared.retry,
            rand::random(),
        );
        let outcome = settle(shared, &message, fate.clone(), report.checkpoints).await;
        metrics::gauge!(m::MESSAGES_IN_FLIGHT).decrement(1.0);
        let elapsed = started.elapsed();
        metrics::histogram!(m::MESSAGE_DURATION).record(elapsed.as_secs_f64());
        let (bucket, key) = report
            .first
            .as_ref()
            .map_or(("", ""), |o| (o.bucket.as_str(), o.key.as_str()));
        tracing::info!(
            fate = outcome,
            bucket,
            key,
            objects = report.objects,
            changes = report.changes,
            ms = elapsed.as_millis() as u64,
            "message finished"
        );
        Handled {
            message_id: message.message_id.clone(),
            fate,

            outcome,
        }
    }
    .instrument(span)
    .await
}

/// [`process`], held and tried again (as a probe) while delivery is paused by an outage of the
/// Changes API, so the outage spends no receive (see [`super::backpressure`]). Released with
/// visibility 0 when `abort` fires while held.
pub(super) async fn process_held(
    shared: &Shared,
    message: &Received,
    abort: &CancellationToken,
) -> Report {
    loop {
        let mut report = process(shared, message, abort).await;
        if !shared.backpressure.record(&report.processed) {
            return report;
        }
        if !shared.backpressure.hold(abort).await {
            shared.backpressure.abandon_probe();
            report.processed = Processed::Failed(Failure::Stopped);
            return report;
        }
    }
}

/// Extends the message's visibility at half its timeout until `done`.
pub(super) async fn heartbeat(shared: Arc<Shared>, handle: String, done: CancellationToken) {
    let timeout = shared.queue.visibility_timeout.max(2);
    let period = Duration::from_secs(u64::from(timeout / 2));
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        match shared.queue.set_visibility(&handle, timeout).await {
            Ok(()) => metrics::counter!(m::HEARTBEATS).increment(1),
            Err(e) => {
                metrics::counter!(m::SQS_ERRORS, "operation" => "heartbeat").increment(1);
                tracing::warn!(error = %e, "cannot extend the visibility; the message may be delivered twice");
            }
        }
    }
}

/// What processing a message did, for its fate and its log line.
pub(super) struct Report {
    pub(super) processed: Processed,
    /// Checkpoints to forget once the message is deleted.
    pub(super) checkpoints: Vec<String>,
    /// The first object the message names (most name one).
    pub(super) first: Option<ObjectRef>,
    pub(super) objects: usize,
    pub(super) changes: u64,
}

impl Report {
    pub(super) fn early(processed: Processed) -> Self {
        Self {
            processed,
            checkpoints: Vec::new(),
            first: None,
            objects: 0,
            changes: 0,
        }
    }
}

/// Decodes the message and delivers each object it names, in order.
pub(super) async fn process(
    shared: &Shared,
    message: &Received,
    abort: &CancellationToken,
) -> Report {
    // A rejected change that `dlq redrive` put back: its body is a change, not a notification.
    if let Some(envelope) = RejectedChange::from_attributes(&message.attributes) {
        return rejected::replay(shared, message, envelope, abort).await;
    }
    let decoded = match envelope::decode(&message.body) {
        Ok(d) => d,
        Err(e) => {
            return Report::early(Processed::Failed(Failure::Poison {
                reason: "malformed_envelope",
                detail: e.to_string(),
            }))
        }
    };
    if decoded.objects.is_empty() {
        let reasons: Vec<_> = decoded.skipped.iter().map(|s| s.reason).collect();
        return Report::early(Processed::skipped(&reasons));
    }
    let mut report = Report::early(Processed::Skipped {
        reason: "no_changes",
    });
    report.first = decoded.objects.first().cloned();
    report.objects = decoded.objects.len();
    // Buckets of this message whose subscription was removed: counted once per message.
    let mut unsubscribed: Vec<&str> = Vec::new();
    let mut replaced = 0;
    for object in &decoded.objects {
        let span = tracing::info_span!("object", bucket = %object.bucket, key = %object.key);
        match deliver_one(shared, object, message, abort)
            .instrument(span)
            .await
        {
            Ok(Delivery::Changes(n)) => {
                report.changes += n;
                let work = shared.settings.checkpoint_fingerprint();
                report.checkpoints.push(checkpoint_id(object, &work));
            }
            Ok(Delivery::Replaced) => replaced += 1,
            Ok(Delivery::Unsubscribed) => {
                if !unsubscribed.contains(&object.bucket.as_str()) {
                    unsubscribed.push(&object.bucket);
                    note_late_notification(shared, &object.bucket).await;
                }
            }
            Err(failure) => {
                report.processed = Processed::Failed(failure);
                return report;
            }
        }
    }
    if report.changes > 0 {
        report.processed = Processed::Delivered {
            changes: report.changes,
        };
    } else if !unsubscribed.is_empty() {
        report.processed = Processed::Skipped {
            reason: "unsubscribed",
        };
    } else if replaced > 0 {
        report.processed = Processed::Skipped {
            reason: "object_replaced",
        };
    }
    report
}

/// What became of one object that did not fail.
pub(super) enum Delivery {
    /// Delivered: this many changes.
    Changes(u64),
    /// Its bucket's subscription was removed recently: nothing to deliver, nothing to retry.
    Unsubscribed,
    /// Rewritten since its notification: the newer version has its own notification.
    Replaced,
}

/// Counts a late notification on the bucket's tombstone, so `subscriptions list` can show
/// on-call which customers still send them. Best effort: the message is acknowledged anyway.
pub(super) async fn note_late_notification(shared: &Shared, bucket: &str) {
    tracing::info!(
        bucket,
        "notification for a removed subscription; acknowledged (the customer should remove the bucket's event notification)"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if let Err(e) = shared
        .subscriptions
        .note_late_notification(bucket, now)
        .await
    {
        tracing::debug!(bucket, error = %e, "cannot count the late notification");
    }
}

/// One object: its subscription, a fairness slot, then delivery.
pub(super) async fn deliver_one(
    shared: &Shared,
    object: &ObjectRef,
    message: &Received,
    abort: &CancellationToken,
) -> Result<Delivery, Failure> {
    let receive_count = message.receive_count;
    let subscription = match shared.lookup.get(&object.bucket, Instant::now()).await {
        Ok(Answer::Subscribed(s)) => s,
        Ok(Answer::Unsubscribed) => return Ok(Delivery::Unsubscribed),
        Ok(Answer::Unknown) => {
            let grace = shared.settings.subscriptions.unknown_bucket_grace_seconds;
            let age = message.sent_at.map(|sent| {
                std::time::SystemTime::now()
                    .duration_since(sent)
                    .unwrap_or_default()
            });
            return Err(early::unknown_bucket(
                &object.bucket,
                age,
                Duration::from_secs(grace),
            ));
        }
        Err(e) => {
            return Err(Failure::Transient {
                reason: "store_unavailable",
                detail: e.to_string(),
            })
        }
    };
    let owner = fingerprint(&subscription.api_key);
    let _slot = match claim(shared, &owner, receive_count).await {
        Some(slot) => slot,
        None => return Err(Failure::Busy),
    };
    let started = Instant::now();
    let result = object::deliver(shared, object, &subscription, abort).await;
    metrics::histogram!(m::OBJECT_DURATION).record(started.elapsed().as_secs_f64());
    match &result {
        Ok(d) => {
            metrics::counter!(m::OBJECTS, "outcome" => "delivered").increment(1);
            tracing::info!(
                records = d.tally.records,
                changes = d.tally.changes,
                accepted = d.accepted,
                rejected = d.rejected,
                resumed = d.resumed,
                ms = started.elapsed().as_millis() as u64,
                "object delivered"
            );
        }
        Err(failure) => {
            metrics::counter!(m::OBJECTS, "outcome" => "failed").increment(1);
            metrics::counter!(m::OBJECT_FAILURES, "kind" => failure.kind()).increment(1);
        }
    }
    // A pending subscription whose role just read an object of its bucket is proven.
    if subscription.pending && result.as_ref().is_ok_and(|d| !d.replaced) {
        verify(shared, &subscription).await;
    }
    result.map(|d| {
        if d.replaced {
            Delivery::Replaced
        } else {
            Delivery::Changes(d.tally.changes)
        }
    })
}

/// A pending subscription's role just read an object of its bucket: that proves ownership.
/// Best effort: the next delivered object tries again.
async fn verify(shared: &Shared, subscription: &crate::subscriptions::Subscription) {
    match shared.subscriptions.mark_verified(subscription).await {
        Ok(true) => tracing::info!("subscription verified by its first delivered object"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot mark the subscription verified"),
    }
}

/// Takes a slot for `owner` (see [`fairness`] for when it waits and when it gives up). Near
/// the queue's `maxReceiveCount` it always waits: deferring again would send a healthy message
/// to the DLQ.
pub(super) async fn claim(
    shared: &Shared,
    owner: &str,
    receive_count: u32,
) -> Option<fairness::Claim> {
    let must_wait = shared
        .retry
        .max_receive_count
        .is_some_and(|max| receive_count + 1 >= max);
    shared.fairness.claim(owner, must_wait).await
}
