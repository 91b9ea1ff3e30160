//! The outbox: notifications waiting for delivery to each sink, with attempts and the time
//! of the next try. Pure bookkeeping; the monitor saves it with the alert state so that a
//! page survives a crash, and the sink workers report back what became of each delivery.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::engine::Notification;
use crate::types::Timestamp;

/// The most deliveries kept; past it the oldest is dropped, loudly (a page cannot wait
/// forever for a sink that has been failing for days, and memory is not unlimited).
pub const CAPACITY: usize = 1000;
/// The first retry waits this long; each next one twice as long, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One notification for one sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique across restarts.
    pub id: u64,
    /// Index of the sink in the config.
    pub sink: usize,
    /// What the sink is (kind and destination), to find it again after a config change.
    #[serde(default)]
    pub sink_id: String,
    /// What to deliver.
    pub notification: Notification,
    /// Tries so far.
    pub attempts: u32,
    /// Not before this time.
    pub next_attempt: Timestamp,
    /// True while a worker has it (never saved as true: a restart retries it).
    #[serde(skip)]
    pub in_flight: bool,
}

/// The queue of undelivered notifications.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    next_id: u64,
    deliveries: VecDeque<Delivery>,
    #[serde(skip)]
    dropped: u64,
}

impl Outbox {
    /// Queues `notification` for `sink`; returns true if an old delivery had to be dropped.
    pub fn push(
        &mut self,
        sink: usize,
        sink_id: String,
        notification: Notification,
        now: Timestamp,
    ) -> bool {
        self.push_at(sink, sink_id, notification, now)
    }

    /// Queues `notification` for `sink`, not to be sent before `due` (a page that waits for
    /// its cause); returns true if an old delivery had to be dropped.
    pub fn push_at(
        &mut self,
        sink: usize,
        sink_id: String,
        notification: Notification,
        due: Timestamp,
    ) -> bool {
        self.next_id += 1;
        self.deliveries.push_back(Delivery {
            id: self.next_id,
            sink,
            sink_id,
            notification,
            attempts: 0,
            next_attempt: due,
            in_flight: false,
        });
        if self.deliveries.len() > CAPACITY {
            self.deliveries.pop_front();
            self.dropped += 1;
            return true;
        }
        false
    }

    /// Marks the deliveries due at `now` as in flight and returns them. Each sink gets an
    /// alert's notifications in the order they were made: one waits while an older one
    /// for the same sink and alert is undelivered (a RESOLVED never overtakes the FIRING
    /// that is being retried, which would leave the NOC with an open page).
    pub fn take_due(&mut self, now: Timestamp) -> Vec<Delivery> {
        let mut waiting: std::collections::BTreeSet<(usize, &crate::alert::engine::AlertKey)> =
            std::collections::BTreeSet::new();
        let mut due = Vec::new();
        for (i, d) in self.deliveries.iter().enumerate() {
            let first_of_its_alert = waiting.insert((d.sink, &d.notification.key));
            if first_of_its_alert && !d.in_flight && d.next_attempt <= now {
                due.push(i);
            }
        }
        due.into_iter()
            .map(|i| {
                let d = &mut self.deliveries[i];
                d.in_flight = true;
                d.attempts += 1;
                d.clone()
            })
            .collect()
    }

    /// Makes the deliveries not yet tried that `which` picks due at `now`, changed by
    /// `change` (held pages whose cause came).
    pub fn release(
        &mut self,
        which: impl Fn(&Notification) -> bool,
        change: impl Fn(&mut Notification),
        now: Timestamp,
    ) {
        for d in self.deliveries.iter_mut() {
            if d.attempts == 0 && !d.in_flight && d.next_attempt > now && which(&d.notification) {
                change(&mut d.notification);
                d.next_attempt = now;
            }
        }
    }

    /// Removes a delivered notification.
    pub fn delivered(&mut self, id: u64) {
        self.deliveries.retain(|d| d.id != id);
    }

    /// Schedules a failed delivery again, with exponential backoff and `jitter` (a fraction
    /// of the backoff, in [0, 1)); returns when it will be tried.
    pub fn failed(&mut self, id: u64, now: Timestamp, jitter: f64) -> Option<Timestamp> {
        let d = self.deliveries.iter_mut().find(|d| d.id == id)?;
        d.in_flight = false;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << d.attempts.saturating_sub(1).min(16))
            .min(MAX_BACKOFF);
        let backoff = backoff
            .mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 2.0)
            .min(MAX_BACKOFF);
        d.next_attempt = now.plus(backoff);
        Some(d.next_attempt)
    }

    /// Returns when the next delivery not in flight is due (one waiting behind an older one
    /// of its alert may be later: it is taken when that one is delivered).
    pub fn next_due(&self) -> Option<Timestamp> {
        self.deliveries
            .iter()
            .filter(|d| !d.in_flight)
            .map(|d| d.next_attempt)
            .min()
    }

    /// Returns how many deliveries wait.
    pub fn len(&self) -> usize {
        self.deliveries.len()
    }

    /// Returns true when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// Returns how many deliveries were dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hands every delivery out again (its worker is gone: after a reload).
    pub fn reset_in_flight(&mut self) {
        for d in &mut self.deliveries {
            d.in_flight = false;
        }
    }

    /// Moves deliveries to the new index of their sink; drops those whose sink is gone.
    pub fn remap_sinks(&mut self, map: impl Fn(&Delivery) -> Option<usize>) {
        self.deliveries.retain_mut(|d| match map(d) {
            Some(new) => {
                d.sink = new;
                true
            }
            None => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::engine::{AlertKey, Details, NotificationStatus};
    use crate::types::{AlertClass, Severity};

    fn note() -> Notification {
        Notification {
            key: AlertKey::global(AlertClass::VpnUnreachable),
            severity: Severity::Critical,
            status: NotificationStatus::Firing,
            repeat: false,
            details: Details {
                summary: "s".into(),
                reason: "r".into(),
                vpn_id: None,
                severity: None,
                since: None,
                cause: None,
            },
            starts_at: Timestamp::from_secs(0),
            ends_at: None,
            created_at: Timestamp::from_secs(0),
        }
    }

    #[test]
    fn failed_deliveries_back_off_and_are_retried_until_delivered() {
        let mut o = Outbox::default();
        o.push(0, "log".into(), note(), Timestamp::from_secs(10));
        let d = o.take_due(Timestamp::from_secs(10));
        assert_eq!(d.len(), 1);
        assert!(
            o.take_due(Timestamp::from_secs(10)).is_empty(),
            "in flight is not handed out twice"
        );
        assert_eq!(
            o.failed(d[0].id, Timestamp::from_secs(10), 0.0),
            Some(Timestamp::from_secs(11))
        );
        assert!(o.take_due(Timestamp::from_millis(10_999)).is_empty());
        let d = o.take_due(Timestamp::from_secs(11));
        assert_eq!(d[0].attempts, 2);
        assert_eq!(
            o.failed(d[0].id, Timestamp::from_secs(11), 0.0),
            Some(Timestamp::from_secs(13))
        );
        let mut now = Timestamp::from_secs(13);
        for _ in 0..20 {
            let d = o.take_due(now);
            assert_eq!(d.len(), 1, "retried, never dropped");
            o.failed(d[0].id, now, 0.99);
            let next = o.next_due().unwrap();
            assert!(next.since(now) <= MAX_BACKOFF, "never longer than the cap");
            now = next;
        }
        let d = o.take_due(now);
        o.delivered(d[0].id);
        assert!(o.is_empty());
    }

    #[test]
    fn a_sink_gets_an_alerts_notifications_in_order_even_while_one_is_retried() {
        let t = Timestamp::from_secs;
        let mut o = Outbox::default();
        o.push(0, "sns".into(), note(), t(10));
        let firing = o.take_due(t(10)).remove(0);
        o.failed(firing.id, t(10), 0.0);
        // The alert resolves while its FIRING waits for a retry; another alert's page and
        // another sink's copy are not held.
        let resolved = Notification {
            status: NotificationStatus::Resolved,
            ..note()
        };
        o.push(0, "sns".into(), resolved.clone(), t(10));
        o.push(1, "log".into(), resolved, t(10));
        let other = Notification {
            key: AlertKey::global(AlertClass::ControlPlaneUnavailable),
            ..note()
        };
        o.push(0, "sns".into(), other, t(10));
        let due: Vec<(usize, AlertClass, NotificationStatus)> = o
            .take_due(Timestamp::from_millis(10_500))
            .iter()
            .map(|d| (d.sink, d.notification.key.class, d.notification.status))
            .collect();
        assert_eq!(
            due,
            [
                (1, AlertClass::VpnUnreachable, NotificationStatus::Resolved),
                (
                    0,
                    AlertClass::ControlPlaneUnavailable,
                    NotificationStatus::Firing
                ),
            ]
        );
        // The FIRING goes out again, then, once delivered, the RESOLVED.
        let again = o.take_due(t(20));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].notification.status, NotificationStatus::Firing);
        o.delivered(again[0].id);
        let last = o.take_due(t(20));
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].notification.status, NotificationStatus::Resolved);
    }

    #[test]
    fn the_outbox_is_bounded_and_counts_what_it_drops() {
        let mut o = Outbox::default();
        for _ in 0..CAPACITY {
            assert!(!o.push(0, "log".into(), note(), Timestamp::from_secs(0)));
        }
        assert!(o.push(0, "log".into(), note(), Timestamp::from_secs(0)));
        assert_eq!(o.len(), CAPACITY);
        assert_eq!(o.dropped(), 1);
    }

    #[test]
    fn deliveries_follow_their_sink_by_identity_and_are_dropped_when_it_is_gone() {
        let mut o = Outbox::default();
        o.push(
            0,
            "sns:arn:aws:sns:us-east-1:1:a".into(),
            note(),
            Timestamp::from_secs(0),
        );
        o.push(1, "log".into(), note(), Timestamp::from_secs(0));
        // The new config lists the log sink first and has no SNS sink.
        o.remap_sinks(|d| (d.sink_id == "log").then_some(0));
        let d = o.take_due(Timestamp::from_secs(0));
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].sink, d[0].sink_id.as_str()), (0, "log"));
    }

    #[test]
    fn in_flight_deliveries_are_retried_after_a_restart() {
        let mut o = Outbox::default();
        o.push(0, "log".into(), note(), Timestamp::from_secs(0));
        o.take_due(Timestamp::from_secs(0));
        let saved = serde_json::to_string(&o).unwrap();
        let mut restored: Outbox = serde_json::from_str(&saved).unwrap();
        assert_eq!(restored.take_due(Timestamp::from_secs(0)).len(), 1);
    }
}
