//! Sentences a customer can act on when the subscribe-time role check fails. Pure.
//!
//! AWS answers `AccessDenied` alike for a role that does not exist, a trust policy that does not
//! name our account, and a wrong external ID (on purpose: it must not reveal which). So the
//! sentence names the three in the order they are usually wrong, with the exact values to
//! compare; a sample key, when given, then separates "cannot assume" from "cannot read".

/// What reading the sample key with the role's credentials gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleRead {
    /// The object could be read: the set-up works.
    Readable,
    /// S3 said AccessDenied: the role's permission policy (or the bucket policy, or a KMS key)
    /// does not let it read the object.
    Denied,
    /// The key does not exist.
    NoSuchKey,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The bucket is in another region than `bucket_region` says.
    WrongRegion,
    /// Something else: the code and message AWS sent.
    Other(String),
}

/// Why we may not assume `role` with `external_id`, for the customer.
#[must_use]
pub fn refused(role: &str, external_id: &str, our_account: Option<&str>, code: &str) -> String {
    let principal = our_account.map_or_else(
        || "our AWS account".to_owned(),
        |a| format!("our AWS account {a} (principal arn:aws:iam::{a}:root)"),
    );
    let role_account = crate::util::arn::Arn::parse(role).map_or("?", |arn| arn.account);
    format!(
        "AWS refused to let us assume {role} ({code}). AWS gives the same answer for three \
         mistakes; check them in this order: (1) the role exists in account {role_account} with \
         exactly this name; (2) its trust policy allows sts:AssumeRole to {principal}; (3) the \
         trust policy's sts:ExternalId condition equals \"{external_id}\" exactly (it is \
         case-sensitive)."
    )
}

/// What a failed sample read means, for the customer; `None` when the object was readable.
#[must_use]
pub fn sample(read: &SampleRead, bucket: &str, key: &str, region: &str) -> Option<String> {
    let object = format!("s3://{bucket}/{key}");
    Some(match read {
        SampleRead::Readable => return None,
        SampleRead::Denied => format!(
            "the role was assumed, but it may not read {object}: allow s3:GetObject on \
             arn:aws:s3:::{bucket}/* (or the trail's prefix) in the role's permission policy, \
             check that the bucket policy does not deny it, and if the bucket uses SSE-KMS allow \
             kms:Decrypt on its key"
        ),
        SampleRead::NoSuchKey => format!(
            "the role was assumed, but {object} does not exist: give the key of an existing log \
             file as sample_key (or leave it out)"
        ),
        SampleRead::NoSuchBucket => format!("the bucket {bucket} does not exist"),
        SampleRead::WrongRegion => format!(
            "the bucket {bucket} is not in {region}: set bucket_region to the bucket's region"
        ),
        SampleRead::Other(detail) => format!("reading {object} with the role failed: {detail}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_role_account_our_account_and_the_external_id() {
        let text = refused(
            "arn:aws:iam::111122223333:role/Reader",
            "ext-42",
            Some("123456789012"),
            "AccessDenied",
        );
        assert!(text.contains("account 111122223333"), "{text}");
        assert!(text.contains("arn:aws:iam::123456789012:root"), "{text}");
        assert!(text.contains("\"ext-42\""), "{text}");
    }

    #[test]
    fn a_refusal_without_our_account_still_reads_well() {
        let text = refused(
            "arn:aws:iam::111122223333:role/R",
            "x1",
            None,
            "AccessDenied",
        );
        assert!(text.contains("to our AWS account;"), "{text}");
    }

    #[test]
    fn each_sample_read_failure_says_what_to_change() {
        let say = |r| sample(&r, "b", "k", "eu-west-1").unwrap_or_default();
        assert!(say(SampleRead::Denied).contains("s3:GetObject on arn:aws:s3:::b/*"));
        assert!(say(SampleRead::Denied).contains("kms:Decrypt"));
        assert!(say(SampleRead::NoSuchKey).contains("does not exist"));
        assert!(say(SampleRead::WrongRegion).contains("not in eu-west-1"));
        assert_eq!(sample(&SampleRead::Readable, "b", "k", "r"), None);
    }
}
