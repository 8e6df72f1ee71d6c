//! Metric names, in one place, so dashboards and code agree. Labels come from small fixed sets
//! (an outcome, a reason, a status class), never from bucket names or error text.

/// Messages received from SQS.
pub const MESSAGES_RECEIVED: &str = "ctc_messages_received_total";
/// Messages by fate: `delivered`, `skipped`, `retry`, `released`, `deferred`, `dead_lettered`.
pub const MESSAGES_FINISHED: &str = "ctc_messages_total";
/// Skipped messages by skip reason.
pub const MESSAGES_SKIPPED: &str = "ctc_messages_skipped_total";
/// Failures by reason (`unknown_bucket`, `bigpanda_unavailable`, ...).
pub const MESSAGE_FAILURES: &str = "ctc_message_failures_total";
/// Time from receive to fate, seconds.
pub const MESSAGE_DURATION: &str = "ctc_message_duration_seconds";
/// Messages being processed now.
pub const MESSAGES_IN_FLIGHT: &str = "ctc_messages_in_flight";
/// S3 objects processed, by outcome (`delivered`, `failed`).
pub const OBJECTS: &str = "ctc_objects_total";
/// Compressed bytes downloaded from S3.
pub const OBJECT_BYTES: &str = "ctc_object_bytes_total";
/// CloudTrail records read.
pub const RECORDS: &str = "ctc_records_total";
/// Records dropped by the filter, by reason.
pub const RECORDS_DROPPED: &str = "ctc_records_dropped_total";
/// Changes skipped because a checkpoint says they were delivered already.
pub const CHANGES_RESUMED: &str = "ctc_changes_resumed_total";
/// SQS API errors, by operation.
pub const SQS_ERRORS: &str = "ctc_sqs_errors_total";
/// Visibility extensions made by the heartbeat.
pub const HEARTBEATS: &str = "ctc_visibility_extensions_total";
/// Checkpoint store failures (delivery continues; a retry may resend some changes).
pub const CHECKPOINT_ERRORS: &str = "ctc_checkpoint_errors_total";

/// Changes sent, by outcome (`accepted`, `rejected`, `unauthorized`, `gave_up`).
pub use crate::forward::CHANGES_SENT_TOTAL as CHANGES_SENT;
/// Changes API requests, by status class.
pub use crate::forward::REQUESTS_TOTAL as BIGPANDA_REQUESTS;
/// Changes API request duration, seconds.
pub use crate::forward::REQUEST_DURATION_SECONDS as BIGPANDA_REQUEST_DURATION;
/// 429s (and 503s with Retry-After) that paused an API key.
pub use crate::forward::THROTTLED_TOTAL as BIGPANDA_THROTTLED;
