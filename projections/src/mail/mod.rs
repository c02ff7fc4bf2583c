//! Email, a reaction to events: the messages the service sends (in Bahasa Indonesia), the
//! transports that carry them (a file outbox by default, SMTP in production), and the sender that
//! follows the log, keeps one outbox row per message owed, and records each outcome as an event.

pub mod message;
pub mod sender;
pub mod transport;

pub use message::Letter;
pub use sender::{LinkTokens, MailSender, MailSettings};
pub use transport::{MailTransport, SendError, SmtpSettings, SmtpTls};
