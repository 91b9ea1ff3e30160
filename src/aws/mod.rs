//! AWS at the edge: SDK setup, the EC2 poller (with the maintenance poller beside it), the
//! CloudWatch publisher and the tunnel logs reader (CloudWatch Logs).

pub mod cloudwatch;
pub mod ec2;
pub mod maintenance;
pub mod sdk;
pub mod tunnel_logs;

pub use sdk::*;
