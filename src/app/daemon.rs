//! `run`: the daemon assembled. [`Daemon::build`] opens the store, resolves the queue and its
//! DLQ and binds the listeners (port 0 allowed); [`Daemon::run`] runs the worker, the API and
//! the operations listener until stopped, with a main-loop tick that feeds `/healthz`, the
//! systemd watchdog and the readiness probe of the store.

use crate::app::{AppError, Parts};
use crate::aws::credentials::Roles;
use crate::aws::queue::{Queue, QueueError};
use crate::forward::Forwarder;
use crate::http::ops;
use crate::http::Server;
use crate::settings::Settings;
use crate::shutdown::cancel_on_signal;
use crate::subscriptions::api::{self, ApiState};
use crate::subscriptions::cache::Lookup;
use crate::subscriptions::{AnyStore, Rows, Subscriptions};
use crate::worker::health::Health;
use crate::worker::{Handled, Worker};
use metrics_exporter_prometheus::PrometheusHandle;
use sd_notify::NotifyState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the main loop ticks (and probes the store every [`PROBE_EVERY`] ticks).
const TICK: Duration = Duration::from_secs(5);
const PROBE_EVERY: u32 = 6;

/// The daemon, built: listeners bound, queue resolved.
pub struct Daemon {
    api: Option<Server>,
    ops: Server,
    worker: Worker,
    health: Arc<Health>,
    metrics: PrometheusHandle,
    subscriptions: Arc<Subscriptions>,
}

impl Daemon {
    /// Opens the store, resolves the queue and its DLQ, binds the API (unless disabled) and the
    /// operations listener.
    ///
    /// # Errors
    /// [`AppError`] naming what could not be set up and how to fix it.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        if settings.sqs.queue_url.is_empty() {
            return Err(AppError::Usage(
                "sqs.queue_url is required by `run` (set it in the config file or CTC__SQS__QUEUE_URL)".into(),
            ));
        }
        settings
            .subscriptions
            .require_sealed()
            .map_err(AppError::Usage)?;
        let metrics = crate::metrics::install().map_err(AppError::Usage)?;
        // Every documented series exists from the first scrape, so `increase()` sees event one.
        crate::metrics::register_all();
        let settings = Arc::new(settings);
        let parts = Parts::open(&settings).await?;
        // Refuse to start on a missing or unreachable queue, saying how to fix it.
        crate::commands::preflight::startup(&settings, &parts.aws)
            .await
            .map_err(|e| AppError::Usage(e.to_string()))?;
        let queue = resolve_queue(&settings, &parts.aws).await?;
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
                limits: api::limits::Limits::new(&settings.api.limits()),
            });
            Some(Server::bind(settings.api.listen, api::router(state)).await?)
        } else {
            None
        };
        let health = Health::new();
        let ops = Server::bind(
            settings.admin.listen,
            ops::router(Arc::clone(&health), metrics.clone()),
        )
        .await?;
        // With the DynamoDB store, the replicas share each API key's rate through it.
        let forwarder = Arc::new(match parts.subscriptions.store() {
            AnyStore::DynamoDb(store) => Forwarder::for_fleet(&settings.bigpanda, store.clone())?,
            AnyStore::Sqlite(_) => Forwarder::new(&settings.bigpanda)?,
        });
        let subscriptions = Arc::clone(&parts.subscriptions);
        let worker = Worker::new(
            settings,
            queue,
            parts.subscriptions,
            lookup,
            roles,
            forwarder,
            Arc::clone(&health),
        );
        Ok(Self {
            api,
            ops,
            worker,
            health,
            metrics,
            subscriptions,
        })
    }

    /// The API's bound address, when it is served.
    #[must_use]
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The operations listener's bound address.
    #[must_use]
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.local_addr().ok()
    }

    /// Takes one batch of messages to their fates without starting the pollers or the
    /// listeners: the worker's [`Worker::poll_once`], for tests and diagnosis.
    ///
    /// # Errors
    /// The receive's error, naming the queue.
    pub async fn poll_once(&self) -> Result<Vec<Handled>, QueueError> {
        self.worker.poll_once().await
    }

    /// Runs until `stop` is cancelled and the worker has drained. Tells systemd READY=1 once
    /// running and STOPPING=1 when stopping (no-ops outside systemd).
    ///
    /// # Errors
    /// An accept-loop error of a listener.
    pub async fn run(self, stop: CancellationToken) -> Result<(), AppError> {
        // The listeners stay up while the worker drains, then stop with it.
        let listeners = CancellationToken::new();
        let mut servers = vec![tokio::spawn(self.ops.run(listeners.clone()))];
        if let Some(api) = self.api {
            servers.push(tokio::spawn(api.run(listeners.clone())));
        }
        let ticker = tokio::spawn(tick(
            Arc::clone(&self.health),
            self.metrics,
            self.subscriptions,
            listeners.clone(),
        ));
        let health = Arc::clone(&self.health);
        let stopping = stop.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            health.set_stopping();
            let _ = sd_notify::notify(&[NotifyState::Stopping]);
        });
        let _ = sd_notify::notify(&[NotifyState::Ready]);
        tracing::info!("daemon started");
        self.worker.run(stop).await;
        listeners.cancel();
        let _ = ticker.await;
        for server in servers {
            if let Ok(Err(e)) = server.await {
                return Err(e.into());
            }
        }
        Ok(())
    }
}

async fn resolve_queue(
    settings: &Settings,
    aws: &aws_config::SdkConfig,
) -> Result<Queue, AppError> {
    let dlq = Some(settings.sqs.dlq_url.clone()).filter(|u| !u.is_empty());
    let sqs = aws_sdk_sqs::Client::new(aws);
    let queue = Queue::resolve(sqs, &settings.sqs.queue_url, dlq).await?;
    match &queue.dlq_url {
        Some(dlq) => tracing::info!(
            queue = %queue.url, dlq = %dlq, max_receive_count = ?queue.max_receive_count,
            visibility_timeout = queue.visibility_timeout, "queue resolved"
        ),
        None => tracing::warn!(
            queue = %queue.url,
            "the queue has no RedrivePolicy and sqs.dlq_url is empty: poison messages will be retried, never dead-lettered"
        ),
    }
    Ok(queue)
}

/// The main loop's tick: marks the daemon alive, pings the systemd watchdog, probes the store
/// for readiness and keeps the metrics histograms fresh.
async fn tick(
    health: Arc<Health>,
    metrics: PrometheusHandle,
    subscriptions: Arc<Subscriptions>,
    stop: CancellationToken,
) {
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(TICK, |w| (w / 2).min(TICK));
    let mut n = 0u32;
    loop {
        if n.is_multiple_of(PROBE_EVERY) {
            // Any answer, found or not, proves the store is reachable.
            let ok = subscriptions.store().get("readiness-probe").await.is_ok();
            health.set_store_ok(ok);
        }
        n = n.wrapping_add(1);
        health.tick();
        metrics.run_upkeep();
        if watchdog.is_some() {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
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
    if let Some(addr) = daemon.ops_addr() {
        tracing::info!(address = %addr, "metrics and health listening");
    }
    let stop = CancellationToken::new();
    tokio::spawn(cancel_on_signal(stop.clone()));
    daemon.run(stop).await
}
