//! AWS's own tunnel activity logs (CloudWatch Logs, one event per IKE/IPsec/DPD happening),
//! read into [`TunnelLogEvent`]s, and the catalogue of AWS's fixed messages, each mapped to
//! the [`CauseKind`] it tells and so to a runbook section. Both output formats AWS writes
//! are read: JSON (one object with the documented field names) and text (the same fields as
//! `Name: value` pairs, or the fields in their documented order on one line).

use serde::{Deserialize, Serialize};

use crate::types::Timestamp;

/// One tunnel log event, as AWS wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelLogEvent {
    /// `VpnLogCreationTimestamp`, or CloudWatch's event time when that is absent.
    pub at: Timestamp,
    /// `VpnConnectionId`.
    pub vpn_id: Option<String>,
    /// `TunnelOutsideIPAddress`: which tunnel wrote it.
    pub outside_ip: Option<String>,
    /// `TunnelDPDEnabled`.
    pub dpd_enabled: Option<bool>,
    /// `TunnelCGWNATTDetectionStatus`: NAT-T detected on the customer gateway.
    pub nat_t_detected: Option<bool>,
    /// `TunnelIKEPhase1State`.
    pub phase1: Option<IkeState>,
    /// `TunnelIKEPhase2State`.
    pub phase2: Option<IkeState>,
    /// `VpnLogDetail`: the verbose message.
    pub detail: String,
}

/// An IKE phase's state as the logs say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IkeState {
    Established,
    Rekeying,
    Negotiating,
    Down,
}

impl IkeState {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "established" => Some(Self::Established),
            "rekeying" => Some(Self::Rekeying),
            "negotiating" => Some(Self::Negotiating),
            "down" => Some(Self::Down),
            _ => None,
        }
    }
}

/// Why a tunnel log event could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TunnelLogError {
    #[error("tunnel log event is neither JSON nor AWS's text format: {0:?}")]
    Unreadable(String),
    #[error("tunnel log event has no VpnLogDetail: {0:?}")]
    NoDetail(String),
}

/// What a tunnel's outage comes from, as far as the evidence tells. Each kind has its
/// section in docs/runbook.md ([`CauseKind::runbook_section`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// AWS declared the customer gateway dead after unanswered DPD messages.
    Dpd,
    /// The pre-shared keys on the two sides differ.
    PskMismatch,
    /// The phase 1 or phase 2 proposals (ciphers, hashes, DH groups) do not match.
    ProposalMismatch,
    /// NAT-T in the path: the customer gateway sits behind NAT.
    NatT,
    /// The customer gateway closed or deleted the SAs, or AWS waits for it to start IKE:
    /// nothing from the datacenter brings the tunnel up.
    NoTrafficFromDatacenter,
    /// AWS's status message for the tunnel (EC2 telemetry), when the logs say nothing.
    AwsStatus,
    /// AWS is replacing the tunnel endpoint (maintenance).
    Maintenance,
    /// Probes were answered with ICMP errors (unreachable, filtered) on the way.
    IcmpError,
    /// Large packets are lost while small ones pass: a path MTU black hole.
    Mtu,
}

impl CauseKind {
    /// Returns the heading of this cause's section in docs/runbook.md (`## Cause: DPD`).
    pub fn runbook_heading(self) -> &'static str {
        match self {
            Self::Dpd => "Cause: DPD",
            Self::PskMismatch => "Cause: PSK mismatch",
            Self::ProposalMismatch => "Cause: proposal mismatch",
            Self::NatT => "Cause: NAT-T",
            Self::NoTrafficFromDatacenter => "Cause: no traffic from datacenter",
            Self::AwsStatus => "Cause: AWS status",
            Self::Maintenance => "Cause: maintenance",
            Self::IcmpError => "Cause: ICMP error",
            Self::Mtu => "Cause: MTU",
        }
    }

    /// Returns the anchor of the runbook section, as GitHub makes it from the heading
    /// (`cause-dpd`).
    pub fn runbook_section(self) -> String {
        self.runbook_heading()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    }

    /// Returns the short tag a page puts after the message: `(DPD, 03:12:41Z)`.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Dpd => "DPD",
            Self::PskMismatch => "IKE, pre-shared key",
            Self::ProposalMismatch => "IKE, proposals",
            Self::NatT => "NAT-T",
            Self::NoTrafficFromDatacenter => "IKE, customer gateway",
            Self::AwsStatus => "EC2 status",
            Self::Maintenance => "maintenance",
            Self::IcmpError => "ICMP",
            Self::Mtu => "MTU",
        }
    }

    /// Every kind, for the runbook test.
    pub const ALL: [CauseKind; 9] = [
        Self::Dpd,
        Self::PskMismatch,
        Self::ProposalMismatch,
        Self::NatT,
        Self::NoTrafficFromDatacenter,
        Self::AwsStatus,
        Self::Maintenance,
        Self::IcmpError,
        Self::Mtu,
    ];
}

/// AWS's fixed tunnel log messages (the Site-to-Site VPN guide's "IKEv1/IKEv2 error
/// messages"), matched as case-insensitive substrings of `VpnLogDetail`, first match wins.
const CATALOGUE: [(&str, CauseKind); 9] = [
    (
        "peer is not responsive - declaring peer dead",
        CauseKind::Dpd,
    ),
    ("invalid pre-shared key", CauseKind::PskMismatch),
    (
        "no proposal match found by aws",
        CauseKind::ProposalMismatch,
    ),
    ("no proposal chosen", CauseKind::ProposalMismatch),
    (
        "received delete for ike_sa",
        CauseKind::NoTrafficFromDatacenter,
    ),
    (
        "received delete for phase 2 sa",
        CauseKind::NoTrafficFromDatacenter,
    ),
    ("gracefully closing", CauseKind::NoTrafficFromDatacenter),
    ("nat-t detected", CauseKind::NatT),
    ("nat detected", CauseKind::NatT),
];

/// Returns the cause a log message tells, `None` for the routine ones (rekeying,
/// "established") that explain nothing.
pub fn classify(detail: &str) -> Option<CauseKind> {
    let lower = detail.to_ascii_lowercase();
    CATALOGUE
        .iter()
        .find(|(text, _)| lower.contains(text))
        .map(|(_, kind)| *kind)
}

impl TunnelLogEvent {
    /// Returns the cause this event tells: its message from the catalogue, else NAT-T when
    /// the event says NAT-T was detected while a phase is down (NAT in the path is then
    /// the likeliest why).
    pub fn cause(&self) -> Option<CauseKind> {
        classify(&self.detail).or_else(|| {
            let down = [self.phase1, self.phase2]
                .iter()
                .any(|s| matches!(s, Some(IkeState::Down | IkeState::Negotiating)));
            (self.nat_t_detected == Some(true) && down).then_some(CauseKind::NatT)
        })
    }
}

/// Reads one CloudWatch Logs message written by a tunnel; `ingested` (CloudWatch's event
/// time) stands in when the event carries no creation time of its own.
pub fn parse(message: &str, ingested: Timestamp) -> Result<TunnelLogEvent, TunnelLogError> {
    let fields = if message.trim_start().starts_with('{') {
        json_fields(message)?
    } else {
        text_fields(message)?
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let detail = get("VpnLogDetail").ok_or_else(|| TunnelLogError::NoDetail(cut(message)))?;
    Ok(TunnelLogEvent {
        at: get("VpnLogCreationTimestamp")
            .and_then(|t| parse_time(&t))
            .unwrap_or(ingested),
        vpn_id: get("VpnConnectionId"),
        outside_ip: get("TunnelOutsideIPAddress"),
        dpd_enabled: get("TunnelDPDEnabled").and_then(|b| parse_bool(&b)),
        nat_t_detected: get("TunnelCGWNATTDetectionStatus").and_then(|b| parse_bool(&b)),
        phase1: get("TunnelIKEPhase1State").and_then(|s| IkeState::parse(&s)),
        phase2: get("TunnelIKEPhase2State").and_then(|s| IkeState::parse(&s)),
        detail,
    })
}

/// The fields in the order AWS documents them, for the one-line text form.
const FIELD_ORDER: [&str; 7] = [
    "VpnLogCreationTimestamp",
    "VpnConnectionId",
    "TunnelOutsideIPAddress",
    "TunnelDPDEnabled",
    "TunnelCGWNATTDetectionStatus",
    "TunnelIKEPhase1State",
    "TunnelIKEPhase2State",
];

fn cut(text: &str) -> String {
    text.chars().take(120).collect()
}

fn json_fields(message: &str) -> Result<Vec<(String, String)>, TunnelLogError> {
    let value: serde_json::Value =
        serde_json::from_str(message).map_err(|_| TunnelLogError::Unreadable(cut(message)))?;
    let object = value
        .as_object()
        .ok_or_else(|| TunnelLogError::Unreadable(cut(message)))?;
    Ok(object
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect())
}

/// The text form: `Name: value` pairs (one per line, or separated by `, `), or, when no
/// field name appears, the seven fields in their documented order separated by spaces
/// (the timestamp as `YYYY-MM-DD HH:MM:SS [+0000|UTC]`) and the detail as the rest.
fn text_fields(message: &str) -> Result<Vec<(String, String)>, TunnelLogError> {
    if message.contains("VpnLogDetail") {
        return Ok(named_fields(message));
    }
    let mut words = message.split_whitespace().peekable();
    let date = words.next();
    let time = words.next();
    let (Some(date), Some(time)) = (date, time) else {
        return Err(TunnelLogError::Unreadable(cut(message)));
    };
    if words
        .peek()
        .is_some_and(|w| w.starts_with('+') || *w == "UTC" || *w == "Z")
    {
        words.next();
    }
    let mut fields = vec![(FIELD_ORDER[0].to_string(), format!("{date} {time}"))];
    for name in &FIELD_ORDER[1..] {
        let word = words
            .next()
            .ok_or_else(|| TunnelLogError::Unreadable(cut(message)))?;
        fields.push((name.to_string(), word.to_string()));
    }
    if parse_time(&fields[0].1).is_none() {
        return Err(TunnelLogError::Unreadable(cut(message)));
    }
    fields.push(("VpnLogDetail".into(), words.collect::<Vec<_>>().join(" ")));
    Ok(fields)
}

fn named_fields(message: &str) -> Vec<(String, String)> {
    // The detail is last and may itself hold commas and colons: it takes the rest.
    let (head, detail) = match message.find("VpnLogDetail") {
        Some(i) => (&message[..i], &message[i + "VpnLogDetail".len()..]),
        None => (message, ""),
    };
    let detail = detail.trim_start().trim_start_matches([':', '=']).trim();
    let mut fields: Vec<(String, String)> = head
        .split(['\n', ','])
        .filter_map(|part| {
            let (k, v) = part.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    fields.push(("VpnLogDetail".into(), detail.to_string()));
    fields
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Reads AWS's "human readable" creation time: RFC 3339, or `YYYY-MM-DD HH:MM:SS` with an
/// optional ` +0000` / ` UTC` (the logs are in UTC).
fn parse_time(text: &str) -> Option<Timestamp> {
    let trimmed = text
        .trim()
        .trim_end_matches(" UTC")
        .trim_end_matches(" +0000")
        .trim_end_matches("+00:00")
        .trim_end_matches('Z');
    let t = humantime::parse_rfc3339_weak(trimmed).ok()?;
    Timestamp::from_system_time(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fixed_aws_message_maps_to_its_cause_and_runbook_section() {
        let rows: [(&str, Option<CauseKind>, Option<&str>); 11] = [
            (
                "Peer is not responsive - Declaring peer dead",
                Some(CauseKind::Dpd),
                Some("cause-dpd"),
            ),
            (
                "AWS tunnel payload decryption was unsuccessful due to invalid Pre-shared Key",
                Some(CauseKind::PskMismatch),
                Some("cause-psk-mismatch"),
            ),
            (
                "No Proposal Match Found by AWS",
                Some(CauseKind::ProposalMismatch),
                Some("cause-proposal-mismatch"),
            ),
            (
                "No Proposal Match Found. Notifying with \"No proposal chosen\"",
                Some(CauseKind::ProposalMismatch),
                Some("cause-proposal-mismatch"),
            ),
            (
                "AWS tunnel received DELETE for IKE_SA from: 198.51.100.7",
                Some(CauseKind::NoTrafficFromDatacenter),
                Some("cause-no-traffic-from-datacenter"),
            ),
            (
                "AWS tunnel received DELETE for Phase 2 SA with SPI: 0x1234",
                Some(CauseKind::NoTrafficFromDatacenter),
                Some("cause-no-traffic-from-datacenter"),
            ),
            (
                "AWS tunnel is gracefully closing IKE_SA with CGW: 198.51.100.7",
                Some(CauseKind::NoTrafficFromDatacenter),
                Some("cause-no-traffic-from-datacenter"),
            ),
            (
                "CGW NAT-T detected",
                Some(CauseKind::NatT),
                Some("cause-nat-t"),
            ),
            ("Phase 2 SA rekeyed successfully", None, None),
            ("IKE SA established", None, None),
            ("", None, None),
        ];
        for (message, kind, section) in rows {
            assert_eq!(classify(message), kind, "{message}");
            assert_eq!(
                kind.map(CauseKind::runbook_section).as_deref(),
                section,
                "{message}"
            );
        }
    }

    #[test]
    fn the_json_form_is_read_field_by_field() {
        let message = r#"{"VpnLogCreationTimestamp":"2026-12-04 03:12:41","VpnConnectionId":"vpn-0a1","TunnelOutsideIPAddress":"203.0.113.10","TunnelDPDEnabled":true,"TunnelCGWNATTDetectionStatus":false,"TunnelIKEPhase1State":"Down","TunnelIKEPhase2State":"Down","VpnLogDetail":"Peer is not responsive - Declaring peer dead"}"#;
        let event = parse(message, Timestamp::from_secs(1)).unwrap();
        assert_eq!(event.at.to_string(), "2026-12-04T03:12:41Z");
        assert_eq!(event.vpn_id.as_deref(), Some("vpn-0a1"));
        assert_eq!(event.outside_ip.as_deref(), Some("203.0.113.10"));
        assert_eq!(event.dpd_enabled, Some(true));
        assert_eq!(event.nat_t_detected, Some(false));
        assert_eq!(event.phase1, Some(IkeState::Down));
        assert_eq!(event.phase2, Some(IkeState::Down));
        assert_eq!(event.cause(), Some(CauseKind::Dpd));
    }

    #[test]
    fn the_text_form_is_read_by_name_or_by_position() {
        let named = "VpnLogCreationTimestamp: 2026-12-04 03:12:41 +0000\nVpnConnectionId: vpn-0a1\nTunnelOutsideIPAddress: 203.0.113.11\nTunnelDPDEnabled: True\nTunnelCGWNATTDetectionStatus: True\nTunnelIKEPhase1State: Negotiating\nTunnelIKEPhase2State: Down\nVpnLogDetail: No Proposal Match Found. Notifying with \"No proposal chosen\"";
        let event = parse(named, Timestamp::from_secs(1)).unwrap();
        assert_eq!(event.at.to_string(), "2026-12-04T03:12:41Z");
        assert_eq!(event.outside_ip.as_deref(), Some("203.0.113.11"));
        assert_eq!(event.phase1, Some(IkeState::Negotiating));
        assert_eq!(event.nat_t_detected, Some(true));
        assert_eq!(event.cause(), Some(CauseKind::ProposalMismatch));

        let line = "2026-12-04 03:12:41 +0000 vpn-0a1 203.0.113.11 True False Down Down AWS tunnel payload decryption was unsuccessful due to invalid Pre-shared Key";
        let event = parse(line, Timestamp::from_secs(1)).unwrap();
        assert_eq!(event.outside_ip.as_deref(), Some("203.0.113.11"));
        assert_eq!(event.phase2, Some(IkeState::Down));
        assert_eq!(event.cause(), Some(CauseKind::PskMismatch));
    }

    #[test]
    fn nat_t_with_a_phase_down_is_the_cause_when_the_message_tells_none() {
        let line = "2026-12-04 03:12:41 vpn-0a1 203.0.113.11 True True Established Negotiating Initiating IKE_SA";
        assert_eq!(
            parse(line, Timestamp::from_secs(1)).unwrap().cause(),
            Some(CauseKind::NatT)
        );
        let up = "2026-12-04 03:12:41 vpn-0a1 203.0.113.11 True True Established Established IKE SA established";
        assert_eq!(parse(up, Timestamp::from_secs(1)).unwrap().cause(), None);
    }

    #[test]
    fn unreadable_events_say_what_is_wrong() {
        assert!(matches!(
            parse("hello", Timestamp::from_secs(1)),
            Err(TunnelLogError::Unreadable(_))
        ));
        assert!(matches!(
            parse("{\"VpnConnectionId\":\"vpn-1\"}", Timestamp::from_secs(1)),
            Err(TunnelLogError::NoDetail(_))
        ));
        // No creation time: CloudWatch's ingestion time stands in.
        let event = parse("{\"VpnLogDetail\":\"x\"}", Timestamp::from_secs(7)).unwrap();
        assert_eq!(event.at, Timestamp::from_secs(7));
    }
}
