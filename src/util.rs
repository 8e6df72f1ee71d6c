//! Small helpers shared by every layer: no I/O, no knowledge of the pipeline. Nothing here
//! imports from the rest of the crate.

pub mod arn;
pub mod de;
pub mod duration;
pub mod errors;
