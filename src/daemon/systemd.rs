//! systemd integration: `sd_notify` messages (`READY=1`, `STATUS=`, `RELOADING=1`,
//! `STOPPING=1`, `WATCHDOG=1`) over `$NOTIFY_SOCKET`, and a watchdog that pings only while
//! every loop of the daemon makes progress, so that a hung task gets the service restarted.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use crate::liveness::{stalled, Watched};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// Sends notifications to systemd; does nothing when not started by systemd.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Notifier {
        let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        } else {
            std::os::unix::net::SocketAddr::from_pathname(&path)
        };
        match (UnixDatagram::unbound(), addr) {
            (Ok(socket), Ok(addr)) => Notifier {
                socket: Some((socket, addr)),
            },
            (Err(e), _) | (_, Err(e)) => {
                warn!(socket = %path, error = %e, "cannot use NOTIFY_SOCKET; systemd will not hear from the daemon");
                Notifier::default()
            }
        }
    }

    /// Sends one message (`KEY=value` lines); errors are logged, never fatal.
    pub fn notify(&self, message: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            debug!(error = %e, message, "sd_notify failed");
        }
    }
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this process).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings systemd's watchdog every `interval / 2` while no loop has stalled.
pub async fn run_watchdog(
    notifier: Arc<Notifier>,
    interval: Duration,
    loops: Vec<Watched>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval / 2);
    let mut reported = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let silences: Vec<_> = loops
            .iter()
            .map(|l| (l.name, l.heartbeat.silence(), l.max_silence))
            .collect();
        match stalled(&silences) {
            None => {
                notifier.notify("WATCHDOG=1");
                reported = false;
            }
            Some(name) => {
                if !reported {
                    error!(task = name, "a loop has stopped making progress: withholding the watchdog ping so that systemd restarts the daemon");
                    reported = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::Heartbeat;

    #[test]
    fn a_loop_silent_past_its_limit_is_stalled() {
        let s = Duration::from_secs;
        assert_eq!(
            stalled(&[("pingers", s(1), s(5)), ("alerts", s(2), s(10))]),
            None
        );
        assert_eq!(
            stalled(&[("pingers", s(1), s(5)), ("alerts", s(11), s(10))]),
            Some("alerts")
        );
    }

    #[tokio::test]
    async fn the_watchdog_pings_only_while_every_loop_beats() {
        let dir = std::env::temp_dir().join(format!("tk-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = std::os::unix::net::SocketAddr::from_pathname(&path).unwrap();
        let notifier = Arc::new(Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), addr)),
        });

        let alive = Heartbeat::new();
        let stuck = Heartbeat::new();
        let loops = vec![
            Watched {
                name: "pingers",
                heartbeat: alive.clone(),
                max_silence: Duration::from_millis(300),
            },
            Watched {
                name: "alert loop",
                heartbeat: stuck.clone(),
                max_silence: Duration::from_millis(300),
            },
        ];
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_watchdog(
            notifier,
            Duration::from_millis(100),
            loops,
            cancel.clone(),
        ));

        let count = |listener: &UnixDatagram| {
            let mut buf = [0u8; 64];
            let mut n = 0;
            while let Ok(len) = listener.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1");
                n += 1;
            }
            n
        };
        // Both beat: pings flow.
        for _ in 0..5 {
            alive.beat();
            stuck.beat();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(count(&listener) >= 3);
        // One loop stops: after its limit, no more pings though the other still beats.
        for _ in 0..8 {
            alive.beat();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        count(&listener);
        for _ in 0..6 {
            alive.beat();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count(&listener), 0, "no WATCHDOG=1 while a loop is stalled");
        // It recovers: pings resume.
        stuck.beat();
        alive.beat();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(count(&listener) >= 1);
        cancel.cancel();
        task.await.unwrap();
    }
}
