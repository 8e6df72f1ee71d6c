//! The `cloudtrail-changes` binary: parses the command line, loads settings, sets up logging
//! and runs the subcommand. The logic lives in the library.

use anyhow::Context;
use clap::Parser;
use cloudtrail_changes::cli::{Cli, Command, ConfigCommand, ProcessArgs};
use cloudtrail_changes::settings::{self, LogFormat, Settings};
use cloudtrail_changes::{app, process};
use std::io::{self, Write};
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
    init_logging(&settings);
    let result = match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(&settings),
        Command::Process(args) => run_process(&settings, args),
        command => runtime().and_then(|rt| {
            let ok = rt.block_on(app::run_command(settings, command))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    // RUST_LOG, when set, overrides `log.level`.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    // Colours only for a person at a terminal: files and journald get plain text.
    let ansi = io::IsTerminal::is_terminal(&io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn config_check(settings: &Settings) -> anyhow::Result<ExitCode> {
    let text = serde_json::to_string_pretty(settings).context("Failed to print the settings")?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
}

fn run_process(settings: &Settings, args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let request = process::Request {
        paths: args.paths,
        explain: args.explain,
        bucket: args.bucket,
    };
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::with_capacity(256 * 1024, stdout);
    let mut err = io::stderr().lock();
    let summary = match process::run(settings, &request, &mut out, &mut err) {
        Ok(summary) => summary,
        // The reader of our output went away (`| head`): nothing left to report.
        Err(e) if e.0.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e).context("Failed to write the changes"),
    };
    writeln!(err, "{}", summary.report()).context("Failed to write the summary")?;
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
