//! The command line: what each subcommand takes. `main.rs` dispatches.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Turns AWS CloudTrail log files into BigPanda changes.
#[derive(Debug, Parser)]
#[command(name = "cloudtrail-changes", version, about, propagate_version = true)]
pub struct Cli {
    /// Overlay settings file (TOML) on top of the built-in defaults (config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Turn local CloudTrail files into changes: one JSON change per line on stdout, a summary
    /// on stderr. Exit status 1 if any file failed (the others are still processed).
    Process(ProcessArgs),
    /// The daemon: poll SQS, turn each notified CloudTrail file into changes, forward them to
    /// BigPanda; serves the subscription API too unless `api.enabled = false`.
    Run,
    /// Serve the subscription API alone (no queue polling).
    ServeApi,
    /// On-call tools for subscriptions: list, show, remove; create the DynamoDB table.
    Subscriptions {
        #[command(subcommand)]
        command: SubscriptionsCommand,
    },
    /// On-call tools for the dead-letter queue: look at it, move messages back.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Preflight: check the queue, its DLQ, the visibility timeout and the store (and with
    /// `--subscriptions`, every subscription's role); says how to fix each problem. Exit status
    /// 1 on any failure.
    Check {
        /// Also assume every subscription's role with its external ID.
        #[arg(long)]
        subscriptions: bool,
    },
    /// Print what a customer must create to connect a bucket: the IAM role's trust and
    /// permission policies, the bucket notification for our topic, and the subscribe request.
    Onboard(OnboardArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// One line per subscribed bucket: bucket, region, role, keys redacted.
    List,
    /// One subscription in full (keys redacted), as JSON. Exit status 1 if there is none.
    Show {
        /// The bucket name.
        bucket: String,
    },
    /// Remove a bucket's subscription, whoever owns it. Exit status 1 if there was none.
    Remove {
        /// The bucket name.
        bucket: String,
    },
    /// Re-seal every subscription's keys with `subscriptions.encryption_key` (after a rotation:
    /// the old key in `subscriptions.previous_encryption_keys`). Exit status 1 if a row could
    /// not be opened with any key (it is left as it is, the others are re-sealed).
    Rekey,
    /// Create the DynamoDB table named by `subscriptions.store = "dynamodb:TABLE"` (on-demand
    /// billing, key `bucket_name`); does nothing if it exists.
    InitTable,
}

/// Arguments of `process`.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// `.json.gz` or `.json` files, or directories searched recursively for them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also print one stderr line per dropped record (eventID, eventName, reason).
    #[arg(long)]
    pub explain: bool,
    /// Bucket name to put in each change's metadata, as if the files came from it.
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
}

/// Arguments of `onboard`.
#[derive(Debug, Clone, Args)]
pub struct OnboardArgs {
    /// The customer's CloudTrail bucket.
    #[arg(long)]
    pub bucket: String,
    /// The customer's 12-digit AWS account ID (the bucket's owner).
    #[arg(long)]
    pub account: String,
    /// The trail's key prefix, if any (the part before `AWSLogs/`).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// The external ID to require; a random one is generated when absent.
    #[arg(long)]
    pub external_id: Option<String>,
    /// The bucket's region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// `text` for people, `json` for tools.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show each message's failure reason, detail, bucket/key and age without consuming it.
    Peek {
        /// At most this many messages.
        #[arg(long, default_value_t = 10)]
        max: usize,
    },
    /// Move messages back to the source queue (send first, then delete; safe to interrupt).
    Redrive(RedriveArgs),
}

/// Arguments of `dlq redrive`.
#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    /// At most this many messages (default: all).
    #[arg(long)]
    pub max: Option<usize>,
    /// Only messages whose `failure_reason` is this (e.g. `unknown_bucket`; `none` for those
    /// SQS moved by itself, without a reason).
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,
    /// Print what would be moved; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many messages per second.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings (secrets redacted), or the error with exit status 1.
    Check,
}
