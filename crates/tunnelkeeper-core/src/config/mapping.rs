//! One mapping from an old config to a new one, which every store (health model, control
//! plane, history, flap counts, alerts) applies on reload.
//!
//! Identity is data, not position or name: a connection is the same connection when its AWS
//! id matches (its name when neither config gives one an id); a tunnel is the same tunnel
//! when its connection is and its outside IP matches (its name when it has no outside IP);
//! a target is the same target when its address and TCP port (none for ICMP) match and it rides the same tunnel (or
//! both are shared). So a tunnel renamed in the config, or moved within its connection,
//! keeps its outage, its alerts and its history.

use std::collections::HashMap;

use crate::config::{Config, TargetScope};
use crate::types::{ConnectionId, OutsideIp, TargetId, TunnelId};

/// What makes a tunnel the same tunnel across configs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum TunnelKey {
    /// Its connection and its AWS outside IP.
    OutsideIp(ConnectionId, OutsideIp),
    /// Its connection and its name (no outside IP configured).
    Named(ConnectionId, String),
}

/// Old to new, for connections, tunnels and targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadMapping {
    /// (new index, old index) of every connection the new config keeps.
    pub connections: Vec<(usize, usize)>,
    /// (new id, old id) of every tunnel the new config keeps.
    pub tunnels: Vec<(TunnelId, TunnelId)>,
    /// (new id, old id) of every target the new config keeps.
    pub targets: Vec<(TargetId, TargetId)>,
    /// Old alert-key names to new ones, for connections and tunnels whose names changed:
    /// (old vpn, old tunnel) -> (new vpn, new tunnel).
    renamed: HashMap<(String, Option<String>), (String, Option<String>)>,
}

impl ReloadMapping {
    /// Pairs what `new` keeps of `old`.
    pub fn between(old: &Config, new: &Config) -> Self {
        let old_connections: HashMap<ConnectionId, usize> = old
            .connections
            .iter()
            .enumerate()
            .map(|(i, c)| (ConnectionId::of(c), i))
            .collect();
        let connections: Vec<(usize, usize)> = new
            .connections
            .iter()
            .enumerate()
            .filter_map(|(i, c)| old_connections.get(&ConnectionId::of(c)).map(|&o| (i, o)))
            .collect();
        let old_tunnels: HashMap<TunnelKey, TunnelId> = old
            .tunnel_ids()
            .map(|id| (tunnel_key(old, id), id))
            .collect();
        let tunnels: Vec<(TunnelId, TunnelId)> = new
            .tunnel_ids()
            .filter_map(|id| old_tunnels.get(&tunnel_key(new, id)).map(|&o| (id, o)))
            .collect();
        let tunnel_of: HashMap<TunnelId, TunnelId> = tunnels.iter().copied().collect();
        let old_targets: HashMap<_, TargetId> = old
            .targets
            .iter()
            .map(|t| ((t.endpoint(), place(t.scope)), t.id))
            .collect();
        let targets = new
            .targets
            .iter()
            .filter_map(|t| {
                let old_place = match t.scope {
                    TargetScope::Pinned(id) => Some(*tunnel_of.get(&id)?),
                    TargetScope::Shared => None,
                };
                old_targets
                    .get(&(t.endpoint(), old_place))
                    .map(|&o| (t.id, o))
            })
            .collect();
        let mut renamed = HashMap::new();
        for &(n, o) in &connections {
            let (new_name, old_name) = (&new.connections[n].name, &old.connections[o].name);
            if new_name != old_name {
                renamed.insert((old_name.to_string(), None), (new_name.to_string(), None));
            }
        }
        for &(n, o) in &tunnels {
            let new_names = names(new, n);
            let old_names = names(old, o);
            if new_names != old_names {
                renamed.insert(
                    (old_names.0, Some(old_names.1)),
                    (new_names.0, Some(new_names.1)),
                );
            }
        }
        Self {
            connections,
            tunnels,
            targets,
            renamed,
        }
    }

    /// Returns the old id of a tunnel of the new config, if it was there.
    pub fn old_tunnel(&self, new: TunnelId) -> Option<TunnelId> {
        self.tunnels
            .iter()
            .find(|(n, _)| *n == new)
            .map(|(_, o)| *o)
    }

    /// Returns the old index of a connection of the new config, if it was there.
    pub fn old_connection(&self, new: usize) -> Option<usize> {
        self.connections
            .iter()
            .find(|(n, _)| *n == new)
            .map(|(_, o)| *o)
    }

    /// Returns the new names of a connection (`tunnel` `None`) or a tunnel the new config
    /// renamed, by their old names; `None` when they kept their names or are gone.
    pub fn renamed(&self, vpn: &str, tunnel: Option<&str>) -> Option<(&str, Option<&str>)> {
        self.renamed
            .get(&(vpn.to_string(), tunnel.map(str::to_string)))
            .map(|(v, t)| (v.as_str(), t.as_deref()))
    }
}

fn tunnel_key(config: &Config, id: TunnelId) -> TunnelKey {
    let connection = ConnectionId::of(&config.connections[id.connection]);
    let tunnel = config.tunnel(id);
    match tunnel.outside_ip {
        Some(ip) => TunnelKey::OutsideIp(connection, ip),
        None => TunnelKey::Named(connection, tunnel.name.to_string()),
    }
}

/// A tunnel's identity as text, by the rules above, for what outlives a config (the saved
/// history): names are quoted so that no two identities read the same.
pub(crate) fn tunnel_identity(config: &Config, id: TunnelId) -> String {
    let connection = |c: ConnectionId| match c {
        ConnectionId::Aws(id) => format!("aws {:?}", id.as_str()),
        ConnectionId::Named(name) => format!("named {:?}", name.as_str()),
    };
    match tunnel_key(config, id) {
        TunnelKey::OutsideIp(c, ip) => format!("{} ip {ip}", connection(c)),
        TunnelKey::Named(c, name) => format!("{} tunnel {name:?}", connection(c)),
    }
}

fn place(scope: TargetScope) -> Option<TunnelId> {
    match scope {
        TargetScope::Pinned(id) => Some(id),
        TargetScope::Shared => None,
    }
}

fn names(config: &Config, id: TunnelId) -> (String, String) {
    (
        config.connections[id.connection].name.to_string(),
        config.tunnel(id).name.to_string(),
    )
}
