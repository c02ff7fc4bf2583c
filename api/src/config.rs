//! Configuration: defaults that run on a fresh machine, an optional TOML file, then environment
//! variables (`SPSE_TOTP_*`), each overriding the one before. Relative paths are relative to the
//! working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::Duration;
use serde::Deserialize;
use spse_totp_domain::Policy;
use spse_totp_projections::audit_checkpoints::AuditKey;
use spse_totp_projections::mail::message::LocalZone;
use spse_totp_projections::mail::{MailSettings, SmtpSettings, SmtpTls};
use spse_totp_store::{Database, DatabaseError};

use crate::client_address::TrustedProxies;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The file's shape: every key optional, named as the environment variable without the prefix,
/// in lower case (`listen`, `database_url`, `login_ttl_seconds`, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    event_store_url: Option<String>,
    master_key: Option<String>,
    master_key_file: Option<PathBuf>,
    audit_key: Option<String>,
    public_base_url: Option<String>,
    log_format: Option<String>,
    max_body_bytes: Option<usize>,
    login_ttl_seconds: Option<i64>,
    enrollment_ttl_seconds: Option<i64>,
    max_failed_attempts: Option<u32>,
    lock_minutes: Option<i64>,
    max_lock_minutes: Option<i64>,
    max_locks: Option<u32>,
    window_back_steps: Option<u8>,
    number_matching: Option<bool>,
    trust_forwarded_for: Option<bool>,
    trusted_proxies: Option<String>,
    // Reset and recovery (issue 3).
    reset_ttl_minutes: Option<i64>,
    reset_max_per_hour: Option<u32>,
    reset_max_per_ip_per_hour: Option<u32>,
    captcha_test_answer: Option<String>,
    mail_from: Option<String>,
    mail_outbox: Option<PathBuf>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_tls: Option<String>,
    smtp_username: Option<String>,
    smtp_password: Option<String>,
    // The reference portal (issue 16).
    demo: Option<bool>,
    demo_users: Option<PathBuf>,
    demo_portal_key: Option<String>,
    // The LPSE's zone and issuer (issue 13).
    time_zone: Option<String>,
    issuer: Option<String>,
    // Bounds under load (issue 13, section 5).
    request_timeout_seconds: Option<u64>,
    max_long_polls: Option<usize>,
    // Several instances (issue 14).
    cluster_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// An EventStoreDB / KurrentDB server for the event log (`esdb://...`), in builds with the
    /// `eventstoredb` feature. The read models stay in `database_url`.
    pub event_store_url: Option<String>,
    /// The master key itself (base64 or hex). When absent the key file is used.
    pub master_key: Option<String>,
    pub master_key_file: PathBuf,
    /// `SPSE_TOTP_AUDIT_KEY`: the key the log's checkpoints are signed under (32 bytes, hex or
    /// base64). When absent, a key derived from the master key.
    pub audit_key: Option<AuditKey>,
    /// How the outside world reaches this service; goes into QR codes and emailed links, never
    /// taken from a request's Host header.
    pub public_base_url: String,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub policy: Policy,
    /// Deprecated (`SPSE_TOTP_TRUST_FORWARDED_FOR`): trust every `X-Forwarded-For` hop, as if
    /// every address were a trusted proxy. Set `trusted_proxies` instead; the server warns.
    pub trust_forwarded_for: bool,
    /// `SPSE_TOTP_TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: TrustedProxies,
    pub reset: ResetConfig,
    pub mail: MailConfig,
    pub demo: DemoConfig,
    pub lpse: LpseConfig,
    pub limits: LimitsConfig,
    /// `SPSE_TOTP_CLUSTER_URL`: where the other instances on the same PostgreSQL database reach
    /// this one. Given it, the instances elect one that runs every write request and the others
    /// forward theirs to it ([`crate::forwarding`]); without it this instance runs its own.
    pub cluster_url: Option<String>,
}

/// The LPSE this service runs for, as its users see it.
#[derive(Debug, Clone)]
pub struct LpseConfig {
    /// `SPSE_TOTP_TIME_ZONE`: the zone notices tell times in.
    pub time_zone: LocalZone,
    /// `SPSE_TOTP_ISSUER`: the QR code's issuer, shown above the account in authenticator apps.
    pub issuer: String,
}

impl Default for LpseConfig {
    fn default() -> Self {
        LpseConfig {
            time_zone: LocalZone::default(),
            issuer: spse_totp_commands::enrollment::ISSUER.to_owned(),
        }
    }
}

/// How much one request, and all long-polls together, may hold of the server.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// `SPSE_TOTP_REQUEST_TIMEOUT_SECONDS`: the longest a request may take; a long-poll gets its
    /// `wait_seconds` on top. Past it the answer is 503 `request_timeout`.
    pub request_timeout: std::time::Duration,
    /// `SPSE_TOTP_MAX_LONG_POLLS`: long-polls waiting at once; one more is answered 503
    /// `too_many_long_polls` with `Retry-After`.
    pub max_long_polls: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            request_timeout: std::time::Duration::from_secs(30),
            max_long_polls: 10_000,
        }
    }
}

/// The reference portal under `/demo` (off by default): a reference for integrators, not the
/// production portal.
#[derive(Clone, Default)]
pub struct DemoConfig {
    /// `SPSE_TOTP_DEMO`: mount the pages.
    pub enabled: bool,
    /// `SPSE_TOTP_DEMO_USERS`: the demo users (TOML), written by `spse-totp demo add-user`.
    pub users_file: PathBuf,
    /// `SPSE_TOTP_DEMO_PORTAL_KEY`: the portal key the pages call the API with; when absent one
    /// is created at start (and recorded as an event, like any key).
    pub portal_key: Option<String>,
}

impl std::fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a credential: never printed.
        f.debug_struct("DemoConfig")
            .field("enabled", &self.enabled)
            .field("users_file", &self.users_file)
            .field("portal_key", &self.portal_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Self-service reset: the per-address limit and the captcha's test answer.
#[derive(Debug, Clone)]
pub struct ResetConfig {
    /// Reset requests per client address per hour; more are answered the same and ignored.
    pub max_per_ip_per_hour: u32,
    /// `SPSE_TOTP_CAPTCHA_TEST_ANSWER`: one fixed answer accepted for any captcha. Only for
    /// integrators' automated test environments; the server warns loudly at start when set.
    pub captcha_test_answer: Option<String>,
}

impl Default for ResetConfig {
    fn default() -> Self {
        ResetConfig {
            max_per_ip_per_hour: 20,
            captcha_test_answer: None,
        }
    }
}

/// Where mail goes: SMTP when a host is configured, else the file outbox.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub from: String,
    pub outbox: PathBuf,
    pub smtp: Option<SmtpSettings>,
    /// How long a send under way keeps its message from other senders, on the server's clock.
    pub claim_for: Duration,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            from: "SPSE TOTP <no-reply@localhost>".to_owned(),
            outbox: PathBuf::from("./data/outbox"),
            smtp: None,
            claim_for: MailSettings::default().claim_for,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://./data/spse-totp.db".to_owned(),
            event_store_url: None,
            master_key: None,
            master_key_file: PathBuf::from("./data/master.key"),
            audit_key: None,
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            log_format: LogFormat::Text,
            max_body_bytes: 16 * 1024,
            policy: Policy::default(),
            trust_forwarded_for: false,
            trusted_proxies: TrustedProxies::default(),
            reset: ResetConfig::default(),
            mail: MailConfig::default(),
            demo: DemoConfig {
                users_file: PathBuf::from("./data/demo-users.toml"),
                ..DemoConfig::default()
            },
            lpse: LpseConfig::default(),
            limits: LimitsConfig::default(),
            cluster_url: None,
        }
    }
}

impl Config {
    /// The proxies believed, the deprecated switch included.
    pub fn proxies(&self) -> &TrustedProxies {
        static EVERYTHING: std::sync::LazyLock<TrustedProxies> = std::sync::LazyLock::new(|| {
            TrustedProxies::new(crate::client_address::Cidr::everything())
        });
        if self.trust_forwarded_for {
            &EVERYTHING
        } else {
            &self.trusted_proxies
        }
    }

    /// Opens (creating and migrating) the configured database and event store.
    pub async fn open_database(&self) -> Result<Database, DatabaseError> {
        Database::open_with(&self.database_url, self.event_store_url.as_deref()).await
    }

    /// Opens the configured database for a command that only reads: one that does not exist is
    /// an error naming where it was looked for, never created.
    pub async fn open_existing_database(&self) -> Result<Database, DatabaseError> {
        Database::open_existing(&self.database_url, self.event_store_url.as_deref()).await
    }

    /// Defaults, then the file named by `SPSE_TOTP_CONFIG` (or `./spse-totp.toml` if present),
    /// then the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(|name| std::env::var(name).ok())
    }

    pub fn load_from(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = match env("SPSE_TOTP_CONFIG") {
            Some(path) => Some(read_file(Path::new(&path))?),
            None if Path::new("spse-totp.toml").exists() => {
                Some(read_file(Path::new("spse-totp.toml"))?)
            }
            None => None,
        };
        let mut config = Config::default();
        if let Some(file) = file {
            config.apply(file)?;
        }
        config.apply(from_env(&env)?)?;
        Ok(config)
    }

    fn apply(&mut self, f: FileConfig) -> Result<(), ConfigError> {
        self.apply_reset(&f)?;
        self.apply_demo(&f);
        self.apply_lpse(&f)?;
        self.apply_limits(&f)?;
        if let Some(v) = f.listen {
            self.listen = v.parse().map_err(|e| invalid("SPSE_TOTP_LISTEN", e))?;
        }
        if let Some(v) = f.database_url {
            self.database_url = v;
        }
        if let Some(v) = f.event_store_url.filter(|v| !v.trim().is_empty()) {
            self.event_store_url = Some(v);
        }
        if let Some(v) = f.master_key {
            self.master_key = Some(v);
        }
        if let Some(v) = f.master_key_file {
            self.master_key_file = v;
        }
        if let Some(v) = f.audit_key.filter(|v| !v.trim().is_empty()) {
            self.audit_key =
                Some(AuditKey::parse(&v).map_err(|e| invalid("SPSE_TOTP_AUDIT_KEY", e))?);
        }
        if let Some(v) = f.public_base_url {
            url_check("SPSE_TOTP_PUBLIC_BASE_URL", &v)?;
            self.public_base_url = v.trim_end_matches('/').to_owned();
        }
        if let Some(v) = f.cluster_url.filter(|v| !v.trim().is_empty()) {
            url_check("SPSE_TOTP_CLUSTER_URL", v.trim())?;
            self.cluster_url = Some(v.trim().trim_end_matches('/').to_owned());
        }
        if let Some(v) = f.log_format {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(invalid(
                        "SPSE_TOTP_LOG_FORMAT",
                        format!("{other:?} is not text or json"),
                    ))
                }
            };
        }
        if let Some(v) = f.max_body_bytes {
            self.max_body_bytes = v;
        }
        let p = &mut self.policy;
        // An hour at most: a login or a QR code that waits longer is one an attacker can reuse.
        if let Some(v) = f.login_ttl_seconds {
            p.login_ttl = Duration::seconds(bounded("SPSE_TOTP_LOGIN_TTL_SECONDS", v, 1, 3600)?);
        }
        if let Some(v) = f.enrollment_ttl_seconds {
            let v = bounded("SPSE_TOTP_ENROLLMENT_TTL_SECONDS", v, 1, 3600)?;
            p.enrollment_ttl = Duration::seconds(v);
        }
        if let Some(v) = f.max_failed_attempts {
            p.max_failed_attempts = bounded("SPSE_TOTP_MAX_FAILED_ATTEMPTS", v, 1, 20)?;
        }
        // A lock's end is computed as now + its length, which must stay a representable instant
        // whatever the operator writes: a year is far beyond any sane lock and far within it.
        if let Some(v) = f.lock_minutes {
            let v = bounded("SPSE_TOTP_LOCK_MINUTES", v, 1, MAX_LOCK_MINUTES)?;
            p.base_lock = Duration::minutes(v);
        }
        if let Some(v) = f.max_lock_minutes {
            let v = bounded("SPSE_TOTP_MAX_LOCK_MINUTES", v, 1, MAX_LOCK_MINUTES)?;
            p.max_lock = Duration::minutes(v);
        }
        if let Some(v) = f.max_locks {
            if !(1..=1000).contains(&v) {
                return Err(invalid("SPSE_TOTP_MAX_LOCKS", "must be from 1 to 1000"));
            }
            p.max_locks = v;
        }
        if let Some(v) = f.window_back_steps {
            if v > 2 {
                return Err(invalid(
                    "SPSE_TOTP_WINDOW_BACK_STEPS",
                    "at most 2 (RFC 6238 section 5.2)",
                ));
            }
            p.window_back_steps = v;
        }
        if let Some(v) = f.number_matching {
            p.number_matching = v;
        }
        if let Some(v) = f.trust_forwarded_for {
            self.trust_forwarded_for = v;
        }
        if let Some(v) = f.trusted_proxies {
            self.trusted_proxies = TrustedProxies::parse_list(&v)
                .map_err(|e| invalid("SPSE_TOTP_TRUSTED_PROXIES", e))?;
        }
        Ok(())
    }

    fn apply_limits(&mut self, f: &FileConfig) -> Result<(), ConfigError> {
        if let Some(v) = f.request_timeout_seconds {
            if !(1..=600).contains(&v) {
                return Err(invalid(
                    "SPSE_TOTP_REQUEST_TIMEOUT_SECONDS",
                    "must be between 1 and 600",
                ));
            }
            self.limits.request_timeout = std::time::Duration::from_secs(v);
        }
        if let Some(v) = f.max_long_polls {
            // Beyond this a semaphore cannot count; no machine holds that many connections.
            if !(1..=1_000_000).contains(&v) {
                return Err(invalid(
                    "SPSE_TOTP_MAX_LONG_POLLS",
                    "must be between 1 and 1000000",
                ));
            }
            self.limits.max_long_polls = v;
        }
        Ok(())
    }

    fn apply_demo(&mut self, f: &FileConfig) {
        if let Some(v) = f.demo {
            self.demo.enabled = v;
        }
        if let Some(v) = &f.demo_users {
            self.demo.users_file = v.clone();
        }
        if let Some(v) = &f.demo_portal_key {
            self.demo.portal_key = Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        }
    }

    fn apply_lpse(&mut self, f: &FileConfig) -> Result<(), ConfigError> {
        if let Some(v) = &f.time_zone {
            self.lpse.time_zone =
                LocalZone::parse(v).map_err(|e| invalid("SPSE_TOTP_TIME_ZONE", e))?;
        }
        if let Some(v) = &f.issuer {
            let v = v.trim();
            // The otpauth label is `issuer:account`, so a colon would split it elsewhere.
            if v.is_empty() || v.chars().count() > 64 {
                return Err(invalid("SPSE_TOTP_ISSUER", "must be 1 to 64 characters"));
            }
            if v.contains(':') || v.chars().any(char::is_control) {
                return Err(invalid(
                    "SPSE_TOTP_ISSUER",
                    "must not contain a colon or control characters",
                ));
            }
            self.lpse.issuer = v.to_owned();
        }
        Ok(())
    }

    fn apply_reset(&mut self, f: &FileConfig) -> Result<(), ConfigError> {
        if let Some(v) = f.reset_ttl_minutes {
            let v = bounded("SPSE_TOTP_RESET_TTL_MINUTES", v, 1, 7 * 24 * 60)?;
            self.policy.reset_ttl = Duration::minutes(v);
        }
        if let Some(v) = f.reset_max_per_hour {
            self.policy.reset_max_per_hour = v;
        }
        if let Some(v) = f.reset_max_per_ip_per_hour {
            self.reset.max_per_ip_per_hour = v;
        }
        if let Some(v) = &f.captcha_test_answer {
            self.reset.captcha_test_answer = Some(v.clone()).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = &f.mail_from {
            self.mail.from = v.clone();
        }
        if let Some(v) = &f.mail_outbox {
            self.mail.outbox = v.clone();
        }
        if let Some(host) = &f.smtp_host {
            let tls = match f.smtp_tls.as_deref().unwrap_or("starttls") {
                "none" => SmtpTls::None,
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Tls,
                other => {
                    return Err(invalid(
                        "SPSE_TOTP_SMTP_TLS",
                        format!("{other:?} is not none, starttls or tls"),
                    ))
                }
            };
            let default_port = match tls {
                SmtpTls::None => 25,
                SmtpTls::StartTls => 587,
                SmtpTls::Tls => 465,
            };
            self.mail.smtp = Some(SmtpSettings {
                host: host.clone(),
                port: f.smtp_port.unwrap_or(default_port),
                tls,
                username: f.smtp_username.clone(),
                password: f.smtp_password.clone(),
                timeout: std::time::Duration::from_secs(15),
            });
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.display().to_string(),
        source,
    })
}

fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<FileConfig, ConfigError> {
    fn parsed<T: std::str::FromStr>(
        env: &impl Fn(&str) -> Option<String>,
        name: &'static str,
    ) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        env(name)
            .map(|v| v.trim().parse::<T>().map_err(|e| invalid(name, e)))
            .transpose()
    }
    Ok(FileConfig {
        listen: env("SPSE_TOTP_LISTEN"),
        database_url: env("SPSE_TOTP_DATABASE_URL"),
        event_store_url: env("SPSE_TOTP_EVENT_STORE_URL"),
        master_key: env("SPSE_TOTP_MASTER_KEY"),
        master_key_file: env("SPSE_TOTP_MASTER_KEY_FILE").map(PathBuf::from),
        audit_key: env("SPSE_TOTP_AUDIT_KEY"),
        public_base_url: env("SPSE_TOTP_PUBLIC_BASE_URL"),
        log_format: env("SPSE_TOTP_LOG_FORMAT"),
        max_body_bytes: parsed(env, "SPSE_TOTP_MAX_BODY_BYTES")?,
        login_ttl_seconds: parsed(env, "SPSE_TOTP_LOGIN_TTL_SECONDS")?,
        enrollment_ttl_seconds: parsed(env, "SPSE_TOTP_ENROLLMENT_TTL_SECONDS")?,
        max_failed_attempts: parsed(env, "SPSE_TOTP_MAX_FAILED_ATTEMPTS")?,
        lock_minutes: parsed(env, "SPSE_TOTP_LOCK_MINUTES")?,
        max_lock_minutes: parsed(env, "SPSE_TOTP_MAX_LOCK_MINUTES")?,
        max_locks: parsed(env, "SPSE_TOTP_MAX_LOCKS")?,
        window_back_steps: parsed(env, "SPSE_TOTP_WINDOW_BACK_STEPS")?,
        number_matching: parsed(env, "SPSE_TOTP_NUMBER_MATCHING")?,
        trust_forwarded_for: parsed(env, "SPSE_TOTP_TRUST_FORWARDED_FOR")?,
        trusted_proxies: env("SPSE_TOTP_TRUSTED_PROXIES"),
        reset_ttl_minutes: parsed(env, "SPSE_TOTP_RESET_TTL_MINUTES")?,
        reset_max_per_hour: parsed(env, "SPSE_TOTP_RESET_MAX_PER_HOUR")?,
        reset_max_per_ip_per_hour: parsed(env, "SPSE_TOTP_RESET_MAX_PER_IP_PER_HOUR")?,
        captcha_test_answer: env("SPSE_TOTP_CAPTCHA_TEST_ANSWER"),
        mail_from: env("SPSE_TOTP_MAIL_FROM"),
        mail_outbox: env("SPSE_TOTP_MAIL_OUTBOX").map(PathBuf::from),
        smtp_host: env("SPSE_TOTP_SMTP_HOST"),
        smtp_port: parsed(env, "SPSE_TOTP_SMTP_PORT")?,
        smtp_tls: env("SPSE_TOTP_SMTP_TLS"),
        smtp_username: env("SPSE_TOTP_SMTP_USERNAME"),
        smtp_password: env("SPSE_TOTP_SMTP_PASSWORD"),
        demo: parsed(env, "SPSE_TOTP_DEMO")?,
        demo_users: env("SPSE_TOTP_DEMO_USERS").map(PathBuf::from),
        demo_portal_key: env("SPSE_TOTP_DEMO_PORTAL_KEY"),
        time_zone: env("SPSE_TOTP_TIME_ZONE"),
        issuer: env("SPSE_TOTP_ISSUER"),
        request_timeout_seconds: parsed(env, "SPSE_TOTP_REQUEST_TIMEOUT_SECONDS")?,
        max_long_polls: parsed(env, "SPSE_TOTP_MAX_LONG_POLLS")?,
        cluster_url: env("SPSE_TOTP_CLUSTER_URL"),
    })
}

fn invalid(name: &'static str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.to_string(),
    }
}

/// A year: the longest lock the configuration takes.
const MAX_LOCK_MINUTES: i64 = 366 * 24 * 60;

fn bounded<T>(name: &'static str, value: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if value < min || value > max {
        return Err(invalid(
            name,
            format!("must be from {min} to {max}, not {value}"),
        ));
    }
    Ok(value)
}

fn url_check(name: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(name, "must start with http:// or https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_run_on_a_fresh_folder() {
        let config = with(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://./data/spse-totp.db");
        assert_eq!(config.policy, Policy::default());
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nlogin_ttl_seconds = 1020\nnumber_matching = false\n",
        )
        .unwrap();
        let config = with(&[
            ("SPSE_TOTP_CONFIG", file.to_str().unwrap()),
            ("SPSE_TOTP_LISTEN", "0.0.0.0:9100"),
        ])
        .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9100");
        assert_eq!(config.policy.login_ttl, Duration::seconds(1020));
        assert!(!config.policy.number_matching);
    }

    #[test]
    fn smtp_and_reset_settings_come_from_the_environment() {
        let config = with(&[
            ("SPSE_TOTP_SMTP_HOST", "mail.lpse.example"),
            ("SPSE_TOTP_SMTP_TLS", "tls"),
            ("SPSE_TOTP_SMTP_USERNAME", "totp"),
            ("SPSE_TOTP_SMTP_PASSWORD", "hunter2"),
            ("SPSE_TOTP_RESET_TTL_MINUTES", "30"),
        ])
        .unwrap();
        let smtp = config.mail.smtp.clone().unwrap();
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.tls),
            ("mail.lpse.example", 465, SmtpTls::Tls)
        );
        assert!(
            !format!("{config:?}").contains("hunter2"),
            "the password is never printed"
        );
        assert_eq!(config.policy.reset_ttl, Duration::minutes(30));
        assert!(with(&[("SPSE_TOTP_SMTP_HOST", "h"), ("SPSE_TOTP_SMTP_TLS", "ssl")]).is_err());
        assert!(with(&[]).unwrap().reset.captcha_test_answer.is_none());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = with(&[("SPSE_TOTP_LOGIN_TTL_SECONDS", "soon")]).unwrap_err();
        assert!(err.to_string().contains("SPSE_TOTP_LOGIN_TTL_SECONDS"));
        assert!(with(&[("SPSE_TOTP_PUBLIC_BASE_URL", "spse.example")]).is_err());
        assert!(with(&[("SPSE_TOTP_WINDOW_BACK_STEPS", "5")]).is_err());
        assert!(with(&[("SPSE_TOTP_DEMO", "yes")]).is_err());
        for (name, value) in [
            ("SPSE_TOTP_LOGIN_TTL_SECONDS", "3601"),
            ("SPSE_TOTP_LOGIN_TTL_SECONDS", "0"),
            ("SPSE_TOTP_ENROLLMENT_TTL_SECONDS", "86400"),
            ("SPSE_TOTP_MAX_FAILED_ATTEMPTS", "0"),
            ("SPSE_TOTP_MAX_FAILED_ATTEMPTS", "21"),
            ("SPSE_TOTP_LOCK_MINUTES", "9223372036854775807"),
            ("SPSE_TOTP_LOCK_MINUTES", "-5"),
            ("SPSE_TOTP_MAX_LOCK_MINUTES", "153722867280912930"),
            ("SPSE_TOTP_RESET_TTL_MINUTES", "9223372036854775807"),
            ("SPSE_TOTP_MAX_LOCKS", "0"),
        ] {
            let err = with(&[(name, value)]).expect_err(value);
            assert!(err.to_string().contains(name), "{err}");
        }
        let config = with(&[
            ("SPSE_TOTP_LOGIN_TTL_SECONDS", "3600"),
            ("SPSE_TOTP_MAX_FAILED_ATTEMPTS", "20"),
            ("SPSE_TOTP_LOCK_MINUTES", "527040"),
            ("SPSE_TOTP_MAX_LOCK_MINUTES", "527040"),
        ])
        .unwrap();
        // The longest lock still ends at an instant the clock can hold.
        let far = chrono::Utc::now() + config.policy.lock_duration(u32::MAX);
        assert!(far > chrono::Utc::now());
        let err = with(&[("SPSE_TOTP_TRUSTED_PROXIES", "10.0.0.0/8, proxy")]).unwrap_err();
        assert!(err.to_string().contains("SPSE_TOTP_TRUSTED_PROXIES"));
    }

    #[test]
    fn the_lpse_zone_and_issuer_are_bounded_and_named_when_wrong() {
        let defaults = with(&[]).unwrap().lpse;
        assert_eq!(
            (defaults.time_zone, defaults.issuer.as_str()),
            (LocalZone::Wib, "SPSE")
        );
        let config = with(&[
            ("SPSE_TOTP_TIME_ZONE", "Asia/Jayapura"),
            ("SPSE_TOTP_ISSUER", "LPSE Kota Bogor"),
        ])
        .unwrap();
        assert_eq!(config.lpse.time_zone, LocalZone::Wit);
        assert_eq!(config.lpse.issuer, "LPSE Kota Bogor");
        assert_eq!(
            with(&[("SPSE_TOTP_TIME_ZONE", "Asia/Makassar")])
                .unwrap()
                .lpse
                .time_zone,
            LocalZone::Wita
        );
        for (name, value) in [
            ("SPSE_TOTP_TIME_ZONE", "Europe/Paris"),
            ("SPSE_TOTP_TIME_ZONE", "UTC+7"),
            ("SPSE_TOTP_ISSUER", ""),
            ("SPSE_TOTP_ISSUER", "LPSE:Bogor"),
            ("SPSE_TOTP_ISSUER", &"x".repeat(65)),
        ] {
            let err = with(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{value}: {err}");
        }
    }

    #[test]
    fn request_limits_are_bounded() {
        let defaults = with(&[]).unwrap().limits;
        assert_eq!(defaults.max_long_polls, 10_000);
        assert_eq!(defaults.request_timeout, std::time::Duration::from_secs(30));
        let config = with(&[
            ("SPSE_TOTP_MAX_LONG_POLLS", "2"),
            ("SPSE_TOTP_REQUEST_TIMEOUT_SECONDS", "5"),
        ])
        .unwrap();
        assert_eq!(config.limits.max_long_polls, 2);
        assert_eq!(
            config.limits.request_timeout,
            std::time::Duration::from_secs(5)
        );
        for (name, value) in [
            ("SPSE_TOTP_MAX_LONG_POLLS", "0"),
            ("SPSE_TOTP_MAX_LONG_POLLS", "-1"),
            ("SPSE_TOTP_REQUEST_TIMEOUT_SECONDS", "0"),
            ("SPSE_TOTP_REQUEST_TIMEOUT_SECONDS", "100000"),
        ] {
            let err = with(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_demo_portal_is_off_unless_asked_for() {
        assert!(!with(&[]).unwrap().demo.enabled);
        let config = with(&[
            ("SPSE_TOTP_DEMO", "true"),
            ("SPSE_TOTP_DEMO_USERS", "/tmp/users.toml"),
            ("SPSE_TOTP_DEMO_PORTAL_KEY", "spse_key_secret"),
        ])
        .unwrap();
        assert!(config.demo.enabled);
        assert_eq!(config.demo.users_file, PathBuf::from("/tmp/users.toml"));
        assert!(!format!("{config:?}").contains("spse_key_secret"));
    }

    #[test]
    fn trusted_proxies_are_a_list_of_networks() {
        let config = with(&[("SPSE_TOTP_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]).unwrap();
        assert_eq!(config.proxies().to_string(), "10.0.0.0/8,127.0.0.1/32");
        assert!(with(&[]).unwrap().proxies().is_empty());
        let alias = with(&[("SPSE_TOTP_TRUST_FORWARDED_FOR", "true")]).unwrap();
        assert!(alias.proxies().trusts("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn the_audit_key_is_32_bytes_and_never_printed() {
        assert!(with(&[]).unwrap().audit_key.is_none());
        let hex_key = "0f".repeat(32);
        let config = with(&[("SPSE_TOTP_AUDIT_KEY", &hex_key)]).unwrap();
        let key = config.audit_key.clone().expect("a key");
        assert!(!format!("{config:?}").contains(&hex_key));
        let base64_key = "Dw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8=";
        let same = with(&[("SPSE_TOTP_AUDIT_KEY", base64_key)]).unwrap();
        assert_eq!(
            same.audit_key.expect("a key").fingerprint(),
            key.fingerprint()
        );
        for bad in ["0f0f", "not a key!", &"0f".repeat(33)] {
            let err = with(&[("SPSE_TOTP_AUDIT_KEY", bad)]).unwrap_err();
            assert!(err.to_string().contains("SPSE_TOTP_AUDIT_KEY"), "{err}");
        }
    }
}
