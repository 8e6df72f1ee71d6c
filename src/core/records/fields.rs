//! The fields of one CloudTrail record that the filter and the mapping read.
//!
//! Fields are lenient: a value of an unexpected type reads as absent instead of failing the
//! record, so one odd record cannot break a file. Duplicate keys keep the last value, as most
//! JSON readers do. Strings borrow from the parse buffer unless they hold escapes.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

use super::Element;

/// Visitor methods that read every JSON value other than the wanted one as absent
/// (`Default::default()`), consuming nested values.
macro_rules! forward_absent {
    ($de:lifetime) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        forward_absent!($de, bool);
    };
    ($de:lifetime, bool) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_seq<A: SeqAccess<$de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
        fn visit_map<A: MapAccess<$de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

/// One CloudTrail record, as far as this daemon reads it. Absent and mistyped fields are `None`.
#[derive(Debug, Default)]
pub struct Record<'a> {
    pub event_id: Option<Cow<'a, str>>,
    pub event_time: Option<Cow<'a, str>>,
    pub event_version: Option<Cow<'a, str>>,
    pub event_source: Option<Cow<'a, str>>,
    pub event_name: Option<Cow<'a, str>>,
    pub event_type: Option<Cow<'a, str>>,
    pub event_category: Option<Cow<'a, str>>,
    pub aws_region: Option<Cow<'a, str>>,
    pub source_ip_address: Option<Cow<'a, str>>,
    pub recipient_account_id: Option<Cow<'a, str>>,
    pub request_id: Option<Cow<'a, str>>,
    /// `readOnly`: a boolean, or the strings `"true"`/`"false"` in any case.
    pub read_only: Option<bool>,
    /// `managementEvent`, read like `readOnly`.
    pub management_event: Option<bool>,
    /// Whether `errorCode` holds a value (not null, not empty).
    pub error_code: Presence,
    /// Whether `errorMessage` holds a value (not null, not empty).
    pub error_message: Presence,
    pub user_identity: Option<&'a RawValue>,
    pub request_parameters: Option<&'a RawValue>,
    pub resources: Option<&'a RawValue>,
}

/// Whether a field holds a value; `null` and `""` count as absent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Presence(pub bool);

/// Why a record cannot become a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    NotAnObject,
    Unreadable,
    MissingEventId,
    MissingEventTime,
    BadEventTime,
    /// `eventTime` before CloudTrail existed or more than a day ahead (see `filter::plausible`).
    ImplausibleEventTime,
}

impl Malformed {
    /// A short description for logs and `--explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::NotAnObject => "the record is not a JSON object",
            Malformed::Unreadable => "a field of the record holds a value out of range",
            Malformed::MissingEventId => "eventID is missing or not a non-empty string",
            Malformed::MissingEventTime => "eventTime is missing or not a string",
            Malformed::BadEventTime => "eventTime is not a date-time",
            Malformed::ImplausibleEventTime => {
                "eventTime is implausible: before 2013-01-01T00:00:00Z or more than a day after now"
            }
        }
    }
}

/// What identifies a record: its `eventID` and its `eventTime` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKey<'r> {
    pub event_id: &'r str,
    pub unix_seconds: i64,
}

impl<'a> Record<'a> {
    /// The record's identity, or why it is malformed.
    ///
    /// # Errors
    /// [`Malformed`] when `eventID` is not a non-empty string or `eventTime` is not a date-time.
    pub fn key(&self) -> Result<RecordKey<'_>, Malformed> {
        let event_id = match self.event_id.as_deref() {
            Some(id) if !id.is_empty() => id,
            _ => return Err(Malformed::MissingEventId),
        };
        let time = self
            .event_time
            .as_deref()
            .ok_or(Malformed::MissingEventTime)?;
        let unix_seconds = parse_event_time(time).ok_or(Malformed::BadEventTime)?;
        Ok(RecordKey {
            event_id,
            unix_seconds,
        })
    }
}

/// Parses CloudTrail's `eventTime` into Unix seconds.
///
/// Accepts `YYYY-MM-DDThh:mm:ss` with `T` or a space, optional fractional seconds (dropped),
/// and a zone of `Z`, `±hh:mm` or none (UTC). Anything else is `None`.
pub fn parse_event_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = zone_offset_seconds(rest)?;
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn zone_offset_seconds(zone: &[u8]) -> Option<i64> {
    match zone {
        [] | [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The record fields this daemon reads, by their CloudTrail names.
enum Field {
    EventId,
    EventTime,
    EventVersion,
    EventSource,
    EventName,
    EventType,
    EventCategory,
    AwsRegion,
    SourceIpAddress,
    RecipientAccountId,
    RequestId,
    ReadOnly,
    ManagementEvent,
    ErrorCode,
    ErrorMessage,
    UserIdentity,
    RequestParameters,
    Resources,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "eventID" => Field::EventId,
                    "eventTime" => Field::EventTime,
                    "eventVersion" => Field::EventVersion,
                    "eventSource" => Field::EventSource,
                    "eventName" => Field::EventName,
                    "eventType" => Field::EventType,
                    "eventCategory" => Field::EventCategory,
                    "awsRegion" => Field::AwsRegion,
                    "sourceIPAddress" => Field::SourceIpAddress,
                    "recipientAccountId" => Field::RecipientAccountId,
                    "requestID" => Field::RequestId,
                    "readOnly" => Field::ReadOnly,
                    "managementEvent" => Field::ManagementEvent,
                    "errorCode" => Field::ErrorCode,
                    "errorMessage" => Field::ErrorMessage,
                    "userIdentity" => Field::UserIdentity,
                    "requestParameters" => Field::RequestParameters,
                    "resources" => Field::Resources,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

/// Reads any JSON value: an object becomes a [`Record`], anything else [`Element::NotAnObject`].
pub(super) struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CloudTrail record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = Record::default();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::EventId => r.event_id = map.next_value::<Lenient<'de>>()?.0,
                Field::EventTime => r.event_time = map.next_value::<Lenient<'de>>()?.0,
                Field::EventVersion => r.event_version = map.next_value::<Lenient<'de>>()?.0,
                Field::EventSource => r.event_source = map.next_value::<Lenient<'de>>()?.0,
                Field::EventName => r.event_name = map.next_value::<Lenient<'de>>()?.0,
                Field::EventType => r.event_type = map.next_value::<Lenient<'de>>()?.0,
                Field::EventCategory => r.event_category = map.next_value::<Lenient<'de>>()?.0,
                Field::AwsRegion => r.aws_region = map.next_value::<Lenient<'de>>()?.0,
                Field::SourceIpAddress => r.source_ip_address = map.next_value::<Lenient<'de>>()?.0,
                Field::RecipientAccountId => {
                    r.recipient_account_id = map.next_value::<Lenient<'de>>()?.0
                }
                Field::RequestId => r.request_id = map.next_value::<Lenient<'de>>()?.0,
                Field::ReadOnly => r.read_only = map.next_value::<LenientBool>()?.0,
                Field::ManagementEvent => r.management_event = map.next_value::<LenientBool>()?.0,
                Field::ErrorCode => r.error_code = map.next_value()?,
                Field::ErrorMessage => r.error_message = map.next_value()?,
                Field::UserIdentity => r.user_identity = raw_unless_null(map.next_value()?),
                Field::RequestParameters => {
                    r.request_parameters = raw_unless_null(map.next_value()?)
                }
                Field::Resources => r.resources = raw_unless_null(map.next_value()?),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Element::Record(r))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Element::NotAnObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject)
    }
}

fn raw_unless_null(raw: &RawValue) -> Option<&RawValue> {
    (raw.get() != "null").then_some(raw)
}

/// A string field that reads any other JSON value as absent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lenient<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Lenient<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(s))))
            }
            forward_absent!('de);
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A boolean field that also reads `"true"`/`"false"` (any case); anything else is absent.
#[derive(Default)]
struct LenientBool(Option<bool>);

impl<'de> Deserialize<'de> for LenientBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientBool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(LenientBool(Some(b)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(LenientBool(if s.eq_ignore_ascii_case("true") {
                    Some(true)
                } else if s.eq_ignore_ascii_case("false") {
                    Some(false)
                } else {
                    None
                }))
            }
            forward_absent!('de, bool);
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Presence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Presence;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Presence(false))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Presence(!s.is_empty()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Presence(true))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Presence(true))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Presence(true))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Presence(true))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Presence(true))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Presence(true))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a top-level member name is `Records`, read without keeping the name.
pub(super) struct IsRecords(pub bool);

impl<'de> Deserialize<'de> for IsRecords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IsRecords;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(IsRecords(s == "Records"))
            }
        }
        d.deserialize_str(V)
    }
}
