//! The HTTP endpoint: `/health` (the SiteScope check), `/status` (JSON), `/metrics`
//! (Prometheus), `/-/healthy` and `/-/ready`, served from snapshots so that no request
//! waits on probing. The server refuses oversized requests and drops slow clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

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

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// The latest snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Set once the config is loaded and the pingers run.
    pub ready: Arc<AtomicBool>,
}

/// Builds every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .fallback(not_found)
        .layer(middleware::from_fn(refuse_bodies))
        .with_state(state)
}

const TEXT: &str = "text/plain; charset=utf-8";

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn health(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshots.borrow().clone();
    let status =
        StatusCode::from_u16(snapshot.health.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    no_store(
        (
            status,
            [(header::CONTENT_TYPE, TEXT)],
            snapshot.health.body.clone(),
        )
            .into_response(),
    )
}

async fn status(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshots.borrow().clone();
    match serde_json::to_vec_pretty(&*snapshot) {
        Ok(json) => no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response()),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode status: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

async fn healthy() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], "OK\n").into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], "READY\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            "NOT READY\n",
        )
            .into_response()
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, TEXT)],
        "not found: try /health, /status, /metrics, /-/healthy or /-/ready\n",
    )
        .into_response()
}

/// Refuses request bodies over [`MAX_BODY_BYTES`], and bodies of unknown length, before
/// any handler runs.
async fn refuse_bodies(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > MAX_BODY_BYTES) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONTENT_TYPE, TEXT)],
            "request body too large\n",
        )
            .into_response();
    }
    if length.is_none() && headers.contains_key(header::TRANSFER_ENCODING) {
        return (
            StatusCode::LENGTH_REQUIRED,
            [(header::CONTENT_TYPE, TEXT)],
            "a request body needs a Content-Length\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Serves `app` on `listener` until `cancel`, then lets open requests finish briefly.
pub async fn serve(listener: TcpListener, app: Router, cancel: CancellationToken) {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "too many connections, closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            serve_connection(stream, peer, app, cancel).await;
            drop(permit);
        });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    cancel: CancellationToken,
) {
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            async move {
                use tower::ServiceExt;
                app.oneshot(request.map(Body::new)).await
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
