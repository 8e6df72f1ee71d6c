use super::*;

#[test]
fn receive_backoff_grows_to_thirty_seconds_and_never_reaches_zero() {
    assert_eq!(poll_backoff(1, 1.0), Duration::from_millis(550));
    assert_eq!(poll_backoff(2, 1.0), Duration::from_millis(1050));
    assert_eq!(poll_backoff(20, 1.0), Duration::from_millis(30_050));
    assert_eq!(poll_backoff(3, 0.0), Duration::from_millis(50));
}
