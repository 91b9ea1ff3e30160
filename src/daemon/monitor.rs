//! The monitor task: drives the core ([`Core`]) and nothing else. It hands the core each
//! observation with its time, sleeps until the core's next deadline, turns the core's
//! events into IO ([`effects`](super::effects)), and publishes a fresh [`Snapshot`] for
//! readers after changes (and every [`PUBLISH_EVERY`] while counters move).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::daemon::effects::{Effects, Hooks};
use crate::health::tcp_service;
use crate::messages::Observation;
use crate::metrics::Metrics;
use crate::snapshot::{Meta, Snapshot};
use tunnelkeeper_core::machine::Core;

/// How often counters reach `/status` when no verdict changes (verdict changes publish at once).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// How long a stopping monitor waits for the sinks' last delivery reports.
const DRAIN_REPORTS: Duration = Duration::from_secs(2);
/// How many queued observations one wake-up applies before the core's events are acted on.
const BATCH: usize = 1024;

/// Everything a monitor is built from.
pub struct MonitorSetup {
    /// The core, new or carried over from the previous generation.
    pub core: Core,
    /// This generation's metrics.
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Start time and socket type.
    pub meta: Meta,
    /// Where snapshots go (shared by every generation).
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    /// Sinks, the state writer, systemd and the heartbeats.
    pub hooks: Hooks,
}

/// Owns the core; fed by pingers, pollers and sinks; read through snapshots.
pub struct Monitor {
    core: Core,
    effects: Effects,
    clock: Clock,
    /// Logs each step of the system clock once.
    steps: crate::clock::StepWatch,
    meta: Meta,
    snapshots: watch::Sender<Arc<Snapshot>>,
}

impl Monitor {
    /// Builds the monitor, acts on what the core said at its start, and publishes a first
    /// snapshot.
    pub fn new(setup: MonitorSetup) -> Self {
        let MonitorSetup {
            core,
            metrics,
            clock,
            meta,
            snapshots,
            hooks,
        } = setup;
        // Counters carried over in the core's stats seed this generation's metrics.
        for t in &core.config().targets {
            let stats = &core.stats()[t.id.0];
            if stats.summary_sent() > 0 {
                metrics.seed(t.id, &stats.summary());
            }
        }
        let mut monitor = Self {
            effects: Effects::new(core.config().clone(), metrics, hooks),
            core,
            clock,
            steps: Default::default(),
            meta,
            snapshots,
        };
        monitor.act();
        monitor.publish();
        monitor
    }

    /// Runs until cancelled or until every sender is gone; hands back the core for the
    /// next generation.
    pub async fn run(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        cancel: CancellationToken,
    ) -> Core {
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        loop {
            // A millisecond past the core's deadline: what the tasks observed in the same
            // millisecond is taken in before time is let pass (a reply that ends an outage
            // at the instant an alert's `for` runs out must not page it first).
            let wake = self.core.poll_timeout().map_or_else(
                || Instant::now() + PUBLISH_EVERY,
                |t| self.clock.instant_of(t) + Duration::from_millis(1),
            );
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                received = observations.recv() => {
                    let Some(first) = received else { break };
                    self.observe(first);
                    for _ in 0..BATCH {
                        match observations.try_recv() {
                            Ok(next) => self.observe(next),
                            Err(_) => break,
                        }
                    }
                    if self.act() {
                        self.publish();
                        dirty = false;
                    } else {
                        dirty = true;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    self.core.handle_timeout(self.clock.now());
                    if self.act() {
                        self.publish();
                        dirty = false;
                    }
                }
                _ = tick.tick() => {
                    let now = self.clock.now();
                    if let Some(shift) = self.steps.observe(self.clock.wall_shift()) {
                        shift.set_current();
                    }
                    if let Some(failure) = self.effects.state_save_change() {
                        self.core.handle_observation(
                            tunnelkeeper_core::messages::Observation::StateSave(failure),
                        );
                        if self.act() {
                            dirty = true;
                        }
                    }
                    self.effects.beat(self.core.pingers_progressing(now));
                    if dirty {
                        self.publish();
                        dirty = false;
                    }
                }
            }
        }
        self.drain(observations).await;
        self.core
    }

    /// Takes the sinks' last reports, then saves the state and waits for the disk.
    async fn drain(&mut self, mut observations: mpsc::Receiver<Observation>) {
        // Reports of deliveries that finished (or finish now, within their grace) must
        // reach the outbox before it is handed on, or the next generation sends them again.
        // Every sender goes when its task ends, which closes the channel.
        let drain_until = Instant::now() + DRAIN_REPORTS;
        loop {
            let next = tokio::time::timeout_at(drain_until, observations.recv()).await;
            match next {
                Ok(Some(report @ Observation::Delivery(_))) => self.observe(report),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.core.save_now();
        self.act();
        self.effects.flush_state();
    }

    fn observe(&mut self, observation: Observation) {
        let clock = self.clock;
        self.core
            .handle_observation(observation.at_time(|at| clock.at(at)));
    }

    /// Acts on every event the core has; returns true when one is worth a snapshot now.
    fn act(&mut self) -> bool {
        let mut publish = false;
        while let Some(event) = self.core.poll_event() {
            publish |= self.effects.act(event, &mut self.core);
        }
        publish
    }

    fn publish(&self) {
        let now = self.clock.now();
        let core = &self.core;
        let mut snapshot = Snapshot::build(
            core.config(),
            core.model(),
            core.control(),
            core.stats(),
            self.meta,
            now,
        );
        {
            let history = core.history().lock().unwrap_or_else(|p| p.into_inner());
            for id in core.config().tunnel_ids() {
                let tunnel = &mut snapshot.connections[id.connection].tunnels[id.tunnel];
                tunnel.path_mtu = core.path_mtu().get(id).cloned();
                tunnel.maintenance_plan = core.maintenance().plan(id).cloned();
                tunnel.cause = core.tunnel_cause(id).cloned();
                tunnel.tunnel_logs = core.tunnel_logs_reading(id);
                tunnel.tcp_mss = tcp_service::tunnel_mss(core.config(), core.model(), id);
                tunnel.brownout = history.brownout(id, now);
                self.effects.metrics().set_brownout(id, &tunnel.brownout);
            }
            self.effects.metrics().set_tcp(core.config(), core.model());
        }
        snapshot
            .advisories
            .extend(core.path_mtu().advisories(core.config()));
        snapshot.advisories.extend(tcp_service::mss_advisories(
            core.config(),
            core.model(),
            core.path_mtu(),
        ));
        snapshot.alerts = core.alert_views();
        let (outbox_length, dropped) = core.outbox_counts();
        snapshot.outbox_length = outbox_length;
        snapshot.set_sinks(core.sink_health());
        self.effects.refresh(core, now, &snapshot.alerts, dropped);
        snapshot.metrics = Some(self.effects.metrics().clone());
        snapshot.history = Some(core.history().clone());
        self.snapshots.send_replace(Arc::new(snapshot));
    }
}
