//! Housekeeping: every pending login past its time is recorded as expired.

use super::rules::expire_overdue;
use super::{Context, Decision};
use crate::account::state::Account;

pub(super) fn decide(account: &Account, context: Context<'_>) -> Decision {
    Ok(expire_overdue(account, context.now))
}
