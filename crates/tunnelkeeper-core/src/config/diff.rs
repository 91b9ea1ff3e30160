//! What a reload changed, in words for the log: targets and tunnels added, removed and
//! changed, and the other tables that differ.

use super::{Config, ReloadMapping, TargetScope, TargetSpec};
use crate::types::TunnelId;

/// Says where a target rides: `tunnel dc-a` or `shared`.
fn place(config: &Config, t: &TargetSpec) -> String {
    match t.scope {
        TargetScope::Pinned(id) => format!(
            "tunnel {} of {}",
            config.tunnel(id).name,
            config.connections[id.connection].name
        ),
        TargetScope::Shared => "shared".into(),
    }
}

/// Returns one line per change from `old` to `new`, in config order; empty when nothing
/// that the daemon uses changed.
pub fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for c in &new.connections {
        if let Some(before) = old.connections.iter().find(|o| o.name == c.name) {
            if before.id != c.id {
                let id = |c: &super::ConnectionSpec| {
                    c.id.as_ref()
                        .map_or("none".to_string(), ToString::to_string)
                };
                out.push(format!(
                    "connection {}: id {} -> {}",
                    c.name,
                    id(before),
                    id(c)
                ));
            }
        }
    }
    let mapping = ReloadMapping::between(old, new);
    tunnel_changes(old, new, &mapping, &mut out);
    for t in &new.targets {
        match mapping.targets.iter().find(|(n, _)| *n == t.id) {
            None => out.push(format!(
                "target {} ({}) added on {}",
                t.address,
                t.name,
                place(new, t)
            )),
            Some(&(_, o)) => {
                let before = &old.targets[o.0];
                let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
                let (a, b) = (&before.probe, &t.probe);
                let fields = [
                    ("name", before.name.to_string(), t.name.to_string()),
                    ("interval", d(a.interval), d(b.interval)),
                    ("timeout", d(a.timeout), d(b.timeout)),
                    (
                        "payload_bytes",
                        a.payload_bytes.to_string(),
                        b.payload_bytes.to_string(),
                    ),
                    (
                        "down_after",
                        a.down_after.to_string(),
                        b.down_after.to_string(),
                    ),
                    ("up_after", a.up_after.to_string(), b.up_after.to_string()),
                    (
                        "adaptive_timeout",
                        a.adaptive_timeout.to_string(),
                        b.adaptive_timeout.to_string(),
                    ),
                    ("timeout_floor", d(a.timeout_floor), d(b.timeout_floor)),
                    (
                        "timeout_rtt_multiplier",
                        a.timeout_rtt_multiplier.to_string(),
                        b.timeout_rtt_multiplier.to_string(),
                    ),
                    (
                        "fast_confirm",
                        a.fast_confirm.to_string(),
                        b.fast_confirm.to_string(),
                    ),
                ];
                let what: Vec<String> = fields
                    .iter()
                    .filter(|(_, x, y)| x != y)
                    .map(|(k, x, y)| format!("{k} {x} -> {y}"))
                    .collect();
                if !what.is_empty() {
                    out.push(format!(
                        "target {} on {}: {}",
                        t.address,
                        place(new, t),
                        what.join(", ")
                    ));
                }
            }
        }
    }
    for t in &old.targets {
        if !mapping.targets.iter().any(|(_, o)| *o == t.id) {
            out.push(format!(
                "target {} ({}) removed from {}",
                t.address,
                t.name,
                place(old, t)
            ));
        }
    }
    out.extend(super::diff_keys::table_changes(old, new));
    let tables = [
        ("[probe] socket", old.socket != new.socket),
        ("[maintenance]", old.maintenance != new.maintenance),
        (
            "[http] security",
            old.tls != new.tls || old.basic_auth_users != new.basic_auth_users,
        ),
    ];
    for (table, changed) in tables {
        if changed {
            out.push(format!("{table} changed"));
        }
    }
    out
}

/// The tunnels' lines: each tunnel is matched by identity (its connection and outside IP),
/// so a rename or a move within its connection is said as such; a tunnel whose outside
/// IP changed is another tunnel to AWS, said as the old name's IP change.
fn tunnel_changes(old: &Config, new: &Config, mapping: &ReloadMapping, out: &mut Vec<String>) {
    let names = |c: &Config, id: TunnelId| {
        (
            c.connections[id.connection].name.to_string(),
            c.tunnel(id).name.to_string(),
        )
    };
    let ip = |c: &Config, id: TunnelId| {
        c.tunnel(id)
            .outside_ip
            .map_or("none".to_string(), |ip| ip.to_string())
    };
    let mut replaced = Vec::new();
    for id in new.tunnel_ids() {
        let (vpn, name) = names(new, id);
        let Some(o) = mapping.old_tunnel(id) else {
            // Same name, new outside IP: say it as a change of IP.
            let same_name = old.tunnel_ids().find(|&o| {
                names(old, o) == (vpn.clone(), name.clone())
                    && !mapping.tunnels.iter().any(|(_, kept)| *kept == o)
            });
            match same_name {
                Some(o) => {
                    replaced.push(o);
                    out.push(format!(
                        "tunnel {name} of {vpn}: outside IP {} -> {} (a new tunnel to AWS: its state starts over)",
                        ip(old, o),
                        ip(new, id)
                    ));
                }
                None => out.push(format!("tunnel {name} of {vpn} added")),
            }
            continue;
        };
        let (old_vpn, old_name) = names(old, o);
        if (old_vpn.as_str(), old_name.as_str()) != (vpn.as_str(), name.as_str()) {
            out.push(format!(
                "tunnel {old_name} of {old_vpn} renamed to {name} of {vpn} (same tunnel: it keeps its state and alerts)"
            ));
        }
        let (old_mtu, mtu) = (old.tunnel(o).expected_mtu, new.tunnel(id).expected_mtu);
        if old_mtu != mtu {
            out.push(format!("tunnel {name} of {vpn}: mtu {old_mtu} -> {mtu}"));
        }
    }
    for o in old.tunnel_ids() {
        if !mapping.tunnels.iter().any(|(_, kept)| *kept == o) && !replaced.contains(&o) {
            let (vpn, name) = names(old, o);
            out.push(format!("tunnel {name} of {vpn} removed"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"
        [[vpn]]
        name = "dc"
          [[vpn.tunnel]]
          name = "dc-a"
          targets = ["172.16.1.10", "172.16.1.11"]
          [[vpn.tunnel]]
          name = "dc-b"
          targets = ["172.16.2.10"]
    "#;

    #[test]
    fn a_reload_says_what_it_added_removed_and_changed() {
        let old = Config::parse(OLD, "old").unwrap();
        assert!(changes(&old, &old).is_empty());
        let text = OLD
            .replace(
                "\"172.16.1.11\"",
                "{ address = \"172.16.1.11\", interval = \"2s\" }",
            )
            .replace("[\"172.16.2.10\"]", "[\"172.16.2.20\"]")
            + "[alerts]\nfor = \"1m\"\n";
        let new = Config::parse(&text, "new").unwrap();
        let said = changes(&old, &new);
        assert_eq!(said.len(), 4, "{said:#?}");
        assert_eq!(
            said[0],
            "target 172.16.1.11 on tunnel dc-a of dc: interval 1s -> 2s"
        );
        assert_eq!(
            said[1],
            "target 172.16.2.20 (172.16.2.20) added on tunnel dc-b of dc"
        );
        assert_eq!(
            said[2],
            "target 172.16.2.10 (172.16.2.10) removed from tunnel dc-b of dc"
        );
        assert_eq!(said[3], "[alerts] changed: for");
    }
}
