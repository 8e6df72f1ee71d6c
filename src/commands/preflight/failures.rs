//! Preflight: AWS call failures, sorted by what fixes them (network, credentials, access,
//! not found).

use super::*;
use crate::util::errors::error_chain;

/// An AWS call's failure, sorted by what fixes it.
#[derive(Debug, Clone)]
pub(super) struct AwsFailure {
    pub(super) problem: Problem,
    /// AWS's error code, when it sent a readable one.
    pub(super) code: Option<String>,
    /// The code and message, or the transport error.
    pub(super) detail: String,
}

/// Error codes that mean a queue does not exist.
pub(super) const NOT_FOUND_CODES: [&str; 4] = [
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NonExistentQueue",
    "ResourceNotFoundException",
];
/// Error codes that mean the credentials themselves are not accepted.
pub(super) const CREDENTIALS_CODES: [&str; 8] = [
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSecurityToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];
/// Error codes that mean "not allowed".
pub(super) const DENIED_CODES: [&str; 3] =
    ["AccessDenied", "AccessDeniedException", "KMS.AccessDenied"];

pub(super) fn aws_failure<E>(error: &SdkError<E, HttpResponse>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let chain = error_chain(error);
    let failure = |problem, code: Option<&str>, detail: String| AwsFailure {
        problem,
        code: code.map(str::to_owned),
        detail,
    };
    match error {
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if chain.contains("no credentials") || chain.contains("credential provider") =>
        {
            failure(
                Problem::Credentials,
                None,
                "none found (the SDK tried the environment, the profile, web identity, ECS and \
                 instance metadata)"
                    .into(),
            )
        }
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => {
            failure(Problem::Unreachable, None, chain)
        }
        SdkError::TimeoutError(_) => failure(Problem::Unreachable, None, chain),
        SdkError::ServiceError(s) => {
            let service = s.err();
            let code = service.code();
            let status = s.raw().status().as_u16();
            let detail = match (code, service.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                (None, Some(m)) => format!("HTTP {status}: {m}"),
                (None, None) => format!("HTTP {status}"),
            };
            let problem = match code {
                Some(c) if NOT_FOUND_CODES.contains(&c) => Problem::NotFound,
                Some(c) if CREDENTIALS_CODES.contains(&c) => Problem::Credentials,
                Some(c) if DENIED_CODES.contains(&c) => Problem::AccessDenied,
                // moto's (and some proxies') auth errors carry a code the SDK cannot parse.
                None if matches!(status, 401 | 403) => Problem::AccessDenied,
                _ => Problem::Other,
            };
            failure(problem, code, detail)
        }
        _ => failure(Problem::Other, None, chain),
    }
}

/// Where the daemon's AWS calls go, for messages.
pub(super) fn endpoint_of(aws: &SdkConfig, service: &str) -> String {
    match (aws.endpoint_url(), aws.region()) {
        (Some(e), _) => e.to_owned(),
        (None, Some(r)) => format!("{service}.{r}.amazonaws.com"),
        (None, None) => format!("{service} (no region)"),
    }
}

pub(super) const NETWORK_FIX: &str =
    "check aws.endpoint_url (CTC__AWS__ENDPOINT_URL; empty for AWS \
                           itself), DNS, proxies (HTTPS_PROXY) and the firewall or security \
                           groups between the daemon and AWS";
pub(super) const CREDENTIALS_FIX: &str =
    "give the daemon valid AWS credentials: AWS_ACCESS_KEY_ID and \
                               AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web identity token, or an \
                               instance or task role";
