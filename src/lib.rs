//! cloudtrail-changes: turns AWS CloudTrail log files into BigPanda changes.
//!
//! # Layout
//! The data flows through these modules in one direction:
//!
//! - [`envelope`]: decodes a queue message body (S3 event, SNS, CloudTrail's SNS notification,
//!   EventBridge) into the S3 objects it names, or into a skip with its reason. Pure.
//! - [`records`]: streams CloudTrail records out of a (gzip) `{"Records":[...]}` document one at a
//!   time, with limits; never holds the document whole.
//! - [`filter`]: decides which records are real changes; every drop has a reason. Pure.
//! - [`normalize`]: maps a kept record to the exact BigPanda Changes API request body. Pure.
//! - [`pipeline`]: runs records -> filter -> normalize over one object and tallies the outcome.
//! - [`process`]: the `process` command: the pipeline over local files, changes to stdout.
//! - [`settings`]: layered configuration (`config/default.toml`, overlay file, `CTC__` env vars)
//!   validated into typed settings.
//! - [`subscriptions`]: which keys and role belong to a bucket; validated API requests, keys
//!   sealed at rest, SQLite and DynamoDB stores, the workers' cached lookup.
//! - [`credentials`]: the daemon's AWS configuration; customer roles assumed with their
//!   external ID, credentials cached until near expiry.
//! - [`admin`]: the HTTP subscription API.
//! - [`dlq`]: on-call's `dlq peek` and `dlq redrive`.
//! - [`preflight`]: `check`, and the checks the daemon runs at start.
//! - [`daemon`]: `run` assembled: worker, API, metrics and health listener, systemd notify.
//! - [`onboard`]: what a customer creates to connect a bucket (policies, notification, request).
//! - [`app`]: glue for `serve-api` and the `subscriptions` on-call commands.
//! - [`cli`]: the command line (`process`, `serve-api`, `subscriptions`, `config check`).

pub mod admin;
pub mod app;
pub mod cli;
pub mod credentials;
pub mod daemon;
pub mod dlq;
pub mod download;
pub mod envelope;
pub mod filter;
pub mod forward;
pub mod metrics;
pub mod normalize;
pub mod onboard;
pub mod pipeline;
pub mod preflight;
pub mod process;
pub mod queue;
pub mod records;
pub mod settings;
pub mod subscriptions;
pub mod worker;
