//! Alerting glue, owned by the monitor task: derives conditions from the model, runs the
//! pure engine, routes notifications to sinks through the outbox, saves engine and outbox
//! together after every change, and hands due deliveries to the sink workers.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

use crate::alert::conditions::{conditions, FlapTracker};
use crate::alert::engine::{AlertEngine, AlertState, NotificationStatus};
use crate::alert::outbox::{Delivery, Outbox};
use crate::alert::sinks::AmAlert;
use crate::alert::state_file::{SavedState, StateStore, VERSION};
use crate::config::{Config, SinkKind};
use crate::health::control_plane::ControlPlane;
use crate::health::HealthModel;
use crate::jitter::Jitter;
use crate::messages::DeliveryReport;
use crate::metrics::Metrics;
use crate::snapshot::AlertView;
use crate::types::Timestamp;

/// How long a resolved alert stays in what Alertmanager is sent.
const AM_KEEP_RESOLVED: std::time::Duration = std::time::Duration::from_secs(900);

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
    store: StateStore,
    sinks: Vec<SinkHandle>,
    am_resolved: Vec<AmAlert>,
    am_active: std::collections::BTreeMap<crate::alert::engine::AlertKey, AmAlert>,
    metrics: Arc<Metrics>,
    jitter: Jitter,
    saved: Option<SavedState>,
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
        store: StateStore,
        sinks: Vec<SinkHandle>,
        metrics: Arc<Metrics>,
        started: Timestamp,
    ) -> Self {
        let a = &config.alerts;
        let mut engine = AlertEngine::new(a.rules.clone(), a.silences.clone());
        let mut outbox = Outbox::default();
        if let Some(saved) = saved.clone() {
            // Alerts about tunnels no longer configured resolve at the first evaluation
            // (their condition is gone), with a resolved page if they had paged.
            engine.restore(saved.alerts);
            outbox = saved.outbox;
            outbox.remap_sinks(|d| a.sinks.iter().position(|s| s.kind.identity() == d.sink_id));
        }
        let flaps = FlapTracker::new(&config, a.flap_changes, a.flap_window);
        let restored: Vec<_> = engine.alerts().map(|a| a.key.clone()).collect();
        let hold = config
            .aws
            .as_ref()
            .map_or(std::time::Duration::from_secs(30), |aws| {
                (aws.poll_interval * 2 + crate::aws::call_timeout(aws))
                    .max(std::time::Duration::from_secs(30))
            });
        let hold_restored_until = (!restored.is_empty()).then(|| started.plus(hold));
        let alerting = Self {
            config,
            engine,
            flaps,
            outbox,
            store,
            sinks,
            am_resolved: Vec::new(),
            am_active: Default::default(),
            metrics,
            jitter: Jitter::seeded(),
            saved,
            restored,
            hold_restored_until,
        };
        alerting.refresh_metrics(Timestamp::from_millis(0));
        alerting
    }

    /// Builds the alerting of a reloaded config from the previous generation's: alerts and
    /// undelivered notifications carry over (to the same sinks, where they still exist),
    /// and so does the flap history of tunnels that are still configured.
    pub fn resume(
        previous: Alerting,
        config: Arc<Config>,
        store: StateStore,
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
        let saved = SavedState {
            version: VERSION,
            saved_at: None,
            alerts: previous.engine.alerts().cloned().collect(),
            outbox,
        };
        let mut next = Alerting::new(config.clone(), Some(saved), store, sinks, metrics, now);
        // The model carried over too: nothing to hold back.
        next.hold_restored_until = None;
        next.flaps.adopt(&previous.flaps, &old_config, &config);
        next.am_resolved = previous.am_resolved;
        next.am_active = previous.am_active;
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
        now: Timestamp,
        settled: bool,
    ) {
        self.flaps.update(model, now);
        let unavailable = control
            .and_then(|c| c.failing_for(now))
            .filter(|(d, _)| *d > self.config.alerts.control_plane_unavailable_after);
        let mut conditions = conditions(&self.config, model, &self.flaps, unavailable);
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
        while let Some(n) = self.engine.poll_notification() {
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
        self.am_resolved.retain(|a| {
            a.resolved_at
                .is_some_and(|t| now.since(t) < AM_KEEP_RESOLVED)
        });
        let group_wait = self.config.alerts.rules.group_wait;
        let mut alerts: Vec<AmAlert> = self
            .engine
            .visible_firing(now)
            .into_iter()
            .filter(|a| match a.state {
                AlertState::Firing {
                    last_notified: Some(_),
                    ..
                } => true,
                AlertState::Firing { visible_since, .. } => {
                    visible_since.is_some_and(|v| now.since(v) >= group_wait)
                }
                AlertState::Pending { .. } => false,
            })
            .filter_map(|a| match a.state {
                AlertState::Firing { fired_at, .. } => Some(AmAlert {
                    notification: crate::alert::engine::Notification {
                        key: a.key.clone(),
                        severity: a.key.class.severity(),
                        status: NotificationStatus::Firing,
                        repeat: false,
                        details: a.details.clone(),
                        starts_at: fired_at,
                        ends_at: None,
                        created_at: now,
                    },
                    resolved_at: None,
                }),
                AlertState::Pending { .. } => None,
            })
            .collect();
        // Whatever Alertmanager was told fires and is no longer in the set has ended
        // (cleared, inhibited, silenced or unconfigured): tell it so.
        let current: std::collections::BTreeSet<_> =
            alerts.iter().map(|a| a.notification.key.clone()).collect();
        for (key, sent) in std::mem::take(&mut self.am_active) {
            if !current.contains(&key) {
                self.am_resolved.retain(|a| a.notification.key != key);
                self.am_resolved.push(AmAlert {
                    resolved_at: Some(now),
                    ..sent
                });
            }
        }
        self.am_active = alerts
            .iter()
            .map(|a| (a.notification.key.clone(), a.clone()))
            .collect();
        self.am_resolved
            .retain(|a| !current.contains(&a.notification.key));
        alerts.extend(self.am_resolved.iter().cloned());
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
                        a.notification.key == b.notification.key
                            && a.resolved_at == b.resolved_at
                            && a.notification.details == b.notification.details
                    });
                if !same {
                    *current = mine.clone();
                }
                !same
            });
        }
    }

    /// Saves engine and outbox together when either changed.
    fn save(&mut self, now: Timestamp) {
        let state = SavedState {
            version: VERSION,
            saved_at: None,
            alerts: self.engine.alerts().cloned().collect(),
            outbox: self.outbox.clone(),
        };
        if self.saved.as_ref() == Some(&state) {
            return;
        }
        let stamped = SavedState {
            saved_at: Some(now),
            ..state.clone()
        };
        match self.store.save(&stamped) {
            Ok(()) => self.saved = Some(state),
            Err(e) => {
                self.metrics.state_save_failed();
                error!(path = %self.store.path().display(), error = %e, "cannot save the alert state; pages already queued stay in memory");
            }
        }
    }

    /// Saves once more (shutdown).
    pub fn flush(&mut self, now: Timestamp) {
        self.saved = None;
        self.save(now);
    }

    fn sink_label(&self, index: usize) -> String {
        self.config.alerts.sinks.get(index).map_or_else(
            || format!("unknown[{index}]"),
            |s| format!("{}[{index}]", s.kind.label()),
        )
    }

    fn refresh_metrics(&self, now: Timestamp) {
        let firing: Vec<_> = self
            .engine
            .views(now)
            .iter()
            .filter(|v| v.state != "pending")
            .map(|v| v.alert)
            .collect();
        self.metrics.set_alerts(&firing);
        self.metrics
            .set_outbox(self.outbox.len(), self.outbox.dropped());
    }

    /// Returns every alert for /status.
    pub fn views(&self, now: Timestamp) -> Vec<AlertView> {
        self.engine.views(now)
    }

    /// Returns how many deliveries wait.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }
}
