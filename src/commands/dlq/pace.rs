//! `dlq redrive --rate`: how many messages to move per second, and how many to receive at a
//! time so a slow rate does not hold messages invisible for long.

use super::*;

/// `--rate`: at most one move per interval.
#[derive(Debug)]
pub(super) struct Pace {
    pub(super) interval: Option<Duration>,
    pub(super) next: Instant,
}

impl Pace {
    pub(super) fn new(rate: Option<f64>) -> Result<Self, DlqError> {
        let interval = match rate {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => {
                Some(Duration::try_from_secs_f64(1.0 / r).map_err(|_| DlqError::BadRate(r))?)
            }
            Some(r) => return Err(DlqError::BadRate(r)),
        };
        Ok(Self {
            interval,
            next: Instant::now(),
        })
    }

    /// Messages per receive such that the last one of a batch is moved within half of the
    /// hold: a slow rate receives fewer at a time.
    pub(super) fn batch_size(&self) -> usize {
        let Some(interval) = self.interval else {
            return BATCH;
        };
        let half_hold = u128::from(REDRIVE_HOLD_SECONDS.unsigned_abs()) * 1000 / 2;
        let per_half_hold = half_hold / interval.as_millis().max(1);
        usize::try_from(per_half_hold)
            .unwrap_or(BATCH)
            .saturating_add(1)
            .min(BATCH)
    }

    /// Waits until the next move may start (so a receive is not made long before its first
    /// move); `false` when `stop` came first.
    pub(super) async fn ready(&self, stop: &CancellationToken) -> bool {
        if stop.is_cancelled() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until(self.next) => true,
            () = stop.cancelled() => false,
        }
    }

    /// Waits for the next move's turn and takes it; `false` when `stop` came first.
    pub(super) async fn take(&mut self, stop: &CancellationToken) -> bool {
        if !self.ready(stop).await {
            return false;
        }
        if let Some(interval) = self.interval {
            self.next = Instant::now() + interval;
        }
        true
    }
}
