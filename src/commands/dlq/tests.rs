use super::*;

#[test]
fn bodies_show_their_objects_their_skips_or_that_they_are_undecodable() {
    let key = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/f.json.gz";
    let body = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2025-03-06T03:05:11.962Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "ct",
               "bucket": {"name": "logs", "arn": "arn:aws:s3:::logs"},
               "object": {"key": key, "size": 10, "eTag": "e"}}}]})
    .to_string();
    assert_eq!(objects_text(&body), format!("s3://logs/{key}"));
    assert_eq!(objects_text("not json"), UNDECODABLE);
    assert_eq!(
        objects_text("CloudTrail validation message."),
        "(no object: validation_message)"
    );
}

#[test]
fn message_text_is_kept_on_one_line() {
    assert_eq!(one_line("a\nb\tc\u{1b}"), "a\\nb\\tc\\u{1b}");
    assert_eq!(one_line("ünïcode"), "ünïcode");
}

#[test]
fn rates_must_be_positive_and_slow_rates_receive_fewer_at_a_time() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
        assert!(Pace::new(Some(bad)).is_err(), "{bad}");
    }
    assert_eq!(Pace::new(None).map(|p| p.batch_size()).ok(), Some(10));
    assert_eq!(Pace::new(Some(5.0)).map(|p| p.batch_size()).ok(), Some(10));
    assert_eq!(Pace::new(Some(0.05)).map(|p| p.batch_size()).ok(), Some(4));
    assert_eq!(Pace::new(Some(0.001)).map(|p| p.batch_size()).ok(), Some(1));
}

#[test]
fn a_reason_filter_selects_only_messages_with_that_reason() {
    let letter = |reason: Option<&str>| DeadLetter {
        message_id: "m".into(),
        receipt_handle: "h".into(),
        body: String::new(),
        reason: reason.map(str::to_owned),
        detail: None,
        failed_at: None,
        sent_at: None,
        receive_count: None,
        other_attributes: HashMap::new(),
    };
    assert!(letter(Some("unknown_bucket")).matches(Some("unknown_bucket")));
    assert!(!letter(Some("corrupt_object")).matches(Some("unknown_bucket")));
    assert!(!letter(None).matches(Some("unknown_bucket")));
    assert!(letter(None).matches(None));
    assert_eq!(letter(None).reason_text(), NO_REASON);
}
