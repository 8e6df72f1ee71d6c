//! The rejected-change envelope: a change BigPanda refused for good waits in the dead-letter
//! queue as its own message. The body is the exact change body that was POSTed; message
//! attributes say what it is and where it came from. `dlq redrive` puts it back on the queue
//! with these attributes, and the worker posts the body as is with the bucket's current keys.
//!
//! Pure: attribute names and values in, values out. It never carries a key: the keys are looked
//! up again from the bucket's subscription when the change is replayed.

use std::collections::HashMap;

/// The attribute that marks a message as a rejected change (value [`ENVELOPE`]).
pub const ENVELOPE_ATTRIBUTE: &str = "ctc_envelope";
/// The value of [`ENVELOPE_ATTRIBUTE`].
pub const ENVELOPE: &str = "rejected_change";
/// The DLQ `failure_reason` of a rejected change.
pub const REASON: &str = "change_rejected";
/// BigPanda's HTTP status.
pub const STATUS_ATTRIBUTE: &str = "bigpanda_status";
/// BigPanda's error text.
pub const ERROR_ATTRIBUTE: &str = "bigpanda_error";
/// The bucket whose subscription's keys send the change.
pub const BUCKET_ATTRIBUTE: &str = "bucket";
/// The S3 key of the log file the change came from.
pub const KEY_ATTRIBUTE: &str = "key";
/// The CloudTrail eventID (the change's identifier).
pub const EVENT_ID_ATTRIBUTE: &str = "event_id";
/// Longest error text kept in an attribute.
const MAX_ERROR_CHARS: usize = 1024;

/// A change BigPanda rejected, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedChange {
    pub bucket: String,
    pub key: String,
    pub event_id: String,
    pub status: u16,
    pub error: String,
}

impl RejectedChange {
    /// The message attributes of its DLQ message (besides the failure ones): never empty
    /// values (SQS refuses them), the error cut to 1024 characters.
    #[must_use]
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let error: String = self.error.chars().take(MAX_ERROR_CHARS).collect();
        let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
        vec![
            (ENVELOPE_ATTRIBUTE, ENVELOPE.to_owned()),
            (STATUS_ATTRIBUTE, self.status.to_string()),
            (ERROR_ATTRIBUTE, or_dash(error)),
            (BUCKET_ATTRIBUTE, or_dash(self.bucket.clone())),
            (KEY_ATTRIBUTE, or_dash(self.key.clone())),
            (EVENT_ID_ATTRIBUTE, or_dash(self.event_id.clone())),
        ]
    }

    /// The DLQ `failure_detail`.
    #[must_use]
    pub fn detail(&self) -> String {
        format!(
            "BigPanda rejected change {} from s3://{}/{} (HTTP {}): {}; fix the cause, then `dlq redrive --reason {REASON}`",
            self.event_id, self.bucket, self.key, self.status, self.error
        )
    }

    /// Reads the envelope from a message's attributes: `None` when the message is not a
    /// rejected change; `Err` naming the missing attribute when it is one but incomplete.
    ///
    /// # Errors
    /// The name of a missing or unreadable attribute.
    pub fn from_attributes(
        attributes: &HashMap<String, String>,
    ) -> Option<Result<Self, &'static str>> {
        if attributes.get(ENVELOPE_ATTRIBUTE).map(String::as_str) != Some(ENVELOPE) {
            return None;
        }
        let text = |name: &'static str| {
            attributes
                .get(name)
                .filter(|v| !v.is_empty() && v.as_str() != "-")
                .cloned()
                .ok_or(name)
        };
        Some((|| {
            Ok(Self {
                bucket: text(BUCKET_ATTRIBUTE)?,
                key: text(KEY_ATTRIBUTE).unwrap_or_default(),
                event_id: text(EVENT_ID_ATTRIBUTE)?,
                status: text(STATUS_ATTRIBUTE)?
                    .parse()
                    .map_err(|_| STATUS_ATTRIBUTE)?,
                error: attributes.get(ERROR_ATTRIBUTE).cloned().unwrap_or_default(),
            })
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> RejectedChange {
        RejectedChange {
            bucket: "trail".into(),
            key: "AWSLogs/1/CloudTrail/x.json.gz".into(),
            event_id: "e-1".into(),
            status: 400,
            error: "start must be a number".into(),
        }
    }

    #[test]
    fn the_attributes_read_back_as_the_same_rejected_change() {
        let attributes: HashMap<String, String> = change()
            .attributes()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(attributes["ctc_envelope"], "rejected_change");
        assert_eq!(
            RejectedChange::from_attributes(&attributes),
            Some(Ok(change()))
        );
    }

    #[test]
    fn a_message_without_the_marker_is_not_a_rejected_change() {
        let mut attributes: HashMap<String, String> = change()
            .attributes()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        attributes.remove(ENVELOPE_ATTRIBUTE);
        assert_eq!(RejectedChange::from_attributes(&attributes), None);
        assert_eq!(RejectedChange::from_attributes(&HashMap::new()), None);
    }

    #[test]
    fn a_marked_message_without_its_bucket_names_the_missing_attribute() {
        let attributes: HashMap<String, String> = change()
            .attributes()
            .into_iter()
            .filter(|(k, _)| *k != BUCKET_ATTRIBUTE)
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(
            RejectedChange::from_attributes(&attributes),
            Some(Err("bucket"))
        );
    }

    #[test]
    fn empty_values_become_a_dash_and_long_errors_are_cut() {
        let long = RejectedChange {
            error: "x".repeat(5000),
            key: String::new(),
            ..change()
        };
        let attributes = long.attributes();
        let get = |name| attributes.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
        assert_eq!(get(ERROR_ATTRIBUTE).map(String::len), Some(1024));
        assert_eq!(get(KEY_ATTRIBUTE).map(String::as_str), Some("-"));
    }
}
