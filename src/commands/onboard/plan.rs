//! `onboard`: the plan, everything `onboard` prints.

use super::*;

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

pub(super) fn notes(customer: &Customer, api_url: &str) -> Vec<String> {
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
