//! The log sink: pages as WARN (firing) and INFO (resolved) lines in the daemon's log.

use tracing::{info, warn};

use super::Deliver;
use crate::alert::engine::{Notification, NotificationStatus};
use crate::alert::page::{subject, PageContext};

/// Writes notifications to the daemon's log.
pub struct LogSink {
    /// Runbook and host.
    pub ctx: PageContext,
}

impl Deliver for LogSink {
    async fn deliver(&mut self, n: &Notification) -> Result<(), (&'static str, String)> {
        let subject = subject(n);
        match n.status {
            NotificationStatus::Firing => warn!(
                alert = n.key.class.name(),
                severity = n.severity.label(),
                key = %n.key,
                since = %n.starts_at,
                reason = %n.details.reason,
                runbook = %self.ctx.runbook(n),
                "ALERT {subject}"
            ),
            NotificationStatus::Resolved => {
                info!(alert = n.key.class.name(), key = %n.key, "ALERT {subject}")
            }
        }
        Ok(())
    }
}
