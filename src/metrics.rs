//! Metric names, in one place, so dashboards and code agree. Labels come from small fixed sets
//! (an outcome, a reason, a status class), never from bucket names or error text.
//!
//! [`register_all`] describes every family in [`FAMILIES`] and creates every known label value
//! at 0 at start-up: `increase()` and `rate()` cannot see the first event of a series that did
//! not exist before it. [`FAMILIES`] is the README's metrics table; a service test compares them.

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

/// Changes sent, by outcome (`accepted`, `rejected`, `endpoint`, `unauthorized`, `gave_up`).
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
/// Subscription API requests refused with 429, by `limit`: `client`, `total`, `key`.
pub const API_THROTTLED: &str = "ctc_api_throttled_total";
/// Objects skipped because they were rewritten since their notification (`object_replaced`:
/// GetObject's `If-Match` on the notified eTag failed).
pub const OBJECTS_REPLACED: &str = "ctc_objects_replaced_total";
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

/// What a family is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every value a label can take, computed (some come from enums elsewhere).
pub type LabelValues = fn() -> Vec<&'static str>;

/// One metric family: its name, type, `# HELP` text and, if labelled, its label and every value
/// the code can give it.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub label: Option<(&'static str, LabelValues)>,
}

/// Fates of a message (the values `worker`'s `settle` returns).
pub const FATES: [&str; 7] = [
    "delivered",
    "skipped",
    "retry",
    "released",
    "requeued",
    "deferred",
    "dead_lettered",
];

/// Reasons a message fails (`Failure::Poison`/`Failure::Transient` in `worker`): the DLQ's
/// `failure_reason` values.
pub const FAILURE_REASONS: [&str; 16] = [
    "malformed_envelope",
    "unknown_bucket",
    "store_unavailable",
    "object_not_found",
    "object_too_large",
    "corrupt_object",
    "role_refused",
    "sts_unavailable",
    "access_denied",
    "s3_unavailable",
    "bigpanda_unauthorized",
    "bigpanda_unavailable",
    "bigpanda_endpoint",
    "dlq_unavailable",
    "object_replaced",
    "internal",
];

/// Failure kinds of one object: the failure reasons that arise while reading and delivering it,
/// and `stopped` (shutdown mid-object).
pub const OBJECT_FAILURE_KINDS: [&str; 13] = [
    "object_not_found",
    "object_too_large",
    "corrupt_object",
    "role_refused",
    "sts_unavailable",
    "access_denied",
    "s3_unavailable",
    "bigpanda_unauthorized",
    "bigpanda_unavailable",
    "bigpanda_endpoint",
    "dlq_unavailable",
    "internal",
    "stopped",
];

/// Skip reasons the worker adds to the envelope's [`SkipReason`]s.
pub const WORKER_SKIP_REASONS: [&str; 5] = [
    "object_replaced",
    "no_changes",
    "unsubscribed",
    "already_dead_lettered",
    "empty",
];

/// Outcomes of an S3 object.
pub const OBJECT_OUTCOMES: [&str; 2] = ["delivered", "failed"];
/// Outcomes of a change sent to the Changes API.
pub const CHANGE_OUTCOMES: [&str; 5] = [
    "accepted",
    "rejected",
    "endpoint",
    "unauthorized",
    "gave_up",
];
/// Status classes of a Changes API response (`error`: no response).
pub const STATUS_CLASSES: [&str; 5] = ["2xx", "4xx", "429", "5xx", "error"];
/// SQS operations that can fail.
pub const SQS_OPERATIONS: [&str; 6] = [
    "receive",
    "requeue",
    "delete",
    "change_visibility",
    "heartbeat",
    "send_to_dlq",
];
/// Outcomes of an STS AssumeRole call.
pub const ASSUME_ROLE_OUTCOMES: [&str; 3] = ["ok", "refused", "error"];

fn fates() -> Vec<&'static str> {
    FATES.to_vec()
}
fn failure_reasons() -> Vec<&'static str> {
    FAILURE_REASONS.to_vec()
}
/// The DLQ's reasons: a message's failure reasons, and a change BigPanda rejected for good.
fn dead_letter_reasons() -> Vec<&'static str> {
    FAILURE_REASONS
        .into_iter()
        .chain([crate::core::rejected::REASON])
        .collect()
}
fn object_failure_kinds() -> Vec<&'static str> {
    OBJECT_FAILURE_KINDS.to_vec()
}
fn object_outcomes() -> Vec<&'static str> {
    OBJECT_OUTCOMES.to_vec()
}
fn change_outcomes() -> Vec<&'static str> {
    CHANGE_OUTCOMES.to_vec()
}
fn status_classes() -> Vec<&'static str> {
    STATUS_CLASSES.to_vec()
}
fn sqs_operations() -> Vec<&'static str> {
    SQS_OPERATIONS.to_vec()
}
fn assume_role_outcomes() -> Vec<&'static str> {
    ASSUME_ROLE_OUTCOMES.to_vec()
}
fn drop_reasons() -> Vec<&'static str> {
    crate::core::filter::Reason::ALL
        .map(crate::core::filter::Reason::as_str)
        .to_vec()
}
/// Outcomes of a pace item's conditional write.
pub const PACE_WRITE_OUTCOMES: [&str; 2] = ["ok", "conflict"];
/// Outcomes of a token lease.
pub const PACE_LEASE_OUTCOMES: [&str; 3] = ["granted", "empty", "error"];
/// Why delivery is paused.
pub const PAUSE_REASONS: [&str; 2] = ["changes_api", "aws"];

fn pace_write_outcomes() -> Vec<&'static str> {
    PACE_WRITE_OUTCOMES.to_vec()
}
fn pace_lease_outcomes() -> Vec<&'static str> {
    PACE_LEASE_OUTCOMES.to_vec()
}
fn pause_reasons() -> Vec<&'static str> {
    PAUSE_REASONS.to_vec()
}

/// The subscription API's request limits (`subscriptions::api` limits).
pub const API_LIMITS: [&str; 3] = ["client", "total", "key"];

fn api_limits() -> Vec<&'static str> {
    API_LIMITS.to_vec()
}
fn version() -> Vec<&'static str> {
    vec![env!("CARGO_PKG_VERSION")]
}

/// Every skip reason: the envelope's and the worker's own.
fn skip_reasons() -> Vec<&'static str> {
    use crate::core::envelope::SkipReason as S;
    // Exhaustive on purpose: a new variant does not compile until it is listed below.
    let listed = |r: S| match r {
        S::TestEvent
        | S::ValidationMessage
        | S::SubscriptionConfirmation
        | S::NotObjectCreated
        | S::Digest
        | S::Insights
        | S::FolderMarker
        | S::NotCloudTrail => r.as_str(),
    };
    [
        S::TestEvent,
        S::ValidationMessage,
        S::SubscriptionConfirmation,
        S::NotObjectCreated,
        S::Digest,
        S::Insights,
        S::FolderMarker,
        S::NotCloudTrail,
    ]
    .map(listed)
    .into_iter()
    .chain(WORKER_SKIP_REASONS)
    .collect()
}

/// Every family the daemon exports, in the README's order.
pub const FAMILIES: [Family; 31] = [
    Family {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        help: "1, labelled with the running version.",
        label: Some(("version", version)),
    },
    Family {
        name: MESSAGES_RECEIVED,
        kind: Kind::Counter,
        help: "Messages received from SQS.",
        label: None,
    },
    Family {
        name: MESSAGES_FINISHED,
        kind: Kind::Counter,
        help: "Messages by fate.",
        label: Some(("fate", fates)),
    },
    Family {
        name: MESSAGES_SKIPPED,
        kind: Kind::Counter,
        help: "Messages acknowledged without anything to forward, by reason.",
        label: Some(("reason", skip_reasons)),
    },
    Family {
        name: MESSAGES_DEAD_LETTERED,
        kind: Kind::Counter,
        help: "Messages the daemon moved to the DLQ, by reason.",
        label: Some(("reason", dead_letter_reasons)),
    },
    Family {
        name: MESSAGE_FAILURES,
        kind: Kind::Counter,
        help: "Failed attempts (retried or dead-lettered), by reason.",
        label: Some(("reason", failure_reasons)),
    },
    Family {
        name: MESSAGES_IN_FLIGHT,
        kind: Kind::Gauge,
        help: "Messages being processed now.",
        label: None,
    },
    Family {
        name: MESSAGE_DURATION,
        kind: Kind::Histogram,
        help: "Seconds from receive to fate, per message.",
        label: None,
    },
    Family {
        name: OBJECTS,
        kind: Kind::Counter,
        help: "S3 objects processed, by outcome.",
        label: Some(("outcome", object_outcomes)),
    },
    Family {
        name: OBJECT_FAILURES,
        kind: Kind::Counter,
        help: "Failed S3 objects, by kind (the failure reason).",
        label: Some(("kind", object_failure_kinds)),
    },
    Family {
        name: OBJECT_DURATION,
        kind: Kind::Histogram,
        help: "Seconds to deliver one S3 object.",
        label: None,
    },
    Family {
        name: OBJECT_BYTES,
        kind: Kind::Counter,
        help: "Compressed bytes downloaded from S3.",
        label: None,
    },
    Family {
        name: RECORDS,
        kind: Kind::Counter,
        help: "CloudTrail records read.",
        label: None,
    },
    Family {
        name: RECORDS_DROPPED,
        kind: Kind::Counter,
        help: "CloudTrail records dropped by the filter, by reason.",
        label: Some(("reason", drop_reasons)),
    },
    Family {
        name: CHANGES_PRODUCED,
        kind: Kind::Counter,
        help: "Changes the pipeline produced (before forwarding).",
        label: None,
    },
    Family {
        name: CHANGES_RESUMED,
        kind: Kind::Counter,
        help: "Changes skipped because a checkpoint said they were accepted before.",
        label: None,
    },
    Family {
        name: CHANGES_SENT,
        kind: Kind::Counter,
        help: "Changes sent to the Changes API, by outcome.",
        label: Some(("outcome", change_outcomes)),
    },
    Family {
        name: BIGPANDA_REQUESTS,
        kind: Kind::Counter,
        help: "Changes API requests, by status class.",
        label: Some(("status_class", status_classes)),
    },
    Family {
        name: BIGPANDA_REQUEST_DURATION,
        kind: Kind::Histogram,
        help: "Changes API request duration, seconds.",
        label: None,
    },
    Family {
        name: BIGPANDA_THROTTLED,
        kind: Kind::Counter,
        help: "429s (and 503s with Retry-After) that paused an API key.",
        label: None,
    },
    Family {
        name: CHANGE_LAG,
        kind: Kind::Histogram,
        help: "Seconds from a change's eventTime to its acceptance by the Changes API.",
        label: None,
    },
    Family {
        name: STS_ASSUME_ROLE,
        kind: Kind::Counter,
        help: "STS AssumeRole calls for customer roles, by outcome.",
        label: Some(("outcome", assume_role_outcomes)),
    },
    Family {
        name: SQS_ERRORS,
        kind: Kind::Counter,
        help: "SQS API failures, by operation.",
        label: Some(("operation", sqs_operations)),
    },
    Family {
        name: HEARTBEATS,
        kind: Kind::Counter,
        help: "Visibility extensions made by the heartbeat.",
        label: None,
    },
    Family {
        name: CHECKPOINT_ERRORS,
        kind: Kind::Counter,
        help: "Checkpoint store failures (delivery continues; a retry may resend some changes).",
        label: None,
    },
    Family {
        name: OBJECTS_REPLACED,
        kind: Kind::Counter,
        help: "Objects skipped because they were rewritten since their notification.",
        label: None,
    },
    Family {
        name: PACE_TABLE_WRITES,
        kind: Kind::Counter,
        help: "Conditional writes of the fleet's pace items, by outcome.",
        label: Some(("outcome", pace_write_outcomes)),
    },
    Family {
        name: PACE_LEASES,
        kind: Kind::Counter,
        help: "Token leases asked of the fleet's pace items, by outcome.",
        label: Some(("outcome", pace_lease_outcomes)),
    },
    Family {
        name: DELIVERY_PAUSED,
        kind: Kind::Gauge,
        help: "1 while delivery is paused by an outage, by reason; 0 otherwise.",
        label: Some(("reason", pause_reasons)),
    },
    Family {
        name: WEEKLY_BUDGET_MAX_SHARE,
        kind: Kind::Gauge,
        help: "Highest share of bigpanda.changes_per_week used this week by a key of this replica.",
        label: None,
    },
    Family {
        name: API_THROTTLED,
        kind: Kind::Counter,
        help: "Subscription API requests answered 429, by the limit that refused them.",
        label: Some(("limit", api_limits)),
    },
];

/// Describes every family of [`FAMILIES`] and creates each series at 0 (counters at every
/// known label value, gauges untouched, histograms without observations), so the first scrape
/// shows them all. Call it after [`install`]; calling it again changes no value.
pub fn register_all() {
    for family in FAMILIES {
        match family.kind {
            Kind::Counter => metrics::describe_counter!(family.name, family.help),
            Kind::Gauge => metrics::describe_gauge!(family.name, family.help),
            Kind::Histogram => metrics::describe_histogram!(family.name, family.help),
        }
        if family.name == BUILD_INFO {
            continue; // Set to 1 by `install`.
        }
        match family.label {
            None => register(family.kind, family.name, &[]),
            Some((label, values)) => {
                for value in values() {
                    register(family.kind, family.name, &[(label, value)]);
                }
            }
        }
    }
}

/// Creates one series without changing its value.
fn register(kind: Kind, name: &'static str, labels: &[(&'static str, &'static str)]) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|&(k, v)| metrics::Label::new(k, v))
        .collect();
    match kind {
        Kind::Counter => metrics::counter!(name, labels).increment(0),
        Kind::Gauge => metrics::gauge!(name, labels).increment(0.0),
        Kind::Histogram => drop(metrics::histogram!(name, labels)),
    }
}

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
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = builder()
        .and_then(metrics_exporter_prometheus::PrometheusBuilder::install_recorder)
        .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// The exporter with our histogram buckets.
fn builder(
) -> Result<metrics_exporter_prometheus::PrometheusBuilder, metrics_exporter_prometheus::BuildError>
{
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(CHANGE_LAG.into()), &LAG_BUCKETS))
}

#[cfg(test)]
mod tests;
