//! The dead-letter queue as on-call's tools use it: receive with every attribute and hold,
//! send a body back to the source queue, delete, count, release. Same errors as the rest of
//! [`super`]; the tools decide what to move.

use super::{error, QueueError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;
use std::collections::HashMap;

/// Most messages one SQS batch call takes.
pub const BATCH: usize = 10;
/// Long-poll wait of one receive: a second, so an empty DLQ answers at once.
const WAIT_SECONDS: i32 = 1;

/// A source queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    client: Client,
    pub source: String,
    pub dlq: String,
}

impl DeadLetterQueue {
    /// The pair, both already resolved (see [`super::Queue::resolve`]).
    #[must_use]
    pub fn new(client: Client, source: String, dlq: String) -> Self {
        Self {
            client,
            source,
            dlq,
        }
    }

    /// Up to `max` (at most [`BATCH`]) DLQ messages with all their attributes, held invisible
    /// for `hold_seconds`.
    ///
    /// # Errors
    /// The receive's [`QueueError`], naming the DLQ.
    pub async fn receive(&self, max: usize, hold_seconds: i32) -> Result<Vec<Message>, QueueError> {
        let max = i32::try_from(max.clamp(1, BATCH)).unwrap_or(1);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.dlq)
            .max_number_of_messages(max)
            .wait_time_seconds(WAIT_SECONDS)
            .visibility_timeout(hold_seconds)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| error("ReceiveMessage", &self.dlq, &e))?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Sends `body` with `attributes` to the source queue.
    ///
    /// # Errors
    /// The send's [`QueueError`], naming the source queue.
    pub async fn send_to_source(
        &self,
        body: &str,
        attributes: HashMap<String, MessageAttributeValue>,
    ) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.source)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| error("SendMessage", &self.source, &e))?;
        Ok(())
    }

    /// Deletes a message from the DLQ.
    ///
    /// # Errors
    /// The delete's [`QueueError`], naming the DLQ.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.dlq)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| error("DeleteMessage", &self.dlq, &e))?;
        Ok(())
    }

    /// The DLQ's `ApproximateNumberOfMessages` plus `ApproximateNumberOfMessagesNotVisible`.
    ///
    /// # Errors
    /// The call's [`QueueError`], naming the DLQ.
    pub async fn depth(&self) -> Result<u64, QueueError> {
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ];
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.dlq)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| error("GetQueueAttributes", &self.dlq, &e))?;
        let attributes = output.attributes.unwrap_or_default();
        Ok(names
            .iter()
            .filter_map(|n| attributes.get(n).and_then(|v| v.parse::<u64>().ok()))
            .sum())
    }

    /// Makes the messages visible again at once; failures are logged (the message becomes
    /// visible by itself when its hold ends).
    pub async fn release(&self, handles: &[String]) {
        for chunk in handles.chunks(BATCH) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            let result = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.dlq)
                .set_entries(Some(entries))
                .send()
                .await;
            match result {
                Ok(output) => {
                    for failed in output.failed() {
                        tracing::warn!(dlq = %self.dlq, code = failed.code(), message = failed.message().unwrap_or_default(), "cannot release a DLQ message; it becomes visible again when its hold ends");
                    }
                }
                Err(e) => {
                    let e = error("ChangeMessageVisibilityBatch", &self.dlq, &e);
                    tracing::warn!(error = %e, "cannot release DLQ messages; they become visible again when their hold ends");
                }
            }
        }
    }
}
