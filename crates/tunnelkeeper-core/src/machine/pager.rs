//! The pager: from the health model to notifications. It derives the alert conditions,
//! runs the engine, routes each notification to the sinks that take its severity through
//! the outbox, keeps each Alertmanager sink's set of firing alerts, and says when the
//! state file must be written. Everything it decides leaves as [`Event`]s.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::alert::engine::NotificationStatus;
use crate::alert::engine::{
    AlertEngine, AlertKey, AlertState, Condition, Conditions, Notification,
};
use crate::alert::outbox::Outbox;
use crate::alert::policy::{self, FlapTracker, Inputs};
use crate::alert::saved::{SavedState, VERSION};
use crate::alert::sink_health::{SinkHealth, SinksHealth};
use crate::alert::view::AlertView;
use crate::config::{Config, ReloadMapping, SinkKind};
use crate::health::control_plane::ControlPlane;
use crate::health::path_mtu::PathMtus;
use crate::health::{ConnectionState, HealthModel, Verdict, VpnState};
use crate::history::History;
use crate::jitter::Jitter;
use crate::machine::causes::OutageCauses;
use crate::machine::event::Event;
use crate::maintenance::MaintenanceTracker;
use crate::messages::DeliveryReport;
use crate::types::{AlertClass, Severity, Timestamp};

/// What decides whether the state must be saved again: each alert's key and state, and the
/// outbox (never details, whose reasons are reworded on every evaluation).
type Fingerprint = (Vec<(AlertKey, AlertState)>, Outbox);

/// The alerting half of the core.
pub struct Pager {
    config: Arc<Config>,
    engine: AlertEngine,
    flaps: FlapTracker,
    outbox: Outbox,
    /// Whether each sink takes its pages.
    sinks: SinksHealth,
    /// The sinks that were told `NotificationsFailing` fires (the others get no RESOLVED).
    told_failing: std::collections::BTreeSet<usize>,
    jitter: Jitter,
    saved: Option<Fingerprint>,
    /// What each Alertmanager sink was last given, by sink index (alert keys).
    alertmanager: Vec<Option<Vec<AlertKey>>>,
    /// Alerts restored from disk, held until every input has reported once (or the
    /// deadline passes): right after a restart the model knows too little to clear them.
    restored: Vec<AlertKey>,
    hold_restored_until: Option<Timestamp>,
    /// Each down tunnel's cause, and the page holds for logs calls under way.
    causes: OutageCauses,
    /// Since when the state file cannot be written, as the shell last said.
    state_save: Option<crate::alert::policy::state_not_saved::SaveFailure>,
}

impl Pager {
    /// Builds the pager from the saved state (already read by the shell).
    pub fn new(
        config: Arc<Config>,
        saved: Option<SavedState>,
        started: Timestamp,
        jitter: Jitter,
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
        let hold_restored_until =
            (!restored.is_empty()).then(|| started.plus(restore_hold(&config)));
        Self {
            alertmanager: vec![None; config.alerts.sinks.len()],
            sinks: SinksHealth::new(&config),
            told_failing: Default::default(),
            config,
            engine,
            flaps,
            outbox,
            jitter,
            saved: saved_fingerprint,
            restored,
            hold_restored_until,
            causes: OutageCauses::default(),
            state_save: None,
        }
    }

    /// Carries the pager over to a reloaded config: alerts (pending ones with their
    /// `since`, renamed where their tunnel or connection was) and undelivered notifications
    /// (to the same sinks, where they still exist), and the flap history of the tunnels
    /// still configured. The model carried over too, so nothing is held back.
    pub fn resume(self, config: Arc<Config>, mapping: &ReloadMapping) -> Self {
        let mut outbox = self.outbox;
        outbox.reset_in_flight();
        outbox.remap_sinks(|d| {
            config
                .alerts
                .sinks
                .iter()
                .position(|s| s.kind.identity() == d.sink_id)
        });
        let mut engine = self.engine;
        engine.set_rules(config.alerts.rules.clone(), config.alerts.silences.clone());
        engine.rekey(mapping);
        let mut flaps = FlapTracker::new(
            &config,
            config.alerts.flap_changes,
            config.alerts.flap_window,
        );
        flaps.adopt(&self.flaps, mapping);
        let mut sinks = SinksHealth::new(&config);
        sinks.adopt(&self.sinks);
        Self {
            sinks,
            told_failing: self.told_failing,
            alertmanager: vec![None; config.alerts.sinks.len()],
            config,
            engine,
            flaps,
            outbox,
            jitter: self.jitter,
            saved: self.saved,
            // A reload within the hold after a restart keeps the hold (under new names).
            restored: self
                .restored
                .iter()
                .map(|key| {
                    match key
                        .vpn
                        .as_deref()
                        .and_then(|v| mapping.renamed(v, key.tunnel.as_deref()))
                    {
                        Some((vpn, tunnel)) => AlertKey {
                            vpn: Some(vpn.to_string()),
                            tunnel: tunnel.map(str::to_string),
                            ..key.clone()
                        },
                        None => key.clone(),
                    }
                })
                .collect(),
            hold_restored_until: self.hold_restored_until,
            causes: OutageCauses::default(),
            state_save: self.state_save,
        }
    }

    /// Takes in whether the state file is being written.
    pub fn set_state_save(
        &mut self,
        failure: Option<crate::alert::policy::state_not_saved::SaveFailure>,
    ) {
        self.state_save = failure;
    }

    /// Re-evaluates every alert as of `now`, then hands out what is due.
    ///
    /// `settled` says every input (each target, the EC2 poller) has reported at least once.
    pub fn evaluate(
        &mut self,
        (model, history, maintenance): (&HealthModel, &History, &MaintenanceTracker),
        control: Option<&ControlPlane>,
        path_mtu: &PathMtus,
        now: Timestamp,
        settled: bool,
        events: &mut VecDeque<Event>,
    ) {
        self.flaps.update(model, now);
        let mut conditions = policy::conditions(&Inputs {
            config: &self.config,
            model,
            control,
            flaps: &self.flaps,
            path_mtu,
            history,
            sinks: &self.sinks,
            maintenance,
            state_save: self.state_save.as_ref(),
            now,
        });
        fill_outage_starts(&mut conditions, &self.config, model);
        self.causes.fill(&mut conditions);
        if let Some(until) = self.hold_restored_until {
            if settled || now >= until {
                self.hold_restored_until = None;
            } else {
                for key in &self.restored {
                    conditions.entry(key.clone()).or_insert(Condition::Unknown);
                }
            }
        }
        // The policy's severity, with the config's word over it: decided here once, and
        // the engine escalates a lasting warning from it.
        let alerts_config = &self.config.alerts;
        self.engine
            .evaluate_with(&conditions, now, &|c, s| alerts_config.severity(c, s));
        while let Some(n) = self.engine.poll_notification() {
            self.route(n, now, events);
        }
        self.save(now, events);
        self.dispatch(now, events);
        self.update_alertmanager(now, events);
    }

    /// Queues a notification for every outbox sink that takes its severity.
    fn route(&mut self, n: Notification, now: Timestamp, events: &mut VecDeque<Event>) {
        let mut dropped = false;
        for (i, sink) in self.config.alerts.sinks.iter().enumerate() {
            if n.severity < sink.min_severity || matches!(sink.kind, SinkKind::Alertmanager { .. })
            {
                continue;
            }
            // That a sink fails goes through the others: to it, it would only fail again;
            // and its RESOLVED goes only where its FIRING went.
            if n.key.class == AlertClass::NotificationsFailing {
                let told = match n.status {
                    NotificationStatus::Firing => !self.sinks.is_failing(i),
                    NotificationStatus::Resolved => self.told_failing.contains(&i),
                    // Test pages never come from the engine.
                    NotificationStatus::Test => false,
                };
                if !told {
                    continue;
                }
                self.told_failing.insert(i);
            }
            let due = self.causes.hold(&n, now).unwrap_or(now);
            dropped |= self.outbox.push_at(i, sink.kind.identity(), n.clone(), due);
        }
        if n.key.class == AlertClass::NotificationsFailing
            && n.status == NotificationStatus::Resolved
        {
            self.told_failing.clear();
        }
        if dropped {
            events.push_back(Event::OutboxOverflowed);
        }
    }

    /// Takes the causes and holds of the moment (before an evaluation, and when a logs call
    /// ends).
    pub fn set_causes(&mut self, causes: OutageCauses) {
        self.causes = causes;
    }

    /// Returns the causes in force.
    pub fn causes(&self) -> &OutageCauses {
        &self.causes
    }

    /// Sends the pages that wait for a tunnel's logs now, with the cause if one is known
    /// (a logs call for the tunnel ended, well or not).
    pub fn release_held(
        &mut self,
        (vpn, tunnel): (&str, &str),
        now: Timestamp,
        events: &mut VecDeque<Event>,
    ) {
        let cause = self.causes.cause(vpn, tunnel).cloned();
        self.outbox.release(
            |n| {
                n.status == NotificationStatus::Firing
                    && n.key.vpn.as_deref() == Some(vpn)
                    && n.key.tunnel.as_deref() == Some(tunnel)
            },
            |n| {
                if cause.is_some() {
                    n.details.cause = cause.clone();
                }
            },
            now,
        );
        self.dispatch(now, events);
    }

    /// Takes a sink's report on one delivery.
    pub fn delivery_report(
        &mut self,
        report: DeliveryReport,
        now: Timestamp,
        events: &mut VecDeque<Event>,
    ) {
        let sink = self.sink_label(report.sink);
        let failure = match report.result {
            Ok(()) => {
                self.outbox.delivered(report.id);
                self.sinks.delivered(report.sink, now);
                None
            }
            Err((kind, message)) => {
                let jitter = (self.jitter.next_u64() % 1000) as f64 / 1000.0;
                let retry_at = self.outbox.failed(report.id, now, jitter);
                self.sinks
                    .failed(report.sink, format!("{kind}: {message}"), now);
                Some((kind.to_string(), message, retry_at))
            }
        };
        events.push_back(Event::DeliveryReported { sink, failure });
        self.save(now, events);
        self.dispatch(now, events);
    }

    /// Takes back a delivery its sink's worker could not take (its queue was full): it is
    /// tried again after a backoff.
    pub fn delivery_refused(&mut self, id: u64, now: Timestamp) {
        self.outbox.failed(id, now, 0.5);
    }

    /// Hands due deliveries to their sinks.
    fn dispatch(&mut self, now: Timestamp, events: &mut VecDeque<Event>) {
        for delivery in self.outbox.take_due(now) {
            let takes_deliveries = self
                .config
                .alerts
                .sinks
                .get(delivery.sink)
                .is_some_and(|s| !matches!(s.kind, SinkKind::Alertmanager { .. }));
            if takes_deliveries {
                events.push_back(Event::Deliver(delivery));
            } else {
                events.push_back(Event::DeliveryDropped {
                    sink: delivery.sink,
                    key: delivery.notification.key.to_string(),
                });
                self.outbox.delivered(delivery.id);
            }
        }
    }

    /// Gives each Alertmanager sink the firing alerts it takes, when that set changed.
    fn update_alertmanager(&mut self, now: Timestamp, events: &mut VecDeque<Event>) {
        if self.alertmanager.is_empty() {
            return;
        }
        // Only firing alerts that have paged (or would have, past group_wait) are posted,
        // never an explicit resolve: an alert ends in Alertmanager when no instance
        // re-posts it before its endsAt, so one instance that sees the tunnel up again
        // cannot flip the alert another still sees.
        let firing: Vec<Notification> = self
            .engine
            .visible_firing(now)
            .into_iter()
            .filter_map(|a| {
                let AlertState::Firing {
                    fired_at,
                    last_notified,
                    visible_since,
                    ..
                } = a.state
                else {
                    return None;
                };
                let paged = last_notified.is_some()
                    || self
                        .engine
                        .first_page_at(fired_at, visible_since)
                        .is_some_and(|t| now >= t);
                paged.then(|| Notification {
                    key: a.key.clone(),
                    severity: if a.escalated() {
                        Severity::Critical
                    } else {
                        self.config.alerts.severity(a.key.class, a.details.severity)
                    },
                    status: NotificationStatus::Firing,
                    repeat: false,
                    details: a.details.clone(),
                    starts_at: fired_at,
                    ends_at: None,
                    created_at: now,
                })
            })
            .collect();
        for (i, sink) in self.config.alerts.sinks.iter().enumerate() {
            if !matches!(sink.kind, SinkKind::Alertmanager { .. }) {
                continue;
            }
            let mine: Vec<Notification> = firing
                .iter()
                .filter(|n| n.severity >= sink.min_severity)
                .cloned()
                .collect();
            // A reworded reason is no reason to wake the worker: it re-sends on its timer.
            let keys: Vec<AlertKey> = mine.iter().map(|n| n.key.clone()).collect();
            if self.alertmanager[i].as_ref() != Some(&keys) {
                self.alertmanager[i] = Some(keys);
                events.push_back(Event::AlertmanagerAlerts {
                    sink: i,
                    alerts: mine,
                });
            }
        }
    }

    /// Asks for a save when an alert's state or the outbox changed.
    fn save(&mut self, now: Timestamp, events: &mut VecDeque<Event>) {
        let current = fingerprint(&self.engine, &self.outbox);
        if self.saved.as_ref() == Some(&current) {
            return;
        }
        events.push_back(Event::SaveState(self.saved_state(now)));
        self.saved = Some(current);
    }

    /// Asks for a save whatever changed (shutdown, a new generation).
    pub fn save_now(&mut self, now: Timestamp, events: &mut VecDeque<Event>) {
        self.saved = None;
        self.save(now, events);
    }

    /// Returns what the state file holds now.
    pub fn saved_state(&self, now: Timestamp) -> SavedState {
        SavedState {
            version: VERSION,
            saved_at: Some(now),
            alerts: self.engine.alerts().cloned().collect(),
            outbox: self.outbox.clone(),
        }
    }

    /// Returns when the pager must evaluate again even if nothing comes in.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        [
            self.engine
                .poll_timeout_with(now, &|c, s| self.config.alerts.severity(c, s)),
            self.outbox.next_due(),
            self.hold_restored_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn sink_label(&self, index: usize) -> String {
        self.config
            .alerts
            .sinks
            .get(index)
            .map_or_else(|| format!("unknown[{index}]"), |s| s.name.clone())
    }

    /// Returns every alert as readers see it, at its decided severity.
    pub fn views(&self, now: Timestamp) -> Vec<AlertView> {
        self.engine
            .views_with(now, &|c, s| self.config.alerts.severity(c, s))
    }

    /// Returns whether each sink takes its pages.
    pub fn sink_health(&self) -> &[SinkHealth] {
        self.sinks.sinks()
    }

    /// Returns how many deliveries wait, and how many were dropped for lack of room.
    pub fn outbox_counts(&self) -> (usize, u64) {
        (self.outbox.len(), self.outbox.dropped())
    }
}

/// Gives each outage's condition the time the outage began, from the verdict it stands on.
fn fill_outage_starts(conditions: &mut Conditions, config: &Config, model: &HealthModel) {
    for (key, condition) in conditions.iter_mut() {
        if let Condition::Active(details) = condition {
            if details.since.is_none() {
                details.since = outage_start(key, config, model);
            }
        }
    }
}

/// When the outage an alert is about began: its tunnel's, connection's or the VPN's verdict
/// since it went down; `None` for alerts that are not outages.
fn outage_start(key: &AlertKey, config: &Config, model: &HealthModel) -> Option<Timestamp> {
    let connection = || {
        config
            .connections
            .iter()
            .position(|c| Some(c.name.as_str()) == key.vpn.as_deref())
    };
    match key.class {
        AlertClass::TunnelDown | AlertClass::TunnelDownAfterMaintenance => {
            let ci = connection()?;
            let ti = config.connections[ci]
                .tunnels
                .iter()
                .position(|t| Some(t.name.as_str()) == key.tunnel.as_deref())?;
            let id = crate::types::TunnelId {
                connection: ci,
                tunnel: ti,
            };
            match &model.tunnel(id).verdict {
                Verdict::Down { since, .. } => Some(*since),
                Verdict::Up { .. } | Verdict::Unknown { .. } => None,
            }
        }
        AlertClass::ConnectionDown => match model.connection(connection()?) {
            ConnectionState::Down { since, .. } => Some(*since),
            ConnectionState::Healthy { .. }
            | ConnectionState::Degraded { .. }
            | ConnectionState::Unknown { .. } => None,
        },
        AlertClass::VpnUnreachable => match model.vpn() {
            VpnState::Critical { since, .. } => Some(*since),
            VpnState::Ok { .. } | VpnState::Degraded { .. } | VpnState::Starting => None,
        },
        AlertClass::TunnelFlapping
        | AlertClass::ControlPlaneUnavailable
        | AlertClass::ConnectionNotFound
        | AlertClass::TunnelMaintenancePending
        | AlertClass::MtuBlackHole
        | AlertClass::NotificationsFailing
        | AlertClass::TunnelLossy
        | AlertClass::TunnelSlow
        | AlertClass::SharedTargetsDown
        | AlertClass::MaintenanceReplacing
        | AlertClass::MaintenanceReplaceFailed
        | AlertClass::MaintenanceBlocked
        | AlertClass::StateNotSaved
        | AlertClass::ServiceDown => None,
    }
}

/// How long restored alerts wait for the inputs: the first probe rounds and, where EC2 is
/// polled, two polls.
fn restore_hold(config: &Config) -> Duration {
    match &config.aws {
        Some(aws) if config.polls_ec2() => {
            (aws.poll_interval * 2 + aws.call_timeout()).max(Duration::from_secs(30))
        }
        Some(_) | None => Duration::from_secs(30),
    }
}

fn fingerprint(engine: &AlertEngine, outbox: &Outbox) -> Fingerprint {
    (
        engine
            .alerts()
            .map(|a| (a.key.clone(), a.state.clone()))
            .collect(),
        outbox.clone(),
    )
}
