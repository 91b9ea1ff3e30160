//! One cause per outage: of the evidence on a tunnel that is down (AWS's tunnel logs, AWS
//! maintenance, EC2's status message, ICMP errors and MTU on the data plane), the most
//! telling piece, with its time and where it came from. Pages print it as
//! `Cause: AWS: Peer is not responsive - Declaring peer dead (DPD, 03:12:41Z)` and the
//! runbook section they point to is the cause's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tunnel_log::{CauseKind, TunnelLogEvent};
use crate::types::Timestamp;

/// How long before an outage's start a log message still explains it: DPD declares a peer
/// dead after three missed 10 s R-U-THERE rounds (at least 30 s), and IKE may have failed
/// to rekey a little before the probes noticed.
pub const LOG_LOOKBACK: Duration = Duration::from_secs(300);

/// Where a cause was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseSource {
    /// AWS's tunnel activity logs (CloudWatch Logs).
    TunnelLogs,
    /// AWS's endpoint replacement status.
    Maintenance,
    /// EC2's tunnel telemetry (`StatusMessage`).
    ControlPlane,
    /// tunnelkeeper's own probes.
    DataPlane,
}

impl CauseSource {
    fn prefix(self) -> &'static str {
        match self {
            Self::TunnelLogs => "AWS",
            Self::Maintenance => "AWS maintenance",
            Self::ControlPlane => "EC2",
            Self::DataPlane => "probes",
        }
    }
}

/// Why an outage happened, as far as the evidence tells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// What kind of cause: picks the runbook section.
    pub kind: CauseKind,
    /// Where it was read.
    pub source: CauseSource,
    /// The evidence's own words (AWS's message, EC2's status, the ICMP error).
    pub text: String,
    /// When the evidence was written.
    pub at: Timestamp,
}

impl Cause {
    /// Returns the line a page carries after `Cause: `:
    /// `AWS: Peer is not responsive - Declaring peer dead (DPD, 03:12:41Z)`.
    pub fn line(&self) -> String {
        let stamp = self.at.to_string();
        // RFC 3339 "2026-12-04T03:12:41Z": the time of day is what a night shift reads.
        let time = stamp.split('T').nth(1).unwrap_or(&stamp);
        format!(
            "{}: {} ({}, {time})",
            self.source.prefix(),
            self.text,
            self.kind.tag()
        )
    }
}

/// Everything known about one tunnel's outage that may tell why.
#[derive(Clone, Debug, Default)]
pub struct Evidence<'a> {
    /// When the outage began.
    pub since: Option<Timestamp>,
    /// The tunnel's log events, oldest first.
    pub logs: &'a [TunnelLogEvent],
    /// AWS replaced the tunnel's endpoint around the outage: what it said, when.
    pub maintenance: Option<(String, Timestamp)>,
    /// EC2 says the tunnel is DOWN with this status message, at its last status change.
    pub aws_status: Option<(String, Timestamp)>,
    /// The data plane went down on an ICMP error: its text, when.
    pub icmp_error: Option<(String, Timestamp)>,
    /// A path-MTU black hole was measured: what, when.
    pub mtu: Option<(String, Timestamp)>,
}

/// Returns the most telling cause in the evidence: AWS maintenance (it explains every
/// other symptom), then the last telling log message from `LOG_LOOKBACK` before the
/// outage on, then an ICMP error (a router said why), EC2's status message, an MTU black
/// hole. `None` when nothing tells.
pub fn choose(evidence: &Evidence<'_>) -> Option<Cause> {
    let from = evidence.since.map(|s| {
        Timestamp::from_millis(
            s.as_millis()
                .saturating_sub(LOG_LOOKBACK.as_millis() as u64),
        )
    });
    let logged = evidence
        .logs
        .iter()
        .rev()
        .filter(|e| from.is_none_or(|f| e.at >= f))
        .find_map(|e| {
            e.cause().map(|kind| Cause {
                kind,
                source: CauseSource::TunnelLogs,
                text: e.detail.clone(),
                at: e.at,
            })
        });
    let from_pair = |pair: &Option<(String, Timestamp)>, kind, source| {
        pair.as_ref().map(|(text, at)| Cause {
            kind,
            source,
            text: text.clone(),
            at: *at,
        })
    };
    from_pair(
        &evidence.maintenance,
        CauseKind::Maintenance,
        CauseSource::Maintenance,
    )
    .or(logged)
    .or_else(|| {
        from_pair(
            &evidence.icmp_error,
            CauseKind::IcmpError,
            CauseSource::DataPlane,
        )
    })
    .or_else(|| {
        from_pair(
            &evidence.aws_status,
            CauseKind::AwsStatus,
            CauseSource::ControlPlane,
        )
    })
    .or_else(|| from_pair(&evidence.mtu, CauseKind::Mtu, CauseSource::DataPlane))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel_log::parse;

    fn event(at: u64, detail: &str) -> TunnelLogEvent {
        let json = format!("{{\"TunnelOutsideIPAddress\":\"203.0.113.10\",\"TunnelIKEPhase1State\":\"Established\",\"TunnelIKEPhase2State\":\"Established\",\"VpnLogDetail\":\"{detail}\"}}");
        parse(&json, Timestamp::from_secs(at)).unwrap()
    }

    #[test]
    fn the_page_line_names_source_message_kind_and_time() {
        let cause = Cause {
            kind: CauseKind::Dpd,
            source: CauseSource::TunnelLogs,
            text: "Peer is not responsive - Declaring peer dead".into(),
            at: Timestamp::from_secs(1_796_613_161),
        };
        assert_eq!(
            cause.line(),
            "AWS: Peer is not responsive - Declaring peer dead (DPD, 03:12:41Z)"
        );
    }

    #[test]
    fn the_most_telling_evidence_wins() {
        let since = Timestamp::from_secs(10_000);
        let logs = [
            event(9_000, "Peer is not responsive - Declaring peer dead"), // too early
            event(
                9_900,
                "AWS tunnel payload decryption was unsuccessful due to invalid Pre-shared Key",
            ),
            event(9_950, "IKE SA established"), // routine: tells nothing
        ];
        let icmp = Some(("host unreachable (ICMP from 10.0.0.1)".to_string(), since));
        let status = Some(("IPSEC IS DOWN".to_string(), since));
        let mtu = Some(("black hole above 1400 bytes".to_string(), since));
        let maintenance = Some(("endpoint replaced".to_string(), since));
        let rows: [(Evidence<'_>, Option<(CauseKind, CauseSource)>); 7] = [
            (
                Evidence {
                    since: Some(since),
                    ..Default::default()
                },
                None,
            ),
            (
                Evidence {
                    since: Some(since),
                    logs: &logs,
                    icmp_error: icmp.clone(),
                    aws_status: status.clone(),
                    ..Default::default()
                },
                Some((CauseKind::PskMismatch, CauseSource::TunnelLogs)),
            ),
            (
                Evidence {
                    since: Some(since),
                    logs: &logs,
                    maintenance: maintenance.clone(),
                    ..Default::default()
                },
                Some((CauseKind::Maintenance, CauseSource::Maintenance)),
            ),
            (
                Evidence {
                    since: Some(since),
                    logs: &logs[..1],
                    icmp_error: icmp.clone(),
                    aws_status: status.clone(),
                    ..Default::default()
                },
                Some((CauseKind::IcmpError, CauseSource::DataPlane)),
            ),
            (
                Evidence {
                    since: Some(since),
                    aws_status: status.clone(),
                    mtu: mtu.clone(),
                    ..Default::default()
                },
                Some((CauseKind::AwsStatus, CauseSource::ControlPlane)),
            ),
            (
                Evidence {
                    since: Some(since),
                    mtu: mtu.clone(),
                    ..Default::default()
                },
                Some((CauseKind::Mtu, CauseSource::DataPlane)),
            ),
            // Without a start, every logged message counts: the last telling one.
            (
                Evidence {
                    since: None,
                    logs: &logs,
                    ..Default::default()
                },
                Some((CauseKind::PskMismatch, CauseSource::TunnelLogs)),
            ),
        ];
        for (i, (evidence, want)) in rows.iter().enumerate() {
            let got = choose(evidence).map(|c| (c.kind, c.source));
            assert_eq!(got, *want, "row {i}");
        }
    }
}
