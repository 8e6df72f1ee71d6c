//! AWS clients for the daemon and, per subscription, S3 clients holding the credentials of the
//! customer's role (AssumeRole with its external ID). Credentials are cached per role until five
//! minutes before they expire, with one refresh in flight per role, so a burst of messages for
//! one bucket makes one STS call. Credentials never reach a log line.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Credentials are refreshed this long before they expire.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Session length asked of STS (one hour: the default maximum of a role).
const SESSION_SECONDS: i32 = 3600;
const SESSION_NAME: &str = "cloudtrail-changes";

/// The `[aws]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Endpoint for every AWS client (a local AWS-protocol endpoint); empty: AWS itself.
    pub endpoint_url: String,
    /// Region of the daemon's own clients (SQS, STS, DynamoDB); empty: the SDK's default chain.
    pub region: String,
}

/// The daemon's own AWS configuration: the SDK's default credential chain (environment,
/// profile, web identity, ECS, instance metadata), with the endpoint and region of `settings`.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if !settings.endpoint_url.is_empty() {
        loader = loader.endpoint_url(&settings.endpoint_url);
    }
    if !settings.region.is_empty() {
        loader = loader.region(Region::new(settings.region.clone()));
    }
    loader.load().await
}

/// Why a role's credentials could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialsError {
    /// STS refused: the role, its trust policy or the external ID is wrong. The customer must
    /// fix their side; retrying soon will not help.
    #[error("AWS refused to let us assume {role}: {code}: {message}")]
    Refused {
        role: String,
        code: String,
        message: String,
    },
    /// STS could not be reached or failed: retry later.
    #[error("could not assume {role}: {detail}")]
    Unavailable { role: String, detail: String },
}

/// One credentials slot per (role, external ID); its async lock admits one refresh at a time.
type Slots = HashMap<(String, String), Arc<tokio::sync::Mutex<Option<Credentials>>>>;

/// Assumes customer roles and hands out S3 clients holding their credentials.
pub struct Roles {
    sts: aws_sdk_sts::Client,
    base: SdkConfig,
    path_style: bool,
    slots: Mutex<Slots>,
    our_account: tokio::sync::OnceCell<Option<String>>,
}

impl Roles {
    /// Roles assumed through the STS of `base`; S3 clients use path-style addressing when an
    /// endpoint is set (a local endpoint on an IP address has no bucket subdomains).
    #[must_use]
    pub fn new(base: &SdkConfig) -> Self {
        Self {
            sts: aws_sdk_sts::Client::new(base),
            base: base.clone(),
            path_style: base.endpoint_url().is_some(),
            slots: Mutex::new(HashMap::new()),
            our_account: tokio::sync::OnceCell::new(),
        }
    }

    /// Checks that `role` can be assumed with `external_id` (the API's subscribe check).
    ///
    /// # Errors
    /// [`CredentialsError::Refused`] with AWS's code and message when STS says no.
    pub async fn verify(&self, role: &str, external_id: &str) -> Result<(), CredentialsError> {
        self.assume(role, external_id).await.map(|_| ())
    }

    /// An S3 client for `region` with the credentials of `role`, cached until near expiry.
    ///
    /// # Errors
    /// [`CredentialsError`] when the role cannot be assumed.
    pub async fn s3_client(
        &self,
        role: &str,
        external_id: &str,
        region: &str,
    ) -> Result<aws_sdk_s3::Client, CredentialsError> {
        let credentials = self
            .credentials(role, external_id, SystemTime::now())
            .await?;
        let config = aws_sdk_s3::config::Builder::from(&self.base)
            .region(Region::new(region.to_owned()))
            .credentials_provider(credentials)
            .force_path_style(self.path_style)
            .build();
        Ok(aws_sdk_s3::Client::from_conf(config))
    }

    /// Our own AWS account (STS GetCallerIdentity, asked once), for messages to customers.
    pub async fn our_account(&self) -> Option<String> {
        self.our_account
            .get_or_init(|| async {
                let identity = self.sts.get_caller_identity().send().await.ok()?;
                identity.account().map(str::to_owned)
            })
            .await
            .clone()
    }

    /// Reads the first byte of `bucket/key` with the role's credentials (the subscribe-time
    /// check of a sample key).
    ///
    /// # Errors
    /// [`CredentialsError`] when the role cannot be assumed.
    pub async fn read_sample(
        &self,
        role: &str,
        external_id: &str,
        region: &str,
        bucket: &str,
        key: &str,
        expected_owner: &str,
    ) -> Result<crate::aws::diagnose::SampleRead, CredentialsError> {
        use crate::aws::diagnose::SampleRead;
        let s3 = self.s3_client(role, external_id, region).await?;
        let result = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .expected_bucket_owner(expected_owner)
            .range("bytes=0-0")
            .send()
            .await;
        let Err(e) = result else {
            return Ok(SampleRead::Readable);
        };
        let code = e.as_service_error().and_then(ProvideErrorMetadata::code);
        let status = e.raw_response().map(|r| r.status().as_u16());
        Ok(match (code, status) {
            (Some("NoSuchKey"), _) | (None, Some(404)) => SampleRead::NoSuchKey,
            (Some("NoSuchBucket"), _) => SampleRead::NoSuchBucket,
            (Some("PermanentRedirect" | "AuthorizationHeaderMalformed"), _) | (_, Some(301)) => {
                SampleRead::WrongRegion
            }
            (Some("AccessDenied"), _) | (_, Some(403)) => SampleRead::Denied,
            _ => SampleRead::Other(DisplayErrorContext(&e).to_string()),
        })
    }

    /// Forgets the cached credentials of `role` (S3 said AccessDenied: the customer may have
    /// changed the role since).
    pub fn forget(&self, role: &str, external_id: &str) {
        self.lock()
            .remove(&(role.to_owned(), external_id.to_owned()));
    }

    async fn credentials(
        &self,
        role: &str,
        external_id: &str,
        now: SystemTime,
    ) -> Result<Credentials, CredentialsError> {
        let slot = self
            .lock()
            .entry((role.to_owned(), external_id.to_owned()))
            .or_default()
            .clone();
        // Holding the slot's lock across the STS call makes concurrent callers for one role
        // wait for this refresh instead of starting their own.
        let mut cached = slot.lock().await;
        if let Some(credentials) = cached.as_ref().filter(|c| fresh(c, now)) {
            return Ok(credentials.clone());
        }
        let credentials = self.assume(role, external_id).await?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }

    async fn assume(&self, role: &str, external_id: &str) -> Result<Credentials, CredentialsError> {
        let output = self
            .sts
            .assume_role()
            .role_arn(role)
            .external_id(external_id)
            .role_session_name(SESSION_NAME)
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| {
                let error = classify(role, &e);
                let outcome = match error {
                    CredentialsError::Refused { .. } => "refused",
                    CredentialsError::Unavailable { .. } => "error",
                };
                metrics::counter!(crate::metrics::STS_ASSUME_ROLE, "outcome" => outcome)
                    .increment(1);
                error
            })?;
        metrics::counter!(crate::metrics::STS_ASSUME_ROLE, "outcome" => "ok").increment(1);
        let Some(c) = output.credentials() else {
            return Err(CredentialsError::Unavailable {
                role: role.to_owned(),
                detail: "STS answered without credentials".into(),
            });
        };
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "assume-role",
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether cached credentials are still good at `now` (more than five minutes left).
#[must_use]
pub fn fresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials
        .expiry()
        .is_none_or(|expiry| now + REFRESH_BEFORE_EXPIRY < expiry)
}

fn classify(role: &str, error: &SdkError<AssumeRoleError, HttpResponse>) -> CredentialsError {
    let status = error.raw_response().map(|r| r.status().as_u16());
    let service = error.as_service_error();
    let code = service.and_then(ProvideErrorMetadata::code);
    // moto's (and some proxies') auth errors carry a code the SDK cannot parse: the status
    // still says "refused".
    let refused = matches!(
        code,
        Some(
            "AccessDenied"
                | "AccessDeniedException"
                | "InvalidClientTokenId"
                | "MalformedPolicyDocument"
                | "ValidationError"
                | "RegionDisabledException"
        )
    ) || matches!(status, Some(400 | 403));
    if refused {
        CredentialsError::Refused {
            role: role.to_owned(),
            code: code.unwrap_or("AccessDenied").to_owned(),
            message: service.and_then(ProvideErrorMetadata::message).map_or_else(
                || format!("access denied (HTTP {})", status.unwrap_or(0)),
                str::to_owned,
            ),
        }
    } else {
        CredentialsError::Unavailable {
            role: role.to_owned(),
            detail: DisplayErrorContext(error).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring_in(secs: u64, now: SystemTime) -> Credentials {
        Credentials::new("a", "b", None, Some(now + Duration::from_secs(secs)), "t")
    }

    #[test]
    fn credentials_are_fresh_until_five_minutes_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(fresh(&expiring_in(3600, now), now));
        assert!(fresh(&expiring_in(301, now), now));
        assert!(!fresh(&expiring_in(300, now), now));
        assert!(!fresh(&expiring_in(10, now), now));
        assert!(fresh(&Credentials::new("a", "b", None, None, "t"), now));
    }

    #[test]
    fn debug_output_of_credentials_hides_the_secret() {
        let now = SystemTime::now();
        let c = Credentials::new(
            "AKIAEXAMPLE",
            "very-secret-key",
            Some("tok".into()),
            Some(now),
            "t",
        );
        let text = format!("{c:?}");
        assert!(!text.contains("very-secret-key"), "{text}");
    }
}
