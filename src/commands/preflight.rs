//! Preflight checks: `cloudtrail-changes check`, and the cheap part at daemon start.
//!
//! Each check prints one line: `ok   <what>: <detail>`, `warn <what>: <why>. Fix: <how>` or
//! `FAIL <what>: <why>. Fix: <how>`; warnings do not fail the run. Checks that cannot run
//! because an earlier one failed print `skip <what>: <why>` and are not counted. The last line
//! is `N checks, F failed, W warnings`.
//!
//! What is checked, in order: the queue URL and the region; the daemon's AWS credentials
//! (STS `GetCallerIdentity`: the daemon needs STS to assume customer roles); the queue exists
//! and is reachable; its RedrivePolicy and `maxReceiveCount`; the dead-letter queue is
//! reachable and keeps messages longer than the queue; the visibility timeout suits the
//! heartbeat; long polling; the subscription store and its keys; the BigPanda settings; with
//! `--subscriptions`, every subscription's role with its external ID. API and app keys are
//! never printed.

use crate::aws::credentials::{self, CredentialsError, Roles};
use crate::aws::queue::{parse_queue_arn, parse_redrive_policy};
use crate::forward::SinkMode;
use crate::settings::Settings;
use crate::subscriptions::{StoreError, StoreSpec, Subscription, Subscriptions};
mod schedule;
use crate::worker::fate::retry_delay;
use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

/// Below this visibility timeout (seconds) the daemon refuses the queue.
pub const MIN_VISIBILITY_TIMEOUT: u32 = 10;
/// Below this visibility timeout (seconds) `check` warns.
pub const RECOMMENDED_MIN_VISIBILITY_TIMEOUT: u32 = 30;
/// Above this visibility timeout (seconds) `check` warns: a crashed daemon's messages wait
/// that long before anyone else gets them.
pub const MAX_SENSIBLE_VISIBILITY_TIMEOUT: u32 = 3600;
/// The `maxReceiveCount` below which `check` warns (1 fails).
pub const RECOMMENDED_MIN_RECEIVE_COUNT: u32 = 3;
/// SQS's longest message retention: what a dead-letter queue should keep.
const MAX_RETENTION_SECONDS: u64 = 1_209_600;
/// SQS's default message retention (4 days), when the attribute is missing.
const DEFAULT_RETENTION_SECONDS: u64 = 345_600;

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but something is likely to hurt later; does not fail the run.
    Warn,
    Fail,
    /// Not run because an earlier check failed; not counted.
    Skip,
}

impl Status {
    /// The line's first column, padded to one width.
    #[must_use]
    pub fn tag(self) -> &'static str {
        match self {
            Self::Ok => "ok  ",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One printed line: what was checked, what was found and, for a problem, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub status: Status,
    pub what: String,
    pub detail: String,
    /// How to fix it; empty for `ok` and `skip`.
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.tag(), self.what)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if !self.fix.is_empty() {
            write!(f, ". Fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// What a run of the checks found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub checks: usize,
    pub failed: usize,
    pub warnings: usize,
}

impl Summary {
    /// No check failed (warnings allowed).
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failed == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} checks, {} failed, {} warnings",
            self.checks, self.failed, self.warnings
        )
    }
}

/// What kind of problem a failed check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A setting is missing or wrong.
    Settings,
    /// The queue (or another AWS resource) does not exist.
    NotFound,
    /// AWS does not accept the daemon's credentials (invalid, expired, missing).
    Credentials,
    /// The credentials are fine but not allowed to do this.
    AccessDenied,
    /// The endpoint could not be reached (network, DNS, closed port, timeout).
    Unreachable,
    /// Anything else AWS answered.
    Other,
}

/// Why the daemon should not start: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}. Fix: {fix}")]
pub struct PreflightError {
    pub problem: Problem,
    /// What was checked (`sqs.queue_url`, `queue https://...`).
    pub what: String,
    /// What is wrong.
    pub why: String,
    /// How to fix it.
    pub fix: String,
}

impl PreflightError {
    fn new(
        problem: Problem,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            problem,
            what: what.into(),
            why: why.into(),
            fix: fix.into(),
        }
    }

    /// Whether retrying later may help (the endpoint was unreachable, or AWS failed).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self.problem, Problem::Unreachable | Problem::Other)
    }

    fn finding(&self) -> Finding {
        Finding {
            status: Status::Fail,
            what: self.what.clone(),
            detail: self.why.clone(),
            fix: self.fix.clone(),
        }
    }
}

/// Runs every check, printing one line per check with how to fix a failure; `true` when all
/// passed.
///
/// # Errors
/// Only when `out` cannot be written.
pub async fn check(
    settings: &Settings,
    subscriptions: bool,
    out: &mut dyn Write,
) -> io::Result<bool> {
    let aws = credentials::sdk_config(&settings.aws).await;
    Ok(check_with(settings, &aws, subscriptions, out)
        .await?
        .passed())
}

/// [`check`] with the AWS configuration given (the store, SQS and STS use it); returns the
/// counts it printed last.
///
/// # Errors
/// Only when `out` cannot be written.
pub async fn check_with(
    settings: &Settings,
    aws: &SdkConfig,
    subscriptions: bool,
    out: &mut dyn Write,
) -> io::Result<Summary> {
    let aws = bounded(aws);
    let mut report = Report::new(out);
    let queue_ok = settings_checks(settings, &aws, &mut report)?;
    let identity = identity_check(&aws, &mut report).await?;
    if queue_ok {
        queue_checks(settings, &aws, identity.as_deref(), &mut report).await?;
    } else {
        report.skip(
            "queue checks",
            "the queue settings above must be fixed first",
        )?;
    }
    let subs = store_checks(settings, &aws, &mut report).await?;
    bigpanda_checks(settings, &mut report)?;
    if subscriptions {
        match subs {
            Some(subs) => role_checks(&aws, &subs, identity.as_deref(), &mut report).await?,
            None => report.skip(
                "subscription roles",
                "the subscription store must be fixed first",
            )?,
        }
    }
    report.finish()
}

/// The cheap part of [`check`] for the daemon's start: `sqs.queue_url` is set, the region
/// fits it, and the queue exists and is reachable with these credentials.
///
/// # Errors
/// [`PreflightError`] saying what is wrong and how to fix it.
pub async fn startup(settings: &Settings, aws: &SdkConfig) -> Result<(), PreflightError> {
    let aws = bounded(aws);
    queue_settings(settings, &aws)?;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    queue_attributes(&sqs, &settings.sqs.queue_url, None)
        .await
        .map(|_| ())
        .map_err(|e| e.into_error(&settings.sqs.queue_url, &aws))
}

/// Writes findings as they come and counts them.
struct Report<'a> {
    out: &'a mut dyn Write,
    summary: Summary,
}

impl<'a> Report<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            summary: Summary::default(),
        }
    }

    fn add(&mut self, finding: &Finding) -> io::Result<()> {
        match finding.status {
            Status::Ok => self.summary.checks += 1,
            Status::Warn => {
                self.summary.checks += 1;
                self.summary.warnings += 1;
            }
            Status::Fail => {
                self.summary.checks += 1;
                self.summary.failed += 1;
            }
            Status::Skip => {}
        }
        writeln!(self.out, "{finding}")
    }

    fn line(
        &mut self,
        status: Status,
        what: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> io::Result<()> {
        self.add(&Finding {
            status,
            what: what.into(),
            detail: detail.into(),
            fix: fix.into(),
        })
    }

    fn ok(&mut self, what: impl Into<String>, detail: impl Into<String>) -> io::Result<()> {
        self.line(Status::Ok, what, detail, "")
    }

    fn warn(
        &mut self,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> io::Result<()> {
        self.line(Status::Warn, what, why, fix)
    }

    fn fail(
        &mut self,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> io::Result<()> {
        self.line(Status::Fail, what, why, fix)
    }

    fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) -> io::Result<()> {
        self.line(Status::Skip, what, why, "")
    }

    fn finish(self) -> io::Result<Summary> {
        writeln!(self.out, "{}", self.summary)?;
        Ok(self.summary)
    }
}

/// The configuration with time limits, so a black-holed endpoint fails the check in seconds
/// instead of hanging it.
fn bounded(aws: &SdkConfig) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build();
    aws.to_builder().timeout_config(timeouts).build()
}

// ---------------------------------------------------------------------------------------------
// Settings

/// Checks `sqs.queue_url` and the region; `true` when the queue checks can run.
fn settings_checks(
    settings: &Settings,
    aws: &SdkConfig,
    report: &mut Report<'_>,
) -> io::Result<bool> {
    match queue_settings(settings, aws) {
        Ok(region) => {
            report.ok("sqs.queue_url", settings.sqs.queue_url.clone())?;
            let endpoint = aws
                .endpoint_url()
                .map_or_else(String::new, |e| format!(", endpoint {e}"));
            report.ok("AWS region", format!("{region}{endpoint}"))?;
            Ok(true)
        }
        Err(e) => {
            report.add(&e.finding())?;
            Ok(false)
        }
    }
}

/// The queue URL is set, the region is known and (on AWS itself) is the queue's region.
/// Returns the region.
fn queue_settings(settings: &Settings, aws: &SdkConfig) -> Result<String, PreflightError> {
    let url = settings.sqs.queue_url.as_str();
    if url.is_empty() {
        return Err(PreflightError::new(
            Problem::Settings,
            "sqs.queue_url",
            "not set: the daemon does not know which queue the bucket notifications arrive on",
            "set sqs.queue_url in the config file, or the environment variable \
             CTC__SQS__QUEUE_URL, to the queue's URL \
             (`aws sqs get-queue-url --queue-name NAME` prints it)",
        ));
    }
    let Some(region) = aws.region().map(ToString::to_string) else {
        return Err(PreflightError::new(
            Problem::Settings,
            "AWS region",
            "not set: the SQS, STS and DynamoDB clients do not know where to go",
            format!(
                "set aws.region (CTC__AWS__REGION) or AWS_REGION to the queue's region{}",
                queue_region(url).map_or_else(String::new, |r| format!(" ({r})"))
            ),
        ));
    };
    if aws.endpoint_url().is_none() {
        if let Some(queue_region) = queue_region(url) {
            if queue_region != region {
                return Err(PreflightError::new(
                    Problem::Settings,
                    "AWS region",
                    format!(
                        "the queue is in {queue_region} but the daemon's AWS clients use {region}"
                    ),
                    format!("set aws.region (CTC__AWS__REGION) to {queue_region}"),
                ));
            }
        }
    }
    Ok(region)
}

/// The region in an AWS queue URL (`https://sqs.REGION.amazonaws.com/...` or the legacy
/// `https://REGION.queue.amazonaws.com/...`); `None` for other hosts.
#[must_use]
pub fn queue_region(url: &str) -> Option<String> {
    let host = reqwest::Url::parse(url).ok()?.host_str()?.to_owned();
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        ["sqs", region, "amazonaws", ..] | [region, "queue", "amazonaws", ..] => {
            Some((*region).to_owned())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// AWS errors

/// An AWS call's failure, sorted by what fixes it.
#[derive(Debug, Clone)]
struct AwsFailure {
    problem: Problem,
    /// AWS's error code, when it sent a readable one.
    code: Option<String>,
    /// The code and message, or the transport error.
    detail: String,
}

/// Error codes that mean a queue does not exist.
const NOT_FOUND_CODES: [&str; 4] = [
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NonExistentQueue",
    "ResourceNotFoundException",
];
/// Error codes that mean the credentials themselves are not accepted.
const CREDENTIALS_CODES: [&str; 8] = [
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSecurityToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];
/// Error codes that mean "not allowed".
const DENIED_CODES: [&str; 3] = ["AccessDenied", "AccessDeniedException", "KMS.AccessDenied"];

fn aws_failure<E>(error: &SdkError<E, HttpResponse>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let chain = error_chain(error);
    let failure = |problem, code: Option<&str>, detail: String| AwsFailure {
        problem,
        code: code.map(str::to_owned),
        detail,
    };
    match error {
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if chain.contains("no credentials") || chain.contains("credential provider") =>
        {
            failure(
                Problem::Credentials,
                None,
                "none found (the SDK tried the environment, the profile, web identity, ECS and \
                 instance metadata)"
                    .into(),
            )
        }
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => {
            failure(Problem::Unreachable, None, chain)
        }
        SdkError::TimeoutError(_) => failure(Problem::Unreachable, None, chain),
        SdkError::ServiceError(s) => {
            let service = s.err();
            let code = service.code();
            let status = s.raw().status().as_u16();
            let detail = match (code, service.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                (None, Some(m)) => format!("HTTP {status}: {m}"),
                (None, None) => format!("HTTP {status}"),
            };
            let problem = match code {
                Some(c) if NOT_FOUND_CODES.contains(&c) => Problem::NotFound,
                Some(c) if CREDENTIALS_CODES.contains(&c) => Problem::Credentials,
                Some(c) if DENIED_CODES.contains(&c) => Problem::AccessDenied,
                // moto's (and some proxies') auth errors carry a code the SDK cannot parse.
                None if matches!(status, 401 | 403) => Problem::AccessDenied,
                _ => Problem::Other,
            };
            failure(problem, code, detail)
        }
        _ => failure(Problem::Other, None, chain),
    }
}

/// An error and its sources, `: `-separated, on one line (no `Debug` dump).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// Where the daemon's AWS calls go, for messages.
fn endpoint_of(aws: &SdkConfig, service: &str) -> String {
    match (aws.endpoint_url(), aws.region()) {
        (Some(e), _) => e.to_owned(),
        (None, Some(r)) => format!("{service}.{r}.amazonaws.com"),
        (None, None) => format!("{service} (no region)"),
    }
}

const NETWORK_FIX: &str = "check aws.endpoint_url (CTC__AWS__ENDPOINT_URL; empty for AWS \
                           itself), DNS, proxies (HTTPS_PROXY) and the firewall or security \
                           groups between the daemon and AWS";
const CREDENTIALS_FIX: &str = "give the daemon valid AWS credentials: AWS_ACCESS_KEY_ID and \
                               AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web identity token, or an \
                               instance or task role";

// ---------------------------------------------------------------------------------------------
// Identity

/// STS `GetCallerIdentity`: the credentials work and STS (needed to assume customer roles) is
/// reachable. Returns the identity's ARN.
async fn identity_check(aws: &SdkConfig, report: &mut Report<'_>) -> io::Result<Option<String>> {
    let what = "AWS credentials";
    if aws.region().is_none() {
        report.skip(what, "no region")?;
        return Ok(None);
    }
    let sts = aws_sdk_sts::Client::new(aws);
    match sts.get_caller_identity().send().await {
        Ok(identity) => {
            let arn = identity.arn().unwrap_or("unknown").to_owned();
            report.ok(what, format!("{arn} (STS GetCallerIdentity)"))?;
            Ok(Some(arn))
        }
        Err(e) => {
            let f = aws_failure(&e);
            let (why, fix) = match f.problem {
                Problem::Unreachable => (
                    format!(
                        "cannot reach STS at {} ({}); the daemon assumes customer roles through it",
                        endpoint_of(aws, "sts"),
                        f.detail
                    ),
                    NETWORK_FIX.to_owned(),
                ),
                Problem::Credentials | Problem::AccessDenied => (
                    format!("not usable: {}", f.detail),
                    CREDENTIALS_FIX.to_owned(),
                ),
                _ => (
                    format!("STS GetCallerIdentity failed ({})", f.detail),
                    "retry; if it persists, check the AWS settings and credentials".to_owned(),
                ),
            };
            report.fail(what, why, fix)?;
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The queue and its dead-letter queue

type Attributes = HashMap<QueueAttributeName, String>;

/// A failed `GetQueueAttributes`, to be worded for the queue it was about.
struct QueueFailure {
    failure: AwsFailure,
    identity: Option<String>,
}

impl QueueFailure {
    /// The error for the source queue at `url`.
    fn into_error(self, url: &str, aws: &SdkConfig) -> PreflightError {
        self.into_error_for("queue", url, aws, "")
    }

    /// The error for `kind` (`queue`, `dead-letter queue`) at `url`; `not_found_fix` replaces
    /// the advice for a queue that does not exist.
    fn into_error_for(
        self,
        kind: &str,
        url: &str,
        aws: &SdkConfig,
        not_found_fix: &str,
    ) -> PreflightError {
        let f = self.failure;
        let who = self
            .identity
            .unwrap_or_else(|| "the daemon's identity".to_owned());
        let what = format!("{kind} {url}");
        let region = aws.region().map_or("?".to_owned(), ToString::to_string);
        let (why, fix) = match f.problem {
            Problem::NotFound => (
                format!(
                    "it does not exist ({})",
                    f.code.as_deref().unwrap_or(&f.detail)
                ),
                if not_found_fix.is_empty() {
                    format!(
                        "create the queue, or set sqs.queue_url (CTC__SQS__QUEUE_URL) to an \
                         existing queue's URL (`aws sqs list-queues --region {region}` lists them)"
                    )
                } else {
                    not_found_fix.to_owned()
                },
            ),
            Problem::Credentials => (
                format!("the daemon's AWS credentials are not usable: {}", f.detail),
                CREDENTIALS_FIX.to_owned(),
            ),
            Problem::AccessDenied => (
                format!("access denied ({})", f.detail),
                format!(
                    "allow {who} sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:DeleteMessage \
                     and sqs:ChangeMessageVisibility on the queue and sqs:SendMessage on its \
                     dead-letter queue (in its IAM policy, and in the queue policy when the \
                     queue is in another account)"
                ),
            ),
            Problem::Unreachable => (
                format!(
                    "cannot reach SQS at {} ({})",
                    endpoint_of(aws, "sqs"),
                    f.detail
                ),
                NETWORK_FIX.to_owned(),
            ),
            Problem::Settings | Problem::Other => (
                format!("GetQueueAttributes failed ({})", f.detail),
                "retry; if it persists, check sqs.queue_url and the AWS settings".to_owned(),
            ),
        };
        PreflightError::new(f.problem, what, why, fix)
    }
}

async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    identity: Option<&str>,
) -> Result<Attributes, QueueFailure> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map(|out| out.attributes().cloned().unwrap_or_default())
        .map_err(|e| QueueFailure {
            failure: aws_failure(&e),
            identity: identity.map(str::to_owned),
        })
}

fn number(attrs: &Attributes, name: &QueueAttributeName) -> Option<u64> {
    attrs.get(name).and_then(|v| v.parse().ok())
}

async fn queue_checks(
    settings: &Settings,
    aws: &SdkConfig,
    identity: Option<&str>,
    report: &mut Report<'_>,
) -> io::Result<()> {
    let url = settings.sqs.queue_url.as_str();
    let sqs = aws_sdk_sqs::Client::new(aws);
    let attrs = match queue_attributes(&sqs, url, identity).await {
        Ok(attrs) => attrs,
        Err(e) => {
            report.add(&e.into_error(url, aws).finding())?;
            return report.skip(
                "dead-letter queue, visibility timeout and long polling checks",
                "the queue cannot be read",
            );
        }
    };
    let waiting = number(&attrs, &QueueAttributeName::ApproximateNumberOfMessages).unwrap_or(0);
    let in_flight = number(
        &attrs,
        &QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    )
    .unwrap_or(0);
    report.ok(
        format!("queue {url}"),
        format!(
            "reachable ({} waiting, {in_flight} in flight)",
            plural(waiting, "message")
        ),
    )?;
    let retention = number(&attrs, &QueueAttributeName::MessageRetentionPeriod)
        .unwrap_or(DEFAULT_RETENTION_SECONDS);
    let redrive = redrive_checks(settings, &attrs, retention, report)?;
    dlq_checks(
        settings,
        aws,
        &sqs,
        identity,
        redrive.as_ref(),
        retention,
        report,
    )
    .await?;
    let visibility = number(&attrs, &QueueAttributeName::VisibilityTimeout).unwrap_or(30);
    let visibility = u32::try_from(visibility).unwrap_or(u32::MAX);
    report.add(&visibility_finding(visibility))?;
    let queue_wait = number(&attrs, &QueueAttributeName::ReceiveMessageWaitTimeSeconds);
    report.add(&long_polling_finding(
        settings.sqs.wait_time_seconds,
        queue_wait,
    ))
}

/// The RedrivePolicy and `maxReceiveCount`; returns the policy's (target ARN, count).
fn redrive_checks(
    settings: &Settings,
    attrs: &Attributes,
    retention: u64,
    report: &mut Report<'_>,
) -> io::Result<Option<(String, u32)>> {
    let what = "redrive policy";
    let queue_arn = attrs
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .unwrap_or_else(|| "arn:aws:sqs:REGION:ACCOUNT:QUEUE".to_owned());
    let example = format!(r#"{{"deadLetterTargetArn":"{queue_arn}-dlq","maxReceiveCount":5}}"#);
    let Some(text) = attrs.get(&QueueAttributeName::RedrivePolicy) else {
        if settings.sqs.dlq_url.is_empty() {
            report.fail(
                what,
                "the queue has no RedrivePolicy and sqs.dlq_url is not set: a message that \
                 keeps failing is retried until it expires, and then lost",
                format!(
                    "create a dead-letter queue that keeps messages 14 days and set the queue's \
                     RedrivePolicy to {example} (or set sqs.dlq_url, CTC__SQS__DLQ_URL)"
                ),
            )?;
        } else {
            report.warn(
                what,
                "the queue has no RedrivePolicy: the daemon moves failed messages to sqs.dlq_url \
                 itself, but a message it never finishes (it crashes or is killed on it) is \
                 received again and again until it expires",
                "set the queue's RedrivePolicy to {\"deadLetterTargetArn\":\"<the ARN of \
                 sqs.dlq_url>\",\"maxReceiveCount\":5}",
            )?;
        }
        return Ok(None);
    };
    let Some((target, count)) = parse_redrive_policy(text) else {
        report.fail(
            what,
            format!("the RedrivePolicy {text} has no deadLetterTargetArn and maxReceiveCount"),
            format!("set the queue's RedrivePolicy to {example}"),
        )?;
        return Ok(None);
    };
    report.ok(
        what,
        format!("to {target} after {}", plural(u64::from(count), "receive")),
    )?;
    report.add(&receive_count_finding(
        count,
        &settings.worker.retry_backoff_seconds,
        retention,
    ))?;
    report.add(&schedule::schedule_finding(
        count,
        &settings.worker.retry_backoff_seconds,
        settings.worker.change_retry_seconds,
    ))?;
    Ok(Some((target, count)))
}

/// Seconds a message that always fails transiently spends in the queue before its last
/// receive: the daemon's backoff after each of the first `count - 1` receives.
#[must_use]
pub fn retry_window_seconds(count: u32, backoff_seconds: &[u32]) -> u64 {
    (1..count)
        .map(|n| u64::from(retry_delay(n, backoff_seconds, 0.5)))
        .sum()
}

/// Whether `maxReceiveCount` leaves room for retries, and the retries fit in the retention.
#[must_use]
pub fn receive_count_finding(count: u32, backoff_seconds: &[u32], retention: u64) -> Finding {
    let what = "maxReceiveCount".to_owned();
    let fix = "set maxReceiveCount in the queue's RedrivePolicy to 5 (3 at least)".to_owned();
    let window = retry_window_seconds(count, backoff_seconds);
    if count <= 1 {
        return Finding {
            status: Status::Fail,
            what,
            detail: "1: a single failed attempt (a BigPanda 5xx, a throttled S3 read, a \
                     restart) sends the message to the dead-letter queue"
                .into(),
            fix,
        };
    }
    if count < RECOMMENDED_MIN_RECEIVE_COUNT {
        return Finding {
            status: Status::Warn,
            what,
            detail: format!(
                "{count}: a message gets only {} retry before the dead-letter queue, and a \
                 message deferred while its subscription is busy uses up receives too",
                count - 1
            ),
            fix,
        };
    }
    if window >= retention {
        return Finding {
            status: Status::Fail,
            what,
            detail: format!(
                "{count}: the daemon's retries (worker.retry_backoff_seconds) take about {} but \
                 the queue keeps messages {}: a message that keeps failing expires, and is lost, \
                 before it reaches the dead-letter queue",
                human(window),
                human(retention)
            ),
            fix: "lower maxReceiveCount, shorten worker.retry_backoff_seconds, or raise the \
                  queue's MessageRetentionPeriod (1209600 s = 14 days at most)"
                .into(),
        };
    }
    Finding {
        status: Status::Ok,
        what,
        detail: format!(
            "{count}: a failing message is retried {} times over about {} before the \
             dead-letter queue",
            count - 1,
            human(window)
        ),
        fix: String::new(),
    }
}

/// Finds the DLQ (`sqs.dlq_url`, else the RedrivePolicy's target) and checks it.
async fn dlq_checks(
    settings: &Settings,
    aws: &SdkConfig,
    sqs: &aws_sdk_sqs::Client,
    identity: Option<&str>,
    redrive: Option<&(String, u32)>,
    retention: u64,
    report: &mut Report<'_>,
) -> io::Result<()> {
    let from_settings = !settings.sqs.dlq_url.is_empty();
    let url = if from_settings {
        settings.sqs.dlq_url.clone()
    } else if let Some((arn, _)) = redrive {
        match url_of_arn(sqs, arn).await {
            Ok(url) => url,
            Err(f) => {
                let e = QueueFailure {
                    failure: f,
                    identity: identity.map(str::to_owned),
                }
                .into_error_for(
                    "dead-letter queue",
                    arn,
                    aws,
                    "create it, or point the queue's RedrivePolicy at an existing queue",
                );
                return report.add(&e.finding());
            }
        }
    } else {
        return Ok(());
    };
    let attrs = match queue_attributes(sqs, &url, identity).await {
        Ok(attrs) => attrs,
        Err(e) => {
            let fix = if from_settings {
                "create it, or set sqs.dlq_url (CTC__SQS__DLQ_URL) to an existing queue's URL"
            } else {
                "create it, or point the queue's RedrivePolicy at an existing queue"
            };
            let e = e.into_error_for("dead-letter queue", &url, aws, fix);
            return report.add(&e.finding());
        }
    };
    let what = format!("dead-letter queue {url}");
    if let (true, Some((target, _)), Some(arn)) = (
        from_settings,
        redrive,
        attrs.get(&QueueAttributeName::QueueArn),
    ) {
        if arn != target {
            report.warn(
                what.clone(),
                format!(
                    "sqs.dlq_url is {arn} but the RedrivePolicy sends to {target}: failed \
                     messages end up in two queues"
                ),
                "set sqs.dlq_url to the RedrivePolicy's target, or empty it (CTC__SQS__DLQ_URL=) \
                 to use the target",
            )?;
        }
    }
    let dlq_retention = number(&attrs, &QueueAttributeName::MessageRetentionPeriod)
        .unwrap_or(DEFAULT_RETENTION_SECONDS);
    let dead = number(&attrs, &QueueAttributeName::ApproximateNumberOfMessages).unwrap_or(0);
    let waiting = if dead == 0 {
        String::new()
    } else {
        format!(
            "; {} in it (`cloudtrail-changes dlq peek` shows them)",
            plural(dead, "message")
        )
    };
    // SQS's own redrive keeps a message's first enqueue time; the daemon's own move sends a
    // new message. Only the first makes the DLQ's retention matter.
    let mut finding = if redrive.is_some() {
        retention_finding(dlq_retention, retention)
    } else {
        Finding {
            status: Status::Ok,
            what: String::new(),
            detail: format!("reachable, keeps messages {}", human(dlq_retention)),
            fix: String::new(),
        }
    };
    finding.what = what;
    if finding.status == Status::Ok {
        finding.detail.push_str(&waiting);
    }
    report.add(&finding)
}

/// The DLQ must keep messages longer than the queue: SQS keeps a message's original enqueue
/// time when it moves it to the DLQ, so it expires there by the queue's clock.
#[must_use]
pub fn retention_finding(dlq_retention: u64, queue_retention: u64) -> Finding {
    let fix = format!(
        "set the dead-letter queue's MessageRetentionPeriod to {MAX_RETENTION_SECONDS} (14 days, \
         the maximum)"
    );
    let (status, detail, fix) = if dlq_retention < queue_retention {
        (
            Status::Fail,
            format!(
                "keeps messages {} but the queue keeps them {}: SQS keeps a message's original \
                 enqueue time when it moves it, so a message that reaches the dead-letter queue \
                 late expires there before anyone can look at it, or at once",
                human(dlq_retention),
                human(queue_retention)
            ),
            fix,
        )
    } else if dlq_retention == queue_retention && dlq_retention < MAX_RETENTION_SECONDS {
        (
            Status::Warn,
            format!(
                "keeps messages {}, no longer than the queue: SQS keeps a message's original \
                 enqueue time when it moves it, so a message has only what is left of that time \
                 in the dead-letter queue",
                human(dlq_retention)
            ),
            fix,
        )
    } else {
        (
            Status::Ok,
            format!(
                "reachable, keeps messages {} (the queue {})",
                human(dlq_retention),
                human(queue_retention)
            ),
            String::new(),
        )
    };
    Finding {
        status,
        what: "dead-letter queue".into(),
        detail,
        fix,
    }
}

async fn url_of_arn(sqs: &aws_sdk_sqs::Client, arn: &str) -> Result<String, AwsFailure> {
    let Some((account, name)) = parse_queue_arn(arn) else {
        return Err(AwsFailure {
            problem: Problem::NotFound,
            code: None,
            detail: "the RedrivePolicy's deadLetterTargetArn is not an SQS queue ARN".into(),
        });
    };
    let out = sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| aws_failure(&e))?;
    out.queue_url().map(str::to_owned).ok_or(AwsFailure {
        problem: Problem::Other,
        code: None,
        detail: "GetQueueUrl answered without a URL".into(),
    })
}

/// The queue's visibility timeout against the heartbeat, which extends it at half of it.
#[must_use]
pub fn visibility_finding(seconds: u32) -> Finding {
    let what = "visibility timeout".to_owned();
    let heartbeat = seconds.max(2) / 2;
    let fix = "set the queue's VisibilityTimeout to 60 (30 at least; the heartbeat keeps long \
               messages invisible, so more is not needed)"
        .to_owned();
    if seconds < MIN_VISIBILITY_TIMEOUT {
        return Finding {
            status: Status::Fail,
            what,
            detail: format!(
                "{seconds} s is too short: the heartbeat extends it every {heartbeat} s, so one \
                 slow ChangeMessageVisibility call lets another worker receive a message while \
                 it is processed (double delivery), and the calls add up"
            ),
            fix,
        };
    }
    if seconds < RECOMMENDED_MIN_VISIBILITY_TIMEOUT {
        return Finding {
            status: Status::Warn,
            what,
            detail: format!(
                "{seconds} s leaves little margin: the heartbeat extends it every {heartbeat} s, \
                 and a slow ChangeMessageVisibility call means double delivery"
            ),
            fix,
        };
    }
    if seconds > MAX_SENSIBLE_VISIBILITY_TIMEOUT {
        return Finding {
            status: Status::Warn,
            what,
            detail: format!(
                "{}: the messages of a daemon that crashed or was killed are delivered again \
                 only after that long",
                human(u64::from(seconds))
            ),
            fix,
        };
    }
    Finding {
        status: Status::Ok,
        what,
        detail: format!("{seconds} s (the heartbeat extends it every {heartbeat} s)"),
        fix: String::new(),
    }
}

/// Long polling: the daemon sends `sqs.wait_time_seconds` with every receive, and a 0 there
/// overrides the queue's `ReceiveMessageWaitTimeSeconds`.
#[must_use]
pub fn long_polling_finding(wait_time_seconds: i32, queue_wait: Option<u64>) -> Finding {
    let what = "long polling".to_owned();
    if wait_time_seconds > 0 {
        return Finding {
            status: Status::Ok,
            what,
            detail: format!("receives wait up to {wait_time_seconds} s for messages"),
            fix: String::new(),
        };
    }
    let queue = match queue_wait {
        Some(w) if w > 0 => {
            format!(", and that 0 overrides the queue's ReceiveMessageWaitTimeSeconds ({w} s)")
        }
        _ => String::new(),
    };
    Finding {
        status: Status::Warn,
        what,
        detail: format!(
            "sqs.wait_time_seconds is 0: every receive returns at once, empty ones are billed \
             too{queue}"
        ),
        fix: "set sqs.wait_time_seconds (CTC__SQS__WAIT_TIME_SECONDS) to 20".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The subscription store

/// The store is reachable and its rows open; returns the subscriptions.
async fn store_checks(
    settings: &Settings,
    aws: &SdkConfig,
    report: &mut Report<'_>,
) -> io::Result<Option<Vec<Subscription>>> {
    let spec = &settings.subscriptions.store;
    let what = format!("subscription store {spec}");
    if let StoreSpec::Sqlite(path) = spec {
        if !path.exists() {
            sqlite_missing(path, &what, report)?;
            encryption_check(settings, report)?;
            return Ok(Some(Vec::new()));
        }
    }
    let subscriptions = match Subscriptions::open(spec, settings.subscriptions.sealer(), aws) {
        Ok(s) => s,
        Err(e) => {
            report.add(&store_failure(&what, spec, &e))?;
            return Ok(None);
        }
    };
    let found = match subscriptions.list(None).await {
        Ok(found) => found,
        Err(e) => {
            report.add(&store_failure(&what, spec, &e))?;
            return Ok(None);
        }
    };
    report.ok(
        what,
        format!("reachable, {}", plural(found.len() as u64, "subscription")),
    )?;
    encryption_check(settings, report)?;
    Ok(Some(found))
}

/// A SQLite file that does not exist yet: fine for a first start, a wrong path otherwise.
fn sqlite_missing(path: &Path, what: &str, report: &mut Report<'_>) -> io::Result<()> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let dir = absolute
        .parent()
        .map_or_else(|| Path::new("/").to_owned(), Path::to_owned);
    if dir.is_dir() {
        report.warn(
            what,
            format!(
                "{} does not exist yet: `run` creates it empty; if subscriptions were saved \
                 before, they are in another file",
                absolute.display()
            ),
            "if this is not a first start, set subscriptions.store (CTC__SUBSCRIPTIONS__STORE) \
             to sqlite: and the absolute path of the existing file",
        )
    } else {
        report.fail(
            what,
            format!("the directory {} does not exist", dir.display()),
            "create it (writable by the daemon), or set subscriptions.store \
             (CTC__SUBSCRIPTIONS__STORE) to sqlite:PATH in an existing directory",
        )
    }
}

fn store_failure(what: &str, spec: &StoreSpec, error: &StoreError) -> Finding {
    let (detail, fix) = match error {
        StoreError::Corrupt { bucket, detail } => (
            format!("the subscription of bucket {bucket} cannot be read ({detail})"),
            format!(
                "set subscriptions.encryption_key (CTC__SUBSCRIPTIONS__ENCRYPTION_KEY) to the \
                 key the subscriptions were saved with, or remove this one \
                 (`cloudtrail-changes subscriptions remove {bucket}`) and subscribe again"
            ),
        ),
        StoreError::Unavailable { detail, .. } => {
            let fix = match spec {
                StoreSpec::DynamoDb(table) if detail.contains("ResourceNotFound") => format!(
                    "the table {table} does not exist: run `cloudtrail-changes subscriptions \
                     init-table` (with the same settings), or set subscriptions.store to the \
                     existing table"
                ),
                StoreSpec::DynamoDb(table) => format!(
                    "allow the daemon dynamodb:GetItem, PutItem, DeleteItem, Scan, Query and \
                     UpdateItem on the table {table}, and check aws.region and the network"
                ),
                StoreSpec::Sqlite(path) => format!(
                    "make {} a readable and writable SQLite file for the daemon's user",
                    path.display()
                ),
            };
            (format!("unavailable ({detail})"), fix)
        }
        StoreError::Conflict { .. } => (error.to_string(), "retry".to_owned()),
    };
    Finding {
        status: Status::Fail,
        what: what.to_owned(),
        detail,
        fix,
    }
}

fn encryption_check(settings: &Settings, report: &mut Report<'_>) -> io::Result<()> {
    let what = "subscription keys";
    if settings.subscriptions.encryption_key.is_some() {
        report.ok(what, "sealed with subscriptions.encryption_key")
    } else {
        report.warn(
            what,
            "subscriptions.encryption_key is empty: API and app keys are stored in clear",
            "set CTC__SUBSCRIPTIONS__ENCRYPTION_KEY to the output of `openssl rand -base64 32` \
             (subscriptions saved in clear stay readable and are sealed on their next update)",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// BigPanda

fn bigpanda_checks(settings: &Settings, report: &mut Report<'_>) -> io::Result<()> {
    if settings.bigpanda.mode == SinkMode::Stdout {
        report.warn(
            "bigpanda.mode",
            "stdout: changes are printed, not sent (a dry run)",
            "set bigpanda.mode (CTC__BIGPANDA__MODE) to http to send them",
        )?;
        return Ok(());
    }
    report.add(&base_url_finding(&settings.bigpanda.base_url))
}

/// `bigpanda.base_url`: an http(s) URL of a host, not the changes endpoint itself, and not
/// plain http to another host (the API key would travel in clear).
#[must_use]
pub fn base_url_finding(base_url: &str) -> Finding {
    let what = "bigpanda.base_url".to_owned();
    let fix = "set bigpanda.base_url (CTC__BIGPANDA__BASE_URL) to https://api.bigpanda.io \
               (EU tenants: https://eu-api.bigpanda.io)";
    let fail = |detail: String| Finding {
        status: Status::Fail,
        what: what.clone(),
        detail,
        fix: fix.to_owned(),
    };
    let url = match reqwest::Url::parse(base_url) {
        Ok(url) => url,
        Err(e) => return fail(format!("{base_url:?} is not a URL ({e})")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return fail(format!("{base_url:?} is not an http(s) URL"));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return fail(format!("{base_url:?} has no host"));
    };
    if url.path().trim_end_matches('/').ends_with("/data/changes") {
        return fail(format!(
            "{base_url:?} already ends with /data/changes, which the daemon appends: changes \
             would go to .../data/changes/data/changes"
        ));
    }
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme() == "http" && !loopback {
        return Finding {
            status: Status::Warn,
            what,
            detail: format!(
                "{base_url} is plain http: API and app keys would cross the network unencrypted"
            ),
            fix: fix.to_owned(),
        };
    }
    Finding {
        status: Status::Ok,
        what,
        detail: format!(
            "changes go to {}/data/changes",
            base_url.trim_end_matches('/')
        ),
        fix: String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Subscription roles

/// Assumes every subscription's role with its external ID; one line per bucket.
async fn role_checks(
    aws: &SdkConfig,
    subs: &[Subscription],
    identity: Option<&str>,
    report: &mut Report<'_>,
) -> io::Result<()> {
    if subs.is_empty() {
        return report.ok("subscription roles", "no subscriptions to check");
    }
    let roles = Roles::new(aws);
    let mut tried: HashMap<(String, String), Result<(), CredentialsError>> = HashMap::new();
    for s in subs {
        let key = (s.iam_role_arn.clone(), s.iam_role_external_id.clone());
        let result = match tried.get(&key) {
            Some(r) => r.clone(),
            None => {
                let r = roles.verify(&s.iam_role_arn, &s.iam_role_external_id).await;
                tried.insert(key, r.clone());
                r
            }
        };
        report.add(&role_finding(s, identity, &result))?;
    }
    Ok(())
}

fn role_finding(
    s: &Subscription,
    identity: Option<&str>,
    result: &Result<(), CredentialsError>,
) -> Finding {
    let what = format!("role of bucket {}", s.bucket_name);
    let (status, detail, fix) = match result {
        Ok(()) => (
            Status::Ok,
            format!("{} assumed with its external ID", s.iam_role_arn),
            String::new(),
        ),
        Err(CredentialsError::Refused { code, message, .. }) => (
            Status::Fail,
            format!(
                "AWS refused to let us assume {} ({code}: {message})",
                s.iam_role_arn
            ),
            format!(
                "the role's owner must let {} assume {} with the condition sts:ExternalId = \
                 {:?} in its trust policy, and the role must exist; or subscribe the bucket \
                 again with the right role and external ID",
                identity.unwrap_or("the daemon's identity"),
                s.iam_role_arn,
                s.iam_role_external_id
            ),
        ),
        Err(CredentialsError::Unavailable { detail, .. }) => (
            Status::Fail,
            format!("could not ask STS to assume {} ({detail})", s.iam_role_arn),
            format!("{NETWORK_FIX}; then retry"),
        ),
    };
    Finding {
        status,
        what,
        detail,
        fix,
    }
}

// ---------------------------------------------------------------------------------------------

/// `1 message`, `2 messages`.
fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// A duration for people: `30 s`, `42 min`, `1 h 5 min`, `4 days`.
#[must_use]
pub fn human(seconds: u64) -> String {
    const DAY: u64 = 86_400;
    match seconds {
        s if s >= DAY && s % DAY == 0 => {
            let d = s / DAY;
            format!("{d} day{}", if d == 1 { "" } else { "s" })
        }
        s if s >= DAY => format!("{:.1} days", s as f64 / DAY as f64),
        s if s >= 3600 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        s if s >= 60 => match (s / 60, s % 60) {
            (m, 0) => format!("{m} min"),
            (m, r) => format!("{m} min {r} s"),
        },
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_print_as_one_line_with_the_fix() {
        let ok = Finding {
            status: Status::Ok,
            what: "queue q".into(),
            detail: "reachable".into(),
            fix: String::new(),
        };
        let fail = Finding {
            status: Status::Fail,
            what: "queue q".into(),
            detail: "it does not exist".into(),
            fix: "create it".into(),
        };
        assert_eq!(ok.to_string(), "ok   queue q: reachable");
        assert_eq!(
            fail.to_string(),
            "FAIL queue q: it does not exist. Fix: create it"
        );
        let summary = Summary {
            checks: 12,
            failed: 1,
            warnings: 2,
        };
        assert_eq!(summary.to_string(), "12 checks, 1 failed, 2 warnings");
        assert!(!summary.passed());
    }

    #[test]
    fn visibility_timeouts_fail_below_ten_seconds_and_warn_below_thirty_or_above_an_hour() {
        assert_eq!(visibility_finding(5).status, Status::Fail);
        assert_eq!(visibility_finding(9).status, Status::Fail);
        assert_eq!(visibility_finding(10).status, Status::Warn);
        assert_eq!(visibility_finding(29).status, Status::Warn);
        assert_eq!(visibility_finding(30).status, Status::Ok);
        assert_eq!(visibility_finding(3600).status, Status::Ok);
        assert_eq!(visibility_finding(43_200).status, Status::Warn);
        assert!(visibility_finding(30).detail.contains("every 15 s"));
    }

    #[test]
    fn a_receive_count_of_one_fails_two_warns_and_retries_must_fit_the_retention() {
        let backoff = [30, 120, 600, 1800];
        assert_eq!(
            receive_count_finding(1, &backoff, 345_600).status,
            Status::Fail
        );
        assert_eq!(
            receive_count_finding(2, &backoff, 345_600).status,
            Status::Warn
        );
        let five = receive_count_finding(5, &backoff, 345_600);
        assert_eq!(five.status, Status::Ok, "{five}");
        assert!(five.detail.contains("4 times over about 42 min"), "{five}");
        // 200 receives of 30 min each outlast four days.
        assert_eq!(
            receive_count_finding(200, &backoff, 345_600).status,
            Status::Fail
        );
        assert_eq!(retry_window_seconds(1, &backoff), 0);
        assert_eq!(retry_window_seconds(3, &backoff), 150);
    }

    #[test]
    fn the_dlq_must_keep_messages_longer_than_the_queue() {
        assert_eq!(retention_finding(60, 345_600).status, Status::Fail);
        assert_eq!(retention_finding(345_600, 345_600).status, Status::Warn);
        assert_eq!(retention_finding(1_209_600, 345_600).status, Status::Ok);
        assert_eq!(retention_finding(1_209_600, 1_209_600).status, Status::Ok);
    }

    #[test]
    fn a_zero_wait_time_warns_and_says_it_overrides_the_queue() {
        assert_eq!(long_polling_finding(20, Some(0)).status, Status::Ok);
        let zero = long_polling_finding(0, Some(20));
        assert_eq!(zero.status, Status::Warn);
        assert!(zero.detail.contains("overrides"), "{zero}");
    }

    #[test]
    fn base_urls_must_be_http_hosts_and_plain_http_only_on_loopback() {
        assert_eq!(
            base_url_finding("https://api.bigpanda.io").status,
            Status::Ok
        );
        assert_eq!(base_url_finding("http://127.0.0.1:9000").status, Status::Ok);
        assert_eq!(
            base_url_finding("http://localhost:9000/").status,
            Status::Ok
        );
        assert_eq!(
            base_url_finding("http://api.bigpanda.io").status,
            Status::Warn
        );
        assert_eq!(
            base_url_finding("ftp://api.bigpanda.io").status,
            Status::Fail
        );
        assert_eq!(base_url_finding("not a url").status, Status::Fail);
        assert_eq!(
            base_url_finding("https://api.bigpanda.io/data/changes").status,
            Status::Fail
        );
    }

    #[test]
    fn queue_urls_on_aws_name_their_region() {
        assert_eq!(
            queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            queue_region("https://us-east-2.queue.amazonaws.com/123456789012/q").as_deref(),
            Some("us-east-2")
        );
        assert_eq!(queue_region("http://127.0.0.1:5000/123456789012/q"), None);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(30), "30 s");
        assert_eq!(human(2520), "42 min");
        assert_eq!(human(3900), "1 h 5 min");
        assert_eq!(human(86_400), "1 day");
        assert_eq!(human(345_600), "4 days");
        assert_eq!(human(1_209_600), "14 days");
    }
}
