//! The `tunnelkeeper` binary: parses the command line, loads the config, runs the daemon
//! and maps errors to exit codes (2 for a bad config, 1 for anything else).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use tunnelkeeper::cli::{Cli, Command, LogFormat, RunArgs};
use tunnelkeeper::config::{Config, ConfigError, EMBEDDED_DEFAULT};
use tunnelkeeper::daemon::{ConfigSource, RunOptions};

/// Exit code for a config that does not validate.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::PrintConfig) => {
            print!("{EMBEDDED_DEFAULT}");
            ExitCode::SUCCESS
        }
        Some(Command::CheckConfig { file }) => match Config::load(&file) {
            Ok(config) => {
                for warning in &config.warnings {
                    eprintln!("warning: {warning}");
                }
                println!("{}: OK: {}", file.display(), config.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        // Exit codes follow the monitoring plugins: 0 OK, 1 DEGRADED, 2 CRITICAL, 3 unknown.
        Some(Command::Status { daemon, json }) => match tunnelkeeper::cli::status::fetch(&daemon) {
            Ok(body) if json => {
                println!("{body}");
                ExitCode::from(tunnelkeeper::cli::status::exit_code(&body))
            }
            Ok(body) => {
                match tunnelkeeper::cli::status::render(&body, std::io::stdout().is_terminal()) {
                    Ok(table) => {
                        print!("{table}");
                        ExitCode::from(tunnelkeeper::cli::status::exit_code(&body))
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(3)
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(3)
            }
        },
        Some(Command::TestPage { daemon, sink }) => {
            let (code, text) = tunnelkeeper::cli::test_page::run(&daemon, sink.as_deref());
            if code == 0 || code == 1 {
                print!("{text}");
            } else {
                eprint!("{text}");
            }
            ExitCode::from(code)
        }
        Some(Command::Outages {
            daemon,
            export,
            csv,
        }) => {
            let (code, text) = tunnelkeeper::cli::outages::run(&daemon, export.as_deref(), csv);
            if code == 0 {
                print!("{text}");
            } else {
                eprint!("{text}");
            }
            ExitCode::from(code)
        }
        Some(Command::Healthcheck { daemon }) => {
            match tunnelkeeper::cli::status::get(&daemon, "/-/healthy") {
                Ok((200, _)) => ExitCode::SUCCESS,
                Ok((status, _)) => {
                    eprintln!("unhealthy: /-/healthy answered {status}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Reload {
            daemon,
            pid,
            timeout,
        }) => match tunnelkeeper::cli::reload::reload(&daemon, pid, timeout) {
            tunnelkeeper::cli::reload::Outcome::Taken(note) => {
                println!("{note}");
                ExitCode::SUCCESS
            }
            tunnelkeeper::cli::reload::Outcome::Failed(why) => {
                eprintln!("error: {why}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

/// Exit code of a daemon taken down by a panicking task.
const EXIT_PANIC: i32 = 70;

fn run(args: RunArgs) -> ExitCode {
    // Before any thread starts: glibc reads its arena limit as threads first allocate.
    let malloc = tunnelkeeper::allocator::tune();
    init_logging(args.log_format);
    info!(%malloc, "glibc malloc settings");
    // A task that panics would otherwise leave the daemon limping (a dead monitor behind a
    // frozen /health, a pinger that never reports): log it and exit, and let systemd or
    // ECS restart the process. The state file is saved after every change, so nothing
    // already decided is lost.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        error!(%panic, "a task panicked: exiting so that the service manager restarts tunnelkeeper");
        default_hook(panic);
        std::process::exit(EXIT_PANIC);
    }));
    let options = RunOptions {
        source: match &args.config {
            Some(path) => ConfigSource::File(path.clone()),
            None => ConfigSource::Embedded,
        },
        listen: args.listen,
        state_dir: args.state_dir.clone(),
        enable_lifecycle: args.enable_lifecycle,
    };
    match &options.source {
        ConfigSource::File(path) => {
            info!(config = %path.display(), "tunnelkeeper {} starting", env!("CARGO_PKG_VERSION"))
        }
        ConfigSource::Embedded => info!(
            "tunnelkeeper {} starting on the embedded default config (pings 127.0.0.1 and \
             127.0.0.2, no AWS); give a real one with `tunnelkeeper run --config FILE` or \
             TUNNELKEEPER_CONFIG, and see `tunnelkeeper print-config`",
            env!("CARGO_PKG_VERSION")
        ),
    }
    let config = match options.load() {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tunnelkeeper::daemon::run(config, options)) {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    error!("invalid config: {e}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::{filter_fn, FilterExt};
    use tracing_subscriber::prelude::*;

    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The SDK and HTTP stacks may print request and response details at DEBUG and TRACE;
    // EC2 answers carry the tunnels' pre-shared keys, so those levels stay off for them
    // whatever RUST_LOG says.
    let no_wire_logs = filter_fn(|meta| {
        let wire = ["aws_", "hyper", "h2", "rustls", "tower"]
            .iter()
            .any(|p| meta.target().starts_with(p));
        !wire || *meta.level() <= tracing::Level::INFO
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(env.and(no_wire_logs)))
        .init();
}
