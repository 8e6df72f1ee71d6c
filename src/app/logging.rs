//! Logging set-up: plain text or JSON on stderr, `log.level` unless `RUST_LOG` is set.

use crate::settings::{LogFormat, LogSettings};
use std::io;

/// Installs the global `tracing` subscriber for `settings`.
pub fn init(settings: &LogSettings) {
    // RUST_LOG, when set, overrides `log.level`.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.level));
    // Colours only for a person at a terminal: files and journald get plain text.
    let ansi = io::IsTerminal::is_terminal(&io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(io::stderr);
    match settings.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
