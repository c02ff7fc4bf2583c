//! Write requests run on one instance at a time: the active one.
//!
//! Several instances on one PostgreSQL database all stay correct when each appends for itself
//! (the head lock orders their groups), but they wait for each other: every group one instance
//! commits holds the lock the other's next group needs, so each writer's groups get smaller and
//! its requests wait longer. Measured on two cores, two instances writing for themselves served
//! about 1,000 typed-code logins a second where one served 2,000 to 2,600. So, as a Vault
//! standby forwards to its active node, an instance given `SPSE_TOTP_CLUSTER_URL` takes part in
//! an election (the follower's `requests` lease): the winner runs every write request, the others
//! pass theirs on to it and answer reads themselves.
//!
//! Forwarding is only ever a shortcut. An instance that does not know the active one, or cannot
//! connect to it, runs the request itself, exactly as without forwarding. A forwarded request
//! is always run where it arrives, so no request goes round in circles, even while two
//! instances disagree about which of them is active.
//!
//! The active instance believes a forwarded request's client address only when the request
//! carries the instances' shared token (derived from the master key, which every instance of a
//! deployment holds); a request that claims to be forwarded without it is refused.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use spse_totp_commands::vault::MasterKey;
use spse_totp_projections::leadership::{Lease, FOLLOWER_POLL};
use spse_totp_store::{Database, Engine};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::error::{body_bytes, ApiError, ErrorCode};
use crate::state::AppState;

/// The lease of the instance that runs write requests.
const LEASE_ROLE: &str = "requests";

/// The instances' shared token, on every request one forwards to another.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("spse-totp-forwarded-by");

/// The client address the forwarding instance found (empty when it found none).
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("spse-totp-forwarded-for");

/// What the token is derived from the master key for.
const TOKEN_LABEL: &str = "spse-totp request forwarding";

/// How long a standby tries to connect to the active instance before running the request
/// itself. On a LAN a connection takes well under a millisecond; this only bounds the wait on
/// an active instance whose machine is gone without a trace.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long write requests run on the standby after a connection to the active instance failed,
/// before it is tried again. An election that names another instance ends it at once.
const UNREACHABLE_FOR: Duration = Duration::from_secs(5);

/// Headers that belong to one connection, not to the request or answer passed along.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::HOST,
];

/// The client address a forwarded request was made from, as the instance that forwarded it
/// found it. Put in the request's extensions once its token is checked.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedClient(pub Option<IpAddr>);

#[derive(Debug, thiserror::Error)]
pub enum ForwardingError {
    #[error("the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("the token: {0}")]
    Token(#[from] axum::http::header::InvalidHeaderValue),
}

/// The active instance as this one knows it.
#[derive(Default)]
struct Active {
    /// `None` while this instance is active or knows no other.
    url: Option<Arc<str>>,
    /// Until when requests are not sent to `url`, after a connection to it failed.
    unreachable_until: Option<Instant>,
}

/// Where one write request goes.
enum Route {
    Here,
    Active(Arc<str>),
    /// The active instance could not be reached a moment ago: here.
    Unreachable,
}

pub struct Forwarding {
    /// `SPSE_TOTP_CLUSTER_URL`: where the other instances reach this one. Without it this
    /// instance takes no part in the election and runs every request itself.
    own_url: Option<String>,
    token: HeaderValue,
    /// Where write requests go now.
    active: RwLock<Active>,
    client: reqwest::Client,
}

impl Forwarding {
    pub fn new(own_url: Option<String>, key: &MasterKey) -> Result<Self, ForwardingError> {
        let token = HeaderValue::from_str(&hex_token(key))?;
        Ok(Forwarding {
            own_url,
            token,
            active: RwLock::new(Active::default()),
            // No timeout for the whole exchange: the standby's own request time limit, outside
            // this middleware, bounds it.
            client: reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                // An answer is relayed as it is, a redirect included, for the caller to follow.
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// Where a write request that arrives now goes.
    fn route(&self) -> Route {
        let active = self.read();
        match &active.url {
            None => Route::Here,
            Some(_) if active.unreachable_until.is_some_and(|t| Instant::now() < t) => {
                Route::Unreachable
            }
            Some(url) => Route::Active(Arc::clone(url)),
        }
    }

    /// Whether a write request sent here now runs here: this instance is the active one, takes
    /// no part in an election, knows no active instance, or cannot reach it at the moment.
    pub fn runs_writes_here(&self) -> bool {
        !matches!(self.route(), Route::Active(_))
    }

    fn set_active(&self, url: Option<Arc<str>>) {
        let mut active = self.write();
        if active.url != url {
            match &url {
                Some(url) => {
                    tracing::info!(active = %url, "write requests go to the active instance")
                }
                None => tracing::info!("write requests run on this instance"),
            }
            *active = Active {
                url,
                unreachable_until: None,
            };
        }
    }

    /// A connection to `url` failed: write requests run here for a while, rather than each
    /// waiting for a connection to fail. Whether this is news, worth a warning.
    fn unreachable(&self, url: &Arc<str>) -> bool {
        let mut active = self.write();
        if active.url.as_ref() != Some(url) {
            return false;
        }
        let now = Instant::now();
        let news = active.unreachable_until.is_none_or(|t| now >= t);
        active.unreachable_until = Some(now + UNREACHABLE_FOR);
        news
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Active> {
        // Both fields are written together: a panicking writer leaves nothing half-done.
        self.active
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Active> {
        self.active
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn signed(&self, value: &HeaderValue) -> bool {
        bool::from(value.as_bytes().ct_eq(self.token.as_bytes()))
    }
}

fn hex_token(key: &MasterKey) -> String {
    hex::encode(key.derive(TOKEN_LABEL))
}

/// Until `stop`: takes the `requests` lease when it is free and records this instance as the
/// active one; otherwise reads which instance is, every [`FOLLOWER_POLL`].
pub async fn elect(app: AppState, mut stop: watch::Receiver<bool>) {
    let Some(own_url) = app.forwarding.own_url.clone() else {
        return;
    };
    if app.db.engine != Engine::Postgres {
        tracing::warn!(
            "SPSE_TOTP_CLUSTER_URL is for instances sharing a PostgreSQL database; ignored"
        );
        return;
    }
    let mut lease = Lease::for_database(&app.db, LEASE_ROLE);
    let mut recorded = false;
    // A database that is down fails every round: said once, not twice a second.
    let mut failing = false;
    loop {
        let outcome = lease.lead().await;
        match (&outcome, failing) {
            (Err(e), false) => {
                tracing::warn!(error = %e, "could not take part in the election of the active instance; running write requests here")
            }
            (Ok(_), true) => {
                tracing::info!("taking part in the election of the active instance again")
            }
            _ => {}
        }
        failing = outcome.is_err();
        app.metrics
            .active_instance
            .set(i64::from(matches!(outcome, Ok(true))));
        match outcome {
            Ok(true) => {
                if !recorded {
                    match record_active(&app.db, &own_url).await {
                        Ok(()) => recorded = true,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not record this instance as the active one")
                        }
                    }
                }
                app.forwarding.set_active(None);
            }
            Ok(false) => {
                recorded = false;
                match read_active(&app.db).await {
                    Ok(active) => app
                        .forwarding
                        .set_active(active.filter(|url| *url != own_url).map(Arc::from)),
                    Err(e) => tracing::warn!(error = %e, "could not read which instance is active"),
                }
            }
            Err(_) => {
                recorded = false;
                app.forwarding.set_active(None);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOWER_POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn record_active(db: &Database, own_url: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO active_instance (id, cluster_url) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET cluster_url = excluded.cluster_url",
    )
    .bind(own_url)
    .execute(&db.pool)
    .await?;
    Ok(())
}

async fn read_active(db: &Database) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT cluster_url FROM active_instance WHERE id = 1")
        .fetch_optional(&db.pool)
        .await
}

/// Middleware: runs a forwarded request here, with the client address it was forwarded for;
/// passes a write request on to the active instance when there is another; runs the rest here.
pub async fn forward_writes(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Some(token) = parts.headers.remove(&FORWARDED_BY) {
        if !app.forwarding.signed(&token) {
            return ApiError::new(
                ErrorCode::ForwardingRefused,
                "the request says an instance of this service forwarded it, without the instances' token",
            )
            .into_response();
        }
        let client = parts
            .headers
            .remove(&FORWARDED_FOR)
            .and_then(|v| v.to_str().ok().and_then(|v| v.parse::<IpAddr>().ok()));
        parts.extensions.insert(ForwardedClient(client));
        return next.run(Request::from_parts(parts, body)).await;
    }
    parts.headers.remove(&FORWARDED_FOR);
    if !is_write(&parts.method) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let active = match app.forwarding.route() {
        Route::Here => return next.run(Request::from_parts(parts, body)).await,
        Route::Unreachable => {
            app.metrics.forwarded.with_label_values(&["ran_here"]).inc();
            return next.run(Request::from_parts(parts, body)).await;
        }
        Route::Active(active) => active,
    };
    // Read whole, within the same limit the handlers apply, so a request the active instance
    // cannot take can still run here.
    let bytes = match body_bytes(Request::from_parts(parts.clone(), body), &()).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused.into_response(),
    };
    let client = crate::state::client_address(&app, &parts);
    match pass_on(&app, &active, &parts, bytes.clone(), client).await {
        Ok(response) => {
            app.metrics.forwarded.with_label_values(&["answered"]).inc();
            response
        }
        Err(e) if e.is_connect() => {
            // Nothing reached the active instance: the request is this one's to run.
            if app.forwarding.unreachable(&active) {
                tracing::warn!(active = %active, error = %e, "the active instance is unreachable; running write requests here for a while");
            }
            app.metrics.forwarded.with_label_values(&["ran_here"]).inc();
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => {
            // The request may have run there: running it again here could run it twice.
            tracing::warn!(active = %active, error = %e, "the active instance did not answer a forwarded request");
            app.metrics.forwarded.with_label_values(&["failed"]).inc();
            ApiError::new(
                ErrorCode::InstanceUnavailable,
                "the instance that runs write requests did not answer; try again",
            )
            .retry_after_seconds(1)
            .into_response()
        }
    }
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn pass_on(
    app: &AppState,
    active: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
    client: Option<IpAddr>,
) -> Result<Response, reqwest::Error> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut headers = without_hop_by_hop(&parts.headers);
    headers.insert(FORWARDED_BY, app.forwarding.token.clone());
    if let Some(ip) = client.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
        headers.insert(FORWARDED_FOR, ip);
    }
    let answer = app
        .forwarding
        .client
        .request(parts.method.clone(), format!("{active}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await?;
    let status = answer.status();
    let headers = without_hop_by_hop(answer.headers());
    let body = answer.bytes().await?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn without_hop_by_hop(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in &HOP_BY_HOP {
        kept.remove(name);
    }
    kept.remove(header::CONTENT_LENGTH);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_of_a_deployment_derives_the_same_token_and_no_other_does() {
        let key = MasterKey::generate();
        let same = MasterKey::parse(&key.to_base64()).expect("the key parses");
        let forwarding = Forwarding::new(None, &key).expect("a client");
        assert!(forwarding.signed(&HeaderValue::from_str(&hex_token(&same)).expect("hex")));
        let other = MasterKey::generate();
        assert!(!forwarding.signed(&HeaderValue::from_str(&hex_token(&other)).expect("hex")));
        assert!(!forwarding.signed(&HeaderValue::from_static("")));
    }

    #[test]
    fn only_reads_are_answered_where_they_arrive() {
        assert!(!is_write(&Method::GET));
        assert!(!is_write(&Method::HEAD));
        assert!(is_write(&Method::POST));
        assert!(is_write(&Method::DELETE));
        assert!(is_write(&Method::PUT));
    }
}
