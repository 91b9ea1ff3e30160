//! The core as one sans-IO state machine: everything the daemon decides, driven the way
//! quiche's connection and firezone's connlib are driven.
//!
//! The shell feeds it what its tasks observe ([`Core::handle_observation`], with the time
//! each observation was made) and the passing of time ([`Core::handle_timeout`]), sleeps
//! until [`Core::poll_timeout`], and drains [`Core::poll_event`] after each call, turning
//! every [`Event`] into IO: log lines, metrics, the systemd status, deliveries to sinks,
//! writes of the state file. The whole chain from a probe result to a notification runs
//! here without a runtime, so tests drive it with made-up times.
//!
//! A target's verdict and hysteresis ([`HealthModel`]), its counters and recent window
//! ([`TargetStats`]) and its smoke-chart series ([`History`]) are updated here, in one
//! place, once per observation; every view reads them from the core.

#[cfg(test)]
mod cause_tests;
mod causes;
mod event;
#[cfg(test)]
mod maintenance_tests;
#[cfg(test)]
mod outage_tests;
mod pager;
#[cfg(test)]
mod tests;
mod views;

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

pub use causes::OutageCauses;
pub use event::{AwsEvent, Event};
pub use pager::Pager;

use crate::alert::engine::AlertState;
use crate::alert::saved::SavedState;
use crate::config::{Config, ReloadMapping, TargetScope};
use crate::health::control_plane::ControlPlane;
use crate::health::path_mtu::PathMtus;
use crate::health::tunnel_log_book::TunnelLogBook;
use crate::health::{HealthModel, Verdict};
use crate::history::{History, SharedHistory};
use crate::jitter::Jitter;
use crate::maintenance::tracker::{MaintenanceTracker, Step, Stores};
use crate::messages::TunnelLogResult;
use crate::messages::{MaintenanceResult, Observation, PollResult, ProbeOutcome};
use crate::outage::OutageTracker;
use crate::probe::stats::TargetStats;
use crate::types::{AlertClass, TargetId, Timestamp, TunnelId};

/// The longest the core sleeps without a deadline of its own: the sliding windows (flaps,
/// EC2 failing for long enough, silent pingers, stale answers) are judged at least this
/// often.
pub const COARSE_TICK: Duration = Duration::from_secs(1);

/// Slots the event queue keeps when it is drained: a batch of a few tunnels' changes and
/// pages fits without growing; a burst of one per target is given back.
const IDLE_EVENT_CAPACITY: usize = 64;

/// Everything the daemon knows and decides, for one config.
pub struct Core {
    config: Arc<Config>,
    model: HealthModel,
    control: Option<ControlPlane>,
    /// Per-target counters and recent window, indexed like `config.targets`.
    stats: Vec<TargetStats>,
    path_mtu: PathMtus,
    /// Pending AWS maintenance: the decisions and the replacements under way.
    maintenance: MaintenanceTracker,
    /// When to read each tunnel's AWS logs, and what was read.
    logs: TunnelLogBook,
    pager: Pager,
    /// The smoke charts' series (shared with the page, which reads them under the lock).
    history: SharedHistory,
    /// The last one-line status (`OK: 4/4 tunnels up`).
    status_line: String,
    first_round_done: bool,
    /// Whether the alerts must be evaluated before the next event is handed out.
    evaluation_due: bool,
    /// The latest time the shell gave.
    now: Timestamp,
    /// When time was last let pass ([`Core::handle_timeout`]).
    last_timeout: Timestamp,
    /// Tunnels that were down when the daemon stopped, with when their outage began (from
    /// the saved alerts): if they are still down, the outage is that one.
    restored_outages: Vec<(TunnelId, Timestamp)>,
    /// Outages under way, and ended ones waiting to be recorded.
    outages: OutageTracker,
    events: VecDeque<Event>,
}

impl Core {
    /// Builds the core for `config` at start, from the saved alert state if any.
    pub fn new(
        config: Arc<Config>,
        saved: Option<SavedState>,
        history: SharedHistory,
        jitter: Jitter,
        now: Timestamp,
    ) -> Self {
        {
            // A history kept from an earlier config (a generation whose core was lost).
            let mut history = lock(&history);
            let mapping = ReloadMapping::between(history.config(), &config);
            history.reshape(&config, &mapping);
        }
        let restored_outages = saved
            .as_ref()
            .map(|s| restored_outages(&config, s))
            .unwrap_or_default();
        let pager = Pager::new(config.clone(), saved, now, jitter);
        let mut core = Self::empty(config, pager, history, now);
        core.restored_outages = restored_outages;
        core.announce_all();
        core
    }

    fn empty(config: Arc<Config>, pager: Pager, history: SharedHistory, now: Timestamp) -> Self {
        Self {
            model: HealthModel::new(&config),
            control: config
                .aws
                .as_ref()
                .map(|aws| ControlPlane::new(&config, aws.stale_after())),
            stats: vec![TargetStats::default(); config.targets.len()],
            path_mtu: PathMtus::new(&config),
            maintenance: MaintenanceTracker::new(&config),
            logs: TunnelLogBook::new(&config),
            pager,
            history,
            status_line: String::new(),
            first_round_done: false,
            evaluation_due: false,
            now,
            last_timeout: now,
            restored_outages: Vec::new(),
            outages: OutageTracker::default(),
            events: VecDeque::new(),
            config,
        }
    }

    /// Moves to a reloaded config: every store takes over, through one mapping by
    /// identity, what it knew of the targets and tunnels the new config keeps. Verdicts
    /// keep their `since`, alerts their state (renamed with their tunnel), the outbox its
    /// deliveries, the charts their series. Path-MTU readings start over (each tunnel is
    /// measured again within an interval).
    pub fn reload(self, config: Arc<Config>, now: Timestamp) -> Self {
        let mapping = ReloadMapping::between(&self.config, &config);
        lock(&self.history).reshape(&config, &mapping);
        let pager = self.pager.resume(config.clone(), &mapping);
        let mut next = Self::empty(config.clone(), pager, self.history, now);
        next.model
            .adopt(&self.model, (&self.config, &config), &mapping, now);
        for &(new, old) in &mapping.targets {
            next.stats[new.0] = self.stats[old.0].clone();
        }
        next.maintenance.adopt(&self.maintenance, &mapping.tunnels);
        if let (Some(new), Some(old)) = (next.control.as_mut(), self.control.as_ref()) {
            new.adopt(old, &config);
        }
        next.status_line = self.status_line;
        next.outages
            .adopt(&self.outages, (&self.config, &config), &mapping);
        next.restored_outages = self
            .restored_outages
            .iter()
            .filter_map(|&(old, since)| {
                let new = mapping.tunnels.iter().find(|(_, o)| *o == old)?.0;
                Some((new, since))
            })
            .collect();
        next.first_round_done = next.stats.iter().all(|s| s.summary_sent() > 0);
        next.announce_all();
        next.pager.save_now(now, &mut next.events);
        next
    }

    /// Takes one observation of the shell's tasks, made at the time it carries.
    pub fn handle_observation(&mut self, observation: Observation) {
        match observation {
            Observation::Probe {
                target,
                outcome,
                at,
                send_delay,
                ..
            } => self.handle_probe(target, outcome, send_delay, at),
            Observation::LateReply {
                target, at, rtt, ..
            } => self.handle_late_reply(target, rtt, at),
            Observation::Ec2 { at, result } => self.handle_ec2(result, at),
            Observation::Ec2NextCall { at } => {
                // A time in the future: when the poller calls next, not a present moment.
                if let Some(control) = self.control.as_mut() {
                    control.handle_next_call(at);
                }
            }
            Observation::Maintenance { at, tunnel, result } => {
                self.handle_maintenance(tunnel, result, at)
            }
            Observation::StateSave(failure) => {
                self.pager.set_state_save(failure);
                self.evaluation_due = true;
            }
            Observation::Delivery(report) => {
                let now = self.now;
                self.pager.delivery_report(report, now, &mut self.events);
            }
            Observation::PathMtu {
                tunnel,
                at,
                reading,
            } => {
                self.advance(at);
                let before = self.path_mtu.verdict(tunnel);
                self.path_mtu.handle(tunnel, reading.clone(), at);
                self.events
                    .push_back(Event::PathMtuMeasured { tunnel, reading });
                if before != self.path_mtu.verdict(tunnel) {
                    self.evaluation_due = true;
                }
            }
            Observation::TimeoutInForce { target, timeout } => {
                if let Some(stats) = self.stats.get_mut(target.0) {
                    stats.set_timeout(timeout);
                    self.events
                        .push_back(Event::TimeoutChanged { target, timeout });
                }
            }
            Observation::StrayReply { target } => {
                self.events.push_back(Event::StrayReply { target });
            }
            Observation::SocketReopened { target, ok } => {
                self.events.push_back(Event::SocketReopened { target, ok });
            }
            Observation::ScheduleSlip { target, missed } => {
                self.events
                    .push_back(Event::ScheduleSlipped { target, missed });
            }
            Observation::TunnelReplaceAnswered { at, tunnel, error } => {
                self.advance(at);
                let error = error.map(|(kind, message)| format!("{}: {message}", kind.label()));
                self.maintenance.call_answered(tunnel, error, at);
                self.evaluation_due = true;
            }
            Observation::TunnelLogs { tunnel, at, result } => {
                self.handle_tunnel_logs(tunnel, result, at)
            }
            Observation::TcpService { target, at, answer } => {
                self.advance(at);
                // ServiceDown follows the refused streak, not only open/refused changes.
                let down_after = self
                    .config
                    .targets
                    .get(target.0)
                    .map(|t| t.probe.down_after);
                let is_down = |core: &Self| {
                    down_after.is_some_and(|d| core.model.target(target).service.is_down(d))
                };
                let before = is_down(self);
                let changed = self.model.handle_service(target, answer, at);
                self.evaluation_due |= changed || before != is_down(self);
            }
        }
    }

    /// Lets time pass: silent pingers, stale EC2 answers, alert timers (`for`, repeats,
    /// silences, retries) and the windows judged over time.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
        self.last_timeout = now;
        for id in self.model.handle_timeout(now) {
            self.events.push_back(Event::TargetSilent { target: id });
            self.after_target(id, "", true, now);
        }
        if let Some(control) = self.control.as_mut() {
            if let Some(verdicts) = control.handle_timeout(now) {
                self.events
                    .push_back(Event::Aws(AwsEvent::ControlPlaneStale));
                self.apply_control_verdicts(verdicts, now);
            }
        }
        self.fetch_due_logs(now);
        self.evaluation_due = true;
    }

    /// Returns when [`Core::handle_timeout`] must be called next, whatever comes in.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        // From the last time time was let pass, not from the latest input: inputs come
        // more often than once a tick, and must not push the tick away.
        let coarse = self.last_timeout.plus(COARSE_TICK);
        Some(
            self.pager
                .poll_timeout(self.now)
                .map_or(coarse, |t| t.min(coarse))
                .min(self.logs.next_deadline().unwrap_or(coarse).max(self.now)),
        )
    }

    /// Returns the next thing that happened, for the shell to act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.evaluation_due {
            // Once per batch of inputs, not once per input: a start at 10,000 targets
            // changes 10,000 verdicts in a second.
            self.evaluation_due = false;
            self.evaluate();
        }
        if self.events.is_empty() && self.outages.has_closed() {
            // After the batch's deliveries: an outage's record carries the pages sent
            // with its end (its RESOLVED page).
            for record in self.outages.take_closed() {
                self.events.push_back(Event::OutageRecorded(record));
            }
        }
        let Some(event) = self.events.pop_front() else {
            self.release_drained_queue();
            return None;
        };
        self.note_pages(&event);
        Some(event)
    }

    /// Gives back the room a burst of events took, once they are all taken: the first round
    /// at 10,000 targets queues an event per target at once, and a deque keeps its largest
    /// size for good (16,384 slots, 1.3 MB, for a queue that is empty between batches).
    fn release_drained_queue(&mut self) {
        if self.events.capacity() > IDLE_EVENT_CAPACITY {
            self.events.shrink_to(IDLE_EVENT_CAPACITY);
        }
    }

    /// Lets the outage tracker see the pages that go out.
    fn note_pages(&mut self, event: &Event) {
        let sink_name = |sink: usize| {
            self.config
                .alerts
                .sinks
                .get(sink)
                .map_or_else(|| format!("unknown[{sink}]"), |s| s.name.clone())
        };
        match event {
            Event::Deliver(delivery) => {
                let sink = sink_name(delivery.sink);
                self.outages.note_page(&delivery.notification, &sink);
            }
            Event::AlertmanagerAlerts { sink, alerts } => {
                let sink = sink_name(*sink);
                for alert in alerts {
                    self.outages.note_page(alert, &sink);
                }
            }
            _ => {}
        }
    }

    /// Asks for the state file to be written now, whatever changed (shutdown).
    pub fn save_now(&mut self) {
        let now = self.now;
        self.pager.save_now(now, &mut self.events);
    }

    /// Takes back a delivery the shell could not hand to its sink's worker.
    pub fn delivery_refused(&mut self, id: u64) {
        self.pager.delivery_refused(id, self.now);
    }

    fn advance(&mut self, at: Timestamp) {
        self.now = self.now.max(at);
    }

    fn handle_probe(
        &mut self,
        target: TargetId,
        outcome: ProbeOutcome,
        send_delay: Duration,
        at: Timestamp,
    ) {
        self.advance(at);
        let Some(stats) = self.stats.get_mut(target.0) else {
            return;
        };
        stats.record(&outcome);
        let before = self.model.target(target).verdict.label();
        let losing_before = self.model.target(target).consecutive_lost > 0;
        let changed = self.model.handle_probe(target, &outcome, at);
        let consecutive_lost = self.model.target(target).consecutive_lost;
        // Alerts hold while a loss streak is under way (no recovery between two losses):
        // a streak that starts or ends is worth an evaluation, verdict or not.
        self.evaluation_due |= losing_before != (consecutive_lost > 0);
        lock(&self.history).record(target, &outcome, at);
        self.events.push_back(Event::ProbeRecorded {
            target,
            outcome,
            consecutive_lost,
            send_delay,
        });
        self.after_target(target, before, changed, at);
        if matches!(self.config.targets[target.0].scope, TargetScope::Shared) {
            let lost = self.model.target(target).consecutive_lost > 0;
            let in_progress = self.model.failovers().in_progress();
            self.outages.shared_probe(lost, in_progress);
        }
        if !self.first_round_done && self.stats.iter().all(|s| s.summary_sent() > 0) {
            // After the verdicts this round made: the status line goes out before ready.
            self.first_round_done = true;
            self.events.push_back(Event::FirstRound);
        }
    }

    /// A reply after the adaptive timeout but within the configured one: the request was
    /// late, not lost. The counters re-count it as answered and the model takes it as a
    /// reply (the loss streak ends).
    fn handle_late_reply(&mut self, target: TargetId, rtt: Duration, at: Timestamp) {
        self.advance(at);
        let Some(stats) = self.stats.get_mut(target.0) else {
            return;
        };
        stats.record_late(rtt);
        let before = self.model.target(target).verdict.label();
        self.evaluation_due |= self.model.target(target).consecutive_lost > 0;
        let changed = self
            .model
            .handle_probe(target, &ProbeOutcome::Reply { rtt }, at);
        lock(&self.history).record_late(target, rtt, at);
        self.after_target(target, before, changed, at);
    }

    fn after_target(&mut self, target: TargetId, before: &str, changed: bool, at: Timestamp) {
        for failover in self.model.take_fresh_failovers() {
            self.outages.failover(&self.config, &failover);
            self.events.push_back(Event::Failover(failover));
        }
        let verdict = &self.model.target(target).verdict;
        // A reworded reason is not a change: only a change of kind is an event.
        if before != verdict.label() {
            lock(&self.history).note_target(target, verdict.label(), at);
            self.events.push_back(Event::TargetChanged {
                target,
                verdict: verdict.clone(),
            });
        }
        if changed {
            self.target_changed(target, at);
            // Pages go out the moment a verdict changes, not at the next tick.
            self.evaluation_due = true;
        }
    }

    /// Refreshes the views above a target whose verdict changed.
    fn target_changed(&mut self, target: TargetId, at: Timestamp) {
        if let TargetScope::Pinned(tunnel) = self.config.targets[target.0].scope {
            self.tunnel_changed(tunnel, at);
        }
        self.refresh_status();
    }

    fn tunnel_changed(&mut self, tunnel: TunnelId, at: Timestamp) {
        if let Some(i) = self.restored_outages.iter().position(|(t, _)| *t == tunnel) {
            let t = self.model.tunnel(tunnel);
            match (&t.verdict, &t.data_plane) {
                (Verdict::Down { .. }, _) => {
                    self.model
                        .backdate_outage(tunnel, self.restored_outages[i].1);
                    self.restored_outages.swap_remove(i);
                }
                // Up by the pings too: the outage ended while the daemon was away. Up by
                // AWS's word alone (the first poll answers before the first probe round)
                // says nothing yet.
                (Verdict::Up { .. }, Verdict::Up { .. }) => {
                    self.restored_outages.swap_remove(i);
                }
                (Verdict::Up { .. } | Verdict::Unknown { .. }, _) => {}
            }
        }
        self.outages
            .observe_tunnel(&self.config, &self.model, tunnel, at);
        let label = self.model.tunnel(tunnel).verdict.label();
        lock(&self.history).note_tunnel(tunnel, label, at);
        if self.logs.note_verdict(tunnel, label, at) {
            // A change of kind: AWS's logs may say why, read them now.
            self.fetch_due_logs(at);
        }
        self.events.push_back(Event::TunnelChanged { tunnel });
    }

    /// Asks the shell for the logs calls due (tunnels not up, or just changed).
    fn fetch_due_logs(&mut self, now: Timestamp) {
        let model = &self.model;
        for fetch in self.logs.due(now, |id| {
            matches!(model.tunnel(id).verdict, Verdict::Down { .. })
        }) {
            self.events.push_back(Event::FetchTunnelLogs(fetch));
        }
    }

    fn handle_tunnel_logs(&mut self, tunnel: TunnelId, result: TunnelLogResult, at: Timestamp) {
        self.advance(at);
        self.logs.handle(tunnel, result, at);
        self.refresh_causes();
        if let (Some(c), Some(t)) = (
            self.config.connections.get(tunnel.connection),
            self.config
                .connections
                .get(tunnel.connection)
                .and_then(|c| c.tunnels.get(tunnel.tunnel)),
        ) {
            let now = self.now;
            self.pager
                .release_held((c.name.as_str(), t.name.as_str()), now, &mut self.events);
        }
        self.evaluation_due = true;
    }

    /// Gathers every tunnel's cause for the pager, and says the ones that changed.
    fn refresh_causes(&mut self) {
        let causes = OutageCauses::gather(
            &self.config,
            (&self.model, self.control.as_ref(), &self.path_mtu),
            &self.logs,
        );
        for id in self.config.tunnel_ids() {
            let names = (
                self.config.connections[id.connection].name.as_str(),
                self.config.tunnel(id).name.as_str(),
            );
            let before = self.pager.causes().cause(names.0, names.1);
            let after = causes.cause(names.0, names.1);
            if let Some(cause) = after {
                self.outages.note_cause(id, &cause.line());
            }
            if before != after {
                self.events.push_back(Event::CauseChanged {
                    tunnel: id,
                    cause: after.cloned(),
                });
            }
        }
        self.pager.set_causes(causes);
    }

    fn handle_ec2(&mut self, result: PollResult, at: Timestamp) {
        self.advance(at);
        let Some(control) = self.control.as_mut() else {
            return;
        };
        match result {
            PollResult::Answer(readings) => {
                let before = control.problems().to_vec();
                let verdicts = control.handle_reading(readings.clone(), at);
                let after = control.problems().to_vec();
                self.events
                    .push_back(Event::Aws(AwsEvent::Ec2Answered { at, readings }));
                for problem in after.iter().filter(|p| !before.contains(p)) {
                    self.events.push_back(Event::Aws(AwsEvent::ControlProblem {
                        problem: problem.clone(),
                        gone: false,
                    }));
                }
                for problem in before.into_iter().filter(|p| !after.contains(p)) {
                    self.events.push_back(Event::Aws(AwsEvent::ControlProblem {
                        problem,
                        gone: true,
                    }));
                }
                if let Some(control) = self.control.as_ref() {
                    for id in self.config.tunnel_ids() {
                        let arn = control
                            .tunnel_reading(id)
                            .and_then(|r| r.options.as_ref())
                            .filter(|o| o.log_enabled == Some(true))
                            .and_then(|o| o.log_group_arn.clone());
                        self.logs.set_group_from_ec2(id, arn.as_deref());
                    }
                }
                self.apply_control_verdicts(verdicts, at);
                self.evaluation_due = true;
            }
            PollResult::Failed { kind, message } => {
                control.handle_error(kind, message, at);
                self.events
                    .push_back(Event::Aws(AwsEvent::Ec2Failed { kind }));
            }
        }
    }

    fn handle_maintenance(&mut self, tunnel: TunnelId, result: MaintenanceResult, at: Timestamp) {
        self.advance(at);
        let Some(control) = self.control.as_mut() else {
            return;
        };
        let before = control.maintenance(tunnel).map(|m| m.reading.clone());
        control.handle_maintenance(tunnel, result.clone(), at);
        let changed = before.as_ref() != control.maintenance(tunnel).map(|m| &m.reading);
        self.events
            .push_back(Event::Aws(AwsEvent::MaintenanceChecked { tunnel, result }));
        if changed {
            self.evaluation_due = true;
        }
    }

    fn apply_control_verdicts(&mut self, verdicts: Vec<(TunnelId, Verdict)>, now: Timestamp) {
        let mut changed = false;
        for (id, verdict) in verdicts {
            let before = self.model.tunnel(id).control_plane.label();
            changed |= self.model.handle_control_plane(id, verdict, now);
            let after = &self.model.tunnel(id).control_plane;
            if before != after.label() {
                self.events
                    .push_back(Event::Aws(AwsEvent::ControlPlaneChanged {
                        tunnel: id,
                        verdict: after.clone(),
                    }));
            }
            self.tunnel_changed(id, now);
        }
        if changed {
            self.refresh_status();
        }
    }

    /// Says the one-line status when it changes, and the VPN verdict with it when that
    /// changed kind.
    fn refresh_status(&mut self) {
        let vpn = self.model.vpn();
        let tunnels: Vec<&Verdict> = self
            .config
            .tunnel_ids()
            .map(|id| &self.model.tunnel(id).verdict)
            .collect();
        let up = tunnels.iter().filter(|v| v.is_up()).count();
        let line = format!("{}: {up}/{} tunnels up", vpn.token(), tunnels.len());
        if line == self.status_line {
            return;
        }
        let now = self.now;
        self.outages.observe_vpn(&self.config, &self.model, now);
        let token_changed = !self.status_line.starts_with(&format!("{}:", vpn.token()));
        self.status_line = line.clone();
        self.events.push_back(Event::StatusLine {
            line,
            vpn: token_changed.then(|| vpn.clone()),
        });
    }

    /// Notes where every chart starts and says the core's whole state is new (at start and
    /// after a reload, so the shell's gauges start from the model). Nothing changed: no
    /// log, no status line.
    fn announce_all(&mut self) {
        let now = self.now;
        let mut history = lock(&self.history);
        for t in &self.config.targets {
            // The charts' first state, so that the first change leaves a mark.
            history.note_target(t.id, self.model.target(t.id).verdict.label(), now);
        }
        for tunnel in self.config.tunnel_ids() {
            history.note_tunnel(tunnel, self.model.tunnel(tunnel).verdict.label(), now);
        }
        drop(history);
        self.events.push_back(Event::Started);
    }

    /// Re-evaluates the alerts.
    fn evaluate(&mut self) {
        let targets_known = self
            .config
            .targets
            .iter()
            .all(|t| !matches!(self.model.target(t.id).verdict, Verdict::Unknown { .. }));
        // Restored alerts wait for a *good* EC2 answer where EC2 is polled at all: a failed
        // first call says nothing about the tunnels.
        let control_known =
            !self.config.polls_ec2() || self.control.as_ref().is_none_or(|c| c.has_succeeded());
        self.refresh_causes();
        let now = self.now;
        let shared = self.history.clone();
        let history = lock(&shared);
        self.decide_maintenance(&history, now);
        self.pager.evaluate(
            (&self.model, &history, &self.maintenance),
            self.control.as_ref(),
            &self.path_mtu,
            now,
            targets_known && control_known,
            &mut self.events,
        );
    }

    /// Decides anew about pending maintenance, and asks the shell for the calls.
    fn decide_maintenance(&mut self, history: &History, now: Timestamp) {
        let firing: Vec<(AlertClass, Option<String>)> = self
            .pager
            .views(now)
            .into_iter()
            .filter(|a| a.state == "firing")
            .map(|a| (a.alert, a.vpn))
            .collect();
        let stores = Stores {
            config: &self.config,
            model: &self.model,
            history,
            control: self.control.as_ref(),
            alerts: &firing,
        };
        for step in self.maintenance.update(now, &stores) {
            let event = match step {
                Step::Replace(tunnel) => Event::ReplaceTunnel { tunnel },
                Step::Changed { tunnel, ended } => Event::MaintenancePlanChanged {
                    tunnel,
                    plan: self
                        .maintenance
                        .plan(tunnel)
                        .cloned()
                        .expect("a configured tunnel"),
                    mode: self.config.maintenance.apply,
                    ended,
                },
            };
            self.events.push_back(event);
        }
    }
}

/// The tunnels whose outage alert was firing when the state was saved, with when the
/// outage began.
fn restored_outages(config: &Config, saved: &SavedState) -> Vec<(TunnelId, Timestamp)> {
    saved
        .alerts
        .iter()
        .filter(|a| {
            matches!(a.state, AlertState::Firing { .. })
                && matches!(
                    a.key.class,
                    AlertClass::TunnelDown | AlertClass::TunnelDownAfterMaintenance
                )
        })
        .filter_map(|a| {
            let since = a.details.since?;
            let id = config.tunnel_ids().find(|&id| {
                Some(config.connections[id.connection].name.as_str()) == a.key.vpn.as_deref()
                    && Some(config.tunnel(id).name.as_str()) == a.key.tunnel.as_deref()
            })?;
            Some((id, since))
        })
        .collect()
}

/// Locks the history; a panic elsewhere while it was held leaves numbers worth showing.
fn lock(history: &SharedHistory) -> MutexGuard<'_, History> {
    history.lock().unwrap_or_else(|p| p.into_inner())
}
