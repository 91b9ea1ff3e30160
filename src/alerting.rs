//! Alerting glue, owned by the monitor task: derives conditions from the model, runs the
//! pure engine, routes notifications to sinks through the outbox, saves engine and outbox
//! together after every change, and hands due deliveries to the sink workers.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

use crate::alerts::{AlertEngine, AlertState, AlertView, NotificationStatus};
use crate::conditions::{conditions, FlapTracker};
use crate::config::{Config, SinkKind};
use crate::control::ControlPlane;
use crate::health::HealthModel;
use crate::jitter::Jitter;
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::outbox::{Delivery, Outbox};
use crate::sinks::{AmAlert, DeliveryReport};
use crate::state::{SavedState, StateStore, VERSION};

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
    metrics: Arc<Metrics>,
    jitter: Jitter,
    saved: Option<SavedState>,
    /// Alerts restored from disk, held until every input has reported once (or the
    /// deadline passes): right after a restart the model knows too little to clear them.
    restored: Vec<crate::alerts::AlertKey>,
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
            let known = |key: &crate::alerts::AlertKey| {
                let vpn_ok = key
                    .vpn
                    .as_ref()
                    .is_none_or(|v| config.connections.iter().any(|c| c.name.as_str() == v));
                let tunnel_ok = key.tunnel.as_ref().is_none_or(|t| {
                    config
                        .connections
                        .iter()
                        .flat_map(|c| &c.tunnels)
                        .any(|x| x.name.as_str() == t)
                });
                vpn_ok && tunnel_ok
            };
            // Alerts about tunnels no longer configured cannot resolve: forget them.
            engine.restore(saved.alerts.into_iter().filter(|a| known(&a.key)).collect());
            outbox = saved.outbox;
            outbox.retain_sinks(a.sinks.len());
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
        outbox.remap_sinks(|old| {
            let old_sink = old_config.alerts.sinks.get(old)?;
            config.alerts.sinks.iter().position(|s| s == old_sink)
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
        if let Some(until) = self.hold_restored_until {
            if settled || now >= until {
                self.hold_restored_until = None;
            } else {
                for key in &self.restored {
                    conditions
                        .entry(key.clone())
                        .or_insert(crate::alerts::Condition::Unknown);
                }
            }
        }
        self.engine.evaluate(&conditions, now);
        let mut dropped = false;
        while let Some(n) = self.engine.poll_notification() {
            if n.status == NotificationStatus::Resolved {
                self.am_resolved.retain(|a| a.notification.key != n.key);
                self.am_resolved.push(AmAlert {
                    notification: n.clone(),
                    resolved_at: n.ends_at,
                });
            }
            for (i, sink) in self.config.alerts.sinks.iter().enumerate() {
                if n.severity < sink.min_severity
                    || matches!(sink.kind, SinkKind::Alertmanager { .. })
                {
                    continue;
                }
                dropped |= self.outbox.push(i, n.clone(), now);
            }
        }
        if dropped {
            error!(
                capacity = crate::outbox::CAPACITY,
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
            let sent = match self.sinks.get(delivery.sink) {
                Some(SinkHandle::Outbox(tx)) => tx.try_send(delivery).is_ok(),
                Some(SinkHandle::Alertmanager(_)) | None => false,
            };
            if !sent {
                self.outbox.failed(id, now, 0.5);
            }
        }
    }

    fn update_alertmanager(&mut self, now: Timestamp) {
        self.am_resolved.retain(|a| {
            a.resolved_at
                .is_some_and(|t| now.since(t) < AM_KEEP_RESOLVED)
        });
        let mut alerts: Vec<AmAlert> = self
            .engine
            .visible_firing(now)
            .into_iter()
            .filter_map(|a| match a.state {
                AlertState::Firing { fired_at, .. } => Some(AmAlert {
                    notification: crate::alerts::Notification {
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
        self.metrics.set_alerts(&self.engine.views(now));
        self.metrics
            .set_outbox(self.outbox.len(), self.outbox.dropped());
    }

    /// Returns the next time something is due: a rule's timer, a flap leaving its window,
    /// a delivery retry.
    pub fn next_wakeup(&self, now: Timestamp) -> Option<Timestamp> {
        [
            self.engine.poll_timeout(now),
            self.flaps.next_expiry(),
            self.outbox.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
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
