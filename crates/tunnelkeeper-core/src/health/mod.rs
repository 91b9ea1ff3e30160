//! The health model, pure and sans-IO: probe results and EC2 readings come in with the
//! time they were made; verdicts on targets, tunnels, connections and the VPN come out,
//! with AWS maintenance per tunnel and advisories on tunnel options and routes.

pub mod advice;
pub mod cause;
pub mod control_plane;
pub mod ec2_cause;
pub mod failover;
pub mod maintenance;
pub mod model;
pub mod path_mtu;
pub mod tcp_service;
pub mod tunnel_log_book;
pub mod verdict;

pub use control_plane::ControlPlane;
pub use model::{combine_planes, HealthModel, TargetHealth, TunnelHealth};
pub use verdict::{ConnectionState, Verdict, VpnState};
