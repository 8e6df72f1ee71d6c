//! Backpressure: when the Changes API fails for everyone (5xx, timeouts, refused connections,
//! DNS), or our own AWS access does (STS or S3 unavailable: throttled, 5xx, unreachable), stop
//! receiving and hold what is in flight instead of spending receives on an outage.
//!
//! The signal is a message that failed with one of [`OUTAGE_REASONS`] (`bigpanda_unavailable`:
//! its change gave up after its patience, `worker.change_retry_seconds`; `bigpanda_endpoint`:
//! the base URL does not answer like the Changes API; `sts_unavailable` or
//! `s3_unavailable` after the SDK's own retries) while no delivery of any customer succeeded
//! within that patience: the dependency is down for everyone that has work, not for one
//! customer (their 401/403, refused role or denied bucket are other reasons, and a 429 never
//! fails a change).
//! While paused, the pollers receive nothing; messages in flight keep their slot and their
//! heartbeat, and one of them at a time is tried again as a probe at a growing interval
//! ([`PROBE_FIRST`] doubling up to [`PROBE_MAX`]). The first success resumes delivery. One log
//! line and the `ctc_delivery_paused` gauge mark each change of state.
//!
//! [`State`] is the state machine, pure: every method takes `now`.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fate::{Failure, Processed};
use crate::metrics as m;

/// The failure reasons that signal an outage, with the `reason` label of `ctc_delivery_paused`:
/// the Changes API's, or our own AWS access's.
pub const OUTAGE_REASONS: [(&str, &str); 4] = [
    ("bigpanda_unavailable", "changes_api"),
    // A wrong `bigpanda.base_url` (or a proxy in front of it) fails every key alike.
    ("bigpanda_endpoint", "changes_api"),
    ("sts_unavailable", "aws"),
    ("s3_unavailable", "aws"),
];

/// The `ctc_delivery_paused` label for a failure reason, when it signals an outage.
#[must_use]
pub fn outage(reason: &str) -> Option<&'static str> {
    OUTAGE_REASONS
        .iter()
        .find(|(r, _)| *r == reason)
        .map(|(_, label)| *label)
}
/// The first probe's delay after a pause begins.
pub const PROBE_FIRST: Duration = Duration::from_secs(1);
/// The longest interval between probes.
pub const PROBE_MAX: Duration = Duration::from_secs(60);

/// A change of state, to log and show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Paused,
    Resumed { paused_for: Duration },
}

/// What a held message does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Delivery is open: go on.
    Open,
    /// This message is the probe: try again now.
    Probe,
    /// Another message probes, or the next probe is not due: wait until then.
    WaitUntil(Instant),
}

/// The pause/resume state machine.
#[derive(Debug)]
pub struct State {
    /// How long a change is retried before its message fails (`worker.change_retry_seconds`).
    patience: Duration,
    last_success: Option<Instant>,
    paused: Option<Paused>,
}

#[derive(Debug, Clone, Copy)]
struct Paused {
    since: Instant,
    interval: Duration,
    next_probe: Instant,
    probing: bool,
}

impl State {
    #[must_use]
    pub fn new(patience: Duration) -> Self {
        State {
            patience,
            last_success: None,
            paused: None,
        }
    }

    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// A delivery succeeded: resume if paused.
    pub fn on_success(&mut self, now: Instant) -> Option<Change> {
        self.last_success = Some(now);
        let paused = self.paused.take()?;
        Some(Change::Resumed {
            paused_for: now.saturating_duration_since(paused.since),
        })
    }

    /// A message failed because the Changes API was unavailable: pause when nothing succeeded
    /// within a patience; a failed probe waits twice as long for the next.
    pub fn on_outage(&mut self, now: Instant) -> Option<Change> {
        if let Some(paused) = &mut self.paused {
            if paused.probing {
                paused.probing = false;
                paused.interval = (paused.interval * 2).min(PROBE_MAX);
                paused.next_probe = now + paused.interval;
            }
            return None;
        }
        let recent = self
            .last_success
            .is_some_and(|at| now.saturating_duration_since(at) < self.patience);
        if recent {
            return None;
        }
        self.paused = Some(Paused {
            since: now,
            interval: PROBE_FIRST,
            next_probe: now + PROBE_FIRST,
            probing: false,
        });
        Some(Change::Paused)
    }

    /// A held message asks whether to go on, probe or wait.
    pub fn turn(&mut self, now: Instant) -> Turn {
        let Some(paused) = &mut self.paused else {
            return Turn::Open;
        };
        if paused.probing || now < paused.next_probe {
            // A probe in progress ends with a success or an outage, which wakes the waiters.
            let wake = if paused.probing {
                now + paused.interval
            } else {
                paused.next_probe
            };
            return Turn::WaitUntil(wake);
        }
        paused.probing = true;
        Turn::Probe
    }

    /// The probe ended some other way (stopped, another failure): let the next one go.
    pub fn probe_abandoned(&mut self) {
        if let Some(paused) = &mut self.paused {
            paused.probing = false;
        }
    }
}

/// The worker's backpressure: [`State`] behind a lock, with a wake-up for waiters.
pub struct Backpressure {
    state: Mutex<State>,
    changed: Notify,
}

impl Backpressure {
    #[must_use]
    pub fn new(patience: Duration) -> Self {
        Backpressure {
            state: Mutex::new(State::new(patience)),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records how processing a message ended; `true` when it failed with the outage and
    /// delivery is now paused, so the message should be held rather than given back.
    pub fn record(&self, processed: &Processed) -> bool {
        let now = Instant::now();
        let outage_label = match processed {
            Processed::Failed(Failure::Transient { reason, .. }) => outage(reason),
            _ => None,
        };
        let change = match (processed, outage_label) {
            (Processed::Delivered { .. }, _) => self.lock().on_success(now),
            (_, Some(_)) => self.lock().on_outage(now),
            _ => None,
        };
        match change {
            Some(Change::Paused) => {
                let label = outage_label.unwrap_or("changes_api");
                metrics::gauge!(m::DELIVERY_PAUSED, "reason" => label).set(1.0);
                tracing::warn!(
                    reason = label,
                    "a dependency fails for every customer with work: delivery paused (no new receives; in-flight messages held and probed)"
                );
            }
            Some(Change::Resumed { paused_for }) => {
                for (_, label) in OUTAGE_REASONS {
                    metrics::gauge!(m::DELIVERY_PAUSED, "reason" => label).set(0.0);
                }
                tracing::info!(
                    paused_seconds = paused_for.as_secs(),
                    "a probe succeeded: delivery resumed"
                );
            }
            None => {}
        }
        if change.is_some() {
            self.changed.notify_waiters();
        }
        if outage_label.is_some() {
            // A failed probe frees the next probe's turn.
            self.changed.notify_waiters();
        }
        outage_label.is_some() && self.lock().is_paused()
    }

    /// Waits while delivery is paused (the pollers' hook); returns at once otherwise, or
    /// when `stop` fires.
    pub async fn wait_open(&self, stop: &CancellationToken) {
        loop {
            let notified = self.changed.notified();
            if !self.lock().is_paused() {
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = notified => {}
            }
        }
    }

    /// Holds a message until it may be tried again (delivery resumed, or its turn to probe);
    /// `false` when `abort` fired first.
    pub async fn hold(&self, abort: &CancellationToken) -> bool {
        loop {
            let notified = self.changed.notified();
            let turn = self.lock().turn(Instant::now());
            let wake = match turn {
                Turn::Open | Turn::Probe => return true,
                Turn::WaitUntil(wake) => wake,
            };
            tokio::select! {
                () = abort.cancelled() => return false,
                () = notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// A held message stopped without a result: the next probe may go.
    pub fn abandon_probe(&self) {
        self.lock().probe_abandoned();
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn an_outage_with_no_recent_success_pauses_and_a_success_resumes() {
        let t0 = Instant::now();
        let mut state = State::new(PATIENCE);
        assert_eq!(state.turn(t0), Turn::Open);
        assert_eq!(state.on_outage(t0), Some(Change::Paused));
        assert!(state.is_paused());
        assert_eq!(
            state.on_outage(t0),
            None,
            "one change of state, one log line"
        );
        let later = t0 + Duration::from_secs(42);
        assert_eq!(
            state.on_success(later),
            Some(Change::Resumed {
                paused_for: Duration::from_secs(42)
            })
        );
        assert_eq!(state.turn(later), Turn::Open);
    }

    #[test]
    fn a_success_within_the_patience_means_the_api_is_not_down_for_everyone() {
        let t0 = Instant::now();
        let mut state = State::new(PATIENCE);
        state.on_success(t0);
        assert_eq!(state.on_outage(t0 + Duration::from_secs(9)), None);
        assert!(!state.is_paused());
        assert_eq!(
            state.on_outage(t0 + Duration::from_secs(10)),
            Some(Change::Paused)
        );
    }

    #[test]
    fn one_probe_at_a_time_at_an_interval_that_doubles_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut state = State::new(PATIENCE);
        state.on_outage(t0);
        assert_eq!(state.turn(t0), Turn::WaitUntil(t0 + PROBE_FIRST));
        let mut now = t0 + PROBE_FIRST;
        let mut intervals = Vec::new();
        for _ in 0..8 {
            assert_eq!(state.turn(now), Turn::Probe);
            assert!(
                matches!(state.turn(now), Turn::WaitUntil(_)),
                "a second message waits while one probes"
            );
            state.on_outage(now);
            let Turn::WaitUntil(next) = state.turn(now) else {
                panic!("the failed probe must wait")
            };
            intervals.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(intervals, vec![2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn the_changes_api_and_our_own_aws_access_are_outages_a_customers_failures_are_not() {
        assert_eq!(outage("bigpanda_unavailable"), Some("changes_api"));
        assert_eq!(outage("bigpanda_endpoint"), Some("changes_api"));
        assert_eq!(outage("sts_unavailable"), Some("aws"));
        assert_eq!(outage("s3_unavailable"), Some("aws"));
        for customer in [
            "role_refused",
            "access_denied",
            "bigpanda_unauthorized",
            "unknown_bucket",
        ] {
            assert_eq!(outage(customer), None, "{customer}");
        }
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_message_probe() {
        let t0 = Instant::now();
        let mut state = State::new(PATIENCE);
        state.on_outage(t0);
        let due = t0 + PROBE_FIRST;
        assert_eq!(state.turn(due), Turn::Probe);
        state.probe_abandoned();
        assert_eq!(state.turn(due), Turn::Probe);
    }
}
