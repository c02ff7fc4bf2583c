//! Email: the messages the service sends (in Bahasa Indonesia), the transports that carry them
//! (a file outbox by default, SMTP in production), and the dispatcher that sends them because
//! events happened and records each outcome as an event.

pub mod dispatcher;
pub mod message;
pub mod transport;

pub use dispatcher::{Dispatcher, DispatcherSettings};
pub use message::Letter;
pub use transport::{MailTransport, SendError, SmtpSettings, SmtpTls};
