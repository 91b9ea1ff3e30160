//! The data plane: ICMP sockets, the ICMP errors they bring back, the per-target pinger
//! loop and per-target counters.

pub mod confirm;
pub mod echo_packet;
pub mod icmp;
pub mod icmp_error;
pub mod mtu;
pub mod pinger;
pub mod stats;
pub mod syscall;
