//! What the core tells the shell: each event is a change the shell turns into IO (a log
//! line, a metric, a systemd status, a delivery to a sink, a write of the state file). The
//! shell never compares the core's state before and after a call: what changed comes out
//! here.

use std::time::Duration;

use crate::alert::engine::Notification;
use crate::alert::outbox::Delivery;
use crate::alert::saved::SavedState;
use crate::config::maintenance::ApplyMode;
use crate::health::cause::Cause;
use crate::health::failover::Failover;
use crate::health::tunnel_log_book::LogFetch;
use crate::health::{Verdict, VpnState};
use crate::maintenance::TunnelPlan;
use crate::messages::{AwsErrorKind, ConnectionReading, MaintenanceResult, PathMtuReading};
use crate::messages::{ProbeOutcome, TimeoutInForce};
use crate::outage::OutageRecord;
use crate::types::{TargetId, Timestamp, TunnelId};

/// One thing that happened in the core, for the shell to act on.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The core starts (a start or a reload): every gauge is set from its state as it is.
    Started,
    /// A probe's outcome was taken in (per probe: the counters and histograms).
    ProbeRecorded {
        target: TargetId,
        outcome: ProbeOutcome,
        /// Lost in a row after it.
        consecutive_lost: u32,
        /// How late after its scheduled instant the request went out.
        send_delay: Duration,
    },
    /// A reply came for no request waited for (counted, not used).
    StrayReply { target: TargetId },
    /// A pinger moved to a fresh socket (or failed to).
    SocketReopened { target: TargetId, ok: bool },
    /// A pinger fell behind its schedule and skipped sends.
    ScheduleSlipped { target: TargetId, missed: u64 },
    /// A target's timeout in force changed.
    TimeoutChanged {
        target: TargetId,
        timeout: TimeoutInForce,
    },
    /// A target's verdict changed kind (up, down, unknown).
    TargetChanged { target: TargetId, verdict: Verdict },
    /// A target's pinger went quiet for three intervals: its verdict is unknown.
    TargetSilent { target: TargetId },
    /// A tunnel's verdict, one of its planes, or its connection's verdict may have changed:
    /// the shell refreshes what it shows of the tunnel and its connection.
    TunnelChanged { tunnel: TunnelId },
    /// What EC2 said, or did not.
    Aws(AwsEvent),
    /// A path-MTU measurement of a tunnel finished.
    PathMtuMeasured {
        tunnel: TunnelId,
        reading: Option<PathMtuReading>,
    },
    /// The one-line status changed (`OK: 4/4 tunnels up`); `vpn` is set when the VPN
    /// verdict changed kind with it (worth a log line).
    StatusLine { line: String, vpn: Option<VpnState> },
    /// Traffic to the shared targets moved to another tunnel: how long they were lost.
    Failover(Failover),
    /// Every target has reported once since start: the daemon is ready.
    FirstRound,
    /// A notification is due at a sink worker.
    Deliver(Delivery),
    /// The firing alerts one Alertmanager sink should hold changed.
    AlertmanagerAlerts {
        sink: usize,
        alerts: Vec<Notification>,
    },
    /// A delivery for a sink that no longer exists was dropped.
    DeliveryDropped { sink: usize, key: String },
    /// A sink reported a delivery.
    DeliveryReported {
        sink: String,
        /// `None` when delivered; else the error's kind, its text and the next try.
        failure: Option<(String, String, Option<Timestamp>)>,
    },
    /// The outbox was full and its oldest notification was dropped.
    OutboxOverflowed,
    /// The alerts or the outbox changed: the state file must be written with this.
    SaveState(SavedState),
    /// An outage or a failover ended: its record goes to the outage log.
    OutageRecorded(OutageRecord),
    /// Call `ReplaceVpnTunnel` (`ApplyPendingMaintenance=true`) for the tunnel now, and
    /// answer with [`crate::messages::Observation::TunnelReplaceAnswered`].
    ReplaceTunnel { tunnel: TunnelId },
    /// A tunnel's maintenance plan changed (decision, progress, result): worth a log line.
    MaintenancePlanChanged {
        tunnel: TunnelId,
        plan: TunnelPlan,
        mode: ApplyMode,
        /// A replacement's outcome is new with this change (count it).
        ended: bool,
    },
    /// A tunnel's AWS tunnel logs are to be read (one `FilterLogEvents` call).
    FetchTunnelLogs(LogFetch),
    /// The cause of a tunnel's outage was found or changed (`None`: no longer known, or
    /// the tunnel is up).
    CauseChanged {
        tunnel: TunnelId,
        cause: Option<Cause>,
    },
}

/// The control plane's events: EC2's answers and failures, what changed in them.
#[derive(Clone, Debug, PartialEq)]
pub enum AwsEvent {
    /// A tunnel's control plane (what AWS says) changed kind.
    ControlPlaneChanged { tunnel: TunnelId, verdict: Verdict },
    /// EC2 answered; the readings are what it said.
    Ec2Answered {
        at: Timestamp,
        readings: Vec<ConnectionReading>,
    },
    /// An EC2 call failed.
    Ec2Failed { kind: AwsErrorKind },
    /// A problem in EC2's answers appeared (`gone` false) or went away.
    ControlProblem { problem: String, gone: bool },
    /// EC2's answers are stale: the control plane of every polled tunnel is unknown.
    ControlPlaneStale,
    /// A maintenance check of a tunnel finished.
    MaintenanceChecked {
        tunnel: TunnelId,
        result: MaintenanceResult,
    },
}
