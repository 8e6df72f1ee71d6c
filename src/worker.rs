//! The daemon's worker: pollers long-poll SQS, each message runs envelope -> subscription ->
//! role -> S3 -> pipeline -> forward in its own task (at most `worker.max_inflight_messages`),
//! a heartbeat keeps its visibility while it runs, and [`fate::decide`] settles how it ends.
//! The worker never deletes a message whose changes were not all accepted (or refused for good).

pub mod fairness;
pub mod fate;
pub mod health;
mod moved;
pub mod object;

use crate::aws::credentials::Roles;
use crate::aws::queue::{Failure as DlqFailure, Queue, Received};
use crate::core::envelope::{self, ObjectRef};
use crate::forward::Forwarder;
use crate::metrics as m;
use crate::settings::Settings;
use crate::subscriptions::cache::{Answer, Lookup};
use crate::subscriptions::{checkpoint_id, fingerprint, Checkpoints, Subscriptions};
use crate::worker::health::Health;
use fate::{Failure, Fate, Processed, RetryPolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Everything a message's task needs, shared by all of them.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub queue: Queue,
    pub subscriptions: Arc<Subscriptions>,
    pub lookup: Arc<Lookup>,
    pub roles: Arc<Roles>,
    pub forwarder: Arc<Forwarder>,
    pub health: Arc<Health>,
    retry: RetryPolicy,
    fairness: fairness::Fairness,
    deletes: mpsc::Sender<Deletion>,
    moved: moved::Moved,
}

/// A message to delete, and the checkpoints to forget once it is gone.
struct Deletion {
    receipt_handle: String,
    message_id: String,
    checkpoints: Vec<String>,
}

/// The worker: pollers plus the message tasks they start.
pub struct Worker {
    shared: Arc<Shared>,
    deleter: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Builds the worker around a resolved queue.
    pub fn new(
        settings: Arc<Settings>,
        queue: Queue,
        subscriptions: Arc<Subscriptions>,
        lookup: Arc<Lookup>,
        roles: Arc<Roles>,
        forwarder: Arc<Forwarder>,
        health: Arc<Health>,
    ) -> Self {
        let retry = RetryPolicy {
            backoff_seconds: settings.worker.retry_backoff_seconds.clone(),
            defer_seconds: settings.worker.defer_seconds,
            max_receive_count: queue.max_receive_count,
        };
        // Waiting messages may hold the slots one customer's cap leaves unused; the rest of the
        // daemon's message slots always serve other customers or new receives.
        let cap = settings.worker.max_inflight_per_subscription;
        let max_waiting = settings.worker.max_inflight_messages.saturating_sub(cap);
        let fairness = fairness::Fairness::new(cap, max_waiting);
        let (deletes, rx) = mpsc::channel(1024);
        // The deleter holds no `Shared`: it ends when the last sender (in `Shared`) is dropped.
        let deleter = tokio::spawn(delete_loop(queue.clone(), Arc::clone(&subscriptions), rx));
        let shared = Arc::new(Shared {
            settings,
            queue,
            subscriptions,
            lookup,
            roles,
            forwarder,
            health,
            retry,
            fairness,
            deletes,
            moved: moved::Moved::new(moved::CAPACITY),
        });
        Self { shared, deleter }
    }

    /// Polls until `stop` is cancelled, then lets in-flight messages finish for
    /// `worker.shutdown_grace_seconds`; after that cancels them (they are released with
    /// visibility 0) and returns once every task ended.
    pub async fn run(self, stop: CancellationToken) {
        let abort = CancellationToken::new();
        let tracker = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(
            self.shared.settings.worker.max_inflight_messages,
        ));
        let mut pollers = Vec::new();
        for n in 0..self.shared.settings.sqs.pollers {
            let poller = poll_loop(
                Arc::clone(&self.shared),
                Arc::clone(&slots),
                tracker.clone(),
                stop.clone(),
                abort.clone(),
            );
            pollers.push(tokio::spawn(
                poller.instrument(tracing::info_span!("poller", n)),
            ));
        }
        stop.cancelled().await;
        for p in pollers {
            let _ = p.await;
        }
        tracker.close();
        let grace = Duration::from_secs(self.shared.settings.worker.shutdown_grace_seconds);
        tracing::info!(
            in_flight = tracker.len(),
            grace_seconds = grace.as_secs(),
            "stopped receiving; finishing in-flight messages"
        );
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                in_flight = tracker.len(),
                "grace period over; releasing the remaining messages"
            );
            abort.cancel();
            tracker.wait().await;
        }
        let Self { shared, deleter } = self;
        drop(shared);
        let _ = deleter.await;
        tracing::info!("worker stopped");
    }
}

/// Receives while there are free slots, starting one task per message.
async fn poll_loop(
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let sqs = &shared.settings.sqs;
    let mut failures = 0u32;
    loop {
        // Receive only what can start now: a message waiting for a slot would be invisible
        // to other replicas for nothing.
        let first = tokio::select! {
            () = stop.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
        };
        let mut permits = vec![first];
        while permits.len() < sqs.max_messages as usize {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let max = i32::try_from(permits.len()).unwrap_or(1);
        let received = tokio::select! {
            () = stop.cancelled() => return,
            r = shared.queue.receive(max, sqs.wait_time_seconds) => r,
        };
        let messages = match received {
            Ok(messages) => {
                failures = 0;
                shared.health.set_queue_ok(true);
                messages
            }
            Err(e) => {
                failures += 1;
                shared.health.set_queue_ok(false);
                metrics::counter!(m::SQS_ERRORS, "operation" => "receive").increment(1);
                let delay = poll_backoff(failures, rand::random::<f64>());
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "receive failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        metrics::counter!(m::MESSAGES_RECEIVED).increment(messages.len() as u64);
        for message in messages {
            let Some(permit) = permits.pop() else { break };
            let shared = Arc::clone(&shared);
            let abort = abort.clone();
            tracker.spawn(async move {
                handle(&shared, message, &abort).await;
                drop(permit);
            });
        }
    }
}

/// Exponential backoff with full jitter for receive errors: up to 0.5 s, 1 s, ... 30 s.
#[must_use]
pub fn poll_backoff(failures: u32, jitter: f64) -> Duration {
    let cap = 500u64
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(30_000);
    Duration::from_millis((cap as f64 * jitter.clamp(0.0, 1.0)) as u64 + 50)
}

/// One message from receive to fate, with a heartbeat while it runs.
async fn handle(shared: &Arc<Shared>, message: Received, abort: &CancellationToken) {
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
        let report = process(shared, &message, abort).await;
        done.cancel();
        let _ = heartbeat.await;
        let fate = fate::decide(
            report.processed,
            message.receive_count,
            &shared.retry,
            rand::random(),
        );
        let outcome = settle(shared, &message, fate, report.checkpoints).await;
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
    }
    .instrument(span)
    .await;
}

/// Extends the message's visibility at half its timeout until `done`.
async fn heartbeat(shared: Arc<Shared>, handle: String, done: CancellationToken) {
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
struct Report {
    processed: Processed,
    /// Checkpoints to forget once the message is deleted.
    checkpoints: Vec<String>,
    /// The first object the message names (most name one).
    first: Option<ObjectRef>,
    objects: usize,
    changes: u64,
}

impl Report {
    fn early(processed: Processed) -> Self {
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
async fn process(shared: &Shared, message: &Received, abort: &CancellationToken) -> Report {
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
    for object in &decoded.objects {
        let span = tracing::info_span!("object", bucket = %object.bucket, key = %object.key);
        match deliver_one(shared, object, message.receive_count, abort)
            .instrument(span)
            .await
        {
            Ok(Delivery::Changes(n)) => {
                report.changes += n;
                report.checkpoints.push(checkpoint_id(object));
            }
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
    }
    report
}

/// What became of one object that did not fail.
enum Delivery {
    /// Delivered: this many changes.
    Changes(u64),
    /// Its bucket's subscription was removed recently: nothing to deliver, nothing to retry.
    Unsubscribed,
}

/// Counts a late notification on the bucket's tombstone, so `subscriptions list` can show
/// on-call which customers still send them. Best effort: the message is acknowledged anyway.
async fn note_late_notification(shared: &Shared, bucket: &str) {
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
async fn deliver_one(
    shared: &Shared,
    object: &ObjectRef,
    receive_count: u32,
    abort: &CancellationToken,
) -> Result<Delivery, Failure> {
    let subscription = match shared.lookup.get(&object.bucket, Instant::now()).await {
        Ok(Answer::Subscribed(s)) => s,
        Ok(Answer::Unsubscribed) => return Ok(Delivery::Unsubscribed),
        Ok(Answer::Unknown) => {
            return Err(Failure::Poison {
                reason: "unknown_bucket",
                detail: format!(
                    "no subscription for bucket {} (subscribe it, then redrive)",
                    object.bucket
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
    result.map(|d| Delivery::Changes(d.tally.changes))
}

/// Takes a slot for `owner` (see [`fairness`] for when it waits and when it gives up). Near
/// the queue's `maxReceiveCount` it always waits: deferring again would send a healthy message
/// to the DLQ.
async fn claim(shared: &Shared, owner: &str, receive_count: u32) -> Option<fairness::Claim> {
    let must_wait = shared
        .retry
        .max_receive_count
        .is_some_and(|max| receive_count + 1 >= max);
    shared.fairness.claim(owner, must_wait).await
}

/// Carries out the fate.
async fn settle(
    shared: &Shared,
    message: &Received,
    fate: Fate,
    checkpoints: Vec<String>,
) -> &'static str {
    let handle = &message.receipt_handle;
    let outcome = match fate {
        Fate::Delete { skipped } => {
            if let Some(reason) = skipped {
                metrics::counter!(m::MESSAGES_SKIPPED, "reason" => reason).increment(1);
                tracing::info!(reason, "skipped");
            }
            delete_later(shared, message, checkpoints).await;
            if skipped.is_some() {
                "skipped"
            } else {
                "delivered"
            }
        }
        Fate::Retry {
            seconds,
            reason,
            detail,
        } => {
            metrics::counter!(m::MESSAGE_FAILURES, "reason" => reason).increment(1);
            tracing::warn!(reason, detail = %detail, retry_in_seconds = seconds, "will retry");
            set_visibility(shared, handle, seconds).await;
            "retry"
        }
        Fate::Release => {
            tracing::info!("released for another worker (shutting down)");
            set_visibility(shared, handle, 0).await;
            "released"
        }
        Fate::Defer { seconds } => {
            tracing::debug!(seconds, "subscription busy; deferred");
            set_visibility(shared, handle, seconds).await;
            "deferred"
        }
        Fate::DeadLetter { reason, detail } => {
            metrics::counter!(m::MESSAGE_FAILURES, "reason" => reason).increment(1);
            let outcome = dead_letter(shared, message, reason, &detail).await;
            if outcome == "dead_lettered" {
                metrics::counter!(m::MESSAGES_DEAD_LETTERED, "reason" => reason).increment(1);
            }
            outcome
        }
    };
    metrics::counter!(m::MESSAGES_FINISHED, "fate" => outcome).increment(1);
    outcome
}

async fn set_visibility(shared: &Shared, handle: &str, seconds: u32) {
    if let Err(e) = shared.queue.set_visibility(handle, seconds).await {
        metrics::counter!(m::SQS_ERRORS, "operation" => "change_visibility").increment(1);
        tracing::warn!(error = %e, "cannot change the visibility; the queue's own timeout applies");
    }
}

/// Copies the message to the DLQ with its reason, then deletes it. If the copy fails the
/// message stays (SQS's own redrive is the fallback), so it is never lost.
async fn dead_letter(
    shared: &Shared,
    message: &Received,
    reason: &'static str,
    detail: &str,
) -> &'static str {
    let failed_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let failure = DlqFailure {
        reason,
        detail,
        failed_at: &failed_at,
    };
    if shared.moved.contains(&message.message_id) {
        // Copied before, but its delete failed: only the delete is left to do.
        tracing::warn!(
            reason,
            "already in the dead-letter queue; deleting the redelivered message"
        );
        metrics::counter!(m::MESSAGES_SKIPPED, "reason" => "already_dead_lettered").increment(1);
        delete_later(shared, message, Vec::new()).await;
        return "skipped";
    }
    if let Err(e) = shared.queue.send_to_dlq(&message.body, &failure).await {
        metrics::counter!(m::SQS_ERRORS, "operation" => "send_to_dlq").increment(1);
        tracing::error!(reason, detail, error = %e, "cannot move the message to the DLQ; it stays in the queue");
        let seconds = fate::retry_delay(message.receive_count, &shared.retry.backoff_seconds, 0.5);
        set_visibility(shared, &message.receipt_handle, seconds).await;
        return "retry";
    }
    tracing::error!(reason, detail, "moved to the dead-letter queue");
    shared.moved.insert(&message.message_id);
    delete_later(shared, message, Vec::new()).await;
    "dead_lettered"
}

/// Hands a finished message to the deleter, with the checkpoints to forget once it is gone.
async fn delete_later(shared: &Shared, message: &Received, checkpoints: Vec<String>) {
    let deletion = Deletion {
        receipt_handle: message.receipt_handle.clone(),
        message_id: message.message_id.clone(),
        checkpoints,
    };
    if shared.deletes.send(deletion).await.is_err() {
        tracing::error!("the deleter stopped; the message will be delivered again");
    }
}

/// Deletes finished messages in batches of up to 10 (gathered for a few milliseconds), then
/// forgets their checkpoints. A failed entry is retried once alone; if that fails too, the
/// message comes back and its checkpoint makes the redelivery cheap.
async fn delete_loop(
    queue: Queue,
    subscriptions: Arc<Subscriptions>,
    mut rx: mpsc::Receiver<Deletion>,
) {
    let mut batch = Vec::with_capacity(10);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let gather = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(gather);
        while batch.len() < 10 {
            tokio::select! {
                () = &mut gather => break,
                next = rx.recv() => match next { Some(d) => batch.push(d), None => break },
            }
        }
        delete_batch(&queue, &subscriptions, std::mem::take(&mut batch)).await;
    }
}

async fn delete_batch(queue: &Queue, subscriptions: &Subscriptions, batch: Vec<Deletion>) {
    let handles: Vec<String> = batch.iter().map(|d| d.receipt_handle.clone()).collect();
    let failed = match queue.delete_batch(&handles).await {
        Ok(failed) => failed,
        Err(e) => {
            metrics::counter!(m::SQS_ERRORS, "operation" => "delete").increment(1);
            tracing::warn!(error = %e, "batch delete failed; retrying one by one");
            handles.iter().map(|h| (h.clone(), e.to_string())).collect()
        }
    };
    let mut gone: Vec<&Deletion> = batch
        .iter()
        .filter(|d| !failed.iter().any(|(h, _)| h == &d.receipt_handle))
        .collect();
    for (handle, why) in &failed {
        let Some(d) = batch.iter().find(|d| &d.receipt_handle == handle) else {
            continue;
        };
        match queue.delete_batch(std::slice::from_ref(handle)).await {
            Ok(f) if f.is_empty() => gone.push(d),
            _ => {
                metrics::counter!(m::SQS_ERRORS, "operation" => "delete").increment(1);
                tracing::warn!(message_id = %d.message_id, reason = %why, "cannot delete; the message will be delivered again");
            }
        }
    }
    for d in gone {
        for id in &d.checkpoints {
            if let Err(e) = subscriptions.store().clear_checkpoint(id).await {
                metrics::counter!(m::CHECKPOINT_ERRORS).increment(1);
                tracing::debug!(error = %e, "cannot clear a checkpoint; it expires on its own");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_backoff_grows_to_thirty_seconds_and_never_reaches_zero() {
        assert_eq!(poll_backoff(1, 1.0), Duration::from_millis(550));
        assert_eq!(poll_backoff(2, 1.0), Duration::from_millis(1050));
        assert_eq!(poll_backoff(20, 1.0), Duration::from_millis(30_050));
        assert_eq!(poll_backoff(3, 0.0), Duration::from_millis(50));
    }
}
