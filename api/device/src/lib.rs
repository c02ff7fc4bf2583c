//! `spse-totp-device`: a small authenticator that speaks the SPSE TOTP device API, for
//! integrators' tests and demos. It enrolls from the activation QR code (a PNG, or the
//! `otpauth://` URI itself), keeps its device token and secret in a file only its owner can read,
//! prints codes as any RFC 6238 app does, and lists, approves or denies waiting logins.
//!
//! It depends on none of the service's crates: like the SPSE Authenticator app, it knows the
//! service only by its HTTP API and the standard `otpauth://` URI.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a PNG image: {1}")]
    Image(String, String),
    #[error("no QR code found in {0}")]
    NoQrCode(String),
    #[error("the QR code cannot be read: {0}")]
    QrDecode(String),
    #[error("not an SPSE activation URI: {0}")]
    Uri(String),
    #[error("the state file {path} is not valid: {source}")]
    State {
        path: String,
        source: serde_json::Error,
    },
    #[error("calling {0}")]
    Http(#[from] reqwest::Error),
    #[error("the service refused ({status}): {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

/// What the activation QR code carries: a standard TOTP URI plus what a push-capable app needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// Base32, as in the URI.
    pub secret: String,
    pub label: String,
    pub user_type: String,
    pub enrollment_id: String,
    pub server: String,
    pub digits: usize,
    pub period: u64,
}

impl Enrollment {
    pub fn parse(uri: &str) -> Result<Self, DeviceError> {
        let parsed = url::Url::parse(uri.trim()).map_err(|e| DeviceError::Uri(e.to_string()))?;
        if parsed.scheme() != "otpauth" || parsed.host_str() != Some("totp") {
            return Err(DeviceError::Uri("expected otpauth://totp/...".to_owned()));
        }
        let param = |name: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let required = |name: &str| {
            param(name).ok_or_else(|| DeviceError::Uri(format!("the URI has no {name}")))
        };
        let secret = required("secret")?;
        Secret::Encoded(secret.clone())
            .to_bytes()
            .map_err(|_| DeviceError::Uri("the secret is not base32".to_owned()))?;
        if param("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("SHA1")) {
            return Err(DeviceError::Uri("only SHA1 is supported".to_owned()));
        }
        let label = url::form_urlencoded::parse(parsed.path().trim_start_matches('/').as_bytes())
            .map(|(k, v)| {
                if v.is_empty() {
                    k.into_owned()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<String>();
        Ok(Enrollment {
            secret,
            label,
            user_type: param("user_type").unwrap_or_default(),
            enrollment_id: required("enrollment_id")?,
            server: required("server")?.trim_end_matches('/').to_owned(),
            digits: param("digits").and_then(|d| d.parse().ok()).unwrap_or(6),
            period: param("period").and_then(|p| p.parse().ok()).unwrap_or(30),
        })
    }
}

/// Reads the first QR code in a PNG (a screenshot will do).
pub fn read_qr_png(path: &Path) -> Result<String, DeviceError> {
    let bytes = std::fs::read(path).map_err(|source| DeviceError::Read {
        path: path.display().to_string(),
        source,
    })?;
    decode_qr_png(&bytes, &path.display().to_string())
}

pub fn decode_qr_png(bytes: &[u8], name: &str) -> Result<String, DeviceError> {
    let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| DeviceError::Image(name.to_owned(), e.to_string()))?
        .to_luma8();
    let (width, height) = image.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(width as usize, height as usize, |x, y| {
            image.get_pixel(x as u32, y as u32).0[0]
        });
    let grids = prepared.detect_grids();
    let grid = grids
        .first()
        .ok_or_else(|| DeviceError::NoQrCode(name.to_owned()))?;
    let (_, content) = grid
        .decode()
        .map_err(|e| DeviceError::QrDecode(e.to_string()))?;
    Ok(content)
}

/// What the device keeps: readable by its owner only (mode 0600), since the secret and the
/// token are each enough to approve logins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceState {
    pub server: String,
    pub user_type: String,
    pub user_id: String,
    pub label: String,
    pub device_token: String,
    /// Base32.
    pub secret: String,
    pub digits: usize,
    pub period: u64,
    pub activated_at: DateTime<Utc>,
}

impl DeviceState {
    pub fn load(path: &Path) -> Result<Self, DeviceError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeviceError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| DeviceError::State {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), DeviceError> {
        let write = |source| DeviceError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(write)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|source| DeviceError::State {
            path: path.display().to_string(),
            source,
        })?;
        write_private(path, text.as_bytes()).map_err(write)
    }

    /// The code at `at`, as any RFC 6238 app computes it.
    pub fn code_at(&self, at: DateTime<Utc>) -> Result<String, DeviceError> {
        code_at(&self.secret, self.digits, self.period, at)
    }
}

pub fn code_at(
    secret: &str,
    digits: usize,
    period: u64,
    at: DateTime<Utc>,
) -> Result<String, DeviceError> {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .map_err(|_| DeviceError::Uri("the secret is not base32".to_owned()))?;
    let totp = TOTP::new_unchecked(
        Algorithm::SHA1,
        digits,
        1,
        period,
        bytes,
        None,
        String::new(),
    );
    Ok(totp.generate(u64::try_from(at.timestamp()).unwrap_or(0)))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        // The mode applies when the file is created; an existing file is narrowed too.
        options.mode(0o600);
        let mut file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}

/// `$XDG_CONFIG_HOME/spse-totp-device/state.json`, else `~/.config/spse-totp-device/state.json`.
pub fn default_state_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("spse-totp-device").join("state.json")
}

/// A login waiting for this device, as `GET /v1/device/logins` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PendingLogin {
    pub login_id: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct PendingLogins {
    logins: Vec<PendingLogin>,
}

/// The device API.
pub struct DeviceClient {
    http: reqwest::Client,
}

impl Default for DeviceClient {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceClient {
    pub fn new() -> Self {
        DeviceClient {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(45))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn answer(response: reqwest::Response) -> Result<Value, DeviceError> {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(DeviceError::Refused {
            status: status.as_u16(),
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// `POST /v1/device/activations` with the first code: the QR code is the proof.
    pub async fn enroll(
        &self,
        enrollment: &Enrollment,
        device_label: &str,
        at: DateTime<Utc>,
    ) -> Result<DeviceState, DeviceError> {
        let code = code_at(&enrollment.secret, enrollment.digits, enrollment.period, at)?;
        let response = self
            .http
            .post(format!("{}/v1/device/activations", enrollment.server))
            .json(&json!({
                "enrollment_id": enrollment.enrollment_id,
                "code": code,
                "device_label": device_label,
                "platform": "cli",
            }))
            .send()
            .await?;
        let body = Self::answer(response).await?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Ok(DeviceState {
            server: enrollment.server.clone(),
            user_type: text(&body["account"]["user_type"]),
            user_id: text(&body["account"]["user_id"]),
            label: text(&body["device"]["label"]),
            device_token: text(&body["device_token"]),
            secret: enrollment.secret.clone(),
            digits: enrollment.digits,
            period: enrollment.period,
            activated_at: body["device"]["activated_at"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(at),
        })
    }

    /// `GET /v1/device/logins?wait_seconds=N`: at once when a login waits, else when one starts
    /// or after N seconds.
    pub async fn pending(
        &self,
        state: &DeviceState,
        wait_seconds: u8,
    ) -> Result<Vec<PendingLogin>, DeviceError> {
        let response = self
            .http
            .get(format!(
                "{}/v1/device/logins?wait_seconds={wait_seconds}",
                state.server
            ))
            .bearer_auth(&state.device_token)
            .send()
            .await?;
        let body = Self::answer(response).await?;
        let list: PendingLogins =
            serde_json::from_value(body).map_err(|source| DeviceError::State {
                path: "the service's answer".to_owned(),
                source,
            })?;
        Ok(list.logins)
    }

    /// "Authorize Login": a fresh code and the number the portal shows.
    pub async fn approve(
        &self,
        state: &DeviceState,
        login_id: &str,
        number: Option<u8>,
        at: DateTime<Utc>,
    ) -> Result<Value, DeviceError> {
        let mut body = json!({ "code": state.code_at(at)? });
        if let Some(number) = number {
            body["number"] = json!(number);
        }
        let response = self
            .http
            .post(format!(
                "{}/v1/device/logins/{login_id}/approve",
                state.server
            ))
            .bearer_auth(&state.device_token)
            .json(&body)
            .send()
            .await?;
        Self::answer(response).await
    }

    pub async fn deny(&self, state: &DeviceState, login_id: &str) -> Result<Value, DeviceError> {
        let response = self
            .http
            .post(format!("{}/v1/device/logins/{login_id}/deny", state.server))
            .bearer_auth(&state.device_token)
            .send()
            .await?;
        Self::answer(response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/SPSE:PPK1?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=SPSE&period=30&user_type=non_penyedia&enrollment_id=01a22886-da93-74f5-bf3a-7f994e0c9e9d&server=http%3A%2F%2F127.0.0.1%3A8080";

    #[test]
    fn the_activation_uri_gives_secret_enrollment_and_server() {
        let e = Enrollment::parse(URI).unwrap();
        assert_eq!(e.enrollment_id, "01a22886-da93-74f5-bf3a-7f994e0c9e9d");
        assert_eq!(e.server, "http://127.0.0.1:8080");
        assert_eq!(e.user_type, "non_penyedia");
        assert_eq!(e.label, "SPSE:PPK1");
        assert!(Enrollment::parse("otpauth://totp/X?secret=GEZDGNBV").is_err());
        assert!(Enrollment::parse("https://example.com").is_err());
    }

    #[test]
    fn codes_follow_rfc_6238() {
        // RFC 6238 Appendix B, SHA1, T = 59 s: 94287082 (8 digits); the secret is
        // "12345678901234567890" in base32.
        let at = DateTime::from_timestamp(59, 0).unwrap();
        assert_eq!(
            code_at("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 8, 30, at).unwrap(),
            "94287082"
        );
        assert_eq!(
            code_at("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 6, 30, at).unwrap(),
            "287082"
        );
    }

    #[test]
    fn the_state_file_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("state.json");
        let state = DeviceState {
            server: "http://127.0.0.1:1".to_owned(),
            user_type: "penyedia".to_owned(),
            user_id: "V1".to_owned(),
            label: "cli".to_owned(),
            device_token: "spse_dt_x".to_owned(),
            secret: "GEZDGNBVGY3TQOJQ".to_owned(),
            digits: 6,
            period: 30,
            activated_at: Utc::now(),
        };
        state.save(&path).unwrap();
        assert_eq!(DeviceState::load(&path).unwrap(), state);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
