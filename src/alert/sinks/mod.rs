//! The sink workers that deliver notifications: the log, an SNS topic, Alertmanager. Log
//! and SNS take deliveries from the outbox and report each outcome; Alertmanager is kept in
//! step with the whole alert set.

mod alertmanager;
mod log;
mod sns;

pub use alertmanager::{alertmanager_body, post_test_alert, AlertmanagerSink, AmAlert, AM_RESEND};
pub use log::LogSink;
pub use sns::SnsSink;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::alert::engine::Notification;
use crate::alert::outbox::Delivery;
use crate::messages::{DeliveryReport, Observation};

/// Where each sink's deliveries go, by sink index.
pub enum SinkHandle {
    /// A worker taking outbox deliveries (log, SNS).
    Outbox(mpsc::Sender<Delivery>),
    /// Alertmanager, kept in step with the alert set.
    Alertmanager(watch::Sender<Vec<AmAlert>>),
}

/// Delivers one notification somewhere.
pub trait Deliver: Send + 'static {
    /// Delivers, or says why not.
    fn deliver(
        &mut self,
        n: &Notification,
    ) -> impl std::future::Future<Output = Result<(), (&'static str, String)>> + Send;
}

/// Runs one sink: takes deliveries, reports what became of each.
/// How long a delivery under way may still take once its generation ends.
pub const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);

pub async fn run_sink<D: Deliver>(
    index: usize,
    mut sink: D,
    mut deliveries: mpsc::Receiver<Delivery>,
    reports: mpsc::Sender<Observation>,
    cancel: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = cancel.cancelled() => return,
            d = deliveries.recv() => match d { Some(d) => d, None => return },
        };
        // A delivery under way is finished and reported even when the generation ends, so
        // that a reload never sends a page twice; a sink that hangs gets a bounded grace.
        let grace = async {
            cancel.cancelled().await;
            tokio::time::sleep(DELIVERY_GRACE).await;
        };
        let result = tokio::select! {
            _ = grace => return,
            r = sink.deliver(&delivery.notification) => r,
        };
        let report = DeliveryReport {
            id: delivery.id,
            sink: index,
            result,
        };
        if reports.send(Observation::Delivery(report)).await.is_err() {
            return;
        }
    }
}
