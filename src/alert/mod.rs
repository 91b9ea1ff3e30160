//! Alerting at the edge: the router the monitor owns, the state file on disk and its
//! writer thread, and the sinks. The pure parts (engine, conditions, outbox, notification
//! text) are in the core crate and re-exported here under their usual names.

pub use tunnelkeeper_core::alert::{
    brownout, conditions, engine, mtu, outbox, page, runbook, saved, view,
};

pub mod router;
pub mod sinks;
pub mod state_file;
pub mod state_writer;
