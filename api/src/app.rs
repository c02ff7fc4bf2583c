//! The composition root: opens the database, wires the write side, the projections and the HTTP
//! routes together, and runs the background work (projection runner, mail sender, housekeeping),
//! each under the log follower.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::{get, post};
use axum::{middleware, Router};
use spse_totp_commands::accounts::{AccountService, ServiceSettings};
use spse_totp_commands::captcha::Captchas;
use spse_totp_commands::operators::{ConsoleSessions, OperatorService};
use spse_totp_commands::rate_limits::RateLimits;
use spse_totp_commands::resets::ResetTokens;
use spse_totp_commands::snapshots::SnapshotStore;
use spse_totp_commands::vault::{self, KeyRing, MasterKey, Vault, VaultError};
use spse_totp_commands::Clock;
use spse_totp_projections::audit_checkpoints::{self, AuditKey};
use spse_totp_projections::mail::{MailSender, MailSettings, MailTransport};
use spse_totp_projections::{all_projectors, ProjectionError, ProjectionRunner};
use spse_totp_store::{Database, DatabaseError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::KnownKeys;
use crate::config::Config;
use crate::device_routes::{self, DeviceRoutes};
use crate::error::{self, ApiError};
use crate::forwarding::{self, Forwarding};
use crate::housekeeping;
use crate::limits;
use crate::login_routes::{self, LoginRoutes};
use crate::metrics::{self, Metrics};
use crate::routes::{
    accounts, audit, audit_feed, captcha, device, helpdesk, logins, reset_page, resets, system,
};
use crate::state::{AppState, ResetServices, Services};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    MasterKey(#[from] VaultError),
    #[error(transparent)]
    Projections(#[from] ProjectionError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("mail: {0}")]
    Mail(String),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoStartError),
    #[error("forwarding: {0}")]
    Forwarding(#[from] forwarding::ForwardingError),
}

/// A running service: its shared state and background tasks. Dropping it does not stop them;
/// call [`App::shutdown`].
pub struct App {
    pub services: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The reference portal under `/demo`, when `SPSE_TOTP_DEMO=true`.
    demo: Option<Arc<crate::demo::Portal>>,
}

/// The master key from configuration, or the key file, created with a warning on first run.
pub fn master_key(config: &Config) -> Result<MasterKey, VaultError> {
    if let Some(text) = &config.master_key {
        return MasterKey::parse(text);
    }
    let (key, created) = MasterKey::load_or_create(&config.master_key_file)?;
    if created {
        tracing::warn!(
            path = %config.master_key_file.display(),
            "created a new master key file: fine for development; in production set SPSE_TOTP_MASTER_KEY \
             or SPSE_TOTP_MASTER_KEY_FILE and back the key up, since losing it loses every TOTP secret"
        );
    }
    Ok(key)
}

/// The master keys for `db`: the key of [`master_key`], but a key file is created only while the
/// database has sealed nothing, and a key that is not the one the database's secrets are sealed
/// under (nor the one a rotation under way goes to) is refused ([`VaultError::is_wrong_key`]: the
/// binary exits with status 2). During a rotation to the configured key, the old key too.
pub async fn master_key_for(config: &Config, db: &Database) -> Result<KeyRing, VaultError> {
    let recorded = vault::recorded_key_id(db).await?;
    if let Some(expected) = &recorded {
        if config.master_key.is_none() && !config.master_key_file.exists() {
            return Err(VaultError::KeyMissing {
                expected: expected.clone(),
                path: config.master_key_file.display().to_string(),
            });
        }
    }
    let key = master_key(config)?;
    vault::key_ring(db, &key).await
}

/// Every few seconds, whether a master key rotation moved the database away from this
/// instance's key: if so its vault stops opening secrets, also those it keeps in memory, and
/// `/readyz` reports it.
async fn watch_master_key(app: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = app.accounts.vault().check_record().await {
            tracing::warn!(error = %e, "could not read the master key record");
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The key the log's checkpoints are signed under: `SPSE_TOTP_AUDIT_KEY`, or one derived from
/// the master key (so a deployment that sets nothing still signs, and anyone who can read the
/// database but not the key cannot).
pub fn audit_key(config: &Config, master: &MasterKey) -> AuditKey {
    config
        .audit_key
        .clone()
        .unwrap_or_else(|| AuditKey::new(master.derive(audit_checkpoints::MASTER_KEY_LABEL)))
}

/// Captchas, rate limits, reset tokens and the mail sender (issue 3).
fn reset_services(
    config: &Config,
    db: &Database,
    key: &MasterKey,
    clock: &Arc<dyn Clock>,
) -> Result<(ResetServices, Arc<MailSender>), StartError> {
    if config.reset.captcha_test_answer.is_some() {
        tracing::warn!(
            "!!! SPSE_TOTP_CAPTCHA_TEST_ANSWER is set: a fixed captcha answer is accepted for every captcha. \
             This is for automated test environments only; never set it in production !!!"
        );
    }
    let transport = match &config.mail.smtp {
        Some(smtp) => MailTransport::smtp(smtp).map_err(|e| StartError::Mail(e.message))?,
        None => MailTransport::outbox(config.mail.outbox.clone()),
    };
    tracing::info!(transport = %transport.describe(), "mail transport");
    let tokens = ResetTokens::new(key);
    let link_tokens = tokens.clone();
    let dispatcher = Arc::new(MailSender::new(
        db,
        transport,
        Arc::new(move |request_id| link_tokens.token(request_id)),
        Arc::clone(clock),
        MailSettings {
            from: config.mail.from.clone(),
            public_base_url: config.public_base_url.clone(),
            claim_for: config.mail.claim_for,
            policy: config.policy.clone(),
            zone: config.lpse.time_zone,
            ..MailSettings::default()
        },
    ));
    let resets = ResetServices {
        captchas: Captchas::new(db, key, config.reset.captcha_test_answer.clone()),
        rate_limits: RateLimits::new(db),
        tokens,
    };
    Ok((resets, dispatcher))
}

impl App {
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<App, StartError> {
        if config.trust_forwarded_for {
            tracing::warn!(
                "SPSE_TOTP_TRUST_FORWARDED_FOR is deprecated and believes every X-Forwarded-For hop, \
                 which a client can forge: set SPSE_TOTP_TRUSTED_PROXIES to your proxies' addresses instead"
            );
        }
        let db = config.open_database().await?;
        let keys = master_key_for(&config, &db).await?;
        let key = keys.derivation_key().clone();
        let accounts = Arc::new(AccountService::new(
            Arc::clone(&db.events),
            Vault::with_keys(&db, &keys),
            SnapshotStore::new(&db),
            Arc::clone(&clock),
            ServiceSettings {
                policy: config.policy.clone(),
                public_base_url: config.public_base_url.clone(),
                issuer: config.lpse.issuer.clone(),
                ..ServiceSettings::default()
            },
        ));
        let (resets, dispatcher) = reset_services(&config, &db, &key, &clock)?;
        let operators = Arc::new(OperatorService::new(
            &db,
            &keys,
            Arc::clone(&clock),
            config.policy.clone(),
        ));
        let console_sessions = ConsoleSessions::new(&db);
        // Before the catch-up, so a key it creates is known when the first page calls.
        let demo = crate::demo::Portal::start(&config, &db, &clock).await?;
        let projections = Arc::new(ProjectionRunner::new(&db, all_projectors())?);
        projections.catch_up().await?;
        let audit_key = audit_key(&config, &key);
        let forwarding = Forwarding::new(config.cluster_url.clone(), &key)?;
        let services = Arc::new(Services {
            forwarding,
            audit_key,
            config,
            db,
            accounts,
            login_routes: LoginRoutes::new(login_routes::REMEMBERED),
            device_routes: DeviceRoutes::new(device_routes::REMEMBERED),
            projections,
            mail_handled: dispatcher.handled(),
            clock,
            metrics: Metrics::new()?,
            api_keys: KnownKeys::default(),
            resets,
            operators,
            console_sessions,
        });
        let (shutdown, stop) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(Arc::clone(&services.projections).run(stop.clone())),
            tokio::spawn(dispatcher.run(stop.clone())),
            tokio::spawn(watch_master_key(Arc::clone(&services), stop.clone())),
            tokio::spawn(forwarding::elect(Arc::clone(&services), stop.clone())),
            tokio::spawn(housekeeping::run(Arc::clone(&services), stop)),
        ];
        Ok(App {
            services,
            shutdown,
            tasks,
            demo,
        })
    }

    pub fn router(&self) -> Router {
        let router = router(Arc::clone(&self.services));
        match &self.demo {
            Some(portal) => router.merge(crate::demo::routes(Arc::clone(portal))),
            None => router,
        }
    }

    /// Serves on `listener` until `signal` completes, then stops the background tasks.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .await?;
        self.shutdown().await;
        Ok(())
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/v1/logins", post(logins::start))
        .route("/v1/logins/{login_id}", get(logins::status))
        .route("/v1/logins/{login_id}/code", post(logins::submit_code))
        .route("/v1/logins/{login_id}/cancel", post(logins::cancel))
        .route("/v1/device/activations", post(device::activate))
        .route("/v1/device/logins", get(device::pending))
        .route("/v1/device/logins/{login_id}/approve", post(device::approve))
        .route("/v1/device/logins/{login_id}/deny", post(device::deny))
        .route("/v1/accounts/{user_type}/{user_id}", get(accounts::get))
        .route("/v1/accounts/{user_type}/{user_id}/disable", post(accounts::disable))
        // Audit (auditor key) and the helpdesk's audit search (helpdesk key + X-Operator).
        .route("/v1/audit/accounts/{user_type}/{user_id}/events", get(audit::history))
        .route("/v1/audit/accounts/{user_type}/{user_id}/state", get(audit::state_as_of))
        .route("/v1/audit/accounts/{user_type}/{user_id}/export", get(audit::export))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/feed", get(audit_feed::feed))
        .route("/v1/helpdesk/events", get(audit::search))
        // Reset and recovery (issue 3).
        .route("/v1/captcha", get(captcha::issue))
        .route("/v1/resets", post(resets::request))
        .route("/v1/resets/confirm", post(resets::confirm))
        .route("/reset-totp", get(reset_page::page))
        .route("/v1/helpdesk/accounts/{user_type}/{user_id}", get(helpdesk::get))
        .route("/v1/helpdesk/accounts/{user_type}/{user_id}/reset", post(helpdesk::reset))
        .route("/v1/helpdesk/accounts/{user_type}/{user_id}/unlock", post(helpdesk::unlock))
        .nest("/console", crate::console::router())
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/activez", get(system::activez))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        // Inside the time limit, which then bounds a forwarded request's round trip too.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            forwarding::forward_writes,
        ))
        .layer(middleware::from_fn_with_state(
            limits::Limits::new(&state.config.limits),
            limits::bound,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), error::retry_after))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), metrics::track))
        .layer(DefaultBodyLimit::max(max_body))
        // The span names the path only: query strings may carry tokens and never reach a log.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            use axum::response::IntoResponse;
            ApiError::internal(&"a handler panicked").into_response()
        }))
        // Outside every layer that may refuse, so each error message is in the caller's language.
        .layer(middleware::from_fn(error::localize))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
