//! The auditor's pages: one account's whole history with filters and each event's metadata,
//! and its state as of an instant (picked in the LPSE's zone, read in UTC). Every read asks for its purpose
//! and is recorded under the signed-in auditor before it is shown.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use spse_totp_domain::operator::OperatorRole;
use spse_totp_domain::{AccountKey, UserId, UserType};
use spse_totp_projections::audit::{self, HistoryFilter};
use spse_totp_projections::mail::message::LocalZone;

use super::session::Signed;
use super::{html, local, Frame};
use crate::state::{AppState, RequestContext};

const HISTORY_LIMIT: usize = 1000;

pub struct StateLines {
    at: String,
    status: String,
    device: String,
    lock: String,
    devices: Vec<String>,
}

pub struct EventLine {
    version: u64,
    when: String,
    event_type: String,
    who: String,
    meta: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    page: Frame,
    /// WIB, WITA or WIT: the zone the form's times are in.
    zone: &'static str,
    error: Option<String>,
    user_type: String,
    user_id: String,
    purpose: String,
    event_type: String,
    from: String,
    to: String,
    at: String,
    state: Option<StateLines>,
    shown: bool,
    events: Vec<EventLine>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub(super) user_type: String,
    #[serde(default)]
    pub(super) user_id: String,
    #[serde(default)]
    pub(super) purpose: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    at: String,
}

/// A `datetime-local` value, taken in the LPSE's zone, as a UTC instant.
pub(super) fn parse_local(zone: LocalZone, text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .ok()?;
    zone.offset()
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console audit page");
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
}

fn empty_page(
    zone: LocalZone,
    signed: &Signed,
    query: AuditQuery,
    error: Option<String>,
) -> AuditPage {
    AuditPage {
        page: Frame::new(signed.lang, Some(signed)),
        zone: zone.label(),
        error,
        user_type: query.user_type,
        user_id: query.user_id,
        purpose: query.purpose,
        event_type: query.event_type,
        from: query.from,
        to: query.to,
        at: query.at,
        state: None,
        shown: false,
        events: Vec::new(),
    }
}

/// The account form again, with what was refused.
pub(super) fn audit_page_error(
    zone: LocalZone,
    signed: &Signed,
    query: AuditQuery,
    error: String,
) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        empty_page(zone, signed, query, Some(error)).render(),
    )
}

pub async fn home(State(app): State<AppState>, signed: Signed) -> Response {
    if let Err(page) = signed.require(OperatorRole::Auditor) {
        return page;
    }
    html(
        StatusCode::OK,
        empty_page(
            app.config.lpse.time_zone,
            &signed,
            AuditQuery::default(),
            None,
        )
        .render(),
    )
}

pub async fn account(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Query(query): Query<AuditQuery>,
) -> Response {
    let zone = app.config.lpse.time_zone;
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
            let page = empty_page(zone, &signed, query, Some(t.account_not_found.to_owned()));
            return html(StatusCode::BAD_REQUEST, page.render());
        }
    };
    let purpose = match crate::routes::audit::purpose(Some(&query.purpose)) {
        Ok(p) => p,
        Err(e) => {
            let page = empty_page(zone, &signed, query, Some(e.message_in(signed.lang)));
            return html(StatusCode::BAD_REQUEST, page.render());
        }
    };
    let read = crate::routes::audit::account_read(&key, "GET /console/audit/account", purpose);
    if let Err(e) = crate::routes::audit::record(&app, &ctx, signed.actor(), read).await {
        return unavailable(&e.code().as_str());
    }
    let stream = key.stream_name();
    let filter = HistoryFilter {
        after_version: 0,
        from: parse_local(zone, &query.from),
        to: parse_local(zone, &query.to),
        event_type: Some(query.event_type.trim().to_owned()).filter(|t| !t.is_empty()),
    };
    let events =
        match audit::history_page(app.db.log_source(), &stream, &filter, HISTORY_LIMIT).await {
            Ok(events) => events,
            Err(e) => return unavailable(&e),
        };
    let state = match parse_local(zone, &query.at) {
        None => None,
        Some(at) => match audit::history_as_of(app.db.log_source(), &stream, at).await {
            Err(e) => return unavailable(&e),
            Ok(history) => {
                let s = history.unwrap_or_default().state_as_of(at);
                Some(StateLines {
                    at: local(zone, at),
                    status: s.totp_status.as_str().to_owned(),
                    device: s
                        .device
                        .as_ref()
                        .map(|d| format!("{} ({})", d.label, local(zone, d.activated_at)))
                        .unwrap_or_else(|| t.none.to_owned()),
                    lock: s
                        .locked_until
                        .map(|at| local(zone, at))
                        .unwrap_or_else(|| t.not_locked.to_owned()),
                    devices: s
                        .devices
                        .iter()
                        .map(|d| {
                            let ended = d.ended_at.map(|at| local(zone, at)).unwrap_or_default();
                            format!("{} ({} - {ended})", d.label, local(zone, d.activated_at))
                        })
                        .collect(),
                })
            }
        },
    };
    let lines = events
        .iter()
        .map(|e| {
            let m = &e.metadata;
            EventLine {
                version: e.version,
                when: local(zone, e.recorded_at),
                event_type: e.event_type.clone(),
                who: format!("{} {}", m.actor.kind(), m.actor.display_name()),
                meta: [&m.client_ip, &m.user_agent, &m.causation_id]
                    .iter()
                    .map(|v| v.as_deref().unwrap_or("-"))
                    .collect::<Vec<_>>()
                    .join(" / "),
            }
        })
        .collect();
    let mut page = empty_page(zone, &signed, query, None);
    page.state = state;
    page.shown = true;
    page.events = lines;
    html(StatusCode::OK, page.render())
}
