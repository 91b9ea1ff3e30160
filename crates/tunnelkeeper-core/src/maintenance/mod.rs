//! Applying AWS's pending tunnel endpoint maintenance at a safe moment rather than at
//! AWS's: `decide` is the pure decision (a function of the time, the tunnels' facts and
//! `[maintenance]`); `tracker` holds what the core remembers between decisions (each
//! tunnel's replacement under way, when it was last lossy) and builds the facts from the
//! health model, the brownout windows, EC2's readings and the firing alerts.

pub mod decide;
pub mod tracker;

pub use decide::{decide, Blocker, Decision, Progress};
pub use tracker::{MaintenanceTracker, TunnelPlan};
