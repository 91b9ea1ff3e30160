//! tunnelkeeper: keeps AWS Site-to-Site VPN tunnels alive with ICMP and tells whether each
//! one works.
//!
//! Data flows one way: pingers and the EC2 poller send observations to the monitor, which
//! owns the health model and the alert engine and publishes snapshots that HTTP and
//! CloudWatch read. The folders are the boxes of that design; the modules at the bottom
//! are what every box shares, and import none of the boxes.
//!
//! Boxes:
//! - [`probe`]: ICMP sockets (DGRAM or RAW), the per-target pinger loop, per-target counters.
//! - [`aws`]: AWS SDK setup, the EC2 poller, the CloudWatch publisher.
//! - [`health`]: the pure health model: targets, tunnel planes, connections, the VPN, and the
//!   control-plane tracker that turns EC2 readings into verdicts.
//! - [`alert`]: the pure alert engine and its conditions, the router the monitor owns, the
//!   outbox, the state file, what pages say, and the sinks (log, SNS, Alertmanager).
//! - [`daemon`]: config generations and reload, the monitor task, signals, systemd.
//! - [`http`]: the routes and a hardened HTTP/1 server.
//! - [`cli`]: the command line and `status`/`healthcheck`, clients of a running daemon.
//!
//! Shared, below the boxes:
//! - [`config`]: the TOML config, its validation and the embedded default.
//! - [`messages`]: what crosses channels between tasks.
//! - [`snapshot`]: what readers see: the `/health` page and the `/status` JSON.
//! - [`metrics`]: the Prometheus series every task writes to.
//! - [`outage_log`]: the outage log's file in `state_dir` and its records in memory.
//! - [`history`]: per-minute latency rings for the NOC page's smoke charts.
//! - [`history_file`]: the rings saved to `state_dir` once a minute and read at start.
//! - [`liveness`]: heartbeats of the loops, for the watchdog.
//! - [`http_client`]: one small HTTP/1.1 client.
//! - [`types`]: ids, names, alert classes and the daemon's notion of time.
//! - [`jitter`]: a small random source for backoff jitter.
//! - [`allocator`]: glibc malloc's settings, set once at start.

pub use tunnelkeeper_core::{config, health, history, jitter, reload, tunnel_log, types};

pub mod alert;
pub mod allocator;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod history_file;
pub mod http;
pub mod http_client;
pub mod liveness;
pub mod messages;
pub mod metrics;
pub mod outage_log;
pub mod probe;
pub mod snapshot;
