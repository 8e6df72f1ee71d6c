//! Putting a message back as a new copy: send the body to the source queue, and the caller
//! deletes the original only after that succeeded (send before delete: never in neither). The
//! copy starts with a receive count of 0, so a message handed back without a real attempt
//! (shutdown on its last allowed receive) is not dead-lettered by SQS without a reason. The copy
//! is delayed [`COPY_DELAY_SECONDS`], so a receive the stopping replica abandoned, still being
//! served by SQS, cannot take it and spend its first receive.

/// How long the copy stays invisible after it is sent.
pub const COPY_DELAY_SECONDS: i32 = 2;

use super::{error, Queue, QueueError};

impl Queue {
    /// Sends a copy of `body` to this queue, visible after [`COPY_DELAY_SECONDS`].
    ///
    /// # Errors
    /// [`QueueError`] naming the queue when the send fails.
    pub async fn send_copy(&self, body: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(COPY_DELAY_SECONDS)
            .send()
            .await
            .map_err(|e| error("SendMessage", &self.url, &e))?;
        Ok(())
    }
}
