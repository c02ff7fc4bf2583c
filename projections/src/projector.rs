//! What a projector is: a name, the tables it owns, and how one event changes them.

use async_trait::async_trait;
use spse_totp_commands::RecordedEvent;
use sqlx::AnyConnection;

use crate::event::Decoded;

#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// The checkpoint's key. Renaming it rebuilds the projection.
    fn name(&self) -> &'static str;

    /// The tables this projector alone writes, emptied by a rebuild.
    fn tables(&self) -> &'static [&'static str];

    /// Applies one event inside the runner's transaction. Must be idempotent only in the sense
    /// that the runner never calls it twice for one position.
    async fn apply(
        &self,
        connection: &mut AnyConnection,
        recorded: &RecordedEvent,
        decoded: &Decoded,
    ) -> Result<(), sqlx::Error>;
}
