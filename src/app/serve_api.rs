//! `serve-api`: the subscription API alone, and the parts it shares with `run` (the store and
//! the AWS configuration).

use super::AppError;
use crate::aws::credentials::{self, Roles};
use crate::http::Server;
use crate::settings::Settings;
use crate::subscriptions::api::{self, ApiState};
use crate::subscriptions::Subscriptions;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
            limits: api::limits::Limits::new(&settings.api.limits()),
        })
    }
}

/// `serve-api`: the subscription API until SIGTERM or SIGINT.
///
/// # Errors
/// When the store cannot be opened or the address cannot be bound.
pub async fn serve_api(settings: &Settings) -> Result<(), AppError> {
    settings
        .subscriptions
        .require_sealed()
        .map_err(AppError::Usage)?;
    let parts = Parts::open(settings).await?;
    let server = Server::bind(settings.api.listen, api::router(parts.api_state(settings))).await?;
    tracing::info!(address = %server.local_addr()?, store = %settings.subscriptions.store, "subscription API listening");
    let stop = CancellationToken::new();
    tokio::spawn(crate::shutdown::cancel_on_signal(stop.clone()));
    server.run(stop).await?;
    tracing::info!("subscription API stopped");
    Ok(())
}
