//! Preflight: the queue and its dead-letter queue (RedrivePolicy, receive count, retention,
//! visibility timeout, long polling).

use super::*;

pub(super) type Attributes = HashMap<QueueAttributeName, String>;

/// A failed `GetQueueAttributes`, to be worded for the queue it was about.
pub(super) struct QueueFailure {
    failure: AwsFailure,
    identity: Option<String>,
}

impl QueueFailure {
    /// The error for the source queue at `url`.
    pub(super) fn into_error(self, url: &str, aws: &SdkConfig) -> PreflightError {
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

pub(super) async fn queue_attributes(
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

pub(super) fn number(attrs: &Attributes, name: &QueueAttributeName) -> Option<u64> {
    attrs.get(name).and_then(|v| v.parse().ok())
}

pub(super) async fn queue_checks(
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
pub(super) fn redrive_checks(
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
    report.add(&super::schedule::schedule_finding(
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
pub(super) async fn dlq_checks(
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

pub(super) async fn url_of_arn(sqs: &aws_sdk_sqs::Client, arn: &str) -> Result<String, AwsFailure> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
