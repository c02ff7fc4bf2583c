//! Where messages go: a file outbox (the embedded default: one `.eml` file per message, named by
//! its message's cause, so sending one again rewrites the same file) or an SMTP server.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// A failed delivery. Transient failures (server down, 4xx) are retried; permanent ones (a 5xx,
/// a malformed address) are recorded and given up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            permanent: true,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        SendError {
            permanent: false,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or a test sink.
    None,
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub enum MailTransport {
    Outbox(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl MailTransport {
    pub fn outbox(folder: impl Into<PathBuf>) -> Self {
        MailTransport::Outbox(folder.into())
    }

    pub fn smtp(settings: &SmtpSettings) -> Result<Self, SendError> {
        let builder = match settings.tls {
            SmtpTls::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(|e| SendError::permanent(format!("SMTP TLS setup: {e}")))?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)
                .map_err(|e| SendError::permanent(format!("SMTP TLS setup: {e}")))?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(MailTransport::Smtp(builder.build()))
    }

    pub fn describe(&self) -> String {
        match self {
            MailTransport::Outbox(folder) => format!("file outbox {}", folder.display()),
            MailTransport::Smtp(_) => "SMTP".to_owned(),
        }
    }

    /// Sends `message`; `name` names its outbox file.
    pub async fn send(&self, message: &Message, name: &str) -> Result<(), SendError> {
        match self {
            MailTransport::Outbox(folder) => {
                let folder = folder.clone();
                let name = name.to_owned();
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_atomically(&folder, &name, &bytes))
                    .await
                    .map_err(|e| SendError::transient(format!("outbox writer: {e}")))?
                    .map_err(|e| SendError::transient(format!("outbox: {e}")))
            }
            MailTransport::Smtp(smtp) => {
                smtp.send(message.clone()).await.map(|_| ()).map_err(|e| {
                    // Only the server's answer is kept: it never holds the credentials.
                    let text: String = e.to_string().chars().take(300).collect();
                    if e.is_permanent() {
                        SendError::permanent(text)
                    } else {
                        SendError::transient(text)
                    }
                })
            }
        }
    }
}

/// Written beside, synced, then renamed: a reader of the outbox never sees half a message.
fn write_atomically(folder: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(folder)?;
    let partial = folder.join(format!(".{name}.partial"));
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, folder.join(format!("{name}.eml")))
}
