//! Decodes one SQS message body into the S3 objects it names.
//!
//! The daemon's queue receives notifications that a CloudTrail log file landed in S3, in one of
//! several envelopes: an S3 event notification (raw, or wrapped in SNS), CloudTrail's own SNS
//! notification (wrapped, or with raw message delivery), an EventBridge "Object Created" event,
//! and the control messages around them (the S3 test event, CloudTrail's validation message, SNS
//! subscription confirmations). [`decode`] turns a body into a [`Decoded`]: the objects to
//! process, and the objects or message skipped with a [`SkipReason`]. A body that cannot be
//! understood is an [`EnvelopeError`], which names the JSON path that was wrong.
//!
//! This module is pure: it must never do I/O, read the clock, log, touch globals, or panic on any
//! input. It does not verify SNS signatures; the queue's access policy is the trust boundary.

use std::fmt;

use serde_json::{Map, Value};

mod keys;
mod node;

use keys::*;
pub use keys::{classify_key, decode_s3_key};
use node::*;

/// The literal message CloudTrail publishes to its SNS topic when SNS delivery is configured.
const VALIDATION_MESSAGE: &str = "CloudTrail validation message.";
/// S3's maximum key length in bytes.
const MAX_KEY_LEN: usize = 1024;
/// How many top-level keys an [`EnvelopeError::UnknownShape`] lists.
const MAX_KEYS_SHOWN: usize = 10;
/// How many characters of a message-supplied string an error or skip detail quotes.
const MAX_QUOTED: usize = 200;

/// One S3 object named by a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The bucket name.
    pub bucket: String,
    /// The object key, decoded (never URL-encoded).
    pub key: String,
    /// The object size in bytes, when the message gives it.
    pub size: Option<u64>,
    /// The object's ETag, when the message gives it.
    pub etag: Option<String>,
    /// S3's event sequencer for the key, when the message gives it (moto omits it).
    pub sequencer: Option<String>,
    /// The object's version, when the bucket is versioned and the message gives it.
    pub version_id: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The envelope format a message was in (for logs and metrics labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An S3 event notification (or the S3 test event) wrapped in an SNS notification.
    SnsS3Event,
    /// An S3 event notification (or the S3 test event) sent straight to the queue.
    S3Event,
    /// CloudTrail's own notification (or its validation message) wrapped in SNS.
    SnsCloudTrail,
    /// CloudTrail's own notification with SNS raw message delivery.
    CloudTrail,
    /// An EventBridge event from `aws.s3` (at top level, or wrapped in SNS).
    EventBridge,
    /// An SNS subscription or unsubscription confirmation.
    SnsControl,
}

impl Format {
    /// The snake_case label used in logs and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Format::SnsS3Event => "sns_s3_event",
            Format::S3Event => "s3_event",
            Format::SnsCloudTrail => "sns_cloudtrail",
            Format::CloudTrail => "cloudtrail",
            Format::EventBridge => "eventbridge",
            Format::SnsControl => "sns_control",
        }
    }
}

/// Why a message or one of its objects is acknowledged without processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The S3 test event S3 sends when a notification configuration is saved.
    TestEvent,
    /// CloudTrail's validation message, sent when SNS delivery is configured.
    ValidationMessage,
    /// An SNS subscription (or unsubscription) confirmation: someone must act on it.
    SubscriptionConfirmation,
    /// An event about something other than an object being created (e.g. a deletion).
    NotObjectCreated,
    /// A CloudTrail digest file (`CloudTrail-Digest`).
    Digest,
    /// A CloudTrail Insights file (`CloudTrail-Insight`).
    Insights,
    /// A key ending in `/`, the console's "folder".
    FolderMarker,
    /// Any other key that is not a CloudTrail log file.
    NotCloudTrail,
}

impl SkipReason {
    /// The snake_case label used in logs and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TestEvent => "test_event",
            SkipReason::ValidationMessage => "validation_message",
            SkipReason::SubscriptionConfirmation => "subscription_confirmation",
            SkipReason::NotObjectCreated => "not_object_created",
            SkipReason::Digest => "digest",
            SkipReason::Insights => "insights",
            SkipReason::FolderMarker => "folder_marker",
            SkipReason::NotCloudTrail => "not_cloudtrail",
        }
    }

    /// What a skipped key is, for the human detail.
    fn key_description(self) -> &'static str {
        match self {
            SkipReason::Digest => "a CloudTrail digest file",
            SkipReason::Insights => "a CloudTrail Insights file",
            SkipReason::FolderMarker => "a folder marker",
            _ => "not a CloudTrail log file",
        }
    }
}

/// A skipped message (object None) or skipped object, with a human detail (e.g. the SubscribeURL
/// someone must visit, or the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Why it was skipped.
    pub reason: SkipReason,
    /// The skipped object, or `None` when the whole message is skipped.
    pub object: Option<ObjectRef>,
    /// A sentence for a human, quoting what the message said.
    pub detail: String,
}

/// The decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The envelope format the message was in.
    pub format: Format,
    /// The CloudTrail log files to process, in message order.
    pub objects: Vec<ObjectRef>,
    /// The message itself or the objects acknowledged without processing, in message order.
    pub skipped: Vec<Skipped>,
}

impl Decoded {
    /// True when there is no object to process (the message is only acknowledged).
    #[must_use]
    pub fn is_skip_only(&self) -> bool {
        self.objects.is_empty()
    }

    fn empty(format: Format) -> Self {
        let (objects, skipped) = (Vec::new(), Vec::new());
        Decoded {
            format,
            objects,
            skipped,
        }
    }

    fn skip_message(format: Format, reason: SkipReason, detail: String) -> Self {
        let mut decoded = Decoded::empty(format);
        decoded.skip(reason, None, detail);
        decoded
    }

    fn skip(&mut self, reason: SkipReason, object: Option<ObjectRef>, detail: String) {
        self.skipped.push(Skipped {
            reason,
            object,
            detail,
        });
    }
}

/// Why a message body could not be decoded.
///
/// Every variant is poison: retrying cannot help, so the caller sends the message to the
/// dead-letter queue. Paths are JSON paths relative to the body (`Records[2].s3.object.key`);
/// inside an SNS envelope they start with `Message.`; `$` is the body itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body is not JSON at all (or is nested deeper than the JSON parser's limit).
    #[error("message body is not JSON: {detail}")]
    NotJson {
        /// The parser's error, with line and column.
        detail: String,
    },
    /// The JSON object matches none of the known envelope formats.
    #[error("no known envelope format at `{path}` (keys seen: {keys})")]
    UnknownShape {
        /// Where the unrecognised object is (`$` or `Message`).
        path: String,
        /// Up to ten of its keys, comma-separated, or `none`.
        keys: String,
    },
    /// A field is missing, has the wrong type, or has an unusable value.
    #[error("invalid `{path}`: {detail}")]
    Invalid {
        /// The JSON path of the field.
        path: String,
        /// What was wrong with it.
        detail: String,
    },
    /// An S3 key that cannot be decoded.
    #[error("bad S3 key at `{path}`: {detail}")]
    BadKey {
        /// The JSON path of the key.
        path: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The body is a CloudTrail log file (top-level `Records` of API events), not a notification.
    #[error(
        "`{path}` is `{event_source}`: this looks like a CloudTrail log file, not a notification"
    )]
    LogFileNotNotification {
        /// The JSON path of the record's `eventSource`.
        path: String,
        /// The record's `eventSource`, quoted.
        event_source: String,
    },
}

/// Decodes one SQS message body.
///
/// The literal `CloudTrail validation message.` is accepted at top level too (SNS raw message
/// delivery); an EventBridge event is accepted inside SNS as well as at top level. Every object
/// of an S3 event or CloudTrail notification is classified with [`classify_key`]; one that is not
/// a CloudTrail log file (including a key over S3's 1024-byte maximum) is skipped, not an error.
///
/// # Errors
///
/// An [`EnvelopeError`] (always poison) when the body is not JSON, has no known shape, or a
/// field the format needs is missing, mistyped or unusable.
pub fn decode(body: &str) -> Result<Decoded, EnvelopeError> {
    if body.trim() == VALIDATION_MESSAGE {
        return Ok(validation_skip(Format::CloudTrail));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| EnvelopeError::NotJson {
        detail: e.to_string(),
    })?;
    let root = Node::root(&value, "$")?;
    if root.map.contains_key("Type") {
        return decode_sns(&root);
    }
    decode_inner(&root, false)
}

fn validation_skip(format: Format) -> Decoded {
    let detail = format!("CloudTrail's validation message `{VALIDATION_MESSAGE}`");
    Decoded::skip_message(format, SkipReason::ValidationMessage, detail)
}

/// An SNS envelope: a notification wrapping another format, or a subscription control message.
fn decode_sns(root: &Node<'_>) -> Result<Decoded, EnvelopeError> {
    match root.string("Type")? {
        "Notification" => decode_sns_notification(root),
        kind @ ("SubscriptionConfirmation" | "UnsubscribeConfirmation") => {
            let topic = root.opt_string("TopicArn")?.unwrap_or_default();
            let url = root.opt_string("SubscribeURL")?.unwrap_or_default();
            let detail = format!(
                "SNS {kind} for topic `{}`: to subscribe the queue, visit the SubscribeURL {}",
                quote(&topic),
                quote(&url)
            );
            let reason = SkipReason::SubscriptionConfirmation;
            Ok(Decoded::skip_message(Format::SnsControl, reason, detail))
        }
        other => {
            let detail = format!(
                "unsupported SNS message type `{}` (expected Notification, \
                 SubscriptionConfirmation or UnsubscribeConfirmation)",
                quote(other)
            );
            Err(root.invalid("Type", detail))
        }
    }
}

fn decode_sns_notification(root: &Node<'_>) -> Result<Decoded, EnvelopeError> {
    let message = root.string("Message")?;
    if message.trim() == VALIDATION_MESSAGE {
        return Ok(validation_skip(Format::SnsCloudTrail));
    }
    let inner: Value = serde_json::from_str(message).map_err(|e| {
        let detail = format!("neither JSON nor CloudTrail's validation message ({e})");
        root.invalid("Message", detail)
    })?;
    decode_inner(&Node::root(&inner, "Message")?, true)
}

/// The formats that may appear at top level or inside an SNS notification.
fn decode_inner(node: &Node<'_>, in_sns: bool) -> Result<Decoded, EnvelopeError> {
    let pick = |wrapped, plain| if in_sns { wrapped } else { plain };
    let has = |field| node.map.contains_key(field);
    if has("Records") {
        decode_s3_event(node, pick(Format::SnsS3Event, Format::S3Event))
    } else if has("Event") {
        decode_test_event(node, pick(Format::SnsS3Event, Format::S3Event))
    } else if has("s3Bucket") || has("s3ObjectKey") {
        decode_cloudtrail(node, pick(Format::SnsCloudTrail, Format::CloudTrail))
    } else if has("detail-type") {
        decode_eventbridge(node)
    } else if has("Type") {
        let detail = "an SNS envelope inside an SNS envelope".to_owned();
        Err(node.invalid("Type", detail))
    } else {
        Err(node.unknown_shape())
    }
}

fn decode_test_event(node: &Node<'_>, format: Format) -> Result<Decoded, EnvelopeError> {
    let event = node.string("Event")?;
    if event != "s3:TestEvent" {
        let detail = format!("expected `s3:TestEvent`, found `{}`", quote(event));
        return Err(node.invalid("Event", detail));
    }
    let bucket = node.opt_string("Bucket")?.unwrap_or_default();
    let detail = format!("S3 test event for bucket `{}`", quote(&bucket));
    Ok(Decoded::skip_message(format, SkipReason::TestEvent, detail))
}

/// An S3 event notification: `Records[*]` with `eventName`, `s3.bucket` and `s3.object`.
fn decode_s3_event(node: &Node<'_>, format: Format) -> Result<Decoded, EnvelopeError> {
    let mut out = Decoded::empty(format);
    for record in node.objects("Records")? {
        reject_log_record(&record)?;
        let event_name = record.string("eventName")?;
        let object = s3_event_object(&record.object("s3")?)?;
        if event_name.starts_with("ObjectCreated:") {
            push_classified(&mut out, object);
        } else {
            let detail = format!(
                "eventName `{}` for key `{}`",
                quote(event_name),
                quote(&object.key)
            );
            out.skip(SkipReason::NotObjectCreated, Some(object), detail);
        }
    }
    Ok(out)
}

/// A record of a CloudTrail log file has an AWS service's `eventSource` and no `s3` field.
fn reject_log_record(record: &Node<'_>) -> Result<(), EnvelopeError> {
    match record.map.get("eventSource").and_then(Value::as_str) {
        Some(source) if source != "aws:s3" && !record.map.contains_key("s3") => {
            Err(EnvelopeError::LogFileNotNotification {
                path: record.at("eventSource"),
                event_source: quote(source),
            })
        }
        _ => Ok(()),
    }
}

/// The object of an S3 event record's `s3` field; its key is form-URL-encoded.
fn s3_event_object(s3: &Node<'_>) -> Result<ObjectRef, EnvelopeError> {
    let object = s3.object("object")?;
    let key = form_decode(object.string("key")?).map_err(|detail| EnvelopeError::BadKey {
        path: object.at("key"),
        detail,
    })?;
    Ok(ObjectRef {
        bucket: bucket_name(&s3.object("bucket")?, "name")?,
        key,
        size: object.opt_u64("size")?,
        etag: object.opt_string("eTag")?,
        sequencer: object.opt_string("sequencer")?,
        version_id: object.opt_string("versionId")?,
    })
}

/// CloudTrail's notification: `s3Bucket` and `s3ObjectKey` (an array, or a single string). Its
/// keys are not URL-encoded.
fn decode_cloudtrail(node: &Node<'_>, format: Format) -> Result<Decoded, EnvelopeError> {
    let bucket = bucket_name(node, "s3Bucket")?;
    let bucket = bucket.as_str();
    let mut out = Decoded::empty(format);
    for (path, key) in node.strings("s3ObjectKey")? {
        if key.is_empty() {
            let detail = "empty key".to_owned();
            return Err(EnvelopeError::BadKey { path, detail });
        }
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let object = ObjectRef {
            bucket,
            key,
            size: None,
            etag: None,
            sequencer: None,
            version_id: None,
        };
        push_classified(&mut out, object);
    }
    Ok(out)
}

/// An EventBridge event from `aws.s3`; only `Object Created` names an object to process. Its
/// keys are not URL-encoded.
fn decode_eventbridge(node: &Node<'_>) -> Result<Decoded, EnvelopeError> {
    let source = node.string("source")?;
    if source != "aws.s3" {
        let detail = format!("expected `aws.s3`, found `{}`", quote(source));
        return Err(node.invalid("source", detail));
    }
    let detail_type = node.string("detail-type")?;
    let mut out = Decoded::empty(Format::EventBridge);
    if detail_type == "Object Created" {
        push_classified(&mut out, eventbridge_object(node)?);
    } else {
        // Other S3 event types need not name an object; the skip is the same either way.
        let object = eventbridge_object(node).ok();
        let detail = format!("EventBridge `{}` event", quote(detail_type));
        out.skip(SkipReason::NotObjectCreated, object, detail);
    }
    Ok(out)
}

fn eventbridge_object(node: &Node<'_>) -> Result<ObjectRef, EnvelopeError> {
    let detail = node.object("detail")?;
    let object = detail.object("object")?;
    Ok(ObjectRef {
        bucket: bucket_name(&detail.object("bucket")?, "name")?,
        key: object.string("key")?.to_owned(),
        size: object.opt_u64("size")?,
        etag: object.opt_string("etag")?,
        sequencer: object.opt_string("sequencer")?,
        version_id: object.opt_string("version-id")?,
    })
}

/// The bucket name in `node.field`: 1 to 255 of `[A-Za-z0-9._-]` (S3's rules, with the looser
/// ones of legacy us-east-1 buckets). Anything else cannot be a bucket, and must not travel on
/// into logs, caches and DLQ attributes.
fn bucket_name(node: &Node<'_>, field: &str) -> Result<String, EnvelopeError> {
    let name = node.string(field)?;
    let valid = (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(name.to_owned())
    } else {
        let detail = format!("`{}` is not an S3 bucket name", quote(name));
        Err(node.invalid(field, detail))
    }
}

/// Adds a created object to process, or skips it when its key is not a CloudTrail log file.
fn push_classified(out: &mut Decoded, object: ObjectRef) {
    match classify_key(&object.key) {
        Ok(()) => out.objects.push(object),
        Err(reason) => {
            let detail = format!(
                "key `{}` is {}",
                quote(&object.key),
                reason.key_description()
            );
            out.skip(reason, Some(object), detail);
        }
    }
}

/// A message-supplied string made safe to quote: control characters escaped, length capped.
fn quote(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_QUOTED)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().nth(MAX_QUOTED).is_some() {
        out.push('…');
    }
    out
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(s) if s.is_empty() => "an empty string",
        Value::String(_) => "a string",
        Value::Array(a) if a.is_empty() => "an empty array",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid_type(path: String, expected: &str, found: &Value) -> EnvelopeError {
    let detail = format!("expected {expected}, found {}", type_name(found));
    EnvelopeError::Invalid { path, detail }
}

#[cfg(test)]
mod tests;
