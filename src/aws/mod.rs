//! AWS at the edge: SDK setup, the EC2 poller and the CloudWatch publisher.

pub mod cloudwatch;
pub mod ec2;
pub mod sdk;

pub use sdk::*;
