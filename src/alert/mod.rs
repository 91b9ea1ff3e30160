//! Alerting at the edge: the state file on disk and its writer thread, and the sinks. The
//! pure parts (conditions, engine, outbox, notification text) are in the core crate and
//! re-exported here under their usual names; the core's pager decides what goes where.

pub use tunnelkeeper_core::alert::{
    engine, outbox, policy, runbook, saved, sink_health, view, wording,
};

pub mod sinks;
pub mod state_file;
pub mod state_writer;
pub mod test_page;
