//! Small helpers shared by every layer: no I/O, no knowledge of the pipeline.

pub mod de;
