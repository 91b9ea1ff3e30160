//! The smoke charts' history through the real monitor on paused time: an outage of one
//! tunnel, with a reload in the middle, leaves its marks and its loss on that tunnel's
//! chart and nothing on the other's.

#[path = "support/timeline.rs"]
mod timeline;

use std::time::Duration;

use timeline::*;
use tunnelkeeper::history::{chart, Mark, MinuteSummary, Range};
use tunnelkeeper::types::TunnelId;
use Event::*;

fn chart(h: &Harness, tunnel: usize) -> Vec<MinuteSummary> {
    let id = TunnelId {
        connection: 0,
        tunnel,
    };
    let history = h.history.lock().unwrap();
    // No ring files here: the last hour is all in memory (nothing takes it to disk).
    let live = history.tunnel(id).unwrap().live();
    chart::points(
        Range::Hour.ring(),
        h.clock.now(),
        "",
        &live,
        &chart::NoRings,
    )
}

fn marked(points: &[MinuteSummary], mark: Mark) -> Vec<usize> {
    (0..points.len()).filter(|&i| points[i].has(mark)).collect()
}

#[tokio::test(start_paused = true)]
async fn an_outage_marks_and_colours_its_tunnels_chart_across_a_reload() {
    let mut h = Harness::new("0s");
    h.run_for(Duration::from_secs(60)).await;
    h.play(&[(60, Pings(0, false)), (150, Reload), (240, Pings(0, true))])
        .await;
    h.run_for(Duration::from_secs(60)).await;

    let a = chart(&h, 0);
    let downs = marked(&a, Mark::Down);
    let ups = marked(&a, Mark::Up);
    assert_eq!(downs.len(), 1, "{a:?}");
    // Up at the start (from unknown) and again after the outage: the reload kept the first.
    assert_eq!(ups.len(), 2, "{a:?}");
    let (start, down, up) = (ups[0], downs[0], ups[1]);
    assert!(start < down && down < up, "{start} {down} {up}");
    // Three minutes of outage: the minutes wholly inside it lost everything, except that
    // the first replies (fewer than up_after, 2 here) may fall in the minute before the up
    // mark's: minutes start on the wall clock's, whatever second the test started at.
    let inside = &a[down + 1..up];
    assert!(!inside.is_empty());
    for (i, p) in inside.iter().enumerate() {
        if i + 1 == inside.len() && p.lost + 1 == p.sent {
            assert!(p.sent >= 59 && p.p50_us == 12_000, "{p:?}");
            continue;
        }
        assert!(p.sent >= 59 && p.lost == p.sent && !p.has_rtt(), "{p:?}");
    }
    // Before it, replies at the harness's 12 ms and no loss, except that the first lost
    // probes (fewer than down_after, 3 here) may fall in the minute before the mark's.
    for (i, p) in a.iter().enumerate().take(down).skip(start) {
        let allowed = if i + 1 == down { 2 } else { 0 };
        assert!(p.lost <= allowed && p.p50_us == 12_000, "{p:?}");
    }

    let b = chart(&h, 1);
    assert!(marked(&b, Mark::Down).is_empty(), "{b:?}");
    assert!(b.iter().all(|p| p.lost == 0), "{b:?}");

    // The page draws it from the snapshot the monitor published.
    let snapshot = h.snapshot_rx.borrow().clone();
    let view = tunnelkeeper::http::page::View {
        range: Range::Hour,
        stale_for: None,
        reload_refused: None,
        outages: Default::default(),
        rings: Default::default(),
    };
    let page = tunnelkeeper::http::page::render_index(&snapshot, &view);
    assert_eq!(page.matches(r#"<line class="mark down""#).count(), 1);
    assert!(page.contains(r#"<rect class="loss l3""#), "{page}");
}
