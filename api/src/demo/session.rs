//! The demo portal's sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie, the state
//! kept in memory, and a CSRF token per session that every form carries. A real portal has its
//! own session store; this one forgets everything on restart, which a demo can afford.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::users::DemoUser;

pub const COOKIE: &str = "spse_demo_session";
/// A session not used for this long is forgotten.
const IDLE: Duration = Duration::from_secs(60 * 60);

/// The second factor under way, as `POST /v1/logins` answered it.
#[derive(Debug, Clone)]
pub struct PendingTotp {
    pub login_id: String,
    pub activation: bool,
    pub qr_svg: Option<String>,
    pub approval_number: Option<u64>,
    pub expires_at: DateTime<Utc>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    pub user: Option<DemoUser>,
    pub pending: Option<PendingTotp>,
    /// Signed in: the login the service approved (disable needs it).
    pub signed_in: Option<String>,
    /// Said once on the next page (e.g. "TOTP berhasil dinonaktifkan").
    pub notice: Option<String>,
    last_used: Instant,
}

impl Session {
    fn new() -> Self {
        Session {
            csrf: random_token(),
            user: None,
            pending: None,
            signed_in: None,
            notice: None,
            last_used: Instant::now(),
        }
    }
}

pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// The session named by the request's cookie, if it is still known.
    pub fn get(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers)?;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let session = map.get_mut(&id)?;
        session.last_used = Instant::now();
        Some((id, session.clone()))
    }

    /// The request's session, or a new one (whose cookie the response must set).
    pub fn get_or_create(&self, headers: &HeaderMap) -> (String, Session, bool) {
        if let Some((id, session)) = self.get(headers) {
            return (id, session, false);
        }
        let (id, session) = self.create();
        (id, session, true)
    }

    pub fn create(&self) -> (String, Session) {
        let id = random_token();
        let session = Session::new();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.last_used.elapsed() < IDLE);
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    pub fn update(&self, id: &str, change: impl FnOnce(&mut Session)) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = map.get_mut(id) {
            change(session);
        }
    }

    pub fn remove(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

pub fn set_cookie(id: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/demo; HttpOnly; SameSite=Strict"
    ))
    .ok()
}

/// Compares without stopping at the first difference, so timing does not leak the token.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
