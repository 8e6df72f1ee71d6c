//! The test harness: real servers on random loopback ports, nothing mocked in-process.
//!
//! - `moto`: a moto server child process, the AWS-protocol endpoint (S3, SQS, SNS, STS, ...).
//! - `aws`: SDK clients pointed at it and set-up helpers (buckets, queues with a DLQ, S3 -> SNS
//!   -> SQS and S3 -> SQS notifications, draining and counting queues).
//! - `bigpanda`: an HTTP stand-in for the BigPanda Changes API that records every request and
//!   answers from a script.
//! - `stack`: all of the above for one test, plus the daemon in this process or as the binary.
//! - `binary`: the one way to run the real binary.
//! - `proxy`: a fault-injecting HTTP proxy to put in front of moto (5xx, throttling, delays).
//! - `prerequisite`: a missing tool or kernel feature fails the test in CI, is a counted skip
//!   elsewhere (shared with the other test crates: `tests/common/prerequisite.rs`).
//!
//! Helpers are used by test modules added over time, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod aws;
pub mod bigpanda;
pub mod binary;
pub mod moto;
#[path = "../../common/prerequisite.rs"]
pub mod prerequisite;
pub mod proxy;
pub mod stack;

/// An address on the loopback interface whose port is free right now.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}
