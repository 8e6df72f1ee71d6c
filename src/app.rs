//! Glue for the long-running and on-call commands: opens the store and AWS clients from the
//! settings, runs the API until a signal, and prints subscriptions for people.

use crate::admin::{self, ApiState, Server};
use crate::credentials::{self, Roles};
use crate::forward::Forwarder;
use crate::queue::Queue;
use crate::settings::Settings;
use crate::subscriptions::cache::Lookup;
use crate::subscriptions::{dynamodb, StoreSpec, Subscriptions};
use crate::worker::Worker;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] crate::subscriptions::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("cannot build the Changes API client: {0}")]
    Forwarder(#[from] crate::forward::BuildError),
}

/// The daemon, built: listeners bound, queue resolved. [`Daemon::run`] runs it.
pub struct Daemon {
    api: Option<Server>,
    worker: Worker,
}

impl Daemon {
    /// Opens the store, resolves the queue and its DLQ, binds the API (unless disabled).
    ///
    /// # Errors
    /// [`AppError`] naming what could not be set up.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        if settings.sqs.queue_url.is_empty() {
            return Err(AppError::Usage(
                "sqs.queue_url is required by `run` (set it in the config file or CTC__SQS__QUEUE_URL)".into(),
            ));
        }
        let settings = Arc::new(settings);
        let parts = Parts::open(&settings).await?;
        let dlq = Some(settings.sqs.dlq_url.clone()).filter(|u| !u.is_empty());
        let sqs = aws_sdk_sqs::Client::new(&parts.aws);
        let queue = Queue::resolve(sqs, &settings.sqs.queue_url, dlq).await?;
        match &queue.dlq_url {
            Some(dlq) => {
                tracing::info!(queue = %queue.url, dlq = %dlq, max_receive_count = ?queue.max_receive_count, visibility_timeout = queue.visibility_timeout, "queue resolved")
            }
            None => {
                tracing::warn!(queue = %queue.url, "the queue has no RedrivePolicy and sqs.dlq_url is empty: poison messages will be retried forever")
            }
        }
        let roles = Arc::new(Roles::new(&parts.aws));
        let ttl = Duration::from_secs(settings.subscriptions.cache_ttl_seconds);
        let lookup = Arc::new(Lookup::new(Arc::clone(&parts.subscriptions), ttl));
        let api = if settings.api.enabled {
            let state = Arc::new(ApiState {
                subscriptions: Arc::clone(&parts.subscriptions),
                verifier: settings
                    .subscriptions
                    .verify_role
                    .then(|| Arc::clone(&roles)),
                lookup: Some(Arc::clone(&lookup)),
            });
            Some(Server::bind(settings.api.listen, admin::router(state)).await?)
        } else {
            None
        };
        let forwarder = Arc::new(Forwarder::new(&settings.bigpanda)?);
        let worker = Worker::new(
            settings,
            queue,
            parts.subscriptions,
            lookup,
            roles,
            forwarder,
        );
        Ok(Self { api, worker })
    }

    /// The API's bound address, when it is served.
    #[must_use]
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// Runs until `stop` is cancelled and the worker has drained.
    ///
    /// # Errors
    /// An API accept-loop error.
    pub async fn run(self, stop: CancellationToken) -> Result<(), AppError> {
        let api = self.api.map(|server| {
            // The API stays up while the worker drains, then stops with it.
            let api_stop = CancellationToken::new();
            (tokio::spawn(server.run(api_stop.clone())), api_stop)
        });
        self.worker.run(stop).await;
        if let Some((task, api_stop)) = api {
            api_stop.cancel();
            if let Ok(Err(e)) = task.await {
                return Err(e.into());
            }
        }
        Ok(())
    }
}

/// `run`: the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// When it cannot be set up.
pub async fn run(settings: Settings) -> Result<(), AppError> {
    let daemon = Daemon::build(settings).await?;
    if let Some(addr) = daemon.api_addr() {
        tracing::info!(address = %addr, "subscription API listening");
    }
    let stop = CancellationToken::new();
    tokio::spawn(cancel_on_signal(stop.clone()));
    tracing::info!("daemon started");
    daemon.run(stop).await
}

/// The store and the AWS configuration, opened from the settings.
pub struct Parts {
    pub aws: aws_config::SdkConfig,
    pub subscriptions: Arc<Subscriptions>,
}

impl Parts {
    /// Opens the subscription store named in the settings.
    ///
    /// # Errors
    /// [`AppError::Store`] when it cannot be opened.
    pub async fn open(settings: &Settings) -> Result<Self, AppError> {
        let aws = credentials::sdk_config(&settings.aws).await;
        let subscriptions = Subscriptions::open(
            &settings.subscriptions.store,
            settings.subscriptions.sealer(),
            &aws,
        )?;
        Ok(Self {
            aws,
            subscriptions: Arc::new(subscriptions),
        })
    }

    /// The API state for these parts.
    #[must_use]
    pub fn api_state(&self, settings: &Settings) -> Arc<ApiState> {
        Arc::new(ApiState {
            subscriptions: Arc::clone(&self.subscriptions),
            verifier: settings
                .subscriptions
                .verify_role
                .then(|| Arc::new(Roles::new(&self.aws))),
            lookup: None,
        })
    }
}

/// `serve-api`: the subscription API until SIGTERM or SIGINT.
///
/// # Errors
/// When the store cannot be opened or the address cannot be bound.
pub async fn serve_api(settings: &Settings) -> Result<(), AppError> {
    let parts = Parts::open(settings).await?;
    let server = Server::bind(
        settings.api.listen,
        admin::router(parts.api_state(settings)),
    )
    .await?;
    tracing::info!(address = %server.local_addr()?, store = %settings.subscriptions.store, "subscription API listening");
    let stop = CancellationToken::new();
    tokio::spawn(cancel_on_signal(stop.clone()));
    server.run(stop).await?;
    tracing::info!("subscription API stopped");
    Ok(())
}

/// Cancels `stop` on the first SIGTERM or SIGINT; exits at once on the second.
pub async fn cancel_on_signal(stop: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("signal received: stopping");
    stop.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers we can only wait for Ctrl-C through the portable path.
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `subscriptions list`.
///
/// # Errors
/// When the store fails or `out` cannot be written.
pub async fn list(settings: &Settings, out: &mut dyn Write) -> Result<(), AppError> {
    let parts = Parts::open(settings).await?;
    let subs = parts.subscriptions.list(None).await?;
    for s in &subs {
        let r = s.redacted();
        writeln!(
            out,
            "{}\t{}\t{}\tapiKey={}\tappKey={}\tupdated={}",
            r.bucket_name, r.bucket_region, r.iam_role_arn, r.api_key, r.app_key, r.updated_at
        )?;
    }
    if subs.is_empty() {
        writeln!(out, "no subscriptions in {}", settings.subscriptions.store)?;
    }
    Ok(())
}

/// `subscriptions show BUCKET`: `false` when there is none.
///
/// # Errors
/// When the store fails or `out` cannot be written.
pub async fn show(
    settings: &Settings,
    bucket: &str,
    out: &mut dyn Write,
) -> Result<bool, AppError> {
    let parts = Parts::open(settings).await?;
    let Some(s) = parts.subscriptions.get(bucket).await? else {
        return Ok(false);
    };
    let text = serde_json::to_string_pretty(&s.redacted()).map_err(std::io::Error::from)?;
    writeln!(out, "{text}")?;
    Ok(true)
}

/// `subscriptions remove BUCKET`: `false` when there was none.
///
/// # Errors
/// When the store fails.
pub async fn remove(settings: &Settings, bucket: &str) -> Result<bool, AppError> {
    let parts = Parts::open(settings).await?;
    let removed = parts.subscriptions.remove(bucket).await?;
    if removed {
        tracing::info!(bucket, "subscription removed by on-call");
    }
    Ok(removed)
}

/// `subscriptions init-table`: `true` if the table was created, `false` if it existed.
///
/// # Errors
/// [`AppError::Usage`] when the store is not DynamoDB; the store error otherwise.
pub async fn init_table(settings: &Settings) -> Result<bool, AppError> {
    let StoreSpec::DynamoDb(table) = &settings.subscriptions.store else {
        return Err(AppError::Usage(format!(
            "subscriptions.store is {}; init-table needs dynamodb:TABLE",
            settings.subscriptions.store
        )));
    };
    let aws = credentials::sdk_config(&settings.aws).await;
    let store = dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table.clone());
    Ok(store.create_table().await?)
}
