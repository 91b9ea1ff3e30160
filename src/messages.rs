//! What crosses the channels between tasks, as the core defines it; on the channels its
//! times are the runtime's instants, which the monitor reads against its clock.

pub use tunnelkeeper_core::messages::*;

/// An observation as a pinger or the EC2 poller sends it.
pub type Observation = tunnelkeeper_core::messages::Observation<tokio::time::Instant>;
