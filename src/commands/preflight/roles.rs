//! Preflight: every subscription's role, assumed with its external ID.

use super::*;

/// Assumes every subscription's role with its external ID; one line per bucket.
pub(super) async fn role_checks(
    aws: &SdkConfig,
    subs: &[Subscription],
    identity: Option<&str>,
    report: &mut Report<'_>,
) -> io::Result<()> {
    if subs.is_empty() {
        return report.ok("subscription roles", "no subscriptions to check");
    }
    let roles = Roles::new(aws);
    let mut tried: HashMap<(String, String), Result<(), CredentialsError>> = HashMap::new();
    for s in subs {
        let key = (s.iam_role_arn.clone(), s.iam_role_external_id.clone());
        let result = match tried.get(&key) {
            Some(r) => r.clone(),
            None => {
                let r = roles.verify(&s.iam_role_arn, &s.iam_role_external_id).await;
                tried.insert(key, r.clone());
                r
            }
        };
        report.add(&role_finding(s, identity, &result))?;
    }
    Ok(())
}

pub(super) fn role_finding(
    s: &Subscription,
    identity: Option<&str>,
    result: &Result<(), CredentialsError>,
) -> Finding {
    let what = format!("role of bucket {}", s.bucket_name);
    let (status, detail, fix) = match result {
        Ok(()) => (
            Status::Ok,
            format!("{} assumed with its external ID", s.iam_role_arn),
            String::new(),
        ),
        Err(CredentialsError::Refused { code, message, .. }) => (
            Status::Fail,
            format!(
                "AWS refused to let us assume {} ({code}: {message})",
                s.iam_role_arn
            ),
            format!(
                "the role's owner must let {} assume {} with the condition sts:ExternalId = \
                 {:?} in its trust policy, and the role must exist; or subscribe the bucket \
                 again with the right role and external ID",
                identity.unwrap_or("the daemon's identity"),
                s.iam_role_arn,
                s.iam_role_external_id
            ),
        ),
        Err(CredentialsError::Unavailable { detail, .. }) => (
            Status::Fail,
            format!("could not ask STS to assume {} ({detail})", s.iam_role_arn),
            format!("{NETWORK_FIX}; then retry"),
        ),
    };
    Finding {
        status,
        what,
        detail,
        fix,
    }
}
