//! Validation: every problem found in one pass, each with its key path, its position and
//! the bound it breaks.

use super::*;

mod alerting;
mod bounds;
mod brownout;

/// Values seen so far, each with the key path that first used it (for duplicate messages).
#[derive(Default)]
struct Seen {
    connection_names: HashMap<String, String>,
    connection_ids: HashMap<String, String>,
    tunnel_names: HashMap<String, String>,
    outside_ips: HashMap<Ipv4Addr, String>,
    addresses: HashMap<crate::config::tcp::Endpoint, String>,
    target_names: HashMap<String, String>,
}

/// What every target of a connection inherits: the probe defaults and the `[mtu]` table.
#[derive(Clone, Copy)]
struct Place<'a> {
    defaults: &'a ProbeSettings,
    /// The defaults of TCP targets: `defaults` with `[probe] tcp_interval`.
    tcp_defaults: &'a ProbeSettings,
    mtu: &'a MtuConfig,
}
mod confirm;
mod http;
mod maintenance;
mod mtu;
mod tcp;
mod tunnel_logs;

/// Collects every problem of one config text.
pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    /// The wall-clock time the config is checked against.
    pub(super) now: std::time::SystemTime,
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<String>,
}

/// Probe fields as written, before defaults apply.
struct ProbeFields<'r> {
    interval: Option<&'r Spanned<HumanDuration>>,
    timeout: Option<&'r Spanned<HumanDuration>>,
    payload_bytes: Option<&'r Spanned<u32>>,
    down_after: Option<&'r Spanned<u32>>,
    up_after: Option<&'r Spanned<u32>>,
}

impl<'a> Validator<'a> {
    fn position(&self, span: std::ops::Range<usize>) -> Option<(usize, usize)> {
        if span.is_empty() && span.start == 0 {
            return None;
        }
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Some((line, col))
    }

    fn problem(&mut self, span: Option<std::ops::Range<usize>>, key: &str, message: String) {
        let position = span.and_then(|s| self.position(s));
        self.problems.push(Problem {
            position,
            key: key.to_string(),
            message,
        });
    }

    fn name(&mut self, key: &str, name: &Spanned<String>) -> String {
        let value = name.get_ref();
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.problem(
                Some(name.span()),
                key,
                format!(
                    "{value:?} is not a valid name: use 1 to 64 letters, digits, '-', '_' or '.'"
                ),
            );
        }
        value.clone()
    }

    pub(super) fn validate(&mut self, raw: RawConfig) -> Config {
        let defaults = self.probe_settings(
            "probe",
            ProbeSettings::default(),
            ProbeFields {
                interval: raw.probe.interval.as_ref(),
                timeout: raw.probe.timeout.as_ref(),
                payload_bytes: raw.probe.payload_bytes.as_ref(),
                down_after: raw.probe.down_after.as_ref(),
                up_after: raw.probe.up_after.as_ref(),
            },
        );
        let defaults = self.fast_detection(&raw.probe, defaults);
        let tcp_defaults = self.tcp_defaults(&raw.probe, defaults);

        let any_pinned = raw
            .vpn
            .iter()
            .any(|v| v.tunnel.iter().any(|t| !t.targets.is_empty()));
        let mtu = self.mtu(raw.mtu.as_ref(), any_pinned);
        let mut targets: Vec<TargetSpec> = Vec::new();
        let mut seen = Seen::default();
        let connections: Vec<ConnectionSpec> = raw
            .vpn
            .iter()
            .enumerate()
            .map(|(ci, vpn)| {
                let place = Place {
                    defaults: &defaults,
                    tcp_defaults: &tcp_defaults,
                    mtu: &mtu,
                };
                self.connection(ci, vpn, place, &mut seen, &mut targets)
            })
            .collect();
        for (i, shared) in raw.target.iter().enumerate() {
            let key = format!("target[{i}]");
            let spec = self.target(
                &key,
                shared.get_ref(),
                shared.span(),
                TargetScope::Shared,
                (&defaults, &tcp_defaults),
                targets.len(),
                (&mut seen.addresses, &mut seen.target_names),
            );
            targets.push(spec);
        }
        if targets.is_empty() && self.problems.is_empty() {
            self.problem(
                None,
                "vpn",
                "nothing to watch: add a [[vpn]] with [[vpn.tunnel]] targets, or a [[target]]"
                    .into(),
            );
        }
        // Pushed one by one, the list ends with up to twice the room it holds, and the
        // config lives as long as the daemon (at 10,000 targets 0.9 MB of nothing).
        targets.shrink_to_fit();

        let aws = raw
            .aws
            .as_ref()
            .map(|a| self.aws(a, &connections, &raw.vpn));
        if aws.is_none() && connections.iter().any(|c| c.id.is_some()) {
            self.warnings.push(
                "connections have an `id` but there is no [aws] table: EC2 is not asked about them"
                    .into(),
            );
        }
        let mut alerts = match &raw.alerts {
            Some(a) => self.alerts(a, &connections, aws.is_some()),
            None => AlertsConfig::default(),
        };
        alerts.rules.release_wait = targets
            .iter()
            .map(|t| t.probe.interval * t.probe.up_after + t.probe.timeout)
            .max()
            .unwrap_or_default();
        let state_dir = self.state_dir(raw.state_dir.as_ref());
        let maintenance = self.maintenance(raw.maintenance.as_ref(), aws.is_some());

        Config {
            aws,
            alerts,
            state_dir_is_default: raw.state_dir.is_none(),
            state_dir,
            listen: raw
                .http
                .listen
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9478))),
            enable_lifecycle: raw.http.enable_lifecycle.unwrap_or(false),
            tls: self.tls(raw.http.tls_server_config.as_ref()),
            basic_auth_users: self.basic_auth_users(raw.http.basic_auth_users.as_ref()),
            socket: raw.probe.socket.unwrap_or_default(),
            connections,
            targets,
            mtu,
            maintenance,
            warnings: Vec::new(),
        }
    }

    /// One `[[vpn]]` table: its name and id, its tunnels and their pinned targets (added to
    /// `targets`).
    fn connection(
        &mut self,
        ci: usize,
        vpn: &RawVpn,
        place: Place<'_>,
        seen: &mut Seen,
        targets: &mut Vec<TargetSpec>,
    ) -> ConnectionSpec {
        let vkey = format!("vpn[{ci}]");
        let name = self.name(&format!("{vkey}.name"), &vpn.name);
        self.unique(
            &mut seen.connection_names,
            name.clone(),
            &vpn.name.span(),
            &format!("{vkey}.name"),
            "connection name",
        );
        let id = vpn.id.as_ref().map(|id| {
            let key = format!("{vkey}.id");
            if !is_vpn_connection_id(id.get_ref()) {
                self.problem(
                    Some(id.span()),
                    &key,
                    format!(
                        "{:?} is not a VPN connection id: expected \"vpn-\" and 8 or 17 hex digits",
                        id.get_ref()
                    ),
                );
            }
            self.unique(
                &mut seen.connection_ids,
                id.get_ref().clone(),
                &id.span(),
                &key,
                "connection id",
            );
            VpnConnectionId::new(id.get_ref().clone())
        });
        match vpn.tunnel.len() {
            0 => self.problem(
                Some(vpn.name.span()),
                &format!("{vkey}.tunnel"),
                "a connection needs its tunnels: add one or two [[vpn.tunnel]] tables".into(),
            ),
            1 => self.warnings.push(format!(
                "{vkey} ({name}) lists one tunnel; an AWS Site-to-Site VPN connection has two, and the other goes unwatched"
            )),
            2 => {}
            n => self.problem(
                Some(vpn.name.span()),
                &format!("{vkey}.tunnel"),
                format!("{n} tunnels listed; an AWS Site-to-Site VPN connection has exactly two"),
            ),
        }
        let mut tunnels = Vec::new();
        for (ti, tunnel) in vpn.tunnel.iter().enumerate() {
            let tkey = format!("{vkey}.tunnel[{ti}]");
            let tname = self.name(&format!("{tkey}.name"), &tunnel.name);
            self.unique(
                &mut seen.tunnel_names,
                tname.clone(),
                &tunnel.name.span(),
                &format!("{tkey}.name"),
                "tunnel name",
            );
            let outside_ip = tunnel.outside_ip.as_ref().map(|ip| {
                let V4(addr) = *ip.get_ref();
                self.unique(
                    &mut seen.outside_ips,
                    addr,
                    &ip.span(),
                    &format!("{tkey}.outside_ip"),
                    "outside IP",
                );
                OutsideIp(addr)
            });
            if tunnel.targets.is_empty() {
                self.warnings.push(format!(
                    "{tkey} ({tname}) has no pinned targets: its data plane stays unknown"
                ));
            }
            let tunnel_id = TunnelId {
                connection: ci,
                tunnel: ti,
            };
            let mut ids = Vec::new();
            for (xi, pinned) in tunnel.targets.iter().enumerate() {
                let key = format!("{tkey}.targets[{xi}]");
                let spec = self.target(
                    &key,
                    &pinned.get_ref().0,
                    pinned.span(),
                    TargetScope::Pinned(tunnel_id),
                    (place.defaults, place.tcp_defaults),
                    targets.len(),
                    (&mut seen.addresses, &mut seen.target_names),
                );
                ids.push(spec.id);
                targets.push(spec);
            }
            tunnels.push(TunnelSpec {
                name: TunnelName::new(tname),
                outside_ip,
                targets: ids,
                expected_mtu: self.tunnel_mtu(&tkey, tunnel.mtu.as_ref(), place.mtu),
            });
        }
        ConnectionSpec {
            id,
            name: ConnectionName::new(name),
            tunnels,
        }
    }

    /// `state_dir`, or the default.
    fn state_dir(&mut self, raw: Option<&Spanned<String>>) -> PathBuf {
        match raw {
            Some(d) if d.get_ref().is_empty() => {
                self.problem(
                    Some(d.span()),
                    "state_dir",
                    "an empty path: give a directory such as \"/var/lib/tunnelkeeper\"".into(),
                );
                PathBuf::from(DEFAULT_STATE_DIR)
            }
            Some(d) => PathBuf::from(d.get_ref()),
            None => PathBuf::from(DEFAULT_STATE_DIR),
        }
    }

    fn duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<HumanDuration>>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(v) = value else { return default };
        let d = v.get_ref().0;
        if d < min || d > max {
            self.problem(
                Some(v.span()),
                key,
                format!(
                    "{} is out of range: it must be between {} and {}",
                    humantime::format_duration(d),
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            );
        }
        d
    }

    #[allow(clippy::too_many_arguments)]
    fn target(
        &mut self,
        key: &str,
        raw: &RawTarget,
        entry_span: std::ops::Range<usize>,
        scope: TargetScope,
        (defaults, tcp_defaults): (&ProbeSettings, &ProbeSettings),
        index: usize,
        (addresses, names): (
            &mut HashMap<crate::config::tcp::Endpoint, String>,
            &mut HashMap<String, String>,
        ),
    ) -> TargetSpec {
        // A bare address string has no span of its own: use the list entry's.
        let address_span = if raw.address.span().is_empty() {
            entry_span.clone()
        } else {
            raw.address.span()
        };
        let V4(address) = *raw.address.get_ref();
        let tcp_port = self.tcp_port(key, raw.tcp_port.as_ref(), &entry_span);
        let endpoint = crate::config::tcp::Endpoint { address, tcp_port };
        let what = match tcp_port {
            Some(_) => "TCP target",
            None => "target address",
        };
        let address_is_new = self.unique(addresses, endpoint, &address_span, key, what);
        let name = match &raw.name {
            Some(n) => self.name(&format!("{key}.name"), n),
            None => endpoint.to_string(),
        };
        let name_span = raw.name.as_ref().map_or(address_span, |n| n.span());
        // A name taken from a duplicate address is the same mistake: report it once.
        if raw.name.is_some() || address_is_new {
            self.unique(names, name.clone(), &name_span, key, "target name");
        }
        let base = match tcp_port {
            Some(_) => *tcp_defaults,
            None => *defaults,
        };
        let probe = self.probe_settings(
            key,
            base,
            ProbeFields {
                interval: raw.interval.as_ref(),
                timeout: raw.timeout.as_ref(),
                payload_bytes: raw.payload_bytes.as_ref(),
                down_after: raw.down_after.as_ref(),
                up_after: raw.up_after.as_ref(),
            },
        );
        TargetSpec {
            id: TargetId(index),
            name: TargetName::new(name),
            address,
            scope,
            probe,
            tcp_port,
        }
    }

    fn probe_settings(
        &mut self,
        key: &str,
        base: ProbeSettings,
        f: ProbeFields<'_>,
    ) -> ProbeSettings {
        let mut s = base;
        if let Some(v) = f.interval {
            s.interval = v.get_ref().0;
            if s.interval < MIN_INTERVAL || s.interval > MAX_INTERVAL {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.interval"),
                    format!(
                        "{} is out of range: the interval must be between {} and {}",
                        humantime::format_duration(s.interval),
                        humantime::format_duration(MIN_INTERVAL),
                        humantime::format_duration(MAX_INTERVAL)
                    ),
                );
            }
        }
        if let Some(v) = f.timeout {
            s.timeout = v.get_ref().0;
            if s.timeout.is_zero() {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.timeout"),
                    "0s: the timeout must be longer than zero".into(),
                );
            }
        }
        if s.timeout > s.interval {
            // Blame the key the user wrote here, and say where the other value came from.
            let inherited = if key == "probe" {
                "the default"
            } else {
                "[probe] or the default"
            };
            let blame = match (f.timeout, f.interval) {
                (Some(t), Some(_)) => Some((
                    t.span(),
                    "timeout",
                    format!(
                        "{} is longer than {key}.interval {}: a probe must end before the next one starts (for example timeout = \"{}\")",
                        humantime::format_duration(s.timeout),
                        humantime::format_duration(s.interval),
                        humantime::format_duration(s.interval * 4 / 5)
                    ),
                )),
                (Some(t), None) => Some((
                    t.span(),
                    "timeout",
                    format!(
                        "{} is longer than the interval {} this inherits from {inherited}: a probe must end before the next one starts (set {key}.interval too, or a shorter timeout)",
                        humantime::format_duration(s.timeout),
                        humantime::format_duration(s.interval)
                    ),
                )),
                (None, Some(i)) => Some((
                    i.span(),
                    "interval",
                    format!(
                        "{} is shorter than the timeout {} this inherits from {inherited}: a probe must end before the next one starts (set {key}.timeout too, for example timeout = \"{}\")",
                        humantime::format_duration(s.interval),
                        humantime::format_duration(s.timeout),
                        humantime::format_duration(s.interval * 4 / 5)
                    ),
                )),
                // Both inherited: reported where they were set.
                (None, None) => None,
            };
            if let Some((span, blamed, message)) = blame {
                self.problem(Some(span), &format!("{key}.{blamed}"), message);
            }
        }
        if let Some(v) = f.payload_bytes {
            s.payload_bytes = *v.get_ref();
            if s.payload_bytes < bounds::MIN_PAYLOAD_BYTES {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.payload_bytes"),
                    format!(
                        "{} is under {}, ping's own minimum (room for its timestamp); 0 is most likely a typo",
                        s.payload_bytes,
                        bounds::MIN_PAYLOAD_BYTES
                    ),
                );
            }
            if s.payload_bytes > MAX_PAYLOAD_BYTES {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.payload_bytes"),
                    format!(
                        "{} exceeds {MAX_PAYLOAD_BYTES}, the most that fits the tunnel MTU of 1446 bytes without fragmenting",
                        s.payload_bytes
                    ),
                );
            }
        }
        for (field, value, slot) in [
            ("down_after", f.down_after, &mut s.down_after),
            ("up_after", f.up_after, &mut s.up_after),
        ] {
            if let Some(v) = value {
                *slot = *v.get_ref();
                if *slot == 0 || *slot > MAX_STREAK {
                    self.problems.push(Problem {
                        position: self.position(v.span()),
                        key: format!("{key}.{field}"),
                        message: format!(
                            "{} is out of range: it must be between 1 and {MAX_STREAK}",
                            *slot
                        ),
                    });
                }
            }
        }
        s
    }

    fn unique<K: std::hash::Hash + Eq + fmt::Display + Clone>(
        &mut self,
        seen: &mut HashMap<K, String>,
        value: K,
        span: &std::ops::Range<usize>,
        key: &str,
        what: &str,
    ) -> bool {
        if let Some(first) = seen.get(&value) {
            let message = format!("{what} {value} is already used by {first}");
            self.problem(Some(span.clone()), key, message);
            false
        } else {
            seen.insert(value, key.to_string());
            true
        }
    }
}

fn is_vpn_connection_id(id: &str) -> bool {
    id.strip_prefix("vpn-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_target_list_keeps_no_spare_room() {
        let targets: Vec<String> = (1..=300)
            .map(|i| format!("\"10.0.{}.{}\"", i / 200, i % 200 + 1))
            .collect();
        let text = format!(
            "[[vpn]]\nname = \"dc\"\n  [[vpn.tunnel]]\n  name = \"dc-a\"\n  targets = [{}]\n",
            targets.join(", ")
        );
        let config = Config::parse(&text, "test").unwrap();
        assert_eq!(config.targets.len(), 300);
        assert_eq!(config.targets.capacity(), 300);
    }
}
