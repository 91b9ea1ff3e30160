//! Alerting, pure: the engine and its notifications, the conditions it is fed, the outbox
//! of undelivered notifications, the saved state, and what notifications say.

pub mod engine;
pub mod outbox;
pub mod policy;
pub mod runbook;
pub mod saved;
pub mod sink_health;
pub mod view;
pub mod wording;
