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
/// The most connections one peer address may hold open: far below [`MAX_CONNECTIONS`], so
/// that a client holding half-sent requests open can never lock SiteScope out.
pub const MAX_PER_PEER: usize = 32;

/// Open connections per peer address.
#[derive(Default)]
struct PeerSlots(Mutex<HashMap<IpAddr, usize>>);

/// One peer's connection, counted until dropped.
struct PeerSlot(Arc<PeerSlots>, IpAddr);

impl PeerSlots {
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= MAX_PER_PEER {
            return None;
        }
        *count += 1;
        Some(PeerSlot(self.clone(), ip))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.1) {
            *count -= 1;
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
        let Some(peer_slot) = peers.acquire(peer.ip()) else {
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
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, app, cancel).await,
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, peer, app, cancel).await,
            }
            drop(permit);
            drop(peer_slot);
        });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, app: Router, cancel: CancellationToken)
where
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
        .header_read_timeout(HEADER_TIMEOUT)
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
