//! What `/healthz` and `/readyz` report: the daemon's main loop and the worker update it, the
//! operations listener ([`crate::http::ops`]) reads it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the main loop may go without a tick before `/healthz` fails.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

/// What `/healthz` and `/readyz` report, updated by the daemon as it runs.
#[derive(Debug, Default)]
pub struct Health {
    /// Unix milliseconds of the main loop's last tick.
    ticked_ms: AtomicU64,
    queue_ok: AtomicBool,
    store_ok: AtomicBool,
    stopping: AtomicBool,
}

impl Health {
    /// A health state that has not ticked yet and is not ready.
    #[must_use]
    pub fn new() -> Arc<Self> {
        let health = Self::default();
        health.tick();
        Arc::new(health)
    }

    /// The main loop turned.
    pub fn tick(&self) {
        self.ticked_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// The last receive from the queue succeeded (or failed).
    pub fn set_queue_ok(&self, ok: bool) {
        self.queue_ok.store(ok, Ordering::Relaxed);
    }

    /// The last store probe succeeded (or failed).
    pub fn set_store_ok(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::Relaxed);
    }

    /// Shutting down: not ready for new work any more.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether the main loop ticked within [`STALL_AFTER`].
    #[must_use]
    pub fn alive(&self) -> bool {
        let age = unix_ms().saturating_sub(self.ticked_ms.load(Ordering::Relaxed));
        u128::from(age) < STALL_AFTER.as_millis()
    }

    /// Why the daemon is not ready, or `None` when it is.
    #[must_use]
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Relaxed) {
            Some("shutting down")
        } else if !self.queue_ok.load(Ordering::Relaxed) {
            Some("the queue has not answered a receive yet, or the last one failed")
        } else if !self.store_ok.load(Ordering::Relaxed) {
            Some("the subscription store did not answer its last probe")
        } else {
            None
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_the_queue_and_the_store_and_ends_at_shutdown() {
        let h = Health::new();
        assert!(h.alive());
        assert!(h.not_ready().is_some());
        h.set_queue_ok(true);
        assert!(h.not_ready().is_some_and(|w| w.contains("store")));
        h.set_store_ok(true);
        assert_eq!(h.not_ready(), None);
        h.set_stopping();
        assert_eq!(h.not_ready(), Some("shutting down"));
    }

    #[test]
    fn a_main_loop_that_stopped_ticking_is_not_alive() {
        let h = Health::new();
        h.ticked_ms.store(unix_ms() - 61_000, Ordering::Relaxed);
        assert!(!h.alive());
        h.tick();
        assert!(h.alive());
    }
}
