//! Late replies through the real monitor on paused time (the timeline harness): a reply
//! that came after the adaptive timeout but within the configured one ends the loss
//! streak, is re-counted as answered in `/status`, and the timeout in force shows there.

#[path = "support/timeline.rs"]
mod timeline;

use std::time::Duration;

use tunnelkeeper::messages::{Observation, ProbeOutcome, TimeoutInForce, TimeoutMode};
use tunnelkeeper::types::TargetId;

use timeline::Harness;

const ADAPTIVE: TimeoutInForce = TimeoutInForce {
    timeout: Duration::from_millis(100),
    mode: TimeoutMode::Adaptive,
};

async fn send(h: &Harness, observation: Observation) {
    let tx = h.running.as_ref().unwrap().tx.clone();
    tx.send(observation).await.unwrap();
}

async fn lost(h: &Harness, seq: u16) {
    send(
        h,
        Observation::Probe {
            target: TargetId(0),
            seq,
            at: tokio::time::Instant::now(),
            outcome: ProbeOutcome::Timeout {
                after: ADAPTIVE.timeout,
            },
            send_delay: Duration::ZERO,
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_late_reply_ends_the_loss_streak_and_counts_as_answered() {
    // The harness judges with down_after 3 and plays one reply a second per target.
    let mut h = Harness::new("0s");
    h.run_for(Duration::from_millis(5100)).await;
    send(
        &h,
        Observation::TimeoutInForce {
            target: TargetId(0),
            timeout: ADAPTIVE,
        },
    )
    .await;
    // Two requests of a burst given up at 100 ms, then the first one's reply at 150 ms,
    // then two more lost: never three lost in a row.
    lost(&h, 1000).await;
    lost(&h, 1001).await;
    send(
        &h,
        Observation::LateReply {
            target: TargetId(0),
            seq: 1000,
            at: tokio::time::Instant::now(),
            rtt: Duration::from_millis(150),
        },
    )
    .await;
    lost(&h, 1002).await;
    lost(&h, 1003).await;
    h.run_for(Duration::from_millis(600)).await;

    let down: Vec<_> = h.seen.iter().filter(|s| s.1[0] == "down").collect();
    assert!(down.is_empty(), "tunnel a went down: {down:?}");
    let snapshot = h.snapshot_rx.borrow().clone();
    let target = &snapshot.connections[0].tunnels[0].targets[0];
    assert_eq!(
        target.stats.timeouts, 3,
        "four given up, one of them answered late"
    );
    assert_eq!(
        target.stats.timeout_seconds,
        Some(ADAPTIVE.timeout.as_secs_f64())
    );
    assert_eq!(target.stats.timeout_mode, Some(ADAPTIVE.mode));
    let json = serde_json::to_value(target).unwrap();
    assert_eq!(json["timeout_seconds"], 0.1, "{json}");
    assert_eq!(json["timeout_mode"], "adaptive", "{json}");
}
