//! Which account and device each device token was issued to, for the approvals and denials
//! this instance runs.
//!
//! A token is issued once, at activation, to one device of one account, and never moves to
//! another. So an approval goes straight to the account instead of looking the token up in
//! `device_bindings` first; on PostgreSQL that lookup is a round trip on every device login.
//! Whether the token is still bound is the account's own decision, made on its events: the
//! command refuses a device the account no longer has (`device_not_recognised`, as the lookup
//! answers). Reads (the pending logins) run no command, so they look the token up every time.
//! A token this instance does not remember (issued on another instance, or pushed out by newer
//! ones) is looked up as before and remembered from then on.

use spse_totp_domain::AccountKey;
use uuid::Uuid;

use crate::remembered::Remembered;

/// Tokens remembered, about 2 MB: the devices that approved most recently. A token forgotten
/// costs one lookup.
pub const REMEMBERED: usize = 16_384;

/// The account and device a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRoute {
    pub account: AccountKey,
    pub device_id: Uuid,
}

/// By the token's SHA-256 (hex), never the token itself.
pub type DeviceRoutes = Remembered<String, DeviceRoute>;
