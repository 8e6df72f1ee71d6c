//! `onboard`: the documents a customer creates: the role's trust and permission policies, the
//! bucket notification, our topic's statement, the subscribe request, the CloudFormation
//! parameters.

use super::*;

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

/// One IAM policy statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: String,
    pub effect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Operator -> condition key -> value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: BTreeMap<&'static str, BTreeMap<&'static str, String>>,
}

/// A statement's principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Principal {
    #[serde(rename = "AWS")]
    Aws(String),
    Service(&'static str),
}

/// `arn:<partition>:iam::<account>:root`: every identity of the account the account allows.
#[must_use]
pub fn account_root(partition: &str, account: &str) -> String {
    format!("arn:{partition}:iam::{account}:root")
}

/// `arn:<partition>:iam::<account>:role/`[`ROLE_NAME`].
#[must_use]
pub fn role_arn(partition: &str, account: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{ROLE_NAME}")
}

/// The role's trust policy: `our_account` may assume it with `external_id`.
#[must_use]
pub fn trust_policy(
    partition: &str,
    our_account: &str,
    external_id: &ExternalId,
) -> PolicyDocument {
    let condition = BTreeMap::from([(
        "StringEquals",
        BTreeMap::from([("sts:ExternalId", external_id.as_str().to_owned())]),
    )]);
    PolicyDocument {
        version: POLICY_VERSION,
        statement: vec![Statement {
            sid: "AllowBigPandaAssumeRole".into(),
            effect: "Allow",
            principal: Some(Principal::Aws(account_root(partition, our_account))),
            action: "sts:AssumeRole",
            resource: None,
            condition,
        }],
    }
}

/// The role's permission policy: exactly one statement, `s3:GetObject` on the trail's keys.
#[must_use]
pub fn permission_policy(
    partition: &str,
    bucket: &BucketName,
    prefix: &KeyPrefix,
) -> PolicyDocument {
    PolicyDocument {
        version: POLICY_VERSION,
        statement: vec![Statement {
            sid: "AllowBigPandaGetObject".into(),
            effect: "Allow",
            principal: None,
            action: "s3:GetObject",
            resource: Some(format!(
                "arn:{partition}:s3:::{}/{}*",
                bucket.as_str(),
                prefix.full()
            )),
            condition: BTreeMap::new(),
        }],
    }
}

/// The statement an SSE-KMS bucket's role needs besides [`permission_policy`] (the key's ID is
/// a placeholder).
#[must_use]
pub fn kms_decrypt_statement(partition: &str, region: &Region, account: &str) -> Statement {
    Statement {
        sid: "AllowBigPandaDecrypt".into(),
        effect: "Allow",
        principal: None,
        action: "kms:Decrypt",
        resource: Some(format!(
            "arn:{partition}:kms:{}:{account}:key/<key-id>",
            region.as_str()
        )),
        condition: BTreeMap::new(),
    }
}

/// The statement our topic's access policy needs so that S3 may publish this bucket's events.
#[must_use]
pub fn topic_policy_statement(topic: &TopicArn, bucket: &BucketName, account: &str) -> Statement {
    let condition = BTreeMap::from([
        (
            "StringEquals",
            BTreeMap::from([("aws:SourceAccount", account.to_owned())]),
        ),
        (
            "ArnLike",
            BTreeMap::from([(
                "aws:SourceArn",
                format!("arn:{}:s3:::{}", topic.partition, bucket.as_str()),
            )]),
        ),
    ]);
    Statement {
        sid: format!("AllowS3Publish{account}{}", sid_safe(bucket.as_str())),
        effect: "Allow",
        principal: Some(Principal::Service("s3.amazonaws.com")),
        action: "SNS:Publish",
        resource: Some(topic.arn.clone()),
        condition,
    }
}

/// A statement ID may hold only letters and digits.
pub(super) fn sid_safe(text: &str) -> String {
    text.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// A bucket notification configuration, as `put-bucket-notification-configuration` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotificationConfiguration {
    pub topic_configurations: Vec<TopicConfiguration>,
}

/// One topic configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TopicConfiguration {
    pub id: &'static str,
    pub topic_arn: String,
    pub events: Vec<&'static str>,
    pub filter: Filter,
}

/// `{"Key": {"FilterRules": [...]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub key: KeyFilter,
}

/// The key filter's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyFilter {
    pub filter_rules: Vec<FilterRule>,
}

/// `{"Name": "prefix"|"suffix", "Value": ...}` (the API's documented names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterRule {
    pub name: &'static str,
    pub value: String,
}

/// The bucket's notification to our topic: new CloudTrail log files only.
#[must_use]
pub fn notification_configuration(
    topic: &TopicArn,
    prefix: &KeyPrefix,
    account: &str,
) -> NotificationConfiguration {
    NotificationConfiguration {
        topic_configurations: vec![TopicConfiguration {
            id: NOTIFICATION_ID,
            topic_arn: topic.arn.clone(),
            events: vec![NOTIFICATION_EVENT],
            filter: Filter {
                key: KeyFilter {
                    filter_rules: vec![
                        FilterRule {
                            name: "prefix",
                            value: prefix.notification_prefix(account),
                        },
                        FilterRule {
                            name: "suffix",
                            value: LOG_SUFFIX.into(),
                        },
                    ],
                },
            },
        }],
    }
}

/// The `POST /v1/subscriptions` body, with placeholder keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscribeBody {
    #[serde(rename = "apiKey")]
    pub api_key: String,
    #[serde(rename = "appKey")]
    pub app_key: String,
    pub bucket_name: String,
    pub bucket_region: String,
    pub iam_role_arn: String,
    pub iam_role_external_id: String,
}

/// The subscribe request: where it goes, its body and the `curl` line that sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscribeRequest {
    pub method: &'static str,
    pub url: String,
    pub body: SubscribeBody,
    pub curl: String,
}

/// The subscribe request for `customer` to the API at `api_url`.
#[must_use]
pub fn subscribe_request(customer: &Customer, role_arn: &str, api_url: &str) -> SubscribeRequest {
    let body = SubscribeBody {
        api_key: API_KEY_PLACEHOLDER.into(),
        app_key: APP_KEY_PLACEHOLDER.into(),
        bucket_name: customer.bucket.as_str().into(),
        bucket_region: customer.region.as_str().into(),
        iam_role_arn: role_arn.into(),
        iam_role_external_id: customer.external_id.as_str().into(),
    };
    let url = format!("{api_url}/v1/subscriptions");
    let json = serde_json::to_string(&body).unwrap_or_default();
    let curl = format!(
        "curl -sS -X POST {} -H 'Content-Type: application/json' -d {}",
        shell_quote(&url),
        shell_quote(&json)
    );
    SubscribeRequest {
        method: "POST",
        url,
        body,
        curl,
    }
}

/// The CloudFormation template's parameters for this customer (those left at their default,
/// `TrailPrefix` and `OrganizationId` when empty, are omitted).
#[must_use]
pub fn cloudformation_parameters(
    customer: &Customer,
    topic: &TopicArn,
    our_account: &str,
) -> BTreeMap<&'static str, String> {
    let mut parameters = BTreeMap::from([
        ("BucketName", customer.bucket.as_str().to_owned()),
        ("OurAccountId", our_account.to_owned()),
        ("ExternalId", customer.external_id.as_str().to_owned()),
        ("TopicArn", topic.arn.clone()),
        ("RoleName", ROLE_NAME.to_owned()),
    ]);
    if !customer.prefix.trail.is_empty() {
        parameters.insert("TrailPrefix", customer.prefix.trail.clone());
    }
    if let Some(org) = &customer.prefix.organization {
        parameters.insert("OrganizationId", org.clone());
    }
    parameters
}

/// How to deploy the template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudFormation {
    /// The template, relative to the repository.
    pub template: &'static str,
    pub stack_name: String,
    pub parameters: BTreeMap<&'static str, String>,
    /// `aws cloudformation deploy ...`, to run in the bucket's account and region.
    pub deploy_command: String,
}

pub(super) fn cloudformation(
    customer: &Customer,
    topic: &TopicArn,
    our_account: &str,
) -> CloudFormation {
    let parameters = cloudformation_parameters(customer, topic, our_account);
    let stack_name = format!(
        "bigpanda-cloudtrail-{}",
        customer.bucket.as_str().replace('.', "-")
    );
    let overrides: Vec<String> = parameters
        .iter()
        .map(|(k, v)| shell_quote(&format!("{k}={v}")))
        .collect();
    let deploy_command = format!(
        "aws cloudformation deploy --region {} --stack-name {stack_name} --template-file {} \
         --capabilities CAPABILITY_NAMED_IAM --parameter-overrides {}",
        customer.region.as_str(),
        TEMPLATE_PATH.rsplit('/').next().unwrap_or(TEMPLATE_PATH),
        overrides.join(" ")
    );
    CloudFormation {
        template: TEMPLATE_PATH,
        stack_name,
        parameters,
        deploy_command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::onboard::fixtures::*;
    use serde_json::json;

    #[test]
    fn trust_policy_names_our_root_and_the_external_id() {
        let id = ExternalId::parse("abc123").expect("id");
        assert_eq!(
            to_value(&trust_policy("aws", "123456789012", &id)),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "AllowBigPandaAssumeRole",
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": "abc123"}}
                }]
            })
        );
    }

    #[test]
    fn permission_policy_is_one_get_object_on_the_prefix() {
        let c = customer("team");
        assert_eq!(
            to_value(&permission_policy("aws", &c.bucket, &c.prefix)),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "AllowBigPandaGetObject",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::acme-trail/team/*"
                }]
            })
        );
        let c = customer("");
        let p = to_value(&permission_policy("aws-cn", &c.bucket, &c.prefix));
        assert_eq!(
            p["Statement"][0]["Resource"],
            "arn:aws-cn:s3:::acme-trail/*"
        );
    }

    #[test]
    fn notification_is_log_files_only_to_our_topic() {
        let c = customer("team/");
        assert_eq!(
            to_value(&notification_configuration(&topic(), &c.prefix, &c.account)),
            json!({"TopicConfigurations": [{
                "Id": NOTIFICATION_ID,
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:cloudtrail-changes",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [
                    {"Name": "prefix", "Value": "team/AWSLogs/111122223333/CloudTrail/"},
                    {"Name": "suffix", "Value": ".json.gz"}
                ]}}
            }]})
        );
    }

    #[test]
    fn topic_statement_allows_s3_from_the_customers_bucket_only() {
        let c = customer("");
        assert_eq!(
            to_value(&topic_policy_statement(&topic(), &c.bucket, &c.account)),
            json!({
                "Sid": "AllowS3Publish111122223333acmetrail",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "SNS:Publish",
                "Resource": "arn:aws:sns:us-east-1:123456789012:cloudtrail-changes",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": "111122223333"},
                    "ArnLike": {"aws:SourceArn": "arn:aws:s3:::acme-trail"}
                }
            })
        );
    }

    #[test]
    fn subscribe_request_is_a_valid_body_once_keys_are_filled_in() {
        let c = customer("");
        let request = subscribe_request(&c, &role_arn("aws", &c.account), "http://127.0.0.1:8080");
        assert_eq!(request.url, "http://127.0.0.1:8080/v1/subscriptions");
        let mut body = to_value(&request.body);
        body["apiKey"] = json!("api-key");
        body["appKey"] = json!("app-key");
        let parsed = crate::subscriptions::validate::subscribe_request(&body).expect("valid");
        assert_eq!(
            parsed.iam_role_arn.as_str(),
            "arn:aws:iam::111122223333:role/BigPandaCloudTrailReader"
        );
        assert_eq!(
            request.curl,
            "curl -sS -X POST http://127.0.0.1:8080/v1/subscriptions -H 'Content-Type: \
             application/json' -d '{\"apiKey\":\"<BigPanda API key>\",\"appKey\":\"<BigPanda app \
             key>\",\"bucket_name\":\"acme-trail\",\"bucket_region\":\"us-east-1\",\
             \"iam_role_arn\":\"arn:aws:iam::111122223333:role/BigPandaCloudTrailReader\",\
             \"iam_role_external_id\":\"ext-id.1\"}'"
        );
    }

    #[test]
    fn cloudformation_parameters_omit_defaults() {
        let p = cloudformation_parameters(&customer(""), &topic(), "123456789012");
        assert_eq!(
            p.keys().copied().collect::<Vec<_>>(),
            [
                "BucketName",
                "ExternalId",
                "OurAccountId",
                "RoleName",
                "TopicArn"
            ]
        );
        let p = cloudformation_parameters(&customer("x/AWSLogs/o-abc123defg"), &topic(), "1");
        assert_eq!(p.get("TrailPrefix").map(String::as_str), Some("x/"));
        assert_eq!(
            p.get("OrganizationId").map(String::as_str),
            Some("o-abc123defg")
        );
    }
}
