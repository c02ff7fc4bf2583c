//! Bounds on what one request, and all long-polls together, may hold of the server: a request
//! that outlives its time limit is answered 503 and its work dropped, so a stuck database or a
//! slow client cannot pile up handlers; and long-polls, which hold a connection and a task for
//! up to `wait_seconds` by design, are counted, so a flood of them cannot exhaust the process.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::config::LimitsConfig;
use crate::error::{ApiError, ErrorCode};
use crate::routes::logins::MAX_WAIT_SECONDS;

/// The routes that may wait for a change, by template: a login's status (the portal), the
/// device's pending logins, and the audit feed at the head of the log.
const LONG_POLLS: [&str; 3] = [
    "/v1/logins/{login_id}",
    "/v1/device/logins",
    "/v1/audit/feed",
];

/// How long a client turned away for too many long-polls should wait: about one poll's length.
const LONG_POLL_RETRY_SECONDS: i64 = 5;

pub struct Limits {
    request_timeout: Duration,
    long_polls: Arc<Semaphore>,
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Arc<Self> {
        Arc::new(Limits {
            request_timeout: config.request_timeout,
            long_polls: Arc::new(Semaphore::new(config.max_long_polls)),
        })
    }
}

/// The `wait_seconds` a long-poll asks for, as the handler will honour it. A value the handler
/// will refuse (not a number, over the maximum) waits for nothing.
fn wait_seconds(request: &Request) -> u64 {
    let Some(route) = request.extensions().get::<MatchedPath>() else {
        return 0;
    };
    if request.method() != Method::GET || !LONG_POLLS.contains(&route.as_str()) {
        return 0;
    }
    // Decoded as the handler's own extractor decodes it, so no spelling of the name slips past.
    Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(pairs)| {
            pairs
                .into_iter()
                .find(|(name, _)| name == "wait_seconds")
                .and_then(|(_, value)| value.parse::<u64>().ok())
        })
        .filter(|w| *w <= MAX_WAIT_SECONDS)
        .unwrap_or(0)
}

pub async fn bound(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    let wait = wait_seconds(&request);
    // Held until the answer is built, or the request is dropped.
    let _permit = if wait > 0 {
        match Arc::clone(&limits.long_polls).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return ApiError::new(
                ErrorCode::TooManyLongPolls,
                "too many long-polls are waiting; try again later, or poll without wait_seconds",
            )
            .retry_after_seconds(LONG_POLL_RETRY_SECONDS)
            .into_response(),
        }
    } else {
        None
    };
    let limit = limits.request_timeout + Duration::from_secs(wait);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                limit_seconds = limit.as_secs(),
                "a request ran past its time limit"
            );
            ApiError::new(
                ErrorCode::RequestTimeout,
                "the request took longer than this service allows; try again",
            )
            .retry_after_seconds(1)
            .into_response()
        }
    }
}
