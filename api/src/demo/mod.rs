//! The reference portal under `/demo` (issue 16): the SPSE screens of the user guide, served by
//! this binary when `SPSE_TOTP_DEMO=true`. It is the integration example for portal teams, so it
//! talks to the TOTP service only the way the SPSE portal does: over the public REST API
//! ([`service`]) with a portal API key. Its own concerns (users and passwords, sessions, CSRF,
//! pages) stand where the real portal's would.
//!
//! Pages are askama templates compiled into the binary; the stylesheet and the one script are
//! embedded too, and a strict Content-Security-Policy allows nothing from another host.

mod pages;
pub mod service;
mod session;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use spse_totp_commands::{apikeys, Clock};
use spse_totp_domain::apikey::Role;
use spse_totp_store::{Database, StoreError};
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use service::{ServiceError, TotpService};
use session::Sessions;

#[derive(Debug, thiserror::Error)]
pub enum DemoStartError {
    #[error("demo portal key: {0}")]
    Key(#[from] StoreError),
    #[error("demo portal: {0}")]
    Client(#[from] ServiceError),
}

/// The portal: its API client, its users file, its sessions and its clock (for the countdown).
pub struct Portal {
    api: TotpService,
    users_file: PathBuf,
    sessions: Sessions,
    clock: Arc<dyn Clock>,
}

impl Portal {
    /// The portal for `config`, or `None` when the demo is off. Without
    /// `SPSE_TOTP_DEMO_PORTAL_KEY` it creates its own portal key, recorded as an
    /// `ApiKeyCreated` event named `demo-portal` like any other key.
    pub async fn start(
        config: &Config,
        db: &Database,
        clock: &Arc<dyn Clock>,
    ) -> Result<Option<Arc<Portal>>, DemoStartError> {
        if !config.demo.enabled {
            return Ok(None);
        }
        let key = match &config.demo.portal_key {
            Some(key) => key.clone(),
            None => {
                apikeys::create(
                    db.events.as_ref(),
                    "demo-portal",
                    Role::Portal,
                    "demo portal start",
                    clock.now(),
                )
                .await?
                .key
            }
        };
        tracing::warn!(
            users = %config.demo.users_file.display(),
            "the reference portal is served under /demo (SPSE_TOTP_DEMO=true): a demo, not the production portal"
        );
        Ok(Some(Arc::new(Portal {
            api: TotpService::new(&config.public_base_url, key)?,
            users_file: config.demo.users_file.clone(),
            sessions: Sessions::default(),
            clock: Arc::clone(clock),
        })))
    }
}

/// The policy every `/demo` answer carries: scripts, styles and fetches from this origin only,
/// images from it or inline (the QR code, the captcha), no frames, forms to this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes(portal: Arc<Portal>) -> Router {
    Router::new()
        .route("/demo", get(pages::index))
        .route("/demo/", get(pages::index))
        .route("/demo/login", get(pages::login_form).post(pages::login))
        .route("/demo/totp", get(pages::totp))
        .route("/demo/totp/wait", get(pages::wait))
        .route("/demo/totp/next", get(pages::next))
        .route("/demo/totp/code", post(pages::code))
        .route("/demo/home", get(pages::home))
        .route("/demo/disable", post(pages::disable))
        .route("/demo/logout", post(pages::logout))
        .route("/demo/reset", get(pages::reset_form).post(pages::reset))
        .route("/demo/assets/portal.css", get(pages::stylesheet))
        .route("/demo/assets/portal.js", get(pages::script))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::map_response(security_headers))
        .layer(CatchPanicLayer::new())
        .with_state(portal)
}

async fn security_headers(mut response: Response) -> Response {
    crate::page_headers::protect_page(response.headers_mut(), CSP);
    response
}
