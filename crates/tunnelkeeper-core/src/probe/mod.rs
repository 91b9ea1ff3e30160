//! The pure side of probing: the adaptive timeout and fast-confirm rule every pinger
//! follows, and the per-target counters.

pub mod confirm;
pub mod stats;
