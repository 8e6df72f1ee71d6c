//! The pure stages of the pipeline, in data order: a queue message body becomes S3 object
//! references ([`envelope`]); an object's bytes become CloudTrail records one at a time
//! ([`records`]); each record is kept or dropped with a reason ([`filter`]); a kept record becomes
//! the exact Changes API body ([`normalize`]); [`pipeline`] runs the last three over one object.
//!
//! Nothing here does network I/O, knows AWS clients or tokio: values in, values out (the record
//! reader takes any `Read`).

pub mod envelope;
pub mod filter;
pub mod normalize;
pub mod pipeline;
pub mod records;
pub mod rejected;
