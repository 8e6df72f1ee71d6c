//! Preflight checks: `cloudtrail-changes check`, and the cheap part at daemon start.

use crate::settings::Settings;
use std::io::Write;

/// Runs every check, printing one line per check with how to fix a failure; `true` when all
/// passed.
///
/// # Errors
/// Only when `out` cannot be written.
pub async fn check(
    _settings: &Settings,
    _subscriptions: bool,
    _out: &mut dyn Write,
) -> std::io::Result<bool> {
    Ok(false)
}
