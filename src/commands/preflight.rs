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
//! heartbeat; long polling; the subscription store and its keys; the BigPanda settings and a
//! keyless probe of `bigpanda.base_url` (see `endpoint`); with
//! `--subscriptions`, every subscription's role with its external ID. API and app keys are
//! never printed.

use crate::aws::credentials::{self, CredentialsError, Roles};
use crate::aws::queue::{parse_queue_arn, parse_redrive_policy};
use crate::forward::SinkMode;
use crate::settings::Settings;
use crate::subscriptions::{StoreError, StoreSpec, Subscription, Subscriptions};
use crate::util::duration::human;
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

mod bigpanda;
mod endpoint;
mod failures;
mod identity;
mod queue;
mod queue_url;
mod roles;
mod schedule;
mod store;

pub use bigpanda::base_url_finding;
use bigpanda::bigpanda_checks;
use failures::*;
use identity::identity_check;
pub use queue::{
    long_polling_finding, receive_count_finding, retention_finding, retry_window_seconds,
    visibility_finding,
};
use queue::{queue_attributes, queue_checks};
pub use queue_url::queue_region;
use queue_url::{queue_settings, settings_checks};
use roles::role_checks;
use store::store_checks;

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
    bigpanda_checks(settings, &mut report).await?;
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

/// `1 message`, `2 messages`.
fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
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
}
