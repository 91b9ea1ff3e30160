//! Smoke charts as server-rendered SVG, SmokePing's way: per point the p10–p90 spread as
//! grey smoke, the median as a short line coloured by loss, loss again as a bar under the
//! plot (its height, not only its colour, says how much), and state changes as marked
//! vertical lines. The geometry is pure: points in, coordinates out.

use std::fmt::Write as _;

use super::escape;
use crate::history::{Mark, MinuteSummary, Range};

/// The SVG's view box width.
pub const WIDTH: f64 = 600.0;
/// The SVG's view box height.
pub const HEIGHT: f64 = 190.0;
/// Room for the RTT labels on the left.
pub const LEFT: f64 = 52.0;
/// Room on the right.
pub const RIGHT: f64 = 8.0;
/// Room for the marks' glyphs above the plot.
pub const TOP: f64 = 14.0;
/// Bottom edge of the RTT plot.
pub const PLOT_BOTTOM: f64 = 140.0;
/// Height of the loss band under the plot (100 % loss fills it).
pub const LOSS_BAND: f64 = 20.0;
/// Top of the loss band.
pub const LOSS_TOP: f64 = PLOT_BOTTOM + 4.0;

/// How the median line is coloured by loss (SmokePing's buckets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossClass {
    /// No loss.
    None,
    /// Up to 5 %.
    Some,
    /// Up to 20 %.
    Much,
    /// Over 20 %.
    Most,
}

impl LossClass {
    /// Buckets a lost share (0.0 to 1.0).
    pub fn of(loss: f64) -> LossClass {
        if loss <= 0.0 {
            LossClass::None
        } else if loss <= 0.05 {
            LossClass::Some
        } else if loss <= 0.20 {
            LossClass::Much
        } else {
            LossClass::Most
        }
    }

    /// The CSS class the stylesheet colours.
    pub fn css(self) -> &'static str {
        match self {
            LossClass::None => "l0",
            LossClass::Some => "l1",
            LossClass::Much => "l2",
            LossClass::Most => "l3",
        }
    }
}

/// Rounds an RTT up to a round axis top (1, 2 or 5 times a power of ten µs), at least
/// 0.1 ms.
pub fn axis_top_us(max_us: u32) -> u32 {
    let mut decade: u64 = 1;
    loop {
        for step in [1u64, 2, 5] {
            let top = step * decade;
            if top >= u64::from(max_us.max(100)) {
                return u32::try_from(top).unwrap_or(u32::MAX);
            }
        }
        decade *= 10;
    }
}

/// Maps points and RTTs onto the view box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// How many points the x axis holds.
    pub points: usize,
    /// The RTT at the top of the plot, µs.
    pub top_us: u32,
}

impl Scale {
    /// Fits the y axis to the highest p90 among `points`.
    pub fn fit(points: &[MinuteSummary]) -> Scale {
        let highest = points
            .iter()
            .filter(|p| p.has_rtt())
            .map(|p| p.p90_us)
            .max()
            .unwrap_or(0);
        Scale {
            points: points.len().max(1),
            top_us: axis_top_us(highest),
        }
    }

    /// Returns the width of one point's column.
    pub fn column(&self) -> f64 {
        (WIDTH - LEFT - RIGHT) / self.points as f64
    }

    /// Returns the left edge of point `index`'s column.
    pub fn x(&self, index: usize) -> f64 {
        LEFT + index as f64 * self.column()
    }

    /// Returns the y of an RTT (clamped to the plot).
    pub fn y(&self, us: u32) -> f64 {
        let share = f64::from(us.min(self.top_us)) / f64::from(self.top_us);
        PLOT_BOTTOM - share * (PLOT_BOTTOM - TOP)
    }
}

/// Renders the chart of `points` (oldest first); `title` names the series (escaped here).
pub fn render(points: &[MinuteSummary], range: Range, title: &str) -> String {
    let scale = Scale::fit(points);
    let column = scale.column();
    let mut svg = String::with_capacity(8 * 1024);
    let label = format!(
        "{} round-trip time, last {}",
        escape(title),
        match range {
            Range::Hour => "hour, per minute",
            Range::SixHours => "6 hours, per 5 minutes",
            Range::Week => "7 days, per 15 minutes",
        }
    );
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg"><title>{label}</title>"#
    );
    let _ = write!(
        svg,
        r#"<rect class="plot" x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}"/>"#,
        WIDTH - LEFT - RIGHT,
        PLOT_BOTTOM - TOP
    );
    for share in [0u32, 1, 2] {
        let us = scale.top_us / 2 * share;
        let y = scale.y(us);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            milliseconds(us)
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">loss</text>"#,
        LEFT - 4.0,
        LOSS_TOP + LOSS_BAND / 2.0 + 4.0
    );
    for (i, p) in points.iter().enumerate() {
        let x = scale.x(i);
        if p.has_rtt() {
            let (top, bottom) = (scale.y(p.p90_us), scale.y(p.p10_us));
            let _ = write!(
                svg,
                r#"<rect class="smoke" x="{x:.1}" y="{top:.1}" width="{column:.1}" height="{:.1}"/>"#,
                (bottom - top).max(0.5)
            );
            let y = scale.y(p.p50_us);
            let _ = write!(
                svg,
                r#"<line class="median {}" x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/>"#,
                LossClass::of(p.loss()).css(),
                x + column
            );
        }
        if p.lost > 0 {
            let height = LOSS_BAND * p.loss();
            let _ = write!(
                svg,
                r#"<rect class="loss {}" x="{x:.1}" y="{:.1}" width="{column:.1}" height="{height:.1}"/>"#,
                LossClass::of(p.loss()).css(),
                LOSS_TOP + LOSS_BAND - height
            );
        }
        for mark in Mark::ALL.into_iter().filter(|m| p.has(*m)) {
            let (class, glyph) = match mark {
                Mark::Down => ("down", "▼"),
                Mark::Up => ("up", "▲"),
                Mark::Unknown => ("unknown", "?"),
                Mark::NotRunning => ("stopped", "⏸"),
            };
            let mid = x + column / 2.0;
            let _ = write!(
                svg,
                r#"<line class="mark {class}" x1="{mid:.1}" y1="{TOP}" x2="{mid:.1}" y2="{PLOT_BOTTOM}"/><text class="mark {class}" x="{mid:.1}" y="{:.1}" text-anchor="middle">{glyph}</text>"#,
                TOP - 3.0
            );
        }
    }
    // Time labels every quarter of the range, in UTC (the minutes are on the system
    // clock); the week's with their date.
    let quarter = points.len() / 4;
    for i in (0..points.len()).step_by(quarter.max(1)) {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::from(points[i].minute) * 60);
        let text = humantime::format_rfc3339_seconds(at).to_string();
        let label = match range {
            Range::Week => text[5..16].replacen('T', " ", 1),
            Range::Hour | Range::SixHours => text[11..16].to_string(),
        };
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{:.1}">{label}</text>"#,
            scale.x(i),
            HEIGHT - 2.0,
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">now (UTC)</text></svg>"#,
        WIDTH - RIGHT,
        HEIGHT - 2.0
    );
    svg
}

/// Formats µs as milliseconds for an axis label.
fn milliseconds(us: u32) -> String {
    if us >= 10_000 {
        format!("{} ms", us / 1_000)
    } else {
        // Axis values are round: the shortest form is exact (0.05, 2.5, 1).
        format!("{} ms", f64::from(us) / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minute: u32, p10: u32, p50: u32, p90: u32, sent: u16, lost: u16) -> MinuteSummary {
        MinuteSummary {
            minute,
            p10_us: p10,
            p50_us: p50,
            p90_us: p90,
            sent,
            lost,
            marks: 0,
        }
    }

    #[test]
    fn the_axis_top_is_a_round_number_above_the_highest_p90() {
        for (max, top) in [
            (0, 100),
            (101, 200),
            (400, 500),
            (1_000, 1_000),
            (1_001, 2_000),
            (4_900, 5_000),
            (5_001, 10_000),
            (180_000, 200_000),
            (u32::MAX, u32::MAX),
        ] {
            assert_eq!(axis_top_us(max), top, "max {max}");
        }
    }

    #[test]
    fn rtts_map_from_the_plot_bottom_to_its_top_and_points_fill_the_width() {
        let points = vec![point(0, 5_000, 10_000, 20_000, 60, 0); 60];
        let scale = Scale::fit(&points);
        assert_eq!(scale.top_us, 20_000);
        assert_eq!(scale.y(0), PLOT_BOTTOM);
        assert_eq!(scale.y(20_000), TOP);
        assert_eq!(scale.y(10_000), (PLOT_BOTTOM + TOP) / 2.0);
        assert_eq!(scale.y(90_000), TOP, "clamped");
        assert_eq!(scale.x(0), LEFT);
        assert!((scale.x(60) - (WIDTH - RIGHT)).abs() < 1e-9);
    }

    #[test]
    fn loss_buckets_follow_smokeping() {
        for (loss, class) in [
            (0.0, LossClass::None),
            (0.01, LossClass::Some),
            (0.05, LossClass::Some),
            (0.10, LossClass::Much),
            (0.5, LossClass::Most),
            (1.0, LossClass::Most),
        ] {
            assert_eq!(LossClass::of(loss), class, "{loss}");
        }
    }

    #[test]
    fn known_points_draw_smoke_median_loss_and_marks_where_they_belong() {
        // Four points, axis top 20 ms: the plot is 126 units high, each column 135 wide.
        let mut points = vec![
            point(600, 10_000, 15_000, 20_000, 60, 0),
            point(601, 0, 0, 0, 0, 0), // a gap: nothing drawn
            point(602, 2_000, 4_000, 8_000, 60, 15),
            point(603, 0, 0, 0, 60, 60), // all lost: no RTT, full loss bar
        ];
        points[3].marks = Mark::Down as u8;
        let svg = render(&points, Range::Hour, "dc-a");
        let scale = Scale::fit(&points);
        assert_eq!(scale.column(), 135.0);
        // Smoke of point 0: from p90 (the top) down to p10 (half way).
        assert!(
            svg.contains(r#"<rect class="smoke" x="52.0" y="14.0" width="135.0" height="63.0"/>"#),
            "{svg}"
        );
        // Its median at 15 ms: three quarters up, no loss.
        assert!(
            svg.contains(r#"<line class="median l0" x1="52.0" y1="45.5" x2="187.0" y2="45.5"/>"#)
        );
        // Point 2: 25 % loss colours the median and fills a quarter of the band.
        assert!(svg.contains(r#"<line class="median l3" x1="322.0" y1="114.8""#));
        assert!(svg
            .contains(r#"<rect class="loss l3" x="322.0" y="159.0" width="135.0" height="5.0"/>"#));
        // Point 3: the whole band, and a down mark in the middle of its column.
        assert!(svg.contains(
            r#"<rect class="loss l3" x="457.0" y="144.0" width="135.0" height="20.0"/>"#
        ));
        assert!(svg.contains(r#"<line class="mark down" x1="524.5""#));
        assert!(svg.contains(">▼</text>"));
        assert_eq!(
            svg.matches(r#"class="smoke""#).count(),
            2,
            "the gap and the lost point have no smoke"
        );
        assert_eq!(svg.matches(r#"class="median"#).count(), 2);
        // 600 minutes after the epoch is 10:00 UTC.
        assert!(svg.contains(">10:00</text>"));
        assert!(svg.contains(">20 ms</text>") && svg.contains(">10 ms</text>"));
        assert_eq!(milliseconds(50), "0.05 ms");
        assert_eq!(milliseconds(2_500), "2.5 ms");
        assert_eq!(milliseconds(0), "0 ms");
    }

    #[test]
    fn the_weeks_labels_carry_their_date() {
        // 672 quarter hours from 2026-12-01 00:00 UTC (minute 29,934,720).
        let first = 29_934_720;
        let points: Vec<MinuteSummary> = (0..672)
            .map(|i| point(first + 15 * i, 1_000, 2_000, 3_000, 60, 0))
            .collect();
        let svg = render(&points, Range::Week, "dc-a");
        assert!(svg.contains(">12-01 00:00</text>"), "{svg}");
        assert!(svg.contains(">12-02 18:00</text>"), "{svg}");
        assert!(svg.contains("last 7 days, per 15 minutes"));
    }

    #[test]
    fn the_title_is_escaped() {
        let svg = render(&[], Range::SixHours, "<script>x</script>");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;x&lt;/script&gt; round-trip time, last 6 hours"));
    }
}
