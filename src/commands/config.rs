//! `config check`: the effective settings, secrets redacted (a bad key fails earlier, in
//! [`crate::settings::load`]).

use crate::settings::Settings;
use std::io::{self, Write};

/// Prints the effective settings as JSON.
///
/// # Errors
/// When `out` cannot be written.
pub fn check(settings: &Settings, out: &mut dyn Write) -> io::Result<bool> {
    let text = serde_json::to_string_pretty(settings).map_err(io::Error::from)?;
    writeln!(out, "{text}")?;
    Ok(true)
}
