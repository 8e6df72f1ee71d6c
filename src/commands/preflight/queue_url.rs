//! Preflight: the queue URL and the region, from the settings alone.

use super::*;

/// Checks `sqs.queue_url` and the region; `true` when the queue checks can run.
pub(super) fn settings_checks(
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
pub(super) fn queue_settings(
    settings: &Settings,
    aws: &SdkConfig,
) -> Result<String, PreflightError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
