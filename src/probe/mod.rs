//! The data plane: ICMP sockets, the ICMP errors they bring back, TCP connects to services
//! and the per-target pinger loop. The adaptive timeout, fast confirm and counters are pure and live in the core.

pub use tunnelkeeper_core::probe::{confirm, stats};

pub mod echo_packet;
pub mod icmp;
pub mod icmp_error;
pub mod mtu;
pub mod pinger;
pub mod syscall;
pub mod tcp;
