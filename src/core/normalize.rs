//! Maps a kept CloudTrail record to the BigPanda Changes API request body, exactly as
//! change-model.md ("The mapping") says. Pure: a record in, a [`Change`] out.
//!
//! Tag values: strings as they are; numbers and booleans in their JSON text; objects and
//! arrays as compact JSON keeping the source's key order; `null`, absent and empty values
//! (`""`, `{}`, `[]`) give no tag; a value longer than the limit is cut on a character boundary
//! and ends in `…`.

mod identity;
mod json;

use crate::core::records::{Malformed, Record};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

pub use json::compact;

/// The status of every change: a CloudTrail record is a completed call.
pub const STATUS_DONE: &str = "Done";

/// Options of the mapping (`[normalize]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Longest tag value, in characters; longer values are cut and end in `…`.
    pub max_tag_value_chars: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_tag_value_chars: 1024,
        }
    }
}

/// Where a record came from, for the change's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The S3 bucket, when the record came from S3.
    pub bucket: Option<&'a str>,
    /// The S3 key, or the local path.
    pub key: &'a str,
}

/// One BigPanda change: the exact JSON body POSTed to `/data/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub identifier: String,
    pub status: &'static str,
    pub summary: String,
    pub start: i64,
    pub end: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_url: Option<String>,
    pub tags: Tags,
    pub metadata: Metadata,
}

/// Tags in a stable order, serialized as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(pub Vec<(String, String)>);

impl Tags {
    /// The value of tag `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Where the change came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    pub key: String,
    #[serde(rename = "eventVersion", skip_serializing_if = "Option::is_none")]
    pub event_version: Option<String>,
    #[serde(rename = "requestID", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Maps `record` to its change.
///
/// # Errors
/// [`Malformed`] when the record has no usable `eventID` or `eventTime`.
pub fn normalize(
    record: &Record<'_>,
    origin: Origin<'_>,
    opts: Options,
) -> Result<Change, Malformed> {
    let key = record.key()?;
    let region = record.aws_region.as_deref().filter(|r| is_region(r));
    let mut tags = TagBuilder {
        tags: Vec::new(),
        max: opts.max_tag_value_chars,
    };
    identity::user_tags(record.user_identity, &mut tags);
    tags.text("event_source", record.event_source.as_deref());
    tags.text("aws_region", record.aws_region.as_deref());
    tags.text("aws_account_id", record.recipient_account_id.as_deref());
    tags.text("source_ip", record.source_ip_address.as_deref());
    tags.request_parameters(record.request_parameters);
    tags.resources(record.resources);
    Ok(Change {
        identifier: key.event_id.to_owned(),
        status: STATUS_DONE,
        summary: record
            .event_name
            .as_deref()
            .unwrap_or("(no eventName)")
            .to_owned(),
        start: key.unix_seconds,
        end: key.unix_seconds,
        ticket_url: region.and_then(|r| ticket_url(r, key.event_id)),
        tags: Tags(tags.tags),
        metadata: Metadata {
            bucket: origin.bucket.map(str::to_owned),
            key: origin.key.to_owned(),
            event_version: record.event_version.as_deref().map(str::to_owned),
            request_id: record.request_id.as_deref().map(str::to_owned),
        },
    })
}

/// Characters escaped in the URL fragment that holds the event ID.
const FRAGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'#')
    .add(b'%');

/// The CloudTrail console page of one event in its region's partition: China (`cn-*`) and
/// GovCloud (`us-gov-*`) have consoles of their own, the isolated partitions have no public
/// console (`None`), every other region name is commercial.
pub fn ticket_url(region: &str, event_id: &str) -> Option<String> {
    let id = utf8_percent_encode(event_id, FRAGMENT);
    let url = if region.starts_with("cn-") {
        format!("https://console.amazonaws.cn/cloudtrail/home?region={region}#/events/{id}")
    } else if region.starts_with("us-gov-") {
        format!("https://console.amazonaws-us-gov.com/cloudtrail/home?region={region}#/events/{id}")
    } else if is_isolated(region) {
        return None;
    } else {
        format!(
            "https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events/{id}"
        )
    };
    Some(url)
}

/// An isolated partition's region: `us-iso-*`, `us-isob-*`, `us-isof-*`, `eu-isoe-*` and any
/// other whose second part starts with `iso` (our reading of the model's "and the like").
fn is_isolated(region: &str) -> bool {
    region
        .split('-')
        .nth(1)
        .is_some_and(|part| part.starts_with("iso"))
}

/// Whether `s` looks like an AWS region name (so it is safe in a host name).
fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Cuts `value` to at most `max` characters, the last being `…` when anything was cut.
pub fn cut(value: Cow<'_, str>, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.into_owned(),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = value
                .char_indices()
                .nth(keep)
                .map_or(value.len(), |(i, _)| i);
            let mut out = String::with_capacity(end + '…'.len_utf8());
            out.push_str(&value[..end]);
            out.push('…');
            out
        }
    }
}

/// Collects tags, applying the value rules.
pub(crate) struct TagBuilder {
    tags: Vec<(String, String)>,
    max: usize,
}

impl TagBuilder {
    /// A string tag; `None` and `""` give no tag.
    pub(crate) fn text(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.tags
                .push((name.to_owned(), cut(Cow::Borrowed(v), self.max)));
        }
    }

    /// A tag from a raw JSON value; `null` and empty values give no tag.
    fn raw(&mut self, name: String, value: &RawValue) {
        if let Some(v) = json::tag_text(value) {
            self.tags.push((name, cut(v, self.max)));
        }
    }

    /// `rp_{key}` for each top-level key of `requestParameters`, in source order; a value that
    /// is not an object (a string, a number, an array) is one tag `rp`.
    fn request_parameters(&mut self, raw: Option<&RawValue>) {
        let Some(raw) = raw else {
            return;
        };
        match json::members(raw) {
            Some(members) => {
                for (key, value) in members {
                    self.raw(format!("rp_{key}"), value);
                }
            }
            None => self.raw("rp".to_owned(), raw),
        }
    }

    /// `resources{i}_{key}` for each key of each element of `resources`; an element that is
    /// not an object gives one tag `resources{i}` with its value.
    fn resources(&mut self, raw: Option<&RawValue>) {
        let Some(items) = raw.and_then(json::elements) else {
            return;
        };
        for (i, item) in items.into_iter().enumerate() {
            match json::members(item) {
                Some(members) => {
                    for (key, value) in members {
                        self.raw(format!("resources{i}_{key}"), value);
                    }
                }
                None => {
                    self.raw(format!("resources{i}"), item);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
