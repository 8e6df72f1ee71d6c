//! Preflight: the daemon's own AWS identity (STS).

use super::*;

/// STS `GetCallerIdentity`: the credentials work and STS (needed to assume customer roles) is
/// reachable. Returns the identity's ARN.
pub(super) async fn identity_check(
    aws: &SdkConfig,
    report: &mut Report<'_>,
) -> io::Result<Option<String>> {
    let what = "AWS credentials";
    if aws.region().is_none() {
        report.skip(what, "no region")?;
        return Ok(None);
    }
    let sts = aws_sdk_sts::Client::new(aws);
    match sts.get_caller_identity().send().await {
        Ok(identity) => {
            let arn = identity.arn().unwrap_or("unknown").to_owned();
            report.ok(what, format!("{arn} (STS GetCallerIdentity)"))?;
            Ok(Some(arn))
        }
        Err(e) => {
            let f = aws_failure(&e);
            let (why, fix) = match f.problem {
                Problem::Unreachable => (
                    format!(
                        "cannot reach STS at {} ({}); the daemon assumes customer roles through it",
                        endpoint_of(aws, "sts"),
                        f.detail
                    ),
                    NETWORK_FIX.to_owned(),
                ),
                Problem::Credentials | Problem::AccessDenied => (
                    format!("not usable: {}", f.detail),
                    CREDENTIALS_FIX.to_owned(),
                ),
                _ => (
                    format!("STS GetCallerIdentity failed ({})", f.detail),
                    "retry; if it persists, check the AWS settings and credentials".to_owned(),
                ),
            };
            report.fail(what, why, fix)?;
            Ok(None)
        }
    }
}
