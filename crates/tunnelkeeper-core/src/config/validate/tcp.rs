//! TCP targets' keys: `tcp_port` on a target, `tcp_interval` in `[probe]`.

use super::*;

impl Validator<'_> {
    /// Returns the defaults TCP targets start from: `[probe]`'s, with `tcp_interval`.
    pub(super) fn tcp_defaults(
        &mut self,
        raw: &RawProbe,
        defaults: ProbeSettings,
    ) -> ProbeSettings {
        let interval = self.duration(
            "probe.tcp_interval",
            raw.tcp_interval.as_ref(),
            crate::config::tcp::DEFAULT_TCP_INTERVAL,
            MIN_INTERVAL,
            MAX_INTERVAL,
        );
        if let Some(v) = &raw.tcp_interval {
            if defaults.timeout > interval {
                self.problem(
                    Some(v.span()),
                    "probe.tcp_interval",
                    format!(
                        "{} is shorter than probe.timeout {}: a connect must end before the next one starts",
                        humantime::format_duration(interval),
                        humantime::format_duration(defaults.timeout)
                    ),
                );
            }
        }
        ProbeSettings {
            interval,
            ..defaults
        }
    }

    /// Checks a target's `tcp_port` (`entry_span` locates a port written in a pinned
    /// string, which has no span of its own).
    pub(super) fn tcp_port(
        &mut self,
        key: &str,
        raw: Option<&Spanned<i64>>,
        entry_span: &std::ops::Range<usize>,
    ) -> Option<u16> {
        let raw = raw?;
        match crate::config::tcp::check_port(*raw.get_ref()) {
            Ok(port) => Some(port),
            Err(message) => {
                let span = if raw.span().is_empty() {
                    entry_span.clone()
                } else {
                    raw.span()
                };
                self.problem(Some(span), &format!("{key}.tcp_port"), message);
                None
            }
        }
    }
}
