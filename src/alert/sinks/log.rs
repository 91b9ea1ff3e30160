//! The log sink: pages as WARN (firing) and INFO (resolved) lines in the daemon's log.

use tracing::{info, warn};

use super::Deliver;
use crate::alert::engine::{Notification, NotificationStatus};
use crate::alert::wording::{action, cause_line, outage_start, outage_text, subject, PageContext};

/// Writes notifications to the daemon's log.
pub struct LogSink {
    /// Runbook and host.
    pub ctx: PageContext,
}

impl Deliver for LogSink {
    async fn deliver(&mut self, n: &Notification) -> Result<(), (&'static str, String)> {
        let subject = subject(n);
        let vpn_id = n.details.vpn_id.as_deref().unwrap_or("-");
        let outside_ip = self.ctx.outside_ip(n).unwrap_or("-");
        match n.status {
            NotificationStatus::Firing => warn!(
                alert = n.key.class.name(),
                severity = n.severity.label(),
                key = %n.key,
                vpn_id,
                outside_ip,
                since = %outage_start(n),
                reason = %n.details.reason,
                cause = cause_line(n).unwrap_or_default(),
                what_to_do = %action(n),
                runbook = %self.ctx.runbook(n),
                "ALERT {subject}"
            ),
            NotificationStatus::Test => info!(alert = n.key.class.name(), "ALERT {subject}"),
            NotificationStatus::Resolved => info!(
                alert = n.key.class.name(),
                key = %n.key,
                vpn_id,
                outside_ip,
                since = %outage_start(n),
                until = %n.ends_at.unwrap_or(n.created_at),
                outage = %outage_text(n),
                "ALERT {subject} (down {})",
                outage_text(n)
            ),
        }
        Ok(())
    }
}
