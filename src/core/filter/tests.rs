use super::*;

/// 2024-06-01T00:00:00Z: "now" in the tests.
const NOW: i64 = 1_717_200_000;

fn check_with(policy: &Policy, json: &str) -> Result<(), Reason> {
    let element: Element<'_> = serde_json::from_str(json).expect("test JSON");
    policy.check(&element, NOW)
}

fn check(json: &str) -> Result<(), Reason> {
    check_with(&Policy::default(), json)
}

fn with(f: impl FnOnce(&mut FilterSettings)) -> Policy {
    let mut s = FilterSettings::default();
    f(&mut s);
    Policy::new(&s).expect("valid policy")
}

const T: &str = r#""eventID":"e","eventTime":"2024-01-01T00:00:00Z""#;

#[test]
fn a_successful_management_write_is_a_change() {
    assert_eq!(
        check(&format!(
            r#"{{{T},"eventName":"AuthorizeSecurityGroupIngress","readOnly":false,"eventType":"AwsApiCall","eventCategory":"Management"}}"#
        )),
        Ok(())
    );
}

#[test]
fn records_without_id_or_time_or_object_shape_are_malformed() {
    for json in [
        r#"{"eventTime":"2024-01-01T00:00:00Z","eventName":"RunInstances"}"#,
        r#"{"eventID":"","eventTime":"2024-01-01T00:00:00Z"}"#,
        r#"{"eventID":7,"eventTime":"2024-01-01T00:00:00Z"}"#,
        r#"{"eventID":"e"}"#,
        r#"{"eventID":"e","eventTime":"yesterday"}"#,
        r#"{"eventID":"e","eventTime":1704067200}"#,
        r#"["eventID","e"]"#,
        r#""a string""#,
    ] {
        assert_eq!(check(json), Err(Reason::Malformed), "{json}");
    }
}

#[test]
fn event_times_before_cloudtrail_or_more_than_a_day_ahead_are_malformed() {
    let at = |time: &str| {
        check(&format!(
            r#"{{"eventID":"e","eventTime":"{time}","eventName":"CreateUser"}}"#
        ))
    };
    assert_eq!(at("0001-01-01T00:00:00Z"), Err(Reason::Malformed));
    assert_eq!(at("2012-12-31T23:59:59Z"), Err(Reason::Malformed));
    assert_eq!(
        at("2013-01-01T00:00:00Z"),
        Ok(()),
        "the first plausible second"
    );
    assert_eq!(
        at("2013-01-01T01:00:00+01:00"),
        Ok(()),
        "the same instant with an offset"
    );
    assert_eq!(at("2012-12-31T23:59:59-00:01"), Ok(()));
    // NOW is 2024-06-01T00:00:00Z: one day after it is plausible, a second more is not.
    assert_eq!(at("2024-06-02T00:00:00Z"), Ok(()));
    assert_eq!(at("2024-06-02T00:00:01Z"), Err(Reason::Malformed));
    assert_eq!(at("9999-12-31T23:59:59Z"), Err(Reason::Malformed));
}

#[test]
fn an_implausible_time_says_why_the_record_is_malformed() {
    let element: Element<'_> =
        serde_json::from_str(r#"{"eventID":"e","eventTime":"0001-01-01T00:00:00Z"}"#)
            .expect("test JSON");
    let Element::Record(record) = element else {
        panic!("an object")
    };
    assert_eq!(
        well_formed(&record, NOW).map(|k| k.unix_seconds),
        Err(Malformed::ImplausibleEventTime)
    );
    assert!(Malformed::ImplausibleEventTime
        .as_str()
        .contains("implausible"));
    assert!(plausible(EARLIEST_EVENT_TIME, NOW));
    assert!(!plausible(EARLIEST_EVENT_TIME - 1, NOW));
    assert!(plausible(i64::MAX, i64::MAX), "no overflow at the top");
}

#[test]
fn read_only_is_read_as_a_boolean_or_its_string_in_any_case() {
    assert_eq!(
        check(&format!(
            r#"{{{T},"eventName":"PutThing","readOnly":true}}"#
        )),
        Err(Reason::ReadOnly)
    );
    assert_eq!(
        check(&format!(
            r#"{{{T},"eventName":"PutThing","readOnly":"TRUE"}}"#
        )),
        Err(Reason::ReadOnly)
    );
    assert_eq!(
        check(&format!(
            r#"{{{T},"eventName":"GetThing","readOnly":"False"}}"#
        )),
        Ok(())
    );
}

#[test]
fn without_read_only_the_event_name_decides() {
    for read in [
        "GetObject",
        "ListBuckets",
        "DescribeInstances",
        "HeadBucket",
        "LookupEvents",
        "BatchGetItem",
        "DecodeAuthorizationMessage",
        "SimulatePrincipalPolicy",
        "TestInvokeMethod",
    ] {
        assert_eq!(
            check(&format!(r#"{{{T},"eventName":"{read}"}}"#)),
            Err(Reason::ReadOnly),
            "{read}"
        );
        assert_eq!(
            check(&format!(r#"{{{T},"eventName":"{read}","readOnly":null}}"#)),
            Err(Reason::ReadOnly),
            "{read}"
        );
        assert_eq!(
            check(&format!(
                r#"{{{T},"eventName":"{read}","readOnly":"maybe"}}"#
            )),
            Err(Reason::ReadOnly),
            "{read}"
        );
    }
    for write in [
        "PutObject",
        "CreateBucket",
        "DeleteUser",
        "ModifyInstanceAttribute",
        "getlowercase",
    ] {
        assert_eq!(
            check(&format!(r#"{{{T},"eventName":"{write}"}}"#)),
            Ok(()),
            "{write}"
        );
    }
}

#[test]
fn failed_calls_are_dropped_unless_kept() {
    let failed =
        format!(r#"{{{T},"eventName":"CreateUser","readOnly":false,"errorCode":"AccessDenied"}}"#);
    let message_only =
        format!(r#"{{{T},"eventName":"CreateUser","readOnly":false,"errorMessage":"denied"}}"#);
    assert_eq!(check(&failed), Err(Reason::Failed));
    assert_eq!(check(&message_only), Err(Reason::Failed));
    assert_eq!(
        check(&format!(
            r#"{{{T},"eventName":"CreateUser","errorCode":null,"errorMessage":""}}"#
        )),
        Ok(())
    );
    assert_eq!(check_with(&with(|s| s.keep_failed = true), &failed), Ok(()));
}

#[test]
fn only_the_allowed_event_types_are_changes() {
    for t in ["AwsApiCall", "AwsConsoleAction", "AwsServiceEvent"] {
        assert_eq!(
            check(&format!(r#"{{{T},"eventName":"X","eventType":"{t}"}}"#)),
            Ok(()),
            "{t}"
        );
    }
    for t in ["AwsConsoleSignIn", "AwsCloudTrailInsight", "Other"] {
        assert_eq!(
            check(&format!(r#"{{{T},"eventName":"X","eventType":"{t}"}}"#)),
            Err(Reason::EventType),
            "{t}"
        );
    }
    assert_eq!(
        check(&format!(r#"{{{T},"eventName":"X"}}"#)),
        Ok(()),
        "records before eventVersion 1.02 have no eventType"
    );
    let console_only = with(|s| s.event_types = vec!["AwsConsoleAction".into()]);
    assert_eq!(
        check_with(
            &console_only,
            &format!(r#"{{{T},"eventName":"X","eventType":"AwsApiCall"}}"#)
        ),
        Err(Reason::EventType)
    );
}

#[test]
fn data_and_network_events_are_excluded_unless_enabled() {
    let data = format!(
        r#"{{{T},"eventName":"PutObject","eventCategory":"Data","managementEvent":false}}"#
    );
    let old_data = format!(r#"{{{T},"eventName":"PutObject","managementEvent":false}}"#);
    let network = format!(r#"{{{T},"eventName":"PutObject","eventCategory":"NetworkActivity"}}"#);
    let insight = format!(r#"{{{T},"eventName":"PutObject","eventCategory":"Insight"}}"#);
    for json in [&data, &old_data, &network, &insight] {
        assert_eq!(check(json), Err(Reason::Category), "{json}");
    }
    let data_on = with(|s| s.include_data_events = true);
    assert_eq!(check_with(&data_on, &data), Ok(()));
    assert_eq!(check_with(&data_on, &old_data), Ok(()));
    assert_eq!(check_with(&data_on, &network), Err(Reason::Category));
    assert_eq!(
        check_with(
            &with(|s| s.include_network_activity_events = true),
            &network
        ),
        Ok(())
    );
    assert_eq!(
        check(&format!(
            r#"{{{T},"eventName":"PutObject","managementEvent":"true"}}"#
        )),
        Ok(())
    );
}

#[test]
fn noise_globs_match_event_names() {
    for noisy in [
        "AssumeRole",
        "AssumeRoleWithSAML",
        "ConsoleLogin",
        "GenerateDataKeyWithoutPlaintext",
        "Decrypt",
        "PutLogEvents",
        "BatchCheckLayerAvailability",
        "UpdateInstanceInformation",
        "UpdateInstanceAssociationStatus",
    ] {
        assert_eq!(
            check(&format!(
                r#"{{{T},"eventName":"{noisy}","readOnly":false}}"#
            )),
            Err(Reason::Noise),
            "{noisy}"
        );
    }
    assert_eq!(
        check(&format!(
            r#"{{{T},"eventName":"DecryptSomething","readOnly":false}}"#
        )),
        Ok(()),
        "globs match the whole name"
    );
    assert_eq!(
        check(&format!(
            r#"{{{T},"eventName":"UpdateInstanceInformationX","readOnly":false}}"#
        )),
        Ok(()),
        "the SSM names are whole names, not prefixes"
    );
    let extra = with(|s| s.extra_noise = vec!["Update*Status".into()]);
    assert_eq!(
        check_with(
            &extra,
            &format!(r#"{{{T},"eventName":"UpdateServiceStatus"}}"#)
        ),
        Err(Reason::Noise)
    );
    let replaced = with(|s| s.noise = vec![]);
    assert_eq!(
        check_with(
            &replaced,
            &format!(r#"{{{T},"eventName":"AssumeRole","readOnly":false}}"#)
        ),
        Ok(())
    );
}

#[test]
fn the_steps_run_in_the_change_models_order() {
    // A failed read of a data event counts as `category`, the first step that drops it.
    let json = format!(
        r#"{{{T},"eventName":"GetObject","eventCategory":"Data","readOnly":true,"errorCode":"X","eventType":"Other"}}"#
    );
    assert_eq!(check(&json), Err(Reason::Category));
    let json = format!(
        r#"{{{T},"eventName":"GetObject","readOnly":true,"errorCode":"X","eventType":"Other"}}"#
    );
    assert_eq!(check(&json), Err(Reason::ReadOnly));
    let json = format!(
        r#"{{{T},"eventName":"AssumeRole","readOnly":false,"errorCode":"X","eventType":"Other"}}"#
    );
    assert_eq!(check(&json), Err(Reason::Failed));
    let json = format!(r#"{{{T},"eventName":"AssumeRole","readOnly":false,"eventType":"Other"}}"#);
    assert_eq!(check(&json), Err(Reason::EventType));
}

#[test]
fn an_event_id_is_first_seen_once() {
    let mut d = Dedup::default();
    assert!(d.first_time("a"));
    assert!(d.first_time("b"));
    assert!(!d.first_time("a"));
    assert_eq!(d.len(), 2);
}
