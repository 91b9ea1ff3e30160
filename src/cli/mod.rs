//! The command line: `run` (the default), `check-config`, `print-config`, `status`,
//! `healthcheck`, `reload` and `outages`.

pub mod outages;
pub mod reload;
pub mod status;
pub mod test_page;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps AWS Site-to-Site VPN tunnels busy with ICMP, judges each tunnel's health, and
/// answers SiteScope (/health) and Prometheus (/metrics).
///
/// With no arguments it runs the embedded default: a pretend VPN whose two tunnels ping
/// 127.0.0.1 and 127.0.0.2, with HTTP on 127.0.0.1:9478. See `print-config` for it.
#[derive(Debug, Parser)]
#[command(
    name = "tunnelkeeper",
    version,
    args_conflicts_with_subcommands = true,
    after_help = EXIT_RUN
)]
pub struct Cli {
    /// What to do; `run` when absent.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `run`, accepted without the word `run` too.
    #[command(flatten)]
    pub run: RunArgs,
}

// Each subcommand's exit codes, in its --help (scripts and ExecReload= branch on them).
const EXIT_RUN: &str = "Exit codes: 0 stopped by SIGTERM or SIGINT, 1 could not start or \
                        failed, 2 the config does not validate, 70 a task panicked.";
const EXIT_CHECK_CONFIG: &str = "Exit codes: 0 valid, 2 invalid (every problem is printed).";
const EXIT_PRINT_CONFIG: &str = "Exit codes: 0 always.";
const EXIT_STATUS: &str = "Exit codes (as monitoring plugins): 0 VPN OK, 1 DEGRADED, 2 \
                           CRITICAL or a critical alert fires, 3 unknown (daemon unreachable, \
                           starting, or an answer that cannot be read).";
const EXIT_TEST_PAGE: &str = "Exit codes: 0 every sink accepted the page, 1 a sink refused \
                              it, 2 the daemon refused the request, 3 the daemon is \
                              unreachable.";
const EXIT_HEALTHCHECK: &str = "Exit codes: 0 the daemon answers /-/healthy, 1 otherwise.";
const EXIT_RELOAD: &str = "Exit codes: 0 the new config runs, 1 it was refused or no \
                           outcome came in time.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    #[command(after_help = EXIT_RUN)]
    Run(RunArgs),
    /// Validate a config file: exit 0 with a one-line summary, or 2 with every problem.
    #[command(after_help = EXIT_CHECK_CONFIG)]
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
    /// Print the embedded default config, a commented TOML file to start from.
    #[command(after_help = EXIT_PRINT_CONFIG)]
    PrintConfig,
    /// Show a running daemon's connections, tunnels, targets and alerts as a table.
    #[command(after_help = EXIT_STATUS)]
    Status {
        #[command(flatten)]
        daemon: DaemonAddress,
        /// Print the raw /status JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running daemon to send "[TEST] tunnelkeeper test page from <host>: no action
    /// needed" through its sinks (or the one named) and print each sink's answer: exit 0
    /// when every sink accepted it, 1 when one refused, 2 when the daemon refused, 3 when
    /// unreachable. Allowed from the daemon's own host (loopback) or with the lifecycle API.
    #[command(after_help = EXIT_TEST_PAGE)]
    TestPage {
        #[command(flatten)]
        daemon: DaemonAddress,
        /// Only this sink (its name, as in /status `sinks` and `tunnelkeeper status`).
        #[arg(long, value_name = "NAME")]
        sink: Option<String>,
    },
    /// List a running daemon's outage log, newest first; with --export ID print that
    /// outage's incident bundle (JSON: the record, its pages, the minutes of its tunnels
    /// around it), or its minutes as CSV with --csv. Exit 1 for an unknown id, 3 when
    /// unreachable.
    Outages {
        #[command(flatten)]
        daemon: DaemonAddress,
        /// The outage whose bundle to print (an id from the list).
        #[arg(long, value_name = "ID")]
        export: Option<String>,
        /// With --export: the minutes as CSV instead of the JSON bundle.
        #[arg(long)]
        csv: bool,
    },
    /// Exit 0 when a daemon answers /-/healthy (the container health probe), 1 otherwise.
    #[command(after_help = EXIT_HEALTHCHECK)]
    Healthcheck {
        #[command(flatten)]
        daemon: DaemonAddress,
    },
    /// Reload a running daemon's config (SIGHUP) and wait for the outcome: exit 0 when the
    /// new config runs, 1 with the reason when it was refused or no outcome came in time.
    /// The systemd unit's ExecReload= runs it.
    #[command(after_help = EXIT_RELOAD)]
    Reload {
        #[command(flatten)]
        daemon: DaemonAddress,
        /// The daemon's process id; systemd gives it as MAINPID to ExecReload=. Without
        /// either, the pid the daemon reports in /status.
        #[arg(long, env = "MAINPID", value_name = "PID")]
        pid: Option<u32>,
        /// How long to wait for the outcome.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: std::time::Duration,
    },
}

/// How `status` and `healthcheck` reach a running daemon, TLS and basic auth included.
#[derive(Debug, Args, Clone)]
pub struct DaemonAddress {
    /// The daemon's HTTP address: host (or IP) and port, such as localhost:9478.
    #[arg(
        long,
        env = "TUNNELKEEPER_ADDR",
        default_value = "127.0.0.1:9478",
        value_name = "HOST:PORT"
    )]
    pub addr: String,
    /// Speak TLS, trusting the CA (or self-signed certificate) in this PEM file.
    #[arg(long, env = "TUNNELKEEPER_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Speak TLS and accept any certificate (a health check of the daemon on its own host).
    #[arg(long, env = "TUNNELKEEPER_TLS_INSECURE")]
    pub tls_insecure: bool,
    /// Basic-auth credentials as USER:PASSWORD (prefer the environment variable).
    #[arg(
        long,
        env = "TUNNELKEEPER_BASIC_AUTH",
        value_name = "USER:PASSWORD",
        hide_env_values = true
    )]
    pub basic_auth: Option<String>,
}

/// Options of `run`.
#[derive(Debug, Args, Default, Clone)]
pub struct RunArgs {
    /// Config file (TOML). Without it and without TUNNELKEEPER_CONFIG, the embedded
    /// default runs.
    #[arg(short, long, env = "TUNNELKEEPER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Listen address for HTTP, overriding `http.listen` (e.g. 127.0.0.1:0 for any port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Directory for the alert state and undelivered notifications, overriding `state_dir`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Enable `POST /-/reload`, overriding `http.enable_lifecycle` (Prometheus's flag name).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Log format: human-readable text or one JSON object per line. RUST_LOG sets the level
    /// (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
