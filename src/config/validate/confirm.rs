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
