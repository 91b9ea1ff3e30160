//! A hardened HTTP/1 server for the routes: bounded headers and bodies, a header timeout,
//! a connection cap and a maximum connection age, so that no client can hold the check.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::security::SharedSecurity;
use super::Peer;

/// The largest request body accepted (no route takes one).
pub const MAX_BODY_BYTES: u64 = 16 * 1024;
/// The most bytes of request line and headers hyper buffers before answering 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open, however busy (keep-alive clients reconnect).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// The most connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 512;
/// The most connections one peer address may hold open while the server has room: far
/// below [`MAX_CONNECTIONS`]. Past half the cap it shrinks (see [`per_peer_limit`]).
pub const MAX_PER_PEER: usize = 32;
/// The header timeout of a connection accepted while more than three quarters of the
/// slots are taken: a slow client then holds its slot for a second, not five.
pub const HEADER_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(1);

/// How many connections one address may hold when `open` are open in all: [`MAX_PER_PEER`]
/// up to half the cap, then shrinking in step with the free slots, down to 1. Many
/// addresses each holding their share then settle well below the cap (64 addresses at
/// about 455 of 512), so that an address holding nothing, SiteScope's, still gets in.
pub fn per_peer_limit(open: usize) -> usize {
    let half = MAX_CONNECTIONS / 2;
    if open < half {
        return MAX_PER_PEER;
    }
    let free = MAX_CONNECTIONS.saturating_sub(open);
    (MAX_PER_PEER * free / half).max(1)
}

/// The header timeout for a connection accepted while `open` are open.
pub fn header_timeout(open: usize) -> Duration {
    if open * 4 > MAX_CONNECTIONS * 3 {
        HEADER_TIMEOUT_UNDER_PRESSURE
    } else {
        HEADER_TIMEOUT
    }
}

/// Open connections per peer address, and in all.
#[derive(Default)]
struct PeerSlots(Mutex<(HashMap<IpAddr, usize>, usize)>);

/// One peer's connection, counted until dropped.
struct PeerSlot(Arc<PeerSlots>, IpAddr);

impl PeerSlots {
    /// Counts a connection from `ip`, or refuses it; returns the count open before it.
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<(PeerSlot, usize)> {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (open, total) = &mut *guard;
        let before = *total;
        let count = open.entry(ip).or_default();
        if *count >= per_peer_limit(before) {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        *total += 1;
        Some((PeerSlot(self.clone(), ip), before))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut guard = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        let (open, total) = &mut *guard;
        if let Some(count) = open.get_mut(&self.1) {
            *count -= 1;
            *total -= 1;
            if *count == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Serves `app` on `listener` until `cancel`, then lets open requests finish briefly.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    security: SharedSecurity,
    cancel: CancellationToken,
) {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = Arc::new(PeerSlots::default());
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((peer_slot, open)) = peers.acquire(peer.ip()) else {
            debug!(%peer, "too many connections from this address, closing");
            crate::metrics::http_connection_refused(crate::metrics::RefusedBecause::PerPeer);
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "too many connections, closing");
            crate::metrics::http_connection_refused(crate::metrics::RefusedBecause::Total);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let header_timeout = header_timeout(open);
        let app = app.clone();
        let cancel = cancel.clone();
        let tls = security
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .tls
            .clone();
        connections.spawn(async move {
            match tls {
                // With TLS configured, plain HTTP is not served: a client that does not
                // finish the handshake within the header timeout is dropped.
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, app, cancel, header_timeout).await
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, peer, app, cancel, header_timeout).await,
            }
            drop(permit);
            drop(peer_slot);
        });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    cancel: CancellationToken,
    header_timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            async move {
                use tower::ServiceExt;
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(Peer(peer));
                app.oneshot(request).await
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_of_an_address_shrinks_as_the_slots_fill() {
        for (open, limit) in [
            (0, 32),
            (255, 32),
            (256, 32),
            (320, 24),
            (384, 16),
            (455, 7),
            (500, 1),
            (511, 1),
            (512, 1),
        ] {
            assert_eq!(per_peer_limit(open), limit, "{open} open");
        }
        assert_eq!(header_timeout(384), HEADER_TIMEOUT);
        assert_eq!(header_timeout(385), HEADER_TIMEOUT_UNDER_PRESSURE);
    }

    #[test]
    fn many_addresses_holding_their_share_leave_room_for_a_new_one() {
        let slots = Arc::new(PeerSlots::default());
        let mut held = Vec::new();
        // 64 addresses ask for 32 connections each, round after round.
        for _ in 0..MAX_PER_PEER {
            for a in 0..64u8 {
                if let Some(slot) = slots.acquire(IpAddr::from([127, 0, 0, a + 1])) {
                    held.push(slot);
                }
            }
        }
        assert!(held.len() < MAX_CONNECTIONS - 32, "{} held", held.len());
        assert!(slots.acquire(IpAddr::from([127, 0, 1, 1])).is_some());
    }
}
