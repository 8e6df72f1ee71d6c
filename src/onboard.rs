//! `onboard`: what a customer must create to connect a bucket.

use crate::cli::OnboardArgs;
use crate::settings::Settings;
use std::io::Write;

/// Why `onboard` could not print the set-up.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("{0}")]
    Invalid(String),
}

/// Prints the customer's set-up for `args`.
///
/// # Errors
/// [`OnboardError`] naming the bad argument or the failed lookup.
pub async fn run(
    _settings: &Settings,
    _args: &OnboardArgs,
    _out: &mut dyn Write,
) -> Result<(), OnboardError> {
    Err(OnboardError::Invalid("onboard: being written".into()))
}
