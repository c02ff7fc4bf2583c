//! Who is calling. API keys (portal, helpdesk, auditor) and device tokens both arrive as
//! `Authorization: Bearer ...`; only their SHA-256 digests are stored, so a lookup by digest is
//! the check, with an API key's expiry and revocation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use spse_totp_commands::operators::OPERATOR_DEVICE_TOKEN_PREFIX;
use spse_totp_commands::tokens::sha256_hex;
use spse_totp_domain::apikey::{self, Role};
use spse_totp_domain::operator::Username;
use spse_totp_domain::AccountKey;
use spse_totp_projections::{api_keys, device_bindings, operators};
use spse_totp_store::Actor;
use uuid::Uuid;

use crate::device_routes::DeviceRoute;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or_else(unauthorized)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "send a valid key as Authorization: Bearer <key>",
    )
}

/// A caller holding an API key.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub key_id: Uuid,
    pub name: String,
    pub role: Role,
}

impl ApiCaller {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role == role {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this endpoint needs a {role} key; this key is {}",
                    self.role
                ),
            ))
        }
    }

    /// The actor recorded for this key. A helpdesk call names its operator through
    /// [`HelpdeskCaller`] instead.
    pub fn actor(&self) -> Actor {
        match self.role {
            Role::Auditor => Actor::Auditor {
                key_id: self.key_id,
                key_name: self.name.clone(),
            },
            _ => Actor::Portal {
                key_id: self.key_id,
                key_name: self.name.clone(),
            },
        }
    }
}

/// A caller holding a `portal` key, checked before the request body is read, so that a wrong
/// key is told so (403) whatever the body holds.
#[derive(Debug, Clone)]
pub struct PortalCaller(pub ApiCaller);

impl FromRequestParts<AppState> for PortalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = ApiCaller::from_request_parts(parts, app).await?;
        key.require(Role::Portal)?;
        Ok(PortalCaller(key))
    }
}

/// The header naming the helpdesk operator behind a call; recorded as the actor.
pub const OPERATOR_HEADER: &str = "x-operator";
const OPERATOR_MAX_CHARS: usize = 100;

/// A helpdesk operator: a `helpdesk` key, plus the person's name in `X-Operator`, which is
/// required so that every helpdesk action and lookup names who did it.
#[derive(Debug, Clone)]
pub struct HelpdeskCaller {
    pub key: ApiCaller,
    pub operator: String,
}

impl HelpdeskCaller {
    pub fn actor(&self) -> Actor {
        Actor::Helpdesk {
            operator: self.operator.clone(),
            key_id: self.key.key_id,
        }
    }
}

impl FromRequestParts<AppState> for HelpdeskCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = ApiCaller::from_request_parts(parts, app).await?;
        key.require(Role::Helpdesk)?;
        let operator = parts
            .headers
            .get(OPERATOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|name| {
                !name.is_empty()
                    && name.chars().count() <= OPERATOR_MAX_CHARS
                    && !name.chars().any(char::is_control)
            })
            .ok_or_else(|| {
                ApiError::new(ErrorCode::OperatorRequired,
                    format!(
                        "name the operator in the X-Operator header (1 to {OPERATOR_MAX_CHARS} characters)"
                    ),
                )
            })?
            .to_owned();
        Ok(HelpdeskCaller { key, operator })
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let digest = sha256_hex(bearer(parts)?);
        let known = match app.api_keys.get(&digest) {
            Some(known) => known,
            None => {
                let row = api_keys::by_digest(&app.db.pool, &digest)
                    .await?
                    .ok_or_else(unauthorized)?;
                let known = KnownKey {
                    caller: ApiCaller {
                        key_id: row.key_id,
                        name: row.name,
                        role: row.role,
                    },
                    expires_at: row.expires_at,
                    revoked_at: row.revoked_at,
                };
                app.api_keys.put(digest, known.clone());
                known
            }
        };
        let now = app.now();
        apikey::check(known.expires_at, known.revoked_at, now).map_err(|refusal| {
            ApiError::new(
                ErrorCode::Unauthorized,
                format!("{refusal}; ask the service's administrator for a new key"),
            )
        })?;
        if app.api_keys.use_is_due(known.caller.key_id, now) {
            // A failed write costs only the "last used" column a minute of accuracy: never the
            // call itself.
            if let Err(e) = api_keys::record_use(&app.db, known.caller.key_id, now).await {
                tracing::warn!(error = %e, key_id = %known.caller.key_id, "recording an API key's use");
            }
        }
        Ok(known.caller)
    }
}

/// A key as the key table last said, with what decides whether it still works.
#[derive(Debug, Clone)]
struct KnownKey {
    caller: ApiCaller,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Keys recently read from the key table, so the portal's every call does not read it. Only
/// known keys are kept (an unknown one is looked up each time, so a key created a moment ago works
/// at once), and for at most [`KNOWN_FOR`]: a key revoked on another instance must be refused
/// here within 2 seconds (issue 13), and the key table reaches this instance through the
/// projection follower (PostgreSQL) well within the other second. Expiry is checked on every
/// call against the service's clock, cached or not.
///
/// Also when each key's use was last recorded, so that `api_key_usage` is written at most once a
/// minute per key by each instance rather than on every call.
pub struct KnownKeys {
    keys: Mutex<HashMap<String, (KnownKey, Instant)>>,
    used: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

const KNOWN_FOR: Duration = Duration::from_secs(1);
const KNOWN_MAX: usize = 1024;
/// How stale "last used" may be: one write per key per instance per this.
const USE_RECORDED_EVERY: chrono::Duration = chrono::Duration::seconds(60);

impl Default for KnownKeys {
    fn default() -> Self {
        KnownKeys {
            keys: Mutex::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        }
    }
}

impl KnownKeys {
    fn get(&self, digest: &str) -> Option<KnownKey> {
        let keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.get(digest)
            .filter(|(_, seen)| seen.elapsed() < KNOWN_FOR)
            .map(|(known, _)| known.clone())
    }

    fn put(&self, digest: String, known: KnownKey) {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if keys.len() >= KNOWN_MAX {
            keys.retain(|_, (_, seen)| seen.elapsed() < KNOWN_FOR);
        }
        if keys.len() < KNOWN_MAX {
            keys.insert(digest, (known, Instant::now()));
        }
    }

    /// Drops what this instance remembers of a key, so a revocation made here is enforced here
    /// on the very next call.
    pub fn forget(&self, key_id: Uuid) {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, (known, _)| known.caller.key_id != key_id);
    }

    /// Whether a use of `key_id` at `now` should be written, counting it as written if so.
    fn use_is_due(&self, key_id: Uuid, now: DateTime<Utc>) -> bool {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match used.get(&key_id) {
            Some(last) if *last <= now && now - *last < USE_RECORDED_EVERY => false,
            _ => {
                used.insert(key_id, now);
                true
            }
        }
    }
}

/// Whose device a token is: a user's account or a console operator (issue 15). Told apart by
/// the token's prefix (`spse_odt_` is an operator's), then authenticated by the SHA-256 lookup
/// in that owner's table only, so a token can never act for the other kind of owner.
#[derive(Debug, Clone)]
pub enum DeviceOwner {
    Account(AccountKey),
    Operator(Username),
}

/// A caller holding the device token issued at activation: the account's (or operator's)
/// bound device.
#[derive(Debug, Clone)]
pub struct DeviceCaller {
    pub owner: DeviceOwner,
    pub device_id: Uuid,
    pub token_sha256: String,
}

impl DeviceCaller {
    pub fn actor(&self) -> Actor {
        Actor::Device {
            device_id: self.device_id,
        }
    }
}

impl FromRequestParts<AppState> for DeviceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).map_err(|_| device_not_recognised())?;
        look_up_device(app, token, sha256_hex(token)).await
    }
}

/// The device a token was issued to, looked up by its digest in its owner's table: the
/// operators' for an operator's token, the accounts' bindings otherwise.
async fn look_up_device(
    app: &AppState,
    token: &str,
    token_sha256: String,
) -> Result<DeviceCaller, ApiError> {
    let not_recognised = device_not_recognised;
    if token.starts_with(OPERATOR_DEVICE_TOKEN_PREFIX) {
        let row = operators::by_device_token(&app.db.pool, &token_sha256)
            .await?
            .ok_or_else(not_recognised)?;
        return Ok(DeviceCaller {
            owner: DeviceOwner::Operator(
                Username::parse(&row.username).map_err(|_| not_recognised())?,
            ),
            device_id: row.device_id.parse().map_err(|_| not_recognised())?,
            token_sha256,
        });
    }
    let row = device_bindings::by_token(&app.db.pool, &token_sha256)
        .await?
        .ok_or_else(not_recognised)?;
    let account = AccountKey::from_stream_name(&row.stream).ok_or_else(not_recognised)?;
    let device_id = row.device_id.parse().map_err(|_| not_recognised())?;
    Ok(DeviceCaller {
        owner: DeviceOwner::Account(account),
        device_id,
        token_sha256,
    })
}

fn device_not_recognised() -> ApiError {
    ApiError::new(
        ErrorCode::DeviceNotRecognised,
        "this device is not bound to any account",
    )
}

/// A device token on a request that runs a command on the token's account (an approval or a
/// denial). The account the token was issued to is taken from this instance's memory when it
/// has it ([`crate::device_routes`]): the command itself refuses a token the account no longer
/// has bound, with the same `device_not_recognised`. Otherwise it is looked up as for any
/// [`DeviceCaller`], and remembered.
pub struct CommandingDevice(pub DeviceCaller);

impl FromRequestParts<AppState> for CommandingDevice {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).map_err(|_| device_not_recognised())?;
        let token_sha256 = sha256_hex(token);
        // An operator's device approves console sign-ins, which no account decides on.
        if !token.starts_with(OPERATOR_DEVICE_TOKEN_PREFIX) {
            if let Some(route) = app.device_routes.get(&token_sha256) {
                return Ok(CommandingDevice(DeviceCaller {
                    owner: DeviceOwner::Account(route.account),
                    device_id: route.device_id,
                    token_sha256,
                }));
            }
        }
        let caller = look_up_device(app, token, token_sha256).await?;
        if let DeviceOwner::Account(account) = &caller.owner {
            app.device_routes.remember(
                caller.token_sha256.clone(),
                DeviceRoute {
                    account: account.clone(),
                    device_id: caller.device_id,
                },
            );
        }
        Ok(CommandingDevice(caller))
    }
}
