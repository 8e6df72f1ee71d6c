//! AWS SDK clients pointed at a local endpoint (moto, or the proxy in front of it) and the
//! set-up the tests need: buckets, queues with a dead-letter queue, bucket notifications
//! through SNS or straight to SQS, and reading queues back.
//!
//! Set-up failures panic with the operation's name: they are harness errors, not test results.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration, TopicConfiguration};
use aws_sdk_sqs::types::{Message, QueueAttributeName};

use super::moto::ACCOUNT_ID;

pub const REGION: &str = "us-east-1";

/// Static credentials `test`/`test`, region us-east-1, every service at `endpoint`, the SDK's
/// standard retries.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    loader(endpoint).load().await
}

/// As [`sdk_config`] but each call is tried once: to see a single injected fault as an error.
pub async fn sdk_config_without_retries(endpoint: &str) -> SdkConfig {
    loader(endpoint)
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

fn loader(endpoint: &str) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .endpoint_url(endpoint)
}

/// S3 needs path-style addressing with an IP endpoint (no `bucket.127.0.0.1`).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// A queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct Queues {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

/// How SNS delivers to SQS: in its JSON envelope, or the S3 event itself (raw delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsDelivery {
    Envelope,
    Raw,
}

/// The clients of one endpoint.
#[derive(Clone)]
pub struct Aws {
    pub config: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub sts: aws_sdk_sts::Client,
}

impl Aws {
    pub async fn new(endpoint: &str) -> Aws {
        Aws::from_config(sdk_config(endpoint).await)
    }

    pub fn from_config(config: SdkConfig) -> Aws {
        Aws {
            s3: s3_client(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            config,
        }
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateBucket {bucket}: {e:?}"));
    }

    pub async fn put_object(&self, bucket: &str, key: &str, bytes: impl Into<Vec<u8>>) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes.into()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject s3://{bucket}/{key}: {e:?}"));
    }

    /// A standard queue; returns its URL and ARN.
    pub async fn create_queue(&self, name: &str) -> (String, String) {
        let url = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateQueue {name}: {e:?}"))
            .queue_url
            .unwrap_or_else(|| panic!("CreateQueue {name}: no URL"));
        let arn = self.queue_arn(&url).await;
        (url, arn)
    }

    /// `name` with a real RedrivePolicy to `name-dlq`: a message received more than
    /// `max_receive_count` times moves to the DLQ on the next receive.
    pub async fn create_queue_with_dlq(
        &self,
        name: &str,
        max_receive_count: u32,
        visibility_timeout_seconds: u32,
    ) -> Queues {
        let (dlq_url, dlq_arn) = self.create_queue(&format!("{name}-dlq")).await;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count.to_string(),
        });
        let url = self
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_seconds.to_string(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateQueue {name}: {e:?}"))
            .queue_url
            .unwrap_or_else(|| panic!("CreateQueue {name}: no URL"));
        let arn = self.queue_arn(&url).await;
        Queues {
            url,
            arn,
            dlq_url,
            dlq_arn,
        }
    }

    pub async fn queue_arn(&self, url: &str) -> String {
        self.queue_attributes(url, &[QueueAttributeName::QueueArn])
            .await
            .remove(&QueueAttributeName::QueueArn)
            .unwrap_or_else(|| panic!("GetQueueAttributes {url}: no QueueArn"))
    }

    /// Visible plus in-flight messages (ApproximateNumberOfMessages + ...NotVisible).
    pub async fn queue_depth(&self, url: &str) -> u64 {
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ];
        let attributes = self.queue_attributes(url, &names).await;
        names
            .iter()
            .map(|name| {
                attributes
                    .get(name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("GetQueueAttributes {url}: no {name}"))
            })
            .sum()
    }

    async fn queue_attributes(
        &self,
        url: &str,
        names: &[QueueAttributeName],
    ) -> std::collections::HashMap<QueueAttributeName, String> {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetQueueAttributes {url}: {e:?}"))
            .attributes
            .unwrap_or_default()
    }

    /// S3 -> SNS -> SQS as a customer sets it up: a topic whose policy lets S3 publish, a queue
    /// policy that lets the topic send, the subscription, and the bucket's
    /// `s3:ObjectCreated:*` notification to the topic (which itself sends an `s3:TestEvent`).
    /// Returns the topic ARN.
    pub async fn subscribe_bucket_via_sns(
        &self,
        bucket: &str,
        queue_url: &str,
        delivery: SnsDelivery,
    ) -> String {
        let queue_arn = self.queue_arn(queue_url).await;
        let topic_arn = self
            .sns
            .create_topic()
            .name(format!("{bucket}-events"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTopic for {bucket}: {e:?}"))
            .topic_arn
            .unwrap_or_else(|| panic!("CreateTopic for {bucket}: no ARN"));
        let topic_policy = allow_policy(
            "s3.amazonaws.com",
            "SNS:Publish",
            &topic_arn,
            &format!("arn:aws:s3:::{bucket}"),
        );
        self.sns
            .set_topic_attributes()
            .topic_arn(&topic_arn)
            .attribute_name("Policy")
            .attribute_value(topic_policy)
            .send()
            .await
            .unwrap_or_else(|e| panic!("SetTopicAttributes {topic_arn}: {e:?}"));
        self.allow_queue_sender(queue_url, &queue_arn, "sns.amazonaws.com", &topic_arn)
            .await;
        let mut subscribe = self
            .sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn);
        if delivery == SnsDelivery::Raw {
            subscribe = subscribe.attributes("RawMessageDelivery", "true");
        }
        subscribe
            .send()
            .await
            .unwrap_or_else(|e| panic!("Subscribe {queue_arn} to {topic_arn}: {e:?}"));
        let topic = TopicConfiguration::builder()
            .topic_arn(&topic_arn)
            .events(Event::S3ObjectCreated)
            .build()
            .expect("a complete TopicConfiguration");
        let notification = NotificationConfiguration::builder()
            .topic_configurations(topic)
            .build();
        self.put_notification(bucket, notification).await;
        topic_arn
    }

    /// S3 -> SQS with no topic between: the queue receives the S3 event JSON itself.
    pub async fn notify_bucket_to_queue_directly(&self, bucket: &str, queue_url: &str) {
        let queue_arn = self.queue_arn(queue_url).await;
        self.allow_queue_sender(
            queue_url,
            &queue_arn,
            "s3.amazonaws.com",
            &format!("arn:aws:s3:::{bucket}"),
        )
        .await;
        let queue = QueueConfiguration::builder()
            .queue_arn(&queue_arn)
            .events(Event::S3ObjectCreated)
            .build()
            .expect("a complete QueueConfiguration");
        let notification = NotificationConfiguration::builder()
            .queue_configurations(queue)
            .build();
        self.put_notification(bucket, notification).await;
    }

    async fn put_notification(&self, bucket: &str, notification: NotificationConfiguration) {
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(notification)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutBucketNotificationConfiguration {bucket}: {e:?}"));
    }

    /// moto does not enforce queue policies; set one anyway so the set-up is AWS's.
    async fn allow_queue_sender(
        &self,
        queue_url: &str,
        queue_arn: &str,
        service: &str,
        source_arn: &str,
    ) {
        let policy = allow_policy(service, "sqs:SendMessage", queue_arn, source_arn);
        self.sqs
            .set_queue_attributes()
            .queue_url(queue_url)
            .attributes(QueueAttributeName::Policy, policy)
            .send()
            .await
            .unwrap_or_else(|e| panic!("SetQueueAttributes Policy {queue_url}: {e:?}"));
    }

    pub async fn send_message(&self, queue_url: &str, body: &str) -> String {
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("SendMessage {queue_url}: {e:?}"))
            .message_id
            .unwrap_or_default()
    }

    /// One ReceiveMessage (up to 10, long poll of `wait_seconds`, all system attributes); the
    /// messages stay in the queue and become invisible for the queue's visibility timeout, or
    /// for `visibility_timeout` when given.
    pub async fn receive(
        &self,
        queue_url: &str,
        wait_seconds: i32,
        visibility_timeout: Option<i32>,
    ) -> Vec<Message> {
        self.sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .set_visibility_timeout(visibility_timeout)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ReceiveMessage {queue_url}: {e:?}"))
            .messages
            .unwrap_or_default()
    }

    /// Receives until `idle` passes with nothing new (or `at_least` messages arrived and the
    /// queue answers empty once), deleting nothing: the messages stay in flight for the
    /// queue's visibility timeout. For reading what a set-up delivered.
    pub async fn receive_all(
        &self,
        queue_url: &str,
        at_least: usize,
        idle: Duration,
    ) -> Vec<Message> {
        let mut all = Vec::new();
        let mut last_new = Instant::now();
        loop {
            let batch = self.receive(queue_url, 1, None).await;
            if batch.is_empty() {
                if all.len() >= at_least || last_new.elapsed() >= idle {
                    return all;
                }
            } else {
                last_new = Instant::now();
                all.extend(batch);
            }
        }
    }

    /// Receives and deletes until the queue answers empty; returns what it deleted.
    pub async fn drain(&self, queue_url: &str) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let batch = self.receive(queue_url, 0, None).await;
            if batch.is_empty() {
                return all;
            }
            for message in &batch {
                self.delete_message(queue_url, message).await;
            }
            all.extend(batch);
        }
    }

    pub async fn delete_message(&self, queue_url: &str, message: &Message) {
        let handle = message
            .receipt_handle()
            .expect("a received message has a handle");
        self.sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DeleteMessage {queue_url}: {e:?}"));
    }
}

/// A resource policy that lets `service` do `action` on `resource` for `source_arn` only.
fn allow_policy(service: &str, action: &str, resource: &str, source_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": action,
            "Resource": resource,
            "Condition": {
                "ArnLike": {"aws:SourceArn": source_arn},
                "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
            },
        }],
    })
    .to_string()
}

/// The S3 event records a queue message carries, whichever envelope: SNS (the event as a JSON
/// string in `Message`) or raw/direct (the event itself). `s3:TestEvent`s have no records.
pub fn s3_records(body: &str) -> Vec<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let event = match value.get("Message").and_then(|m| m.as_str()) {
        Some(message) => serde_json::from_str(message).unwrap_or_default(),
        None => value,
    };
    event
        .get("Records")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default()
}

/// `(bucket, decoded key)` of an S3 event record. Keys are form-encoded (`+` is a space, then
/// `%XX`; moto also encodes `/`).
pub fn bucket_and_key(record: &serde_json::Value) -> (String, String) {
    let bucket = record["s3"]["bucket"]["name"].as_str().unwrap_or_default();
    let key = record["s3"]["object"]["key"].as_str().unwrap_or_default();
    let key = key.replace('+', " ");
    let key = percent_encoding::percent_decode_str(&key)
        .decode_utf8_lossy()
        .into_owned();
    (bucket.to_string(), key)
}
