//! The pingers live across config generations: a reload re-points the pinger of every
//! target whose address and probe settings did not change at the new monitor, stops the
//! pingers of targets that went, and starts pingers for new ones. Only a change of ICMP
//! socket kind restarts them all.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use crate::config::{Config, ProbeSettings};
use crate::messages::Observation;
use crate::probe::icmp::IcmpSockets;
use crate::probe::pinger::{splay, PingerRoute, PingerTask, RouteCell};
use crate::probe::tcp::TcpProber;

/// What makes a pinger reusable: where it pings and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PingerKey {
    address: Ipv4Addr,
    /// A TCP target's port (`None`: ICMP).
    tcp_port: Option<u16>,
    settings: ProbeSettings,
}

struct Running {
    route: RouteCell,
    cancel: CancellationToken,
}

/// What an update did, for the reload log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingerChanges {
    pub kept: usize,
    pub started: usize,
    pub stopped: usize,
}

/// The running pingers, by what they ping.
pub struct PingerPool {
    running: HashMap<PingerKey, Running>,
    sockets: Option<Arc<IcmpSockets>>,
    tasks: TaskTracker,
    root: CancellationToken,
}

impl PingerPool {
    /// Starts with no pingers; they stop with `root`.
    pub fn new(root: CancellationToken) -> Self {
        Self {
            running: HashMap::new(),
            sockets: None,
            tasks: TaskTracker::new(),
            root,
        }
    }

    /// Makes the pingers match `config`, every one sending to `observations`.
    pub fn update(
        &mut self,
        config: &Config,
        sockets: Option<&Arc<IcmpSockets>>,
        observations: &mpsc::Sender<Observation>,
    ) -> PingerChanges {
        let mut changes = PingerChanges::default();
        let same = match (&self.sockets, sockets) {
            (Some(running), Some(next)) => Arc::ptr_eq(running, next),
            (None, None) => true,
            _ => false,
        };
        if !same {
            changes.stopped += self.running.len();
            for (_, r) in self.running.drain() {
                r.cancel.cancel();
            }
            self.sockets = sockets.cloned();
        }
        let wanted: HashMap<PingerKey, usize> = config
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    PingerKey {
                        address: t.address,
                        tcp_port: t.tcp_port,
                        settings: t.probe,
                    },
                    i,
                )
            })
            .collect();
        self.running.retain(|key, r| {
            let keep = wanted.contains_key(key);
            if !keep {
                r.cancel.cancel();
                changes.stopped += 1;
            }
            keep
        });
        let count = config.targets.len();
        let ident_base = std::process::id() as u16;
        for (key, index) in wanted {
            let route = PingerRoute {
                target: config.targets[index].id,
                observations: observations.clone(),
            };
            if let Some(r) = self.running.get(&key) {
                r.route.replace(route);
                changes.kept += 1;
                continue;
            }
            let route_cell = RouteCell::new(route);
            let cancel = self.root.child_token();
            let task = PingerTask {
                route: route_cell.clone(),
                settings: key.settings,
                splay: splay(index, count, key.settings.interval),
                cancel: cancel.clone(),
            };
            match key.tcp_port {
                Some(port) => {
                    self.tasks
                        .spawn(task.run(TcpProber::new(key.address, port)));
                }
                None => {
                    // Only a config whose targets are all TCP runs without one.
                    let Some(sockets) = sockets else {
                        error!(address = %key.address, "no ICMP socket for an ICMP target: not probed");
                        continue;
                    };
                    let prober = sockets.prober(
                        key.address,
                        key.settings.payload_bytes,
                        ident_base.wrapping_add(index as u16),
                    );
                    self.tasks.spawn(task.run(prober));
                }
            }
            self.running.insert(
                key,
                Running {
                    route: route_cell,
                    cancel,
                },
            );
            changes.started += 1;
        }
        changes
    }

    /// Stops every pinger and waits for them, at most `limit`.
    pub async fn stop(&mut self, limit: std::time::Duration) {
        for (_, r) in self.running.drain() {
            r.cancel.cancel();
        }
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
    }
}

/// The ICMP socket's kind as `/status` and the metrics name it: `none` without one.
pub(super) fn socket_label(sockets: &Option<Arc<IcmpSockets>>) -> &'static str {
    sockets.as_ref().map_or("none", |s| s.socket_type().label())
}

/// Opens the ICMP socket `config` asks for, or reuses the running generation's when its
/// kind is unchanged. Only a config whose targets are all TCP runs without one.
pub(super) fn open_sockets(
    config: &Config,
    running: Option<(&Config, &Option<Arc<IcmpSockets>>)>,
) -> anyhow::Result<Option<Arc<IcmpSockets>>> {
    if let Some((running, Some(sockets))) = running {
        if running.socket == config.socket {
            return Ok(Some(sockets.clone()));
        }
    }
    match IcmpSockets::open(config.socket, config.targets.len()) {
        Ok(sockets) => Ok(Some(sockets)),
        // Services watched over TCP need no privilege for ICMP (a container without
        // CAP_NET_RAW, a locked ping_group_range).
        Err(error) if config.targets.iter().all(|t| t.tcp_port.is_some()) => {
            warn!(
                %error,
                "no ICMP socket: every target is TCP, so tunnelkeeper runs without one (path MTU is not measured)"
            );
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}
