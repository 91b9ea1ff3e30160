//! The overview at `/`: the VPN verdict (worsened by what fires), what fires
//! (`first_screen`), then each connection's tunnels side by side (verdicts, both planes,
//! AWS's telemetry and maintenance, pinned targets, a smoke chart), shared targets
//! (summarised past [`HEALTH_TARGET_LINES`]), the alerts that do not page, advisories and
//! the control plane's own state. Each reason is written once, top to bottom.

use std::fmt::Write as _;

use super::first_screen::{self, Reasons};
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
    let mut reasons = Reasons::default();
    let mut main = String::with_capacity(32 * 1024);
    main.push_str(r#"<main id="page">"#);
    main.push_str(&stale_banner(view));
    main.push_str(&reload_banner(view));
    main.push_str(&paging_banner(s));
    main.push_str(&vpn_header(s, &mut reasons));
    first_screen::firing_section(&mut main, now, s, &mut reasons);
    main.push_str(&range_links("/", view.range));
    main.push_str(r#"<section id="connections"><h2>Connections</h2>"#);
    let page = Page {
        now,
        view,
        control_plane_alert: first_screen::control_plane_alert(s),
    };
    for (ci, c) in s.connections.iter().enumerate() {
        connection(&mut main, &page, c, &charts[ci], &mut reasons);
    }
    main.push_str("</section>");
    shared_targets(&mut main, now, &s.shared_targets, view, &mut reasons);
    alerts(&mut main, now, &s.alerts, &s.runbook_url, &mut reasons);
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
    let (banner, _) = first_screen::banner_look(s);
    document(&format!("{} · tunnelkeeper", banner.word), &main)
}

/// What every part of the overview reads besides its own piece of the snapshot.
struct Page<'a> {
    now: Timestamp,
    view: &'a View,
    /// The ControlPlaneUnavailable alert, while it is known.
    control_plane_alert: Option<&'a AlertView>,
}

fn vpn_header(s: &Snapshot, reasons: &mut Reasons) -> String {
    let (l, by_alert) = first_screen::banner_look(s);
    let now = s.generated_at;
    let verdict = vpn_look(&s.vpn);
    let mut detail = match &s.vpn {
        VpnState::Starting => "<p>Waiting for the first probe results.</p>".to_string(),
        VpnState::Ok { since } => format!("<p>since {}</p>", when(now, *since)),
        VpnState::Degraded { since, reason } | VpnState::Critical { since, reason } => format!(
            r#"<p>since {}</p><div class="reason">{}</div>"#,
            when(now, *since),
            reasons.html(reason)
        ),
    };
    if let Some(a) = by_alert {
        // The pings alone say less than what pages: say both, the worse in the title.
        detail = format!(
            "<p>{} {} fires; the probes alone say VPN {}.</p>{detail}",
            a.severity.label().to_ascii_uppercase(),
            a.alert.name(),
            verdict.word
        );
    }
    format!(
        r#"<header class="vpn {}"><h1><span aria-hidden="true">{}</span> VPN {}</h1>{detail}</header>"#,
        l.class, l.symbol, l.word
    )
}

/// The charts of every tunnel: each one's minutes in memory copied under a short lock,
/// the rest read from the ring files.
fn tunnel_charts(s: &Snapshot, view: &View) -> Vec<Vec<Option<Vec<MinuteSummary>>>> {
    s.connections
        .iter()
        .map(|c| {
            c.tunnels
                .iter()
                .map(|t| points_of(s, view, |h| h.tunnel_live(c.name.as_str(), t.name.as_str())))
                .collect()
        })
        .collect()
}

fn connection(
    out: &mut String,
    page: &Page<'_>,
    c: &ConnectionSnapshot,
    charts: &[Option<Vec<MinuteSummary>>],
    reasons: &mut Reasons,
) {
    let now = page.now;
    let id = c.id.as_ref().map_or(String::new(), |id| {
        format!(" <small>{}</small>", escape(id.as_str()))
    });
    let l = connection_look(&c.state);
    let detail = match &c.state {
        crate::health::ConnectionState::Unknown { reason } => reasons.html(reason),
        crate::health::ConnectionState::Healthy { since } => format!("since {}", when(now, *since)),
        crate::health::ConnectionState::Degraded { since, reason }
        | crate::health::ConnectionState::Down { since, reason } => {
            format!("since {}: {}", when(now, *since), reasons.html(reason))
        }
    };
    let _ = write!(
        out,
        r#"<article class="connection"><h3>{} {}{id}</h3><div>{detail}</div><div class="tunnels">"#,
        badge(&l),
        escape(c.name.as_str())
    );
    for (ti, t) in c.tunnels.iter().enumerate() {
        tunnel(
            out,
            page,
            t,
            charts.get(ti).and_then(Option::as_ref),
            reasons,
        );
    }
    out.push_str("</div></article>");
}

fn tunnel(
    out: &mut String,
    page: &Page<'_>,
    t: &TunnelSnapshot,
    points: Option<&Vec<MinuteSummary>>,
    reasons: &mut Reasons,
) {
    let (now, view) = (page.now, page.view);
    let l = verdict_look(&t.state);
    // While EC2 is unavailable, the control plane says what the alert says.
    let control_plane = match (&t.control_plane, page.control_plane_alert) {
        (crate::health::Verdict::Unknown { .. }, Some(a)) => format!(
            "{}: {} ({} since {})",
            badge(&verdict_look(&t.control_plane)),
            escape(&a.summary),
            a.alert.name(),
            when(now, a.since)
        ),
        (v, _) => verdict_line(now, v, reasons),
    };
    let _ = write!(
        out,
        r#"<section class="tunnel {}"><h4>{} {}</h4><dl><dt>verdict</dt><dd>{}</dd><dt>data plane</dt><dd>{}</dd><dt>control plane</dt><dd>{}</dd>"#,
        l.class,
        badge(&l),
        escape(t.name.as_str()),
        verdict_line(now, &t.state, reasons),
        verdict_line(now, &t.data_plane, reasons),
        control_plane,
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
    if let Some(plan) = &t.maintenance_plan {
        if let Some(text) = maintenance_plan_text(plan, now) {
            let _ = write!(out, "<dt>maintenance plan</dt><dd>{}</dd>", escape(&text));
        }
    }
    if let Some(cause) = &t.cause {
        let _ = write!(
            out,
            "<dt>cause</dt><dd><strong>{}</strong> <small>(runbook: {})</small></dd>",
            escape(&cause.line()),
            escape(cause.kind.runbook_heading())
        );
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
        target_table(out, now, t.targets.iter(), view, reasons);
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
    reasons: &mut Reasons,
) {
    out.push_str(
        r#"<div class="scroll"><table class="targets"><thead><tr><th>target</th><th>address</th><th>state</th><th>loss</th><th>median</th><th>p99</th><th>last</th></tr></thead><tbody>"#,
    );
    for target in targets {
        let l = verdict_look(&target.state);
        let since = match &target.state {
            crate::health::Verdict::Unknown { reason } => reasons.html(reason),
            crate::health::Verdict::Up { since } => format!("for {}", super::age(now, *since)),
            crate::health::Verdict::Down { since, reason } => {
                format!("for {}: {}", super::age(now, *since), reasons.html(reason))
            }
        };
        // A down target's last RTT is old news: how long it has been silent is what counts.
        let last = match (&target.state, target.last_reply) {
            (crate::health::Verdict::Down { .. }, Some(at)) => {
                format!("no reply for {}", super::age(now, at))
            }
            (crate::health::Verdict::Down { .. }, None) => "never replied".into(),
            _ => ms(target.stats.rtt_last_seconds),
        };
        let _ = write!(
            out,
            r#"<tr><td><a href="/target/{address}?range={range}">{name}</a></td><td>{address}{port}</td><td>{} {since}{service}</td><td class="n">{:.0} % of {}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            badge(&l),
            target.stats.recent_loss_percent,
            target.stats.recent_probes,
            ms(target.stats.rtt_p50_seconds),
            ms(target.stats.rtt_p99_seconds),
            last,
            address = target.address,
            port = target
                .tcp_port
                .map_or(String::new(), |p| format!(":{p} (TCP)")),
            service = match target.service.as_ref().map(|s| s.state) {
                Some("refused") => "; the service refuses connections",
                Some(_) | None => "",
            },
            range = range_query(view.range),
            name = escape(target.name.as_str()),
        );
    }
    out.push_str("</tbody></table></div>");
}

fn shared_targets(
    out: &mut String,
    now: Timestamp,
    targets: &[TargetSnapshot],
    view: &View,
    reasons: &mut Reasons,
) {
    if targets.is_empty() {
        return;
    }
    out.push_str(r#"<section id="shared"><h2>Shared targets</h2>"#);
    if targets.len() <= HEALTH_TARGET_LINES {
        target_table(out, now, targets.iter(), view, reasons);
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
                reasons,
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

/// Pending first; inhibited and silenced ones after.
fn alert_rank(a: &AlertView) -> u8 {
    match a.state {
        "pending" => 0,
        _ => 1,
    }
}

/// The alerts that do not page now (pending, inhibited, silenced); the firing ones are on
/// the first screen.
fn alerts(
    out: &mut String,
    now: Timestamp,
    alerts: &[AlertView],
    runbook_url: &str,
    reasons: &mut Reasons,
) {
    out.push_str(r#"<section id="alerts"><h2>Alerts not paging</h2>"#);
    let mut quiet: Vec<&AlertView> = alerts.iter().filter(|a| a.state != "firing").collect();
    if quiet.is_empty() {
        out.push_str("<p>None pending, inhibited or silenced.</p></section>");
        return;
    }
    quiet.sort_by_key(|a| (alert_rank(a), std::cmp::Reverse(a.severity), a.since));
    out.push_str(
        r#"<div class="scroll"><table><thead><tr><th>state</th><th>severity</th><th>alert</th><th>where</th><th>since</th><th>what</th><th>runbook</th></tr></thead><tbody>"#,
    );
    for a in quiet {
        let place = match (&a.vpn, &a.tunnel) {
            (_, Some(t)) => escape(t),
            (Some(v), None) => escape(v),
            (None, None) => "VPN".into(),
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
            reason = reasons.html(&a.reason),
            runbook = first_screen::runbook_link(runbook_url, a.alert),
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
        if let Some(a) = first_screen::control_plane_alert(s) {
            let _ = write!(
                out,
                " <b>{}</b> since {}: {}.",
                a.alert.name(),
                when(s.generated_at, a.since),
                escape(&a.summary)
            );
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

/// What the daemon decides about a tunnel's pending maintenance, in one line; `None` when
/// there is nothing to say (nothing pending, nothing done).
fn maintenance_plan_text(
    plan: &tunnelkeeper_core::maintenance::TunnelPlan,
    now: crate::types::Timestamp,
) -> Option<String> {
    use tunnelkeeper_core::maintenance::tracker::Outcome;
    use tunnelkeeper_core::maintenance::{Decision, Progress};
    let mut text = match (&plan.progress, &plan.decision) {
        (Progress::Replacing { since }, _) => {
            format!("endpoint being replaced since {}", when(now, *since))
        }
        (Progress::Failed { since, why }, _) => {
            format!("replacement failed {}: {why}", when(now, *since))
        }
        (Progress::Idle, Decision::Apply) => "applying now".to_string(),
        (Progress::Idle, Decision::WouldApply) => {
            "a safe moment: would apply now (dry-run)".to_string()
        }
        (
            Progress::Idle,
            Decision::Wait {
                blocked_by,
                next_window,
            },
        ) => {
            let why: Vec<String> = blocked_by.iter().map(ToString::to_string).collect();
            let next = next_window.map_or_else(String::new, |t| format!("; next window {t}"));
            format!("waiting: {}{next}", why.join("; "))
        }
        (Progress::Idle, Decision::Idle | Decision::InProgress) => String::new(),
    };
    match &plan.outcome {
        Some(Outcome::Recovered { at }) => {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&format!("last replacement back up {}", when(now, *at)));
        }
        Some(Outcome::Failed { .. }) | None => {}
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod maintenance_text_tests {
    use super::maintenance_plan_text;
    use crate::types::Timestamp;
    use tunnelkeeper_core::maintenance::tracker::{Outcome, TunnelPlan};
    use tunnelkeeper_core::maintenance::{Blocker, Decision, Progress};

    fn plan(decision: Decision, progress: Progress, outcome: Option<Outcome>) -> TunnelPlan {
        TunnelPlan {
            pending: true,
            auto_apply_after: None,
            decision,
            progress,
            applied_at: None,
            outcome,
            startup_add: true,
        }
    }

    #[test]
    fn the_page_says_what_blocks_a_replacement_and_how_the_last_one_went() {
        let now = Timestamp::from_secs(1_800_000_000);
        let waiting = plan(
            Decision::Wait {
                blocked_by: vec![Blocker::NotHealthy {
                    tunnel: "dc-b".into(),
                    why: "is down by EC2".into(),
                }],
                next_window: Some(Timestamp::from_secs(1_800_003_600)),
            },
            Progress::Idle,
            None,
        );
        assert_eq!(
            maintenance_plan_text(&waiting, now).unwrap(),
            "waiting: dc-b is down by EC2; next window 2027-01-15T09:00:00Z"
        );
        let failed = plan(
            Decision::InProgress,
            Progress::Failed {
                since: now,
                why: "not back".into(),
            },
            None,
        );
        assert!(maintenance_plan_text(&failed, now)
            .unwrap()
            .starts_with("replacement failed"));
        let idle = plan(Decision::Idle, Progress::Idle, None);
        assert_eq!(maintenance_plan_text(&idle, now), None);
        let back = plan(
            Decision::Idle,
            Progress::Idle,
            Some(Outcome::Recovered { at: now }),
        );
        assert!(maintenance_plan_text(&back, now)
            .unwrap()
            .starts_with("last replacement back up"));
    }
}
