//! Wiring and lifecycle: opens the state directory, the HTTP listener and the ICMP socket,
//! starts the monitor, the pingers, the AWS tasks (only with `[aws]`), the notification
//! sinks and the HTTP server, and stops them all through one cancellation token on SIGTERM
//! or SIGINT, saving the alert state last.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::alerting::{Alerting, SinkHandle};
use crate::cloudwatch::CloudWatchPublisher;
use crate::config::{Config, SinkKind};
use crate::ec2::Ec2Poller;
use crate::http::{self, AppState};
use crate::icmp::IcmpSockets;
use crate::metrics::Metrics;
use crate::model::Clock;
use crate::monitor::{Monitor, Observation};
use crate::pinger::{splay, PingerTask};
use crate::sinks::{run_sink, AlertmanagerSink, LogSink, PageContext, SnsSink};
use crate::state::{Loaded, StateStore};

/// How long tasks get to finish after the shutdown signal.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config, listen_override: Option<SocketAddr>) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(wait_for_signal(cancel.clone()));
    let result = run_until(config, listen_override, cancel).await;
    signals.abort();
    result
}

/// Runs the daemon until `cancel` fires.
pub async fn run_until(
    config: Config,
    listen_override: Option<SocketAddr>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    for warning in &config.warnings {
        warn!(%warning, "config warning");
    }
    let clock = Clock::start();
    let store = StateStore::open(&config.state_dir)?;
    let saved = match store.load(clock.now()) {
        Loaded::Fresh => None,
        Loaded::State(state) => {
            info!(
                path = %store.path().display(),
                alerts = state.alerts.len(),
                undelivered = state.outbox.len(),
                "alert state restored"
            );
            Some(state)
        }
        Loaded::Corrupt { error, moved_to } => {
            error!(
                path = %store.path().display(),
                moved_to = %moved_to.display(),
                %error,
                "THE ALERT STATE FILE IS CORRUPT: moved aside, starting with no alerts and an empty outbox"
            );
            None
        }
    };

    let listen = listen_override.unwrap_or(config.listen);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    let bound = listener
        .local_addr()
        .context("reading the bound HTTP address")?;

    let sockets = IcmpSockets::open(config.socket, config.targets.len())?;
    let socket_type = sockets.socket_type().label();
    let sdk = match &config.aws {
        Some(aws) => {
            let sdk = crate::aws::load(aws).await?;
            info!(region = ?sdk.region(), endpoint = ?aws.endpoint_url, "AWS configured");
            Some(sdk)
        }
        None => None,
    };
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new(&config, socket_type, sockets.receive_buffer()));

    let tasks = TaskTracker::new();
    // Room for a few rounds of results from every target before pingers wait on the monitor.
    let (tx, rx) = mpsc::channel::<Observation>((config.targets.len() * 4).clamp(64, 65_536));

    let ctx = PageContext::from_machine(&config.alerts.runbook_url);
    let mut sinks = Vec::new();
    let mut alertmanagers = Vec::new();
    for (index, sink) in config.alerts.sinks.iter().enumerate() {
        let (deliveries_tx, deliveries_rx) = mpsc::channel(crate::outbox::CAPACITY + 16);
        match &sink.kind {
            SinkKind::Log => {
                tasks.spawn(run_sink(
                    index,
                    LogSink { ctx: ctx.clone() },
                    deliveries_rx,
                    tx.clone(),
                    cancel.clone(),
                ));
                sinks.push(SinkHandle::Outbox(deliveries_tx));
            }
            SinkKind::Sns { topic_arn } => {
                let sdk = sdk.as_ref().context("an sns sink needs [aws]")?;
                let sns = SnsSink {
                    client: aws_sdk_sns::Client::new(sdk),
                    topic_arn: topic_arn.clone(),
                    ctx: ctx.clone(),
                };
                tasks.spawn(run_sink(
                    index,
                    sns,
                    deliveries_rx,
                    tx.clone(),
                    cancel.clone(),
                ));
                sinks.push(SinkHandle::Outbox(deliveries_tx));
            }
            SinkKind::Alertmanager { url } => {
                let (am_tx, am_rx) = watch::channel(Vec::new());
                alertmanagers.push(AlertmanagerSink {
                    url: url.clone(),
                    ctx: ctx.clone(),
                    alerts: am_rx,
                    metrics: metrics.clone(),
                    label: format!("alertmanager[{index}]"),
                    cancel: cancel.clone(),
                });
                sinks.push(SinkHandle::Alertmanager(am_tx));
            }
        }
    }
    for am in alertmanagers {
        tasks.spawn(am.run());
    }
    let alerting = Alerting::new(
        config.clone(),
        saved,
        store,
        sinks,
        metrics.clone(),
        clock.now(),
    );
    let (monitor, snapshots) = Monitor::new(
        config.clone(),
        metrics.clone(),
        alerting,
        clock,
        socket_type,
    );
    let monitor_done = tasks.spawn(monitor.run(rx, cancel.clone()));

    let count = config.targets.len();
    let ident_base = std::process::id() as u16;
    for (index, target) in config.targets.iter().enumerate() {
        let prober = sockets.prober(
            target.address,
            target.probe.payload_bytes,
            ident_base.wrapping_add(index as u16),
        );
        let task = PingerTask {
            target: target.id,
            settings: target.probe,
            splay: splay(index, count, target.probe.interval),
            observations: tx.clone(),
            cancel: cancel.clone(),
        };
        tasks.spawn(task.run(prober));
    }

    if let (Some(aws), Some(sdk)) = (&config.aws, &sdk) {
        if config.connections.iter().any(|c| c.id.is_some()) {
            let poller = Ec2Poller {
                client: aws_sdk_ec2::Client::new(sdk),
                config: config.clone(),
                interval: aws.poll_interval,
                observations: tx.clone(),
                cancel: cancel.clone(),
            };
            tasks.spawn(poller.run());
        }
        if let Some(namespace) = &aws.cloudwatch_namespace {
            let publisher = CloudWatchPublisher {
                client: aws_sdk_cloudwatch::Client::new(sdk),
                namespace: namespace.clone(),
                interval: aws.cloudwatch_interval,
                snapshots: snapshots.clone(),
                metrics: metrics.clone(),
                cancel: cancel.clone(),
            };
            tasks.spawn(publisher.run());
        }
    }
    drop(tx);

    let ready = Arc::new(AtomicBool::new(false));
    let app = http::router(AppState {
        snapshots,
        metrics,
        ready: ready.clone(),
    });
    tasks.spawn(http::serve(listener, app, cancel.clone()));
    ready.store(true, Ordering::Release);
    info!(
        listen = %bound,
        targets = count,
        connections = config.connections.len(),
        socket = socket_type,
        state_dir = %config.state_dir.display(),
        "tunnelkeeper running; /health, /status, /metrics on http://{bound}"
    );

    cancel.cancelled().await;
    info!("shutting down");
    tasks.close();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        warn!(drain = ?DRAIN, "some tasks did not stop in time");
    }
    // The monitor saves the alert state as it exits; make sure it got there.
    if !monitor_done.is_finished() {
        error!("the monitor did not stop in time; the alert state may miss the last changes");
    }
    Ok(())
}

async fn wait_for_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(signal = name, "signal received");
    cancel.cancel();
}
