//! Work nobody asks for, run under the log follower's `sweeps` leadership (on PostgreSQL one
//! instance sweeps): recording logins that ran out of time and destroying the secrets of QR
//! codes never scanned (both reactions in the read side, written through the store's port),
//! recording console sign-ins that waited for an operator's device in vain, clearing expired
//! captchas and rate-limit windows, and signing a checkpoint of the log's head when it has moved
//! (so `audit verify` can tell a log cut short).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use spse_totp_projections::follower::{follow, Pace, Round, Wake, Work};
use spse_totp_projections::leadership::Lease;
use spse_totp_projections::{audit_checkpoints, operators, sweeps};
use tokio::sync::watch;

use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(30);
const BATCH: i64 = 500;

type SweepError = Box<dyn std::error::Error + Send + Sync>;

struct Housekeeping {
    app: AppState,
    /// Whether the start-up round has passed: as before the follower, the first sweep comes one
    /// interval after start, not while the service is still warming up.
    started: AtomicBool,
}

#[async_trait::async_trait]
impl Work for Housekeeping {
    type Error = SweepError;

    fn name(&self) -> &'static str {
        "sweeps"
    }

    async fn lead(&self, _lease: &mut Lease, wake: Wake) -> Result<Round, SweepError> {
        if wake == Wake::Poll && !self.started.swap(true, Ordering::AcqRel) {
            return Ok(Round::Idle);
        }
        sweep(&self.app).await?;
        Ok(Round::Idle)
    }
}

pub async fn run(app: AppState, stop: watch::Receiver<bool>) {
    let mut lease = Lease::for_database(&app.db, "sweeps");
    let pace = Pace {
        poll: EVERY,
        on_append: false,
    };
    let events = std::sync::Arc::clone(&app.db.events);
    let work = Housekeeping {
        app,
        started: AtomicBool::new(false),
    };
    follow(&*events, &mut lease, &work, pace, stop).await;
}

/// One sweep. Returns the number of accounts whose overdue logins were expired.
pub async fn sweep(app: &AppState) -> Result<usize, SweepError> {
    let expired = sweeps::expire_logins(&app.db, app.now(), app.accounts.policy(), BATCH).await?;
    app.caught_up(expired.position).await;
    let destroyed = sweeps::sweep_vault(&app.db, app.now(), BATCH).await?;
    app.resets.captchas.sweep(app.now()).await?;
    app.resets.rate_limits.sweep(app.now()).await?;
    let sign_ins = expire_operator_sign_ins(app).await?;
    audit_checkpoints::write_if_moved(&app.db, &app.audit_key, app.now()).await?;
    if expired.accounts > 0 || destroyed > 0 || sign_ins > 0 {
        tracing::info!(
            accounts_with_expired_logins = expired.accounts,
            secrets_destroyed = destroyed,
            operator_sign_ins_expired = sign_ins,
            "housekeeping"
        );
    }
    Ok(expired.accounts)
}

/// Records as expired the console sign-ins waiting for an operator's device that nobody
/// finished in time (the browser closed, the device never answered), so every sign-in attempt
/// ends in the operator's stream. Returns how many were recorded.
async fn expire_operator_sign_ins(app: &AppState) -> Result<usize, SweepError> {
    let mut recorded = 0;
    let mut last = None;
    for (username, sign_in_id) in
        operators::overdue_sign_ins(&app.db.pool, app.now(), BATCH).await?
    {
        if let Some(position) = app
            .operators
            .expire_device_sign_in(&username, sign_in_id)
            .await?
        {
            recorded += 1;
            last = Some(position);
        }
    }
    app.caught_up(last).await;
    Ok(recorded)
}
