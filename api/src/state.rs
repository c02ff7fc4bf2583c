//! What every handler shares, and the steps most of them take: check a role, build the event
//! metadata, run a command, wait until the projections show it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use spse_totp_commands::accounts::{
    AccountService, ActivatedDevice, CommandError, Executed, StartedLogin,
};
use spse_totp_commands::captcha::Captchas;
use spse_totp_commands::operators::{ConsoleSessions, OperatorService};
use spse_totp_commands::rate_limits::RateLimits;
use spse_totp_commands::resets::ResetTokens;
use spse_totp_commands::Clock;
use spse_totp_domain::{AccountCommand, AccountKey};
use spse_totp_projections::ProjectionRunner;
use spse_totp_store::{Actor, Database, EventMetadata};

use crate::auth::KnownKeys;
use crate::config::Config;
use crate::device_routes::DeviceRoutes;
use crate::error::ApiError;
use crate::forwarding::{ForwardedClient, Forwarding};
use crate::login_routes::LoginRoutes;
use crate::metrics::Metrics;

/// How long a handler waits for the projections to show its own write before answering anyway.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

pub type AppState = Arc<Services>;

pub struct Services {
    pub config: Config,
    pub db: Database,
    pub accounts: Arc<AccountService>,
    /// The account of each login this instance started, so the code that follows skips a read.
    pub login_routes: LoginRoutes,
    /// The account of each device token this instance issued or looked up, so an approval
    /// skips a read.
    pub device_routes: DeviceRoutes,
    pub projections: Arc<ProjectionRunner>,
    /// The position up to which this instance's mail sender has sent (or given up) every message
    /// the log calls for; it stays put while another instance leads the mail, and while a
    /// message waits for its retry.
    pub mail_handled: tokio::sync::watch::Receiver<u64>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub api_keys: KnownKeys,
    pub resets: ResetServices,
    /// Console operators and their sessions (issue 15).
    pub operators: Arc<OperatorService>,
    pub console_sessions: ConsoleSessions,
    /// Signs the log's checkpoints and checks them in `audit verify` (issue 13, section 4).
    pub audit_key: spse_totp_projections::audit_checkpoints::AuditKey,
    /// Where write requests run when several instances share the database (issue 14).
    pub forwarding: Forwarding,
}

/// What reset and recovery use besides the account service.
pub struct ResetServices {
    pub captchas: Captchas,
    pub rate_limits: RateLimits,
    pub tokens: ResetTokens,
}

impl Services {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Waits until every projection includes `position`, so the caller reads its own write.
    pub async fn caught_up(&self, position: Option<u64>) {
        let Some(position) = position else { return };
        if !self.projections.wait_for(position, READ_YOUR_WRITES).await {
            tracing::warn!(position, "projections lag behind a command's write");
        }
    }

    /// Runs a command through the account service and settles it the way every route must:
    /// counts the outcome under `name`, waits until the projections show what it wrote (a
    /// refusal's recorded failure too), and maps a failure to its answer. The caller builds the
    /// response from what it returns.
    pub async fn command<T: Written>(
        &self,
        name: &'static str,
        run: impl Future<Output = Result<T, CommandError>>,
    ) -> Result<T, ApiError> {
        match run.await {
            Ok(done) => {
                self.succeeded(name);
                self.caught_up(done.position()).await;
                Ok(done)
            }
            Err(error) => {
                if let CommandError::Rejected { position, .. } = &error {
                    self.caught_up(*position).await;
                }
                let answer = ApiError::from(error);
                self.metrics
                    .commands
                    .with_label_values(&[name, answer.code().as_str()])
                    .inc();
                Err(answer)
            }
        }
    }

    /// [`Services::command`] for an [`AccountCommand`] on one account.
    pub async fn execute(
        &self,
        name: &'static str,
        key: &AccountKey,
        command: AccountCommand,
        metadata: EventMetadata,
    ) -> Result<Executed, ApiError> {
        self.command(name, self.accounts.execute(key, command, metadata))
            .await
    }

    pub fn succeeded(&self, command: &'static str) {
        self.metrics
            .commands
            .with_label_values(&[command, "ok"])
            .inc();
    }
}

/// What a command wrote: the log position a read must wait for to see it.
pub trait Written {
    fn position(&self) -> Option<u64>;
}

impl Written for Executed {
    fn position(&self) -> Option<u64> {
        self.position
    }
}

impl Written for StartedLogin {
    fn position(&self) -> Option<u64> {
        self.position
    }
}

impl Written for ActivatedDevice {
    fn position(&self) -> Option<u64> {
        self.position
    }
}

/// Who is calling from where: the part of every event's metadata that comes from the request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
}

impl RequestContext {
    pub fn metadata(&self, actor: Actor) -> EventMetadata {
        EventMetadata {
            actor,
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
            correlation_id: self
                .correlation_id
                .clone()
                .or_else(|| self.request_id.clone()),
            causation_id: self.request_id.clone(),
        }
    }
}

fn header(headers: &HeaderMap, name: &str, max: usize) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(max)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestContext {
            client_ip: client_address(app, parts).map(|ip| ip.to_string()),
            user_agent: header(&parts.headers, "user-agent", 512),
            correlation_id: header(&parts.headers, "x-correlation-id", 128),
            request_id: header(&parts.headers, "x-request-id", 128),
        })
    }
}

/// The address the request came from: the one the forwarding instance found, on a request
/// forwarded by another instance; otherwise the peer's, or what the trusted proxies say.
pub fn client_address(app: &AppState, parts: &Parts) -> Option<IpAddr> {
    if let Some(ForwardedClient(client)) = parts.extensions.get::<ForwardedClient>() {
        return *client;
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    app.config.proxies().client_address(peer, forwarded)
}
