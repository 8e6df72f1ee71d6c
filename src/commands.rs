//! Operator tools, one module per command: [`process`] (the pipeline over local files),
//! [`dlq`] (peek and redrive), [`preflight`] (`check`), [`onboard`] (what a customer creates) and
//! [`subscriptions`] (the on-call side of the subscription store).

pub mod config;
pub mod dlq;
pub mod onboard;
pub mod preflight;
pub mod process;
pub mod subscriptions;

/// Why an on-call command could not run (beyond the errors of its own module).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Store(#[from] crate::subscriptions::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
}
