//! Validation of `[probe]`'s fast-detection keys: the adaptive timeout's floor and
//! multiplier, and fast confirm. They apply to every target; a target's own `timeout`
//! caps its adaptive timeout as the global one does.

use super::*;

/// The largest `timeout_rtt_multiplier`: beyond it the adaptive timeout is the configured
/// one for any RTT worth the name, and `adaptive_timeout = false` says so more plainly.
pub const MAX_RTT_MULTIPLIER: u32 = 100;
/// The shortest `timeout_floor`: a timer tick, not a network round trip, below it.
pub const MIN_TIMEOUT_FLOOR: Duration = Duration::from_millis(1);

impl Validator<'_> {
    pub(super) fn fast_detection(&mut self, raw: &RawProbe, mut s: ProbeSettings) -> ProbeSettings {
        if let Some(on) = raw.adaptive_timeout {
            s.adaptive_timeout = on;
        }
        if let Some(on) = raw.fast_confirm {
            s.fast_confirm = on;
        }
        if let Some(v) = &raw.timeout_floor {
            s.timeout_floor = v.get_ref().0;
            if s.timeout_floor < MIN_TIMEOUT_FLOOR {
                self.problem(
                    Some(v.span()),
                    "probe.timeout_floor",
                    format!(
                        "{} is too short: the floor must be at least {}",
                        humantime::format_duration(s.timeout_floor),
                        humantime::format_duration(MIN_TIMEOUT_FLOOR)
                    ),
                );
            }
        }
        if s.timeout_floor > s.timeout {
            let span = raw.timeout_floor.as_ref().or(raw.timeout.as_ref());
            self.problem(
                span.map(|v| v.span()),
                "probe.timeout_floor",
                format!(
                    "{} is longer than the timeout {}: the adaptive timeout lies between the floor and the timeout",
                    humantime::format_duration(s.timeout_floor),
                    humantime::format_duration(s.timeout)
                ),
            );
        }
        if let Some(v) = &raw.timeout_rtt_multiplier {
            s.timeout_rtt_multiplier = *v.get_ref();
            if s.timeout_rtt_multiplier == 0 || s.timeout_rtt_multiplier > MAX_RTT_MULTIPLIER {
                self.problem(
                    Some(v.span()),
                    "probe.timeout_rtt_multiplier",
                    format!(
                        "{} is out of range: it must be between 1 and {MAX_RTT_MULTIPLIER}",
                        s.timeout_rtt_multiplier
                    ),
                );
            }
        }
        if s.fast_confirm && !s.adaptive_timeout && s.timeout * 2 > s.interval {
            self.warnings.push(format!(
                "probe.fast_confirm: with a fixed timeout of {} and an interval of {} no confirmation fits between two probes; losses are confirmed at the interval",
                humantime::format_duration(s.timeout),
                humantime::format_duration(s.interval)
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::time::Duration;

    const TUNNEL: &str =
        "[[vpn]]\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"a\"\ntargets = [\"10.0.0.1\"]\n";

    fn parse(probe: &str) -> Result<Config, String> {
        Config::parse(&format!("[probe]\n{probe}\n{TUNNEL}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn the_fast_detection_keys_set_every_targets_settings() {
        let p = parse("adaptive_timeout = false\nfast_confirm = false\ntimeout_floor = \"50ms\"\ntimeout_rtt_multiplier = 8")
            .unwrap()
            .targets[0]
            .probe;
        assert!(!p.adaptive_timeout && !p.fast_confirm);
        assert_eq!(p.timeout_floor, Duration::from_millis(50));
        assert_eq!(p.timeout_rtt_multiplier, 8);
        let d = parse("").unwrap().targets[0].probe;
        assert!(d.adaptive_timeout && d.fast_confirm);
        assert_eq!(
            (d.timeout_floor, d.timeout_rtt_multiplier, d.down_after),
            (Duration::from_millis(100), 4, 5)
        );
    }

    #[test]
    fn nonsense_is_rejected_naming_the_key_and_the_bound() {
        let cases = [
            (
                "timeout_rtt_multiplier = 0",
                "line 2, column 26: probe.timeout_rtt_multiplier: 0 is out of range: it must be between 1 and 100",
            ),
            (
                "timeout_rtt_multiplier = 1000",
                "probe.timeout_rtt_multiplier: 1000 is out of range",
            ),
            (
                "timeout_floor = \"0s\"",
                "probe.timeout_floor: 0s is too short: the floor must be at least 1ms",
            ),
            (
                "timeout = \"200ms\"\ntimeout_floor = \"300ms\"",
                "probe.timeout_floor: 300ms is longer than the timeout 200ms",
            ),
            (
                "timeout = \"50ms\"",
                "probe.timeout_floor: 100ms is longer than the timeout 50ms",
            ),
            ("fast_confirm = \"yes\"", "invalid type: string \"yes\", expected a boolean"),
        ];
        for (probe, want) in cases {
            let error = parse(probe).expect_err(probe);
            assert!(error.contains(want), "{probe}: {error}");
        }
    }

    #[test]
    fn fast_confirm_without_room_for_a_confirmation_is_a_warning() {
        let c = parse("adaptive_timeout = false").unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains("probe.fast_confirm")),
            "{:?}",
            c.warnings
        );
        let c = parse("adaptive_timeout = false\ntimeout = \"300ms\"").unwrap();
        assert!(
            !c.warnings.iter().any(|w| w.contains("probe.fast_confirm")),
            "{:?}",
            c.warnings
        );
    }
}
