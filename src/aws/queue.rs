//! The SQS edge: receive, delete, change visibility, and the daemon's own move to the
//! dead-letter queue (with the reason as message attributes). No decisions here: the worker
//! decides a message's fate, this module carries it out.

mod dead_letters;

pub use dead_letters::{DeadLetterQueue, BATCH};

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use aws_sdk_sqs::Client;
use std::collections::HashMap;

mod requeue;

/// Longest `failure_detail` attribute written to the DLQ.
const MAX_DETAIL_CHARS: usize = 1024;

/// A received message, reduced to what the worker needs.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// The message attributes with a string value (a rejected change's envelope).
    pub attributes: HashMap<String, String>,
    /// `SentTimestamp`: when the message was first sent to the queue.
    pub sent_at: Option<std::time::SystemTime>,
}

/// Why an SQS call failed.
#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} on {queue} failed: {detail}")]
pub struct QueueError {
    pub operation: &'static str,
    pub queue: String,
    pub detail: String,
    /// AWS's error code, when it sent a readable one.
    pub code: Option<String>,
}

/// Why a message is in the dead-letter queue, as attributes on it.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    /// A short machine-readable reason (`unknown_bucket`, `corrupt_object`, ...).
    pub reason: &'a str,
    /// What happened, for people.
    pub detail: &'a str,
    /// RFC 3339 time of the decision.
    pub failed_at: &'a str,
}

/// The source queue and where its poison goes.
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    pub url: String,
    /// The dead-letter queue (from the RedrivePolicy, or `sqs.dlq_url`).
    pub dlq_url: Option<String>,
    /// The RedrivePolicy's `maxReceiveCount`, if the queue has one.
    pub max_receive_count: Option<u32>,
    /// The queue's `VisibilityTimeout` in seconds.
    pub visibility_timeout: u32,
}

impl Queue {
    /// Reads the queue's attributes and finds its dead-letter queue. `dlq_url` overrides the
    /// RedrivePolicy's target.
    ///
    /// # Errors
    /// [`QueueError`] when the attributes or the DLQ's URL cannot be read.
    pub async fn resolve(
        client: Client,
        url: &str,
        dlq_url: Option<String>,
    ) -> Result<Self, QueueError> {
        let attrs = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| error("GetQueueAttributes", url, &e))?;
        let attrs = attrs.attributes().cloned().unwrap_or_default();
        let visibility_timeout = attrs
            .get(&QueueAttributeName::VisibilityTimeout)
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        let redrive = attrs
            .get(&QueueAttributeName::RedrivePolicy)
            .and_then(|text| parse_redrive_policy(text));
        let max_receive_count = redrive.as_ref().map(|r| r.1);
        let dlq_url = match (dlq_url, redrive) {
            (Some(url), _) => Some(url),
            (None, Some((arn, _))) => Some(url_of_arn(&client, &arn).await?),
            (None, None) => None,
        };
        Ok(Self {
            client,
            url: url.to_owned(),
            dlq_url,
            max_receive_count,
            visibility_timeout,
        })
    }

    /// Long-polls for up to `max` messages.
    ///
    /// # Errors
    /// [`QueueError`] when the receive fails.
    pub async fn receive(&self, max: i32, wait_seconds: i32) -> Result<Vec<Received>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| error("ReceiveMessage", &self.url, &e))?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    message_id: m.message_id()?.to_owned(),
                    receipt_handle: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count,
                    attributes: attributes_of(m),
                    sent_at: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
                })
            })
            .collect())
    }

    /// Deletes messages by receipt handle; returns the handles that could not be deleted, with
    /// the reason (the caller retries or lets them come back).
    ///
    /// # Errors
    /// [`QueueError`] when the whole call fails.
    pub async fn delete_batch(
        &self,
        handles: &[String],
    ) -> Result<Vec<(String, String)>, QueueError> {
        let mut failed = Vec::new();
        for chunk in handles.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .ok()
                })
                .collect();
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| error("DeleteMessageBatch", &self.url, &e))?;
            for f in output.failed() {
                let handle = f.id().parse::<usize>().ok().and_then(|i| chunk.get(i));
                if let Some(handle) = handle {
                    failed.push((
                        handle.clone(),
                        format!("{}: {}", f.code(), f.message().unwrap_or("")),
                    ));
                }
            }
        }
        Ok(failed)
    }

    /// Sets a message's visibility timeout (0 releases it at once).
    ///
    /// # Errors
    /// [`QueueError`] when the call fails (e.g. the receipt handle expired).
    pub async fn set_visibility(&self, handle: &str, seconds: u32) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(handle)
            .visibility_timeout(i32::try_from(seconds.min(43_200)).unwrap_or(43_200))
            .send()
            .await
            .map_err(|e| error("ChangeMessageVisibility", &self.url, &e))?;
        Ok(())
    }

    /// Copies `body` to the dead-letter queue with the failure as attributes. The caller deletes
    /// the original only after this succeeded, so a message is never in neither queue.
    ///
    /// # Errors
    /// [`QueueError`] when there is no DLQ or the send fails.
    pub async fn send_to_dlq(&self, body: &str, failure: &Failure<'_>) -> Result<(), QueueError> {
        self.send_to_dlq_with(body, failure, &[]).await
    }

    /// [`Queue::send_to_dlq`] with `extra` attributes (at most 6: SQS allows 10 in all), e.g.
    /// a rejected change's envelope.
    ///
    /// # Errors
    /// [`QueueError`] when there is no DLQ or the send fails.
    pub async fn send_to_dlq_with(
        &self,
        body: &str,
        failure: &Failure<'_>,
        extra: &[(&str, String)],
    ) -> Result<(), QueueError> {
        let Some(dlq) = &self.dlq_url else {
            return Err(QueueError {
                operation: "SendMessage",
                queue: self.url.clone(),
                detail: "the queue has no RedrivePolicy and sqs.dlq_url is not set".into(),
                code: None,
            });
        };
        let detail: String = failure.detail.chars().take(MAX_DETAIL_CHARS).collect();
        let attributes = [
            ("failure_reason", failure.reason),
            ("failure_detail", detail.as_str()),
            ("source_queue", self.url.as_str()),
            ("failed_at", failure.failed_at),
        ];
        let extra = extra.iter().map(|(name, value)| (*name, value.as_str()));
        let mut request = self.client.send_message().queue_url(dlq).message_body(body);
        for (name, value) in attributes.into_iter().chain(extra) {
            let value = if value.is_empty() { "-" } else { value };
            if let Ok(v) = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
            {
                request = request.message_attributes(name, v);
            }
        }
        request
            .send()
            .await
            .map_err(|e| error("SendMessage", dlq, &e))?;
        Ok(())
    }
}

/// The RedrivePolicy's target ARN and `maxReceiveCount`.
#[must_use]
pub fn parse_redrive_policy(text: &str) -> Option<(String, u32)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let arn = v.get("deadLetterTargetArn")?.as_str()?.to_owned();
    let count = match v.get("maxReceiveCount")? {
        serde_json::Value::Number(n) => u32::try_from(n.as_u64()?).ok()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some((arn, count))
}

/// `arn:aws:sqs:REGION:ACCOUNT:NAME` -> (account, name).
#[must_use]
pub fn parse_queue_arn(arn: &str) -> Option<(&str, &str)> {
    let arn = crate::util::arn::Arn::parse(arn)?;
    (arn.service == "sqs" && !arn.resource.contains(':')).then_some((arn.account, arn.resource))
}

async fn url_of_arn(client: &Client, arn: &str) -> Result<String, QueueError> {
    let Some((account, name)) = parse_queue_arn(arn) else {
        return Err(QueueError {
            operation: "GetQueueUrl",
            queue: arn.to_owned(),
            detail: "the RedrivePolicy's deadLetterTargetArn is not an SQS queue ARN".into(),
            code: None,
        });
    };
    let output = client
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| error("GetQueueUrl", arn, &e))?;
    output
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| QueueError {
            operation: "GetQueueUrl",
            queue: arn.to_owned(),
            detail: "no URL in the answer".into(),
            code: None,
        })
}

fn error<E, R>(
    operation: &'static str,
    queue: &str,
    e: &aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    QueueError {
        operation,
        queue: queue.to_owned(),
        detail: DisplayErrorContext(e).to_string(),
        code: e
            .as_service_error()
            .and_then(|s| s.code())
            .map(str::to_owned),
    }
}

/// Message attributes as a plain map (for the DLQ tools).
#[must_use]
pub fn attributes_of(m: &aws_sdk_sqs::types::Message) -> HashMap<String, String> {
    m.message_attributes()
        .map(|attrs| {
            attrs
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_give_the_target_and_the_count_as_number_or_text() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:ctc-dlq";
        assert_eq!(
            parse_redrive_policy(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#
            )),
            Some((arn.to_owned(), 5))
        );
        assert_eq!(
            parse_redrive_policy(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"3"}}"#
            )),
            Some((arn.to_owned(), 3))
        );
        assert_eq!(parse_redrive_policy("{}"), None);
        assert_eq!(parse_redrive_policy("not json"), None);
    }

    #[test]
    fn queue_arns_give_the_account_and_the_name() {
        assert_eq!(
            parse_queue_arn("arn:aws:sqs:eu-west-1:123456789012:q-dlq"),
            Some(("123456789012", "q-dlq"))
        );
        assert_eq!(
            parse_queue_arn("arn:aws:sns:eu-west-1:123456789012:t"),
            None
        );
        assert_eq!(
            parse_queue_arn("arn:aws:sqs:eu-west-1:123456789012:q:extra"),
            None
        );
    }
}
