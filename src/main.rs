//! The `cloudtrail-changes` binary: parses the command line, loads settings, sets up logging
//! and hands the command to [`app::run`]. The logic lives in the library.

use clap::Parser;
use cloudtrail_changes::{app, cli::Cli, settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    app::logging::init(&settings.log);
    match app::run(settings, cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
