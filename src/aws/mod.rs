//! AWS at the edge: SDK setup, the EC2 poller (with the maintenance poller beside it), the
//! CloudWatch publisher, the tunnel logs reader (CloudWatch Logs), and the
//! `ReplaceVpnTunnel` calls `[maintenance]` asks for.

pub mod cloudwatch;
pub mod ec2;
pub mod maintenance;
pub mod replace;
pub mod sdk;
pub mod tunnel_logs;

pub use sdk::*;
