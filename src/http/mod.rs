//! The HTTP endpoint: `/health` (the SiteScope check), `/status` (JSON), `/metrics`
//! (Prometheus), `/-/healthy` and `/-/ready`, served from snapshots so that no request
//! waits on probing. The server refuses oversized requests and drops slow clients.
//! The NOC page (`/`, `/target/ADDR`) is in [`page`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::liveness::{stalled, Watched};
use crate::snapshot::Snapshot;

mod auth_limit;
mod outages;
pub mod page;
pub mod security;
mod server;
mod test_page;

pub use server::{
    serve, HEADER_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_CONNECTION_AGE, MAX_HEADER_BYTES,
};

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// The latest snapshot (it also carries the current metrics).
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Set once the config is loaded and the first probe round is out.
    pub ready: Arc<AtomicBool>,
    /// Where `POST /-/reload` asks for a reload; `None` disables it.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Whether the running config enables `POST /-/reload`.
    pub lifecycle: Arc<AtomicBool>,
    /// Where `POST /-/test-page` asks for a test page; `None` disables it.
    pub test_pages: Option<mpsc::Sender<crate::alert::test_page::TestPageRequest>>,
    /// TLS and basic auth in force.
    pub security: security::SharedSecurity,
    /// The core loops (monitor first): `/-/healthy` fails when one stops, and `/health`
    /// says STALE when the monitor does.
    pub watched: Vec<Watched>,
    /// The last reload's outcome: `/status` has it, `/health` and the NOC page say when
    /// it was refused.
    pub reload_health: watch::Receiver<crate::reload::ReloadHealth>,
    /// The outage log: `/outages` and the page's "Recent outages".
    pub outages: Arc<crate::outage_log::OutageLog>,
    /// The history's ring files: the charts and incident bundles read them.
    pub rings: crate::history_file::Rings,
    /// Whether the alert state reaches the disk: `/status` has it, `/health` says when not.
    pub state_save: watch::Receiver<crate::alert::state_writer::SaveHealth>,
}

/// The `/status` body: the snapshot, with what lives outside the monitor.
#[derive(serde::Serialize)]
struct StatusBody<'a> {
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    /// The daemon's process id, which `tunnelkeeper reload` signals.
    pid: u32,
    /// The last config reload and its outcome.
    reload: crate::reload::ReloadHealth,
    /// Whether the alert state reaches the disk.
    state_save: crate::alert::state_writer::SaveHealth,
    /// What the start read back of the saved history (null without a file).
    history_restored: Option<crate::history::disk::Restored>,
}

/// A request to reload the config; the answer says whether it was applied.
pub struct ReloadRequest {
    /// Where the outcome goes: a summary, or why the new config was refused.
    pub respond: oneshot::Sender<Result<String, String>>,
}

/// The peer of a connection, put into each request by [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Builds every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index_page))
        .route("/target/{address}", get(page::target_page))
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/outages", get(outages::outages))
        .route("/outages/{id}", get(outages::outage))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/-/test-page", post(test_page::test_page))
        .fallback(not_found)
        .layer(middleware::from_fn(refuse_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), require_user))
        .with_state(state)
}

const TEXT: &str = "text/plain; charset=utf-8";

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How long the monitor may go without a tick before `/health` stops vouching for its
/// last verdict (it ticks every 500 ms).
pub const STALE_AFTER: Duration = Duration::from_secs(5);

async fn health(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshots.borrow().clone();
    if let Some(monitor) = state.watched.first() {
        let silence = monitor.heartbeat.silence();
        if silence > STALE_AFTER {
            let body = format!(
                "TUNNELKEEPER STALE: the monitor has not run for {} s; its last verdict was {}\n",
                silence.as_secs(),
                snapshot.vpn.token()
            );
            return no_store(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, TEXT)],
                    body,
                )
                    .into_response(),
            );
        }
    }
    let status =
        StatusCode::from_u16(snapshot.health.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    // A refused reload is told on a line of its own at the end: the first line and the
    // status code stay the verdict's, so SiteScope pages on tunnels, not on a typo.
    let lines: Vec<String> = [
        state.reload_health.borrow().health_line(),
        state.state_save.borrow().health_line(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let body = if lines.is_empty() {
        snapshot.health.body.clone()
    } else {
        let mut body = snapshot.health.body.to_vec();
        for line in lines {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        bytes::Bytes::from(body)
    };
    no_store((status, [(header::CONTENT_TYPE, TEXT)], body).into_response())
}

// Encoding /status and /metrics for thousands of targets takes long enough to hold up the
// pingers and the ICMP receive task on the runtime's few threads: it runs on the blocking
// pool instead.
async fn status(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshots.borrow().clone();
    let reload = state.reload_health.borrow().clone();
    let state_save = state.state_save.borrow().clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let history_restored = (snapshot.history.as_ref()).and_then(|h| {
            h.lock()
                .unwrap_or_else(|p| p.into_inner())
                .restored()
                .cloned()
        });
        serde_json::to_vec_pretty(&StatusBody {
            snapshot: &snapshot,
            pid: std::process::id(),
            reload,
            state_save,
            history_restored,
        })
    })
    .await;
    match encoded {
        Ok(Ok(json)) => {
            no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response())
        }
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode status: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshots.borrow().clone();
    let Some(metrics) = &snapshot.metrics else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            "starting\n",
        )
            .into_response();
    };
    // A render of thousands of targets takes a core for tens of milliseconds: two at a time.
    static RENDERS: Semaphore = Semaphore::const_new(2);
    let Ok(slot) = RENDERS.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let metrics = metrics.clone();
    // Streamed: the renderer hands on pieces as the client takes them. A client that stops
    // reading gets its connection cut after METRICS_STALL (not a short body that would
    // parse), and the render slot goes back.
    let (pieces, body) = mpsc::channel::<Bytes>(2);
    let finished = Arc::new(AtomicBool::new(false));
    let renderer_finished = Arc::clone(&finished);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let complete = metrics.render_to(|piece| {
            let send = tokio::time::timeout(METRICS_STALL, pieces.send(Bytes::from(piece)));
            matches!(runtime.block_on(send), Ok(Ok(())))
        });
        renderer_finished.store(complete, Ordering::Release);
        drop(pieces);
    });
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        Body::new(ChannelBody {
            pieces: body,
            finished,
        }),
    )
        .into_response()
}

/// How long `/metrics` waits for a client to take the next piece.
const METRICS_STALL: Duration = Duration::from_secs(30);

/// A response body fed piece by piece through a channel. When the channel closes, the
/// body ends if the renderer finished, and fails (the connection is cut) if it gave up.
struct ChannelBody {
    pieces: mpsc::Receiver<Bytes>,
    finished: Arc<AtomicBool>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.pieces.poll_recv(cx).map(|piece| match piece {
            Some(bytes) => Some(Ok(http_body::Frame::data(bytes))),
            None if self.finished.load(Ordering::Acquire) => None,
            None => Some(Err(std::io::Error::other("the metrics render stopped"))),
        })
    }
}

/// Reloads the config when the lifecycle API is enabled (`[http] enable_lifecycle` or
/// `--web.enable-lifecycle`, Prometheus's convention); SIGHUP always works.
async fn reload(State(state): State<AppState>) -> Response {
    let text = |status: StatusCode, body: String| {
        (status, [(header::CONTENT_TYPE, TEXT)], body).into_response()
    };
    if !state.lifecycle.load(Ordering::Acquire) {
        return text(
            StatusCode::FORBIDDEN,
            "POST /-/reload is disabled: set enable_lifecycle = true under [http] or start with \
             --web.enable-lifecycle (SIGHUP always reloads)\n"
                .into(),
        );
    }
    let Some(tx) = &state.reload else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload is not available\n".into(),
        );
    };
    let (respond, answer) = oneshot::channel();
    if tx.send(ReloadRequest { respond }).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    match answer.await {
        Ok(Ok(summary)) => text(StatusCode::OK, format!("reloaded: {summary}\n")),
        Ok(Err(error)) => text(
            StatusCode::BAD_REQUEST,
            format!("config refused, the old one keeps running: {error}\n"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
    }
}

async fn healthy(State(state): State<AppState>) -> Response {
    let silences: Vec<_> = state
        .watched
        .iter()
        .map(|w| (w.name, w.heartbeat.silence(), w.max_silence))
        .collect();
    match stalled(&silences) {
        None => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], "OK\n").into_response(),
        Some(name) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            format!("NOT HEALTHY: the {name} stopped making progress\n"),
        )
            .into_response(),
    }
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
        "not found: try / (the NOC page), /health, /status, /metrics, /-/healthy, /-/ready or POST /-/reload\n",
    )
        .into_response()
}

/// Asks for basic-auth credentials when users are configured (every route: SiteScope and
/// Prometheus both send them). The bcrypt check runs off the async workers, one at a time,
/// and an address that keeps sending wrong passwords is braked (429).
async fn require_user(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let security = state
        .security
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if security.asks_for_users() {
        let header = request.headers().get(header::AUTHORIZATION).cloned();
        let peer = request.extensions().get::<Peer>().map(|p| p.0.ip());
        match security.check(peer, header).await {
            security::AuthOutcome::Allowed => {}
            security::AuthOutcome::Refused => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [
                        (header::CONTENT_TYPE, TEXT),
                        (header::WWW_AUTHENTICATE, "Basic realm=\"tunnelkeeper\""),
                    ],
                    "unauthorized\n",
                )
                    .into_response();
            }
            security::AuthOutcome::Throttled(wait) => {
                let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        (header::CONTENT_TYPE, TEXT.to_string()),
                        (header::RETRY_AFTER, seconds.to_string()),
                    ],
                    "too many wrong passwords from this address; try again later\n",
                )
                    .into_response();
            }
        }
    }
    next.run(request).await
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{Method, Request as HttpRequest};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::health::HealthModel;
    use crate::messages::ProbeOutcome;
    use crate::metrics::Metrics;
    use crate::probe::stats::TargetStats;
    use crate::snapshot::Meta;
    use crate::types::{TargetId, Timestamp};

    const CONFIG: &str = r#"
        [probe]
        down_after = 3
        [[vpn]]
        id = "vpn-0123456789abcdef0"
        name = "dc"
          [[vpn.tunnel]]
          name = "dc-a"
          targets = ["172.16.1.10"]
          [[vpn.tunnel]]
          name = "dc-b"
          targets = ["172.16.2.10"]
    "#;

    /// Builds the app with the model after `script`: (target, replied) pairs, one per second.
    fn app(script: &[(usize, bool)], ready: bool) -> Router {
        app_watching(script, ready, Vec::new())
    }

    fn app_watching(script: &[(usize, bool)], ready: bool, watched: Vec<Watched>) -> Router {
        let config = Config::parse(CONFIG, "test").unwrap();
        let mut model = HealthModel::new(&config);
        let mut stats = vec![TargetStats::default(); config.targets.len()];
        for (i, &(target, replied)) in script.iter().enumerate() {
            let outcome = if replied {
                ProbeOutcome::Reply {
                    rtt: Duration::from_millis(4),
                }
            } else {
                ProbeOutcome::Timeout {
                    after: Duration::from_secs(1),
                }
            };
            stats[target].record(&outcome);
            model.handle_probe(
                TargetId(target),
                &outcome,
                Timestamp::from_secs(1_700_000_000 + i as u64),
            );
        }
        let meta = Meta {
            started_at: Timestamp::from_secs(1_700_000_000),
            icmp_socket: "raw",
        };
        let mut snapshot = Snapshot::build(
            &config,
            &model,
            None,
            &stats,
            meta,
            Timestamp::from_secs(1_700_000_100),
        );
        let reload = crate::metrics::ReloadStatus {
            successful: true,
            last_success: Timestamp::from_secs(1_700_000_000),
        };
        snapshot.metrics = Some(Arc::new(Metrics::new(&config, "raw", 0, reload)));
        let (_tx, snapshots) = watch::channel(Arc::new(snapshot));
        router(AppState {
            snapshots,
            ready: Arc::new(AtomicBool::new(ready)),
            reload: None,
            lifecycle: Arc::new(AtomicBool::new(false)),
            test_pages: None,
            security: security::shared(security::Security::open()),
            watched,
            reload_health: watch::channel(crate::reload::ReloadHealth::started(
                Timestamp::from_secs(1_700_000_000),
            ))
            .1,
            outages: Arc::new(crate::outage_log::OutageLog::in_memory(Vec::new())),
            rings: Default::default(),
            state_save: watch::channel(Default::default()).1,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_monitor_makes_health_stale_and_healthy_fail() {
        let monitor = crate::liveness::Heartbeat::new();
        let watched = vec![Watched {
            name: "monitor",
            heartbeat: monitor.clone(),
            max_silence: Duration::from_secs(10),
        }];
        let app = app_watching(&[(0, true), (1, true)], true, watched);
        tokio::time::advance(Duration::from_secs(4)).await;
        monitor.beat();
        let (status, body) = get(app.clone(), "/health").await;
        assert_eq!(
            (status, body.lines().next()),
            (
                StatusCode::OK,
                Some("TUNNELKEEPER OK since 2023-11-14T22:13:21Z")
            )
        );
        // The monitor stops ticking: its last snapshot is no longer vouched for.
        tokio::time::advance(Duration::from_secs(6)).await;
        let (status, body) = get(app.clone(), "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with(
                "TUNNELKEEPER STALE: the monitor has not run for 6 s; its last verdict was OK"
            ),
            "{body}"
        );
        assert_eq!(get(app.clone(), "/-/healthy").await.0, StatusCode::OK);
        tokio::time::advance(Duration::from_secs(5)).await;
        let (status, body) = get(app, "/-/healthy").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "NOT HEALTHY: the monitor stopped making progress\n");
    }

    async fn call(
        app: Router,
        method: Method,
        uri: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let mut request = HttpRequest::builder().method(method).uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = app.oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, String) {
        call(app, Method::GET, uri, Body::empty(), &[]).await
    }

    const UP_A: (usize, bool) = (0, true);
    const UP_B: (usize, bool) = (1, true);
    const LOST_A: (usize, bool) = (0, false);
    const LOST_B: (usize, bool) = (1, false);

    #[tokio::test]
    async fn health_says_starting_with_503_before_the_first_verdict() {
        let (status, body) = get(app(&[], true), "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("TUNNELKEEPER STARTING"), "{body}");
    }

    #[tokio::test]
    async fn health_says_ok_with_200_when_every_tunnel_is_up() {
        let (status, body) = get(app(&[UP_A, UP_B], true), "/health").await;
        assert_eq!(status, StatusCode::OK);
        let mut lines = body.lines();
        assert_eq!(
            lines.next().unwrap(),
            // OK since the last target was judged.
            "TUNNELKEEPER OK since 2023-11-14T22:13:21Z"
        );
        assert_eq!(
            lines.next().unwrap(),
            "connection dc (vpn-0123456789abcdef0): healthy since 2023-11-14T22:13:20Z"
        );
        assert!(lines.next().unwrap().starts_with("  tunnel dc-a: up since"));
    }

    #[tokio::test]
    async fn health_says_degraded_with_200_and_the_reason_when_one_tunnel_is_down() {
        let (status, body) = get(app(&[UP_A, UP_B, LOST_A, LOST_A, LOST_A], true), "/health").await;
        assert_eq!(status, StatusCode::OK);
        let first = body.lines().next().unwrap();
        assert!(first.starts_with("TUNNELKEEPER DEGRADED since "), "{first}");
        assert!(
            first.contains("dc-a down: pinned targets unreachable"),
            "{first}"
        );
        assert!(body.contains("  tunnel dc-a: down since"), "{body}");
    }

    #[tokio::test]
    async fn health_says_critical_with_503_when_both_tunnels_are_down() {
        let script = [UP_A, UP_B, LOST_A, LOST_B, LOST_A, LOST_B, LOST_A, LOST_B];
        let (status, body) = get(app(&script, true), "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("TUNNELKEEPER CRITICAL since "), "{body}");
        assert!(
            body.lines()
                .next()
                .unwrap()
                .contains("no working path to the datacenter (0 of 2 tunnels up)"),
            "{body}"
        );
        assert!(
            body.contains("connection dc (vpn-0123456789abcdef0): down since"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn status_is_json_with_per_target_numbers() {
        let (status, body) = get(app(&[UP_A, UP_B, LOST_A], true), "/status").await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["vpn"]["state"], "ok");
        let tunnel = &json["connections"][0]["tunnels"][0];
        assert_eq!(tunnel["name"], "dc-a");
        assert_eq!(tunnel["state"], "up");
        assert_eq!(tunnel["control_plane"]["state"], "unknown");
        let target = &tunnel["targets"][0];
        assert_eq!(target["address"], "172.16.1.10");
        assert_eq!(target["sent"], 2);
        assert_eq!(target["replies"], 1);
        assert_eq!(target["recent_loss_percent"], 50.0);
        assert_eq!(target["rtt_p50_seconds"], 0.004);
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text_with_every_series() {
        let (status, body) = get(app(&[], true), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for series in [
            "tunnelkeeper_probe_sent_total{address=\"172.16.1.10\",proto=\"icmp\",target=\"172.16.1.10\",tunnel=\"dc-a\",vpn=\"dc\"} 0",
            "tunnelkeeper_probe_rtt_seconds_bucket{address=\"172.16.2.10\",proto=\"icmp\",target=\"172.16.2.10\",tunnel=\"dc-b\",vpn=\"dc\",le=\"0.001\"} 0",
            "tunnelkeeper_tunnel_state{state=\"unknown\",tunnel=\"dc-a\",vpn=\"dc\"} 1",
            "tunnelkeeper_connection_state{state=\"unknown\",vpn=\"dc\"} 1",
            "tunnelkeeper_vpn_state{state=\"starting\"} 1",
            "tunnelkeeper_vpn_state{state=\"critical\"} 0",
        ] {
            assert!(body.contains(series), "{series} missing");
        }
    }

    #[tokio::test]
    async fn a_metrics_body_ends_only_when_the_render_finished() {
        for finished in [true, false] {
            let (tx, rx) = mpsc::channel(2);
            tx.send(Bytes::from_static(b"a 1\n")).await.unwrap();
            drop(tx);
            let body = Body::new(ChannelBody {
                pieces: rx,
                finished: Arc::new(AtomicBool::new(finished)),
            });
            let collected = body.collect().await;
            // A render that gave up (a stalled client) must not look like a whole scrape.
            assert_eq!(collected.is_ok(), finished);
        }
    }

    #[tokio::test]
    async fn liveness_and_readiness() {
        assert_eq!(get(app(&[], false), "/-/healthy").await.0, StatusCode::OK);
        assert_eq!(
            get(app(&[], false), "/-/ready").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(app(&[], true), "/-/ready").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_other_methods_405() {
        let (status, body) = get(app(&[], true), "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("/health"));
        let (status, _) = call(app(&[], true), Method::POST, "/health", Body::empty(), &[]).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _) = call(
            app(&[], true),
            Method::DELETE,
            "/metrics",
            Body::empty(),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn test_page_is_allowed_from_loopback_only_while_the_lifecycle_api_is_off() {
        let from = |peer: &str| {
            let mut request = HttpRequest::builder()
                .method(Method::POST)
                .uri("/-/test-page")
                .body(Body::empty())
                .unwrap();
            request.extensions_mut().insert(Peer(peer.parse().unwrap()));
            request
        };
        let remote = app(&[], true)
            .oneshot(from("10.0.1.7:40000"))
            .await
            .unwrap();
        assert_eq!(remote.status(), StatusCode::FORBIDDEN);
        // From loopback it passes the check (and finds no daemon task in this test).
        let local = app(&[], true)
            .oneshot(from("127.0.0.1:40000"))
            .await
            .unwrap();
        assert_eq!(local.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn reload_is_refused_unless_the_lifecycle_api_is_enabled() {
        let (status, body) = call(
            app(&[], true),
            Method::POST,
            "/-/reload",
            Body::empty(),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("POST /-/reload is disabled"), "{body}");
        let (status, _) = get(app(&[], true), "/-/reload").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn oversized_or_unsized_bodies_are_refused() {
        let big = vec![b'x'; MAX_BODY_BYTES as usize + 1];
        let (status, _) = call(
            app(&[], true),
            Method::GET,
            "/health",
            Body::from(big.clone()),
            &[("content-length", &big.len().to_string())],
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, _) = call(
            app(&[], true),
            Method::GET,
            "/health",
            Body::from("x"),
            &[("transfer-encoding", "chunked")],
        )
        .await;
        assert_eq!(status, StatusCode::LENGTH_REQUIRED);
    }
}
