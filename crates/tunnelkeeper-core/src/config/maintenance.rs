//! `[maintenance]`: whether and when the daemon applies AWS's pending tunnel endpoint
//! maintenance itself (`ReplaceVpnTunnel`), and the weekly windows it may do so in, in
//! the local time of a named zone.
//!
//! Zones come from the IANA database compiled into the binary (jiff's
//! `tzdb-bundle-always`): the core never reads files, the answer is the same on every
//! host, and neither the package nor the Docker image needs `tzdata`.

use std::fmt;
use std::time::Duration;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use crate::types::Timestamp;

/// What the daemon does with pending maintenance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyMode {
    /// Only reads it (the default): AWS applies it at its own time.
    #[default]
    Never,
    /// Decides as `WhenSafe` would, logs and shows it, and calls nothing.
    DryRun,
    /// Applies it inside a window when the rest of the VPN is healthy.
    WhenSafe,
}

impl ApplyMode {
    /// Returns `never`, `dry-run` or `when-safe`.
    pub fn label(self) -> &'static str {
        match self {
            ApplyMode::Never => "never",
            ApplyMode::DryRun => "dry-run",
            ApplyMode::WhenSafe => "when-safe",
        }
    }
}

/// A named time zone, compared by name (the same name gives the same rules).
#[derive(Clone, Debug)]
pub struct Zone {
    /// The IANA name, as written.
    pub name: String,
    /// Its rules.
    pub tz: TimeZone,
}

impl Zone {
    /// Returns the zone of an IANA name, or an error that names it.
    pub fn get(name: &str) -> Result<Zone, String> {
        TimeZone::get(name)
            .map(|tz| Zone {
                name: name.to_string(),
                tz,
            })
            .map_err(|_| {
                format!("{name:?} is not a time zone of the IANA database: write e.g. \"Europe/Paris\" or \"UTC\"")
            })
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

/// One weekly window: the days it starts on and its local start and end (minutes after
/// midnight). An end at or before the start ends the next day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight.
    pub start: u16,
    /// Minutes after local midnight, up to 1440.
    pub end: u16,
    /// As written.
    pub text: String,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(text: &str) -> Option<usize> {
    let t = text.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| t.len() >= 3 && d.starts_with(&t[..3]) && full_name(d).starts_with(&t))
}

fn full_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

fn clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && h * 60 + m <= 1440 && h <= 24 && m.to_string().len() <= 2 && text.len() <= 5)
        .then_some(h * 60 + m)
}

impl Window {
    /// Parses `"Sun 02:00-05:00"`, `"Sat-Sun 23:00-02:00"`, `"daily 03:00-04:00"`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let usage = "write a day (Mon..Sun), a range of days (Sat-Sun) or \"daily\", then HH:MM-HH:MM: \"Sun 02:00-05:00\"";
        let mut words = text.split_whitespace();
        let (Some(days_text), Some(times), None) = (words.next(), words.next(), words.next())
        else {
            return Err(format!("{text:?} is not a window: {usage}"));
        };
        let mut days = [false; 7];
        if days_text.eq_ignore_ascii_case("daily") {
            days = [true; 7];
        } else {
            let (first, last) = days_text.split_once('-').unwrap_or((days_text, days_text));
            let (Some(first), Some(last)) = (day(first), day(last)) else {
                return Err(format!("{text:?}: {days_text:?} is not a day: {usage}"));
            };
            let mut d = first;
            loop {
                days[d] = true;
                if d == last {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
        let parsed = times
            .split_once('-')
            .and_then(|(s, e)| Some((clock(s)?, clock(e)?)));
        let Some((start, end)) = parsed else {
            return Err(format!("{text:?}: {times:?} is not a time range: {usage}"));
        };
        if start == end || start == 1440 {
            return Err(format!(
                "{text:?}: the window is empty: its end must differ from its start"
            ));
        }
        Ok(Window {
            days,
            start,
            end,
            text: text.to_string(),
        })
    }

    /// Returns its occurrence that starts on local `date`, as instants, if it starts that
    /// day. A local time skipped by a DST change is taken as jiff's "compatible" instant
    /// (after the gap).
    fn occurrence(&self, date: Date, tz: &TimeZone) -> Option<(Timestamp, Timestamp)> {
        let weekday = date.weekday();
        if !self.days[weekday_index(weekday)] {
            return None;
        }
        let at = |date: Date, minutes: u16| -> Option<Timestamp> {
            let (date, minutes) = if minutes >= 1440 {
                (date.tomorrow().ok()?, minutes - 1440)
            } else {
                (date, minutes)
            };
            let hm = (minutes / 60) as i8;
            let mm = (minutes % 60) as i8;
            let zoned = date.at(hm, mm, 0, 0).to_zoned_datetime(tz.clone()).ok()?;
            u64::try_from(zoned.timestamp().as_millisecond())
                .ok()
                .map(Timestamp::from_wall_millis)
        };
        let end_minutes = if self.end <= self.start {
            self.end + 1440
        } else {
            self.end
        };
        Some((at(date, self.start)?, at(date, end_minutes)?))
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

/// The weekly windows and their zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Every window.
    pub windows: Vec<Window>,
    /// The zone their times are in.
    pub zone: Zone,
}

impl Windows {
    /// Returns the occurrences that start within a day of `now` or in the week after, in
    /// no particular order. Windows are in the system clock's time, so a clock stepped
    /// after start moves them on the daemon's clock.
    fn occurrences(&self, now: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let Ok(now_jiff) = jiff::Timestamp::from_millisecond(now.wall_millis() as i64) else {
            return Vec::new();
        };
        let today = now_jiff.to_zoned_datetime(self.zone.tz.clone()).date();
        let mut out = Vec::new();
        let mut date = today.yesterday().unwrap_or(today);
        for _ in 0..9 {
            for w in &self.windows {
                out.extend(w.occurrence(date, &self.zone.tz));
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        out
    }

    /// Returns when the window `now` is in ends, if it is in one.
    pub fn open_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.occurrences(now)
            .into_iter()
            .filter(|(s, e)| *s <= now && now < *e)
            .map(|(_, e)| e)
            .max()
    }

    /// Returns when the next window opens after `now`.
    pub fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        self.occurrences(now)
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| *s > now)
            .min()
    }
}

/// The `[maintenance]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// Never, dry-run or when-safe.
    pub apply: ApplyMode,
    /// When it may be applied.
    pub windows: Windows,
    /// How long the tunnels that carry the traffic meanwhile must have been healthy.
    pub sibling_healthy_for: Duration,
    /// Tunnels of the VGW (every configured connection) replaced at once, at most.
    pub max_concurrent: u32,
    /// How long a replaced tunnel has to come back up on both planes.
    pub recovery_timeout: Duration,
}

impl MaintenanceConfig {
    /// The default `sibling_healthy_for`.
    pub const DEFAULT_SIBLING_HEALTHY_FOR: Duration = Duration::from_secs(1800);
    /// The shortest `sibling_healthy_for` and `recovery_timeout` accepted: a few probe
    /// rounds and EC2 polls (values this short are for tests and labs).
    pub const MIN_WAIT: Duration = Duration::from_secs(10);
    /// The default `recovery_timeout`.
    pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(600);
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            apply: ApplyMode::Never,
            windows: Windows {
                windows: Vec::new(),
                zone: Zone::get("UTC").expect("the bundled database has UTC"),
            },
            sibling_healthy_for: Self::DEFAULT_SIBLING_HEALTHY_FOR,
            max_concurrent: 1,
            recovery_timeout: Self::DEFAULT_RECOVERY_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(texts: &[&str], zone: &str) -> Windows {
        Windows {
            windows: texts.iter().map(|t| Window::parse(t).unwrap()).collect(),
            zone: Zone::get(zone).unwrap(),
        }
    }

    /// Seconds since the epoch of a UTC date and time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        let z = jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned_datetime(TimeZone::UTC)
            .unwrap();
        Timestamp::from_millis(z.timestamp().as_millisecond() as u64)
    }

    #[test]
    fn windows_parse_days_ranges_and_times_and_name_what_is_wrong() {
        let w = Window::parse("Sun 02:00-05:00").unwrap();
        assert_eq!(
            (w.days, w.start, w.end),
            ([false, false, false, false, false, false, true], 120, 300)
        );
        assert_eq!(
            Window::parse("sat-mon 23:30-01:00").unwrap().days,
            [true, false, false, false, false, true, true]
        );
        assert_eq!(Window::parse("daily 00:00-24:00").unwrap().end, 1440);
        assert!(Window::parse("Tuesday 01:00-02:00").unwrap().days[1]);
        for (bad, says) in [
            ("Sun", "is not a window"),
            ("Sunday 02:00-05:00 extra", "is not a window"),
            ("Sol 02:00-05:00", "\"Sol\" is not a day"),
            ("Sun 2-5", "is not a time range"),
            ("Sun 25:00-26:00", "is not a time range"),
            ("Sun 02:60-03:00", "is not a time range"),
            ("Sun 02:00-02:00", "empty"),
        ] {
            let e = Window::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_window_is_local_time_of_its_zone_across_summer_time() {
        let w = windows(&["Sun 02:00-05:00"], "Europe/Paris");
        // Sunday 2026-01-04: Paris is UTC+1, the window is 01:00-04:00 UTC.
        assert_eq!(w.open_until(utc(2026, 1, 4, 0, 59)), None);
        assert_eq!(
            w.open_until(utc(2026, 1, 4, 1, 0)),
            Some(utc(2026, 1, 4, 4, 0))
        );
        assert_eq!(w.open_until(utc(2026, 1, 4, 4, 0)), None);
        assert_eq!(
            w.next_open(utc(2026, 1, 4, 4, 0)),
            Some(utc(2026, 1, 11, 1, 0))
        );
        // Sunday 2026-07-05: UTC+2, the window is 00:00-03:00 UTC.
        assert_eq!(
            w.open_until(utc(2026, 7, 5, 0, 30)),
            Some(utc(2026, 7, 5, 3, 0))
        );
        // Saturday: the next one is tomorrow.
        assert_eq!(
            w.next_open(utc(2026, 7, 4, 12, 0)),
            Some(utc(2026, 7, 5, 0, 0))
        );
        // The night summer time starts (2026-03-29, 02:00 is skipped): it opens at 03:00
        // local = 01:00 UTC and ends at 05:00 local = 03:00 UTC.
        assert_eq!(
            w.open_until(utc(2026, 3, 29, 1, 30)),
            Some(utc(2026, 3, 29, 3, 0))
        );
        assert_eq!(w.open_until(utc(2026, 3, 29, 0, 59)), None);
    }

    #[test]
    fn a_window_past_midnight_ends_the_next_day() {
        let w = windows(&["Sat 23:00-01:00"], "UTC");
        // 2026-07-04 is a Saturday.
        assert_eq!(
            w.open_until(utc(2026, 7, 5, 0, 30)),
            Some(utc(2026, 7, 5, 1, 0))
        );
        assert_eq!(w.open_until(utc(2026, 7, 4, 22, 59)), None);
        assert_eq!(w.open_until(utc(2026, 7, 5, 1, 0)), None);
    }

    #[test]
    fn an_unknown_zone_is_named() {
        let e = Zone::get("Europe/Pariss").unwrap_err();
        assert!(e.contains("\"Europe/Pariss\" is not a time zone"), "{e}");
        assert!(Zone::get("America/New_York").is_ok());
    }
}
