//! Builds outage records as the core's verdicts change: an outage opens when a tunnel or
//! connection goes down or the VPN goes critical, collects which planes saw it, the shared
//! targets' probes and the pages sent meanwhile, and becomes a record when it ends. A
//! failover becomes a record when the failover tracker recognises one.
//!
//! Records wait in `closed` until the core's current batch of events is out, so that the
//! pages of that batch (the RESOLVED page of the outage that just ended) are in them.

use std::collections::{BTreeSet, VecDeque};

use crate::alert::engine::Notification;
use crate::config::{Config, ReloadMapping};
use crate::health::failover::Failover;
use crate::health::{ConnectionState, HealthModel, Verdict, VpnState};
use crate::outage::log::MAX_PAGES;
use crate::outage::RECORD_VERSION;
use crate::outage::{outage_id, OutageKind, OutageRecord, PageSent, Plane, SharedLoss};
use crate::types::{ConnectionId, Timestamp, TunnelId};

/// How many recent pages are kept to be matched to outages when they end.
const RECENT_PAGES: usize = 512;

/// What an open outage is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Tunnel(TunnelId),
    Connection(usize),
    Vpn,
    Failover,
}

/// An outage under way.
#[derive(Clone, Debug)]
struct Episode {
    scope: Scope,
    started_at: Timestamp,
    reason: String,
    cause: Option<String>,
    planes: BTreeSet<Plane>,
    tunnels: BTreeSet<String>,
    shared: SharedLoss,
}

impl Episode {
    fn new(scope: Scope, started_at: Timestamp, reason: &str) -> Self {
        Self {
            scope,
            started_at,
            reason: reason.to_string(),
            cause: None,
            planes: BTreeSet::new(),
            tunnels: BTreeSet::new(),
            shared: SharedLoss::default(),
        }
    }
}

/// Follows outages from start to end and hands out a record for each one that ended.
#[derive(Clone, Debug, Default)]
pub struct OutageTracker {
    open: Vec<Episode>,
    /// Ended, waiting for the pages of the batch that ended them.
    closed: Vec<OutageRecord>,
    pages: VecDeque<PageSent>,
}

impl OutageTracker {
    /// Takes in the verdicts of `tunnel`, its connection and the VPN after they may have
    /// changed at `now`.
    pub fn observe_tunnel(
        &mut self,
        config: &Config,
        model: &HealthModel,
        tunnel: TunnelId,
        now: Timestamp,
    ) {
        let health = model.tunnel(tunnel);
        match &health.verdict {
            Verdict::Down { since, reason } => {
                let episode = self.open_episode(Scope::Tunnel(tunnel), *since, reason);
                // A backdated outage (restored from the state file) moves its start.
                episode.started_at = *since;
                episode
                    .tunnels
                    .insert(config.tunnel(tunnel).name.to_string());
                if health.data_plane.is_down() {
                    episode.planes.insert(Plane::Data);
                }
                if health.control_plane.is_down() {
                    episode.planes.insert(Plane::Control);
                }
            }
            Verdict::Up { since } => self.close(config, Scope::Tunnel(tunnel), *since, now),
            // Not known is not over: a silent pinger says nothing of the tunnel.
            Verdict::Unknown { .. } => {}
        }
        let c = tunnel.connection;
        match model.connection(c) {
            ConnectionState::Down { since, reason } => {
                let names = down_tunnels(config, model, Some(c));
                let episode = self.open_episode(Scope::Connection(c), *since, reason);
                episode.started_at = episode.started_at.min(*since);
                episode.tunnels.extend(names);
                episode.planes.extend(planes_down(config, model, Some(c)));
            }
            ConnectionState::Healthy { since } | ConnectionState::Degraded { since, .. } => {
                self.close(config, Scope::Connection(c), *since, now)
            }
            ConnectionState::Unknown { .. } => {}
        }
        self.observe_vpn(config, model, now);
    }

    /// Takes in the cause of `tunnel`'s outage, as the page says it (`Cause: ...`): kept
    /// on the tunnel's outage and on its connection's, if under way. The last one known
    /// stays when the evidence goes quiet (the tunnel coming back clears the live cause).
    pub fn note_cause(&mut self, tunnel: TunnelId, line: &str) {
        for episode in &mut self.open {
            let concerns = match episode.scope {
                Scope::Tunnel(t) => t == tunnel,
                Scope::Connection(c) => c == tunnel.connection,
                Scope::Vpn | Scope::Failover => false,
            };
            if concerns {
                episode.cause = Some(line.to_string());
            }
        }
    }

    /// Takes in the VPN verdict after it may have changed at `now`.
    pub fn observe_vpn(&mut self, config: &Config, model: &HealthModel, now: Timestamp) {
        match model.vpn() {
            VpnState::Critical { since, reason } => {
                let names = down_tunnels(config, model, None);
                let planes = planes_down(config, model, None);
                let episode = self.open_episode(Scope::Vpn, *since, reason);
                episode.tunnels.extend(names);
                episode.planes.extend(planes);
            }
            VpnState::Ok { since } | VpnState::Degraded { since, .. } => {
                self.close(config, Scope::Vpn, *since, now)
            }
            VpnState::Starting => {}
        }
    }

    /// Counts one probe of a shared target (`lost` or answered) into every outage under
    /// way; `failover_since` is when the shared targets' current loss began, if one is
    /// under way (a failover in the making).
    pub fn shared_probe(&mut self, lost: bool, failover_since: Option<Timestamp>) {
        match failover_since {
            Some(since) => {
                self.open_episode(Scope::Failover, since, "");
            }
            // The loss ended without a failover (the hosts themselves, or an outage).
            None => self.open.retain(|e| e.scope != Scope::Failover),
        }
        for episode in &mut self.open {
            episode.shared.sent += 1;
            episode.shared.lost += u64::from(lost);
        }
    }

    /// Takes in a failover the health model recognised.
    pub fn failover(&mut self, config: &Config, failover: &Failover) {
        let shared = match self.open.iter().position(|e| e.scope == Scope::Failover) {
            Some(i) => self.open.swap_remove(i).shared,
            None => SharedLoss::default(),
        };
        let tunnels: Vec<String> = failover
            .from
            .iter()
            .map(|&t| config.tunnel(t).name.to_string())
            .collect();
        let what = failover
            .from
            .iter()
            .map(|&t| tunnel_identity(config, t))
            .collect::<Vec<_>>()
            .join(",");
        self.closed.push(OutageRecord {
            version: RECORD_VERSION,
            id: outage_id(OutageKind::Failover, &what, failover.lost_at),
            kind: OutageKind::Failover,
            connection: None,
            reason: format!(
                "the shared targets were lost while {} went down, until traffic moved to another tunnel",
                tunnels.join(", ")
            ),
            tunnels,
            started_at: failover.lost_at,
            ended_at: failover.restored_at,
            seconds: failover.seconds(),
            planes: vec![Plane::Data],
            cause: None,
            pages: Vec::new(),
            shared_targets: shared,
        });
    }

    /// Takes in a notification handed to the sink named `sink`.
    pub fn note_page(&mut self, notification: &Notification, sink: &str) {
        let key = &notification.key;
        let same = self.pages.iter_mut().find(|p| {
            p.class == key.class
                && p.vpn == key.vpn
                && p.tunnel == key.tunnel
                && p.status == notification.status
                && p.at == notification.created_at
        });
        match same {
            Some(page) => {
                if !page.sinks.iter().any(|s| s == sink) {
                    page.sinks.push(sink.to_string());
                }
            }
            None => {
                if self.pages.len() == RECENT_PAGES {
                    self.pages.pop_front();
                }
                self.pages.push_back(PageSent {
                    class: key.class,
                    severity: notification.severity,
                    status: notification.status,
                    vpn: key.vpn.clone(),
                    tunnel: key.tunnel.clone(),
                    at: notification.created_at,
                    sinks: vec![sink.to_string()],
                });
            }
        }
    }

    /// Returns whether records wait to be taken.
    pub fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// Hands out the records of the outages that ended, with the pages sent during them.
    pub fn take_closed(&mut self) -> Vec<OutageRecord> {
        let mut records = std::mem::take(&mut self.closed);
        for record in &mut records {
            record.pages = self
                .pages
                .iter()
                .filter(|p| p.at >= record.started_at && page_concerns(record, p))
                .take(MAX_PAGES)
                .cloned()
                .collect();
        }
        records
    }

    /// Takes over what `old` followed under `configs.0`, through `mapping` to
    /// `configs.1`: outages of tunnels and connections the new config drops are
    /// forgotten, and tunnels are named as the new config names them.
    pub fn adopt(
        &mut self,
        old: &OutageTracker,
        configs: (&Config, &Config),
        mapping: &ReloadMapping,
    ) {
        let (before, after) = configs;
        let new_tunnel = |t: TunnelId| mapping.tunnels.iter().find(|(_, o)| *o == t).map(|n| n.0);
        let rename = |name: &String| {
            before
                .tunnel_ids()
                .find(|&t| before.tunnel(t).name.as_str() == name)
                .and_then(new_tunnel)
                .map_or_else(|| name.clone(), |t| after.tunnel(t).name.to_string())
        };
        self.closed = old.closed.clone();
        self.pages = old.pages.clone();
        self.open = old
            .open
            .iter()
            .filter_map(|e| {
                let scope = match e.scope {
                    Scope::Tunnel(t) => Scope::Tunnel(new_tunnel(t)?),
                    Scope::Connection(c) => {
                        Scope::Connection(mapping.connections.iter().find(|(_, o)| *o == c)?.0)
                    }
                    Scope::Vpn => Scope::Vpn,
                    Scope::Failover => Scope::Failover,
                };
                let tunnels = e.tunnels.iter().map(rename).collect();
                Some(Episode {
                    scope,
                    tunnels,
                    ..e.clone()
                })
            })
            .collect();
    }

    fn open_episode(&mut self, scope: Scope, since: Timestamp, reason: &str) -> &mut Episode {
        let i = match self.open.iter().position(|e| e.scope == scope) {
            Some(i) => i,
            None => {
                self.open.push(Episode::new(scope, since, reason));
                self.open.len() - 1
            }
        };
        &mut self.open[i]
    }

    fn close(&mut self, config: &Config, scope: Scope, ended_at: Timestamp, now: Timestamp) {
        let Some(i) = self.open.iter().position(|e| e.scope == scope) else {
            return;
        };
        let episode = self.open.swap_remove(i);
        // The up verdict's `since` is when the first reply of the streak came. One at or
        // before the start is AWS's LastStatusChange of an earlier change (EC2 does not
        // always move it): then the end is when the core saw it.
        let ended_at = if ended_at > episode.started_at {
            ended_at.min(now)
        } else {
            now
        };
        let ended_at = ended_at.max(episode.started_at);
        let (kind, connection, what) = match scope {
            Scope::Tunnel(t) => (
                OutageKind::Tunnel,
                Some(config.connections[t.connection].name.to_string()),
                tunnel_identity(config, t),
            ),
            Scope::Connection(c) => (
                OutageKind::Connection,
                Some(config.connections[c].name.to_string()),
                connection_identity(config, c),
            ),
            Scope::Vpn | Scope::Failover => (OutageKind::Vpn, None, String::new()),
        };
        self.closed.push(OutageRecord {
            version: RECORD_VERSION,
            id: outage_id(kind, &what, episode.started_at),
            kind,
            connection,
            tunnels: episode.tunnels.into_iter().collect(),
            started_at: episode.started_at,
            ended_at,
            seconds: ended_at.since(episode.started_at).as_secs_f64(),
            planes: episode.planes.into_iter().collect(),
            reason: episode.reason,
            cause: episode.cause,
            pages: Vec::new(),
            shared_targets: episode.shared,
        });
    }
}

/// Whether a page is about what `record` was out: a tunnel outage takes its tunnel's
/// pages, a connection outage its connection's; the VPN and failovers take every page.
fn page_concerns(record: &OutageRecord, page: &PageSent) -> bool {
    match record.kind {
        OutageKind::Tunnel => {
            page.vpn == record.connection
                && page
                    .tunnel
                    .as_deref()
                    .is_some_and(|t| record.involves_tunnel(t))
        }
        OutageKind::Connection => page.vpn == record.connection,
        OutageKind::Vpn | OutageKind::Failover => true,
    }
}

/// What makes a connection the same across configs, as text for ids.
fn connection_identity(config: &Config, c: usize) -> String {
    match ConnectionId::of(&config.connections[c]) {
        ConnectionId::Aws(id) => id.to_string(),
        ConnectionId::Named(name) => name.to_string(),
    }
}

/// What makes a tunnel the same across configs (the rules of the reload mapping), as text.
fn tunnel_identity(config: &Config, t: TunnelId) -> String {
    let spec = config.tunnel(t);
    let tunnel = match spec.outside_ip {
        Some(ip) => ip.to_string(),
        None => spec.name.to_string(),
    };
    format!("{}/{tunnel}", connection_identity(config, t.connection))
}

/// The names of the tunnels down now, of connection `c` or of every connection.
fn down_tunnels(config: &Config, model: &HealthModel, c: Option<usize>) -> Vec<String> {
    config
        .tunnel_ids()
        .filter(|t| c.is_none_or(|c| t.connection == c))
        .filter(|&t| model.tunnel(t).verdict.is_down())
        .map(|t| config.tunnel(t).name.to_string())
        .collect()
}

/// The planes that see a tunnel down now, of connection `c` or of every connection.
fn planes_down(config: &Config, model: &HealthModel, c: Option<usize>) -> Vec<Plane> {
    let mut planes = Vec::new();
    for t in config
        .tunnel_ids()
        .filter(|t| c.is_none_or(|c| t.connection == c))
    {
        let health = model.tunnel(t);
        if health.data_plane.is_down() {
            planes.push(Plane::Data);
        }
        if health.control_plane.is_down() {
            planes.push(Plane::Control);
        }
    }
    planes
}
