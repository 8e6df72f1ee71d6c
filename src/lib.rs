//! cloudtrail-changes: turns AWS CloudTrail log files into BigPanda changes.
//!
//! # Layout
//! The folder listing is the architecture. Modules are listed from the bottom up: each one uses
//! only those above it in this list, never one below (no import cycles).
//!
//! - [`util`]: small shared helpers (error chains, durations, ARNs, list settings).
//! - [`core`]: the pure stages, in data order: envelope -> records -> filter -> normalize, and
//!   the pipeline that runs them over one object. No I/O, no AWS, no tokio.
//! - [`metrics`]: every metric family, with its description and its known label values (the
//!   core's drop and skip reasons among them), registered at zero at start-up.
//! - [`aws`]: the edges to AWS: SQS (the queue and the DLQ), STS credentials, S3 downloads.
//! - [`subscriptions`]: which keys and role belong to a bucket: validation, sealing, the SQLite
//!   and DynamoDB stores, the workers' cached lookup and the HTTP API's handlers.
//! - [`forward`]: delivery to the Changes API: the forwarder, its HTTP client, pacing per API
//!   key, Retry-After.
//! - [`settings`]: layered configuration (`config/default.toml`, overlay file, `CTC__` env vars)
//!   validated into typed settings, one section per stage.
//! - [`worker`]: poll the queue, handle one message (envelope -> subscription -> role -> S3 ->
//!   pipeline -> forward), decide its fate (the written policy), fairness between customers.
//! - [`http`]: the listeners: the subscription API server and the operations endpoints
//!   (metrics, health, readiness).
//! - [`shutdown`]: SIGINT/SIGTERM as a cancellation token.
//! - [`cli`]: the command line as parsed.
//! - [`commands`]: operator tools: `process`, `dlq`, `check`, `onboard`, `subscriptions`.
//! - [`app`]: assembly: `run` (the daemon), `serve-api`, and the dispatch of every command.

pub mod app;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod core;
pub mod forward;
pub mod http;
pub mod metrics;
pub mod settings;
pub mod shutdown;
pub mod subscriptions;
pub mod util;
pub mod worker;
