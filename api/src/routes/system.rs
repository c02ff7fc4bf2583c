//! For operators and load balancers: liveness, readiness, which instance runs writes, metrics,
//! and the API's own description.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Projections further behind the log than this make the instance not ready.
const READY_LAG: u64 = 10_000;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "The process runs", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers, the projections are close to the log, and the database's secrets are
/// sealed under a key this instance holds (not so after a master key rotation away from its
/// key): send traffic here.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "Ready", body = Object,
            example = json!({"status": "ready", "database": true, "projection_lag": 0, "master_key": true})),
        (status = 503, description = "Not ready: not_ready, with the same fields under error.detail", body = crate::error::ErrorBody)))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let database = sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(&app.db.pool)
        .await
        .is_ok();
    let head = app.db.events.head_position().await.ok();
    let projected = app.projections.position();
    let lag = head.map(|h| h.saturating_sub(projected));
    let master_key = app.accounts.vault().check_record().await.unwrap_or(false);
    let ready = database && master_key && lag.is_some_and(|l| l <= READY_LAG);
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": database,
        "projection_lag": lag,
        "master_key": master_key,
    });
    if ready {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        ApiError::new(
            ErrorCode::NotReady,
            "the database, the projections or the master key are not ready",
        )
        .detail(body)
        .into_response()
    }
}

/// For a load balancer that sends write requests (every method but GET, HEAD and OPTIONS)
/// straight to the instance that runs them, sparing the standbys' forwarding: 200 where a write
/// request runs where it arrives (the elected active instance, or any instance without
/// `SPSE_TOTP_CLUSTER_URL`, or a standby that cannot reach the active one); 503 `standby` on
/// an instance that would pass it on. Either way the instance serves every request.
#[utoipa::path(get, path = "/activez", tag = "system",
    responses((status = 200, description = "Write requests sent here run here", body = Object,
            example = json!({"status": "active"})),
        (status = 503, description = "A standby: it passes write requests on to the active instance (standby)", body = crate::error::ErrorBody)))]
pub async fn activez(State(app): State<AppState>) -> Response {
    if app.forwarding.runs_writes_here() {
        (StatusCode::OK, Json(json!({ "status": "active" }))).into_response()
    } else {
        ApiError::new(
            ErrorCode::Standby,
            "this instance passes write requests on to the active instance",
        )
        .into_response()
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format, every name prefixed spse_totp_", body = String, content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    if let Ok(head) = app.db.events.head_position().await {
        app.metrics
            .event_store_head
            .set(i64::try_from(head).unwrap_or(i64::MAX));
    }
    app.metrics
        .projection_position
        .set(i64::try_from(app.projections.position()).unwrap_or(i64::MAX));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}
