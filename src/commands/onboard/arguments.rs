//! `onboard`: the arguments, checked: the customer, the key prefix, our topic.

use super::*;

/// The customer's side, from the arguments, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub bucket: BucketName,
    /// The bucket owner's 12-digit account.
    pub account: String,
    pub region: Region,
    pub prefix: KeyPrefix,
    pub external_id: ExternalId,
    /// Whether `external_id` was generated here (not given with `--external-id`).
    pub external_id_generated: bool,
}

impl Customer {
    /// Checks every argument (generating the external ID when absent).
    ///
    /// # Errors
    /// [`OnboardError::Invalid`] naming the first bad argument and the rule it breaks.
    pub fn from_args(args: &OnboardArgs) -> Result<Self, OnboardError> {
        let invalid = |arg: &str, value: &str, rule: String| {
            OnboardError::Invalid(format!("--{arg} {value:?}: {rule}"))
        };
        let bucket =
            BucketName::parse(&args.bucket).map_err(|e| invalid("bucket", &args.bucket, e))?;
        let account =
            parse_account(&args.account).map_err(|e| invalid("account", &args.account, e))?;
        let region = Region::parse(&args.region).map_err(|e| invalid("region", &args.region, e))?;
        let prefix =
            KeyPrefix::parse(&args.prefix).map_err(|e| invalid("prefix", &args.prefix, e))?;
        let (external_id, external_id_generated) = match &args.external_id {
            Some(given) => (
                ExternalId::parse(given).map_err(|e| invalid("external-id", given, e))?,
                false,
            ),
            None => (generate_external_id(), true),
        };
        Ok(Self {
            bucket,
            account,
            region,
            prefix,
            external_id,
            external_id_generated,
        })
    }
}

/// Checks a 12-digit AWS account ID.
///
/// # Errors
/// A message with the rule.
pub fn parse_account(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err("must be a 12-digit AWS account ID".into())
    }
}

/// A random external ID: [`EXTERNAL_ID_LEN`] letters and digits.
#[must_use]
pub fn generate_external_id() -> ExternalId {
    let text = Alphanumeric.sample_string(&mut rand::rng(), EXTERNAL_ID_LEN);
    ExternalId::parse(&text).expect("32 letters and digits are a valid external ID")
}

/// The key prefix of the customer's trail: `""` or ending in `/`, optionally ending in
/// `AWSLogs/o-<org>/` for an organization trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix {
    /// The part before `AWSLogs/`: `""` or ending in `/`.
    pub trail: String,
    /// The organization ID, for an organization trail.
    pub organization: Option<String>,
}

impl KeyPrefix {
    /// Reads `--prefix`: the trail's `S3KeyPrefix` (`team`, `team/`, `a/b/`), or that followed by
    /// `AWSLogs/o-<org>` for an organization trail; a missing final `/` is added.
    ///
    /// # Errors
    /// A message with the rule broken: characters outside S3's safe set (or IAM's wildcards
    /// `*`, `?`), a leading `/`, an empty, `.` or `..` segment, or `AWSLogs/` followed by
    /// anything but an organization ID.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self {
                trail: String::new(),
                organization: None,
            });
        }
        if text.len() > MAX_PREFIX_LEN {
            return Err(format!("must be at most {MAX_PREFIX_LEN} characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!-_.()/".contains(&b))
        {
            return Err("may hold only letters, digits, / and !-_.()".into());
        }
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        let segments: Vec<&str> = trimmed.split('/').collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            return Err("must not start with / or hold an empty, . or .. segment".into());
        }
        let (trail, organization) = match segments.as_slice() {
            [before @ .., "AWSLogs", org] if is_org_id(org) => (before, Some((*org).to_owned())),
            all => (all, None),
        };
        if trail.contains(&"AWSLogs") {
            return Err(
                "is the part of the keys before AWSLogs/ (for an organization trail, up to the \
                 organization ID: P/AWSLogs/o-xxxxxxxxxx/)"
                    .into(),
            );
        }
        let trail = trail.iter().map(|s| format!("{s}/")).collect();
        Ok(Self {
            trail,
            organization,
        })
    }

    /// The whole prefix: `trail` + `AWSLogs/o-<org>/` for an organization trail.
    #[must_use]
    pub fn full(&self) -> String {
        match &self.organization {
            Some(org) => format!("{}AWSLogs/{org}/", self.trail),
            None => self.trail.clone(),
        }
    }

    /// The notification's filter prefix: the account's CloudTrail logs
    /// (`trail` + `AWSLogs/ACCOUNT/CloudTrail/`), or every member account's for an
    /// organization trail (`trail` + `AWSLogs/o-<org>/`).
    #[must_use]
    pub fn notification_prefix(&self, account: &str) -> String {
        match &self.organization {
            Some(_) => self.full(),
            None => format!("{}AWSLogs/{account}/CloudTrail/", self.trail),
        }
    }
}

/// `o-` and 1 to 32 lowercase letters or digits (as `envelope::classify_key` accepts).
pub(super) fn is_org_id(s: &str) -> bool {
    s.strip_prefix("o-").is_some_and(|id| {
        (1..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Our SNS topic's ARN, `arn:<partition>:sns:<region>:<account>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicArn {
    pub arn: String,
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl TopicArn {
    /// Checks `notifications.topic_arn`.
    ///
    /// # Errors
    /// A message saying the setting is empty or what is wrong with it.
    pub fn parse(arn: &str) -> Result<Self, String> {
        if arn.is_empty() {
            return Err(
                "is not set: set it to our SNS topic's ARN (CTC__NOTIFICATIONS__TOPIC_ARN \
                 or [notifications] topic_arn), the topic customers' buckets notify"
                    .into(),
            );
        }
        let rule = || {
            format!(
                "must be an SNS topic ARN, arn:<partition>:sns:<region>:<12-digit account>:<name> \
                 (got {arn:?})"
            )
        };
        let Some(crate::util::arn::Arn {
            partition,
            service: "sns",
            region,
            account,
            resource: name,
        }) = crate::util::arn::Arn::parse(arn)
        else {
            return Err(rule());
        };
        let name_ok = (1..=256).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let partition_ok = partition.starts_with("aws")
            && partition
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-');
        if !partition_ok || Region::parse(region).is_err() || parse_account(account).is_err() {
            return Err(rule());
        }
        if !name_ok {
            return Err(format!(
                "{} (a name of letters, digits, - and _: S3 notifies only standard topics, not .fifo)",
                rule()
            ));
        }
        Ok(Self {
            arn: arn.to_owned(),
            partition: (*partition).to_owned(),
            region: (*region).to_owned(),
            account: (*account).to_owned(),
        })
    }
}

/// S3 notifies only a topic in the bucket's own region.
pub(super) fn check_same_region(topic: &TopicArn, region: &Region) -> Result<(), OnboardError> {
    if topic.region == region.as_str() {
        return Ok(());
    }
    Err(OnboardError::Invalid(format!(
        "--region {:?}: the bucket must be in the region of our topic ({}, \
         notifications.topic_arn): S3 notifies only a topic in the bucket's own region; onboard \
         with a topic in {} (CTC__NOTIFICATIONS__TOPIC_ARN=arn:{}:sns:{}:...)",
        region.as_str(),
        topic.region,
        region.as_str(),
        topic.partition,
        region.as_str()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::onboard::fixtures::*;

    #[test]
    fn generated_external_ids_are_valid_and_random() {
        let a = generate_external_id();
        let b = generate_external_id();
        assert_eq!(a.as_str().len(), EXTERNAL_ID_LEN);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(ExternalId::parse(a.as_str()).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn prefixes_are_normalized_and_split_at_the_organization() {
        let p = KeyPrefix::parse("").expect("empty");
        assert_eq!(
            (p.full(), p.notification_prefix("111122223333")),
            (String::new(), "AWSLogs/111122223333/CloudTrail/".into())
        );
        for given in ["team", "team/"] {
            let p = KeyPrefix::parse(given).expect("prefix");
            assert_eq!(p.full(), "team/");
            assert_eq!(
                p.notification_prefix("111122223333"),
                "team/AWSLogs/111122223333/CloudTrail/"
            );
        }
        let p = KeyPrefix::parse("a/b/AWSLogs/o-abc123defg").expect("org prefix");
        assert_eq!(p.trail, "a/b/");
        assert_eq!(p.organization.as_deref(), Some("o-abc123defg"));
        assert_eq!(p.full(), "a/b/AWSLogs/o-abc123defg/");
        assert_eq!(
            p.notification_prefix("111122223333"),
            "a/b/AWSLogs/o-abc123defg/"
        );
        let p = KeyPrefix::parse("AWSLogs/o-abc123defg/").expect("org without trail prefix");
        assert_eq!(
            (p.trail.as_str(), p.full()),
            ("", "AWSLogs/o-abc123defg/".into())
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in [
            "/team",
            "a//b",
            "a/../b",
            "./a",
            "te*m",
            "te?m",
            "te am",
            "${aws:username}",
            "AWSLogs/111122223333/",
            "AWSLogs",
            "AWSLogs/o-ABC/",
            "x/AWSLogs/o-abc/CloudTrail/",
        ] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(KeyPrefix::parse(&"a".repeat(MAX_PREFIX_LEN + 1)).is_err());
    }

    #[test]
    fn notified_keys_are_the_log_files_the_daemon_reads() {
        use crate::core::envelope::classify_key;
        let file = "us-east-1/2024/01/02/111122223333_CloudTrail_us-east-1_20240102T0000Z_x";
        for given in ["", "team", "a/b/AWSLogs/o-abc123defg"] {
            let p = KeyPrefix::parse(given).expect("prefix");
            let notified = p.notification_prefix("111122223333");
            let log = format!(
                "{}AWSLogs/111122223333/CloudTrail/{file}{LOG_SUFFIX}",
                p.trail
            );
            let log = match &p.organization {
                Some(org) => log.replace("AWSLogs/", &format!("AWSLogs/{org}/")),
                None => log,
            };
            assert_eq!(classify_key(&log), Ok(()), "{log}");
            assert!(
                log.starts_with(&notified) && log.starts_with(&p.full()),
                "{log}"
            );
            let digest = log.replace("/CloudTrail/", "/CloudTrail-Digest/");
            assert!(classify_key(&digest).is_err(), "{digest}");
            // One S3 filter prefix cannot leave out an organization's digest files.
            assert_eq!(
                digest.starts_with(&notified),
                p.organization.is_some(),
                "{digest}"
            );
        }
    }

    #[test]
    fn topic_arns_are_checked() {
        let t = topic();
        assert_eq!(
            (t.partition.as_str(), t.region.as_str(), t.account.as_str()),
            ("aws", "us-east-1", "123456789012")
        );
        let gov = TopicArn::parse("arn:aws-us-gov:sns:us-gov-west-1:123456789012:t").expect("gov");
        assert_eq!(gov.partition, "aws-us-gov");
        let empty = TopicArn::parse("").expect_err("empty");
        assert!(empty.contains("CTC__NOTIFICATIONS__TOPIC_ARN"), "{empty}");
        for bad in [
            "arn:aws:sqs:us-east-1:123456789012:q",
            "arn:aws:sns:us-east-1:12345:t",
            "arn:aws:sns:us-east-1:123456789012:t.fifo",
            "arn:aws:sns:us-east-1:123456789012",
            "arn:aws:sns:nowhere:123456789012:t",
        ] {
            assert!(TopicArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments_are_checked_and_named() {
        let args = |bucket: &str, account: &str, region: &str, prefix: &str, ext: Option<&str>| {
            OnboardArgs {
                bucket: bucket.into(),
                account: account.into(),
                prefix: prefix.into(),
                external_id: ext.map(str::to_owned),
                region: region.into(),
                format: "text".into(),
            }
        };
        let cases = [
            (
                args("Bad_Bucket", "111122223333", "us-east-1", "", None),
                "--bucket",
            ),
            (args("acme", "1111", "us-east-1", "", None), "--account"),
            (args("acme", "111122223333", "moon-1", "", None), "--region"),
            (
                args("acme", "111122223333", "us-east-1", "/x", None),
                "--prefix",
            ),
            (
                args("acme", "111122223333", "us-east-1", "", Some("a b")),
                "--external-id",
            ),
        ];
        for (args, name) in cases {
            let error = Customer::from_args(&args).expect_err(name).to_string();
            assert!(error.starts_with(name), "{error}");
        }
        let ok = Customer::from_args(&args("acme", "111122223333", "eu-west-1", "", None))
            .expect("valid");
        assert!(ok.external_id_generated);
    }

    #[test]
    fn the_bucket_must_be_in_the_topics_region() {
        let error = check_same_region(&topic(), &Region::parse("eu-west-1").expect("region"))
            .expect_err("mismatch")
            .to_string();
        assert!(
            error.contains("--region") && error.contains("us-east-1"),
            "{error}"
        );
        assert!(check_same_region(&topic(), &Region::parse("us-east-1").expect("r")).is_ok());
    }
}
