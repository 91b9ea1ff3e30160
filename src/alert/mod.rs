//! Alerting: the pure engine, the conditions it is fed, the router the monitor owns, the
//! outbox, the state file and the sinks.

pub mod conditions;
pub mod engine;
pub mod mtu;
pub mod outbox;
pub mod page;
pub mod router;
pub mod runbook;
pub mod sinks;
pub mod state_file;
pub mod state_writer;
