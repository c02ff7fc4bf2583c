//! The log as a feed for other systems (a SIEM, an archive): every event in log order, a page at
//! a time, with a long-poll at the head so a follower need not poll in a loop.
//!
//! A follower keeps the last `next_after` it processed and asks again from it. Positions are
//! assigned in commit order and the store never lets a read pass an event that commits later
//! with a smaller position, so following `next_after` sees every event exactly once, in order.
//!
//! Pages are not recorded as reads in the log, unlike an auditor's reads of one account: the
//! feed is a replication channel for a whole log, not a look at a person's account, and a
//! record per page would itself be a new event for the follower to read, so a long-poll would
//! never wait. Who may follow is decided by issuing, or revoking, an auditor key.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::{auditor, history_event, HistoryEvent};
use crate::auth::ApiCaller;
use crate::error::{ApiError, ApiQuery, ErrorCode};
use crate::state::AppState;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
const MAX_WAIT_SECONDS: u64 = 30;
/// Appends by another instance on the same database reach this one's watch only through the
/// database; between wake-ups the long-poll looks again at this interval.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The last position already read (`next_after` of the previous page); 0 or absent to start
    /// at the log's first event. Positions are signed 64-bit integers in both databases, so
    /// a larger number names none and is refused.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// When nothing is newer than `after`, wait up to this many seconds (at most 30) for an
    /// event before answering with an empty page.
    #[param(maximum = 30)]
    pub wait_seconds: Option<u64>,
}

/// One event of the log, with the stream it belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedEvent {
    /// The stream: `account-{user_type}-{USER_ID}`, `apikey-{id}`, `access-{...}` and so on.
    pub stream: String,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    /// In log order, each position greater than the last.
    pub events: Vec<FeedEvent>,
    /// Pass as `after` for the next page: the last event's position, or `after` itself when
    /// the page is empty.
    pub next_after: u64,
}

/// Every event in log order after a position; long-polls at the head of the log.
#[utoipa::path(get, path = "/v1/audit/feed", tag = "audit", params(FeedQuery),
    security(("api_key" = [])),
    responses((status = 200, body = FeedPage), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn feed(
    State(app): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
    auditor(&caller)?;
    let after = u64::try_from(query.after.unwrap_or(0))
        .map_err(|_| ApiError::new(ErrorCode::InvalidQuery, "after must not be negative"))?;
    let limit = match query.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("limit must be between 1 and {MAX_PAGE}"),
            ))
        }
    };
    let wait = query.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("wait_seconds is at most {MAX_WAIT_SECONDS}"),
        ));
    }
    // Subscribed before the first read, so an append between the read and the wait still wakes.
    let mut appended = app.db.events.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let events = app.db.events.read_all(after, limit).await?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            let next_after = events.last().map_or(after, |e| e.position);
            let events = events
                .into_iter()
                .map(|recorded| FeedEvent {
                    stream: recorded.stream.clone(),
                    event: history_event(recorded),
                })
                .collect();
            return Ok(Json(FeedPage { events, next_after }));
        }
        let wake = deadline.min(tokio::time::Instant::now() + POLL_INTERVAL);
        tokio::select! {
            changed = appended.changed() => if changed.is_err() {
                // The store is closing: answer with what there is (nothing) now.
                return Ok(Json(FeedPage { events: Vec::new(), next_after: after }));
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}
