//! Metric names, in one place, so dashboards and code agree. Labels come from small fixed sets
//! (an outcome, a reason, a status class), never from bucket names or error text.

/// Messages received from SQS.
pub const MESSAGES_RECEIVED: &str = "ctc_messages_received_total";
/// Messages by fate: `delivered`, `skipped`, `retry`, `released`, `requeued`, `deferred`,
/// `dead_lettered`.
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
pub const CHANGES_SENT: &str = "ctc_changes_sent_total";
/// Changes API requests, by status class.
pub const BIGPANDA_REQUESTS: &str = "ctc_bigpanda_requests_total";
/// Changes API request duration, seconds.
pub const BIGPANDA_REQUEST_DURATION: &str = "ctc_bigpanda_request_duration_seconds";
/// 429s (and 503s with Retry-After) that paused an API key.
pub const BIGPANDA_THROTTLED: &str = "ctc_bigpanda_throttled_total";

/// Objects by failure kind (the fate reason: `corrupt_object`, `access_denied`, ...).
pub const OBJECT_FAILURES: &str = "ctc_object_failures_total";
/// Time to deliver one object, seconds.
pub const OBJECT_DURATION: &str = "ctc_object_duration_seconds";
/// Changes produced by the pipeline (before forwarding).
pub const CHANGES_PRODUCED: &str = "ctc_changes_produced_total";
/// Seconds from a change's `eventTime` to its acceptance by the Changes API.
pub const CHANGE_LAG: &str = "ctc_change_lag_seconds";
/// Messages moved to the DLQ, by reason.
pub const MESSAGES_DEAD_LETTERED: &str = "ctc_messages_dead_lettered_total";
/// STS AssumeRole calls, by outcome (`ok`, `refused`, `error`).
pub const STS_ASSUME_ROLE: &str = "ctc_sts_assume_role_total";
/// 1, labelled with the version.
pub const BUILD_INFO: &str = "ctc_build_info";
/// Conditional writes of the fleet's pace items (DynamoDB store), by outcome (`ok`,
/// `conflict`: another replica wrote first).
pub const PACE_TABLE_WRITES: &str = "ctc_pace_table_writes_total";
/// Token leases asked of the fleet's pace items, by outcome (`granted`, `empty`, `error`).
pub const PACE_LEASES: &str = "ctc_pace_leases_total";
/// 1 while delivery is paused (no receives, in-flight messages held and probed), by reason
/// (`changes_api`); 0 otherwise.
pub const DELIVERY_PAUSED: &str = "ctc_delivery_paused";
/// The highest share of `bigpanda.changes_per_week` used this week by an API key this replica
/// leased tokens for (DynamoDB store): 1.0 is the whole weekly cap.
pub const WEEKLY_BUDGET_MAX_SHARE: &str = "ctc_weekly_budget_max_share";

/// Buckets for request and processing durations, seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Buckets for the eventTime-to-acceptance lag: CloudTrail delivers within about 5-15 minutes.
const LAG_BUCKETS: [f64; 14] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21_600.0,
    86_400.0,
];

/// Installs the Prometheus recorder once per process and returns its handle (the `/metrics`
/// page renders it).
///
/// # Errors
/// When another recorder was installed by someone else.
pub fn install() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(CHANGE_LAG.into()), &LAG_BUCKETS))
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}
