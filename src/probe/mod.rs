//! The data plane: ICMP sockets, the per-target pinger loop and per-target counters.

pub mod confirm;
pub mod icmp;
pub mod pinger;
pub mod stats;
