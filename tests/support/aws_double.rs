//! A local double of the AWS APIs tunnelkeeper calls, for tests: EC2 `DescribeVpnConnections`
//! and `GetVpnTunnelReplacementStatus`, SNS `Publish` (query protocol: form-encoded POST,
//! XML answers) and CloudWatch `PutMetricData` (Smithy RPC v2 CBOR, as aws-sdk-cloudwatch
//! 1.100+ speaks it).
//!
//! Like EC2, `DescribeVpnConnections` fails as a whole with `InvalidVpnConnectionID.NotFound`
//! when one id of a `VpnConnectionId.N` list is unknown, and answers what exists for a
//! `vpn-connection-id` filter. `GetVpnTunnelReplacementStatus` answers each tunnel's
//! `maintenance` as set (requests are logged as service `ec2_maintenance`, which has its own
//! fail plan). `ReplaceVpnTunnel` (which moto does not serve) is logged as service
//! `ec2_replace` (with its own fail plan) and acts as AWS does when it applies pending
//! maintenance: the tunnel goes `DOWN` ("endpoint being replaced"), its pending
//! maintenance is cleared and `LastMaintenanceApplied` is now. It stays down (as with
//! `StartupAction=add`) until a test sets the connections again.
//!
//! Run: `aws-double [--listen 127.0.0.1:0]`; it prints `listening on ADDR` on stdout.
//! Tests steer it over HTTP on the same port:
//! - `PUT /_double/ec2/connections` with a JSON list of [`Connection`]s: what EC2 reports;
//! - `PUT /_double/fail/{ec2|ec2_maintenance|ec2_replace|sns|cloudwatch}` with a [`FailPlan`]: throttle, 5xx, hang,
//!   garbage, access_denied (EC2's UnauthorizedOperation), for `count` requests (or until changed);
//! - `GET /_double/requests` : every request received, as JSON, in order;
//! - `DELETE /_double/requests`: forget them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One VPN connection as EC2 reports it.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Connection {
    id: String,
    #[serde(default = "available")]
    state: String,
    #[serde(default)]
    static_routes_only: bool,
    /// Planted by tests: holds pre-shared keys in real answers.
    #[serde(default)]
    customer_gateway_configuration: String,
    #[serde(default)]
    tunnels: Vec<Tunnel>,
    /// List telemetry in reverse order of `tunnels` (AWS promises no order).
    #[serde(default)]
    telemetry_reversed: bool,
}

fn available() -> String {
    "available".into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct Tunnel {
    outside_ip: String,
    #[serde(default = "up")]
    status: String,
    #[serde(default)]
    status_message: String,
    /// Written verbatim, so a test can plant a malformed timestamp.
    #[serde(default = "epoch")]
    last_status_change: String,
    #[serde(default)]
    accepted_route_count: Option<i64>,
    #[serde(default)]
    startup_action: Option<String>,
    #[serde(default)]
    dpd_timeout_action: Option<String>,
    #[serde(default)]
    dpd_timeout_seconds: Option<i64>,
    #[serde(default)]
    ike_versions: Vec<String>,
    #[serde(default)]
    pre_shared_key: Option<String>,
    /// `LogOptions.CloudWatchLogOptions.LogEnabled`, left out when absent.
    #[serde(default)]
    log_enabled: Option<bool>,
    /// `LogOptions.CloudWatchLogOptions.BgpLogEnabled`, left out when absent.
    #[serde(default)]
    bgp_log_enabled: Option<bool>,
    /// `LogOptions.CloudWatchLogOptions.LogGroupArn`, left out when absent.
    #[serde(default)]
    log_group_arn: Option<String>,
    /// Leave this tunnel out of the telemetry list.
    #[serde(default)]
    no_telemetry: bool,
    /// What `GetVpnTunnelReplacementStatus` answers for this tunnel.
    #[serde(default)]
    maintenance: Maintenance,
}

/// `MaintenanceDetails`; each field left out when absent, timestamps written verbatim.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct Maintenance {
    #[serde(default)]
    pending: Option<String>,
    #[serde(default)]
    auto_apply_after: Option<String>,
    #[serde(default)]
    last_applied: Option<String>,
}

fn up() -> String {
    "UP".into()
}

fn epoch() -> String {
    "2026-01-01T00:00:00.000Z".into()
}

/// How the next requests to one service fail.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct FailPlan {
    /// `none`, `throttle`, `server_error`, `hang`, `garbage` or `access_denied`.
    mode: String,
    /// How many requests fail; absent: all until the plan changes.
    count: Option<u32>,
}

#[derive(Default)]
struct Double {
    connections: Vec<Connection>,
    fail: BTreeMap<String, FailPlan>,
    requests: Vec<Value>,
    next_id: u64,
}

type Shared = Arc<Mutex<Double>>;

impl Double {
    /// Takes one failure off the plan for `service`, if any.
    fn take_failure(&mut self, service: &str) -> Option<String> {
        let plan = self.fail.get_mut(service)?;
        if plan.mode.is_empty() || plan.mode == "none" {
            return None;
        }
        match &mut plan.count {
            Some(0) => None,
            Some(n) => {
                *n -= 1;
                Some(plan.mode.clone())
            }
            None => Some(plan.mode.clone()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .expect("--listen ADDR")
                    .parse()
                    .expect("an address")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/", post(query_api))
        .route(
            "/service/GraniteServiceVersion20100801/operation/{op}",
            post(cloudwatch),
        )
        .route("/_double/ec2/connections", put(set_connections))
        .route("/_double/fail/{service}", put(set_failure))
        .route("/_double/requests", get(requests).delete(clear_requests))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    println!("listening on {}", listener.local_addr().unwrap());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    axum::serve(listener, app).await.unwrap();
}

async fn set_connections(
    State(state): State<Shared>,
    Json(connections): Json<Vec<Connection>>,
) -> StatusCode {
    state.lock().unwrap().connections = connections;
    StatusCode::NO_CONTENT
}

async fn set_failure(
    State(state): State<Shared>,
    Path(service): Path<String>,
    Json(plan): Json<FailPlan>,
) -> StatusCode {
    state.lock().unwrap().fail.insert(service, plan);
    StatusCode::NO_CONTENT
}

async fn requests(State(state): State<Shared>) -> Json<Vec<Value>> {
    Json(state.lock().unwrap().requests.clone())
}

async fn clear_requests(State(state): State<Shared>) -> StatusCode {
    state.lock().unwrap().requests.clear();
    StatusCode::NO_CONTENT
}

/// EC2 and SNS share the query protocol; the `Action` tells them apart.
async fn query_api(State(state): State<Shared>, body: Bytes) -> Response {
    let params: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let action = params.get("Action").cloned().unwrap_or_default();
    let service = match action.as_str() {
        "Publish" => "sns",
        "GetVpnTunnelReplacementStatus" => "ec2_maintenance",
        "ReplaceVpnTunnel" => "ec2_replace",
        _ => "ec2",
    };
    let failure = {
        let mut s = state.lock().unwrap();
        s.next_id += 1;
        let failure = s.take_failure(service);
        s.requests.push(json!({ "service": service, "action": action, "params": params, "at_ms": now_ms(), "failed": failure }));
        failure
    };
    if let Some(mode) = failure {
        return fail(service, &mode).await;
    }
    match action.as_str() {
        "DescribeVpnConnections" => describe_vpn_connections(&state, &params),
        "GetVpnTunnelReplacementStatus" => replacement_status(&state, &params),
        "ReplaceVpnTunnel" => replace_vpn_tunnel(&state, &params),
        "Publish" => {
            let id = state.lock().unwrap().next_id;
            xml(
                StatusCode::OK,
                format!(
                    "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><PublishResult>\
                     <MessageId>00000000-0000-0000-0000-{id:012}</MessageId></PublishResult>\
                     <ResponseMetadata><RequestId>req-{id}</RequestId></ResponseMetadata></PublishResponse>"
                ),
            )
        }
        other => xml(
            StatusCode::BAD_REQUEST,
            format!("<Response><Errors><Error><Code>InvalidAction</Code><Message>{other} is not served by the double</Message></Error></Errors><RequestID>x</RequestID></Response>"),
        ),
    }
}

async fn fail(service: &str, mode: &str) -> Response {
    match (service, mode) {
        ("ec2" | "ec2_maintenance" | "ec2_replace", "throttle") => xml(
            StatusCode::SERVICE_UNAVAILABLE,
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttled</RequestID></Response>".into(),
        ),
        ("sns", "throttle") => xml(
            StatusCode::BAD_REQUEST,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>throttled</RequestId></ErrorResponse>".into(),
        ),
        ("cloudwatch", "throttle") => cbor_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded"),
        ("cloudwatch", "server_error") => cbor_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServiceFault", "internal error"),
        (_, "server_error") => xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            "<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred</Message></Error></Errors><RequestID>x</RequestID></Response>".into(),
        ),
        // What EC2 answers a role without the permission (the SDK sorts it as `auth`).
        ("ec2" | "ec2_maintenance", "access_denied") => xml(
            StatusCode::FORBIDDEN,
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/tunnelkeeper/i-0123456789abcdef0 is not authorized to perform: ec2:DescribeVpnConnections because no identity-based policy allows the ec2:DescribeVpnConnections action</Message></Error></Errors><RequestID>denied</RequestID></Response>".into(),
        ),
        (_, "hang") => {
            tokio::time::sleep(Duration::from_secs(300)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        (_, "garbage") => (StatusCode::OK, [("content-type", "text/xml")], "<<<this is not xml at all").into_response(),
        (_, other) => (StatusCode::BAD_REQUEST, format!("unknown failure mode {other}")).into_response(),
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "text/xml;charset=UTF-8")], body).into_response()
}

fn not_found(id: &str) -> Response {
    xml(
        StatusCode::BAD_REQUEST,
        format!("<Response><Errors><Error><Code>InvalidVpnConnectionID.NotFound</Code><Message>The vpnConnection ID '{id}' does not exist</Message></Error></Errors><RequestID>x</RequestID></Response>"),
    )
}

/// The values of the `vpn-connection-id` filter (`Filter.N.Name` / `Filter.N.Value.M`),
/// if the request has one.
fn id_filter(params: &BTreeMap<String, String>) -> Option<Vec<&String>> {
    let n = params.iter().find_map(|(k, v)| {
        let n = k.strip_prefix("Filter.")?.strip_suffix(".Name")?;
        (v == "vpn-connection-id").then_some(n)
    })?;
    let prefix = format!("Filter.{n}.Value.");
    Some(
        params
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .collect(),
    )
}

fn describe_vpn_connections(state: &Shared, params: &BTreeMap<String, String>) -> Response {
    let listed: Vec<&String> = params
        .iter()
        .filter(|(k, _)| k.starts_with("VpnConnectionId."))
        .map(|(_, v)| v)
        .collect();
    let connections = state.lock().unwrap().connections.clone();
    // As EC2 does: one unknown id in the list fails the whole call...
    for id in &listed {
        if !connections.iter().any(|c| &&c.id == id) {
            return not_found(id);
        }
    }
    // ...while a filter matches what exists.
    let mut wanted = listed;
    if let Some(filtered) = id_filter(params) {
        if filtered.is_empty() {
            wanted = vec![];
        } else {
            wanted.extend(filtered);
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeVpnConnectionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId><vpnConnectionSet>");
    for c in connections
        .iter()
        .filter(|c| wanted.is_empty() || wanted.contains(&&c.id))
    {
        out.push_str(&format!(
            "<item><vpnConnectionId>{}</vpnConnectionId><state>{}</state><customerGatewayConfiguration>{}</customerGatewayConfiguration><type>ipsec.1</type><customerGatewayId>cgw-b4dc3961</customerGatewayId><vpnGatewayId>vgw-8db04f81</vpnGatewayId><category>VPN</category>",
            c.id,
            c.state,
            escape(&c.customer_gateway_configuration)
        ));
        out.push_str(&format!(
            "<options><staticRoutesOnly>{}</staticRoutesOnly><tunnelOptionSet>",
            c.static_routes_only
        ));
        for t in &c.tunnels {
            out.push_str(&format!(
                "<item><outsideIpAddress>{}</outsideIpAddress>",
                t.outside_ip
            ));
            if let Some(v) = &t.pre_shared_key {
                out.push_str(&format!("<preSharedKey>{}</preSharedKey>", escape(v)));
            }
            if let Some(v) = t.dpd_timeout_seconds {
                out.push_str(&format!("<dpdTimeoutSeconds>{v}</dpdTimeoutSeconds>"));
            }
            if let Some(v) = &t.dpd_timeout_action {
                out.push_str(&format!("<dpdTimeoutAction>{v}</dpdTimeoutAction>"));
            }
            if !t.ike_versions.is_empty() {
                out.push_str("<ikeVersionSet>");
                for v in &t.ike_versions {
                    out.push_str(&format!("<item><value>{v}</value></item>"));
                }
                out.push_str("</ikeVersionSet>");
            }
            if let Some(v) = &t.startup_action {
                out.push_str(&format!("<startupAction>{v}</startupAction>"));
            }
            if t.log_enabled.is_some() || t.bgp_log_enabled.is_some() || t.log_group_arn.is_some() {
                out.push_str("<logOptions><cloudWatchLogOptions>");
                if let Some(v) = &t.log_group_arn {
                    out.push_str(&format!("<logGroupArn>{v}</logGroupArn>"));
                }
                if let Some(v) = t.log_enabled {
                    out.push_str(&format!("<logEnabled>{v}</logEnabled>"));
                }
                if let Some(v) = t.bgp_log_enabled {
                    out.push_str(&format!("<bgpLogEnabled>{v}</bgpLogEnabled>"));
                }
                out.push_str("</cloudWatchLogOptions></logOptions>");
            }
            out.push_str("</item>");
        }
        out.push_str("</tunnelOptionSet></options><vgwTelemetry>");
        let mut telemetry: Vec<&Tunnel> = c.tunnels.iter().filter(|t| !t.no_telemetry).collect();
        if c.telemetry_reversed {
            telemetry.reverse();
        }
        for t in telemetry {
            out.push_str(&format!(
                "<item><outsideIpAddress>{}</outsideIpAddress><status>{}</status><lastStatusChange>{}</lastStatusChange><statusMessage>{}</statusMessage>",
                t.outside_ip,
                t.status,
                t.last_status_change,
                escape(&t.status_message)
            ));
            if let Some(n) = t.accepted_route_count {
                out.push_str(&format!("<acceptedRouteCount>{n}</acceptedRouteCount>"));
            }
            out.push_str("</item>");
        }
        out.push_str("</vgwTelemetry></item>");
    }
    out.push_str("</vpnConnectionSet></DescribeVpnConnectionsResponse>");
    xml(StatusCode::OK, out)
}

fn replacement_status(state: &Shared, params: &BTreeMap<String, String>) -> Response {
    let id = params.get("VpnConnectionId").cloned().unwrap_or_default();
    let ip = params
        .get("VpnTunnelOutsideIpAddress")
        .cloned()
        .unwrap_or_default();
    let connections = state.lock().unwrap().connections.clone();
    let Some(c) = connections.iter().find(|c| c.id == id) else {
        return not_found(&id);
    };
    let Some(t) = c.tunnels.iter().find(|t| t.outside_ip == ip) else {
        return xml(
            StatusCode::BAD_REQUEST,
            format!("<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>The VPN tunnel outside IP address '{}' does not belong to {id}</Message></Error></Errors><RequestID>x</RequestID></Response>", escape(&ip)),
        );
    };
    let mut details = String::new();
    let m = &t.maintenance;
    for (tag, value) in [
        ("pendingMaintenance", &m.pending),
        ("maintenanceAutoAppliedAfter", &m.auto_apply_after),
        ("lastMaintenanceApplied", &m.last_applied),
    ] {
        if let Some(v) = value {
            details.push_str(&format!("<{tag}>{}</{tag}>", escape(v)));
        }
    }
    xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetVpnTunnelReplacementStatusResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>5c1c6d1e-0b55-4c3a-9d4e-EXAMPLE</requestId><vpnConnectionId>{}</vpnConnectionId><customerGatewayId>cgw-b4dc3961</customerGatewayId><vpnGatewayId>vgw-8db04f81</vpnGatewayId><vpnTunnelOutsideIpAddress>{}</vpnTunnelOutsideIpAddress><maintenanceDetails>{details}</maintenanceDetails></GetVpnTunnelReplacementStatusResponse>",
            c.id, t.outside_ip
        ),
    )
}

/// `ReplaceVpnTunnel`: checks the call as EC2 would, then applies the maintenance.
fn replace_vpn_tunnel(state: &Shared, params: &BTreeMap<String, String>) -> Response {
    let id = params.get("VpnConnectionId").cloned().unwrap_or_default();
    let ip = params
        .get("VpnTunnelOutsideIpAddress")
        .cloned()
        .unwrap_or_default();
    let mut s = state.lock().unwrap();
    let Some(c) = s.connections.iter_mut().find(|c| c.id == id) else {
        drop(s);
        return not_found(&id);
    };
    let Some(t) = c.tunnels.iter_mut().find(|t| t.outside_ip == ip) else {
        return xml(
            StatusCode::BAD_REQUEST,
            format!("<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>The VPN tunnel outside IP address '{}' does not belong to {id}</Message></Error></Errors><RequestID>x</RequestID></Response>", escape(&ip)),
        );
    };
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    t.status = "DOWN".into();
    t.status_message = "endpoint being replaced".into();
    t.last_status_change = now.clone();
    if params.get("ApplyPendingMaintenance").map(String::as_str) == Some("true") {
        t.maintenance.pending = None;
        t.maintenance.auto_apply_after = None;
        t.maintenance.last_applied = Some(now);
    }
    xml(
        StatusCode::OK,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ReplaceVpnTunnelResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>7b2c6d1e-0b55-4c3a-9d4e-EXAMPLE</requestId><return>true</return></ReplaceVpnTunnelResponse>".into(),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn cloudwatch(
    State(state): State<Shared>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let decoded: Value = match ciborium::de::from_reader::<ciborium::Value, _>(&body[..]) {
        Ok(v) => cbor_to_json(v),
        Err(e) => json!({ "undecodable": e.to_string() }),
    };
    let protocol = headers
        .get("smithy-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let failure = {
        let mut s = state.lock().unwrap();
        let failure = s.take_failure("cloudwatch");
        s.requests.push(json!({ "service": "cloudwatch", "action": op, "protocol": protocol, "body": decoded, "at_ms": now_ms(), "failed": failure }));
        failure
    };
    if let Some(mode) = failure {
        return fail("cloudwatch", &mode).await;
    }
    // The empty CBOR map: PutMetricData has no output members.
    (
        StatusCode::OK,
        [
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        vec![0xA0u8],
    )
        .into_response()
}

fn cbor_error(status: StatusCode, code: &str, message: &str) -> Response {
    let value = ciborium::Value::Map(vec![
        (
            ciborium::Value::Text("__type".into()),
            ciborium::Value::Text(format!("com.amazonaws.cloudwatch#{code}")),
        ),
        (
            ciborium::Value::Text("message".into()),
            ciborium::Value::Text(message.into()),
        ),
    ]);
    let mut body = Vec::new();
    ciborium::ser::into_writer(&value, &mut body).unwrap();
    (
        status,
        [
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        body,
    )
        .into_response()
}

fn cbor_to_json(v: ciborium::Value) -> Value {
    use ciborium::Value as C;
    match v {
        C::Integer(i) => json!(i128::from(i) as f64),
        C::Float(f) => json!(f),
        C::Text(s) => json!(s),
        C::Bool(b) => json!(b),
        C::Null => Value::Null,
        C::Bytes(b) => json!(b),
        C::Tag(_, inner) => cbor_to_json(*inner),
        C::Array(items) => Value::Array(items.into_iter().map(cbor_to_json).collect()),
        C::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| {
                    (
                        match k {
                            C::Text(s) => s,
                            other => format!("{other:?}"),
                        },
                        cbor_to_json(v),
                    )
                })
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}
