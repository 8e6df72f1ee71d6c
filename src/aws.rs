//! The edges to AWS: every SQS call ([`queue`], the DLQ's included), the daemon's AWS
//! configuration and customer roles assumed through STS ([`credentials`]), streamed GetObject
//! into memory or a spool file ([`download`]), and what a refused role or sample read means in
//! words a customer can act on ([`diagnose`]).

pub mod credentials;
pub mod diagnose;
pub mod download;
pub mod queue;
