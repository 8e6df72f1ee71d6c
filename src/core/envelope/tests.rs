use super::*;

const SNS_S3_EVENT: &str = include_str!("../../../tests/data/envelopes/sns_s3_event.json");
const SNS_S3_EVENT_SEVERAL: &str =
    include_str!("../../../tests/data/envelopes/sns_s3_event_several_records.json");
const SNS_S3_EVENT_MOTO: &str =
    include_str!("../../../tests/data/envelopes/sns_s3_event_moto.json");
const S3_EVENT: &str = include_str!("../../../tests/data/envelopes/s3_event.json");
const S3_EVENT_ENCODED_KEYS: &str =
    include_str!("../../../tests/data/envelopes/s3_event_encoded_keys.json");
const S3_EVENT_SKIPPED_OBJECTS: &str =
    include_str!("../../../tests/data/envelopes/s3_event_skipped_objects.json");
const S3_EVENT_WITHOUT_KEY: &str =
    include_str!("../../../tests/data/envelopes/s3_event_without_key.json");
const S3_TEST_EVENT: &str = include_str!("../../../tests/data/envelopes/s3_test_event.json");
const SNS_S3_TEST_EVENT: &str =
    include_str!("../../../tests/data/envelopes/sns_s3_test_event.json");
const SNS_CLOUDTRAIL: &str =
    include_str!("../../../tests/data/envelopes/sns_cloudtrail_notification.json");
const CLOUDTRAIL: &str = include_str!("../../../tests/data/envelopes/cloudtrail_notification.json");
const SNS_VALIDATION: &str =
    include_str!("../../../tests/data/envelopes/sns_cloudtrail_validation_message.json");
const SNS_SUBSCRIPTION: &str =
    include_str!("../../../tests/data/envelopes/sns_subscription_confirmation.json");
const EVENTBRIDGE_CREATED: &str =
    include_str!("../../../tests/data/envelopes/eventbridge_object_created.json");
const EVENTBRIDGE_DELETED: &str =
    include_str!("../../../tests/data/envelopes/eventbridge_object_deleted.json");
const CLOUDTRAIL_LOG_FILE: &str =
    include_str!("../../../tests/data/envelopes/cloudtrail_log_file.json");
const SNS_MESSAGE_NOT_JSON: &str =
    include_str!("../../../tests/data/envelopes/sns_message_not_json.json");

const ALL_SAMPLES: [&str; 17] = [
    SNS_S3_EVENT,
    SNS_S3_EVENT_SEVERAL,
    SNS_S3_EVENT_MOTO,
    S3_EVENT,
    S3_EVENT_ENCODED_KEYS,
    S3_EVENT_SKIPPED_OBJECTS,
    S3_EVENT_WITHOUT_KEY,
    S3_TEST_EVENT,
    SNS_S3_TEST_EVENT,
    SNS_CLOUDTRAIL,
    CLOUDTRAIL,
    SNS_VALIDATION,
    SNS_SUBSCRIPTION,
    EVENTBRIDGE_CREATED,
    EVENTBRIDGE_DELETED,
    CLOUDTRAIL_LOG_FILE,
    SNS_MESSAGE_NOT_JSON,
];

const LOG_KEY: &str = concat!(
    "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/06/",
    "111122223333_CloudTrail_us-east-1_20250306T0305Z_Hk3vT9qLwZ2pXe7B.json.gz"
);
const ORG_KEY: &str = concat!(
    "AWSLogs/o-1234abcde0/222222222222/CloudTrail/us-east-1/2025/03/06/",
    "222222222222_CloudTrail_us-east-1_20250306T0230Z_QF6qcgyiaVnSueXa.json.gz"
);
const DIGEST_KEY: &str = concat!(
    "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2025/03/06/",
    "111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20250306T030000Z.json.gz"
);
const INSIGHTS_KEY: &str = concat!(
    "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2025/03/06/",
    "111122223333_CloudTrail-Insight_us-east-1_20250306T0315Z_kTzrn2Ux4bBhOcPi.json.gz"
);

fn ok(body: &str) -> Decoded {
    match decode(body) {
        Ok(decoded) => decoded,
        Err(e) => panic!("expected a decoded message, got error: {e}"),
    }
}

fn err(body: &str) -> EnvelopeError {
    match decode(body) {
        Ok(decoded) => panic!("expected an error, got {decoded:?}"),
        Err(e) => e,
    }
}

fn json(text: &str) -> Value {
    match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => panic!("sample is not JSON: {e}"),
    }
}

fn keys(decoded: &Decoded) -> Vec<&str> {
    decoded.objects.iter().map(|o| o.key.as_str()).collect()
}

fn reasons(decoded: &Decoded) -> Vec<SkipReason> {
    decoded.skipped.iter().map(|s| s.reason).collect()
}

fn invalid(path: &str) -> impl Fn(&EnvelopeError) -> bool + '_ {
    move |e| matches!(e, EnvelopeError::Invalid { path: p, .. } if p == path)
}

/// A raw S3 event with one record whose key is given as S3 would send it.
fn s3_event_with_key(event_name: &str, raw_key: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2025-03-06T03:05:11.962Z", "eventName": event_name,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "ct",
               "bucket": {"name": "logs", "arn": "arn:aws:s3:::logs"},
               "object": {"key": raw_key, "size": 10, "eTag": "e", "sequencer": "0A"}}}]})
    .to_string()
}

/// An SNS notification wrapping `message`.
fn sns_with_message(message: &str) -> String {
    serde_json::json!({
        "Type": "Notification", "MessageId": "b2f3a7c1-5d0e-5a3f-9e1b-7c4d2a8f6e01",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:t", "Message": message,
        "Timestamp": "2025-03-06T03:05:12.484Z", "SignatureVersion": "1"})
    .to_string()
}

// ---- SNS-wrapped S3 events -------------------------------------------------------------

#[test]
fn sns_wrapped_s3_event_yields_the_decoded_key() {
    let decoded = ok(SNS_S3_EVENT);
    assert_eq!(decoded.format, Format::SnsS3Event);
    assert!(decoded.skipped.is_empty());
    assert_eq!(
        decoded.objects,
        vec![ObjectRef {
            bucket: "acme-cloudtrail-logs-111122223333".into(),
            key: format!("cloudtrail/{LOG_KEY}"),
            size: Some(2154),
            etag: Some("7b8f3c2a91d4e5f60718293a4b5c6d7e".into()),
            sequencer: Some("0067C9117F3A9E2B41".into()),
            version_id: None,
        }]
    );
}

#[test]
fn sns_wrapped_s3_event_with_several_records_processes_logs_and_skips_the_rest() {
    let decoded = ok(SNS_S3_EVENT_SEVERAL);
    assert_eq!(decoded.format, Format::SnsS3Event);
    assert_eq!(decoded.objects.len(), 2);
    assert!(decoded.objects[1]
        .key
        .contains("/CloudTrail/eu-west-1/2025/03/06/"));
    assert_eq!(
        reasons(&decoded),
        [SkipReason::Digest, SkipReason::NotObjectCreated]
    );
    let digest = decoded.skipped[0].object.as_ref().map(|o| o.key.as_str());
    assert_eq!(digest, Some(DIGEST_KEY));
    let removed = &decoded.skipped[1];
    assert!(
        removed.detail.contains("ObjectRemoved:Delete"),
        "{}",
        removed.detail
    );
    assert_eq!(removed.object.as_ref().and_then(|o| o.size), None);
}

#[test]
fn moto_sns_envelope_without_subject_or_sequencer_decodes_escaped_slashes() {
    let decoded = ok(SNS_S3_EVENT_MOTO);
    assert_eq!(decoded.format, Format::SnsS3Event);
    let object = &decoded.objects[0];
    assert_eq!(object.bucket, "cloudtrail-local");
    assert_eq!(
        object.key,
        "AWSLogs/123456789012/CloudTrail/us-east-1/2025/03/06/\
         123456789012_CloudTrail_us-east-1_20250306T0305Z_MoToMoToMoToMoTo.json.gz"
    );
    assert_eq!(object.size, Some(1523));
    assert_eq!(object.sequencer, None);
}

// ---- raw S3 events ---------------------------------------------------------------------

#[test]
fn raw_s3_event_yields_one_object_with_size_etag_and_sequencer() {
    let decoded = ok(S3_EVENT);
    assert_eq!(decoded.format, Format::S3Event);
    assert!(!decoded.is_skip_only());
    let object = &decoded.objects[0];
    assert!(object
        .key
        .starts_with("AWSLogs/111122223333/CloudTrail/us-west-2/"));
    assert_eq!(object.size, Some(3391));
    assert_eq!(
        object.etag.as_deref(),
        Some("d41c8a7e0f2b9c3d5e6f7a8b9c0d1e2f")
    );
    assert_eq!(object.sequencer.as_deref(), Some("0067C9131F00A8B2C6"));
}

#[test]
fn s3_event_keys_with_spaces_plus_signs_and_non_ascii_are_form_url_decoded() {
    let decoded = ok(S3_EVENT_ENCODED_KEYS);
    assert!(decoded.skipped.is_empty(), "{:?}", decoded.skipped);
    let prefixes: Vec<&str> = keys(&decoded)
        .into_iter()
        .filter_map(|k| k.split("AWSLogs/").next())
        .collect();
    assert_eq!(prefixes, ["audit logs/", "team+sec/", "journaux/été/"]);
}

#[test]
fn s3_event_skips_insights_folder_marker_unrelated_key_and_removed_object() {
    let decoded = ok(S3_EVENT_SKIPPED_OBJECTS);
    assert!(decoded.is_skip_only());
    let expected = [
        SkipReason::Insights,
        SkipReason::FolderMarker,
        SkipReason::NotCloudTrail,
        SkipReason::NotObjectCreated,
    ];
    assert_eq!(reasons(&decoded), expected);
    assert!(decoded.skipped.iter().all(|s| s.object.is_some()));
    assert!(decoded.skipped[2].detail.contains("images/cat.png"));
}

#[test]
fn raw_s3_test_event_is_skipped_as_a_test_event() {
    let decoded = ok(S3_TEST_EVENT);
    assert_eq!(decoded.format, Format::S3Event);
    assert_eq!(reasons(&decoded), [SkipReason::TestEvent]);
    assert_eq!(decoded.skipped[0].object, None);
    assert!(decoded.skipped[0]
        .detail
        .contains("acme-cloudtrail-logs-111122223333"));
}

#[test]
fn s3_test_event_inside_sns_is_skipped_as_a_test_event() {
    let decoded = ok(SNS_S3_TEST_EVENT);
    assert_eq!(decoded.format, Format::SnsS3Event);
    assert_eq!(reasons(&decoded), [SkipReason::TestEvent]);
}

#[test]
fn an_over_long_key_in_an_event_is_skipped_as_not_cloudtrail() {
    let raw = format!("{}/{LOG_KEY}", "p".repeat(MAX_KEY_LEN));
    let decoded = ok(&s3_event_with_key("ObjectCreated:Put", &raw));
    assert_eq!(reasons(&decoded), [SkipReason::NotCloudTrail]);
    assert!(decoded.skipped[0]
        .detail
        .ends_with("…` is not a CloudTrail log file"));
}

#[test]
fn a_key_with_an_encoded_nul_is_skipped_as_not_cloudtrail() {
    let decoded = ok(&s3_event_with_key(
        "ObjectCreated:Put",
        &format!("a%00/{LOG_KEY}"),
    ));
    assert_eq!(reasons(&decoded), [SkipReason::NotCloudTrail]);
    assert!(
        decoded.skipped[0].detail.contains("a\\0/"),
        "{}",
        decoded.skipped[0].detail
    );
}

// ---- CloudTrail notifications ----------------------------------------------------------

#[test]
fn sns_cloudtrail_notification_yields_all_three_keys_including_the_organization_trail() {
    let decoded = ok(SNS_CLOUDTRAIL);
    assert_eq!(decoded.format, Format::SnsCloudTrail);
    assert!(decoded.skipped.is_empty());
    assert_eq!(decoded.objects.len(), 3);
    assert_eq!(decoded.objects[1].key, ORG_KEY);
    assert!(decoded.objects[2]
        .key
        .contains("/CloudTrail/us-gov-west-1/"));
    let bucket = "aws-cloudtrail-logs-111122223333-3f1c2d4e";
    assert!(decoded
        .objects
        .iter()
        .all(|o| o.bucket == bucket && o.size.is_none()));
}

#[test]
fn raw_cloudtrail_notification_yields_its_key() {
    let decoded = ok(CLOUDTRAIL);
    assert_eq!(decoded.format, Format::CloudTrail);
    assert_eq!(decoded.objects.len(), 1);
    assert!(decoded.objects[0]
        .key
        .contains("/CloudTrail/ap-southeast-2/"));
}

#[test]
fn cloudtrail_notification_accepts_a_single_string_key() {
    let body = serde_json::json!({"s3Bucket": "b", "s3ObjectKey": ORG_KEY}).to_string();
    assert_eq!(keys(&ok(&body)), [ORG_KEY]);
}

#[test]
fn cloudtrail_notification_keys_are_used_without_url_decoding() {
    let key = format!("a+b%2Bc/{LOG_KEY}");
    let body = serde_json::json!({"s3Bucket": "b", "s3ObjectKey": [key]}).to_string();
    assert_eq!(keys(&ok(&body)), [key.as_str()]);
}

#[test]
fn cloudtrail_notification_classifies_each_key() {
    let body = serde_json::json!({"s3Bucket": "b", "s3ObjectKey": [LOG_KEY, DIGEST_KEY]});
    let decoded = ok(&body.to_string());
    assert_eq!(keys(&decoded), [LOG_KEY]);
    assert_eq!(reasons(&decoded), [SkipReason::Digest]);
}

#[test]
fn cloudtrail_validation_message_inside_sns_is_skipped() {
    let decoded = ok(SNS_VALIDATION);
    assert_eq!(decoded.format, Format::SnsCloudTrail);
    assert_eq!(reasons(&decoded), [SkipReason::ValidationMessage]);
}

#[test]
fn bare_validation_message_from_raw_delivery_is_skipped() {
    let decoded = ok("CloudTrail validation message.");
    assert_eq!(decoded.format, Format::CloudTrail);
    assert_eq!(reasons(&decoded), [SkipReason::ValidationMessage]);
}

// ---- SNS control messages --------------------------------------------------------------

#[test]
fn subscription_confirmation_is_skipped_with_the_subscribe_url_and_topic_in_the_detail() {
    let decoded = ok(SNS_SUBSCRIPTION);
    assert_eq!(decoded.format, Format::SnsControl);
    assert!(decoded.is_skip_only());
    assert_eq!(reasons(&decoded), [SkipReason::SubscriptionConfirmation]);
    let detail = &decoded.skipped[0].detail;
    let url = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=\
               arn:aws:sns:us-east-1:444455556666:org-cloudtrail-log-delivery&Token=2336412f37";
    assert!(detail.contains(url), "{detail}");
    assert!(detail.contains("arn:aws:sns:us-east-1:444455556666:org-cloudtrail-log-delivery"));
}

#[test]
fn unsubscribe_confirmation_is_skipped_as_a_subscription_confirmation() {
    let body = r#"{"Type":"UnsubscribeConfirmation","TopicArn":"arn:aws:sns:us-east-1:1:t",
        "SubscribeURL":"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"}"#;
    let decoded = ok(body);
    assert_eq!(decoded.format, Format::SnsControl);
    assert_eq!(reasons(&decoded), [SkipReason::SubscriptionConfirmation]);
    assert!(decoded.skipped[0]
        .detail
        .contains("UnsubscribeConfirmation"));
}

// ---- EventBridge -----------------------------------------------------------------------

#[test]
fn eventbridge_object_created_yields_the_key_as_is() {
    let decoded = ok(EVENTBRIDGE_CREATED);
    assert_eq!(decoded.format, Format::EventBridge);
    let object = &decoded.objects[0];
    assert_eq!(object.bucket, "acme-org-trail-444455556666");
    assert!(object
        .key
        .starts_with("AWSLogs/o-x7k2m9p4q1/444455556666/CloudTrail/"));
    assert_eq!(object.size, Some(4417));
    assert_eq!(
        object.etag.as_deref(),
        Some("b1946ac92492d2347c6235b4d2611184")
    );
    assert_eq!(object.sequencer.as_deref(), Some("0067C91A1528C4F1D9"));
}

#[test]
fn eventbridge_keys_are_not_url_decoded() {
    let key = format!("a+b:c%2F/{LOG_KEY}");
    let mut body: Value = json(EVENTBRIDGE_CREATED);
    body["detail"]["object"]["key"] = Value::String(key.clone());
    assert_eq!(keys(&ok(&body.to_string())), [key.as_str()]);
}

#[test]
fn eventbridge_object_deleted_is_skipped_as_not_object_created() {
    let decoded = ok(EVENTBRIDGE_DELETED);
    assert_eq!(decoded.format, Format::EventBridge);
    assert_eq!(reasons(&decoded), [SkipReason::NotObjectCreated]);
    assert!(decoded.skipped[0].detail.contains("Object Deleted"));
    assert!(decoded.skipped[0].object.is_some());
}

#[test]
fn eventbridge_inside_sns_is_accepted() {
    let decoded = ok(&sns_with_message(EVENTBRIDGE_CREATED));
    assert_eq!(decoded.format, Format::EventBridge);
    assert_eq!(decoded.objects.len(), 1);
}

#[test]
fn eventbridge_from_another_source_is_an_error_naming_source() {
    let body = EVENTBRIDGE_CREATED.replace("\"aws.s3\"", "\"aws.ec2\"");
    assert!(invalid("source")(&err(&body)));
}

// ---- errors ----------------------------------------------------------------------------

#[test]
fn a_body_that_is_not_json_is_a_not_json_error() {
    for body in [
        "",
        "   ",
        "hello",
        "<xml/>",
        "{\"Records\":",
        "\u{1}\u{fffd}\u{7f}~\0",
    ] {
        assert!(
            matches!(err(body), EnvelopeError::NotJson { .. }),
            "{body:?}"
        );
    }
}

#[test]
fn a_top_level_json_array_or_scalar_is_invalid_at_the_root() {
    for body in ["[]", "[{\"Records\":[]}]", "42", "\"text\"", "null"] {
        let e = err(body);
        assert!(invalid("$")(&e), "{body}: {e:?}");
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
    }
}

#[test]
fn an_empty_object_is_an_unknown_shape_without_keys() {
    let e = err("{}");
    assert_eq!(
        e,
        EnvelopeError::UnknownShape {
            path: "$".into(),
            keys: "none".into()
        }
    );
}

#[test]
fn an_unknown_shape_lists_at_most_ten_keys() {
    let fields: Vec<String> = (0..15).map(|i| format!("\"k{i:02}\":1")).collect();
    let e = err(&format!("{{{}}}", fields.join(",")));
    let EnvelopeError::UnknownShape { keys, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(
        keys.starts_with("k00, k01,") && keys.ends_with("k09, …"),
        "{keys}"
    );
}

#[test]
fn sns_message_that_is_not_json_is_an_error_naming_message() {
    let e = err(SNS_MESSAGE_NOT_JSON);
    assert!(invalid("Message")(&e), "{e:?}");
    assert!(e.to_string().contains("neither JSON nor"), "{e}");
}

#[test]
fn sns_message_that_is_a_json_array_is_an_error_naming_message() {
    assert!(invalid("Message")(&err(&sns_with_message("[1,2]"))));
}

#[test]
fn sns_without_message_is_an_error_naming_message() {
    let e = err(r#"{"Type":"Notification","TopicArn":"arn:aws:sns:us-east-1:1:t"}"#);
    assert!(invalid("Message")(&e), "{e:?}");
    assert!(e.to_string().contains("missing"));
}

#[test]
fn sns_with_an_unknown_type_is_an_error_naming_type() {
    let e = err(r#"{"Type":"Announcement","Message":"{}"}"#);
    assert!(invalid("Type")(&e), "{e:?}");
    assert!(e.to_string().contains("Announcement"));
}

#[test]
fn an_sns_envelope_inside_an_sns_envelope_is_an_error() {
    assert!(invalid("Message.Type")(&err(&sns_with_message(
        SNS_S3_EVENT
    ))));
}

#[test]
fn s3_event_without_key_is_an_error_naming_the_key_path() {
    let e = err(S3_EVENT_WITHOUT_KEY);
    assert!(invalid("Records[0].s3.object.key")(&e), "{e:?}");
}

#[test]
fn errors_inside_sns_are_prefixed_with_message() {
    let mut event: Value = json(S3_EVENT);
    event["Records"][0]["s3"]["bucket"] = serde_json::json!({"arn": "arn:aws:s3:::x"});
    let e = err(&sns_with_message(&event.to_string()));
    assert!(invalid("Message.Records[0].s3.bucket.name")(&e), "{e:?}");
}

#[test]
fn records_that_is_not_an_array_is_an_error_naming_records() {
    let e = err(r#"{"Records":{"eventName":"ObjectCreated:Put"}}"#);
    assert!(invalid("Records")(&e), "{e:?}");
    assert!(e.to_string().contains("found an object"), "{e}");
}

#[test]
fn empty_records_is_an_error_naming_records() {
    let e = err(r#"{"Records":[]}"#);
    assert!(invalid("Records")(&e), "{e:?}");
    assert!(e.to_string().contains("found an empty array"), "{e}");
}

#[test]
fn a_record_that_is_not_an_object_is_an_error_naming_its_index() {
    let record = json(S3_EVENT)["Records"][0].clone();
    let body = serde_json::json!({"Records": [record, 7]}).to_string();
    assert!(invalid("Records[1]")(&err(&body)));
}

#[test]
fn a_cloudtrail_log_file_sent_as_a_message_is_an_error_not_a_skip() {
    let e = err(CLOUDTRAIL_LOG_FILE);
    let expected = EnvelopeError::LogFileNotNotification {
        path: "Records[0].eventSource".into(),
        event_source: "ec2.amazonaws.com".into(),
    };
    assert_eq!(e, expected);
    assert!(e.to_string().contains("looks like a CloudTrail log file"));
}

#[test]
fn invalid_utf8_after_percent_decoding_is_a_bad_key_naming_the_path() {
    let e = err(&s3_event_with_key(
        "ObjectCreated:Put",
        "AWSLogs/%C3%28.json.gz",
    ));
    let EnvelopeError::BadKey { path, detail } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(path, "Records[0].s3.object.key");
    assert!(detail.contains("%C3%28"), "{detail}");
}

#[test]
fn a_wrongly_typed_size_is_an_error_naming_the_size_path() {
    let mut event: Value = json(S3_EVENT);
    event["Records"][0]["s3"]["object"]["size"] = serde_json::json!("3391");
    let e = err(&event.to_string());
    assert!(invalid("Records[0].s3.object.size")(&e), "{e:?}");
}

#[test]
fn cloudtrail_notification_without_keys_or_bucket_is_an_error() {
    assert!(invalid("s3ObjectKey")(&err(
        r#"{"s3Bucket":"b","s3ObjectKey":[]}"#
    )));
    assert!(invalid("s3ObjectKey")(&err(r#"{"s3Bucket":"b"}"#)));
    assert!(invalid("s3ObjectKey[1]")(&err(
        r#"{"s3Bucket":"b","s3ObjectKey":["k",3]}"#
    )));
    assert!(invalid("s3Bucket")(&err(r#"{"s3ObjectKey":["k"]}"#)));
    let e = err(r#"{"s3Bucket":"b","s3ObjectKey":["k",""]}"#);
    assert!(matches!(e, EnvelopeError::BadKey { ref path, .. } if path == "s3ObjectKey[1]"));
}

#[test]
fn a_test_event_with_another_event_name_is_an_error_naming_event() {
    let body = S3_TEST_EVENT.replace("s3:TestEvent", "s3:Other");
    assert!(invalid("Event")(&err(&body)));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(10_000);
    assert!(matches!(err(&deep), EnvelopeError::NotJson { .. }));
    let deep_objects = "{\"a\":".repeat(10_000);
    assert!(matches!(err(&deep_objects), EnvelopeError::NotJson { .. }));
    assert!(invalid("Message")(&err(&sns_with_message(&deep))));
}

#[test]
fn every_error_message_names_its_path() {
    let cases = [
        (S3_EVENT_WITHOUT_KEY.to_owned(), "Records[0].s3.object.key"),
        (SNS_MESSAGE_NOT_JSON.to_owned(), "`Message`"),
        (CLOUDTRAIL_LOG_FILE.to_owned(), "Records[0].eventSource"),
        (r#"{"Records":[]}"#.to_owned(), "`Records`"),
        ("{\"x\":1}".to_owned(), "`$`"),
        (
            s3_event_with_key("ObjectCreated:Put", "%FF"),
            "Records[0].s3.object.key",
        ),
    ];
    for (body, path) in cases {
        let message = err(&body).to_string();
        assert!(message.contains(path), "{message:?} should name {path}");
    }
}

// ---- decode_s3_key ---------------------------------------------------------------------

#[test]
fn decode_s3_key_turns_plus_into_space_and_percent_2b_into_plus() {
    assert_eq!(
        decode_s3_key("audit+logs/a%2Bb").as_deref(),
        Ok("audit logs/a+b")
    );
}

#[test]
fn decode_s3_key_decodes_utf8_escapes_and_escaped_slashes() {
    let decoded = decode_s3_key("journaux/%C3%A9t%C3%A9%2FAWSLogs%2F");
    assert_eq!(decoded.as_deref(), Ok("journaux/été/AWSLogs/"));
}

#[test]
fn decode_s3_key_keeps_invalid_escapes_literally() {
    assert_eq!(decode_s3_key("a%G1b").as_deref(), Ok("a%G1b"));
    assert_eq!(decode_s3_key("trailing%").as_deref(), Ok("trailing%"));
    assert_eq!(decode_s3_key("half%4").as_deref(), Ok("half%4"));
}

#[test]
fn decode_s3_key_rejects_invalid_utf8() {
    for raw in ["%C3%28", "%FF", "abc%E2%82"] {
        let e = decode_s3_key(raw);
        assert!(matches!(e, Err(EnvelopeError::BadKey { ref path, .. }) if path == "key"));
    }
}

// ---- classify_key ----------------------------------------------------------------------

#[test]
fn classify_key_accepts_plain_prefixed_organization_and_govcloud_log_keys() {
    let keys = [
        LOG_KEY.to_owned(),
        ORG_KEY.to_owned(),
        format!("cloudtrail/{LOG_KEY}"),
        format!("a/b/c/{LOG_KEY}"),
        format!("AWSLogs/{LOG_KEY}"),
        "AWSLogs/o-abcdefghij0123456789abcdefghij01/123456789012/CloudTrail/\
         us-gov-west-1/2025/12/31/f.json.gz"
            .to_owned(),
        "AWSLogs/123456789012/CloudTrail/eu-central-2/2025/03/06/x.json.gz".to_owned(),
        // The real organization-trail key of the cloud-snitch sample (a 9-character org ID).
        "AWSLogs/o-1234abcde/222222222222/CloudTrail/us-east-1/2025/03/06/\
         222222222222_CloudTrail_us-east-1_20250306T0230Z_QF6qcgyiaVnSueXa.json.gz"
            .to_owned(),
    ];
    for key in keys {
        assert_eq!(classify_key(&key), Ok(()), "{key}");
    }
}

#[test]
fn classify_key_accepts_a_non_ascii_prefix_with_spaces() {
    assert_eq!(
        classify_key(&format!("journaux/été/audit logs/{LOG_KEY}")),
        Ok(())
    );
}

#[test]
fn classify_key_reports_digest_insights_and_folder_markers() {
    assert_eq!(classify_key(DIGEST_KEY), Err(SkipReason::Digest));
    assert_eq!(classify_key(INSIGHTS_KEY), Err(SkipReason::Insights));
    assert_eq!(classify_key("AWSLogs/"), Err(SkipReason::FolderMarker));
    let folder = "logs/AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/06/";
    assert_eq!(classify_key(folder), Err(SkipReason::FolderMarker));
}

#[test]
fn classify_key_rejects_keys_that_are_not_log_files() {
    let base = "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/06";
    let keys = [
        "images/cat.png".to_owned(),
        String::new(),
        format!("{base}/f.json"),
        format!("{base}/.json.gz"),
        format!("{base}/sub/f.json.gz"),
        "AWSLogs/11112222333/CloudTrail/us-east-1/2025/03/06/f.json.gz".to_owned(),
        "AWSLogs/111122223333/CloudTrail/US-EAST-1/2025/03/06/f.json.gz".to_owned(),
        "AWSLogs/111122223333/CloudTrail/us-east-1/25/03/06/f.json.gz".to_owned(),
        "AWSLogs/111122223333/CloudTrail/us-east-1/2025/3/06/f.json.gz".to_owned(),
        "AWSLogs/111122223333/CloudTrail//2025/03/06/f.json.gz".to_owned(),
        "AWSLogs/111122223333/vpcflowlogs/us-east-1/2025/03/06/f.log.gz".to_owned(),
        "AWSLogs/o-/111122223333/CloudTrail/us-east-1/2025/03/06/f.json.gz".to_owned(),
        "AWSLogs/o-short-id/111122223333/CloudTrail/us-east-1/2025/03/06/f.json.gz".to_owned(),
        "AWSLogs/o-UPPERCASE0/111122223333/CloudTrail/us-east-1/2025/03/06/f.json.gz".to_owned(),
        format!("x{LOG_KEY}"),
        format!("awslogs/{}", &LOG_KEY[8..]),
        format!("a/../{LOG_KEY}"),
        format!("{base}/../06/f.json.gz"),
        format!("bad\0prefix/{LOG_KEY}"),
        format!("tab\tprefix/{LOG_KEY}"),
        format!("{LOG_KEY}\n"),
    ];
    for key in keys {
        assert_eq!(
            classify_key(&key),
            Err(SkipReason::NotCloudTrail),
            "{key:?}"
        );
    }
}

#[test]
fn classify_key_reads_the_last_awslogs_segment() {
    let nested = format!("AWSLogs/111122223333/CloudTrail/copies/{LOG_KEY}");
    assert_eq!(classify_key(&nested), Ok(()));
    let digest_behind = format!("{DIGEST_KEY}/AWSLogs/x");
    assert_eq!(classify_key(&digest_behind), Err(SkipReason::NotCloudTrail));
}

#[test]
fn classify_key_rejects_keys_longer_than_1024_bytes() {
    let with_prefix = |len: usize| format!("{}/{LOG_KEY}", "p".repeat(len - LOG_KEY.len() - 1));
    let longest = with_prefix(MAX_KEY_LEN);
    assert_eq!(longest.len(), 1024);
    assert_eq!(classify_key(&longest), Ok(()));
    assert_eq!(
        classify_key(&with_prefix(1025)),
        Err(SkipReason::NotCloudTrail)
    );
}

// ---- labels and small helpers ----------------------------------------------------------

#[test]
fn format_and_skip_reason_labels_are_snake_case() {
    let formats = [
        (Format::SnsS3Event, "sns_s3_event"),
        (Format::S3Event, "s3_event"),
        (Format::SnsCloudTrail, "sns_cloudtrail"),
        (Format::CloudTrail, "cloudtrail"),
        (Format::EventBridge, "eventbridge"),
        (Format::SnsControl, "sns_control"),
    ];
    for (format, label) in formats {
        assert_eq!(format.as_str(), label);
    }
    let reasons = [
        (SkipReason::TestEvent, "test_event"),
        (SkipReason::ValidationMessage, "validation_message"),
        (
            SkipReason::SubscriptionConfirmation,
            "subscription_confirmation",
        ),
        (SkipReason::NotObjectCreated, "not_object_created"),
        (SkipReason::Digest, "digest"),
        (SkipReason::Insights, "insights"),
        (SkipReason::FolderMarker, "folder_marker"),
        (SkipReason::NotCloudTrail, "not_cloudtrail"),
    ];
    for (reason, label) in reasons {
        assert_eq!(reason.as_str(), label);
    }
}

#[test]
fn object_ref_displays_as_an_s3_url() {
    let object = ObjectRef {
        bucket: "b".into(),
        key: "journaux/été/x.json.gz".into(),
        size: None,
        etag: None,
        sequencer: None,
        version_id: None,
    };
    assert_eq!(object.to_string(), "s3://b/journaux/été/x.json.gz");
}

#[test]
fn quoted_message_text_escapes_control_characters_and_is_capped() {
    assert_eq!(quote("a\nb\u{1b}"), "a\\nb\\u{1b}");
    let long = quote(&"é".repeat(500));
    assert_eq!(long.chars().count(), MAX_QUOTED + 1);
    assert!(long.ends_with('…'));
}

// ---- robustness ------------------------------------------------------------------------

/// A deterministic linear congruential generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound.max(1)
    }
}

#[test]
fn decode_never_panics_on_pseudo_random_input() {
    const TOKENS: [&str; 32] = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\\"",
        "\"Records\"",
        "\"Type\"",
        "\"Message\"",
        "\"Notification\"",
        "\"s3\"",
        "\"object\"",
        "\"bucket\"",
        "\"key\"",
        "\"name\"",
        "\"eventName\"",
        "\"ObjectCreated:Put\"",
        "\"s3Bucket\"",
        "\"s3ObjectKey\"",
        "\"detail-type\"",
        "\"source\"",
        "\"aws.s3\"",
        "\"Event\"",
        "null",
        "-1",
        "1e999",
        "%",
        "%C3",
        "+",
        "é\u{0}",
    ];
    let mut rng = Lcg(0x5eed);
    for _ in 0..400 {
        let mut body = String::new();
        for _ in 0..rng.next(40) {
            if rng.next(4) == 0 {
                body.push(char::from_u32(rng.next(0x11_0000) as u32).unwrap_or('?'));
            } else {
                body.push_str(TOKENS[rng.next(TOKENS.len())]);
            }
        }
        let _ = decode(&body);
        let _ = decode(&sns_with_message(&body));
        let _ = decode_s3_key(&body);
        let _ = classify_key(&body);
    }
}

#[test]
fn decode_never_panics_on_truncated_or_mutated_samples() {
    let mut rng = Lcg(42);
    for sample in ALL_SAMPLES {
        let boundaries: Vec<usize> = sample.char_indices().map(|(i, _)| i).collect();
        for &end in boundaries.iter().step_by(13) {
            let _ = decode(&sample[..end]);
        }
        for _ in 0..30 {
            let mut chars: Vec<char> = sample.chars().collect();
            let at = rng.next(chars.len());
            chars[at] = ['"', '{', ']', '\\', '%', '+', '/', '0'][rng.next(8)];
            let _ = decode(&chars.into_iter().collect::<String>());
        }
    }
}

#[test]
fn every_sample_decodes_without_panicking_and_skip_only_means_no_objects() {
    for sample in ALL_SAMPLES {
        if let Ok(decoded) = decode(sample) {
            assert_eq!(decoded.is_skip_only(), decoded.objects.is_empty());
            assert!(!decoded.objects.is_empty() || !decoded.skipped.is_empty());
        }
    }
}
