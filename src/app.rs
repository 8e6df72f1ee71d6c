//! Glue for the long-running and on-call commands: opens the store and AWS clients from the
//! settings, runs the API until a signal, and prints subscriptions for people.

use crate::admin::{self, ApiState, Server};
use crate::cli::{Command, DlqCommand, SubscriptionsCommand};
use crate::credentials::{self, Roles};
use crate::settings::Settings;
use crate::subscriptions::{dynamodb, rfc3339, StoreSpec, Subscriptions};
use std::io::Write;
use std::sync::Arc;
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
    #[error(transparent)]
    Dlq(#[from] crate::dlq::DlqError),
}

/// Runs one of the async commands; `Ok(false)` means "exit with status 1" (a failed check, a
/// missing subscription).
///
/// # Errors
/// [`AppError`] when the command could not run.
pub async fn run_command(settings: Settings, command: Command) -> Result<bool, AppError> {
    let mut out = std::io::stdout();
    match command {
        Command::Run => crate::daemon::run(settings).await.map(|()| true),
        Command::ServeApi => serve_api(&settings).await.map(|()| true),
        Command::Check { subscriptions } => {
            Ok(crate::preflight::check(&settings, subscriptions, &mut out).await?)
        }
        Command::Dlq { command } => {
            match command {
                DlqCommand::Peek { max } => crate::dlq::peek(&settings, max, &mut out).await?,
                DlqCommand::Redrive(args) => {
                    crate::dlq::redrive(&settings, &args, &mut out).await?
                }
            };
            Ok(true)
        }
        Command::Subscriptions { command } => subscriptions(&settings, command, &mut out).await,
        Command::Onboard(args) => crate::onboard::run(&settings, &args, &mut out)
            .await
            .map_err(|e| AppError::Usage(e.to_string()))
            .map(|()| true),
        Command::Process(_) | Command::Config { .. } => Err(AppError::Usage(
            "process and config run without the async runtime".into(),
        )),
    }
}

async fn subscriptions(
    settings: &Settings,
    command: SubscriptionsCommand,
    out: &mut dyn Write,
) -> Result<bool, AppError> {
    let found = match command {
        SubscriptionsCommand::List => list(settings, out).await.map(|()| true)?,
        SubscriptionsCommand::Show { bucket } => show(settings, &bucket, out).await?,
        SubscriptionsCommand::Remove { bucket } => remove(settings, &bucket).await?,
        SubscriptionsCommand::InitTable => {
            let created = init_table(settings).await?;
            let what = if created {
                "table created"
            } else {
                "table already exists"
            };
            writeln!(out, "{what}")?;
            true
        }
    };
    if !found {
        eprintln!("no such subscription");
    }
    Ok(found)
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

/// The subscription store alone, for the on-call commands: AWS is configured only when the
/// store is DynamoDB (a SQLite node without AWS credentials must not wait for instance metadata).
async fn store_only(settings: &Settings) -> Result<Subscriptions, AppError> {
    let aws = match &settings.subscriptions.store {
        StoreSpec::Sqlite(_) => aws_config::SdkConfig::builder().build(),
        StoreSpec::DynamoDb(_) => credentials::sdk_config(&settings.aws).await,
    };
    Ok(Subscriptions::open(
        &settings.subscriptions.store,
        settings.subscriptions.sealer(),
        &aws,
    )?)
}

/// `subscriptions list`: the subscriptions, then the recently removed buckets that still send
/// notifications (their tombstones with late notifications), for on-call to tell the customer.
///
/// # Errors
/// When the store fails or `out` cannot be written.
pub async fn list(settings: &Settings, out: &mut dyn Write) -> Result<(), AppError> {
    let store = store_only(settings).await?;
    let subs = store.list(None).await?;
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
    let still_sending: Vec<_> = store
        .recently_removed()
        .await?
        .into_iter()
        .filter(|(_, t)| t.late_notifications > 0)
        .collect();
    if !still_sending.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "recently removed buckets still sending notifications (acknowledged, not delivered; \
             ask the customer to remove the bucket's event notification):"
        )?;
        for (bucket, t) in &still_sending {
            writeln!(
                out,
                "{bucket}\tremoved={}\tlast_notification={}\tlate_notifications={}",
                rfc3339(t.removed_at),
                t.last_seen.map_or_else(|| "-".to_owned(), rfc3339),
                t.late_notifications
            )?;
        }
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
    let Some(s) = store_only(settings).await?.get(bucket).await? else {
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
    let removed = store_only(settings).await?.remove(bucket).await?;
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
