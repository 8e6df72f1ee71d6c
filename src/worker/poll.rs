//! Polling: receive only what can start now, one task per message; [`super::Worker::poll_once`]
//! is the same step for one batch, handled in line.

use super::*;

/// Receives while there are free slots, starting one task per message.
pub(super) async fn poll_loop(
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let sqs = &shared.settings.sqs;
    let mut failures = 0u32;
    loop {
        // While the Changes API is down for everyone, receive nothing (backpressure).
        shared.backpressure.wait_open(&stop).await;
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
                handle_one(&shared, message, &abort).await;
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
