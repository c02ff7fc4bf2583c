//! What auditors (API key, role `auditor`) and the helpdesk read: one account's history, its
//! state as of any instant, its subject export, the log's verification, and the helpdesk's
//! search of the audit projection. Every read is itself recorded (who, which account, why)
//! before any data is returned, without copying the data read.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spse_totp_domain::access::AccessEvent;
use spse_totp_domain::apikey::Role;
use spse_totp_domain::{AccountKey, UserId, UserType};
use spse_totp_projections::audit::{
    self, CheckpointCheck, CheckpointProblem, HistoryFilter, VerifyReport,
};
use spse_totp_projections::audit_log::{self, summary, AuditRow, AuditSearch};
use spse_totp_projections::{login_sessions, Decoded};
use spse_totp_store::{Actor, RecordedEvent};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{ApiCaller, HelpdeskCaller};
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorCode};
use crate::state::{AppState, RequestContext};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
const PURPOSE_MAX_CHARS: usize = 200;

type AccountPath = ApiPath<(UserType, UserId)>;

/// The stated reason for a read. Required: the record of a read must say why, and an auditor
/// or operator who cannot name one (a ticket, an audit reference) should not be reading.
pub(crate) fn purpose(raw: Option<&str>) -> Result<String, ApiError> {
    raw.map(str::trim)
        .filter(|p| {
            !p.is_empty()
                && p.chars().count() <= PURPOSE_MAX_CHARS
                && !p.chars().any(char::is_control)
        })
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(ErrorCode::PurposeRequired,
                format!(
                    "say why you read this in the purpose parameter (1 to {PURPOSE_MAX_CHARS} characters, e.g. a ticket number)"
                ),
            )
        })
}

pub(crate) fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {MAX_PAGE}"),
        )),
    }
}

/// Cursors are opaque to clients: a tag and a number, base64url, so they are not mistaken for
/// (or built as) positions.
fn encode_cursor(tag: char, n: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}{n}"))
}

fn decode_cursor(tag: char, cursor: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(tag).and_then(|n| n.parse::<u64>().ok()))
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidCursor,
                "cursor is not one this endpoint returned",
            )
        })
}

fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "from must not be after to",
        )),
        _ => Ok(()),
    }
}

fn event_type_filter(value: Option<String>) -> Result<Option<String>, ApiError> {
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        Some(v) if v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "type must be an event type such as LoginApproved",
            ))
        }
        other => Ok(other),
    }
}

/// Records a read before it happens; a read that cannot be recorded does not happen. Returns
/// the record's position.
pub(crate) async fn record(
    app: &AppState,
    ctx: &RequestContext,
    actor: Actor,
    read: AccessEvent,
) -> Result<u64, ApiError> {
    Ok(audit::record_read(app.db.events.as_ref(), read, ctx.metadata(actor), app.now()).await?)
}

pub(crate) fn account_read(key: &AccountKey, endpoint: &str, purpose: String) -> AccessEvent {
    AccessEvent::AuditRecordRead {
        subject: key.stream_name(),
        endpoint: endpoint.to_owned(),
        purpose,
        query: None,
    }
}

pub(crate) fn auditor(caller: &ApiCaller) -> Result<Actor, ApiError> {
    caller.require(Role::Auditor)?;
    Ok(caller.actor())
}

async fn existing_account(app: &AppState, key: &AccountKey) -> Result<String, ApiError> {
    let stream = key.stream_name();
    let version = app.db.events.stream_version(&stream).await?;
    if version == 0 {
        return Err(ApiError::new(
            ErrorCode::AccountNotFound,
            "no event has been recorded for this account",
        ));
    }
    Ok(stream)
}

/// One event as an auditor reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEvent {
    /// Global position in the log.
    pub position: u64,
    /// Position in the account's stream, from 1.
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    /// `{"kind": "portal" | "device" | "helpdesk" | "system" | "operator" | "auditor", "name", ...}`
    #[schema(value_type = Object)]
    pub actor: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    pub summary: String,
    /// The event's fields. Events hold no secret; device token digests are left out.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Its link in the stream's hash chain (absent for events older than the chain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

fn actor_view(actor: &Actor) -> Value {
    let mut value = serde_json::to_value(actor).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("name".to_owned(), Value::String(actor.display_name()));
    }
    value
}

fn without_token_digest(mut payload: Value) -> Value {
    if let Value::Object(map) = &mut payload {
        map.remove("device_token_sha256");
    }
    payload
}

pub(crate) fn history_event(recorded: RecordedEvent) -> HistoryEvent {
    let decoded = Decoded::decode(&recorded).unwrap_or(Decoded::Other);
    let meta = recorded.metadata;
    HistoryEvent {
        position: recorded.position,
        version: recorded.version,
        summary: summary(&decoded, &recorded.event_type),
        event_type: recorded.event_type,
        schema_version: recorded.schema_version,
        recorded_at: recorded.recorded_at,
        actor: actor_view(&meta.actor),
        client_ip: meta.client_ip,
        user_agent: meta.user_agent,
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        data: without_token_digest(recorded.payload),
        hash: recorded.hash,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Why you read this account (a ticket or audit reference). Required.
    #[param(
        required = true,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub purpose: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Events recorded at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Events recorded at or before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Only events of this type, e.g. `LoginApproved`.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = "^[A-Za-z0-9_]{0,64}$")]
    pub event_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An account's events in order, a page at a time.
#[utoipa::path(get, path = "/v1/audit/accounts/{user_type}/{user_id}/events", tag = "audit",
    params(("user_type" = super::UserTypeName, Path), ("user_id" = String, Path), HistoryQuery),
    security(("api_key" = [])),
    responses((status = 200, body = HistoryPage), (status = 400, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn history(
    State(app): State<AppState>,
    caller: ApiCaller,
    ctx: RequestContext,
    ApiPath((user_type, user_id)): AccountPath,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let actor = auditor(&caller)?;
    let purpose = purpose(query.purpose.as_deref())?;
    let limit = page_size(query.limit)?;
    check_range(query.from, query.to)?;
    let filter = HistoryFilter {
        after_version: decode_cursor('v', query.cursor.as_deref())?.unwrap_or(0),
        from: query.from,
        to: query.to,
        event_type: event_type_filter(query.event_type)?,
    };
    let key = AccountKey::new(user_type, user_id);
    let endpoint = "GET /v1/audit/accounts/{user_type}/{user_id}/events";
    record(&app, &ctx, actor, account_read(&key, endpoint, purpose)).await?;
    let stream = existing_account(&app, &key).await?;
    // One more than asked tells whether a next page exists without another query.
    let mut events = audit::history_page(app.db.log_source(), &stream, &filter, limit + 1).await?;
    let next_cursor = (events.len() > limit).then(|| {
        events.truncate(limit);
        encode_cursor('v', events.last().map_or(0, |e| e.version))
    });
    Ok(Json(HistoryPage {
        events: events.into_iter().map(history_event).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StateQuery {
    /// Why you read this account. Required.
    #[param(
        required = true,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub purpose: Option<String>,
    /// The instant (RFC 3339); now when omitted.
    pub as_of: Option<DateTime<Utc>>,
}

/// The account as of an instant: profile, `totp_status`, the device then bound, every device
/// bound up to then (activation, end and how it ended), failed attempts, lock, pending logins.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateView {
    pub user_type: String,
    pub user_id: String,
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub state: Value,
}

fn state_view(key: &AccountKey, state: &spse_totp_domain::account::StateAsOf) -> StateView {
    StateView {
        user_type: key.user_type.as_str().to_owned(),
        user_id: key.user_id.to_string(),
        state: serde_json::to_value(state).unwrap_or(Value::Null),
    }
}

/// The account's state as of an instant, folded from its stream with the write side's code.
#[utoipa::path(get, path = "/v1/audit/accounts/{user_type}/{user_id}/state", tag = "audit",
    params(("user_type" = super::UserTypeName, Path), ("user_id" = String, Path), StateQuery),
    security(("api_key" = [])),
    responses((status = 200, body = StateView), (status = 400, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn state_as_of(
    State(app): State<AppState>,
    caller: ApiCaller,
    ctx: RequestContext,
    ApiPath((user_type, user_id)): AccountPath,
    ApiQuery(query): ApiQuery<StateQuery>,
) -> Result<Json<StateView>, ApiError> {
    let actor = auditor(&caller)?;
    let purpose = purpose(query.purpose.as_deref())?;
    let key = AccountKey::new(user_type, user_id);
    let endpoint = "GET /v1/audit/accounts/{user_type}/{user_id}/state";
    record(&app, &ctx, actor, account_read(&key, endpoint, purpose)).await?;
    let stream = existing_account(&app, &key).await?;
    let as_of = query.as_of.unwrap_or_else(|| app.now());
    let history = audit::history_as_of(app.db.log_source(), &stream, as_of)
        .await?
        .unwrap_or_default();
    Ok(Json(state_view(&key, &history.state_as_of(as_of))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PurposeQuery {
    /// Why you read this. Required.
    #[param(
        required = true,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub purpose: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginSessionView {
    pub login_id: String,
    pub stage: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Everything the service holds about one account. Secrets (the sealed TOTP secret, device
/// tokens) are never included; nor are their digests.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectExport {
    pub exported_at: DateTime<Utc>,
    /// Profile, current state and every device, as `GET .../state` answers now.
    pub account: StateView,
    pub login_sessions: Vec<LoginSessionView>,
    /// Every event of the account's stream, in order, with its metadata.
    pub events: Vec<HistoryEvent>,
    /// Who read this account's records, when, through which endpoint and why (auditors and
    /// the helpdesk), newest first, this export included.
    pub reads: Vec<AuditEntry>,
}

/// One JSON document with everything the service holds about an account and its processing.
#[utoipa::path(get, path = "/v1/audit/accounts/{user_type}/{user_id}/export", tag = "audit",
    params(("user_type" = super::UserTypeName, Path), ("user_id" = String, Path), PurposeQuery),
    security(("api_key" = [])),
    responses((status = 200, body = SubjectExport), (status = 400, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn export(
    State(app): State<AppState>,
    caller: ApiCaller,
    ctx: RequestContext,
    ApiPath((user_type, user_id)): AccountPath,
    ApiQuery(query): ApiQuery<PurposeQuery>,
) -> Result<Json<SubjectExport>, ApiError> {
    let actor = auditor(&caller)?;
    let purpose = purpose(query.purpose.as_deref())?;
    let key = AccountKey::new(user_type, user_id);
    let endpoint = "GET /v1/audit/accounts/{user_type}/{user_id}/export";
    Ok(Json(
        subject_export(&app, &ctx, actor, &key, endpoint, purpose).await?,
    ))
}

/// The subject export, its read recorded first under `actor` (the API's and the console's).
pub(crate) async fn subject_export(
    app: &AppState,
    ctx: &RequestContext,
    actor: Actor,
    key: &AccountKey,
    endpoint: &str,
    purpose: String,
) -> Result<SubjectExport, ApiError> {
    let recorded = record(app, ctx, actor, account_read(key, endpoint, purpose)).await?;
    let stream = existing_account(app, key).await?;
    let now = app.now();
    let history = audit::history_as_of(app.db.log_source(), &stream, now)
        .await?
        .unwrap_or_default();
    let mut events = Vec::new();
    let mut filter = HistoryFilter::default();
    loop {
        let page = audit::history_page(app.db.log_source(), &stream, &filter, MAX_PAGE).await?;
        let Some(last) = page.last().map(|e| e.version) else {
            break;
        };
        filter.after_version = last;
        events.extend(page.into_iter().map(history_event));
    }
    let login_sessions = login_sessions::for_account(&app.db.pool, &stream)
        .await?
        .into_iter()
        .map(|l| LoginSessionView {
            status: l.status_at(now).to_owned(),
            decided_at: l.decided_at_as_of(now),
            login_id: l.login_id,
            stage: l.stage,
            client_ip: l.client_ip,
            user_agent: l.user_agent,
            started_at: l.started_at,
            expires_at: l.expires_at,
            method: l.method,
        })
        .collect();
    // This export's own read is part of the answer.
    app.caught_up(Some(recorded)).await;
    let reads = audit_log::search(
        &app.db.pool,
        &AuditSearch {
            user_type: Some(key.user_type.as_str().to_owned()),
            user_id_prefix: Some(key.user_id.to_string()),
            event_type: Some("AuditRecordRead".to_owned()),
            ..AuditSearch::default()
        },
        10_000,
    )
    .await?
    .into_iter()
    .filter(|r| r.user_id.as_deref() == Some(key.user_id.as_str()))
    .map(AuditEntry::from)
    .collect();
    Ok(SubjectExport {
        exported_at: now,
        account: state_view(key, &history.state_as_of(now)),
        login_sessions,
        events,
        reads,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyAnswer {
    /// True when every event chains and, when checkpoints were checked, none is broken and the
    /// log reaches the newest of them.
    pub ok: bool,
    /// Events checked.
    pub checked: u64,
    /// Always 0: an event without a hash is a broken link. Kept for readers of the earlier
    /// answer, which counted such events here as older than the chain.
    pub legacy: u64,
    pub streams: u64,
    /// The first broken link: `{stream, position, version, reason}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub broken: Option<Value>,
    /// The position of the last event read: the log's head when nothing is broken.
    pub head: u64,
    /// The fingerprint of the audit key the signed checkpoints were checked with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub checkpoint_key: Option<String>,
    /// Signed checkpoints verified: MAC valid and the event at their position unchanged.
    pub checkpoints: u64,
    /// Checkpoints signed under another audit key (the key changed since), not checked.
    pub checkpoints_other_key: u64,
    /// The newest checkpoint verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_checkpoint: Option<CheckpointAnswer>,
    /// True when the log's head is behind a valid checkpoint: events were removed from its end.
    pub truncated: bool,
    /// The first checkpoint that does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_checkpoint: Option<BrokenCheckpointAnswer>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointAnswer {
    pub position: u64,
    pub signed_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrokenCheckpointAnswer {
    /// `truncated`: the log no longer reaches the checkpoint's position (it ends before it, or
    /// the event there is gone): events were removed from its end; `mac_invalid`: the
    /// checkpoint was forged or altered; `hash_mismatch`: the event at its position was
    /// replaced, or its position reused after a deletion.
    pub problem: CheckpointProblemAnswer,
    pub position: u64,
    pub signed_at: DateTime<Utc>,
    pub key_fingerprint: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointProblemAnswer {
    Truncated,
    MacInvalid,
    HashMismatch,
}

impl From<CheckpointProblem> for CheckpointProblemAnswer {
    fn from(p: CheckpointProblem) -> Self {
        match p {
            CheckpointProblem::Truncated => CheckpointProblemAnswer::Truncated,
            CheckpointProblem::MacInvalid => CheckpointProblemAnswer::MacInvalid,
            CheckpointProblem::HashMismatch => CheckpointProblemAnswer::HashMismatch,
        }
    }
}

impl From<VerifyReport> for VerifyAnswer {
    fn from(r: VerifyReport) -> Self {
        VerifyAnswer {
            ok: r.ok,
            checked: r.checked,
            legacy: r.legacy,
            streams: r.streams,
            broken: r
                .broken
                .map(|b| serde_json::to_value(b).unwrap_or(Value::Null)),
            head: r.head,
            checkpoint_key: r.checkpoint_key,
            checkpoints: r.checkpoints,
            checkpoints_other_key: r.checkpoints_other_key,
            newest_checkpoint: r.newest_checkpoint.map(|c| CheckpointAnswer {
                position: c.position,
                signed_at: c.signed_at,
            }),
            truncated: r.truncated,
            broken_checkpoint: r.broken_checkpoint.map(|b| BrokenCheckpointAnswer {
                problem: b.problem.into(),
                position: b.position,
                signed_at: b.signed_at,
                key_fingerprint: b.key_fingerprint,
                reason: b.reason,
            }),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    /// Why; optional here, since verification reads no one's data. When given, 1 to 200
    /// characters without control characters.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub purpose: Option<String>,
}

/// Re-computes every stream's hash chain and checks the log's signed checkpoints; names the
/// first broken link or checkpoint (a log cut short is `truncated`).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", params(VerifyQuery),
    security(("api_key" = [])),
    responses((status = 200, body = VerifyAnswer), (status = 403, body = super::ErrorBody)))]
pub async fn verify(
    State(app): State<AppState>,
    caller: ApiCaller,
    ctx: RequestContext,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> Result<Json<VerifyAnswer>, ApiError> {
    let actor = auditor(&caller)?;
    let purpose = match query.purpose {
        Some(p) => purpose(Some(&p))?,
        None => "integrity check".to_owned(),
    };
    let report = run_verify(&app, &ctx, actor, "GET /v1/audit/verify", purpose).await?;
    Ok(Json(report.into()))
}

/// A verification of the whole chain, recorded as a read across accounts before it runs.
pub(crate) async fn run_verify(
    app: &AppState,
    ctx: &RequestContext,
    actor: Actor,
    endpoint: &str,
    purpose: String,
) -> Result<VerifyReport, ApiError> {
    let read = AccessEvent::AuditRecordRead {
        subject: "*".to_owned(),
        endpoint: endpoint.to_owned(),
        purpose,
        query: None,
    };
    record(app, ctx, actor, read).await?;
    let checkpoints = CheckpointCheck {
        pool: &app.db.pool,
        key: &app.audit_key,
    };
    Ok(audit::verify_signed(app.db.log_source(), Some(checkpoints)).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Why you search (a ticket number). Required.
    #[param(
        required = true,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub purpose: Option<String>,
    /// `penyedia` or `non_penyedia`.
    #[param(value_type = Option<super::UserTypeName>)]
    pub user_type: Option<String>,
    /// A prefix of the User ID, case-insensitive.
    #[param(pattern = "^[A-Za-z0-9._@-]{0,64}$")]
    pub user_id: Option<String>,
    /// An event type, e.g. `CodeRejected`.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = "^[A-Za-z0-9_]{0,64}$")]
    pub event_type: Option<String>,
    /// `portal`, `device`, `helpdesk`, `system`, `operator`, `auditor`, `console` or `user`,
    /// optionally with a name: `helpdesk:Budi` (the operator), `portal:spse-prod` (the key),
    /// `console:siti.hd` (a console operator).
    #[param(
        pattern = "^((portal|device|helpdesk|system|operator|auditor|console|user)(:[!-~][ -~]{0,199})?)?$"
    )]
    pub actor: Option<String>,
    /// An IPv4 or IPv6 address.
    #[param(schema_with = search_client_ip)]
    pub client_ip: Option<String>,
    /// Recorded at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Recorded at or before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `json` (default) or `csv`; `Accept: text/csv` also asks for CSV.
    #[param(inline, value_type = Option<SearchFormat>)]
    pub format: Option<String>,
}

/// The answer's format (schema only).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum SearchFormat {
    #[schema(rename = "json")]
    Json,
    #[schema(rename = "csv")]
    Csv,
}

fn search_client_ip() -> utoipa::openapi::Schema {
    super::ip_schema(true, "Events from this address (IPv4 or IPv6); empty: any.")
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub actor_kind: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub summary: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            position: r.position,
            recorded_at: r.recorded_at,
            user_type: r.user_type,
            user_id: r.user_id,
            event_type: r.event_type,
            actor_kind: r.actor_kind,
            actor: r.actor,
            client_ip: r.client_ip,
            user_agent: r.user_agent,
            correlation_id: r.correlation_id,
            summary: r.summary,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    pub events: Vec<AuditEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// `console` (an operator signed in to the console) and `user` (the account's owner, e.g. a
// self-service disable) are actors too, so a search can name them.
const ACTOR_KINDS: [&str; 8] = [
    "portal", "device", "helpdesk", "system", "operator", "auditor", "console", "user",
];

pub(crate) fn search_filter(query: &SearchQuery) -> Result<AuditSearch, ApiError> {
    let bad = |message: &str| ApiError::new(ErrorCode::InvalidQuery, message.to_owned());
    fn text(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let user_type = text(&query.user_type)
        .map(|v| v.parse::<UserType>().map(|t| t.as_str().to_owned()))
        .transpose()
        .map_err(|_| bad("user_type must be penyedia or non_penyedia"))?;
    let user_id_prefix = text(&query.user_id)
        .map(|v| UserId::parse(v).map(|id| id.as_str().to_owned()))
        .transpose()
        .map_err(|_| bad("user_id must be (a prefix of) a User ID"))?;
    let (actor_kind, actor_name) = match text(&query.actor) {
        None => (None, None),
        Some(actor) => {
            let (kind, name) = match actor.split_once(':') {
                Some((kind, name)) => (kind, Some(name.trim().to_owned())),
                None => (actor, None),
            };
            if !ACTOR_KINDS.contains(&kind) {
                return Err(bad(
                    "actor must be portal, device, helpdesk, system, operator, auditor, console or user, optionally kind:name",
                ));
            }
            if name.as_ref().is_some_and(|n| n.is_empty() || n.len() > 200) {
                return Err(bad("the actor's name after kind: must not be empty"));
            }
            (Some(kind.to_owned()), name)
        }
    };
    let client_ip = text(&query.client_ip)
        .map(|ip| {
            ip.parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| bad("client_ip must be an IP address"))
        })
        .transpose()?;
    check_range(query.from, query.to)?;
    Ok(AuditSearch {
        user_type,
        user_id_prefix,
        event_type: event_type_filter(query.event_type.clone())?,
        actor_kind,
        actor_name,
        client_ip,
        from: query.from,
        to: query.to,
        before_position: decode_cursor('p', query.cursor.as_deref())?,
    })
}

/// What the search looked for, for the record of the read.
fn describe(filter: &AuditSearch) -> String {
    let mut parts = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            parts.push(format!("{name}={v}"));
        }
    };
    add("user_type", filter.user_type.clone());
    add(
        "user_id",
        filter.user_id_prefix.clone().map(|p| format!("{p}*")),
    );
    add("type", filter.event_type.clone());
    add(
        "actor",
        filter.actor_kind.clone().map(|k| match &filter.actor_name {
            Some(n) => format!("{k}:{n}"),
            None => k,
        }),
    );
    add("client_ip", filter.client_ip.clone());
    add("from", filter.from.map(|t| t.to_rfc3339()));
    add("to", filter.to.map(|t| t.to_rfc3339()));
    parts.join(" ")
}

fn wants_csv(query: &SearchQuery, headers: &HeaderMap) -> Result<bool, ApiError> {
    match query.format.as_deref() {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "format must be json or csv",
        )),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/csv"))),
    }
}

/// Search the audit log (helpdesk key and `X-Operator`), newest first.
#[utoipa::path(get, path = "/v1/helpdesk/events", tag = "audit", params(SearchQuery,
        ("X-Operator" = String, Header, description = "The operator's name")),
    security(("api_key" = [])),
    responses((status = 200, body = SearchPage, description = "JSON, or CSV (text/csv) with the next cursor in X-Next-Cursor"),
        (status = 400, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn search(
    State(app): State<AppState>,
    caller: HelpdeskCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Response, ApiError> {
    let purpose = purpose(query.purpose.as_deref())?;
    let filter = search_filter(&query)?;
    let limit = page_size(query.limit)?;
    let csv = wants_csv(&query, &headers)?;
    let endpoint = "GET /v1/helpdesk/events";
    let (rows, next_cursor) = run_search(
        &app,
        &ctx,
        caller.actor(),
        endpoint,
        purpose,
        &filter,
        limit,
    )
    .await?;
    if csv {
        return Ok(csv_response(&rows, next_cursor));
    }
    Ok(Json(SearchPage {
        events: rows.into_iter().map(AuditEntry::from).collect(),
        next_cursor,
    })
    .into_response())
}

/// A search of the audit log, newest first, a page of `limit` rows and the next page's cursor;
/// recorded before it runs, naming the filters (the API's and the console's search).
pub(crate) async fn run_search(
    app: &AppState,
    ctx: &RequestContext,
    actor: Actor,
    endpoint: &str,
    purpose: String,
    filter: &AuditSearch,
    limit: usize,
) -> Result<(Vec<AuditRow>, Option<String>), ApiError> {
    // A search reads across accounts (a user_id filter is a prefix): the record names the
    // filters rather than one subject.
    let read = AccessEvent::AuditRecordRead {
        subject: "*".to_owned(),
        endpoint: endpoint.to_owned(),
        purpose,
        query: Some(describe(filter)),
    };
    record(app, ctx, actor, read).await?;
    let mut rows = audit_log::search(&app.db.pool, filter, limit + 1).await?;
    let next_cursor = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        encode_cursor('p', rows.last().map_or(0, |r| r.position))
    });
    Ok((rows, next_cursor))
}

/// The rows as CSV, with the next page's cursor in `X-Next-Cursor`.
pub(crate) fn csv_response(rows: &[AuditRow], next_cursor: Option<String>) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        to_csv(rows),
    )
        .into_response();
    if let Some(cursor) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert("x-next-cursor", cursor);
    }
    response
}

const CSV_HEADER: [&str; 11] = [
    "position",
    "recorded_at",
    "user_type",
    "user_id",
    "type",
    "actor_kind",
    "actor",
    "client_ip",
    "user_agent",
    "correlation_id",
    "summary",
];

fn to_csv(rows: &[AuditRow]) -> String {
    let mut out = String::new();
    push_record(&mut out, CSV_HEADER.iter().map(|h| (*h).to_owned()));
    for r in rows {
        push_record(
            &mut out,
            [
                r.position.to_string(),
                r.recorded_at.to_rfc3339(),
                r.user_type.clone().unwrap_or_default(),
                r.user_id.clone().unwrap_or_default(),
                r.event_type.clone(),
                r.actor_kind.clone(),
                r.actor.clone(),
                r.client_ip.clone().unwrap_or_default(),
                r.user_agent.clone().unwrap_or_default(),
                r.correlation_id.clone().unwrap_or_default(),
                r.summary.clone(),
            ],
        );
    }
    out
}

fn push_record(out: &mut String, cells: impl IntoIterator<Item = String>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_cell(&cell));
    }
    out.push_str("\r\n");
}

/// One RFC 4180 cell. A cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
/// `@`, tab or carriage return: a user agent or operator name is attacker-controlled) is
/// prefixed with `'` so it is shown as text (OWASP CSV injection).
pub fn csv_cell(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
    }

    #[test]
    fn cursors_round_trip_and_refuse_others() {
        let c = encode_cursor('v', 42);
        assert_eq!(decode_cursor('v', Some(&c)).unwrap(), Some(42));
        assert!(decode_cursor('p', Some(&c)).is_err());
        assert!(decode_cursor('v', Some("not a cursor")).is_err());
        assert_eq!(decode_cursor('v', None).unwrap(), None);
    }

    #[test]
    fn purpose_is_required_and_bounded() {
        assert!(purpose(None).is_err());
        assert!(purpose(Some("  ")).is_err());
        assert!(purpose(Some(&"x".repeat(201))).is_err());
        assert!(purpose(Some("bad\u{7}")).is_err());
        assert_eq!(purpose(Some(" ticket 7 ")).unwrap(), "ticket 7");
    }
}
