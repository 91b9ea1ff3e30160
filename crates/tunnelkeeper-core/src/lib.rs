//! tunnelkeeper's core, sans-IO: everything the daemon decides, with no runtime, socket,
//! HTTP or AWS dependency. Inputs come in with the time they were made; verdicts, alerts
//! and notifications come out. The daemon crate drives it and does the IO.
//!
//! Modules, lowest first (none imports one listed after it):
//! - [`types`]: ids, names, alert classes, severities and [`types::Timestamp`].
//! - [`messages`]: what the shell's tasks observe: probe outcomes, EC2 readings, delivery
//!   reports.
//! - [`config`]: the TOML config, its validation, the embedded default and the diff
//!   between two configs.
//! - [`quantile`]: the one percentile (nearest rank) every view takes.
//! - [`probe`]: the adaptive timeout and fast-confirm rule, per-target counters.
//! - [`health`]: targets, tunnel planes, connections and the VPN; the control-plane
//!   tracker; AWS maintenance; path MTU; advisories.
//! - [`history`]: per-minute latency rings for the smoke charts.
//! - [`maintenance`]: when to apply AWS's pending tunnel maintenance (`[maintenance]`),
//!   and the replacements under way.
//! - [`alert`]: conditions, the engine, the outbox, the saved state, notification text.
//! - [`outage`]: the outage log: records of ended outages and failovers, built as the
//!   verdicts change; their file form, retention and filters.
//! - [`machine`]: the core as one state machine: observations and time in, events out.
//! - [`jitter`]: a small random source for backoff jitter.
//! - [`reload`]: the outcome of config reloads, as every view tells it.
//! - [`tunnel_log`]: AWS's tunnel activity log events read, and the causes they tell.

pub mod alert;
pub mod config;
pub mod health;
pub mod history;
pub mod jitter;
pub mod machine;
pub mod maintenance;
pub mod messages;
pub mod outage;
pub mod probe;
pub mod quantile;
pub mod reload;
pub mod tunnel_log;
pub mod types;
