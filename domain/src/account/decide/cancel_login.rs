//! The portal gives up on a login.

use super::rules::{cancelled, pending_login};
use super::{Context, Decision};
use crate::account::events::CancelReason;
use crate::account::state::Account;
use crate::ids::LoginId;

#[derive(Debug, Clone)]
pub struct CancelLogin {
    pub login_id: LoginId,
}

pub(super) fn decide(account: &Account, command: &CancelLogin, context: Context<'_>) -> Decision {
    pending_login(account, command.login_id, context.now)?;
    Ok(vec![cancelled(
        command.login_id,
        CancelReason::Portal,
        context.now,
    )])
}
