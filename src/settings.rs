//! Configuration: `config/default.toml` (built into the binary), an optional overlay file,
//! then `CTC__SECTION__KEY` environment variables; unknown keys are an error. [`load`]
//! validates everything once and names the bad key and its allowed range.

use crate::aws::credentials::AwsSettings;
use crate::core::filter::{FilterSettings, Policy};
use crate::core::normalize;
use crate::core::records::Limits;
use crate::forward::BigPandaSettings;
use crate::subscriptions::seal::Sealer;
use crate::subscriptions::StoreSpec;
mod fingerprint;
pub mod worker;

pub use worker::{SqsSettings, WorkerSettings};

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

/// The defaults, the same text as `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// Settings keys that hold lists; their environment variables are comma-separated.
const LIST_KEYS: [&str; 6] = [
    "worker.retry_backoff_seconds",
    "filter.event_types",
    "filter.read_prefixes",
    "filter.noise",
    "filter.extra_noise",
    "subscriptions.previous_encryption_keys",
];

/// The validated settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub records: Limits,
    /// The `[filter]` settings, compiled (printed as those settings).
    #[serde(rename = "filter")]
    pub policy: Policy,
    pub normalize: normalize::Options,
    pub log: LogSettings,
    pub aws: AwsSettings,
    pub api: ApiSettings,
    pub admin: AdminSettings,
    pub notifications: NotificationSettings,
    pub subscriptions: SubscriptionSettings,
    pub sqs: SqsSettings,
    pub worker: WorkerSettings,
    pub bigpanda: BigPandaSettings,
}

/// The `[api]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Whether `run` serves the subscription API too.
    pub enabled: bool,
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// POST and DELETE requests per minute from one client address.
    pub writes_per_client_per_minute: u32,
    /// POST and DELETE requests per minute from everyone together.
    pub writes_per_minute: u32,
    /// GET requests per minute with one API key.
    pub reads_per_key_per_minute: u32,
    /// Subscribe-time role checks (STS) running at once.
    pub max_concurrent_role_checks: u32,
    /// Header with the client address behind a load balancer; empty: the peer address.
    pub client_address_header: String,
}

impl ApiSettings {
    /// The request limits.
    #[must_use]
    pub fn limits(&self) -> crate::subscriptions::api::limits::LimitSettings {
        crate::subscriptions::api::limits::LimitSettings {
            writes_per_client_per_minute: self.writes_per_client_per_minute,
            writes_per_minute: self.writes_per_minute,
            reads_per_key_per_minute: self.reads_per_key_per_minute,
            max_concurrent_role_checks: self.max_concurrent_role_checks,
            client_address_header: self.client_address_header.clone(),
        }
    }
}

fn validate_api(api: &ApiSettings) -> Result<(), SettingsError> {
    for (key, value) in [
        (
            "api.writes_per_client_per_minute",
            api.writes_per_client_per_minute,
        ),
        ("api.writes_per_minute", api.writes_per_minute),
        ("api.reads_per_key_per_minute", api.reads_per_key_per_minute),
    ] {
        in_range(key, u64::from(value), 1, 1_000_000)?;
    }
    in_range(
        "api.max_concurrent_role_checks",
        u64::from(api.max_concurrent_role_checks),
        1,
        256,
    )?;
    let header = api.client_address_header.trim();
    if !header.is_empty() && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
        return Err(SettingsError::Invalid {
            key: "api.client_address_header",
            detail: format!("must be an HTTP header name, got {header:?}"),
        });
    }
    Ok(())
}

/// The `[admin]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

/// The `[notifications]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// Our SNS topic that customers' buckets notify; empty when not set up.
    pub topic_arn: String,
}

/// The `[subscriptions]` settings, validated.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionSettings {
    /// Where subscriptions live.
    #[serde(serialize_with = "display")]
    pub store: StoreSpec,
    /// The data key for keys at rest; printed as whether it is set.
    #[serde(serialize_with = "redacted")]
    pub encryption_key: Option<SecretString>,
    /// Keys of before a rotation, still tried for reading; printed as how many there are.
    #[serde(serialize_with = "redacted_list")]
    pub previous_encryption_keys: Vec<SecretString>,
    /// Whether `run` and `serve-api` may start without `encryption_key` (keys in clear).
    pub allow_plaintext_keys: bool,
    /// How long a worker trusts a looked-up subscription (or its absence).
    pub cache_ttl_seconds: u64,
    /// Assume the role before saving a subscription.
    pub verify_role: bool,
    /// How long a delivery checkpoint is kept.
    pub checkpoint_ttl_seconds: u64,
    /// How old (SentTimestamp) a message naming an unknown bucket must be before it goes to
    /// the DLQ; younger ones are retried (the subscription may be on its way).
    pub unknown_bucket_grace_seconds: u64,
}

impl SubscriptionSettings {
    /// The sealer for keys at rest.
    ///
    /// # Panics
    /// Never: the key was checked when the settings were loaded.
    #[must_use]
    pub fn sealer(&self) -> Sealer {
        let current = self
            .encryption_key
            .as_ref()
            .and_then(|k| Sealer::from_base64(k).ok())
            .unwrap_or_else(Sealer::plain);
        current
            .clone()
            .with_previous(&self.previous_encryption_keys)
            .unwrap_or(current)
    }

    /// Whether keys may be written to the store: sealed, or in clear because an operator said
    /// so. `run` and `serve-api` call this before they start.
    ///
    /// # Errors
    /// A message naming both settings and how to make a key, when there is no key and
    /// `allow_plaintext_keys` is off.
    pub fn require_sealed(&self) -> Result<(), String> {
        if self.encryption_key.is_some() {
            return Ok(());
        }
        if self.allow_plaintext_keys {
            tracing::warn!(
                "subscriptions.encryption_key is empty and subscriptions.allow_plaintext_keys = true: \
                 customers' API and app keys are stored in clear"
            );
            return Ok(());
        }
        Err("subscriptions.encryption_key is empty: customers' API and app keys would be stored \
             in clear. Set it to 32 random bytes in base64 (make one with `openssl rand -base64 32`; \
             pass it as CTC__SUBSCRIPTIONS__ENCRYPTION_KEY), or set \
             subscriptions.allow_plaintext_keys = true to store keys in clear deliberately"
            .to_owned())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscriptions {
    store: String,
    encryption_key: String,
    previous_encryption_keys: Vec<String>,
    allow_plaintext_keys: bool,
    cache_ttl_seconds: u64,
    verify_role: bool,
    checkpoint_ttl_seconds: u64,
    unknown_bucket_grace_seconds: u64,
}

fn redacted_list<S: serde::Serializer>(v: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("[{} redacted]", v.len()))
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn redacted<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_some() { "[redacted]" } else { "" })
}

/// The `[log]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The settings as read, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    records: Limits,
    filter: FilterSettings,
    normalize: normalize::Options,
    log: LogSettings,
    aws: AwsSettings,
    api: ApiSettings,
    admin: AdminSettings,
    notifications: NotificationSettings,
    subscriptions: RawSubscriptions,
    sqs: SqsSettings,
    worker: WorkerSettings,
    bigpanda: BigPandaSettings,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file could not be read or parsed, a key is unknown or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(String),
    /// A value is out of its allowed range.
    #[error("configuration: {key} {detail}")]
    Invalid { key: &'static str, detail: String },
}

/// Loads the settings: defaults, then `overlay`, then the process environment.
///
/// # Errors
/// [`SettingsError`] naming the file, key or value at fault.
pub fn load(overlay: Option<&Path>) -> Result<Settings, SettingsError> {
    load_with_env(overlay, std::env::vars().collect())
}

/// Like [`load`], with the environment given (for tests).
///
/// # Errors
/// [`SettingsError`] naming the file, key or value at fault.
pub fn load_with_env(
    overlay: Option<&Path>,
    env: HashMap<String, String>,
) -> Result<Settings, SettingsError> {
    let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
    if let Some(path) = overlay {
        if !path.is_file() {
            return Err(SettingsError::Load(format!(
                "overlay file {} does not exist",
                path.display()
            )));
        }
        builder = builder.add_source(File::from(path).required(true));
    }
    let mut environment = Environment::with_prefix("CTC")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let config = builder
        .add_source(environment.source(Some(env)))
        .build()
        .map_err(|e| SettingsError::Load(e.to_string()))?;
    let raw: Raw = config
        .try_deserialize()
        .map_err(|e| SettingsError::Load(e.to_string()))?;
    validate(raw)
}

fn validate(raw: Raw) -> Result<Settings, SettingsError> {
    const KIB: u64 = 1024;
    const GIB: u64 = 1 << 30;
    in_range(
        "records.max_object_bytes",
        raw.records.max_object_bytes,
        KIB,
        16 * GIB,
    )?;
    in_range(
        "records.max_decompressed_bytes",
        raw.records.max_decompressed_bytes,
        KIB,
        64 * GIB,
    )?;
    in_range(
        "records.max_record_bytes",
        raw.records.max_record_bytes as u64,
        KIB,
        256 << 20,
    )?;
    in_range(
        "normalize.max_tag_value_chars",
        raw.normalize.max_tag_value_chars as u64,
        16,
        65_536,
    )?;
    validate_api(&raw.api)?;
    non_empty_items("filter.event_types", &raw.filter.event_types, false)?;
    non_empty_items("filter.read_prefixes", &raw.filter.read_prefixes, true)?;
    non_empty_items("filter.noise", &raw.filter.noise, true)?;
    non_empty_items("filter.extra_noise", &raw.filter.extra_noise, true)?;
    let policy = Policy::new(&raw.filter).map_err(|e| SettingsError::Invalid {
        key: "filter.noise",
        detail: format!("holds a bad glob: {e}"),
    })?;
    tracing_subscriber::EnvFilter::try_new(&raw.log.level).map_err(|e| SettingsError::Invalid {
        key: "log.level",
        detail: format!(
            "must be a level (error, warn, info, debug, trace) or tracing directives: {e}"
        ),
    })?;
    let subscriptions = validate_subscriptions(raw.subscriptions)?;
    validate_worker(&raw.sqs, &raw.worker, &raw.bigpanda)?;
    Ok(Settings {
        records: raw.records,
        normalize: raw.normalize,
        log: raw.log,
        policy,
        aws: raw.aws,
        api: raw.api,
        admin: raw.admin,
        notifications: raw.notifications,
        subscriptions,
        sqs: raw.sqs,
        worker: raw.worker,
        bigpanda: raw.bigpanda,
    })
}

fn validate_worker(
    sqs: &SqsSettings,
    worker: &WorkerSettings,
    bigpanda: &BigPandaSettings,
) -> Result<(), SettingsError> {
    in_range("sqs.pollers", sqs.pollers as u64, 1, 64)?;
    in_range("sqs.max_messages", sqs.max_messages as u64, 1, 10)?;
    in_range("sqs.wait_time_seconds", sqs.wait_time_seconds as u64, 0, 20)?;
    in_range(
        "worker.max_inflight_messages",
        worker.max_inflight_messages as u64,
        1,
        4096,
    )?;
    in_range(
        "worker.max_inflight_per_subscription",
        worker.max_inflight_per_subscription as u64,
        1,
        4096,
    )?;
    in_range(
        "worker.shutdown_grace_seconds",
        worker.shutdown_grace_seconds,
        0,
        3600,
    )?;
    if worker.retry_backoff_seconds.is_empty()
        || worker
            .retry_backoff_seconds
            .iter()
            .any(|s| !(1..=43_200).contains(s))
    {
        return Err(SettingsError::Invalid {
            key: "worker.retry_backoff_seconds",
            detail: "must hold one or more delays of 1..=43200 seconds".into(),
        });
    }
    in_range(
        "worker.defer_seconds",
        u64::from(worker.defer_seconds),
        1,
        900,
    )?;
    in_range(
        "worker.spool_memory_bytes",
        worker.spool_memory_bytes,
        0,
        1 << 30,
    )?;
    in_range(
        "worker.change_retry_seconds",
        worker.change_retry_seconds,
        1,
        3600,
    )?;
    for (key, url) in [
        ("sqs.queue_url", &sqs.queue_url),
        ("sqs.dlq_url", &sqs.dlq_url),
    ] {
        if !url.is_empty() && !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(SettingsError::Invalid {
                key,
                detail: format!("must be an SQS queue URL (https://...), got {url:?}"),
            });
        }
    }
    if !bigpanda.base_url.starts_with("https://") && !bigpanda.base_url.starts_with("http://") {
        return Err(SettingsError::Invalid {
            key: "bigpanda.base_url",
            detail: format!("must be an http(s) URL, got {:?}", bigpanda.base_url),
        });
    }
    in_range(
        "bigpanda.rate_per_minute",
        u64::from(bigpanda.rate_per_minute),
        0,
        1_000_000,
    )?;
    in_range(
        "bigpanda.changes_per_week",
        bigpanda.changes_per_week,
        0,
        1_000_000_000,
    )?;
    in_range(
        "bigpanda.max_concurrency_per_key",
        bigpanda.max_concurrency_per_key as u64,
        1,
        256,
    )?;
    in_range(
        "bigpanda.request_timeout_seconds",
        bigpanda.request_timeout_seconds,
        1,
        300,
    )?;
    in_range(
        "bigpanda.max_consecutive_rejections",
        u64::from(bigpanda.max_consecutive_rejections),
        0,
        1_000_000,
    )?;
    Ok(())
}

fn validate_subscriptions(raw: RawSubscriptions) -> Result<SubscriptionSettings, SettingsError> {
    let store = StoreSpec::parse(&raw.store).map_err(|detail| SettingsError::Invalid {
        key: "subscriptions.store",
        detail,
    })?;
    let encryption_key = Some(raw.encryption_key)
        .filter(|k| !k.is_empty())
        .map(SecretString::from);
    if let Some(key) = &encryption_key {
        Sealer::from_base64(key).map_err(|e| SettingsError::Invalid {
            key: "subscriptions.encryption_key",
            detail: e.to_string().replace("subscriptions.encryption_key ", ""),
        })?;
    }
    let previous_encryption_keys = previous_keys(raw.previous_encryption_keys)?;
    if encryption_key.is_none() && !previous_encryption_keys.is_empty() {
        return Err(SettingsError::Invalid {
            key: "subscriptions.previous_encryption_keys",
            detail: "needs subscriptions.encryption_key (the key values are re-sealed with)".into(),
        });
    }
    in_range(
        "subscriptions.cache_ttl_seconds",
        raw.cache_ttl_seconds,
        1,
        3600,
    )?;
    in_range(
        "subscriptions.checkpoint_ttl_seconds",
        raw.checkpoint_ttl_seconds,
        3600,
        30 * 86_400,
    )?;
    in_range(
        "subscriptions.unknown_bucket_grace_seconds",
        raw.unknown_bucket_grace_seconds,
        0,
        14 * 86_400,
    )?;
    Ok(SubscriptionSettings {
        store,
        encryption_key,
        previous_encryption_keys,
        allow_plaintext_keys: raw.allow_plaintext_keys,
        cache_ttl_seconds: raw.cache_ttl_seconds,
        verify_role: raw.verify_role,
        checkpoint_ttl_seconds: raw.checkpoint_ttl_seconds,
        unknown_bucket_grace_seconds: raw.unknown_bucket_grace_seconds,
    })
}

/// Each previous key checked like the current one; the error says which position is bad.
fn previous_keys(raw: Vec<String>) -> Result<Vec<SecretString>, SettingsError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, key)| {
            let key = SecretString::from(key);
            Sealer::from_base64(&key)
                .map(|_| key)
                .map_err(|_| SettingsError::Invalid {
                    key: "subscriptions.previous_encryption_keys",
                    detail: format!(
                        "key {} must be 32 bytes in base64 (make one with `openssl rand -base64 32`)",
                        i + 1
                    ),
                })
        })
        .collect()
}

fn in_range(key: &'static str, value: u64, lo: u64, hi: u64) -> Result<(), SettingsError> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(SettingsError::Invalid {
            key,
            detail: format!("must be {lo}..={hi} (got {value})"),
        })
    }
}

fn non_empty_items(
    key: &'static str,
    items: &[String],
    may_be_empty: bool,
) -> Result<(), SettingsError> {
    if !may_be_empty && items.is_empty() {
        return Err(SettingsError::Invalid {
            key,
            detail: "must name at least one value".into(),
        });
    }
    if items.iter().any(|s| s.trim().is_empty()) {
        return Err(SettingsError::Invalid {
            key,
            detail: "must not hold empty values".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
