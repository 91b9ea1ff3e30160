//! `[alerts.lossy]` and `[alerts.slow]`.

use super::*;
use crate::config::brownout::{LossySettings, Ratio, SlowSettings};

impl Validator<'_> {
    pub(super) fn lossy(&mut self, raw: Option<&Spanned<RawLossy>>) -> LossySettings {
        let defaults = LossySettings::default();
        let Some(raw) = raw else { return defaults };
        let raw = raw.get_ref();
        let window = self.duration(
            "alerts.lossy.window",
            raw.window.as_ref(),
            defaults.window,
            LossySettings::MIN_WINDOW,
            LossySettings::MAX_WINDOW,
        );
        let threshold = raw.threshold.as_ref().map_or(defaults.threshold, |v| {
            let (min, max) = (
                LossySettings::MIN_THRESHOLD_PERCENT,
                LossySettings::MAX_THRESHOLD_PERCENT,
            );
            let text = v.get_ref().trim();
            let percent = text
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok());
            match percent {
                Some(p) if (min..=max).contains(&p) => Ratio(p / 100.0),
                Some(p) => {
                    self.problem(
                        Some(v.span()),
                        "alerts.lossy.threshold",
                        format!("{p}% is out of range: it must be between {min}% and {max}%"),
                    );
                    defaults.threshold
                }
                None => {
                    self.problem(
                        Some(v.span()),
                        "alerts.lossy.threshold",
                        format!("{text:?} is not a percentage: write it as \"5%\""),
                    );
                    defaults.threshold
                }
            }
        });
        LossySettings { window, threshold }
    }

    pub(super) fn slow(&mut self, raw: Option<&Spanned<RawSlow>>) -> SlowSettings {
        let defaults = SlowSettings::default();
        let Some(raw) = raw else { return defaults };
        let raw = raw.get_ref();
        let window = self.duration(
            "alerts.slow.window",
            raw.window.as_ref(),
            defaults.window,
            LossySettings::MIN_WINDOW,
            LossySettings::MAX_WINDOW,
        );
        let factor = raw.factor.as_ref().map_or(defaults.factor, |v| {
            let f = *v.get_ref();
            let (min, max) = (SlowSettings::MIN_FACTOR, SlowSettings::MAX_FACTOR);
            if !(min..=max).contains(&f) {
                self.problem(
                    Some(v.span()),
                    "alerts.slow.factor",
                    format!("{f} is out of range: it must be between {min} and {max} (times the tunnel's baseline RTT)"),
                );
                return defaults.factor;
            }
            Ratio(f)
        });
        SlowSettings { window, factor }
    }
}
