//! Wiring and lifecycle. The daemon runs in *generations*: one per loaded config, each
//! with its monitor, pingers, AWS tasks and notification sinks under its own cancellation
//! token. A reload (SIGHUP or `POST /-/reload`) validates the new config first, then ends
//! the running generation and starts the next one with what the old monitor knew (verdicts,
//! stats, alerts, undelivered pages). The HTTP server, the state file, systemd
//! notifications and the watchdog live across generations. SIGTERM or SIGINT stops
//! everything through one root token; the alert state is saved last.

pub mod effects;
pub mod maintenance_log;
pub mod monitor;
pub mod mtu;
pub mod pingers;
pub mod systemd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use aws_config::SdkConfig;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::alert::sinks::{run_sink, AlertmanagerSink, LogSink, SinkHandle, SnsSink};
use crate::alert::state_file::{Loaded, SavedState, StateStore};
use crate::alert::state_writer::StateWriter;
use crate::alert::wording::PageContext;
use crate::aws::cloudwatch::CloudWatchPublisher;
use crate::aws::ec2::Ec2Poller;
use crate::aws::tunnel_logs::TunnelLogReader;
use crate::clock::Clock;
use crate::config::{Config, ConfigError, SinkKind};
use crate::daemon::effects::Hooks;
use crate::daemon::monitor::{Monitor, MonitorSetup};
use crate::daemon::pingers::PingerPool;
use crate::daemon::systemd::{run_watchdog, watchdog_interval, Notifier};
use crate::history::{History, SharedHistory};
use crate::history_file::HistorySaver;
use crate::http::security::{Security, SharedSecurity};
use crate::http::{self, AppState, ReloadRequest};
use crate::liveness::{Heartbeat, Watched};
use crate::messages::Observation;
use crate::metrics::{Metrics, ReloadStatus};
use crate::outage_log::OutageLog;
use crate::probe::icmp::IcmpSockets;
use crate::reload::ReloadHealth;
use crate::snapshot::{Meta, Snapshot};
use tunnelkeeper_core::jitter::Jitter;
use tunnelkeeper_core::machine::Core;

/// How long tasks get to finish after the shutdown signal or a reload.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Where the config comes from, so that a reload reads it again.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    /// The built-in default.
    Embedded,
}

/// Command-line settings that override the config, on start and on every reload.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where the config comes from.
    pub source: ConfigSource,
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    /// `--web.enable-lifecycle`: `POST /-/reload` works whatever the config says.
    pub enable_lifecycle: bool,
}

impl RunOptions {
    /// Loads and validates the config, with the overrides applied.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.source {
            ConfigSource::File(path) => Config::load(path)?,
            ConfigSource::Embedded => Config::embedded_default(),
        };
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
            // Chosen on the command line: used as it is, never replaced.
            config.state_dir_is_default = false;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        config.enable_lifecycle |= self.enable_lifecycle;
        Ok(config)
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config, options: RunOptions) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let signals = tokio::spawn(handle_signals(cancel.clone(), reload_tx.clone()));
    let result = run_until(config, options, cancel, reload_tx, reload_rx).await;
    signals.abort();
    result
}

/// What lives across generations.
struct Lasting {
    clock: Clock,
    writer: StateWriter,
    snapshots: watch::Sender<Arc<Snapshot>>,
    notifier: Arc<Notifier>,
    pingers: Heartbeat,
    alert_loop: Heartbeat,
    poller: Heartbeat,
    started_at: crate::types::Timestamp,
    /// The smoke charts' history (kept across reloads), its ring files in `state_dir`
    /// (restarts) as the pages read them, and the thread that writes them once a minute.
    history: SharedHistory,
    rings: crate::history_file::Rings,
    history_saver: HistorySaver,
    /// The outage log (in `state_dir`, which a reload does not move).
    outages: Arc<OutageLog>,
}

/// Resources a generation needs that can fail to come up: got before the running
/// generation is stopped, so that a reload that cannot start leaves the old one running.
struct Prepared {
    config: Arc<Config>,
    /// `None` only for a config whose targets are all TCP, when no ICMP socket opens.
    sockets: Option<Arc<IcmpSockets>>,
    sdk: Option<SdkConfig>,
    security: Arc<Security>,
}

/// One running generation.
struct Generation {
    cancel: CancellationToken,
    tasks: TaskTracker,
    monitor: JoinHandle<Core>,
    metrics: Arc<Metrics>,
    first_round: watch::Receiver<bool>,
}

/// Runs the daemon until `cancel` fires, taking reload requests from `reloads`.
pub async fn run_until(
    config: Config,
    options: RunOptions,
    cancel: CancellationToken,
    reload_tx: mpsc::Sender<ReloadRequest>,
    mut reloads: mpsc::Receiver<ReloadRequest>,
) -> anyhow::Result<()> {
    for warning in &config.warnings {
        warn!(%warning, "config warning");
    }
    let clock = Clock::start();
    let mut config = config;
    let store = open_store(&mut config)?;
    let saved = load_state(&store, &clock);
    let outages = Arc::new(OutageLog::open(store.dir(), clock.now()));
    let state_dir = store.dir().to_path_buf();
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.listen))?;
    let bound = (listener.local_addr()).context("reading the bound HTTP address")?;
    let mut prepared = prepare(Arc::new(config), None).await?;

    let (snapshots, snapshots_rx) = watch::channel(Arc::new(placeholder(&prepared, &clock)));
    let history = History::shared(&prepared.config);
    let rings = crate::history_file::open(&state_dir, &history, clock.now());
    let shared = Lasting {
        clock,
        writer: StateWriter::start(store, clock),
        snapshots,
        notifier: Arc::new(Notifier::from_env()),
        pingers: Heartbeat::new(),
        alert_loop: Heartbeat::new(),
        poller: Heartbeat::new(),
        started_at: clock.now(),
        history_saver: HistorySaver::start(&state_dir, history.clone(), rings.clone(), clock),
        rings,
        history,
        outages,
    };
    let lasting = TaskTracker::new();
    let ready = Arc::new(AtomicBool::new(false));
    let lifecycle = Arc::new(AtomicBool::new(prepared.config.enable_lifecycle));
    let security: SharedSecurity = Arc::new(RwLock::new(prepared.security.clone()));
    let (reload_health, reload_health_rx) =
        watch::channel(ReloadHealth::started(shared.started_at));
    let (test_pages_tx, test_sinks_tx) = spawn_test_pages(&lasting, &prepared, &cancel);
    let app = http::router(AppState {
        snapshots: snapshots_rx,
        ready: ready.clone(),
        reload: Some(reload_tx),
        lifecycle: lifecycle.clone(),
        test_pages: Some(test_pages_tx),
        security: security.clone(),
        watched: watched(&shared, &prepared.config),
        reload_health: reload_health_rx,
        outages: shared.outages.clone(),
        rings: shared.rings.clone(),
        state_save: shared.writer.health(),
    });
    lasting.spawn(http::serve(listener, app, security.clone(), cancel.clone()));
    spawn_watchdog(&lasting, &shared, &prepared.config, &cancel);

    let mut reload_status = ReloadStatus {
        successful: true,
        last_success: shared.clock.now(),
    };
    let mut pingers = PingerPool::new(cancel.clone());
    let channel = observation_channel(&prepared.config);
    pingers.update(&prepared.config, prepared.sockets.as_ref(), &channel.0);
    let mut generation = start_generation(
        &prepared,
        Previous::Disk(saved),
        &shared,
        reload_status,
        &cancel,
        channel,
    );
    wait_first_round(&mut generation, &prepared.config).await;
    ready.store(true, Ordering::Release);
    shared.notifier.notify("READY=1");
    log_running(&prepared, bound);

    loop {
        let request = tokio::select! {
            _ = cancel.cancelled() => break,
            request = reloads.recv() => match request { Some(r) => r, None => break },
        };
        shared.notifier.notify("RELOADING=1");
        let attempted_at = shared.clock.now();
        let outcome = reload(&options, &prepared, bound).await;
        let answer = match outcome {
            Ok(next) => {
                // Pingers of unchanged targets are re-pointed at the next monitor before the
                // running one stops, so that they never pause and lose nothing.
                let channel = observation_channel(&next.config);
                let changes = pingers.update(&next.config, next.sockets.as_ref(), &channel.0);
                generation.cancel.cancel();
                let old_metrics = generation.metrics.clone();
                let previous = match stop_generation(generation).await {
                    Some(core) => Previous::Generation(Box::new(core)),
                    None => Previous::Disk(load_state(shared.writer.store(), &shared.clock)),
                };
                reload_status = ReloadStatus {
                    successful: true,
                    last_success: shared.clock.now(),
                };
                for change in crate::config::diff::changes(&prepared.config, &next.config) {
                    info!(%change, "config change");
                }
                prepared = next;
                test_sinks_tx.send_replace((prepared.config.clone(), prepared.sdk.clone()));
                lifecycle.store(prepared.config.enable_lifecycle, Ordering::Release);
                // Certificates and users as the new config has them (read by prepare).
                *security.write().unwrap_or_else(|p| p.into_inner()) = prepared.security.clone();
                generation = start_generation(
                    &prepared,
                    previous,
                    &shared,
                    reload_status,
                    &cancel,
                    channel,
                );
                generation.metrics.carry_counters(&old_metrics);
                info!(
                    summary = %prepared.config.summary(),
                    pingers_kept = changes.kept,
                    pingers_started = changes.started,
                    pingers_stopped = changes.stopped,
                    "config reloaded"
                );
                reload_health.send_modify(|r| r.taken(attempted_at));
                Ok(prepared.config.summary())
            }
            Err(e) => {
                reload_status.successful = false;
                generation.metrics.set_reload(reload_status);
                error!(error = %e, "config reload refused; the running config stays");
                reload_health.send_modify(|r| r.refused(attempted_at, &e));
                Err(e)
            }
        };
        shared.notifier.notify("READY=1");
        let _ = request.respond.send(answer);
    }

    shut_down(&shared, pingers, generation, lasting).await;
    Ok(())
}

/// Stops the pingers, the running generation (which saves the alert state) and the tasks
/// that last across generations, each within [`DRAIN`].
async fn shut_down(
    shared: &Lasting,
    mut pingers: PingerPool,
    generation: Generation,
    lasting: TaskTracker,
) {
    info!("shutting down");
    shared.notifier.notify("STOPPING=1");
    pingers.stop(DRAIN).await;
    generation.cancel.cancel();
    let saved_in_time = tokio::time::timeout(DRAIN, stop_generation(generation))
        .await
        .is_ok();
    if !saved_in_time {
        error!("the monitor did not stop in time; the alert state may miss the last changes");
    }
    let saver = shared.history_saver.clone();
    let history_saved = tokio::task::spawn_blocking(move || saver.save_now(DRAIN)).await;
    if !matches!(history_saved, Ok(true)) {
        error!("the history was not written in time; the charts may miss the last minute");
    }
    if !shared.outages.flush(DRAIN) {
        error!("the outage log was not written in time; the last outages may be missing");
    }
    lasting.close();
    let _ = tokio::time::timeout(DRAIN, lasting.wait()).await;
}

/// Opens the state directory; without a `state_dir` in the config, a user who cannot
/// write the default gets a directory of their own (recorded in `config`).
fn open_store(config: &mut Config) -> anyhow::Result<StateStore> {
    let store = match StateStore::open(&config.state_dir) {
        Err(e)
            if config.state_dir_is_default
                && e.os_error.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            let mut opened = Err(e);
            for own in crate::config::user_state_dirs() {
                if let Ok(store) = StateStore::open(&own) {
                    warn!(
                        default = %config.state_dir.display(),
                        using = %own.display(),
                        "state_dir is not set and this user cannot write the default: the state goes to a directory of its own (set state_dir to choose)"
                    );
                    config.state_dir = own;
                    opened = Ok(store);
                    break;
                }
            }
            opened?
        }
        other => other?,
    };
    Ok(store)
}

/// The snapshot served until the first monitor tick: every target unknown.
fn placeholder(prepared: &Prepared, clock: &Clock) -> Snapshot {
    Snapshot::build(
        &prepared.config,
        &crate::health::HealthModel::new(&prepared.config),
        None,
        &vec![Default::default(); prepared.config.targets.len()],
        Meta {
            started_at: clock.now(),
            icmp_socket: pingers::socket_label(&prepared.sockets),
        },
        clock.now(),
    )
}

/// Starts the systemd watchdog task when the unit asks for one (`WatchdogSec=`).
fn spawn_watchdog(
    lasting: &TaskTracker,
    shared: &Lasting,
    config: &Config,
    cancel: &CancellationToken,
) {
    if let Some(interval) = watchdog_interval() {
        lasting.spawn(run_watchdog(
            shared.notifier.clone(),
            interval,
            watched(shared, config),
            cancel.clone(),
        ));
        info!(interval = %humantime::format_duration(interval), "systemd watchdog on");
    }
}

/// Says that the daemon runs, where and with what.
fn log_running(prepared: &Prepared, bound: SocketAddr) {
    let scheme = if prepared.security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    info!(
        listen = %bound,
        targets = prepared.config.targets.len(),
        connections = prepared.config.connections.len(),
        socket = pingers::socket_label(&prepared.sockets),
        state_dir = %prepared.config.state_dir.display(),
        basic_auth = prepared.security.asks_for_users(),
        "tunnelkeeper running; /health, /status, /metrics on {scheme}://{bound}"
    );
}

fn load_state(store: &StateStore, clock: &Clock) -> Option<SavedState> {
    match store.load(clock.now()) {
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
    }
}

/// Opens what a config needs: the ICMP socket (reused when its kind is unchanged) and
/// the AWS SDK config.
async fn prepare(config: Arc<Config>, running: Option<&Prepared>) -> anyhow::Result<Prepared> {
    // TLS files are read first: a bad one refuses the config before anything else moves.
    let security = Arc::new(Security::load(&config).map_err(anyhow::Error::msg)?);
    let sockets = pingers::open_sockets(&config, running.map(|r| (&*r.config, &r.sockets)))?;
    let sdk = match &config.aws {
        Some(aws) => {
            let sdk = crate::aws::load(aws).await?;
            info!(
                region = sdk.region().map_or("unset", |r| r.as_ref()),
                endpoint = aws.endpoint_url.as_deref().unwrap_or("AWS's own"),
                "AWS configured"
            );
            Some(sdk)
        }
        None => None,
    };
    Ok(Prepared {
        config,
        sockets,
        sdk,
        security,
    })
}

/// Reads and validates the config again; settings that need a restart are kept, loudly.
async fn reload(
    options: &RunOptions,
    running: &Prepared,
    bound: SocketAddr,
) -> Result<Prepared, String> {
    let mut config = options.load().map_err(|e| e.to_string())?;
    for warning in &config.warnings {
        warn!(%warning, "config warning");
    }
    if config.listen != running.config.listen && options.listen.is_none() {
        warn!(old = %bound, new = %config.listen, "http.listen changed: it takes a restart; still listening on the old address");
        config.listen = running.config.listen;
    }
    let both_default = config.state_dir_is_default && running.config.state_dir_is_default;
    if config.state_dir != running.config.state_dir {
        if !both_default {
            warn!(old = %running.config.state_dir.display(), new = %config.state_dir.display(), "state_dir changed: it takes a restart");
        }
        config.state_dir = running.config.state_dir.clone();
    }
    prepare(Arc::new(config), Some(running))
        .await
        .map_err(|e| format!("{e:#}"))
}

/// Where a generation's alerting state comes from.
enum Previous {
    /// The state file, at start.
    Disk(Option<SavedState>),
    /// The core of the generation a reload ended.
    Generation(Box<Core>),
}

/// The channel into a generation's monitor: room for a few rounds of results from every
/// target before pingers wait on the monitor.
fn observation_channel(
    config: &Config,
) -> (mpsc::Sender<Observation>, mpsc::Receiver<Observation>) {
    mpsc::channel((config.targets.len() * 4).clamp(64, 65_536))
}

fn start_generation(
    p: &Prepared,
    previous: Previous,
    shared: &Lasting,
    reload: ReloadStatus,
    root: &CancellationToken,
    (tx, rx): (mpsc::Sender<Observation>, mpsc::Receiver<Observation>),
) -> Generation {
    let config = &p.config;
    let cancel = root.child_token();
    let tasks = TaskTracker::new();
    let socket_type = pingers::socket_label(&p.sockets);
    let metrics = Arc::new(Metrics::new(
        config,
        socket_type,
        p.sockets.as_ref().map_or(0, |s| s.receive_buffer()),
        reload,
    ));

    let sinks = start_sinks(p, &metrics, &tx, &cancel, &tasks, shared.clock);
    let now = shared.clock.now();
    let core = match previous {
        Previous::Disk(saved) => Core::new(
            config.clone(),
            saved,
            shared.history.clone(),
            Jitter::seeded(),
            now,
        ),
        Previous::Generation(previous) => previous.reload(config.clone(), now),
    };
    let (first_round_tx, first_round) = watch::channel(false);
    // One request per tunnel is under way at most (the core waits for each answer).
    let (logs_tx, logs_rx) = match (&config.aws, &p.sdk) {
        (Some(_), Some(_)) => {
            let (tx, rx) = mpsc::channel(config.tunnel_ids().count().max(1) * 2);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let monitor = Monitor::new(MonitorSetup {
        core,
        metrics: metrics.clone(),
        clock: shared.clock,
        meta: Meta {
            started_at: shared.started_at,
            icmp_socket: socket_type,
        },
        snapshots: shared.snapshots.clone(),
        hooks: Hooks {
            notifier: shared.notifier.clone(),
            pingers: shared.pingers.clone(),
            alert_loop: shared.alert_loop.clone(),
            first_round: first_round_tx,
            sinks,
            writer: shared.writer.clone(),
            outages: shared.outages.clone(),
            replacer: p
                .sdk
                .as_ref()
                .map(|sdk| crate::aws::replace::TunnelReplacer {
                    client: aws_sdk_ec2::Client::new(sdk),
                    config: config.clone(),
                    observations: tx.clone(),
                    cancel: cancel.clone(),
                    tasks: tasks.clone(),
                }),
            tunnel_logs: logs_tx,
        },
    });
    let monitor = tasks.spawn(monitor.run(rx, cancel.clone()));
    if let Some(sockets) = &p.sockets {
        mtu::start_mtu_probing(config, sockets, &tx, &cancel, &tasks);
    }

    if let (Some(aws), Some(sdk)) = (&config.aws, &p.sdk) {
        if config.polls_ec2() {
            let poller = Ec2Poller {
                client: aws_sdk_ec2::Client::new(sdk),
                config: config.clone(),
                interval: aws.poll_interval,
                observations: tx.clone(),
                cancel: cancel.clone(),
                heartbeat: shared.poller.clone(),
            };
            tasks.spawn(poller.run());
        }
        if let Some(requests) = logs_rx {
            let reader = TunnelLogReader {
                client: crate::aws::tunnel_logs::client(sdk),
                requests,
                observations: tx.clone(),
                cancel: cancel.clone(),
            };
            tasks.spawn(reader.run());
        }
        if let Some(namespace) = &aws.cloudwatch_namespace {
            let publisher = CloudWatchPublisher {
                client: aws_sdk_cloudwatch::Client::new(sdk),
                namespace: namespace.clone(),
                interval: aws.cloudwatch_interval,
                snapshots: shared.snapshots.subscribe(),
                metrics: metrics.clone(),
                cancel: cancel.clone(),
            };
            tasks.spawn(publisher.run());
        }
    }
    Generation {
        cancel,
        tasks,
        monitor,
        metrics,
        first_round,
    }
}

fn start_sinks(
    p: &Prepared,
    metrics: &Arc<Metrics>,
    reports: &mpsc::Sender<Observation>,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
    clock: Clock,
) -> Vec<SinkHandle> {
    let ctx = PageContext::from_machine(&p.config);
    let mut sinks = Vec::new();
    for (index, sink) in p.config.alerts.sinks.iter().enumerate() {
        let (deliveries_tx, deliveries_rx) = mpsc::channel(crate::alert::outbox::CAPACITY + 16);
        match (&sink.kind, &p.sdk) {
            (SinkKind::Log, _) => {
                tasks.spawn(run_sink(
                    index,
                    LogSink { ctx: ctx.clone() },
                    deliveries_rx,
                    reports.clone(),
                    cancel.clone(),
                ));
                sinks.push(SinkHandle::Outbox(deliveries_tx));
            }
            (SinkKind::Sns { topic_arn }, Some(sdk)) => {
                let sns = SnsSink {
                    client: aws_sdk_sns::Client::new(sdk),
                    topic_arn: topic_arn.clone(),
                    ctx: ctx.clone(),
                };
                tasks.spawn(run_sink(
                    index,
                    sns,
                    deliveries_rx,
                    reports.clone(),
                    cancel.clone(),
                ));
                sinks.push(SinkHandle::Outbox(deliveries_tx));
            }
            (SinkKind::Sns { .. }, None) => {
                // Config validation requires [aws] for an sns sink; keep the pages queued.
                error!(
                    sink = index,
                    "sns sink without AWS config: pages stay in the outbox"
                );
                sinks.push(SinkHandle::Outbox(deliveries_tx));
            }
            (SinkKind::Alertmanager { url }, _) => {
                let (am_tx, am_rx) = watch::channel(Vec::new());
                let am = AlertmanagerSink {
                    url: url.clone(),
                    ctx: ctx.clone(),
                    alerts: am_rx,
                    metrics: metrics.clone(),
                    label: sink.name.clone(),
                    cancel: cancel.clone(),
                    clock,
                };
                tasks.spawn(am.run());
                sinks.push(SinkHandle::Alertmanager(am_tx));
            }
        }
    }
    sinks
}

/// Starts the task that sends test pages through the running config's sinks; returns its
/// request channel and where the config goes on reload.
fn spawn_test_pages(
    lasting: &TaskTracker,
    prepared: &Prepared,
    cancel: &CancellationToken,
) -> (
    mpsc::Sender<crate::alert::test_page::TestPageRequest>,
    watch::Sender<crate::alert::test_page::Sinks>,
) {
    let (requests_tx, requests_rx) = mpsc::channel(4);
    let (sinks_tx, sinks_rx) = watch::channel((prepared.config.clone(), prepared.sdk.clone()));
    lasting.spawn(crate::alert::test_page::serve(
        requests_rx,
        sinks_rx,
        cancel.clone(),
    ));
    (requests_tx, sinks_tx)
}

/// Ends a generation and returns what its monitor knew; `None` if the monitor died (the
/// next generation then starts from the state file, saved after every change).
async fn stop_generation(generation: Generation) -> Option<Core> {
    generation.cancel.cancel();
    generation.tasks.close();
    let carried = match generation.monitor.await {
        Ok(carried) => Some(carried),
        Err(e) => {
            error!(error = %e, "the monitor task failed; continuing from the saved alert state");
            None
        }
    };
    let _ = tokio::time::timeout(DRAIN, generation.tasks.wait()).await;
    carried
}

/// Waits until every target has reported once (the first probe round is out), at most one
/// interval plus one timeout and a margin.
async fn wait_first_round(generation: &mut Generation, config: &Config) {
    let longest = longest_probe(config);
    let limit = longest + Duration::from_secs(1);
    let done = tokio::time::timeout(limit, generation.first_round.wait_for(|done| *done)).await;
    if done.is_err() {
        warn!(
            limit = %humantime::format_duration(limit),
            "not every target reported within the first round; ready anyway"
        );
    }
}

/// The longest interval plus timeout of any target: how long one probe round can take.
fn longest_probe(config: &Config) -> Duration {
    config
        .targets
        .iter()
        .map(|t| t.probe.interval + t.probe.timeout)
        .max()
        .unwrap_or_default()
}

/// The loops the watchdog watches, with how long each may be silent.
fn watched(shared: &Lasting, config: &Config) -> Vec<Watched> {
    let longest = longest_probe(config);
    // The monitor first: /health reads its heartbeat for staleness.
    let mut loops = vec![
        Watched {
            name: "monitor",
            heartbeat: shared.alert_loop.clone(),
            max_silence: Duration::from_secs(10),
        },
        Watched {
            name: "pingers",
            heartbeat: shared.pingers.clone(),
            max_silence: longest * 3 + Duration::from_secs(10),
        },
    ];
    if let Some(aws) = &config.aws {
        if config.polls_ec2() {
            loops.push(Watched {
                name: "EC2 poller",
                heartbeat: shared.poller.clone(),
                max_silence: aws.poll_interval * 5
                    + crate::aws::call_timeout(aws)
                    + Duration::from_secs(30),
            });
        }
    }
    loops
}

async fn handle_signals(cancel: CancellationToken, reloads: mpsc::Sender<ReloadRequest>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                info!(signal = "SIGHUP", "reloading the config");
                let (respond, answer) = tokio::sync::oneshot::channel();
                if reloads.send(ReloadRequest { respond }).await.is_ok() {
                    // The daemon logs the outcome; the answer only ends the wait.
                    let _ = answer.await;
                }
                continue;
            }
        };
        info!(signal = name, "signal received");
        cancel.cancel();
        return;
    }
}
