//! The health model, pure and sans-IO: probe results and EC2 readings in, with the time;
//! verdicts on targets, tunnels, connections and the VPN out.

pub mod control_plane;
pub mod model;

pub use model::*;
