//! The auditor's pages across the log: the hash chain (the last verification and a button that
//! runs one), an account's subject export as a download, and the log-wide search with its CSV.
//! Each runs the API's own code (`routes::audit`), so a read is recorded the same way, with the
//! purpose the auditor typed, under the signed-in auditor, before anything is shown.

use askama::Template;
use axum::extract::{Query, RawQuery, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use spse_totp_domain::access::AccessEvent;
use spse_totp_domain::operator::OperatorRole;
use spse_totp_domain::{AccountKey, UserId, UserType};
use spse_totp_projections::audit;
use spse_totp_projections::audit_log::{self, AuditRow, AuditSearch};
use spse_totp_projections::mail::message::LocalZone;

use super::auditor::{audit_page_error, parse_local, AuditQuery};
use super::i18n::{Lang, Texts};
use super::session::Signed;
use super::{html, local, Frame};
use crate::error::ApiError;
use crate::routes::audit::{
    csv_response, page_size, purpose, run_search, run_verify, search_filter, subject_export,
    SearchQuery,
};
use crate::state::{AppState, RequestContext};

/// Rows on one page of the search; the CSV takes the API's largest page.
const PAGE_ROWS: usize = 50;
const CSV_ROWS: usize = 1000;

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console auditor page");
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
}

/// A refusal the auditor can act on (a missing purpose, a bad filter) as its message; anything
/// else is the service's fault and answers 503.
fn refused(e: ApiError, lang: Lang) -> Result<String, Response> {
    if e.status.is_client_error() {
        Ok(e.message_in(lang))
    } else {
        Err(unavailable(&e.code().as_str()))
    }
}

// ---- The chain ----

pub struct LastVerification {
    when: String,
    who: String,
    ok: bool,
    checked: u64,
    streams: u64,
    checkpoint: String,
    broken: String,
}

#[derive(Template)]
#[template(path = "console/chain.html")]
struct ChainPage {
    page: Frame,
    csrf: String,
    error: Option<String>,
    purpose: String,
    last: Option<LastVerification>,
}

/// The newest `ChainVerified` in the log, found through the audit projection and read whole.
async fn last_verification(app: &AppState) -> Result<Option<LastVerification>, Response> {
    let zone = app.config.lpse.time_zone;
    let filter = AuditSearch {
        event_type: Some("ChainVerified".to_owned()),
        ..AuditSearch::default()
    };
    let rows = audit_log::search(&app.db.pool, &filter, 1)
        .await
        .map_err(|e| unavailable(&e))?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let events = app
        .db
        .events
        .read_all(row.position.saturating_sub(1), 1)
        .await
        .map_err(|e| unavailable(&e))?;
    let Some(event) = events.into_iter().find(|e| e.position == row.position) else {
        return Ok(None);
    };
    match AccessEvent::from_stored(&event.event_type, event.payload) {
        Ok(AccessEvent::ChainVerified {
            ok,
            checked,
            streams,
            broken,
            checkpoint,
            ..
        }) => Ok(Some(LastVerification {
            when: local(zone, event.recorded_at),
            who: format!(
                "{} {}",
                event.metadata.actor.kind(),
                event.metadata.actor.display_name()
            ),
            ok,
            checked,
            streams,
            checkpoint: checkpoint.map(|p| p.to_string()).unwrap_or_default(),
            broken: broken.unwrap_or_default(),
        })),
        _ => Ok(None),
    }
}

async fn render_chain(
    app: &AppState,
    signed: &Signed,
    status: StatusCode,
    purpose: String,
    error: Option<String>,
) -> Response {
    let last = match last_verification(app).await {
        Ok(last) => last,
        Err(page) => return page,
    };
    html(
        status,
        ChainPage {
            page: Frame::new(signed.lang, Some(signed)),
            csrf: signed.csrf().to_owned(),
            error,
            purpose,
            last,
        }
        .render(),
    )
}

pub async fn chain(State(app): State<AppState>, signed: Signed) -> Response {
    if let Err(page) = signed.require(OperatorRole::Auditor) {
        return page;
    }
    render_chain(&app, &signed, StatusCode::OK, String::new(), None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    purpose: String,
}

/// Runs the verification as `GET /v1/audit/verify` does (the read recorded first), then keeps
/// its outcome in the log so the page, on any instance, shows the last one.
pub async fn run_chain(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Form(form): Form<VerifyForm>,
) -> Response {
    if let Err(page) = signed.may_post(OperatorRole::Auditor, &form.csrf) {
        return page;
    }
    let outcome = match purpose(Some(&form.purpose)) {
        Ok(purpose) => {
            run_verify(
                &app,
                &ctx,
                signed.actor(),
                "POST /console/audit/chain",
                purpose,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            return match refused(e, signed.lang) {
                Ok(message) => {
                    render_chain(
                        &app,
                        &signed,
                        StatusCode::BAD_REQUEST,
                        form.purpose,
                        Some(message),
                    )
                    .await
                }
                Err(page) => page,
            }
        }
    };
    let zone = app.config.lpse.time_zone;
    let verified = AccessEvent::ChainVerified {
        ok: report.ok,
        checked: report.checked,
        legacy: report.legacy,
        streams: report.streams,
        broken: report
            .broken
            .map(|b| {
                format!(
                    "{} version {} (position {}): {}",
                    b.stream, b.version, b.position, b.reason
                )
            })
            .or(report.broken_checkpoint.map(|b| {
                format!(
                    "checkpoint of position {} signed {}: {}",
                    b.position,
                    local(zone, b.signed_at),
                    b.reason
                )
            })),
        checkpoint: report.newest_checkpoint.map(|c| c.position),
    };
    let position = match audit::record_read(
        app.db.events.as_ref(),
        verified,
        ctx.metadata(signed.actor()),
        app.now(),
    )
    .await
    {
        Ok(position) => position,
        Err(e) => return unavailable(&e),
    };
    app.caught_up(Some(position)).await;
    // Post, then redirect: reloading the result does not run the verification again.
    Redirect::to("/console/audit/chain").into_response()
}

// ---- The subject export ----

/// The account's subject export as a JSON file to keep.
pub async fn export(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Query(query): Query<AuditQuery>,
) -> Response {
    if let Err(page) = signed.require(OperatorRole::Auditor) {
        return page;
    }
    let t = signed.lang.texts();
    let key = match (
        query.user_type.parse::<UserType>(),
        UserId::parse(&query.user_id),
    ) {
        (Ok(ut), Ok(id)) => AccountKey::new(ut, id),
        _ => {
            return audit_page_error(
                app.config.lpse.time_zone,
                &signed,
                query,
                t.account_not_found.to_owned(),
            )
        }
    };
    let result = match purpose(Some(&query.purpose)) {
        Ok(purpose) => {
            subject_export(
                &app,
                &ctx,
                signed.actor(),
                &key,
                "GET /console/audit/export",
                purpose,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let export = match result {
        Ok(export) => export,
        Err(e) => {
            return match refused(e, signed.lang) {
                Ok(message) => audit_page_error(app.config.lpse.time_zone, &signed, query, message),
                Err(page) => page,
            }
        }
    };
    let body = match serde_json::to_vec_pretty(&export) {
        Ok(body) => body,
        Err(e) => return unavailable(&e),
    };
    let filename = format!(
        "export-{}-{}-{}.json",
        key.user_type.as_str(),
        key.user_id.as_str(),
        export.exported_at.format("%Y%m%dT%H%M%SZ")
    );
    download(body, "application/json", &filename)
}

/// An answer the browser saves as `filename` instead of showing.
fn download(body: impl IntoResponse, content_type: &'static str, filename: &str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The name is built from a parsed User ID, a user type and digits: nothing to quote.
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

// ---- The log-wide search ----

/// The search form's fields; times are picked in the LPSE's zone. `purpose` absent means the page was
/// opened, not searched.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    purpose: Option<String>,
    #[serde(default)]
    user_type: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    client_ip: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
}

fn given(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The form as the API's query, so the API's checks and filter apply unchanged.
fn api_query(
    zone: LocalZone,
    q: &LogQuery,
    t: &Texts,
    limit: usize,
) -> Result<SearchQuery, String> {
    let time = |text: &str| -> Result<Option<DateTime<Utc>>, String> {
        match given(text) {
            None => Ok(None),
            Some(text) => parse_local(zone, &text)
                .map(Some)
                .ok_or_else(|| t.time_invalid.to_owned()),
        }
    };
    Ok(SearchQuery {
        purpose: q.purpose.clone(),
        user_type: given(&q.user_type),
        user_id: given(&q.user_id),
        event_type: given(&q.event_type),
        actor: given(&q.actor),
        client_ip: given(&q.client_ip),
        from: time(&q.from)?,
        to: time(&q.to)?,
        cursor: given(&q.cursor),
        limit: Some(limit),
        format: None,
    })
}

/// Checks the form, records the read, and runs the search.
async fn searched(
    app: &AppState,
    signed: &Signed,
    ctx: &RequestContext,
    q: &LogQuery,
    limit: usize,
    endpoint: &str,
) -> Result<Result<(Vec<AuditRow>, Option<String>), String>, Response> {
    let query = match api_query(app.config.lpse.time_zone, q, signed.lang.texts(), limit) {
        Ok(query) => query,
        Err(message) => return Ok(Err(message)),
    };
    let run = async {
        let purpose = purpose(query.purpose.as_deref())?;
        let filter = search_filter(&query)?;
        let limit = page_size(query.limit)?;
        run_search(app, ctx, signed.actor(), endpoint, purpose, &filter, limit).await
    };
    match run.await {
        Ok(found) => Ok(Ok(found)),
        Err(e) => refused(e, signed.lang).map(Err),
    }
}

pub struct Row {
    position: u64,
    when: String,
    account: String,
    event_type: String,
    actor: String,
    client_ip: String,
    summary: String,
}

#[derive(Template)]
#[template(path = "console/log_search.html")]
struct LogSearchPage {
    page: Frame,
    /// WIB, WITA or WIT: the zone the form's times are in.
    zone: &'static str,
    error: Option<String>,
    purpose: String,
    user_type: String,
    user_id: String,
    event_type: String,
    actor: String,
    client_ip: String,
    from: String,
    to: String,
    shown: bool,
    rows: Vec<Row>,
    csv_href: String,
    next_href: Option<String>,
}

/// The query string without its cursor, to build the CSV's and the next page's links from.
fn without_cursor(raw: Option<&str>) -> String {
    raw.unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("cursor="))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn search(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    RawQuery(raw): RawQuery,
    Query(query): Query<LogQuery>,
) -> Response {
    let zone = app.config.lpse.time_zone;
    if let Err(page) = signed.require(OperatorRole::Auditor) {
        return page;
    }
    let mut page = LogSearchPage {
        page: Frame::new(signed.lang, Some(&signed)),
        zone: zone.label(),
        error: None,
        purpose: query.purpose.clone().unwrap_or_default(),
        user_type: query.user_type.clone(),
        user_id: query.user_id.clone(),
        event_type: query.event_type.clone(),
        actor: query.actor.clone(),
        client_ip: query.client_ip.clone(),
        from: query.from.clone(),
        to: query.to.clone(),
        shown: false,
        rows: Vec::new(),
        csv_href: String::new(),
        next_href: None,
    };
    if query.purpose.is_none() {
        return html(StatusCode::OK, page.render());
    }
    let endpoint = "GET /console/audit/search";
    let (rows, next) = match searched(&app, &signed, &ctx, &query, PAGE_ROWS, endpoint).await {
        Err(unavailable) => return unavailable,
        Ok(Err(message)) => {
            page.error = Some(message);
            return html(StatusCode::BAD_REQUEST, page.render());
        }
        Ok(Ok(found)) => found,
    };
    let base = without_cursor(raw.as_deref());
    page.csv_href = format!("/console/audit/search.csv?{}", raw.as_deref().unwrap_or(""));
    page.next_href = next.map(|cursor| format!("/console/audit/search?{base}&cursor={cursor}"));
    page.shown = true;
    page.rows = rows
        .into_iter()
        .map(|r| Row {
            position: r.position,
            when: local(zone, r.recorded_at),
            account: match (&r.user_type, &r.user_id) {
                (Some(t), Some(id)) => format!("{id} ({t})"),
                _ => String::new(),
            },
            event_type: r.event_type,
            actor: format!("{} {}", r.actor_kind, r.actor),
            client_ip: r.client_ip.unwrap_or_default(),
            summary: r.summary,
        })
        .collect();
    html(StatusCode::OK, page.render())
}

/// The same search as a CSV file: the API's CSV, up to its largest page from the cursor.
pub async fn search_csv(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Query(query): Query<LogQuery>,
) -> Response {
    if let Err(page) = signed.require(OperatorRole::Auditor) {
        return page;
    }
    let endpoint = "GET /console/audit/search.csv";
    let (rows, next) = match searched(&app, &signed, &ctx, &query, CSV_ROWS, endpoint).await {
        Err(unavailable) => return unavailable,
        Ok(Err(message)) => {
            return super::message_page(
                StatusCode::BAD_REQUEST,
                signed.lang,
                Some(&signed),
                &message,
            )
        }
        Ok(Ok(found)) => found,
    };
    let filename = format!("audit-log-{}.csv", app.now().format("%Y%m%dT%H%M%SZ"));
    let response = csv_response(&rows, next);
    let (parts, body) = response.into_parts();
    let mut response = download(body, "text/csv; charset=utf-8", &filename);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}
