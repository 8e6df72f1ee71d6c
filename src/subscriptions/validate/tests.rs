use super::*;
use secrecy::ExposeSecret;
use serde_json::json;

fn good() -> Value {
    json!({
        "apiKey": "0123456789abcdef0123456789abcdef",
        "appKey": "fedcba9876543210",
        "bucket_name": "acme-cloudtrail-logs",
        "bucket_region": "us-east-1",
        "iam_role_arn": "arn:aws:iam::123456789012:role/BigPandaCloudTrailReader",
        "iam_role_external_id": "bp-ext-3f9c2a"
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut body = good();
    body[field] = value;
    body
}

fn errors_of(body: &Value) -> Vec<(String, String)> {
    match subscribe_request(body) {
        Ok(_) => Vec::new(),
        Err(Invalid(errors)) => errors.into_iter().map(|e| (e.field, e.message)).collect(),
    }
}

#[test]
fn a_complete_request_parses_into_checked_fields() {
    let r = subscribe_request(&good()).expect("valid");
    assert_eq!(r.bucket_name.as_str(), "acme-cloudtrail-logs");
    assert_eq!(r.bucket_region.as_str(), "us-east-1");
    assert_eq!(
        r.api_key.expose_secret(),
        "0123456789abcdef0123456789abcdef"
    );
    assert!(!format!("{r:?}").contains("0123456789abcdef"));
}

#[test]
fn every_bad_field_gets_its_own_message() {
    let body = json!({
        "apiKey": "",
        "appKey": 7,
        "bucket_name": "Bad_Bucket",
        "bucket_region": "useast1",
        "iam_role_arn": "arn:aws:iam::12345:role/x",
        "iam_role_external_id": "x",
        "extra": true
    });
    let fields: Vec<String> = errors_of(&body).into_iter().map(|(f, _)| f).collect();
    for f in [
        "extra",
        "apiKey",
        "appKey",
        "bucket_name",
        "bucket_region",
        "iam_role_arn",
        "iam_role_external_id",
    ] {
        assert!(
            fields.contains(&f.to_owned()),
            "{f} missing from {fields:?}"
        );
    }
}

#[test]
fn missing_fields_and_non_objects_are_refused() {
    let errors = errors_of(&json!({}));
    assert_eq!(errors.len(), 6);
    assert!(errors.iter().all(|(_, m)| m == "is required"));
    assert_eq!(
        errors_of(&json!([1])),
        vec![("body".into(), "must be a JSON object".into())]
    );
}

#[test]
fn bucket_names_follow_the_s3_rules() {
    for ok in ["abc", "my.bucket-1", "a1b2c3", &"a".repeat(63)] {
        assert!(BucketName::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "ab",
        &"a".repeat(64),
        "Upper",
        "under_score",
        "-start",
        "end-",
        "two..dots",
        "192.168.5.4",
        "xn--punycode",
        "sthree-x",
        "amzn-s3-demo-x",
        "name-s3alias",
        "name--ol-s3",
        "name.mrap",
        "name--x-s3",
        "name--table-s3",
    ] {
        assert!(BucketName::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn regions_look_like_aws_region_codes() {
    for ok in [
        "us-east-1",
        "eu-central-2",
        "us-gov-west-1",
        "ap-southeast-3",
        "cn-north-1",
        "us-isob-east-1",
    ] {
        assert!(Region::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "us-east",
        "US-EAST-1",
        "useast1",
        "us-east-1a",
        "u-east-1",
        "us--1",
        "us-east-100",
    ] {
        assert!(Region::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn role_arns_need_a_partition_an_account_and_a_role_name() {
    for ok in [
        "arn:aws:iam::123456789012:role/Reader",
        "arn:aws-cn:iam::123456789012:role/path/to/Reader",
        "arn:aws-us-gov:iam::123456789012:role/a+=,.@_-b",
        "arn:aws-iso-b:iam::123456789012:role/service-role/x",
    ] {
        assert!(RoleArn::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "arn:aws:iam::123456789012:user/Reader",
        "arn:aws:iam::12345678901:role/Reader",
        "arn:aws:iam:us-east-1:123456789012:role/Reader",
        "arn:azure:iam::123456789012:role/Reader",
        "arn:aws:s3::123456789012:role/Reader",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/has space",
        &format!("arn:aws:iam::123456789012:role/{}", "n".repeat(65)),
        "role/Reader",
    ] {
        assert!(RoleArn::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn external_ids_are_2_to_1224_allowed_characters() {
    for ok in ["ab", "bp:ext/1=2,3.4@5-6+7", &"x".repeat(1224)] {
        assert!(ExternalId::parse(ok).is_ok());
    }
    for bad in ["a", &"x".repeat(1225), "has space", "semi;colon", "ünï"] {
        assert!(ExternalId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn keys_must_be_header_safe() {
    assert!(check_key("abcDEF123-_.").is_ok());
    for bad in ["", "has space", "new\nline", "ünï", &"k".repeat(513)] {
        assert!(check_key(bad).is_err(), "{bad:?}");
    }
    let errors = errors_of(&with("apiKey", json!("two words")));
    assert_eq!(errors[0].0, "apiKey");
}

#[test]
fn unsubscribe_needs_exactly_the_key_and_the_bucket() {
    let ok = unsubscribe_request(&json!({"apiKey": "k1234", "bucket_name": "b"})).expect("valid");
    assert_eq!(ok.bucket_name, "b");
    let Err(Invalid(errors)) =
        unsubscribe_request(&json!({"apiKey": "k", "bucket_name": "", "appKey": "x"}))
    else {
        panic!("must be refused");
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["appKey", "bucket_name"]);
}

#[test]
fn the_bucket_owner_is_the_roles_account_unless_bucket_account_id_names_another() {
    let r = subscribe_request(&good()).expect("valid");
    assert_eq!(r.bucket_owner(), "123456789012");
    let r = subscribe_request(&with("bucket_account_id", json!("210987654321"))).expect("valid");
    assert_eq!(r.bucket_owner(), "210987654321");
    for bad in [
        json!("12345"),
        json!("12345678901x"),
        json!(210987654321_u64),
    ] {
        let errors = errors_of(&with("bucket_account_id", bad.clone()));
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert_eq!(errors[0].0, "bucket_account_id");
    }
}
