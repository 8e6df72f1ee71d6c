//! Assembly: builds what a command needs from the settings and runs it. [`daemon`] is `run`,
//! [`serve_api`] is `serve-api`; every other command lives in [`crate::commands`] and is only
//! dispatched from here.

pub mod daemon;
pub mod logging;
pub mod serve_api;

use crate::cli::{Command, ConfigCommand, DlqCommand};
use crate::commands;
use crate::settings::Settings;

pub use serve_api::Parts;

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
    Queue(#[from] crate::aws::queue::QueueError),
    #[error("cannot build the Changes API client: {0}")]
    Forwarder(#[from] crate::forward::BuildError),
    #[error(transparent)]
    Dlq(#[from] commands::dlq::DlqError),
    #[error(transparent)]
    Command(#[from] commands::CommandError),
    #[error(transparent)]
    Output(#[from] commands::process::OutputError),
}

/// Runs `command`; `Ok(false)` means "exit with status 1" (a failed file or check, a missing
/// subscription). `process` and `config` run without an async runtime.
///
/// # Errors
/// [`AppError`] when the command could not run.
pub fn run(settings: Settings, command: Command) -> Result<bool, AppError> {
    match command {
        Command::Config {
            command: ConfigCommand::Check,
        } => Ok(commands::config::check(&settings, &mut std::io::stdout())?),
        Command::Process(args) => Ok(commands::process::command(&settings, args)?),
        command => runtime()?.block_on(run_async(settings, command)),
    }
}

async fn run_async(settings: Settings, command: Command) -> Result<bool, AppError> {
    let mut out = std::io::stdout();
    match command {
        Command::Run => daemon::run(settings).await.map(|()| true),
        Command::ServeApi => serve_api::serve_api(&settings).await.map(|()| true),
        Command::Check { subscriptions } => {
            Ok(commands::preflight::check(&settings, subscriptions, &mut out).await?)
        }
        Command::Dlq { command } => {
            match command {
                DlqCommand::Peek { max } => commands::dlq::peek(&settings, max, &mut out).await?,
                DlqCommand::Redrive(args) => {
                    commands::dlq::redrive(&settings, &args, &mut out).await?
                }
            };
            Ok(true)
        }
        Command::Subscriptions { command } => {
            Ok(commands::subscriptions::run(&settings, command, &mut out).await?)
        }
        Command::Onboard(args) => commands::onboard::run(&settings, &args, &mut out)
            .await
            .map_err(|e| AppError::Usage(e.to_string()))
            .map(|()| true),
        Command::Process(_) | Command::Config { .. } => {
            unreachable!("run() handles process and config without a runtime")
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Usage(format!("cannot start the async runtime: {e}")))
}
