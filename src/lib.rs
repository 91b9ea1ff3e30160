//! tunnelkeeper: keeps AWS Site-to-Site VPN tunnels alive with ICMP and tells whether each
//! one works.
//!
//! Data flows one way: pingers and the EC2 poller send observations to the monitor, which
//! owns the health model and publishes snapshots that HTTP and CloudWatch read.
//!
//! - [`cli`]: the command line.
//! - [`alerts`]: the pure alert engine (for, keep_firing_for, repeat, inhibition, silences).
//! - [`alerting`]: alerting glue owned by the monitor: conditions, routing, outbox, state.
//! - [`aws`]: AWS SDK setup and error kinds.
//! - [`conditions`]: alert conditions derived from the health model; flap counting.
//! - [`control`]: the pure control-plane tracker: EC2 readings into tunnel verdicts.
//! - [`ec2`]: the EC2 poller (`DescribeVpnConnections`).
//! - [`cloudwatch`]: the CloudWatch publisher (figures and a heartbeat).
//! - [`jitter`]: a small random source for backoff jitter.
//! - [`config`]: the TOML config, its validation and the embedded default.
//! - [`model`]: newtypes for names and addresses, and [`model::Timestamp`].
//! - [`health`]: the pure health model: targets, tunnel planes, connections, the VPN.
//! - [`stats`]: per-target counters and recent loss and RTT.
//! - [`status`]: `tunnelkeeper status` and `healthcheck`, clients of a running daemon.
//! - [`pinger`]: the per-target probe loop and the [`pinger::Prober`] seam.
//! - [`icmp`]: ICMP sockets through surge-ping (DGRAM or RAW) behind that seam.
//! - [`monitor`]: the task that owns the model and publishes snapshots.
//! - [`snapshot`]: what readers see: the `/health` page and the `/status` JSON.
//! - [`metrics`]: the Prometheus series.
//! - [`outbox`]: undelivered notifications with retry times.
//! - [`sinks`]: what pages say, and the log, SNS and Alertmanager workers.
//! - [`state`]: the state file (alerts and outbox), written atomically.
//! - [`systemd`]: sd_notify messages and the watchdog.
//! - [`http`]: the routes and a hardened HTTP/1 server.
//! - [`daemon`]: wiring, config generations and reload, and the single shutdown path.

pub mod alert;
pub mod aws;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod health;
pub mod http;
pub mod jitter;
pub mod metrics;
pub mod probe;
pub mod snapshot;
pub mod types;
