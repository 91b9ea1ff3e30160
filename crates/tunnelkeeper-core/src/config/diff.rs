//! What a reload changed, in words for the log: targets and tunnels added, removed and
//! changed, and the other tables that differ.

use super::{Config, TargetScope, TargetSpec};

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
    let tunnels = |c: &Config| -> Vec<(String, String, Option<String>, u32)> {
        c.connections
            .iter()
            .flat_map(|conn| {
                conn.tunnels.iter().map(move |t| {
                    (
                        conn.name.to_string(),
                        t.name.to_string(),
                        t.outside_ip.as_ref().map(ToString::to_string),
                        t.expected_mtu,
                    )
                })
            })
            .collect()
    };
    let (old_tunnels, new_tunnels) = (tunnels(old), tunnels(new));
    for (vpn, name, ip, mtu) in &new_tunnels {
        match old_tunnels
            .iter()
            .find(|(v, n, _, _)| v == vpn && n == name)
        {
            None => out.push(format!("tunnel {name} of {vpn} added")),
            Some((_, _, old_ip, old_mtu)) => {
                if old_ip != ip {
                    out.push(format!(
                        "tunnel {name} of {vpn}: outside IP {} -> {}",
                        old_ip.as_deref().unwrap_or("none"),
                        ip.as_deref().unwrap_or("none")
                    ));
                }
                if old_mtu != mtu {
                    out.push(format!("tunnel {name} of {vpn}: mtu {old_mtu} -> {mtu}"));
                }
            }
        }
    }
    for (vpn, name, _, _) in &old_tunnels {
        if !new_tunnels.iter().any(|(v, n, _, _)| v == vpn && n == name) {
            out.push(format!("tunnel {name} of {vpn} removed"));
        }
    }
    let mapping = super::target_mapping(old, new);
    for t in &new.targets {
        match mapping.iter().find(|(n, _)| *n == t.id.0) {
            None => out.push(format!(
                "target {} ({}) added on {}",
                t.address,
                t.name,
                place(new, t)
            )),
            Some(&(_, o)) => {
                let before = &old.targets[o];
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
        if !mapping.iter().any(|(_, o)| *o == t.id.0) {
            out.push(format!(
                "target {} ({}) removed from {}",
                t.address,
                t.name,
                place(old, t)
            ));
        }
    }
    let tables = [
        ("[aws]", old.aws != new.aws),
        ("[alerts]", old.alerts != new.alerts),
        ("[probe] socket", old.socket != new.socket),
        ("[mtu]", old.mtu != new.mtu),
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
        assert_eq!(said[3], "[alerts] changed");
    }
}
