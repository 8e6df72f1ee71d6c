//! Properties of the envelope decoder, the record stream and the mapping, over generated inputs.

use cloudtrail_changes::core::envelope::{self, Decoded};
use cloudtrail_changes::core::filter::{Dedup, Policy};
use cloudtrail_changes::core::normalize::{self, Origin};
use cloudtrail_changes::core::pipeline::{Outcome, Pipeline, Tally};
use cloudtrail_changes::core::records::{self, Element, Limits, RecordReader, RecordsError};
use flate2::write::GzEncoder;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::io::{self, Cursor, Read, Write};

/// The moment of processing in these tests: 2030-01-01T00:00:00Z.
const NOW: i64 = 1_893_456_000;

/// `default` cases per property, or `PROPTEST_CASES` when set (for a longer run).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A JSON value of bounded depth with awkward strings.
fn value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zé日\"\\\\/\\n\\t -]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A record as (key, value) members: the fields the mapping reads plus unknown ones. Every
/// generated record is a change (no read-only event names), so the properties below compare
/// real mappings, never two empty lists.
fn record() -> impl Strategy<Value = Vec<(String, serde_json::Value)>> {
    (
        "[0-9a-f-]{1,36}",
        prop::sample::select(vec![
            "CreateUser",
            "PutBucketPolicy",
            "RunInstances",
            "DeleteBucket",
            "AttachRolePolicy",
        ]),
        prop::collection::vec(("[a-zA-Z]{1,8}", value()), 0..5),
        prop::collection::vec(value(), 0..3),
        value(),
    )
        .prop_map(|(id, name, params, resources, extra)| {
            let params: serde_json::Map<String, serde_json::Value> = params.into_iter().collect();
            vec![
                ("eventID".to_owned(), id.into()),
                ("eventTime".to_owned(), "2024-03-01T10:20:30Z".into()),
                ("eventName".to_owned(), name.into()),
                ("awsRegion".to_owned(), "eu-west-1".into()),
                (
                    "userIdentity".to_owned(),
                    serde_json::json!({"type": "IAMUser", "userName": "u"}),
                ),
                ("requestParameters".to_owned(), params.into()),
                ("resources".to_owned(), resources.into()),
                ("zUnknown".to_owned(), extra),
            ]
        })
}

/// Writes members as a JSON object with `gap` between every token.
fn write_object(members: &[(String, serde_json::Value)], gap: &str) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| {
            format!(
                "{gap}{}{gap}:{gap}{}{gap}",
                serde_json::to_string(k).unwrap_or_default(),
                pretty_or_compact(v, gap)
            )
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

fn pretty_or_compact(v: &serde_json::Value, gap: &str) -> String {
    if gap.is_empty() {
        serde_json::to_string(v).unwrap_or_default()
    } else {
        serde_json::to_string_pretty(v).unwrap_or_default()
    }
}

/// The changes `process` would produce for a document, or the pipeline's error.
fn changes_of(doc: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    let policy = Policy::default();
    let pipeline = Pipeline {
        policy: &policy,
        normalize: normalize::Options::default(),
        max_record_bytes: 1 << 20,
        now: NOW,
    };
    let mut out = Vec::new();
    let mut tally = Tally::default();
    let result = pipeline.run(
        doc,
        Origin {
            bucket: None,
            key: "k",
        },
        &mut Dedup::default(),
        &mut tally,
        |o| {
            if let Outcome::Change(c) = o {
                out.push(serde_json::to_value(c).unwrap_or_default());
            }
            Ok::<(), std::io::Error>(())
        },
    );
    result.map(|()| out).map_err(|e| format!("{e:?}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn a_record_maps_to_the_same_change_whatever_the_whitespace_and_field_order(
        members in record(), order in any::<prop::sample::Index>(), gap in prop::sample::select(vec!["", " ", "\n\t ", "\r\n"])
    ) {
        let compact = format!(r#"{{"Records":[{}]}}"#, write_object(&members, ""));
        let mut shuffled = members.clone();
        shuffled.rotate_left(order.index(members.len()));
        shuffled.reverse();
        let spaced = format!("{gap}{{{gap}\"Records\"{gap}:{gap}[{gap}{}{gap}]{gap}}}{gap}", write_object(&shuffled, gap));
        let expected = changes_of(compact.as_bytes());
        prop_assert!(expected.as_ref().is_ok_and(|c| c.len() == 1), "one change: {:?}", expected);
        prop_assert_eq!(expected, changes_of(spaced.as_bytes()));
    }

    #[test]
    fn the_record_stream_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut doc = br#"{"Records":["#.to_vec();
        doc.extend(&bytes);
        let _ = changes_of(&doc);
        let _ = changes_of(&bytes);
    }

    #[test]
    fn every_tag_value_is_within_the_limit(mut members in record(), limit in 16usize..64, long_name in "[a-zé日 ]{64,200}") {
        // One value is always over the limit, so the cut itself is exercised in every case.
        for (key, value) in &mut members {
            if key == "userIdentity" {
                *value = json!({"type": "IAMUser", "userName": long_name.clone()});
            }
        }
        let doc = format!(r#"{{"Records":[{}]}}"#, write_object(&members, ""));
        let policy = Policy::default();
        let pipeline = Pipeline { policy: &policy, normalize: normalize::Options { max_tag_value_chars: limit }, max_record_bytes: 1 << 20, now: NOW };
        let mut tally = Tally::default();
        let (mut changes, mut tags, mut user_name) = (0, 0, None);
        let result = pipeline.run(doc.as_bytes(), Origin { bucket: None, key: "k" }, &mut Dedup::default(), &mut tally, |o| {
            if let Outcome::Change(c) = o {
                changes += 1;
                user_name = c.tags.0.iter().find(|(k, _)| k == "user_name").map(|(_, v)| v.clone());
                for (k, v) in &c.tags.0 {
                    tags += 1;
                    assert!(v.chars().count() <= limit, "{k}: {v}");
                }
            }
            Ok::<(), std::io::Error>(())
        });
        prop_assert!(result.is_ok(), "{:?}", result);
        prop_assert_eq!(changes, 1, "the record is a change");
        prop_assert!(tags > 0, "the change has tags to check");
        let user_name = user_name.unwrap_or_default();
        prop_assert_eq!(user_name.chars().count(), limit, "the long user name is cut to the limit: {}", user_name);
        prop_assert!(user_name.ends_with('…'), "{}", user_name);
    }
}

// ---------------------------------------------------------------------------------------------
// The envelope decoder.

/// Short text with the characters that need escaping or encoding.
fn text() -> BoxedStrategy<Value> {
    "[a-zA-Z0-9 /%+:._é日\"\\\\-]{0,16}"
        .prop_map(Value::from)
        .boxed()
}

/// One of `usual`, or (one time in ten) one of `odd`, as a JSON string.
fn one_of(usual: &[&'static str], odd: &[&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        9 => prop::sample::select(usual.to_vec()),
        1 => prop::sample::select(odd.to_vec()),
    ]
    .prop_map(Value::from)
    .boxed()
}

/// A field: usually of the right kind, sometimes absent (`None`), null, or any other value
/// (rarely enough that a whole envelope of ten fields is right about one time in five).
fn field(right: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        24 => right.prop_map(Some),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        2 => value().prop_map(Some),
    ]
    .boxed()
}

/// A JSON object of the members that are present.
fn object(members: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect(),
    )
}

/// An S3 key: a CloudTrail log file (with awkward prefixes), a digest, a folder, or anything.
fn s3_key() -> BoxedStrategy<String> {
    let log_file = (
        "([a-zA-Z0-9 +%é_.-]{1,10}/)?",
        prop::option::of("o-[a-z0-9]{1,12}/"),
        "[0-9]{12}",
        prop::sample::select(vec![
            "CloudTrail",
            "CloudTrail-Digest",
            "CloudTrail-Insight",
        ]),
        "[a-z]{2}-[a-z]{4,7}-[1-3]",
        "[0-9]{4}/[0-9]{2}/[0-9]{2}",
        "[A-Za-z0-9]{16}",
    )
        .prop_map(|(prefix, org, account, kind, region, date, file)| {
            let org = org.unwrap_or_default();
            format!(
                "{prefix}AWSLogs/{org}{account}/{kind}/{region}/{date}/\
                 {account}_{kind}_{region}_{file}.json.gz"
            )
        });
    prop_oneof![
        4 => log_file,
        1 => "[a-zA-Z0-9 /+%]{1,12}/",
        2 => "\\PC{1,24}",
        1 => any::<String>(),
    ]
    .boxed()
}

/// S3's encoding of a key in an event notification: unreserved bytes and `/` as they are, a
/// space as `+`, everything else `%XX` per UTF-8 byte.
fn s3_encode(key: &str, lower_hex: bool) -> String {
    let mut out = String::with_capacity(key.len() * 3);
    for &b in key.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' | b'/' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ if lower_hex => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A number as S3 or EventBridge might (mis)state an object size.
fn size() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
    ]
    .boxed()
}

/// A bucket name; now and then one S3 would not allow.
fn bucket_name() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => "[a-z0-9][a-z0-9.-]{2,24}",
        1 => "[A-Za-z0-9._/ é\\-]{0,8}",
        1 => "[a-z]{256}",
    ]
    .prop_map(Value::from)
    .boxed()
}

/// A bucket as `{"name": ...}`.
fn bucket() -> BoxedStrategy<Value> {
    field(bucket_name())
        .prop_map(|name| object(vec![("name", name)]))
        .boxed()
}

/// An object as `{"key": ..., "size": ..., ...}`, its key encoded the S3 way or not.
fn s3_object(encode: bool, etag: &'static str) -> BoxedStrategy<Value> {
    let key = s3_key()
        .prop_map(move |k| Value::from(if encode { s3_encode(&k, false) } else { k }))
        .boxed();
    (field(key), field(size()), field(text()), field(text()))
        .prop_map(move |(key, size, etag_value, sequencer)| {
            object(vec![
                ("key", key),
                ("size", size),
                (etag, etag_value),
                ("sequencer", sequencer),
            ])
        })
        .boxed()
}

/// An S3 event notification.
fn s3_event() -> BoxedStrategy<Value> {
    let s3 = (field(bucket()), field(s3_object(true, "eTag")))
        .prop_map(|(bucket, object_)| object(vec![("bucket", bucket), ("object", object_)]))
        .boxed();
    let record = (
        field(one_of(
            &["aws:s3"],
            &["s3.amazonaws.com", "ec2.amazonaws.com"],
        )),
        field(one_of(
            &["ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload"],
            &["ObjectRemoved:Delete", "s3:TestEvent", ""],
        )),
        field(s3),
    )
        .prop_map(|(source, name, s3)| {
            object(vec![
                ("eventVersion", Some("2.1".into())),
                ("eventSource", source),
                ("eventName", name),
                ("s3", s3),
            ])
        });
    let records = prop::collection::vec(record, 1..4)
        .prop_map(Value::from)
        .boxed();
    field(records)
        .prop_map(|records| object(vec![("Records", records)]))
        .boxed()
}

/// S3's test event.
fn s3_test_event() -> BoxedStrategy<Value> {
    (
        field(one_of(&["s3:TestEvent"], &["s3:OtherEvent"])),
        field(text()),
    )
        .prop_map(|(event, bucket)| {
            object(vec![
                ("Service", Some("Amazon S3".into())),
                ("Event", event),
                ("Bucket", bucket),
            ])
        })
        .boxed()
}

/// CloudTrail's own notification: a bucket and one key or an array of keys.
fn cloudtrail_notification() -> BoxedStrategy<Value> {
    let keys = prop_oneof![
        s3_key().prop_map(Value::from),
        prop::collection::vec(field(s3_key().prop_map(Value::from).boxed()), 0..3)
            .prop_map(|keys| keys.into_iter().map(Option::unwrap_or_default).collect()),
    ]
    .boxed();
    (field(bucket_name()), field(keys))
        .prop_map(|(bucket, keys)| object(vec![("s3Bucket", bucket), ("s3ObjectKey", keys)]))
        .boxed()
}

/// An EventBridge event from S3.
fn eventbridge() -> BoxedStrategy<Value> {
    let detail = (field(bucket()), field(s3_object(false, "etag")))
        .prop_map(|(bucket, object_)| object(vec![("bucket", bucket), ("object", object_)]))
        .boxed();
    (
        field(one_of(
            &["Object Created"],
            &["Object Deleted", "Object Restore Completed"],
        )),
        field(one_of(&["aws.s3"], &["aws.ec2"])),
        field(detail),
    )
        .prop_map(|(detail_type, source, detail)| {
            object(vec![
                ("version", Some("0".into())),
                ("detail-type", detail_type),
                ("source", source),
                ("detail", detail),
            ])
        })
        .boxed()
}

/// Any of the formats that may be sent to the queue as they are or inside SNS.
fn inner_envelope() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => s3_event(),
        1 => s3_test_event(),
        2 => cloudtrail_notification(),
        2 => eventbridge(),
        1 => value(),
    ]
    .boxed()
}

/// An SNS envelope around `inner`, or a subscription control message.
fn sns(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let message = prop_oneof![
        6 => inner.prop_map(|v| Value::from(v.to_string())),
        1 => Just(Value::from(" CloudTrail validation message.\n")),
        1 => text(),
    ]
    .boxed();
    (
        field(one_of(
            &[
                "Notification",
                "Notification",
                "Notification",
                "SubscriptionConfirmation",
            ],
            &["UnsubscribeConfirmation", "Invalid"],
        )),
        field(message),
        field(text()),
        field(text()),
    )
        .prop_map(|(kind, message, topic, url)| {
            object(vec![
                ("Type", kind),
                ("Message", message),
                ("TopicArn", topic),
                ("SubscribeURL", url),
            ])
        })
        .boxed()
}

/// A plausible message body: a format, in SNS, or in SNS in SNS.
fn envelope_body() -> BoxedStrategy<String> {
    let value = prop_oneof![
        6 => inner_envelope(),
        6 => sns(inner_envelope()),
        1 => sns(sns(inner_envelope())),
    ];
    (value, any::<bool>())
        .prop_map(|(v, pretty)| {
            if pretty {
                serde_json::to_string_pretty(&v).unwrap_or_default()
            } else {
                v.to_string()
            }
        })
        .boxed()
}

/// Decodes `body`, checking what must hold of any outcome.
fn decode_checked(body: &str) -> Result<Decoded, envelope::EnvelopeError> {
    let decoded = envelope::decode(body);
    match &decoded {
        Ok(d) => {
            for object in &d.objects {
                assert!(
                    envelope::classify_key(&object.key).is_ok(),
                    "handed on {object}, which is not a log file"
                );
            }
            let skipped = d.skipped.iter().filter_map(|s| s.object.as_ref());
            for object in d.objects.iter().chain(skipped) {
                let bucket = object.bucket.as_bytes();
                let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"._-".contains(b);
                assert!(
                    (1..=255).contains(&bucket.len()) && bucket.iter().all(allowed),
                    "named {object}, whose bucket is not a bucket name"
                );
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.len() < 32 * 1024,
                "an error of {} bytes",
                message.len()
            );
        }
    }
    decoded
}

/// A valid S3 event notification of one created object under `key` (already encoded).
fn s3_event_with_encoded_key(encoded: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": encoded, "size": 1}},
    }]})
    .to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn the_envelope_decoder_never_panics_on_arbitrary_strings(
        body in prop_oneof![
            any::<String>(),
            "[{}\\[\\]\":,. a-zA-Z0-9\\\\-]{0,64}",
            "\\PC{0,64}".prop_map(|s| format!(r#"{{"Type":"Notification","Message":"{s}"}}"#)),
            "\\PC{0,64}".prop_map(|s| format!(r#"{{"Records":[{{"s3":{s}"#)),
        ]
    ) {
        let _ = decode_checked(&body);
    }

    #[test]
    fn the_envelope_decoder_never_panics_on_plausible_envelopes(body in envelope_body()) {
        let _ = decode_checked(&body);
    }

    #[test]
    fn an_s3_key_encoded_the_s3_way_decodes_to_itself(
        key in prop_oneof![s3_key(), any::<String>()], lower_hex in any::<bool>()
    ) {
        let encoded = s3_encode(&key, lower_hex);
        prop_assert_eq!(envelope::decode_s3_key(&encoded), Ok(key.clone()));
    }

    #[test]
    fn the_key_of_an_s3_event_decodes_to_the_original(
        key in s3_key().prop_filter("a key is not empty", |k| !k.is_empty()),
        lower_hex in any::<bool>(),
    ) {
        let decoded = decode_checked(&s3_event_with_encoded_key(&s3_encode(&key, lower_hex)));
        let decoded = decoded.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let named: Vec<_> = decoded
            .objects
            .iter()
            .chain(decoded.skipped.iter().filter_map(|s| s.object.as_ref()))
            .collect();
        prop_assert_eq!(named.len(), 1);
        prop_assert_eq!(&named[0].key, &key);
        prop_assert_eq!(named[0].bucket.as_str(), "b");
        // A log file is processed, whatever its prefix needed encoding.
        let is_log_file = envelope::classify_key(&key).is_ok();
        prop_assert_eq!(decoded.objects.len(), usize::from(is_log_file));
    }
}

// ---------------------------------------------------------------------------------------------
// The record stream.

fn gzip(members: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for member in members {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(member).expect("writing to a Vec");
        out.extend(encoder.finish().expect("writing to a Vec"));
    }
    out
}

/// A CloudTrail-like document: records and other values in `Records`, other top-level
/// members around it, whitespace between tokens; then maybe cut short or with a byte changed.
fn document() -> BoxedStrategy<Vec<u8>> {
    // Now and then a record of a few kilobytes, past the smallest record limit's buffer.
    let big = (1000usize..6000).prop_map(|n| {
        let members = vec![
            ("eventID".to_owned(), Value::from("big")),
            ("pad".to_owned(), Value::from("x".repeat(n))),
        ];
        (members, None)
    });
    let element = prop_oneof![
        6 => record().prop_map(|members| (members, None)),
        2 => value().prop_map(|v| (Vec::new(), Some(v))),
        1 => big,
    ];
    (
        prop::collection::vec(element, 0..4),
        prop::option::of(value()),
        prop::sample::select(vec!["", " ", "\n\t ", "\r\n"]),
        0u8..4,
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(elements, other, gap, mutation, at, byte)| {
            let elements: Vec<String> = elements
                .iter()
                .map(|(members, plain)| match plain {
                    Some(v) => pretty_or_compact(v, gap),
                    None => write_object(members, gap),
                })
                .collect();
            let other = other.map_or_else(String::new, |v| {
                format!(r#""other"{gap}:{gap}{},{gap}"#, pretty_or_compact(&v, gap))
            });
            let doc = format!(
                "{gap}{{{gap}{other}\"Records\"{gap}:{gap}[{gap}{}{gap}]{gap}}}{gap}",
                elements.join(&format!(",{gap}"))
            );
            let mut doc = doc.into_bytes();
            let i = at.index(doc.len());
            match mutation {
                0 | 1 => {}
                2 => doc.truncate(i),
                _ => doc[i] = byte,
            }
            doc
        })
        .boxed()
}

/// Stored bytes: the document as it is, gzipped (in one or two members), or gzipped and then
/// cut short or with a byte flipped.
fn stored(doc: &[u8], wrap: u8, at: prop::sample::Index, flip: u8) -> Vec<u8> {
    match wrap {
        0 => doc.to_vec(),
        1 => gzip(&[doc]),
        2 => {
            let (a, b) = doc.split_at(at.index(doc.len() + 1));
            gzip(&[a, b])
        }
        3 => {
            let mut z = gzip(&[doc]);
            z.truncate(at.index(z.len()));
            z
        }
        _ => {
            let mut z = gzip(&[doc]);
            let i = at.index(z.len());
            z[i] ^= flip | 1;
            z
        }
    }
}

/// A reader that hands out short reads of the given sizes in turn, and `Interrupted` on every
/// third call when `interrupt` is set.
struct Chunky {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    calls: usize,
    interrupt: bool,
}

impl Chunky {
    fn new(data: &[u8], sizes: &[usize], interrupt: bool) -> Self {
        Chunky {
            data: data.to_vec(),
            at: 0,
            sizes: sizes.to_vec(),
            calls: 0,
            interrupt,
        }
    }
}

impl Read for Chunky {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.interrupt && self.calls.is_multiple_of(3) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let size = self.sizes[(self.calls - 1) % self.sizes.len()];
        let n = size.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Every element read from decompressed `json`, and how the reading ended, as text.
fn transcript(json: impl Read) -> Vec<String> {
    let mut out = Vec::new();
    let mut reader = RecordReader::new(json, 1 << 20);
    let result = reader.for_each(|index, element| {
        out.push(format!("{index}: {element:?}"));
        Ok::<(), RecordsError>(())
    });
    out.push(match result {
        Ok(()) => format!("ended well at byte {}", reader.offset()),
        Err(e) => format!("failed: {e}"),
    });
    out
}

/// [`transcript`] of stored bytes opened with `records::open`.
fn opened_transcript(src: impl Read + Send + 'static) -> Vec<String> {
    match records::open(src, &Limits::default()) {
        Ok((_, json)) => transcript(json),
        // The prefix it quotes is what the first read returned.
        Err(RecordsError::NotGzipOrJson { .. }) => vec!["neither gzip nor JSON".to_owned()],
        Err(e) => vec![format!("not opened: {e}")],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(192), ..ProptestConfig::default() })]

    #[test]
    fn the_record_stream_never_panics_with_small_limits(
        doc in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), document()],
        wrap in 0u8..5,
        at in any::<prop::sample::Index>(),
        flip in any::<u8>(),
        // Which of the size limits is tight (bit 0: compressed, bit 1: decompressed), each
        // around the size at hand so that it is sometimes passed, sometimes not.
        (tight, object_limit, document_limit) in (0u8..4, any::<prop::sample::Index>(), any::<prop::sample::Index>()),
        max_record_bytes in 0usize..4000,
    ) {
        let stored = stored(&doc, wrap, at, flip);
        let max_object_bytes = match tight & 1 {
            0 => 1 << 20,
            _ => object_limit.index(2 * stored.len() + 2) as u64,
        };
        let max_decompressed_bytes = match tight & 2 {
            0 => 1 << 20,
            _ => document_limit.index(2 * doc.len() + 2) as u64,
        };
        let limits = Limits { max_object_bytes, max_decompressed_bytes, max_record_bytes };
        let opened = records::open(Cursor::new(stored.clone()), &limits);
        let Ok((_, json)) = opened else {
            return Ok(());
        };
        let mut reader = RecordReader::new(json, max_record_bytes);
        let mut next = 0;
        let result = reader.for_each(|index, _| {
            assert_eq!(index, next, "element indices count up from 0");
            next += 1;
            Ok::<(), RecordsError>(())
        });
        match &result {
            Err(e) => {
                let _ = (e.to_string(), e.is_source_failure());
            }
            Ok(()) => {
                // Read to its end: within every limit.
                prop_assert!(stored.len() as u64 <= max_object_bytes);
                prop_assert!(reader.offset() <= max_decompressed_bytes);
            }
        }
        // The pipeline reads the same elements and ends the same way.
        let (_, json) = records::open(Cursor::new(stored), &limits).expect("opened before");
        let policy = Policy::default();
        let pipeline = Pipeline {
            policy: &policy,
            normalize: normalize::Options { max_tag_value_chars: 16 },
            max_record_bytes,
            now: NOW,
        };
        let mut tally = Tally::default();
        let piped = pipeline.run(
            json,
            Origin { bucket: None, key: "k" },
            &mut Dedup::default(),
            &mut tally,
            |_| Ok::<(), io::Error>(()),
        );
        prop_assert_eq!(tally.records, next);
        prop_assert_eq!(piped.is_ok(), result.is_ok());
    }

    #[test]
    fn short_reads_give_the_same_elements_as_reading_whole(
        doc in prop_oneof![1 => prop::collection::vec(any::<u8>(), 0..256), 4 => document()],
        sizes in prop::collection::vec(1usize..64, 1..6),
        interrupt in any::<bool>(),
        gzipped in any::<bool>(),
        threaded in any::<bool>(),
    ) {
        // Straight into the reader.
        let whole = transcript(Cursor::new(doc.clone()));
        prop_assert_eq!(&whole, &transcript(Chunky::new(&doc, &sizes, interrupt)));
        if threaded {
            let piped = records::pipelined(Chunky::new(&doc, &sizes, interrupt));
            prop_assert_eq!(&whole, &transcript(piped));
        }
        // Through `open`, gzipped or not, the short reads under the decompressor.
        let stored = if gzipped { gzip(&[&doc]) } else { doc.clone() };
        let whole = opened_transcript(Cursor::new(stored.clone()));
        prop_assert_eq!(&whole, &opened_transcript(Chunky::new(&stored, &sizes, interrupt)));
    }
}

// ---------------------------------------------------------------------------------------------
// Normalization.

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix seconds of a UTC date-time, counted day by day (independent of the crate's algorithm).
fn unix_seconds(year: i64, month: i64, day: i64, hms: (i64, i64, i64)) -> i64 {
    let year_days = |y| if is_leap(y) { 366 } else { 365 };
    let mut days: i64 = if year >= 1970 {
        (1970..year).map(year_days).sum()
    } else {
        -(year..1970).map(year_days).sum::<i64>()
    };
    days += (1..month).map(|m| days_in_month(year, m)).sum::<i64>() + day - 1;
    days * 86_400 + hms.0 * 3600 + hms.1 * 60 + hms.2
}

/// An `eventTime` CloudTrail (or a lenient producer) might write, with its Unix seconds.
fn event_time() -> BoxedStrategy<(String, i64)> {
    let zone = prop_oneof![
        Just(("Z".to_owned(), 0)),
        Just(("z".to_owned(), 0)),
        Just((String::new(), 0)),
        (any::<bool>(), 0i64..24, 0i64..60).prop_map(|(west, h, m)| {
            let sign = if west { '-' } else { '+' };
            let offset = (h * 3600 + m * 60) * if west { -1 } else { 1 };
            (format!("{sign}{h:02}:{m:02}"), offset)
        }),
    ];
    (
        0i64..10_000,
        1i64..13,
        any::<prop::sample::Index>(),
        (0i64..24, 0i64..60, 0i64..61),
        prop::sample::select(vec!['T', 't', ' ']),
        prop::option::of("[0-9]{1,9}"),
        zone,
    )
        .prop_map(|(year, month, day, hms, sep, fraction, (zone, offset))| {
            let day = day.index(days_in_month(year, month) as usize) as i64 + 1;
            let fraction = fraction.map_or_else(String::new, |f| format!(".{f}"));
            let (h, m, s) = hms;
            let text =
                format!("{year:04}-{month:02}-{day:02}{sep}{h:02}:{m:02}:{s:02}{fraction}{zone}");
            (text, unix_seconds(year, month, day, hms) - offset)
        })
        .boxed()
}

/// An `eventTime` that is no date-time.
fn bad_event_time() -> BoxedStrategy<Option<Value>> {
    prop::sample::select(vec![
        Some(json!("2024-13-01T00:00:00Z")),
        Some(json!("2023-02-29T00:00:00Z")),
        Some(json!("2024-04-31T00:00:00Z")),
        Some(json!("2024-03-01T24:00:00Z")),
        Some(json!("2024-03-01T10:60:00Z")),
        Some(json!("2024-03-01T10:20:61Z")),
        Some(json!("2024-03-01T10:20:30.Z")),
        Some(json!("2024-03-01T10:20:30+0100")),
        Some(json!("2024-03-01T10:20:30+24:00")),
        Some(json!("2024-03-01T10:20:30Zjunk")),
        Some(json!("2024-03-01X10:20:30Z")),
        Some(json!("2024-03-01")),
        Some(json!("")),
        Some(json!(1_709_288_430)),
        Some(Value::Null),
        Some(json!({"time": "2024-03-01T10:20:30Z"})),
        None,
    ])
    .boxed()
}

/// An `eventID` that is no identity.
fn bad_event_id() -> BoxedStrategy<Option<Value>> {
    prop::sample::select(vec![
        Some(json!("")),
        Some(json!(42)),
        Some(json!(["id"])),
        Some(Value::Null),
        None,
    ])
    .boxed()
}

/// A record whose identity is valid or not, with the identity a change must carry.
#[allow(clippy::type_complexity)]
fn identified_record() -> BoxedStrategy<(Vec<(String, Value)>, Option<(String, i64)>)> {
    let id = prop_oneof![
        4 => prop_oneof!["[0-9a-f-]{36}", "\\PC{1,24}", "[\\x00-\\x1f\"\\\\/]{1,6}"].prop_map(Ok),
        1 => bad_event_id().prop_map(Err),
    ];
    let time = prop_oneof![4 => event_time().prop_map(Ok), 1 => bad_event_time().prop_map(Err)];
    let extras = prop::collection::vec(("x[a-zA-Z]{0,6}", value()), 0..3);
    (id, time, extras, any::<prop::sample::Index>())
        .prop_map(|(id, time, extras, order)| {
            let mut members = vec![("eventName".to_owned(), Value::from("CreateUser"))];
            let expected = match (&id, &time) {
                (Ok(id), Ok((_, seconds))) => Some((id.clone(), *seconds)),
                _ => None,
            };
            match id {
                Ok(id) => members.push(("eventID".to_owned(), id.into())),
                Err(bad) => members.extend(bad.map(|v| ("eventID".to_owned(), v))),
            }
            match time {
                Ok((text, _)) => members.push(("eventTime".to_owned(), text.into())),
                Err(bad) => members.extend(bad.map(|v| ("eventTime".to_owned(), v))),
            }
            members.extend(extras);
            let n = members.len();
            members.rotate_left(order.index(n));
            (members, expected)
        })
        .boxed()
}

/// A policy that keeps every record with an identity (no read, noise, type or dedup filter).
fn keep_all() -> Policy {
    let settings = cloudtrail_changes::core::filter::FilterSettings {
        include_data_events: true,
        include_network_activity_events: true,
        keep_failed: true,
        deduplicate: false,
        read_prefixes: Vec::new(),
        noise: Vec::new(),
        ..Default::default()
    };
    Policy::new(&settings).expect("no globs to compile")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(192), ..ProptestConfig::default() })]

    #[test]
    fn every_change_carries_the_event_id_and_the_parsed_event_time(
        records in prop::collection::vec(identified_record(), 1..5),
        gap in prop::sample::select(vec!["", " ", "\n  "]),
    ) {
        let objects: Vec<String> = records.iter().map(|(m, _)| write_object(m, gap)).collect();
        let doc = format!(r#"{{"Records":[{}]}}"#, objects.join(","));
        let expected: Vec<Option<(String, i64)>> = records.into_iter().map(|(_, e)| e).collect();
        let origin = Origin { bucket: Some("b"), key: "k" };

        // Each record mapped on its own.
        let mut reader = RecordReader::new(doc.as_bytes(), 1 << 20);
        let result = reader.for_each(|index, element| {
            let Element::Record(record) = element else {
                panic!("element {index} is not a record");
            };
            let change = normalize::normalize(&record, origin, normalize::Options::default());
            match (&expected[index as usize], change) {
                (Some((id, seconds)), Ok(change)) => {
                    let json = serde_json::to_value(&change).expect("a change serializes");
                    assert_eq!(json["identifier"].as_str(), Some(id.as_str()), "{json}");
                    assert_eq!(json["start"].as_i64(), Some(*seconds), "{json}");
                    assert_eq!(json["end"].as_i64(), Some(*seconds), "{json}");
                }
                (None, Err(_)) => {}
                (expected, got) => panic!("record {index}: expected {expected:?}, got {got:?}"),
            }
            Ok::<(), RecordsError>(())
        });
        prop_assert!(result.is_ok(), "{:?}", result);

        // The pipeline hands on one outcome per element: a change exactly for the valid records
        // whose time is plausible (from 2013-01-01T00:00:00Z to a day after NOW).
        let expected: Vec<Option<(String, i64)>> = expected
            .into_iter()
            .map(|e| e.filter(|(_, s)| (1_356_998_400..=NOW + 86_400).contains(s)))
            .collect();
        let policy = keep_all();
        let pipeline = Pipeline { policy: &policy, normalize: normalize::Options::default(), max_record_bytes: 1 << 20, now: NOW };
        let mut tally = Tally::default();
        let mut index = 0;
        let piped = pipeline.run(doc.as_bytes(), origin, &mut Dedup::default(), &mut tally, |outcome| {
            let want = &expected[index];
            index += 1;
            match (want, outcome) {
                (Some((id, seconds)), Outcome::Change(change)) => {
                    let json = serde_json::to_value(&change).expect("a change serializes");
                    assert_eq!(json["identifier"].as_str(), Some(id.as_str()), "{json}");
                    assert_eq!((json["start"].as_i64(), json["end"].as_i64()), (Some(*seconds), Some(*seconds)));
                }
                (None, Outcome::Dropped(_)) => {}
                (want, Outcome::Change(c)) => panic!("record {}: expected {want:?}, got {c:?}", index - 1),
                (want, Outcome::Dropped(d)) => panic!("record {}: expected {want:?}, dropped {d:?}", index - 1),
            }
            Ok::<(), io::Error>(())
        });
        prop_assert!(piped.is_ok());
        prop_assert_eq!(index, expected.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the fuzzers and the properties above (each failed before its fix).

/// Reads `doc` in two reads, the first ending after `split` bytes.
fn two_reads(doc: &[u8], split: usize) -> Vec<String> {
    transcript(Chunky::new(doc, &[split, doc.len()], false))
}

#[test]
fn a_read_ending_inside_a_number_of_a_raw_or_skipped_value_does_not_break_the_document() {
    let docs = [
        r#"{"Records":[{"eventID":"a","x":-1}]}"#,
        r#"{"Records":[{"eventID":"a","x":1.5}]}"#,
        r#"{"Records":[{"eventID":"a","x":1e5}]}"#,
        r#"{"Records":[{"eventID":"a","x":1E+5}]}"#,
        r#"{"Records":[{"eventID":"a","requestParameters":{"n":-2.5e-3}}]}"#,
        r#"{"Records":[{"eventID":"a","resources":[-1]}]}"#,
        r#"{"other":-1.25,"Records":[]}"#,
    ];
    let mut broken = Vec::new();
    for doc in docs {
        let whole = transcript(doc.as_bytes());
        for split in 1..doc.len() {
            if two_reads(doc.as_bytes(), split) != whole {
                broken.push(format!("{} | {}", &doc[..split], &doc[split..]));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "read boundaries that break a valid document:\n{}",
        broken.join("\n")
    );
}

#[test]
fn open_recognises_gzip_whatever_the_size_of_the_first_read() {
    let doc = br#"{"Records":[{"eventID":"a","eventTime":"2024-03-01T10:20:30Z"}]}"#;
    let stored = gzip(&[doc]);
    let whole = opened_transcript(Cursor::new(stored.clone()));
    assert!(
        whole.last().is_some_and(|l| l.starts_with("ended well")),
        "{whole:?}"
    );
    for first in [1, 2] {
        let short = opened_transcript(Chunky::new(&stored, &[first, 4096], false));
        assert_eq!(short, whole, "first read of {first} byte(s)");
    }
}

#[test]
fn open_retries_an_interrupted_first_read() {
    let doc = br#"{"Records":[]}"#;
    let mut first = true;
    let src = std::iter::from_fn(move || Some(std::mem::take(&mut first)));
    struct InterruptedOnce<I>(I, Cursor<Vec<u8>>);
    impl<I: Iterator<Item = bool>> Read for InterruptedOnce<I> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.next() {
                Some(true) => Err(io::ErrorKind::Interrupted.into()),
                _ => self.1.read(buf),
            }
        }
    }
    let transcript = opened_transcript(InterruptedOnce(src, Cursor::new(doc.to_vec())));
    assert_eq!(transcript, ["ended well at byte 14"]);
}

#[test]
fn a_valid_log_file_is_read_whatever_number_a_chunk_boundary_falls_in() {
    const CHUNK: usize = 256 * 1024;
    let record = |id: usize, pad: usize| {
        format!(
            r#"{{"eventVersion":"1.08","eventID":"id-{id}","eventTime":"2024-03-01T10:20:30Z","eventSource":"ec2.amazonaws.com","eventName":"AuthorizeSecurityGroupIngress","awsRegion":"us-east-1","requestParameters":{{"groupId":"sg-1","ipPermissions":{{"items":[{{"ipProtocol":"-1","fromPort":-1,"toPort":-1}}]}}}},"pad":"{}"}}"#,
            "x".repeat(pad)
        )
    };
    // Fill the first chunk so that the `-` of the last record's `"fromPort":-1` is its last byte.
    let mut doc = String::from(r#"{"Records":["#);
    let mut id = 0;
    while doc.len() + 3 * record(id, 0).len() < CHUNK {
        doc.push_str(&record(id, 0));
        doc.push(',');
        id += 1;
    }
    let target = record(id + 1, 0);
    let minus = target.find(r#""fromPort":-"#).expect("fromPort") + r#""fromPort":"#.len();
    let pad = CHUNK - 1 - minus - doc.len() - record(id, 0).len() - 1;
    doc.push_str(&record(id, pad));
    doc.push(',');
    assert_eq!(doc.len() + minus, CHUNK - 1);
    doc.push_str(&target);
    doc.push_str("]}");
    let records = id + 2;

    let (_, json) =
        records::open(Cursor::new(gzip(&[doc.as_bytes()])), &Limits::default()).expect("gzip");
    let policy = Policy::default();
    let pipeline = Pipeline {
        policy: &policy,
        normalize: normalize::Options::default(),
        max_record_bytes: Limits::default().max_record_bytes,
        now: NOW,
    };
    let mut tally = Tally::default();
    let result = pipeline.run(
        records::pipelined(json),
        Origin {
            bucket: None,
            key: "k",
        },
        &mut Dedup::default(),
        &mut tally,
        |_| Ok::<(), io::Error>(()),
    );
    assert!(
        result.is_ok(),
        "{}",
        result.err().map(|e| e.to_string()).unwrap_or_default()
    );
    assert_eq!(tally.changes, records as u64);
}
