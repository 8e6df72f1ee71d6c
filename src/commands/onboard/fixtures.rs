//! Test fixtures shared by the `onboard` unit tests.

use super::*;
use serde_json::Value;

pub(super) fn topic() -> TopicArn {
    TopicArn::parse("arn:aws:sns:us-east-1:123456789012:cloudtrail-changes").expect("topic")
}

pub(super) fn customer(prefix: &str) -> Customer {
    Customer::from_args(&OnboardArgs {
        bucket: "acme-trail".into(),
        account: "111122223333".into(),
        prefix: prefix.into(),
        external_id: Some("ext-id.1".into()),
        region: "us-east-1".into(),
        format: "json".into(),
    })
    .expect("valid arguments")
}

pub(super) fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializes")
}
