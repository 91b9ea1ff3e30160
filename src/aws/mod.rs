//! AWS at the edge: SDK setup, the EC2 poller (with the maintenance poller beside it) and
//! the CloudWatch publisher.

pub mod cloudwatch;
pub mod ec2;
pub mod maintenance;
pub mod sdk;

pub use sdk::*;
