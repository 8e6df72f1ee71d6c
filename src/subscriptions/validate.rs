//! The subscription API's request bodies, parsed into checked types ("parse, don't validate").
//! Every bad field gets its own message, so a customer fixes a request in one round trip.
//! Pure: no I/O.

use crate::util::arn::Arn;
use secrecy::SecretString;
use serde_json::{Map, Value};

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found in a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }
}

/// A valid `POST /v1/subscriptions` body.
#[derive(Debug)]
pub struct SubscribeRequest {
    pub api_key: SecretString,
    pub app_key: SecretString,
    pub bucket_name: BucketName,
    pub bucket_region: Region,
    pub iam_role_arn: RoleArn,
    pub iam_role_external_id: ExternalId,
    /// The account that owns the bucket, when it is not the role's (`bucket_account_id`).
    pub bucket_account_id: Option<AccountId>,
}

impl SubscribeRequest {
    /// The account that owns the bucket: `bucket_account_id`, else the role's account (the
    /// customer's role lives in the bucket's account).
    #[must_use]
    pub fn bucket_owner(&self) -> String {
        self.bucket_account_id.as_ref().map_or_else(
            || role_account(self.iam_role_arn.as_str()).to_owned(),
            |a| a.as_str().to_owned(),
        )
    }
}

/// The 12-digit account of a checked role ARN (`arn:<partition>:iam::<account>:role/...`).
#[must_use]
pub fn role_account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("")
}

/// A valid `DELETE /v1/subscriptions` body.
#[derive(Debug)]
pub struct UnsubscribeRequest {
    pub api_key: SecretString,
    pub bucket_name: String,
}

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Checks `text`.
            ///
            /// # Errors
            /// A message saying which rule the text breaks.
            pub fn parse(text: &str) -> Result<Self, String> {
                $check(text).map(|()| Self(text.to_owned()))
            }

            /// The checked text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

checked_string!(
    /// An S3 bucket name (general purpose bucket naming rules).
    BucketName,
    check_bucket_name
);
checked_string!(
    /// An AWS region code such as `us-east-1` or `us-gov-west-1`.
    Region,
    check_region
);
checked_string!(
    /// An IAM role ARN: `arn:<partition>:iam::<account>:role/<path/name>`.
    RoleArn,
    check_role_arn
);
checked_string!(
    /// An STS external ID: 2..=1224 characters of `[A-Za-z0-9+=,.@:/-]`.
    ExternalId,
    check_external_id
);

checked_string!(
    /// A 12-digit AWS account ID.
    AccountId,
    check_account_id
);

const SUBSCRIBE_FIELDS: [&str; 7] = [
    "apiKey",
    "appKey",
    "bucket_name",
    "bucket_region",
    "iam_role_arn",
    "iam_role_external_id",
    "bucket_account_id",
];
const UNSUBSCRIBE_FIELDS: [&str; 2] = ["apiKey", "bucket_name"];

/// Parses a subscribe body.
///
/// # Errors
/// [`Invalid`] with one entry per bad, missing or unknown field.
pub fn subscribe_request(body: &Value) -> Result<SubscribeRequest, Invalid> {
    let mut invalid = Invalid(Vec::new());
    let Some(map) = object(body, &SUBSCRIBE_FIELDS, &mut invalid) else {
        return Err(invalid);
    };
    let api_key = key(map, "apiKey", &mut invalid);
    let app_key = key(map, "appKey", &mut invalid);
    let bucket_name = field(map, "bucket_name", BucketName::parse, &mut invalid);
    let bucket_region = field(map, "bucket_region", Region::parse, &mut invalid);
    let iam_role_arn = field(map, "iam_role_arn", RoleArn::parse, &mut invalid);
    let external_id = field(map, "iam_role_external_id", ExternalId::parse, &mut invalid);
    let bucket_account_id = match map.get("bucket_account_id") {
        None | Some(Value::Null) => None,
        Some(_) => field(map, "bucket_account_id", AccountId::parse, &mut invalid),
    };
    match (
        api_key,
        app_key,
        bucket_name,
        bucket_region,
        iam_role_arn,
        external_id,
    ) {
        (Some(a), Some(b), Some(c), Some(d), Some(e), Some(f)) if invalid.0.is_empty() => {
            Ok(SubscribeRequest {
                api_key: a,
                app_key: b,
                bucket_name: c,
                bucket_region: d,
                iam_role_arn: e,
                iam_role_external_id: f,
                bucket_account_id,
            })
        }
        _ => Err(invalid),
    }
}

/// Parses an unsubscribe body. The bucket name is only required to be a non-empty string: a
/// malformed name simply matches no subscription.
///
/// # Errors
/// [`Invalid`] with one entry per bad, missing or unknown field.
pub fn unsubscribe_request(body: &Value) -> Result<UnsubscribeRequest, Invalid> {
    let mut invalid = Invalid(Vec::new());
    let Some(map) = object(body, &UNSUBSCRIBE_FIELDS, &mut invalid) else {
        return Err(invalid);
    };
    let api_key = key(map, "apiKey", &mut invalid);
    let bucket = field(map, "bucket_name", non_empty, &mut invalid);
    match (api_key, bucket) {
        (Some(api_key), Some(bucket_name)) if invalid.0.is_empty() => Ok(UnsubscribeRequest {
            api_key,
            bucket_name,
        }),
        _ => Err(invalid),
    }
}

/// Checks an API or app key: it travels in an HTTP header, so visible ASCII only.
///
/// # Errors
/// A message saying which rule the key breaks.
pub fn check_key(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.len() > 512 {
        return Err("must be at most 512 characters".into());
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII characters without spaces".into());
    }
    Ok(())
}

fn object<'a>(
    body: &'a Value,
    known: &[&str],
    invalid: &mut Invalid,
) -> Option<&'a Map<String, Value>> {
    let Value::Object(map) = body else {
        invalid.push("body", "must be a JSON object");
        return None;
    };
    for name in map.keys().filter(|k| !known.contains(&k.as_str())) {
        invalid.push(
            name,
            format!("is not a known field (expected {})", known.join(", ")),
        );
    }
    Some(map)
}

fn field<T>(
    map: &Map<String, Value>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    invalid: &mut Invalid,
) -> Option<T> {
    match map.get(name) {
        None | Some(Value::Null) => {
            invalid.push(name, "is required");
            None
        }
        Some(Value::String(s)) => parse(s).map_err(|m| invalid.push(name, m)).ok(),
        Some(_) => {
            invalid.push(name, "must be a string");
            None
        }
    }
}

fn key(map: &Map<String, Value>, name: &str, invalid: &mut Invalid) -> Option<SecretString> {
    field(
        map,
        name,
        |s| check_key(s).map(|()| SecretString::from(s)),
        invalid,
    )
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(text.to_owned())
    }
}

fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3 to 63 characters long".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may hold only lowercase letters, digits, dots and hyphens".into());
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return Err("must begin and end with a letter or a digit".into());
    }
    if name.contains("..") {
        return Err("must not hold two adjacent dots".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not be formatted as an IP address".into());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(format!("must not start with {prefix}"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Err(format!("must not end with {suffix}"));
        }
    }
    Ok(())
}

fn check_region(region: &str) -> Result<(), String> {
    const RULE: &str = "must be an AWS region code such as us-east-1";
    let parts: Vec<&str> = region.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return Err(RULE.into());
    };
    let words_ok = words.len() >= 2
        && (2..=4).contains(&words[0].len())
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()));
    let number_ok =
        !number.is_empty() && number.len() <= 2 && number.bytes().all(|b| b.is_ascii_digit());
    if words_ok && number_ok && region.len() <= 32 {
        Ok(())
    } else {
        Err(RULE.into())
    }
}

fn check_role_arn(arn: &str) -> Result<(), String> {
    const RULE: &str =
        "must be an IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<path/name>";
    if arn.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let Some(Arn {
        partition,
        service: "iam",
        region: "",
        account,
        resource,
    }) = Arn::parse(arn)
    else {
        return Err(RULE.into());
    };
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('-')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        });
    if !partition_ok {
        return Err(format!("{RULE} (unknown partition {partition:?})"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{RULE} (the account must be 12 digits)"));
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err(RULE.into());
    };
    let (path, name) = path_and_name
        .rsplit_once('/')
        .unwrap_or(("", path_and_name));
    let name_ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !name_ok {
        return Err(format!(
            "{RULE} (the role name must be 1 to 64 characters of letters, digits and +=,.@_-)"
        ));
    }
    if !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) || path.contains("//") {
        return Err(format!("{RULE} (the role path holds a bad character)"));
    }
    Ok(())
}

fn check_account_id(id: &str) -> Result<(), String> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err("must be a 12-digit AWS account ID".into())
    }
}

fn check_external_id(id: &str) -> Result<(), String> {
    if !(2..=1224).contains(&id.len()) {
        return Err("must be 2 to 1224 characters long".into());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/-".contains(&b))
    {
        return Err("may hold only letters, digits and +=,.@:/-".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
