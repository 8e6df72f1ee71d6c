//! The daemon's worker: pollers long-poll SQS, each message runs envelope -> subscription ->
//! role -> S3 -> pipeline -> forward in its own task (at most `worker.max_inflight_messages`),
//! a heartbeat keeps its visibility while it runs, and [`fate::decide`] settles how it ends.
//! The worker never deletes a message whose changes were not all accepted (or refused for good).

pub mod backpressure;
mod early;
pub mod fairness;
pub mod fate;
mod handle;
pub mod health;
mod moved;
pub mod object;
mod poll;
mod rejected;
mod settle;

pub use handle::Handled;
use handle::*;
pub use poll::poll_backoff;
use poll::*;
use settle::*;

use crate::aws::credentials::Roles;
use crate::aws::queue::{Failure as DlqFailure, Queue, QueueError, Received};
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
    backpressure: backpressure::Backpressure,
    deletes: mpsc::Sender<Deletion>,
    moved: moved::Moved,
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
        let backpressure = backpressure::Backpressure::new(settings.worker.change_retry());
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
            backpressure,
            deletes,
            moved: moved::Moved::new(moved::CAPACITY),
        });
        Self { shared, deleter }
    }

    /// Receives one batch (one long poll of up to `sqs.max_messages`) and takes each message
    /// to its fate, one after another. The pollers of [`Self::run`] do the same step
    /// concurrently; this is the seam for seeing a message's fate without running them.
    ///
    /// # Errors
    /// The receive's error, naming the queue.
    pub async fn poll_once(&self) -> Result<Vec<Handled>, QueueError> {
        let sqs = &self.shared.settings.sqs;
        let messages = self
            .shared
            .queue
            .receive(sqs.max_messages, sqs.wait_time_seconds)
            .await?;
        let abort = CancellationToken::new();
        let mut handled = Vec::with_capacity(messages.len());
        for message in messages {
            handled.push(handle_one(&self.shared, message, &abort).await);
        }
        Ok(handled)
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

#[cfg(test)]
mod tests;
