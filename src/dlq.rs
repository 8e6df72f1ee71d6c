//! On-call tools for the dead-letter queue: `dlq peek` and `dlq redrive`.

use crate::cli::RedriveArgs;
use crate::settings::Settings;
use std::io::Write;

/// Why a DLQ command failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("{0}")]
    Failed(String),
}

/// `dlq peek`: prints up to `max` messages without consuming them; returns how many.
///
/// # Errors
/// [`DlqError`] naming the queue and the call that failed.
pub async fn peek(
    _settings: &Settings,
    _max: usize,
    _out: &mut dyn Write,
) -> Result<usize, DlqError> {
    Err(DlqError::Failed("dlq peek: being written".into()))
}

/// `dlq redrive`: moves messages back; returns how many were moved.
///
/// # Errors
/// [`DlqError`] naming the queue and the call that failed.
pub async fn redrive(
    _settings: &Settings,
    _args: &RedriveArgs,
    _out: &mut dyn Write,
) -> Result<usize, DlqError> {
    Err(DlqError::Failed("dlq redrive: being written".into()))
}
