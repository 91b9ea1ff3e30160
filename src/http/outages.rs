//! `GET /outages` (the outage log, newest first, `?since=` and `?tunnel=` filters) and
//! `GET /outages/ID` (one outage's incident bundle), read from the log's records in
//! memory and the smoke charts' history.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use tunnelkeeper_core::outage::bundle;
use tunnelkeeper_core::outage::log::OutageFilter;
use tunnelkeeper_core::outage::OutageRecord;

use super::{no_store, AppState, TEXT};

/// The version of `/outages`' form (docs/outages.schema.json).
pub const SCHEMA_VERSION: u32 = 1;

/// The body of `GET /outages`.
#[derive(Serialize)]
struct OutagesBody<'a> {
    schema_version: u32,
    outages: Vec<&'a OutageRecord>,
}

/// `GET /outages`.
pub async fn outages(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let filter = match OutageFilter::parse(query.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => {
            return no_store(
                (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, TEXT)],
                    format!("/outages: bad filter {e}\n"),
                )
                    .into_response(),
            )
        }
    };
    let records = state.outages.records();
    json(
        StatusCode::OK,
        &OutagesBody {
            schema_version: SCHEMA_VERSION,
            outages: filter.apply(&records),
        },
    )
}

/// `GET /outages/ID[?format=csv]`: the outage's incident bundle (its record, its pages,
/// the minutes of its tunnels and their siblings around it), or those minutes as CSV.
pub async fn outage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let csv = match query.as_deref().unwrap_or("") {
        "" | "format=json" => false,
        "format=csv" => true,
        other => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("/outages/{id}: bad query {other:?}: format=json or format=csv\n"),
            )
        }
    };
    let records = state.outages.records();
    let Some(record) = records.iter().find(|r| r.id == id) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("/outages/{id}: no such outage in the log (GET /outages lists them)\n"),
        );
    };
    let snapshot = state.snapshots.borrow().clone();
    let bundle = match &snapshot.history {
        Some(history) => {
            let config = history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .config()
                .clone();
            // Each tunnel's minutes in memory under a short lock, the rest from the files.
            let chart = |connection: &str, tunnel: &str, range| {
                let lock = history.lock().unwrap_or_else(|p| p.into_inner());
                let live = lock.tunnel_live(connection, tunnel)?;
                drop(lock);
                Some(live.points(range, snapshot.generated_at, &state.rings))
            };
            bundle::build(record, &config, snapshot.generated_at, &chart)
        }
        // Before the monitor's first snapshot: the record and its pages, no minutes.
        None => bundle::IncidentBundle {
            bundle_version: bundle::BUNDLE_VERSION,
            outage: record.clone(),
            from: record.started_at,
            to: record.ended_at,
            tunnels: Vec::new(),
            pages: record.pages.clone(),
            note: Some("no minutes: the daemon is starting".into()),
        },
    };
    if csv {
        let mut response = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            bundle::minutes_csv(&bundle),
        )
            .into_response();
        let disposition = format!("attachment; filename=\"{id}.csv\"");
        if let Ok(value) = header::HeaderValue::from_str(&disposition) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
        return no_store(response);
    }
    json(StatusCode::OK, &bundle)
}

fn text(status: StatusCode, body: String) -> Response {
    no_store((status, [(header::CONTENT_TYPE, TEXT)], body).into_response())
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string_pretty(body).expect("records always serialize");
    no_store(
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            text + "\n",
        )
            .into_response(),
    )
}
