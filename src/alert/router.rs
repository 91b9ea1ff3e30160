//! Alerting glue, owned by the monitor task: derives conditions from the model, runs the
//! pure engine, routes notifications to sinks through the outbox, saves engine and outbox
//! together after every change, and hands due deliveries to the sink workers.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

use crate::alert::brownout::brownouts;
use crate::alert::conditions::{conditions, FlapTracker};
use crate::alert::engine::{AlertEngine, AlertKey, AlertState, NotificationStatus};
use crate::alert::mtu::black_holes;
use crate::alert::outbox::{Delivery, Outbox};
use crate::alert::sinks::AmAlert;
use crate::alert::state_file::{SavedState, VERSION};
use crate::alert::state_writer::StateWriter;
use crate::config::{Config, SinkKind};
use crate::health::control_plane::ControlPlane;
use crate::health::path_mtu::PathMtus;
use crate::health::HealthModel;
use crate::jitter::Jitter;
use crate::messages::DeliveryReport;
use crate::metrics::Metrics;
use crate::snapshot::AlertView;
use crate::types::Timestamp;

/// Where each sink's deliveries go.
pub enum SinkHandle {
    /// A worker taking outbox deliveries (log, SNS).
    Outbox(mpsc::Sender<Delivery>),
    /// Alertmanager, kept in step with the alert set.
    Alertmanager(watch::Sender<Vec<AmAlert>>),
}

/// The alerting side of the monitor.
pub struct Alerting {
    config: Arc<Config>,
    engine: AlertEngine,
    flaps: FlapTracker,
    outbox: Outbox,
    writer: StateWriter,
    sinks: Vec<SinkHandle>,
    metrics: Arc<Metrics>,
    jitter: Jitter,
    /// What the last save held, as alert keys and states (never details, which carry
    /// reasons) and the outbox: a save happens only when this changes.
    saved: Option<Fingerprint>,
    /// Alerts restored from disk, held until every input has reported once (or the
    /// deadline passes): right after a restart the model knows too little to clear them.
    restored: Vec<crate::alert::engine::AlertKey>,
    hold_restored_until: Option<Timestamp>,
}

impl Alerting {
    /// Builds alerting from the saved state (already loaded by the daemon).
    pub fn new(
        config: Arc<Config>,
        saved: Option<SavedState>,
        writer: StateWriter,
        sinks: Vec<SinkHandle>,
        metrics: Arc<Metrics>,
        started: Timestamp,
    ) -> Self {
        let a = &config.alerts;
        let mut engine = AlertEngine::new(a.rules.clone(), a.silences.clone());
        let mut outbox = Outbox::default();
        let mut saved_fingerprint = None;
        if let Some(saved) = saved {
            // Alerts about tunnels no longer configured resolve at the first evaluation
            // (their condition is gone), with a resolved page if they had paged.
            engine.restore(saved.alerts);
            outbox = saved.outbox;
            outbox.remap_sinks(|d| a.sinks.iter().position(|s| s.kind.identity() == d.sink_id));
            saved_fingerprint = Some(fingerprint(&engine, &outbox));
        }
        let flaps = FlapTracker::new(&config, a.flap_changes, a.flap_window);
        let restored: Vec<_> = engine.alerts().map(|a| a.key.clone()).collect();
        // Long enough for the first probe rounds and, where EC2 is polled, two polls.
        let polled = config.connections.iter().any(|c| c.id.is_some());
        let hold = match &config.aws {
            Some(aws) if polled => (aws.poll_interval * 2 + crate::aws::call_timeout(aws))
                .max(std::time::Duration::from_secs(30)),
            Some(_) | None => std::time::Duration::from_secs(30),
        };
        let hold_restored_until = (!restored.is_empty()).then(|| started.plus(hold));
        let alerting = Self {
            config,
            engine,
            flaps,
            outbox,
            writer,
            sinks,
            metrics,
            jitter: Jitter::seeded(),
            saved: saved_fingerprint,
            restored,
            hold_restored_until,
        };
        alerting.refresh_metrics(Timestamp::from_millis(0));
        alerting
    }

    /// Builds the alerting of a reloaded config from the previous generation's: alerts
    /// (pending ones with their `since`) and undelivered notifications carry over (to the
    /// same sinks, where they still exist), and so does the flap history of tunnels that
    /// are still configured.
    pub fn resume(
        previous: Alerting,
        config: Arc<Config>,
        writer: StateWriter,
        sinks: Vec<SinkHandle>,
        metrics: Arc<Metrics>,
        now: Timestamp,
    ) -> Self {
        let old_config = previous.config.clone();
        let mut outbox = previous.outbox;
        outbox.reset_in_flight();
        outbox.remap_sinks(|d| {
            config
                .alerts
                .sinks
                .iter()
                .position(|s| s.kind.identity() == d.sink_id)
        });
        let mut next = Alerting::new(config.clone(), None, writer, sinks, metrics, now);
        // The engine goes on as it was, under the new rules: a reload in the middle of a
        // `for` wait neither restarts the wait nor moves the alert's since. The model
        // carried over too, so nothing is held back.
        next.engine = previous.engine;
        next.engine
            .set_rules(config.alerts.rules.clone(), config.alerts.silences.clone());
        next.outbox = outbox;
        next.saved = previous.saved;
        next.flaps.adopt(&previous.flaps, &old_config, &config);
        next.save(now);
        next
    }

    /// Re-evaluates every alert as of `now`, then delivers what is due.
    ///
    /// `settled` says every input (each target, the EC2 poller) has reported at least once.
    pub fn evaluate(
        &mut self,
        model: &HealthModel,
        control: Option<&ControlPlane>,
        path_mtu: &PathMtus,
        history: &crate::history::History,
        now: Timestamp,
        settled: bool,
    ) {
        self.flaps.update(model, now);
        let unavailable = control
            .and_then(|c| c.failing_for(now))
            .filter(|(d, _)| *d > self.config.alerts.control_plane_unavailable_after)
            .map(|(d, error)| {
                (
                    Timestamp::from_millis(now.as_millis() - d.as_millis() as u64),
                    error,
                )
            });
        let mut conditions =
            conditions(&self.config, model, control, &self.flaps, unavailable, now);
        conditions.extend(black_holes(&self.config, path_mtu));
        conditions.extend(brownouts(&self.config, model, history, now));
        // Until EC2 has answered once, nobody knows whether its API is available.
        if control.is_some_and(|c| !c.has_succeeded()) {
            conditions
                .entry(crate::alert::engine::AlertKey::global(
                    crate::types::AlertClass::ControlPlaneUnavailable,
                ))
                .or_insert(crate::alert::engine::Condition::Unknown);
        }
        if let Some(until) = self.hold_restored_until {
            if settled || now >= until {
                self.hold_restored_until = None;
            } else {
                for key in &self.restored {
                    conditions
                        .entry(key.clone())
                        .or_insert(crate::alert::engine::Condition::Unknown);
                }
            }
        }
        self.engine.evaluate(&conditions, now);
        let mut dropped = false;
        while let Some(mut n) = self.engine.poll_notification() {
            // Some classes page at the severity the config chooses.
            n.severity = self.config.alerts.severity(n.key.class, n.details.severity);
            for (i, sink) in self.config.alerts.sinks.iter().enumerate() {
                if n.severity < sink.min_severity
                    || matches!(sink.kind, SinkKind::Alertmanager { .. })
                {
                    continue;
                }
                dropped |= self.outbox.push(i, sink.kind.identity(), n.clone(), now);
            }
        }
        if dropped {
            error!(
                capacity = crate::alert::outbox::CAPACITY,
                "outbox full: the oldest undelivered notification was dropped"
            );
        }
        self.save(now);
        self.dispatch(now);
        self.update_alertmanager(now);
        self.refresh_metrics(now);
    }

    /// Takes a sink's report on one delivery.
    pub fn delivery_report(&mut self, report: DeliveryReport, now: Timestamp) {
        let label = self.sink_label(report.sink);
        match report.result {
            Ok(()) => {
                self.outbox.delivered(report.id);
                self.metrics.notification(&label, "delivered");
            }
            Err((kind, message)) => {
                let jitter = (self.jitter.next_u64() % 1000) as f64 / 1000.0;
                let retry_at = self.outbox.failed(report.id, now, jitter);
                self.metrics.notification(&label, "failed");
                warn!(sink = %label, kind, %message, retry_at = ?retry_at.map(|t| t.to_string()), "notification not delivered; will retry");
            }
        }
        self.save(now);
        self.refresh_metrics(now);
    }

    /// Hands due deliveries to their workers.
    pub fn dispatch(&mut self, now: Timestamp) {
        for delivery in self.outbox.take_due(now) {
            let id = delivery.id;
            match self.sinks.get(delivery.sink) {
                Some(SinkHandle::Outbox(tx)) => {
                    if tx.try_send(delivery).is_err() {
                        self.outbox.failed(id, now, 0.5);
                    }
                }
                Some(SinkHandle::Alertmanager(_)) | None => {
                    error!(sink = delivery.sink, key = %delivery.notification.key, "notification for a sink that no longer takes it: dropped");
                    self.outbox.delivered(id);
                }
            }
        }
    }

    fn update_alertmanager(&mut self, now: Timestamp) {
        if !self
            .sinks
            .iter()
            .any(|s| matches!(s, SinkHandle::Alertmanager(_)))
        {
            return;
        }
        // Only firing alerts are posted, never an explicit resolve: an alert ends in
        // Alertmanager when no instance re-posts it before its endsAt (AM_LAPSE), so one
        // instance that sees the tunnel up again cannot flip the alert another still sees.
        let alerts: Vec<AmAlert> = self
            .engine
            .visible_firing(now)
            .into_iter()
            .filter(|a| match a.state {
                AlertState::Firing {
                    last_notified: Some(_),
                    ..
                } => true,
                AlertState::Firing {
                    visible_since,
                    fired_at,
                    ..
                } => self
                    .engine
                    .first_page_at(fired_at, visible_since)
                    .is_some_and(|t| now >= t),
                AlertState::Pending { .. } => false,
            })
            .filter_map(|a| match a.state {
                AlertState::Firing { fired_at, .. } => Some(AmAlert {
                    notification: crate::alert::engine::Notification {
                        key: a.key.clone(),
                        severity: self.config.alerts.severity(a.key.class, a.details.severity),
                        status: NotificationStatus::Firing,
                        repeat: false,
                        details: a.details.clone(),
                        starts_at: fired_at,
                        ends_at: None,
                        created_at: now,
                    },
                }),
                AlertState::Pending { .. } => None,
            })
            .collect();
        for (i, handle) in self.sinks.iter().enumerate() {
            let SinkHandle::Alertmanager(tx) = handle else {
                continue;
            };
            let min = self.config.alerts.sinks[i].min_severity;
            let mine: Vec<AmAlert> = alerts
                .iter()
                .filter(|a| a.notification.severity >= min)
                .cloned()
                .collect();
            // Only a change wakes the worker; it re-sends on its own timer.
            tx.send_if_modified(|current| {
                let same = current.len() == mine.len()
                    && current.iter().zip(&mine).all(|(a, b)| {
                        // The worker re-sends on its timer anyway: a reworded reason is
                        // no reason to wake it.
                        a.notification.key == b.notification.key
                    });
                if !same {
                    *current = mine.clone();
                }
                !same
            });
        }
    }

    /// Hands engine and outbox to the writer thread when an alert's state or the outbox
    /// changed; details alone (a reason's wording) do not count.
    fn save(&mut self, now: Timestamp) {
        let current = fingerprint(&self.engine, &self.outbox);
        if self.saved.as_ref() == Some(&current) {
            return;
        }
        self.writer.submit(SavedState {
            version: VERSION,
            saved_at: Some(now),
            alerts: self.engine.alerts().cloned().collect(),
            outbox: self.outbox.clone(),
        });
        self.saved = Some(current);
    }

    /// Saves once more and waits for the disk (shutdown).
    pub fn flush(&mut self, now: Timestamp) {
        self.saved = None;
        self.save(now);
        if !self.writer.flush(std::time::Duration::from_secs(2)) {
            error!(path = %self.writer.store().path().display(), "the alert state did not reach the disk within 2 s");
        }
    }

    fn sink_label(&self, index: usize) -> String {
        self.config
            .alerts
            .sinks
            .get(index)
            .map_or_else(|| format!("unknown[{index}]"), |s| s.name.clone())
    }

    fn refresh_metrics(&self, now: Timestamp) {
        let firing: Vec<_> = self
            .views(now)
            .into_iter()
            .filter(|v| v.state != "pending")
            .collect();
        self.metrics.set_alerts(&firing);
        self.metrics
            .set_outbox(self.outbox.len(), self.outbox.dropped());
        self.metrics.set_state_save_failures(self.writer.failures());
    }

    /// Returns every alert for /status.
    pub fn views(&self, now: Timestamp) -> Vec<AlertView> {
        let mut views = self.engine.views(now);
        for v in &mut views {
            v.severity = self.config.alerts.severity(v.alert, v.situation);
        }
        views
    }

    /// Returns how many deliveries wait.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }
}

/// What decides whether the state must be saved again: each alert's key and state, and the
/// outbox.
type Fingerprint = (Vec<(AlertKey, AlertState)>, Outbox);

fn fingerprint(engine: &AlertEngine, outbox: &Outbox) -> Fingerprint {
    (
        engine
            .alerts()
            .map(|a| (a.key.clone(), a.state.clone()))
            .collect(),
        outbox.clone(),
    )
}
