//! How long the retry schedule covers before a message is dead-lettered: `maxReceiveCount`
//! receives, each trying its changes for `worker.change_retry_seconds`, with
//! `worker.retry_backoff_seconds` between them. An outage of S3, STS or the store longer than
//! that sends the backlog to the DLQ (a Changes API outage pauses delivery instead, see
//! `worker::backpressure`), so `check` warns under [`MIN_COVERED_SECONDS`].

use super::{human, retry_window_seconds, Finding, Status};

/// A few hours: long enough for on-call to notice and fix an outage on our side.
pub const MIN_COVERED_SECONDS: u64 = 3 * 3600;

/// Seconds from a message's first receive to its dead-lettering when every attempt fails.
#[must_use]
pub fn covered_seconds(count: u32, backoff_seconds: &[u32], change_retry_seconds: u64) -> u64 {
    retry_window_seconds(count, backoff_seconds) + u64::from(count) * change_retry_seconds
}

/// The `retry schedule` finding: ok from [`MIN_COVERED_SECONDS`], a warning under it.
#[must_use]
pub fn schedule_finding(count: u32, backoff_seconds: &[u32], change_retry_seconds: u64) -> Finding {
    let covered = covered_seconds(count, backoff_seconds, change_retry_seconds);
    let what = "retry schedule".to_owned();
    let detail = format!(
        "a message that keeps failing is dead-lettered about {} after its first receive \
         (maxReceiveCount {count}, worker.retry_backoff_seconds {backoff_seconds:?}, \
         worker.change_retry_seconds {change_retry_seconds})",
        human(covered)
    );
    if covered >= MIN_COVERED_SECONDS {
        return Finding {
            status: Status::Ok,
            what,
            detail,
            fix: String::new(),
        };
    }
    Finding {
        status: Status::Warn,
        what,
        detail: format!(
            "{detail}: an outage of S3, STS or the store longer than that sends the backlog to \
             the DLQ (a Changes API outage pauses delivery instead)"
        ),
        fix: format!(
            "cover {} at least: raise maxReceiveCount in the queue's RedrivePolicy (10 with the \
             default backoff 30,120,600,1800 covers about 3 h 30 min) or lengthen \
             worker.retry_backoff_seconds",
            human(MIN_COVERED_SECONDS)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_BACKOFF: [u32; 4] = [30, 120, 600, 1800];

    #[test]
    fn the_recommended_five_receives_cover_under_an_hour_and_warn() {
        // 30 + 120 + 600 + 1800 s of backoff and five patiences of 120 s.
        assert_eq!(covered_seconds(5, &DEFAULT_BACKOFF, 120), 3_150);
        let finding = schedule_finding(5, &DEFAULT_BACKOFF, 120);
        assert_eq!(finding.status, Status::Warn, "{finding}");
        assert!(finding.detail.contains("52 min"), "{finding}");
        assert!(finding.fix.contains("maxReceiveCount"), "{finding}");
    }

    #[test]
    fn ten_receives_with_the_default_backoff_cover_three_hours() {
        assert_eq!(covered_seconds(10, &DEFAULT_BACKOFF, 120), 12_750);
        let finding = schedule_finding(10, &DEFAULT_BACKOFF, 120);
        assert_eq!(finding.status, Status::Ok, "{finding}");
        assert!(finding.detail.contains("3 h 32 min"), "{finding}");
    }
}
