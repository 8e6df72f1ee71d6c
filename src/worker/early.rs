//! Early notifications: with the CloudFormation template the bucket's notification exists
//! before the customer subscribes, so a message naming an unknown bucket is often just early.
//! It is retried (its normal backoff) until it is `subscriptions.unknown_bucket_grace_seconds`
//! old, then dead-lettered as `unknown_bucket`. Pure: the age is passed in.

use super::fate::Failure;
use std::time::Duration;

/// The failure for a message naming `bucket`, which has no subscription, when the message is
/// `age` old (`None`: unknown, taken as past the grace).
#[must_use]
pub fn unknown_bucket(bucket: &str, age: Option<Duration>, grace: Duration) -> Failure {
    match age {
        Some(age) if age < grace => Failure::Transient {
            reason: "unknown_bucket",
            detail: format!(
                "no subscription for bucket {bucket} yet; retried until the message is {} s old (subscriptions.unknown_bucket_grace_seconds), then dead-lettered",
                grace.as_secs()
            ),
        },
        _ => Failure::Poison {
            reason: "unknown_bucket",
            detail: format!("no subscription for bucket {bucket} (subscribe it, then redrive)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(900);

    #[test]
    fn a_young_message_for_an_unknown_bucket_is_retried() {
        let failure = unknown_bucket("trail", Some(Duration::from_secs(5)), GRACE);
        assert!(
            matches!(&failure, Failure::Transient { reason: "unknown_bucket", detail } if detail.contains("trail")),
            "{failure:?}"
        );
    }

    #[test]
    fn an_old_or_ageless_message_goes_to_the_dlq() {
        for age in [Some(GRACE), Some(GRACE * 2), None] {
            let failure = unknown_bucket("trail", age, GRACE);
            assert!(
                matches!(&failure, Failure::Poison { reason: "unknown_bucket", detail } if detail.contains("trail")),
                "{age:?}: {failure:?}"
            );
        }
    }

    #[test]
    fn no_grace_dead_letters_at_once() {
        let failure = unknown_bucket("trail", Some(Duration::ZERO), Duration::ZERO);
        assert!(matches!(failure, Failure::Poison { .. }));
    }
}
