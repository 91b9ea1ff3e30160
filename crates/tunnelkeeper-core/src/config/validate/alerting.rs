//! Validation of `[alerts]`, its sinks, and `[aws]`.

use super::*;

impl Validator<'_> {
    pub(super) fn alerts(
        &mut self,
        raw: &RawAlerts,
        connections: &[ConnectionSpec],
        has_aws: bool,
    ) -> AlertsConfig {
        let defaults = AlertsConfig::default();
        let day = Duration::from_secs(86_400);
        let rules = self.alert_rules(raw, &defaults);
        let flap_changes = raw
            .flap_changes
            .as_ref()
            .map_or(defaults.flap_changes, |v| {
                let n = *v.get_ref();
                if !(2..=1000).contains(&n) {
                    self.problem(
                        Some(v.span()),
                        "alerts.flap_changes",
                        format!("{n} is out of range: it must be between 2 and 1000"),
                    );
                }
                n
            });
        let flap_window = self.duration(
            "alerts.flap_window",
            raw.flap_window.as_ref(),
            defaults.flap_window,
            Duration::from_secs(1),
            day,
        );
        let control_plane_unavailable_after = self.duration(
            "alerts.control_plane_unavailable_after",
            raw.control_plane_unavailable_after.as_ref(),
            defaults.control_plane_unavailable_after,
            Duration::from_secs(1),
            day,
        );
        let maintenance_grace = self.duration(
            "alerts.maintenance_grace",
            raw.maintenance_grace.as_ref(),
            defaults.maintenance_grace,
            Duration::ZERO,
            day,
        );
        let failover_grace = self.duration(
            "alerts.failover_grace",
            raw.failover_grace.as_ref(),
            defaults.failover_grace,
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let maintenance_severity = raw
            .maintenance_severity
            .as_ref()
            .map_or(defaults.maintenance_severity, |v| {
                self.severity("alerts.maintenance_severity", v)
            });
        let severity_overrides = self.severity_overrides(raw);
        let silences = raw
            .silence
            .iter()
            .enumerate()
            .map(|(i, silence)| self.silence(i, silence.get_ref(), connections))
            .collect();
        let sinks = self.sinks(raw, has_aws, defaults.sinks.clone());
        AlertsConfig {
            rules,
            flap_changes,
            flap_window,
            control_plane_unavailable_after,
            maintenance_grace,
            failover_grace,
            maintenance_severity,
            severity_overrides,
            runbook_url: match &raw.runbook_url {
                Some(url) => {
                    if let Some(problem) = super::bounds::url_problem(url.get_ref()) {
                        self.problem(Some(url.span()), "alerts.runbook_url", problem);
                    }
                    url.get_ref().clone()
                }
                None => defaults.runbook_url,
            },
            lossy: self.lossy(raw.lossy.as_ref()),
            slow: self.slow(raw.slow.as_ref()),
            silences,
            sinks,
        }
    }

    /// `for`, `keep_firing_for`, `group_wait`, `repeat_interval`, `send_resolved` and
    /// `escalate_after`.
    fn alert_rules(&mut self, raw: &RawAlerts, defaults: &AlertsConfig) -> AlertRules {
        let day = Duration::from_secs(86_400);
        AlertRules {
            for_: self.duration(
                "alerts.for",
                raw.for_.as_ref(),
                defaults.rules.for_,
                Duration::ZERO,
                day,
            ),
            keep_firing_for: self.duration(
                "alerts.keep_firing_for",
                raw.keep_firing_for.as_ref(),
                defaults.rules.keep_firing_for,
                Duration::ZERO,
                day,
            ),
            group_wait: self.duration(
                "alerts.group_wait",
                raw.group_wait.as_ref(),
                defaults.rules.group_wait,
                Duration::ZERO,
                Duration::from_secs(300),
            ),
            repeat_interval: self.duration(
                "alerts.repeat_interval",
                raw.repeat_interval.as_ref(),
                defaults.rules.repeat_interval,
                Duration::from_secs(60),
                day * 7,
            ),
            send_resolved: raw.send_resolved.unwrap_or(defaults.rules.send_resolved),
            release_wait: Duration::ZERO,
            escalate_after: self.duration(
                "alerts.escalate_after",
                raw.escalate_after.as_ref(),
                defaults.rules.escalate_after,
                Duration::ZERO,
                day,
            ),
        }
    }

    /// `[alerts.severity]`: a severity per class, over the class's own and the situation's.
    fn severity_overrides(&mut self, raw: &RawAlerts) -> BTreeMap<AlertClass, Severity> {
        let mut severity_overrides = BTreeMap::new();
        for (name, v) in raw.severity.iter().flatten() {
            let key = format!("alerts.severity.{name}");
            match AlertClass::parse(name) {
                Some(class) => {
                    let severity = self.severity(&key, v);
                    severity_overrides.insert(class, severity);
                }
                None => {
                    let names: Vec<&str> = AlertClass::ALL.iter().map(|c| c.name()).collect();
                    self.problem(
                        Some(v.span()),
                        &key,
                        format!(
                            "{name:?} is not an alert; use one of {} (for example ConnectionDown = \"critical\")",
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        if let (Some(m), Some(_)) = (
            &raw.maintenance_severity,
            severity_overrides.get(&AlertClass::TunnelDownAfterMaintenance),
        ) {
            self.problem(
                Some(m.span()),
                "alerts.maintenance_severity",
                "set twice: also in [alerts.severity] as TunnelDownAfterMaintenance; keep one"
                    .into(),
            );
        }
        if let (Some(m), Some(_)) = (
            &raw.maintenance_severity,
            severity_overrides.get(&AlertClass::TunnelDownAfterMaintenance),
        ) {
            self.problem(
                Some(m.span()),
                "alerts.maintenance_severity",
                "set twice: also in [alerts.severity] as TunnelDownAfterMaintenance; keep one"
                    .into(),
            );
        }
        severity_overrides
    }

    /// One `[[alerts.silence]]`: what it matches must exist, its times must be times.
    fn silence(&mut self, i: usize, raw_s: &RawSilence, connections: &[ConnectionSpec]) -> Silence {
        let key = format!("alerts.silence[{i}]");
        let class = raw_s.alert.as_ref().and_then(|a| {
            let c = AlertClass::parse(a.get_ref());
            if c.is_none() {
                let names: Vec<&str> = AlertClass::ALL.iter().map(|c| c.name()).collect();
                self.problem(
                    Some(a.span()),
                    &format!("{key}.alert"),
                    format!(
                        "{:?} is not an alert; use one of {}",
                        a.get_ref(),
                        names.join(", ")
                    ),
                );
            }
            c
        });
        if let Some(v) = &raw_s.vpn {
            if !connections.iter().any(|c| c.name.as_str() == v.get_ref()) {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.vpn"),
                    format!("{:?} is not the name of a [[vpn]]", v.get_ref()),
                );
            }
        }
        if let Some(t) = &raw_s.tunnel {
            if !connections
                .iter()
                .flat_map(|c| &c.tunnels)
                .any(|x| x.name.as_str() == t.get_ref())
            {
                self.problem(
                    Some(t.span()),
                    &format!("{key}.tunnel"),
                    format!("{:?} is not the name of a [[vpn.tunnel]]", t.get_ref()),
                );
            }
        }
        if let (Some(v), Some(t)) = (&raw_s.vpn, &raw_s.tunnel) {
            let in_vpn = connections
                .iter()
                .filter(|c| c.name.as_str() == v.get_ref())
                .flat_map(|c| &c.tunnels)
                .any(|x| x.name.as_str() == t.get_ref());
            if !in_vpn {
                self.problem(
                    Some(t.span()),
                    &format!("{key}.tunnel"),
                    format!(
                        "{:?} is not a tunnel of vpn {:?}: the silence would never match",
                        t.get_ref(),
                        v.get_ref()
                    ),
                );
            }
        }
        let mut time =
            |field: &str, v: &Spanned<String>| match humantime::parse_rfc3339_weak(v.get_ref()) {
                Ok(t) => Some(Timestamp::from_system_time(t).unwrap_or(Timestamp::from_millis(0))),
                Err(_) => {
                    self.problem(
                        Some(v.span()),
                        &format!("{key}.{field}"),
                        format!(
                            "{:?} is not a time: write it as \"2026-12-01T06:00:00Z\"",
                            v.get_ref()
                        ),
                    );
                    None
                }
            };
        let starts = raw_s.starts.as_ref().and_then(|v| time("starts", v));
        let ends = time("ends", &raw_s.ends);
        if let (Some(st), Some(en)) = (starts, ends) {
            if en <= st {
                self.problem(
                    Some(raw_s.ends.span()),
                    &format!("{key}.ends"),
                    format!("{en} is not after starts {st}"),
                );
            }
        }
        let now_ms = self
            .now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if ends.is_some_and(|e| e.wall_millis() <= now_ms) {
            self.warnings.push(format!(
                "{key} ended at {}: it silences nothing",
                ends.unwrap_or(Timestamp::from_millis(0))
            ));
        }
        Silence {
            class,
            vpn: raw_s.vpn.as_ref().map(|v| v.get_ref().clone()),
            tunnel: raw_s.tunnel.as_ref().map(|v| v.get_ref().clone()),
            starts,
            ends: ends.unwrap_or(Timestamp::from_millis(0)),
            comment: raw_s.comment.clone(),
        }
    }

    /// `[[alerts.sink]]`: each valid, names unique; none given, the log.
    fn sinks(
        &mut self,
        raw: &RawAlerts,
        has_aws: bool,
        defaults: Vec<SinkConfig>,
    ) -> Vec<SinkConfig> {
        if raw.sink.as_ref().is_some_and(|s| s.is_empty()) {
            self.problem(
                None,
                "alerts.sink",
                "an empty list: alerts would go nowhere; remove the key to log them, or add a sink"
                    .into(),
            );
        }
        let mut sinks: Vec<SinkConfig> = Vec::new();
        match &raw.sink {
            None => sinks = defaults,
            Some(list) => {
                let mut named: Vec<usize> = Vec::new();
                for (i, raw_sink) in list.iter().enumerate() {
                    let Some(sink) = self.sink(i, raw_sink, has_aws) else {
                        continue;
                    };
                    if let Some(pos) = sinks.iter().position(|s| s.name == sink.name) {
                        let span = raw_sink
                            .get_ref()
                            .name
                            .as_ref()
                            .map_or(raw_sink.span(), |n| n.span());
                        self.problem(
                            Some(span),
                            &format!("alerts.sink[{i}].name"),
                            format!(
                                "{:?} is also the name of alerts.sink[{}]: give each sink its own `name` (metrics and logs tell them apart by it)",
                                sink.name, named[pos]
                            ),
                        );
                    }
                    named.push(i);
                    sinks.push(sink);
                }
            }
        }
        sinks
    }

    /// Reads a severity name: `info`, `warning` or `critical`.
    fn severity(&mut self, key: &str, v: &Spanned<String>) -> Severity {
        match v.get_ref().as_str() {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            other => {
                self.problem(
                    Some(v.span()),
                    key,
                    format!(
                        "{other:?} is not a severity: use \"info\", \"warning\" or \"critical\""
                    ),
                );
                Severity::Warning
            }
        }
    }

    pub(super) fn sink(
        &mut self,
        i: usize,
        raw: &Spanned<RawSink>,
        has_aws: bool,
    ) -> Option<SinkConfig> {
        let key = format!("alerts.sink[{i}]");
        let s = raw.get_ref();
        let min_severity = s.min_severity.as_ref().map_or(Severity::Warning, |v| {
            self.severity(&format!("{key}.min_severity"), v)
        });
        let unexpected = |this: &mut Self, field: &str, v: &Option<Spanned<String>>, kind: &str| {
            if let Some(v) = v {
                this.problem(
                    Some(v.span()),
                    &format!("{key}.{field}"),
                    format!("not used by a {kind} sink"),
                );
            }
        };
        let kind = match s.kind.get_ref().as_str() {
            "log" => {
                unexpected(self, "topic_arn", &s.topic_arn, "log");
                unexpected(self, "url", &s.url, "log");
                SinkKind::Log
            }
            "sns" => {
                unexpected(self, "url", &s.url, "sns");
                let Some(arn) = &s.topic_arn else {
                    self.problem(
                        Some(s.kind.span()),
                        &format!("{key}.topic_arn"),
                        "missing: an sns sink needs the topic's ARN".into(),
                    );
                    return None;
                };
                let parts: Vec<&str> = arn.get_ref().split(':').collect();
                if parts.len() != 6
                    || parts[0] != "arn"
                    || parts[2] != "sns"
                    || parts[5].is_empty()
                    || parts[5].ends_with(".fifo")
                {
                    self.problem(
                        Some(arn.span()),
                        &format!("{key}.topic_arn"),
                        format!("{:?} is not the ARN of a standard SNS topic (arn:aws:sns:REGION:ACCOUNT:NAME; FIFO topics cannot page)", arn.get_ref()),
                    );
                }
                if !has_aws {
                    self.problem(
                        Some(s.kind.span()),
                        &format!("{key}.kind"),
                        "an sns sink needs an [aws] table (region and credentials come from it)"
                            .into(),
                    );
                }
                SinkKind::Sns {
                    topic_arn: arn.get_ref().clone(),
                }
            }
            "alertmanager" => {
                unexpected(self, "topic_arn", &s.topic_arn, "alertmanager");
                let Some(url) = &s.url else {
                    self.problem(
                        Some(s.kind.span()),
                        &format!("{key}.url"),
                        "missing: an alertmanager sink needs its base URL".into(),
                    );
                    return None;
                };
                let rest = url.get_ref().strip_prefix("http://");
                if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                    self.problem(
                        Some(url.span()),
                        &format!("{key}.url"),
                        format!("{:?} is not an http:// URL", url.get_ref()),
                    );
                }
                SinkKind::Alertmanager {
                    url: url.get_ref().trim_end_matches('/').to_string(),
                }
            }
            other => {
                self.problem(
                    Some(s.kind.span()),
                    &format!("{key}.kind"),
                    format!(
                        "{other:?} is not a sink kind: use \"sns\", \"log\" or \"alertmanager\""
                    ),
                );
                return None;
            }
        };
        let name = match &s.name {
            Some(n) if n.get_ref().trim().is_empty() || n.get_ref().contains(char::is_control) => {
                self.problem(
                    Some(n.span()),
                    &format!("{key}.name"),
                    format!(
                        "{:?} is not a usable name: give a short word such as \"noc-pager\"",
                        n.get_ref()
                    ),
                );
                kind.default_name()
            }
            Some(n) => n.get_ref().clone(),
            None => kind.default_name(),
        };
        Some(SinkConfig {
            name,
            kind,
            min_severity,
        })
    }

    pub(super) fn aws(
        &mut self,
        raw: &Spanned<RawAws>,
        connections: &[ConnectionSpec],
        raw_vpns: &[super::super::raw::RawVpn],
    ) -> AwsConfig {
        let a = raw.get_ref();
        let region = a.region.as_ref().map(|r| {
            let value = r.get_ref();
            if value.is_empty()
                || value.len() > super::bounds::MAX_REGION_LEN
                || !value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                self.problem(
                    Some(r.span()),
                    "aws.region",
                    if value.len() > super::bounds::MAX_REGION_LEN {
                        format!(
                            "is {} characters long: not an AWS region name such as \"us-east-1\"",
                            value.len()
                        )
                    } else {
                        format!("{value:?} is not an AWS region name such as \"us-east-1\"")
                    },
                );
            }
            value.clone()
        });
        let poll_interval = a.poll_interval.as_ref().map_or(Duration::from_secs(60), |p| {
            let d = p.get_ref().0;
            if d < MIN_POLL_INTERVAL || d > MAX_INTERVAL {
                self.problem(
                    Some(p.span()),
                    "aws.poll_interval",
                    format!(
                        "{} is out of range: it must be between {} and {} (EC2 API calls share one rate limit per account and Region)",
                        humantime::format_duration(d),
                        humantime::format_duration(MIN_POLL_INTERVAL),
                        humantime::format_duration(MAX_INTERVAL)
                    ),
                );
            }
            d
        });
        let endpoint_url = a.endpoint_url.as_ref().map(|u| {
            let value = u.get_ref();
            let rest = value
                .strip_prefix("http://")
                .or_else(|| value.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                self.problem(
                    Some(u.span()),
                    "aws.endpoint_url",
                    format!("{value:?} is not an http:// or https:// URL"),
                );
            }
            value.clone()
        });
        let cloudwatch_namespace = a.cloudwatch_namespace.as_ref().map(|n| {
            let value = n.get_ref();
            if value.is_empty() || value.len() > 255 || value.starts_with("AWS/") {
                self.problem(
                    Some(n.span()),
                    "aws.cloudwatch_namespace",
                    format!("{value:?} is not usable: 1 to 255 characters, and \"AWS/\" is reserved for AWS"),
                );
            }
            value.clone()
        });
        let cloudwatch_interval =
            a.cloudwatch_interval
                .as_ref()
                .map_or(Duration::from_secs(60), |p| {
                    let d = p.get_ref().0;
                    if d < Duration::from_secs(1) || d > MAX_INTERVAL {
                        self.problem(
                            Some(p.span()),
                            "aws.cloudwatch_interval",
                            format!(
                                "{} is out of range: it must be between 1s and 1h",
                                humantime::format_duration(d)
                            ),
                        );
                    }
                    d
                });
        let maintenance_interval = a.maintenance_interval.as_ref().map_or(
            Duration::from_secs(15 * 60),
            |p| {
                let d = p.get_ref().0;
                if d < MIN_MAINTENANCE_INTERVAL || d > Duration::from_secs(86_400) {
                    self.problem(
                        Some(p.span()),
                        "aws.maintenance_interval",
                        format!(
                            "{} is out of range: it must be between {} and 1day (one GetVpnTunnelReplacementStatus call per tunnel per round, from the account's EC2 rate limit)",
                            humantime::format_duration(d),
                            humantime::format_duration(MIN_MAINTENANCE_INTERVAL),
                        ),
                    );
                }
                d
            },
        );
        let polled: Vec<&ConnectionSpec> = connections.iter().filter(|c| c.id.is_some()).collect();
        if polled.is_empty() {
            self.warnings.push(
                "[aws] is set but no [[vpn]] has an `id`: there is nothing to ask EC2 about".into(),
            );
        }
        for (ci, c) in connections.iter().enumerate() {
            if c.id.is_none() {
                if !polled.is_empty() {
                    self.warnings.push(format!("vpn[{ci}] ({}) has no `id`: its tunnels are only pinged, never looked up in EC2", c.name));
                }
                continue;
            }
            for (ti, t) in c.tunnels.iter().enumerate() {
                if t.outside_ip.is_none() {
                    // The key is missing: the line is its table's (the tunnel's name).
                    let table = raw_vpns
                        .get(ci)
                        .and_then(|v| v.tunnel.get(ti))
                        .map(|t| t.name.span());
                    self.problem(
                        table,
                        &format!("vpn[{ci}].tunnel[{ti}].outside_ip"),
                        format!("missing: tunnel {} belongs to a connection with an `id`, and EC2 telemetry is joined to tunnels by outside IP", t.name),
                    );
                }
            }
        }
        AwsConfig {
            region,
            poll_interval,
            endpoint_url,
            cloudwatch_namespace,
            cloudwatch_interval,
            maintenance_interval,
            tunnel_logs: self.tunnel_logs(a.tunnel_logs.as_ref()),
        }
    }
}
