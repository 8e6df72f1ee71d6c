//! Carrying out a fate: delete (in batches, after the checkpoints are safe), change the
//! visibility, or copy to the DLQ with the reason and then delete.

use super::*;

/// A message to delete, and the checkpoints to forget once it is gone.
pub(super) struct Deletion {
    pub(super) receipt_handle: String,
    pub(super) message_id: String,
    pub(super) checkpoints: Vec<String>,
}

/// Carries out the fate.
pub(super) async fn settle(
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
        Fate::Requeue => requeue(shared, message).await,
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

/// Sends a copy, then deletes the original (its checkpoints stay for the copy to resume
/// from); if the copy fails, releases it instead.
async fn requeue(shared: &Shared, message: &Received) -> &'static str {
    match shared.queue.send_copy(&message.body).await {
        Ok(()) => {
            tracing::info!("requeued as a new copy (stopped on its last allowed receive)");
            delete_later(shared, message, Vec::new()).await;
            "requeued"
        }
        Err(e) => {
            metrics::counter!(m::SQS_ERRORS, "operation" => "requeue").increment(1);
            tracing::warn!(error = %e, "cannot requeue a copy; releasing the message");
            set_visibility(shared, &message.receipt_handle, 0).await;
            "released"
        }
    }
}

pub(super) async fn set_visibility(shared: &Shared, handle: &str, seconds: u32) {
    if let Err(e) = shared.queue.set_visibility(handle, seconds).await {
        metrics::counter!(m::SQS_ERRORS, "operation" => "change_visibility").increment(1);
        tracing::warn!(error = %e, "cannot change the visibility; the queue's own timeout applies");
    }
}

/// Copies the message to the DLQ with its reason, then deletes it. If the copy fails the
/// message stays (SQS's own redrive is the fallback), so it is never lost.
pub(super) async fn dead_letter(
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
pub(super) async fn delete_later(shared: &Shared, message: &Received, checkpoints: Vec<String>) {
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
pub(super) async fn delete_loop(
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

pub(super) async fn delete_batch(
    queue: &Queue,
    subscriptions: &Subscriptions,
    batch: Vec<Deletion>,
) {
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
