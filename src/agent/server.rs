//! The agent's HTTP API: `GET /v1/batches`, `POST /v1/ack`, `GET /v1/info` (token when
//! configured), `GET /healthz`, `GET /metrics`.
//!
//! The token is read from `Authorization: Bearer T` or from `X-Egressor-Token: T`: through the
//! Kubernetes API server's pods/proxy (how the CLI attaches in a cluster) the caller's
//! `Authorization` header is consumed by the API server's own authentication and never reaches the
//! pod, so the agent's token travels in its own header (docs/adr/0009-cluster-attach-and-enrichment.md).

use super::State;
use crate::transport::{AgentInfo, BatchPage, PODS_SCHEMA, PodsPage, TOKEN_HEADER, WIRE_SCHEMA};
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::fmt::Write as _;

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/batches", get(batches))
        .route("/v1/ack", post(ack))
        .route("/v1/info", get(info))
        .route("/v1/pods", get(pods))
        .with_state(state);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!("agent HTTP server failed: {e}");
    }
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// `Some(response)` when the request must be refused.
fn refusal(state: &State, headers: &HeaderMap) -> Option<Response> {
    let expected = state.lock().expect("state").token.clone();
    let expected = expected?;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let own = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    let got = bearer.or(own);
    // Constant-time comparison: the token guards the whole flow history of the node.
    let ok = got.is_some_and(|g| {
        g.len() == expected.len()
            && g.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if ok { None } else { Some(error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")) }
}

#[derive(Deserialize)]
struct PageQuery {
    instance: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn batches(AxState(state): AxState<State>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let shared = state.lock().expect("state");
    // A cursor from another spool instance means nothing here: start from the beginning.
    let after = match &q.instance {
        Some(i) if i == shared.spool.instance() => q.after,
        _ => 0,
    };
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    match shared.spool.after(after, limit) {
        Ok((batches, more)) => {
            let cursor = batches.last().map(|b| b.seq).unwrap_or(after);
            Json(BatchPage {
                schema: WIRE_SCHEMA.into(),
                instance: shared.spool.instance().to_string(),
                node: shared.node.clone(),
                batches,
                cursor,
                more,
            })
            .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

#[derive(Deserialize)]
struct AckQuery {
    instance: String,
    upto: u64,
}

async fn ack(AxState(state): AxState<State>, headers: HeaderMap, Query(q): Query<AckQuery>) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let mut shared = state.lock().expect("state");
    if q.instance != shared.spool.instance() {
        return error(StatusCode::CONFLICT, "acknowledgement for another spool instance; nothing removed");
    }
    match shared.spool.ack(q.upto) {
        Ok(n) => {
            shared.last_ack = Some(crate::model::Timestamp::now());
            Json(serde_json::json!({ "acknowledged": n })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

/// `GET /v1/pods`: the node's pods as the agent's watch saw them, deleted ones included.
async fn pods(AxState(state): AxState<State>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let (node, log) = {
        let s = state.lock().expect("state");
        (s.node.clone(), s.pods.clone())
    };
    let pods = log.lock().expect("pod log").pods.values().cloned().collect();
    Json(PodsPage { schema: PODS_SCHEMA.into(), node, pods }).into_response()
}

/// `GET /v1/info`: who this agent is and how it is doing, for `egressor status`.
async fn info(AxState(state): AxState<State>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let s = state.lock().expect("state");
    let m = &s.metrics;
    Json(AgentInfo {
        schema: WIRE_SCHEMA.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        node: s.node.clone(),
        instance: s.spool.instance().to_string(),
        spool_bytes: s.spool.bytes(),
        spool_max_bytes: s.spool.max_bytes(),
        spool_batches: s.spool.len() as u64,
        last_ack: s.last_ack,
        loss: crate::transport::Loss {
            map_insert_failures: m.map_insert_failures,
            sockets_evicted: m.sockets_evicted,
            spool_dropped_batches: s.spool.total_dropped_batches,
            spool_dropped_records: s.spool.total_dropped_records,
        },
    })
    .into_response()
}

async fn metrics(AxState(state): AxState<State>) -> Response {
    let s = state.lock().expect("state");
    let m = &s.metrics;
    let fill = if m.map_capacity > 0 { m.map_entries as f64 / m.map_capacity as f64 } else { 0.0 };
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP egressor_agent_{name} {help}\n# TYPE egressor_agent_{name} {kind}\negressor_agent_{name} {value}"
        );
    };
    metric("drains_total", "counter", "Drains of the kernel maps.", m.drains.to_string());
    metric("records_total", "counter", "Flow records produced.", m.records.to_string());
    metric("batches_total", "counter", "Batches written to the spool.", m.batches.to_string());
    metric(
        "map_entries",
        "gauge",
        "Sockets in the kernel counter map at the last drain.",
        m.map_entries.to_string(),
    );
    metric("map_capacity", "gauge", "Capacity of the kernel counter map.", m.map_capacity.to_string());
    metric("map_fill_ratio", "gauge", "map_entries / map_capacity.", format!("{fill:.4}"));
    metric(
        "map_insert_failures_total",
        "counter",
        "Sockets the kernel could not track (map full): their bytes are missing.",
        m.map_insert_failures.to_string(),
    );
    metric(
        "sockets_evicted_total",
        "counter",
        "Sockets evicted from the full kernel map before closing: bytes since their last drain are missing.",
        m.sockets_evicted.to_string(),
    );
    metric(
        "tracked_sockets",
        "gauge",
        "Live sockets tracked between windows.",
        m.tracked_sockets.to_string(),
    );
    metric(
        "drain_duration_seconds",
        "gauge",
        "Duration of the last drain.",
        format!("{:.6}", m.last_drain_seconds),
    );
    metric("spool_bytes", "gauge", "Bytes of batches in the spool.", s.spool.bytes().to_string());
    metric("spool_batches", "gauge", "Batches in the spool.", s.spool.len().to_string());
    metric(
        "spool_dropped_batches_total",
        "counter",
        "Batches dropped because the spool was full.",
        s.spool.total_dropped_batches.to_string(),
    );
    metric(
        "spool_dropped_records_total",
        "counter",
        "Records dropped because the spool was full.",
        s.spool.total_dropped_records.to_string(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
