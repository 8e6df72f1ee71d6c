//! `onboard`: what a customer must create to connect a bucket, printed for that customer.
//!
//! For `--bucket B --account ACCOUNT [--prefix P] [--external-id X] [--region R]` it prints:
//!
//! - the IAM role's **trust policy**: our account (`arn:<partition>:iam::OURS:root`, read with
//!   STS GetCallerIdentity using the daemon's credentials, or taken from
//!   `notifications.topic_arn` when STS cannot be reached) may assume it with `sts:ExternalId`
//!   X; a random 32-character external ID is generated when none is given;
//! - the role's **permission policy**: one statement, `s3:GetObject` on `arn:…:s3:::B/P*`, and
//!   apart from it the `kms:Decrypt` statement a bucket encrypted with SSE-KMS also needs;
//! - the bucket's **notification configuration**: `s3:ObjectCreated:*` to our topic
//!   (`notifications.topic_arn`) for keys under `P` + `AWSLogs/ACCOUNT/CloudTrail/` ending in
//!   `.json.gz`, so digest (`CloudTrail-Digest/`) and Insights files are never sent;
//! - the **topic policy statement** for our side: S3 may publish to our topic for this bucket
//!   (`aws:SourceAccount` ACCOUNT, `aws:SourceArn` the bucket);
//! - the **CloudFormation** parameters of `config/cloudformation/customer-integration.yaml`,
//!   which creates the role, its policy and the notification in one stack;
//! - the exact **subscribe request** (`POST /v1/subscriptions`) as a body and a `curl` line,
//!   with placeholders for the customer's BigPanda keys.
//!
//! `--format text` prints a shell script with comments (policies as heredocs, then the `aws`
//! commands); `--format json` one JSON object, [`Plan`].
//!
//! Organization trails write `P/AWSLogs/o-<org>/<account>/CloudTrail/…`: give `--prefix
//! P/AWSLogs/o-<org>/` (or `AWSLogs/o-<org>/` without a trail prefix). The notification then
//! covers every member account's logs (filter prefix `P/AWSLogs/o-<org>/`); S3 filters take one
//! prefix, so digest files under it are notified too and the daemon skips them (`classify_key`).
//!
//! Policy building is pure ([`plan`], [`render_text`]); only [`run`] does I/O (STS, output).

use crate::aws::credentials::{self, AwsSettings};
use crate::cli::OnboardArgs;
use crate::settings::Settings;
use crate::subscriptions::validate::{BucketName, ExternalId, Region};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

/// The role name we suggest, and the CloudFormation template's default.
pub const ROLE_NAME: &str = "BigPandaCloudTrailReader";
/// The name of the role's inline policy (the template's too).
pub const POLICY_NAME: &str = "BigPandaCloudTrailRead";
/// The `Id` of our topic configuration in the bucket's notification configuration.
pub const NOTIFICATION_ID: &str = "bigpanda-cloudtrail-changes";
/// The suffix of every CloudTrail log file.
pub const LOG_SUFFIX: &str = ".json.gz";
/// The event that notifies us.
pub const NOTIFICATION_EVENT: &str = "s3:ObjectCreated:*";
/// The customer's CloudFormation template, relative to the repository.
pub const TEMPLATE_PATH: &str = "config/cloudformation/customer-integration.yaml";
/// Length of a generated external ID.
pub const EXTERNAL_ID_LEN: usize = 32;
/// Longest `--prefix` (CloudTrail's `S3KeyPrefix` allows 200, plus `AWSLogs/o-<org>/`).
const MAX_PREFIX_LEN: usize = 250;
/// How long the STS lookup of our account may take before falling back to the topic's account.
const STS_TIMEOUT: Duration = Duration::from_secs(10);
const POLICY_VERSION: &str = "2012-10-17";
const API_KEY_PLACEHOLDER: &str = "<BigPanda API key>";
const APP_KEY_PLACEHOLDER: &str = "<BigPanda app key>";

/// Why `onboard` could not print the set-up.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// A bad argument, named with the rule it breaks.
    #[error("{0}")]
    Invalid(String),
    /// A setting `onboard` needs is missing or malformed.
    #[error("configuration: {0}")]
    Config(String),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Write(#[from] io::Error),
}

/// Prints the customer's set-up for `args` to `out`; notes (where our account came from) go
/// to stderr.
///
/// # Errors
/// [`OnboardError`] naming the bad argument or setting.
pub async fn run(
    settings: &Settings,
    args: &OnboardArgs,
    out: &mut dyn Write,
) -> Result<(), OnboardError> {
    let customer = Customer::from_args(args)?;
    let topic = TopicArn::parse(&settings.notifications.topic_arn)
        .map_err(|detail| OnboardError::Config(format!("notifications.topic_arn {detail}")))?;
    check_same_region(&topic, &customer.region)?;
    let (our_account, source) = our_account(&settings.aws, &topic).await;
    let api_url = format!("http://{}", settings.api.listen);
    let plan = plan(&customer, &topic, &our_account, source, &api_url);
    let text = if args.format == "json" {
        let mut json = serde_json::to_string_pretty(&plan).map_err(io::Error::other)?;
        json.push('\n');
        json
    } else {
        render_text(&plan)
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Arguments

/// The customer's side, from the arguments, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub bucket: BucketName,
    /// The bucket owner's 12-digit account.
    pub account: String,
    pub region: Region,
    pub prefix: KeyPrefix,
    pub external_id: ExternalId,
    /// Whether `external_id` was generated here (not given with `--external-id`).
    pub external_id_generated: bool,
}

impl Customer {
    /// Checks every argument (generating the external ID when absent).
    ///
    /// # Errors
    /// [`OnboardError::Invalid`] naming the first bad argument and the rule it breaks.
    pub fn from_args(args: &OnboardArgs) -> Result<Self, OnboardError> {
        let invalid = |arg: &str, value: &str, rule: String| {
            OnboardError::Invalid(format!("--{arg} {value:?}: {rule}"))
        };
        let bucket =
            BucketName::parse(&args.bucket).map_err(|e| invalid("bucket", &args.bucket, e))?;
        let account =
            parse_account(&args.account).map_err(|e| invalid("account", &args.account, e))?;
        let region = Region::parse(&args.region).map_err(|e| invalid("region", &args.region, e))?;
        let prefix =
            KeyPrefix::parse(&args.prefix).map_err(|e| invalid("prefix", &args.prefix, e))?;
        let (external_id, external_id_generated) = match &args.external_id {
            Some(given) => (
                ExternalId::parse(given).map_err(|e| invalid("external-id", given, e))?,
                false,
            ),
            None => (generate_external_id(), true),
        };
        Ok(Self {
            bucket,
            account,
            region,
            prefix,
            external_id,
            external_id_generated,
        })
    }
}

/// Checks a 12-digit AWS account ID.
///
/// # Errors
/// A message with the rule.
pub fn parse_account(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err("must be a 12-digit AWS account ID".into())
    }
}

/// A random external ID: [`EXTERNAL_ID_LEN`] letters and digits.
#[must_use]
pub fn generate_external_id() -> ExternalId {
    let text = Alphanumeric.sample_string(&mut rand::rng(), EXTERNAL_ID_LEN);
    ExternalId::parse(&text).expect("32 letters and digits are a valid external ID")
}

/// The key prefix of the customer's trail: `""` or ending in `/`, optionally ending in
/// `AWSLogs/o-<org>/` for an organization trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix {
    /// The part before `AWSLogs/`: `""` or ending in `/`.
    pub trail: String,
    /// The organization ID, for an organization trail.
    pub organization: Option<String>,
}

impl KeyPrefix {
    /// Reads `--prefix`: the trail's `S3KeyPrefix` (`team`, `team/`, `a/b/`), or that followed by
    /// `AWSLogs/o-<org>` for an organization trail; a missing final `/` is added.
    ///
    /// # Errors
    /// A message with the rule broken: characters outside S3's safe set (or IAM's wildcards
    /// `*`, `?`), a leading `/`, an empty, `.` or `..` segment, or `AWSLogs/` followed by
    /// anything but an organization ID.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self {
                trail: String::new(),
                organization: None,
            });
        }
        if text.len() > MAX_PREFIX_LEN {
            return Err(format!("must be at most {MAX_PREFIX_LEN} characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!-_.()/".contains(&b))
        {
            return Err("may hold only letters, digits, / and !-_.()".into());
        }
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        let segments: Vec<&str> = trimmed.split('/').collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            return Err("must not start with / or hold an empty, . or .. segment".into());
        }
        let (trail, organization) = match segments.as_slice() {
            [before @ .., "AWSLogs", org] if is_org_id(org) => (before, Some((*org).to_owned())),
            all => (all, None),
        };
        if trail.contains(&"AWSLogs") {
            return Err(
                "is the part of the keys before AWSLogs/ (for an organization trail, up to the \
                 organization ID: P/AWSLogs/o-xxxxxxxxxx/)"
                    .into(),
            );
        }
        let trail = trail.iter().map(|s| format!("{s}/")).collect();
        Ok(Self {
            trail,
            organization,
        })
    }

    /// The whole prefix: `trail` + `AWSLogs/o-<org>/` for an organization trail.
    #[must_use]
    pub fn full(&self) -> String {
        match &self.organization {
            Some(org) => format!("{}AWSLogs/{org}/", self.trail),
            None => self.trail.clone(),
        }
    }

    /// The notification's filter prefix: the account's CloudTrail logs
    /// (`trail` + `AWSLogs/ACCOUNT/CloudTrail/`), or every member account's for an
    /// organization trail (`trail` + `AWSLogs/o-<org>/`).
    #[must_use]
    pub fn notification_prefix(&self, account: &str) -> String {
        match &self.organization {
            Some(_) => self.full(),
            None => format!("{}AWSLogs/{account}/CloudTrail/", self.trail),
        }
    }
}

/// `o-` and 1 to 32 lowercase letters or digits (as `envelope::classify_key` accepts).
fn is_org_id(s: &str) -> bool {
    s.strip_prefix("o-").is_some_and(|id| {
        (1..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Our SNS topic's ARN, `arn:<partition>:sns:<region>:<account>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicArn {
    pub arn: String,
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl TopicArn {
    /// Checks `notifications.topic_arn`.
    ///
    /// # Errors
    /// A message saying the setting is empty or what is wrong with it.
    pub fn parse(arn: &str) -> Result<Self, String> {
        if arn.is_empty() {
            return Err(
                "is not set: set it to our SNS topic's ARN (CTC__NOTIFICATIONS__TOPIC_ARN \
                 or [notifications] topic_arn), the topic customers' buckets notify"
                    .into(),
            );
        }
        let rule = || {
            format!(
                "must be an SNS topic ARN, arn:<partition>:sns:<region>:<12-digit account>:<name> \
                 (got {arn:?})"
            )
        };
        let parts: Vec<&str> = arn.split(':').collect();
        let ["arn", partition, "sns", region, account, name] = parts.as_slice() else {
            return Err(rule());
        };
        let name_ok = (1..=256).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let partition_ok = partition.starts_with("aws")
            && partition
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-');
        if !partition_ok || Region::parse(region).is_err() || parse_account(account).is_err() {
            return Err(rule());
        }
        if !name_ok {
            return Err(format!(
                "{} (a name of letters, digits, - and _: S3 notifies only standard topics, not .fifo)",
                rule()
            ));
        }
        Ok(Self {
            arn: arn.to_owned(),
            partition: (*partition).to_owned(),
            region: (*region).to_owned(),
            account: (*account).to_owned(),
        })
    }
}

/// S3 notifies only a topic in the bucket's own region.
fn check_same_region(topic: &TopicArn, region: &Region) -> Result<(), OnboardError> {
    if topic.region == region.as_str() {
        return Ok(());
    }
    Err(OnboardError::Invalid(format!(
        "--region {:?}: the bucket must be in the region of our topic ({}, \
         notifications.topic_arn): S3 notifies only a topic in the bucket's own region; onboard \
         with a topic in {} (CTC__NOTIFICATIONS__TOPIC_ARN=arn:{}:sns:{}:...)",
        region.as_str(),
        topic.region,
        region.as_str(),
        topic.partition,
        region.as_str()
    )))
}

// ---------------------------------------------------------------------------------------------
// Our account

/// Where our account ID came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountSource {
    /// STS GetCallerIdentity with the daemon's credentials.
    Sts,
    /// The account of `notifications.topic_arn` (STS could not be reached).
    TopicArn,
}

/// Our account: STS GetCallerIdentity with the daemon's credentials (one attempt, bounded),
/// else the topic's account. A note on stderr says when STS failed, or named another account
/// than the topic's.
async fn our_account(aws: &AwsSettings, topic: &TopicArn) -> (String, AccountSource) {
    let lookup = tokio::time::timeout(STS_TIMEOUT, caller_account(aws, &topic.region)).await;
    let result = lookup.unwrap_or_else(|_| Err(format!("no answer within {STS_TIMEOUT:?}")));
    match result {
        Ok(account) => {
            if account != topic.account {
                eprintln!(
                    "note: our account {account} (STS GetCallerIdentity) is not the account of \
                     notifications.topic_arn ({}); the trust policy names {account}, whose \
                     credentials the daemon uses",
                    topic.account
                );
            }
            (account, AccountSource::Sts)
        }
        Err(detail) => {
            eprintln!(
                "note: could not read our AWS account with STS GetCallerIdentity ({detail}); \
                 using {}, the account of notifications.topic_arn. Configure the daemon's AWS \
                 credentials to have it checked.",
                topic.account
            );
            (topic.account.clone(), AccountSource::TopicArn)
        }
    }
}

/// The account of the daemon's credentials, asked once (no retries, short timeouts); STS in
/// `fallback_region` when the settings and the SDK name none.
async fn caller_account(aws: &AwsSettings, fallback_region: &str) -> Result<String, String> {
    let config = credentials::sdk_config(aws).await;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_timeout(STS_TIMEOUT)
        .build();
    let mut builder = aws_sdk_sts::config::Builder::from(&config)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    if config.region().is_none() {
        builder = builder.region(aws_config::Region::new(fallback_region.to_owned()));
    }
    let sts = aws_sdk_sts::Client::from_conf(builder.build());
    let output = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    output
        .account()
        .and_then(|a| parse_account(a).ok())
        .ok_or_else(|| "STS answered without a 12-digit account".into())
}

/// An error and its sources, `outer: inner: ...` (the SDK's own text says only "dispatch
/// failure").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let _ = write!(text, ": {inner}");
        source = inner.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Documents

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

/// One IAM policy statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: String,
    pub effect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Operator -> condition key -> value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: BTreeMap<&'static str, BTreeMap<&'static str, String>>,
}

/// A statement's principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Principal {
    #[serde(rename = "AWS")]
    Aws(String),
    Service(&'static str),
}

/// `arn:<partition>:iam::<account>:root`: every identity of the account the account allows.
#[must_use]
pub fn account_root(partition: &str, account: &str) -> String {
    format!("arn:{partition}:iam::{account}:root")
}

/// `arn:<partition>:iam::<account>:role/`[`ROLE_NAME`].
#[must_use]
pub fn role_arn(partition: &str, account: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{ROLE_NAME}")
}

/// The role's trust policy: `our_account` may assume it with `external_id`.
#[must_use]
pub fn trust_policy(
    partition: &str,
    our_account: &str,
    external_id: &ExternalId,
) -> PolicyDocument {
    let condition = BTreeMap::from([(
        "StringEquals",
        BTreeMap::from([("sts:ExternalId", external_id.as_str().to_owned())]),
    )]);
    PolicyDocument {
        version: POLICY_VERSION,
        statement: vec![Statement {
            sid: "AllowBigPandaAssumeRole".into(),
            effect: "Allow",
            principal: Some(Principal::Aws(account_root(partition, our_account))),
            action: "sts:AssumeRole",
            resource: None,
            condition,
        }],
    }
}

/// The role's permission policy: exactly one statement, `s3:GetObject` on the trail's keys.
#[must_use]
pub fn permission_policy(
    partition: &str,
    bucket: &BucketName,
    prefix: &KeyPrefix,
) -> PolicyDocument {
    PolicyDocument {
        version: POLICY_VERSION,
        statement: vec![Statement {
            sid: "AllowBigPandaGetObject".into(),
            effect: "Allow",
            principal: None,
            action: "s3:GetObject",
            resource: Some(format!(
                "arn:{partition}:s3:::{}/{}*",
                bucket.as_str(),
                prefix.full()
            )),
            condition: BTreeMap::new(),
        }],
    }
}

/// The statement an SSE-KMS bucket's role needs besides [`permission_policy`] (the key's ID is
/// a placeholder).
#[must_use]
pub fn kms_decrypt_statement(partition: &str, region: &Region, account: &str) -> Statement {
    Statement {
        sid: "AllowBigPandaDecrypt".into(),
        effect: "Allow",
        principal: None,
        action: "kms:Decrypt",
        resource: Some(format!(
            "arn:{partition}:kms:{}:{account}:key/<key-id>",
            region.as_str()
        )),
        condition: BTreeMap::new(),
    }
}

/// The statement our topic's access policy needs so that S3 may publish this bucket's events.
#[must_use]
pub fn topic_policy_statement(topic: &TopicArn, bucket: &BucketName, account: &str) -> Statement {
    let condition = BTreeMap::from([
        (
            "StringEquals",
            BTreeMap::from([("aws:SourceAccount", account.to_owned())]),
        ),
        (
            "ArnLike",
            BTreeMap::from([(
                "aws:SourceArn",
                format!("arn:{}:s3:::{}", topic.partition, bucket.as_str()),
            )]),
        ),
    ]);
    Statement {
        sid: format!("AllowS3Publish{account}{}", sid_safe(bucket.as_str())),
        effect: "Allow",
        principal: Some(Principal::Service("s3.amazonaws.com")),
        action: "SNS:Publish",
        resource: Some(topic.arn.clone()),
        condition,
    }
}

/// A statement ID may hold only letters and digits.
fn sid_safe(text: &str) -> String {
    text.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// A bucket notification configuration, as `put-bucket-notification-configuration` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotificationConfiguration {
    pub topic_configurations: Vec<TopicConfiguration>,
}

/// One topic configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TopicConfiguration {
    pub id: &'static str,
    pub topic_arn: String,
    pub events: Vec<&'static str>,
    pub filter: Filter,
}

/// `{"Key": {"FilterRules": [...]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub key: KeyFilter,
}

/// The key filter's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyFilter {
    pub filter_rules: Vec<FilterRule>,
}

/// `{"Name": "prefix"|"suffix", "Value": ...}` (the API's documented names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterRule {
    pub name: &'static str,
    pub value: String,
}

/// The bucket's notification to our topic: new CloudTrail log files only.
#[must_use]
pub fn notification_configuration(
    topic: &TopicArn,
    prefix: &KeyPrefix,
    account: &str,
) -> NotificationConfiguration {
    NotificationConfiguration {
        topic_configurations: vec![TopicConfiguration {
            id: NOTIFICATION_ID,
            topic_arn: topic.arn.clone(),
            events: vec![NOTIFICATION_EVENT],
            filter: Filter {
                key: KeyFilter {
                    filter_rules: vec![
                        FilterRule {
                            name: "prefix",
                            value: prefix.notification_prefix(account),
                        },
                        FilterRule {
                            name: "suffix",
                            value: LOG_SUFFIX.into(),
                        },
                    ],
                },
            },
        }],
    }
}

/// The `POST /v1/subscriptions` body, with placeholder keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscribeBody {
    #[serde(rename = "apiKey")]
    pub api_key: String,
    #[serde(rename = "appKey")]
    pub app_key: String,
    pub bucket_name: String,
    pub bucket_region: String,
    pub iam_role_arn: String,
    pub iam_role_external_id: String,
}

/// The subscribe request: where it goes, its body and the `curl` line that sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscribeRequest {
    pub method: &'static str,
    pub url: String,
    pub body: SubscribeBody,
    pub curl: String,
}

/// The subscribe request for `customer` to the API at `api_url`.
#[must_use]
pub fn subscribe_request(customer: &Customer, role_arn: &str, api_url: &str) -> SubscribeRequest {
    let body = SubscribeBody {
        api_key: API_KEY_PLACEHOLDER.into(),
        app_key: APP_KEY_PLACEHOLDER.into(),
        bucket_name: customer.bucket.as_str().into(),
        bucket_region: customer.region.as_str().into(),
        iam_role_arn: role_arn.into(),
        iam_role_external_id: customer.external_id.as_str().into(),
    };
    let url = format!("{api_url}/v1/subscriptions");
    let json = serde_json::to_string(&body).unwrap_or_default();
    let curl = format!(
        "curl -sS -X POST {} -H 'Content-Type: application/json' -d {}",
        shell_quote(&url),
        shell_quote(&json)
    );
    SubscribeRequest {
        method: "POST",
        url,
        body,
        curl,
    }
}

/// The CloudFormation template's parameters for this customer (those left at their default,
/// `TrailPrefix` and `OrganizationId` when empty, are omitted).
#[must_use]
pub fn cloudformation_parameters(
    customer: &Customer,
    topic: &TopicArn,
    our_account: &str,
) -> BTreeMap<&'static str, String> {
    let mut parameters = BTreeMap::from([
        ("BucketName", customer.bucket.as_str().to_owned()),
        ("OurAccountId", our_account.to_owned()),
        ("ExternalId", customer.external_id.as_str().to_owned()),
        ("TopicArn", topic.arn.clone()),
        ("RoleName", ROLE_NAME.to_owned()),
    ]);
    if !customer.prefix.trail.is_empty() {
        parameters.insert("TrailPrefix", customer.prefix.trail.clone());
    }
    if let Some(org) = &customer.prefix.organization {
        parameters.insert("OrganizationId", org.clone());
    }
    parameters
}

/// How to deploy the template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudFormation {
    /// The template, relative to the repository.
    pub template: &'static str,
    pub stack_name: String,
    pub parameters: BTreeMap<&'static str, String>,
    /// `aws cloudformation deploy ...`, to run in the bucket's account and region.
    pub deploy_command: String,
}

fn cloudformation(customer: &Customer, topic: &TopicArn, our_account: &str) -> CloudFormation {
    let parameters = cloudformation_parameters(customer, topic, our_account);
    let stack_name = format!(
        "bigpanda-cloudtrail-{}",
        customer.bucket.as_str().replace('.', "-")
    );
    let overrides: Vec<String> = parameters
        .iter()
        .map(|(k, v)| shell_quote(&format!("{k}={v}")))
        .collect();
    let deploy_command = format!(
        "aws cloudformation deploy --region {} --stack-name {stack_name} --template-file {} \
         --capabilities CAPABILITY_NAMED_IAM --parameter-overrides {}",
        customer.region.as_str(),
        TEMPLATE_PATH.rsplit('/').next().unwrap_or(TEMPLATE_PATH),
        overrides.join(" ")
    );
    CloudFormation {
        template: TEMPLATE_PATH,
        stack_name,
        parameters,
        deploy_command,
    }
}

/// Everything `onboard` prints (the `--format json` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub bucket: String,
    pub bucket_region: String,
    /// The bucket owner's account, where the role and the notification are created.
    pub account: String,
    /// The normalized `--prefix`.
    pub prefix: String,
    pub our_account: String,
    pub our_account_source: AccountSource,
    pub external_id: String,
    pub external_id_generated: bool,
    pub role_name: &'static str,
    pub role_arn: String,
    pub trust_policy: PolicyDocument,
    pub permission_policy: PolicyDocument,
    /// Add to `permission_policy` only if the bucket's objects are encrypted with SSE-KMS
    /// (with the key's ARN).
    pub kms_decrypt_statement: Statement,
    pub notification_configuration: NotificationConfiguration,
    /// For our topic's access policy (our side, before the customer sets the notification).
    pub topic_policy_statement: Statement,
    pub cloudformation: CloudFormation,
    pub subscribe_request: SubscribeRequest,
    /// What a person should know besides the documents.
    pub notes: Vec<String>,
}

/// Builds the whole set-up. Pure.
#[must_use]
pub fn plan(
    customer: &Customer,
    topic: &TopicArn,
    our_account: &str,
    source: AccountSource,
    api_url: &str,
) -> Plan {
    let partition = topic.partition.as_str();
    let role_arn = role_arn(partition, &customer.account);
    Plan {
        bucket: customer.bucket.as_str().into(),
        bucket_region: customer.region.as_str().into(),
        account: customer.account.clone(),
        prefix: customer.prefix.full(),
        our_account: our_account.into(),
        our_account_source: source,
        external_id: customer.external_id.as_str().into(),
        external_id_generated: customer.external_id_generated,
        role_name: ROLE_NAME,
        trust_policy: trust_policy(partition, our_account, &customer.external_id),
        permission_policy: permission_policy(partition, &customer.bucket, &customer.prefix),
        kms_decrypt_statement: kms_decrypt_statement(
            partition,
            &customer.region,
            &customer.account,
        ),
        notification_configuration: notification_configuration(
            topic,
            &customer.prefix,
            &customer.account,
        ),
        topic_policy_statement: topic_policy_statement(topic, &customer.bucket, &customer.account),
        cloudformation: cloudformation(customer, topic, our_account),
        subscribe_request: subscribe_request(customer, &role_arn, api_url),
        notes: notes(customer, api_url),
        role_arn,
    }
}

fn notes(customer: &Customer, api_url: &str) -> Vec<String> {
    let bucket = customer.bucket.as_str();
    let mut notes = vec![
        "Our side first: add topic_policy_statement to our topic's access policy; S3 checks \
         that it may publish when the notification is saved."
            .to_owned(),
        format!(
            "put-bucket-notification-configuration replaces the bucket's whole notification \
             configuration: if `aws s3api get-bucket-notification-configuration --bucket \
             {bucket}` shows any, add our TopicConfiguration to them. The CloudFormation \
             template merges by itself."
        ),
        "SSE-KMS: if the bucket's objects are encrypted with a KMS key, add \
         kms_decrypt_statement (with the key's ARN) to the permission policy, and let the role \
         use the key in the key policy."
            .to_owned(),
        format!(
            "The subscribe URL is api.listen on this host ({api_url}): give customers the URL \
             they reach the API at."
        ),
    ];
    if customer.external_id_generated {
        notes.push(
            "The external ID was generated: the role's trust policy and the subscribe request \
             must carry the same one."
                .to_owned(),
        );
    }
    if let Some(org) = &customer.prefix.organization {
        notes.push(format!(
            "Organization trail {org}: the notification covers every member account's logs \
             under {}; S3 filters take one prefix, so digest files under it are notified too \
             and skipped by the daemon.",
            customer.prefix.full()
        ));
    }
    notes
}

// ---------------------------------------------------------------------------------------------
// Text

/// `text` as one shell word: bare when it holds only safe characters, else single-quoted.
#[must_use]
pub fn shell_quote(text: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b);
    if !text.is_empty() && text.bytes().all(safe) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A heredoc writing `value` as JSON to `file`.
fn heredoc<T: Serialize>(file: &str, value: &T) -> String {
    format!("cat > {file} <<'EOF'\n{}\nEOF\n", pretty(value))
}

fn section(title: &str) -> String {
    let rule = "-".repeat(90_usize.saturating_sub(title.len() + 7));
    format!("\n# --- {title} {rule}\n")
}

/// The set-up as a commented shell script: our side, the role (CloudFormation or by hand), the
/// notification, the subscribe request. Pure.
#[must_use]
pub fn render_text(plan: &Plan) -> String {
    let mut s = String::new();
    let notification_prefix = plan
        .notification_configuration
        .topic_configurations
        .first()
        .and_then(|c| c.filter.key.filter_rules.first())
        .map_or("", |r| r.value.as_str());
    let topic_arn = plan
        .topic_policy_statement
        .resource
        .as_deref()
        .unwrap_or_default();
    let source = match plan.our_account_source {
        AccountSource::Sts => "STS GetCallerIdentity",
        AccountSource::TopicArn => "from notifications.topic_arn: STS could not be reached",
    };
    let generated = if plan.external_id_generated {
        " (generated: the role and the subscribe request must carry this one)"
    } else {
        ""
    };
    let _ = write!(
        s,
        "# BigPanda CloudTrail changes: onboarding bucket {} (account {}, region {})\n\
         # our account:  {} ({source})\n\
         # external ID:  {}{generated}\n\
         # role:         {}\n\
         # notification: {} -> {topic_arn}, keys {notification_prefix}*{LOG_SUFFIX}\n",
        plan.bucket,
        plan.account,
        plan.bucket_region,
        plan.our_account,
        plan.external_id,
        plan.role_arn,
        NOTIFICATION_EVENT,
    );
    s += &our_side(plan, topic_arn);
    s += &role_steps(plan);
    s += &notification_step(plan);
    s += &subscribe_step(plan);
    s
}

fn our_side(plan: &Plan, topic_arn: &str) -> String {
    format!(
        "{}# Add this statement to the access policy of {topic_arn}\n\
         # (aws sns get-topic-attributes / set-topic-attributes --attribute-name Policy), before\n\
         # step 3: S3 checks that it may publish when the notification is saved.\n{}",
        section("1. Our side (operator, our account): let the bucket publish to our topic."),
        heredoc("topic-policy-statement.json", &plan.topic_policy_statement)
    )
}

fn role_steps(plan: &Plan) -> String {
    let cf = &plan.cloudformation;
    let kms = serde_json::to_string(&plan.kms_decrypt_statement).unwrap_or_default();
    format!(
        "{}# Either deploy the CloudFormation template ({}) in the bucket's\n\
         # account and region: it creates the role, its policy and the notification (merged with\n\
         # the bucket's existing ones); then go on with step 4:\n\
         {}\n\
         # or create them by hand (steps 2 and 3):\n\
         {}{}\
         aws iam create-role --role-name {} --assume-role-policy-document file://trust-policy.json\n\
         aws iam put-role-policy --role-name {} --policy-name {POLICY_NAME} --policy-document file://permission-policy.json\n\
         # SSE-KMS: if the bucket's objects are encrypted with a KMS key, the role also needs this\n\
         # statement (the key's ARN in place of the placeholder), and the key policy must let the\n\
         # role use the key:\n\
         #   {kms}\n",
        section(&format!("2. Customer: the IAM role {}.", plan.role_name)),
        cf.template,
        cf.deploy_command,
        heredoc("trust-policy.json", &plan.trust_policy),
        heredoc("permission-policy.json", &plan.permission_policy),
        plan.role_name,
        plan.role_name,
    )
}

fn notification_step(plan: &Plan) -> String {
    let bucket = shell_quote(&plan.bucket);
    format!(
        "{}# put-bucket-notification-configuration replaces the bucket's whole notification\n\
         # configuration: if `aws s3api get-bucket-notification-configuration --bucket {bucket}`\n\
         # shows any, add this TopicConfiguration to them instead.\n\
         {}aws s3api put-bucket-notification-configuration --bucket {bucket} --notification-configuration file://notification.json\n",
        section("3. Customer: the bucket notification."),
        heredoc("notification.json", &plan.notification_configuration),
    )
}

fn subscribe_step(plan: &Plan) -> String {
    let mut s = section("4. Customer: subscribe the bucket with their BigPanda API and app keys.");
    let _ = writeln!(
        s,
        "# The URL is api.listen on this host: give customers the URL they reach the API at."
    );
    for note in plan.notes.iter().filter(|n| n.starts_with("Organization")) {
        let _ = writeln!(s, "# {note}");
    }
    let _ = writeln!(s, "{}", plan.subscribe_request.curl);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn topic() -> TopicArn {
        TopicArn::parse("arn:aws:sns:us-east-1:123456789012:cloudtrail-changes").expect("topic")
    }

    fn customer(prefix: &str) -> Customer {
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

    fn to_value<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).expect("serializes")
    }

    #[test]
    fn generated_external_ids_are_valid_and_random() {
        let a = generate_external_id();
        let b = generate_external_id();
        assert_eq!(a.as_str().len(), EXTERNAL_ID_LEN);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(ExternalId::parse(a.as_str()).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn prefixes_are_normalized_and_split_at_the_organization() {
        let p = KeyPrefix::parse("").expect("empty");
        assert_eq!(
            (p.full(), p.notification_prefix("111122223333")),
            (String::new(), "AWSLogs/111122223333/CloudTrail/".into())
        );
        for given in ["team", "team/"] {
            let p = KeyPrefix::parse(given).expect("prefix");
            assert_eq!(p.full(), "team/");
            assert_eq!(
                p.notification_prefix("111122223333"),
                "team/AWSLogs/111122223333/CloudTrail/"
            );
        }
        let p = KeyPrefix::parse("a/b/AWSLogs/o-abc123defg").expect("org prefix");
        assert_eq!(p.trail, "a/b/");
        assert_eq!(p.organization.as_deref(), Some("o-abc123defg"));
        assert_eq!(p.full(), "a/b/AWSLogs/o-abc123defg/");
        assert_eq!(
            p.notification_prefix("111122223333"),
            "a/b/AWSLogs/o-abc123defg/"
        );
        let p = KeyPrefix::parse("AWSLogs/o-abc123defg/").expect("org without trail prefix");
        assert_eq!(
            (p.trail.as_str(), p.full()),
            ("", "AWSLogs/o-abc123defg/".into())
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in [
            "/team",
            "a//b",
            "a/../b",
            "./a",
            "te*m",
            "te?m",
            "te am",
            "${aws:username}",
            "AWSLogs/111122223333/",
            "AWSLogs",
            "AWSLogs/o-ABC/",
            "x/AWSLogs/o-abc/CloudTrail/",
        ] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(KeyPrefix::parse(&"a".repeat(MAX_PREFIX_LEN + 1)).is_err());
    }

    #[test]
    fn notified_keys_are_the_log_files_the_daemon_reads() {
        use crate::core::envelope::classify_key;
        let file = "us-east-1/2024/01/02/111122223333_CloudTrail_us-east-1_20240102T0000Z_x";
        for given in ["", "team", "a/b/AWSLogs/o-abc123defg"] {
            let p = KeyPrefix::parse(given).expect("prefix");
            let notified = p.notification_prefix("111122223333");
            let log = format!(
                "{}AWSLogs/111122223333/CloudTrail/{file}{LOG_SUFFIX}",
                p.trail
            );
            let log = match &p.organization {
                Some(org) => log.replace("AWSLogs/", &format!("AWSLogs/{org}/")),
                None => log,
            };
            assert_eq!(classify_key(&log), Ok(()), "{log}");
            assert!(
                log.starts_with(&notified) && log.starts_with(&p.full()),
                "{log}"
            );
            let digest = log.replace("/CloudTrail/", "/CloudTrail-Digest/");
            assert!(classify_key(&digest).is_err(), "{digest}");
            // One S3 filter prefix cannot leave out an organization's digest files.
            assert_eq!(
                digest.starts_with(&notified),
                p.organization.is_some(),
                "{digest}"
            );
        }
    }

    #[test]
    fn topic_arns_are_checked() {
        let t = topic();
        assert_eq!(
            (t.partition.as_str(), t.region.as_str(), t.account.as_str()),
            ("aws", "us-east-1", "123456789012")
        );
        let gov = TopicArn::parse("arn:aws-us-gov:sns:us-gov-west-1:123456789012:t").expect("gov");
        assert_eq!(gov.partition, "aws-us-gov");
        let empty = TopicArn::parse("").expect_err("empty");
        assert!(empty.contains("CTC__NOTIFICATIONS__TOPIC_ARN"), "{empty}");
        for bad in [
            "arn:aws:sqs:us-east-1:123456789012:q",
            "arn:aws:sns:us-east-1:12345:t",
            "arn:aws:sns:us-east-1:123456789012:t.fifo",
            "arn:aws:sns:us-east-1:123456789012",
            "arn:aws:sns:nowhere:123456789012:t",
        ] {
            assert!(TopicArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments_are_checked_and_named() {
        let args = |bucket: &str, account: &str, region: &str, prefix: &str, ext: Option<&str>| {
            OnboardArgs {
                bucket: bucket.into(),
                account: account.into(),
                prefix: prefix.into(),
                external_id: ext.map(str::to_owned),
                region: region.into(),
                format: "text".into(),
            }
        };
        let cases = [
            (
                args("Bad_Bucket", "111122223333", "us-east-1", "", None),
                "--bucket",
            ),
            (args("acme", "1111", "us-east-1", "", None), "--account"),
            (args("acme", "111122223333", "moon-1", "", None), "--region"),
            (
                args("acme", "111122223333", "us-east-1", "/x", None),
                "--prefix",
            ),
            (
                args("acme", "111122223333", "us-east-1", "", Some("a b")),
                "--external-id",
            ),
        ];
        for (args, name) in cases {
            let error = Customer::from_args(&args).expect_err(name).to_string();
            assert!(error.starts_with(name), "{error}");
        }
        let ok = Customer::from_args(&args("acme", "111122223333", "eu-west-1", "", None))
            .expect("valid");
        assert!(ok.external_id_generated);
    }

    #[test]
    fn the_bucket_must_be_in_the_topics_region() {
        let error = check_same_region(&topic(), &Region::parse("eu-west-1").expect("region"))
            .expect_err("mismatch")
            .to_string();
        assert!(
            error.contains("--region") && error.contains("us-east-1"),
            "{error}"
        );
        assert!(check_same_region(&topic(), &Region::parse("us-east-1").expect("r")).is_ok());
    }

    #[test]
    fn trust_policy_names_our_root_and_the_external_id() {
        let id = ExternalId::parse("abc123").expect("id");
        assert_eq!(
            to_value(&trust_policy("aws", "123456789012", &id)),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "AllowBigPandaAssumeRole",
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": "abc123"}}
                }]
            })
        );
    }

    #[test]
    fn permission_policy_is_one_get_object_on_the_prefix() {
        let c = customer("team");
        assert_eq!(
            to_value(&permission_policy("aws", &c.bucket, &c.prefix)),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "AllowBigPandaGetObject",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::acme-trail/team/*"
                }]
            })
        );
        let c = customer("");
        let p = to_value(&permission_policy("aws-cn", &c.bucket, &c.prefix));
        assert_eq!(
            p["Statement"][0]["Resource"],
            "arn:aws-cn:s3:::acme-trail/*"
        );
    }

    #[test]
    fn notification_is_log_files_only_to_our_topic() {
        let c = customer("team/");
        assert_eq!(
            to_value(&notification_configuration(&topic(), &c.prefix, &c.account)),
            json!({"TopicConfigurations": [{
                "Id": NOTIFICATION_ID,
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:cloudtrail-changes",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [
                    {"Name": "prefix", "Value": "team/AWSLogs/111122223333/CloudTrail/"},
                    {"Name": "suffix", "Value": ".json.gz"}
                ]}}
            }]})
        );
    }

    #[test]
    fn topic_statement_allows_s3_from_the_customers_bucket_only() {
        let c = customer("");
        assert_eq!(
            to_value(&topic_policy_statement(&topic(), &c.bucket, &c.account)),
            json!({
                "Sid": "AllowS3Publish111122223333acmetrail",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "SNS:Publish",
                "Resource": "arn:aws:sns:us-east-1:123456789012:cloudtrail-changes",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": "111122223333"},
                    "ArnLike": {"aws:SourceArn": "arn:aws:s3:::acme-trail"}
                }
            })
        );
    }

    #[test]
    fn subscribe_request_is_a_valid_body_once_keys_are_filled_in() {
        let c = customer("");
        let request = subscribe_request(&c, &role_arn("aws", &c.account), "http://127.0.0.1:8080");
        assert_eq!(request.url, "http://127.0.0.1:8080/v1/subscriptions");
        let mut body = to_value(&request.body);
        body["apiKey"] = json!("api-key");
        body["appKey"] = json!("app-key");
        let parsed = crate::subscriptions::validate::subscribe_request(&body).expect("valid");
        assert_eq!(
            parsed.iam_role_arn.as_str(),
            "arn:aws:iam::111122223333:role/BigPandaCloudTrailReader"
        );
        assert_eq!(
            request.curl,
            "curl -sS -X POST http://127.0.0.1:8080/v1/subscriptions -H 'Content-Type: \
             application/json' -d '{\"apiKey\":\"<BigPanda API key>\",\"appKey\":\"<BigPanda app \
             key>\",\"bucket_name\":\"acme-trail\",\"bucket_region\":\"us-east-1\",\
             \"iam_role_arn\":\"arn:aws:iam::111122223333:role/BigPandaCloudTrailReader\",\
             \"iam_role_external_id\":\"ext-id.1\"}'"
        );
    }

    #[test]
    fn cloudformation_parameters_omit_defaults() {
        let p = cloudformation_parameters(&customer(""), &topic(), "123456789012");
        assert_eq!(
            p.keys().copied().collect::<Vec<_>>(),
            [
                "BucketName",
                "ExternalId",
                "OurAccountId",
                "RoleName",
                "TopicArn"
            ]
        );
        let p = cloudformation_parameters(&customer("x/AWSLogs/o-abc123defg"), &topic(), "1");
        assert_eq!(p.get("TrailPrefix").map(String::as_str), Some("x/"));
        assert_eq!(
            p.get("OrganizationId").map(String::as_str),
            Some("o-abc123defg")
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("abc-1.2:/=@,+"), "abc-1.2:/=@,+");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn text_holds_every_document_and_command() {
        let c = customer("team");
        let plan = plan(
            &c,
            &topic(),
            "123456789012",
            AccountSource::Sts,
            "http://h:1",
        );
        let text = render_text(&plan);
        for needle in [
            "cat > trust-policy.json <<'EOF'",
            "cat > permission-policy.json <<'EOF'",
            "cat > notification.json <<'EOF'",
            "cat > topic-policy-statement.json <<'EOF'",
            "aws iam create-role --role-name BigPandaCloudTrailReader",
            "aws s3api put-bucket-notification-configuration --bucket acme-trail",
            "aws cloudformation deploy --region us-east-1",
            "TrailPrefix=team/",
            "#   {\"Sid\":\"AllowBigPandaDecrypt\"",
            &plan.subscribe_request.curl,
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        // Every heredoc holds the JSON printed in json mode.
        assert!(text.contains(&pretty(&plan.trust_policy)));
    }
}
