//! A target's own page at `/target/ADDR`: where it is probed (pinned to a tunnel or
//! shared; one address may be both), its verdict, its counters and its smoke chart.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::{
    chart, document, escape, history_note, ms, points_of, range_links, stale_banner, verdict_line,
    verdict_look, View,
};
use crate::history::MinuteSummary;
use crate::snapshot::{Snapshot, TargetSnapshot};

/// A target as found in the snapshot, with where it sits.
struct Found<'a> {
    target: &'a TargetSnapshot,
    /// Connection and tunnel names when pinned.
    tunnel: Option<(&'a str, &'a str)>,
}

/// Renders the page of every target at `address`; `None` when no target has it.
pub fn render_target(s: &Snapshot, view: &View, address: Ipv4Addr) -> Option<String> {
    let mut found: Vec<Found> = Vec::new();
    for c in &s.connections {
        for t in &c.tunnels {
            for target in t.targets.iter().filter(|x| x.address == address) {
                found.push(Found {
                    target,
                    tunnel: Some((c.name.as_str(), t.name.as_str())),
                });
            }
        }
    }
    for target in s.shared_targets.iter().filter(|x| x.address == address) {
        found.push(Found {
            target,
            tunnel: None,
        });
    }
    if found.is_empty() {
        return None;
    }
    let charts: Vec<Option<Vec<MinuteSummary>>> = found
        .iter()
        .map(|f| points_of(s, view, |h| h.target_live(address, f.tunnel)))
        .collect();
    let now = s.generated_at;
    let first = found[0].target;
    let mut main = String::with_capacity(16 * 1024);
    // A target named after its address (the default) is not named twice.
    let heading = if first.name.as_str() == address.to_string() {
        address.to_string()
    } else {
        format!("{} <small>{address}</small>", escape(first.name.as_str()))
    };
    let _ = write!(
        main,
        r#"<main id="page">{}<p><a href="/">← overview</a> · VPN {}</p><h1>{heading}</h1>{}"#,
        stale_banner(view),
        escape(s.vpn.token()),
        range_links(&format!("/target/{address}"), view.range),
    );
    for (f, points) in found.iter().zip(&charts) {
        let t = f.target;
        let l = verdict_look(&t.state);
        let place = match f.tunnel {
            Some((connection, tunnel)) => format!(
                "pinned to tunnel {} of {}",
                escape(tunnel),
                escape(connection)
            ),
            None => "shared (rides whichever tunnel the VGW uses)".to_string(),
        };
        let st = &t.stats;
        let _ = write!(
            main,
            r#"<section class="tunnel {class}"><h2>{name}: {place}</h2><dl><dt>verdict</dt><dd>{verdict}</dd><dt>lost in a row</dt><dd>{lost_row}</dd><dt>recent loss</dt><dd>{loss:.0} % of the last {probes} probes</dd><dt>RTT</dt><dd>median {p50}, p99 {p99}, last {last}</dd><dt>since start</dt><dd>{sent} sent, {received} received, {timeouts} timed out, {errors} ICMP errors, {failures} send failures</dd></dl>"#,
            class = l.class,
            name = escape(t.name.as_str()),
            verdict = verdict_line(now, &t.state, &mut super::first_screen::Reasons::default()),
            lost_row = t.consecutive_lost,
            loss = st.recent_loss_percent,
            probes = st.recent_probes,
            p50 = ms(st.rtt_p50_seconds),
            p99 = ms(st.rtt_p99_seconds),
            last = ms(st.rtt_last_seconds),
            sent = st.sent,
            received = st.replies,
            timeouts = st.timeouts,
            errors = st.icmp_errors,
            failures = st.send_failures,
        );
        match points {
            Some(points) => main.push_str(&chart::render(points, view.range, t.name.as_str())),
            None => main.push_str(
                r#"<p class="legend">No chart: the history is being reshaped after a reload.</p>"#,
            ),
        }
        if let Some((connection, tunnel)) = f.tunnel {
            super::outages::recent_outages(
                &mut main,
                now,
                &view.outages,
                &format!("Recent outages of tunnel {tunnel}"),
                |r| {
                    r.involves_tunnel(tunnel)
                        && r.connection.as_deref().is_none_or(|c| c == connection)
                },
            );
        }
        main.push_str("</section>");
    }
    let _ = write!(
        main,
        r#"<footer><p>{}</p><p>Snapshot of {}.</p></footer></main>"#,
        escape(&history_note(s)),
        s.generated_at
    );
    Some(document(
        &format!("{} {} · tunnelkeeper", first.name, s.vpn.token()),
        &main,
    ))
}
