//! Work nobody asks for: recording logins that ran out of time (so the audit trail and the
//! device list say so) and destroying the secrets of QR codes never scanned.

use std::time::Duration;

use spse_totp_domain::{AccountCommand, AccountKey};
use spse_totp_projections::login_sessions;
use spse_totp_store::EventMetadata;
use tokio::sync::watch;

use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(30);
const BATCH: i64 = 500;

pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = sweep(&app).await {
            tracing::warn!(error = %e, "housekeeping sweep failed; retrying next round");
        }
    }
}

/// One sweep. Returns the number of accounts whose overdue logins were expired.
pub async fn sweep(app: &AppState) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let streams = login_sessions::streams_with_overdue(&app.db.pool, app.now(), BATCH).await?;
    let mut expired = 0;
    for stream in streams {
        let Some(key) = AccountKey::from_stream_name(&stream) else {
            continue;
        };
        let executed = app
            .accounts
            .execute(
                &key,
                AccountCommand::ExpireStaleLogins,
                EventMetadata::system(),
            )
            .await?;
        app.caught_up(executed.position).await;
        expired += usize::from(!executed.events.is_empty());
    }
    let destroyed = app.accounts.sweep_vault(BATCH).await?;
    app.resets.captchas.sweep(app.now()).await?;
    app.resets.rate_limits.sweep(app.now()).await?;
    if expired > 0 || destroyed > 0 {
        tracing::info!(
            accounts_with_expired_logins = expired,
            secrets_destroyed = destroyed,
            "housekeeping"
        );
    }
    Ok(expired)
}
