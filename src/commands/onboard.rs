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
use crate::util::errors::error_chain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

mod arguments;
#[cfg(test)]
mod fixtures;
mod plan;
mod policies;
mod render;

pub use arguments::*;
pub use plan::*;
pub use policies::*;
pub use render::*;

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
