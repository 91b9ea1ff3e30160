//! The `[mtu]` table and the tunnels' `mtu` overrides.

use super::*;
use crate::config::{MTU_MAX_BYTES as MAX_BYTES, MTU_MIN_BYTES as MIN_BYTES};

impl Validator<'_> {
    pub(super) fn mtu(&mut self, raw: Option<&Spanned<RawMtu>>, any_pinned: bool) -> MtuConfig {
        let Some(raw) = raw else {
            return MtuConfig {
                enabled: any_pinned,
                interval: MtuConfig::DEFAULT_INTERVAL,
                expected: MtuConfig::DEFAULT_EXPECTED,
            };
        };
        let m = raw.get_ref();
        let enabled = m.enabled.unwrap_or(any_pinned);
        if enabled && !any_pinned {
            self.warnings.push(
                "mtu.enabled = true but no tunnel has pinned targets: there is nothing to probe"
                    .into(),
            );
        }
        MtuConfig {
            enabled,
            interval: self.duration(
                "mtu.interval",
                m.interval.as_ref(),
                MtuConfig::DEFAULT_INTERVAL,
                MtuConfig::MIN_INTERVAL,
                Duration::from_secs(24 * 3600),
            ),
            expected: self.mtu_bytes(
                "mtu.expected",
                m.expected.as_ref(),
                MtuConfig::DEFAULT_EXPECTED,
            ),
        }
    }

    pub(super) fn tunnel_mtu(
        &mut self,
        tkey: &str,
        raw: Option<&Spanned<u32>>,
        mtu: &MtuConfig,
    ) -> u32 {
        self.mtu_bytes(&format!("{tkey}.mtu"), raw, mtu.expected)
    }

    fn mtu_bytes(&mut self, key: &str, raw: Option<&Spanned<u32>>, default: u32) -> u32 {
        let Some(v) = raw else { return default };
        let bytes = *v.get_ref();
        if !(MIN_BYTES..=MAX_BYTES).contains(&bytes) {
            self.problem(
                Some(v.span()),
                key,
                format!(
                    "{bytes} is out of range: the IP packet size that should cross a tunnel must be between {MIN_BYTES} and {MAX_BYTES} bytes (AWS: 1446 at best)"
                ),
            );
        }
        bytes
    }
}
