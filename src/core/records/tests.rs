use super::*;
use flate2::write::GzEncoder;
use std::io::Write;

/// A reader that hands out at most `step` bytes per call, so values straddle every boundary.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What the reader saw: each element as `id` (records) or `!` (not an object).
fn read_all(
    json: &[u8],
    step: usize,
    max_record: usize,
) -> (Vec<String>, Result<(), RecordsError>) {
    let mut seen = Vec::new();
    let mut reader = RecordReader::new(Trickle { data: json, step }, max_record);
    let result = reader.for_each(|index, element| {
        let label = match element {
            Element::Record(r) => r.event_id.as_deref().unwrap_or("?").to_owned(),
            Element::NotAnObject => "!".to_owned(),
            Element::Unreadable => "~".to_owned(),
        };
        seen.push(format!("{index}:{label}"));
        Ok::<(), RecordsError>(())
    });
    (seen, result)
}

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(part).expect("in memory");
        out.extend(enc.finish().expect("in memory"));
    }
    out
}

const DOC: &[u8] = br#"{"Other": {"nested": [1, 2, {"Records": []}]}, "Records": [
  {"eventID": "a", "eventTime": "2024-01-01T00:00:00Z"},
  17, "text", [1, [2]], null, true,
  {"eventID": "b\u00e9", "eventName": "Put\"Thing\"", "requestParameters": {"x": [1, {"y": null}]}},
  -12.5e3
], "Trailer": 12345}"#;

#[test]
fn elements_come_out_in_order_whatever_the_read_sizes() {
    let expected = ["0:a", "1:!", "2:!", "3:!", "4:!", "5:!", "6:bé", "7:!"];
    for step in [1, 2, 3, 7, 64, 4096] {
        let (seen, result) = read_all(DOC, step, 1024);
        result.unwrap_or_else(|e| panic!("step {step}: {e}"));
        assert_eq!(seen, expected, "step {step}");
    }
}

#[test]
fn fields_are_read_and_nested_values_stay_raw() {
    let json = br#"{"Records":[{"eventID":"e1","eventTime":"2024-05-06T07:08:09Z","eventName":"RunInstances",
        "readOnly":"FALSE","managementEvent":"true","errorCode":"","errorMessage":null,"eventType":"AwsApiCall",
        "userIdentity":{"type":"IAMUser"},"requestParameters":null,"resources":[{"ARN":"x"}],"unknown":{"deep":[1]}}]}"#;
    let mut reader = RecordReader::new(&json[..], 4096);
    let mut checked = false;
    reader
        .for_each(|_, element| {
            let Element::Record(r) = element else {
                panic!("a record")
            };
            assert_eq!(r.event_name.as_deref(), Some("RunInstances"));
            assert_eq!(r.read_only, Some(false));
            assert_eq!(r.management_event, Some(true));
            assert_eq!(
                r.error_code,
                Presence(false),
                "an empty errorCode is no error"
            );
            assert_eq!(r.error_message, Presence(false));
            assert_eq!(
                r.user_identity.map(|v| v.get()),
                Some(r#"{"type":"IAMUser"}"#)
            );
            assert!(r.request_parameters.is_none(), "null reads as absent");
            assert_eq!(r.resources.map(|v| v.get()), Some(r#"[{"ARN":"x"}]"#));
            checked = true;
            Ok::<(), RecordsError>(())
        })
        .expect("reads");
    assert!(checked);
}

#[test]
fn odd_types_read_as_absent_and_duplicate_keys_keep_the_last() {
    let json = br#"{"Records":[{"eventID":5,"eventName":["x"],"readOnly":"maybe","eventTime":"t","eventTime":"2024-01-01T00:00:00Z"}]}"#;
    let mut reader = RecordReader::new(&json[..], 4096);
    reader
        .for_each(|_, element| {
            let Element::Record(r) = element else {
                panic!("a record")
            };
            assert_eq!(r.event_id, None);
            assert_eq!(r.event_name, None);
            assert_eq!(r.read_only, None);
            assert_eq!(r.event_time.as_deref(), Some("2024-01-01T00:00:00Z"));
            Ok::<(), RecordsError>(())
        })
        .expect("reads");
}

#[test]
fn an_empty_records_array_and_a_null_one_hold_no_records() {
    for json in [
        &br#"{"Records":[]}"#[..],
        br#" {"Records" : null} "#,
        br#"{"Records":[ ]}"#,
    ] {
        let (seen, result) = read_all(json, 1, 1024);
        result.expect("a valid empty document");
        assert!(seen.is_empty());
    }
}

#[test]
fn a_document_without_records_is_not_cloudtrail() {
    let (_, result) = read_all(br#"{"Digest": "x"}"#, 3, 1024);
    assert!(
        matches!(result, Err(RecordsError::NotCloudTrail { .. })),
        "{result:?}"
    );
    let (_, result) = read_all(br#"[1,2]"#, 3, 1024);
    assert!(
        matches!(result, Err(RecordsError::NotCloudTrail { offset: 0, .. })),
        "{result:?}"
    );
    let (_, result) = read_all(br#"{"Records": {"a": 1}}"#, 3, 1024);
    assert!(
        matches!(result, Err(RecordsError::NotCloudTrail { .. })),
        "{result:?}"
    );
}

#[test]
fn a_cut_document_is_truncated_and_keeps_what_came_before() {
    let full = br#"{"Records":[{"eventID":"a"},{"eventID":"b"},{"eventID":"c","x":"#;
    for step in [1, 5, 1000] {
        let (seen, result) = read_all(full, step, 1024);
        assert_eq!(seen, ["0:a", "1:b"], "step {step}");
        match result {
            Err(RecordsError::Truncated { offset }) => assert_eq!(offset, full.len() as u64),
            other => panic!("step {step}: {other:?}"),
        }
    }
    let (_, result) = read_all(b"", 1, 1024);
    assert!(
        matches!(result, Err(RecordsError::NotCloudTrail { offset: 0, .. })),
        "{result:?}"
    );
}

#[test]
fn broken_json_names_the_byte_offset() {
    let json = b"{\"Records\":[{\"eventID\":\"a\"},\n  {\"eventID\" \"b\"}]}";
    let (seen, result) = read_all(json, 4, 1024);
    assert_eq!(seen, ["0:a"]);
    match result {
        Err(RecordsError::Json { offset, .. }) => {
            assert_eq!(offset, 42, "points at the `\"` where `:` belongs")
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        &br#"{"Records":[{"eventID":"a"},]}"#[..],
        br#"{"Records":[{"eventID":"a"} {"eventID":"b"}]}"#,
        br#"{"Records":[]} x"#,
    ] {
        let (_, result) = read_all(bad, 2, 1024);
        assert!(
            matches!(result, Err(RecordsError::Json { .. })),
            "{}: {result:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn invalid_utf8_inside_a_record_makes_only_that_record_unreadable() {
    let json = b"{\"Records\":[{\"eventID\":\"a\xff\xfe\"},{\"eventID\":\"b\"}]}";
    let (seen, result) = read_all(json, 3, 1024);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(seen, ["0:~", "1:b"]);
}

#[test]
fn a_record_over_the_limit_is_an_error_naming_its_index() {
    let big = format!(
        r#"{{"Records":[{{"eventID":"a"}},{{"eventID":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let (seen, result) = read_all(big.as_bytes(), 512, 2048);
    assert_eq!(seen, ["0:a"]);
    assert!(
        matches!(
            result,
            Err(RecordsError::RecordTooLarge {
                index: 1,
                limit: 2048,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn deep_nesting_in_raw_fields_is_skipped_without_recursion() {
    let json = format!(
        r#"{{"Records":[{{"eventID":"a","requestParameters":{}{},"other":{}1{}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000),
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let (seen, result) = read_all(json.as_bytes(), 65536, 1 << 20);
    result.expect("raw values are skipped iteratively");
    assert_eq!(seen, ["0:a"]);
}

#[test]
fn deep_nesting_in_a_read_field_reads_as_absent_without_recursion() {
    let json = format!(
        r#"{{"Records":[{{"eventID":"a","eventName":{}{}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut reader = RecordReader::new(json.as_bytes(), 1 << 20);
    reader
        .for_each(|_, element| {
            let Element::Record(r) = element else {
                panic!("a record")
            };
            assert_eq!(r.event_name, None);
            Ok::<(), RecordsError>(())
        })
        .expect("reads");
}

#[test]
fn multi_member_gzip_reads_as_one_document() {
    let stored = gzip(&[br#"{"Records":[{"eventID":"a"},"#, br#"{"eventID":"b"}]}"#]);
    let (compression, json) = open(io::Cursor::new(stored), &Limits::default()).expect("gzip");
    assert_eq!(compression, Compression::Gzip);
    let mut seen = Vec::new();
    RecordReader::new(pipelined(json), 1024)
        .for_each(|i, _| {
            seen.push(i);
            Ok::<(), RecordsError>(())
        })
        .expect("reads");
    assert_eq!(seen, [0, 1]);
}

#[test]
fn plain_json_with_a_byte_order_mark_is_accepted() {
    let (compression, mut json) = open(
        io::Cursor::new(b"\xEF\xBB\xBF {\"Records\":[]}".to_vec()),
        &Limits::default(),
    )
    .expect("json");
    assert_eq!(compression, Compression::None);
    let mut text = String::new();
    json.read_to_string(&mut text).expect("reads");
    assert_eq!(text, " {\"Records\":[]}");
}

#[test]
fn bytes_that_are_neither_gzip_nor_json_are_refused() {
    let err = open(
        io::Cursor::new(b"PK\x03\x04zipfile".to_vec()),
        &Limits::default(),
    )
    .err()
    .expect("refused");
    assert_eq!(
        err.to_string(),
        "neither gzip nor JSON (starts with bytes 50 4b 03 04 7a 69 70 66)"
    );
}

#[test]
fn a_truncated_gzip_stream_is_a_read_error_after_the_records_before_it() {
    let mut stored = gzip(&[br#"{"Records":[{"eventID":"a"},{"eventID":"b"},{"eventID":"c"}]}"#]);
    stored.truncate(stored.len() - 12);
    let (_, json) = open(io::Cursor::new(stored), &Limits::default()).expect("gzip");
    let mut reader = RecordReader::new(json, 1024);
    let result = reader.for_each(|_, _| Ok::<(), RecordsError>(()));
    match result {
        Err(e @ RecordsError::Read { .. }) => assert!(
            !e.is_source_failure(),
            "corrupt content, not a source failure"
        ),
        Err(RecordsError::Truncated { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_gzip_bomb_stops_at_the_decompressed_limit() {
    let zeros = vec![b' '; 4 << 20];
    let mut doc = b"{\"Records\":[".to_vec();
    doc.extend(&zeros);
    doc.extend(b"]}");
    let limits = Limits {
        max_decompressed_bytes: 1 << 20,
        ..Limits::default()
    };
    let (_, json) = open(io::Cursor::new(gzip(&[&doc])), &limits).expect("gzip");
    let result = RecordReader::new(json, 1024).for_each(|_, _| Ok::<(), RecordsError>(()));
    match result {
        Err(RecordsError::Read { source, .. }) => {
            assert!(is_limit_error(&source));
            assert!(
                source
                    .to_string()
                    .contains("records.max_decompressed_bytes"),
                "{source}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_compressed_size_limit_is_enforced_while_streaming() {
    let mut doc = b"{\"Records\":[".to_vec();
    doc.extend(vec![b' '; 200 * 1024]);
    doc.extend(b"]}");
    let limits = Limits {
        max_object_bytes: 100 * 1024,
        ..Limits::default()
    };
    let (_, mut json) =
        open(io::Cursor::new(doc.clone()), &limits).expect("the head is within the limit");
    let err = io::copy(&mut json, &mut io::sink()).expect_err("over the limit");
    assert!(is_limit_error(&err), "{err}");
    let exact = Limits {
        max_object_bytes: doc.len() as u64,
        ..Limits::default()
    };
    let (_, mut json) = open(io::Cursor::new(doc.clone()), &exact).expect("json");
    assert_eq!(
        io::copy(&mut json, &mut io::sink()).expect("exactly the limit passes"),
        doc.len() as u64
    );
}

#[test]
fn event_times_in_the_accepted_forms_parse_to_unix_seconds() {
    use super::fields::parse_event_time as t;
    assert_eq!(t("2023-07-10T12:40:00Z"), Some(1_688_992_800));
    assert_eq!(t("2023-07-10 12:40:00Z"), Some(1_688_992_800));
    assert_eq!(t("2023-07-10T12:40:00"), Some(1_688_992_800));
    assert_eq!(t("2023-07-10T12:40:00.987654Z"), Some(1_688_992_800));
    assert_eq!(t("2023-07-10T14:40:00+02:00"), Some(1_688_992_800));
    assert_eq!(t("2023-07-10T07:10:00-05:30"), Some(1_688_992_800));
    assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(t("1969-12-31T23:59:59Z"), Some(-1));
    assert_eq!(t("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    for bad in [
        "",
        "2023-07-10",
        "2023-07-10T12:40Z",
        "2023-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2023-07-10T24:00:00Z",
        "2023-07-10T12:40:00.Z",
        "2023-07-10T12:40:00+0200",
        "2023-07-10T12:40:00 UTC",
        "1688992800",
        "2023-07-10T12:40:00ZZ",
        "２023-07-10T12:40:00Z",
    ] {
        assert_eq!(t(bad), None, "{bad:?}");
    }
}
