//! The overview at `/`: the VPN verdict, then each connection's tunnels side by side
//! (verdicts, both planes, AWS's telemetry and maintenance, pinned targets, a smoke
//! chart), shared targets (summarised past [`HEALTH_TARGET_LINES`]), alerts, advisories
//! and the control plane's own state.

use std::fmt::Write as _;

use super::{
    badge, chart, connection_look, document, escape, history_note, ms, paging_banner, points_of,
    range_links, range_query, reload_banner, stale_banner, verdict_line, verdict_look, vpn_look,
    when, View,
};
use crate::health::VpnState;
use crate::history::MinuteSummary;
use crate::messages::ApiTunnelStatus;
use crate::snapshot::{
    AlertView, ConnectionSnapshot, Snapshot, TargetSnapshot, TunnelSnapshot, HEALTH_TARGET_LINES,
};
use crate::types::Timestamp;

/// Renders the overview.
pub fn render_index(s: &Snapshot, view: &View) -> String {
    let now = s.generated_at;
    let charts = tunnel_charts(s, view);
    let mut main = String::with_capacity(32 * 1024);
    main.push_str(r#"<main id="page">"#);
    main.push_str(&stale_banner(view));
    main.push_str(&reload_banner(view));
    main.push_str(&paging_banner(s));
    main.push_str(&vpn_header(s));
    main.push_str(&range_links("/", view.range));
    main.push_str(r#"<section id="connections"><h2>Connections</h2>"#);
    for (ci, c) in s.connections.iter().enumerate() {
        connection(&mut main, now, c, &charts[ci], view);
    }
    main.push_str("</section>");
    shared_targets(&mut main, now, &s.shared_targets, view);
    alerts(&mut main, now, &s.alerts, &s.runbook_url);
    super::outages::recent_outages(&mut main, now, &view.outages, "Recent outages", |_| true);
    advisories(&mut main, s);
    let _ = write!(
        main,
        r#"<footer><p>{}</p><p>Snapshot of {}; ICMP socket {}; outbox {} notification(s). Machine-readable: <a href="/health">/health</a> · <a href="/status">/status</a> · <a href="/metrics">/metrics</a>.</p></footer></main>"#,
        escape(&history_note(s)),
        s.generated_at,
        escape(s.icmp_socket),
        s.outbox_length
    );
    document(&format!("{} · tunnelkeeper", s.vpn.token()), &main)
}

fn vpn_header(s: &Snapshot) -> String {
    let l = vpn_look(&s.vpn);
    let now = s.generated_at;
    let detail = match &s.vpn {
        VpnState::Starting => "<p>Waiting for the first probe results.</p>".to_string(),
        VpnState::Ok { since } => format!("<p>since {}</p>", when(now, *since)),
        VpnState::Degraded { since, reason } | VpnState::Critical { since, reason } => format!(
            r#"<p>since {}</p><p class="reason">{}</p>"#,
            when(now, *since),
            escape(reason)
        ),
    };
    format!(
        r#"<header class="vpn {}"><h1><span aria-hidden="true">{}</span> VPN {}</h1>{detail}</header>"#,
        l.class, l.symbol, l.word
    )
}

/// The charts of every tunnel, copied out of the history under one short lock.
fn tunnel_charts(s: &Snapshot, view: &View) -> Vec<Vec<Option<Vec<MinuteSummary>>>> {
    let guard = s
        .history
        .as_ref()
        .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()));
    s.connections
        .iter()
        .map(|c| {
            c.tunnels
                .iter()
                .map(|t| {
                    guard.as_deref().and_then(|h| {
                        points_of(
                            h,
                            |h| h.tunnel_named(c.name.as_str(), t.name.as_str()),
                            view.range,
                            s.generated_at,
                        )
                    })
                })
                .collect()
        })
        .collect()
}

fn connection(
    out: &mut String,
    now: Timestamp,
    c: &ConnectionSnapshot,
    charts: &[Option<Vec<MinuteSummary>>],
    view: &View,
) {
    let id = c.id.as_ref().map_or(String::new(), |id| {
        format!(" <small>{}</small>", escape(id.as_str()))
    });
    let l = connection_look(&c.state);
    let detail = match &c.state {
        crate::health::ConnectionState::Unknown { reason } => escape(reason),
        crate::health::ConnectionState::Healthy { since } => format!("since {}", when(now, *since)),
        crate::health::ConnectionState::Degraded { since, reason }
        | crate::health::ConnectionState::Down { since, reason } => {
            format!("since {}: {}", when(now, *since), escape(reason))
        }
    };
    let _ = write!(
        out,
        r#"<article class="connection"><h3>{} {}{id}</h3><p>{detail}</p><div class="tunnels">"#,
        badge(&l),
        escape(c.name.as_str())
    );
    for (ti, t) in c.tunnels.iter().enumerate() {
        tunnel(out, now, t, charts.get(ti).and_then(Option::as_ref), view);
    }
    out.push_str("</div></article>");
}

fn tunnel(
    out: &mut String,
    now: Timestamp,
    t: &TunnelSnapshot,
    points: Option<&Vec<MinuteSummary>>,
    view: &View,
) {
    let l = verdict_look(&t.state);
    let _ = write!(
        out,
        r#"<section class="tunnel {}"><h4>{} {}</h4><dl><dt>verdict</dt><dd>{}</dd><dt>data plane</dt><dd>{}</dd><dt>control plane</dt><dd>{}</dd>"#,
        l.class,
        badge(&l),
        escape(t.name.as_str()),
        verdict_line(now, &t.state),
        verdict_line(now, &t.data_plane),
        verdict_line(now, &t.control_plane),
    );
    if let Some(ip) = t.outside_ip {
        let _ = write!(out, "<dt>outside IP</dt><dd>{ip}</dd>");
    }
    if let Some(telemetry) = t.aws.as_ref().and_then(|a| a.telemetry.as_ref()) {
        let status = match &telemetry.status {
            ApiTunnelStatus::Up => "UP".to_string(),
            ApiTunnelStatus::Down => "DOWN".to_string(),
            ApiTunnelStatus::Unknown(text) => format!("{} (unknown value)", escape(text)),
            ApiTunnelStatus::Missing => "no status".to_string(),
        };
        let _ = write!(out, "<dt>AWS says</dt><dd>{status}");
        if let Some(message) = telemetry
            .status_message
            .as_deref()
            .filter(|m| !m.is_empty())
        {
            let _ = write!(out, ": “{}”", escape(message));
        }
        if let Some(changed) = telemetry.last_status_change {
            let _ = write!(out, "; changed {}", when(now, changed));
        }
        out.push_str("</dd>");
        if let Some(routes) = telemetry.accepted_route_count {
            let _ = write!(out, "<dt>accepted routes</dt><dd>{routes}</dd>");
        }
    }
    if let Some(m) = &t.maintenance {
        let mut text = match m.reading.pending_text() {
            Some(pending) => format!("pending: {}", escape(pending)),
            None => "none pending".to_string(),
        };
        if let Some(after) = m.reading.auto_apply_after {
            let _ = write!(text, "; applied automatically after {after}");
        }
        if let Some(last) = m.reading.last_applied {
            let _ = write!(text, "; last applied {}", when(now, last));
        }
        let _ = write!(out, "<dt>AWS maintenance</dt><dd>{text}</dd>");
    }
    if let Some(mtu) = &t.path_mtu {
        use crate::messages::MtuLimitFound;
        let r = &mtu.reading;
        let how = match (r.found, r.router) {
            (MtuLimitFound::Silent, _) if r.bytes < r.expected => format!(
                "<strong>black hole</strong>: larger packets vanish without ICMP; expected {}",
                r.expected
            ),
            (MtuLimitFound::FragNeeded, Some(router)) => {
                format!(
                    "fragmentation needed from {router}; expected {}",
                    r.expected
                )
            }
            (found, _) => format!("{}; expected {}", found.label(), r.expected),
        };
        let _ = write!(
            out,
            "<dt>path MTU</dt><dd>{} bytes ({how}), {}</dd>",
            r.bytes,
            when(now, mtu.measured_at)
        );
    }
    out.push_str("</dl>");
    if !t.targets.is_empty() {
        target_table(out, now, t.targets.iter(), view);
    }
    match points {
        Some(points) => out.push_str(&chart::render(points, view.range, t.name.as_str())),
        None => out.push_str(
            r#"<p class="legend">No chart: the history is being reshaped after a reload.</p>"#,
        ),
    }
    out.push_str("</section>");
}

/// A table of targets: name (a link to its page), address, state, loss and RTT.
fn target_table<'a>(
    out: &mut String,
    now: Timestamp,
    targets: impl Iterator<Item = &'a TargetSnapshot>,
    view: &View,
) {
    out.push_str(
        r#"<div class="scroll"><table class="targets"><thead><tr><th>target</th><th>address</th><th>state</th><th>loss</th><th>median</th><th>p99</th><th>last</th></tr></thead><tbody>"#,
    );
    for target in targets {
        let l = verdict_look(&target.state);
        let since = match &target.state {
            crate::health::Verdict::Unknown { reason } => escape(reason),
            crate::health::Verdict::Up { since } => format!("for {}", super::age(now, *since)),
            crate::health::Verdict::Down { since, reason } => {
                format!("for {}: {}", super::age(now, *since), escape(reason))
            }
        };
        let _ = write!(
            out,
            r#"<tr><td><a href="/target/{address}?range={range}">{name}</a></td><td>{address}</td><td>{} {since}</td><td class="n">{:.0} % of {}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            badge(&l),
            target.stats.recent_loss_percent,
            target.stats.recent_probes,
            ms(target.stats.rtt_p50_seconds),
            ms(target.stats.rtt_p99_seconds),
            ms(target.stats.rtt_last_seconds),
            address = target.address,
            range = range_query(view.range),
            name = escape(target.name.as_str()),
        );
    }
    out.push_str("</tbody></table></div>");
}

fn shared_targets(out: &mut String, now: Timestamp, targets: &[TargetSnapshot], view: &View) {
    if targets.is_empty() {
        return;
    }
    out.push_str(r#"<section id="shared"><h2>Shared targets</h2>"#);
    if targets.len() <= HEALTH_TARGET_LINES {
        target_table(out, now, targets.iter(), view);
    } else {
        let not_up: Vec<&TargetSnapshot> = targets.iter().filter(|t| !t.state.is_up()).collect();
        let _ = write!(
            out,
            "<p>{} of {} up.{}</p>",
            targets.len() - not_up.len(),
            targets.len(),
            if not_up.is_empty() {
                ""
            } else {
                " Those not up:"
            }
        );
        if !not_up.is_empty() {
            target_table(
                out,
                now,
                not_up.iter().take(HEALTH_TARGET_LINES).copied(),
                view,
            );
        }
        if not_up.len() > HEALTH_TARGET_LINES {
            let _ = write!(
                out,
                r#"<p>… and {} more not up (see <a href="/status">/status</a>).</p>"#,
                not_up.len() - HEALTH_TARGET_LINES
            );
        }
    }
    out.push_str("</section>");
}

/// Firing first, then pending; inhibited and silenced ones last.
fn alert_rank(a: &AlertView) -> u8 {
    match a.state {
        "firing" => 0,
        "pending" => 1,
        _ => 2,
    }
}

fn alerts(out: &mut String, now: Timestamp, alerts: &[AlertView], runbook_url: &str) {
    out.push_str(r#"<section id="alerts"><h2>Alerts</h2>"#);
    if alerts.is_empty() {
        out.push_str("<p>None firing or pending.</p></section>");
        return;
    }
    let mut sorted: Vec<&AlertView> = alerts.iter().collect();
    sorted.sort_by_key(|a| (alert_rank(a), std::cmp::Reverse(a.severity), a.since));
    out.push_str(
        r#"<div class="scroll"><table><thead><tr><th>state</th><th>severity</th><th>alert</th><th>where</th><th>since</th><th>what</th><th>runbook</th></tr></thead><tbody>"#,
    );
    for a in sorted {
        let place = match (&a.vpn, &a.tunnel) {
            (_, Some(t)) => escape(t),
            (Some(v), None) => escape(v),
            (None, None) => "VPN".into(),
        };
        let section = format!("{runbook_url}#{}", a.alert.name().to_ascii_lowercase());
        // Only web addresses become links: the default is a path in the source tree.
        let runbook = if section.starts_with("https://") || section.starts_with("http://") {
            format!(r#"<a href="{0}">{0}</a>"#, escape(&section))
        } else {
            escape(&section)
        };
        let muted = a
            .muted_by
            .as_deref()
            .map_or(String::new(), |m| format!(" ({})", escape(m)));
        let _ = write!(
            out,
            r#"<tr class="{state}"><td><b>{state}</b>{muted}</td><td>{severity}</td><td>{alert}</td><td>{place}</td><td>{since}</td><td>{summary}<br><small>{reason}</small></td><td>{runbook}</td></tr>"#,
            state = escape(a.state),
            severity = a.severity.label().to_ascii_uppercase(),
            alert = a.alert.name(),
            since = when(now, a.since),
            summary = escape(&a.summary),
            reason = escape(&a.reason),
        );
    }
    out.push_str("</tbody></table></div></section>");
}

fn advisories(out: &mut String, s: &Snapshot) {
    if let Some(cp) = &s.control_plane {
        out.push_str(r#"<section id="control-plane"><h2>EC2 control plane</h2><p>"#);
        match (cp.last_success, cp.stale) {
            (Some(at), false) => {
                let _ = write!(out, "Last answer {}.", when(s.generated_at, at));
            }
            (Some(at), true) => {
                let _ = write!(
                    out,
                    "<b>STALE</b>: last answer {}; AWS's view of every tunnel is unknown.",
                    when(s.generated_at, at)
                );
            }
            (None, _) => out.push_str("No answer yet."),
        }
        if let Some(error) = &cp.last_error {
            let _ = write!(out, " Last error: {}.", escape(error));
        }
        out.push_str("</p>");
        for problem in &cp.problems {
            let _ = write!(out, "<p>Problem: {}</p>", escape(problem));
        }
        out.push_str("</section>");
    }
    if s.advisories.is_empty() && s.warnings.is_empty() {
        return;
    }
    out.push_str(r#"<section id="advisories"><h2>Advisories</h2><ul>"#);
    for a in &s.advisories {
        let _ = write!(
            out,
            "<li><b>{}</b> {} / {}: {}</li>",
            escape(a.code),
            escape(&a.vpn),
            escape(&a.tunnel),
            escape(&a.message)
        );
    }
    for w in &s.warnings {
        let _ = write!(out, "<li>{}</li>", escape(w));
    }
    out.push_str("</ul></section>");
}
