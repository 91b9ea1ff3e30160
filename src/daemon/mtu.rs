//! Starts the path-MTU tasks of a config generation: one per tunnel with pinned targets,
//! on a socket of their own, so that their DF probes never queue behind or ahead of the
//! keepalive pings.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;
use crate::messages::Observation;
use crate::probe::icmp::IcmpSockets;
use crate::probe::mtu::MtuTask;
use crate::probe::pinger::splay;

/// The longest wait for a tunnel's first measurement.
const FIRST_WITHIN: Duration = Duration::from_secs(10);

/// Spawns the tasks on `tasks`; they stop with `cancel`.
pub fn start_mtu_probing(
    config: &Config,
    keepalive: &IcmpSockets,
    observations: &mpsc::Sender<Observation>,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) {
    if !config.mtu.enabled {
        return;
    }
    let probed: Vec<_> = config
        .tunnel_ids()
        .filter_map(|id| Some((id, *config.tunnel(id).targets.first()?)))
        .collect();
    if probed.is_empty() {
        return;
    }
    let sockets: Arc<IcmpSockets> = match keepalive.open_path_mtu() {
        Ok(sockets) => sockets,
        Err(error) => {
            warn!(%error, "cannot open the path-MTU socket: path MTU is not measured");
            return;
        }
    };
    info!(
        tunnels = probed.len(),
        interval = %humantime::format_duration(config.mtu.interval),
        "path-MTU probing"
    );
    // Identifiers apart from the keepalive pingers' (which count up from the pid).
    let ident_base = (std::process::id() as u16) ^ 0x8000;
    for (index, (id, target)) in probed.iter().enumerate() {
        let spec = &config.targets[target.0];
        let task = MtuTask {
            tunnel: *id,
            target: spec.address,
            expected: config.tunnel(*id).expected_mtu,
            interval: config.mtu.interval,
            timeout: spec.probe.timeout,
            splay: splay(index, probed.len(), config.mtu.interval.min(FIRST_WITHIN)),
            observations: observations.clone(),
            cancel: cancel.clone(),
        };
        let prober = sockets.prober(spec.address, 0, ident_base.wrapping_add(index as u16));
        tasks.spawn(task.run(prober));
    }
}
