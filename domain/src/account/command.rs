//! What a caller asks of an account. Anything that needs IO (a secret from the vault, a fresh
//! random id, a token's digest) is looked up or made first and carried in the command.

use super::events::{MailOutcome, NoticeKind};
use crate::code::{ApprovalNumber, TotpCode};
use crate::ids::{DeviceId, EnrollmentId, LoginId, ResetRequestId, UserId, UserType};
use crate::totp::TotpSecret;

/// The secret of one enrollment, opened from the vault for one verification.
#[derive(Debug, Clone)]
pub struct OpenedSecret {
    pub enrollment_id: EnrollmentId,
    pub secret: TotpSecret,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    /// The portal checked the password: start the second factor.
    StartLogin {
        user_type: UserType,
        user_id: UserId,
        email: Option<String>,
        name: Option<String>,
        login_id: LoginId,
        client_ip: Option<String>,
        user_agent: Option<String>,
        /// A freshly sealed secret, prepared when the account has no active device.
        enrollment: Option<EnrollmentId>,
        approval_number: ApprovalNumber,
    },
    /// The user typed a code into the portal: activates or approves, as the login needs.
    SubmitCode {
        login_id: LoginId,
        code: TotpCode,
        secret: Option<OpenedSecret>,
    },
    /// A push-capable app scanned the QR code and proves it with its first code.
    ActivateDevice {
        enrollment_id: EnrollmentId,
        code: TotpCode,
        secret: Option<OpenedSecret>,
        device_id: DeviceId,
        device_label: String,
        platform: Option<String>,
        device_token_sha256: String,
    },
    ApproveOnDevice {
        login_id: LoginId,
        device_token_sha256: String,
        code: TotpCode,
        number: Option<ApprovalNumber>,
        secret: Option<OpenedSecret>,
    },
    DenyOnDevice {
        login_id: LoginId,
        device_token_sha256: String,
    },
    CancelLogin {
        login_id: LoginId,
    },
    /// Housekeeping: mark every pending login past its time as expired.
    ExpireStaleLogins,
    /// FAQ 4: the user turns TOTP off, proving it with a recent approved login and a fresh code.
    Disable {
        login_id: LoginId,
        code: TotpCode,
        secret: Option<OpenedSecret>,
    },
    /// Flow 3, step 2: someone asks for a reset link to be mailed. `request_id` is fresh and random.
    RequestReset {
        request_id: ResetRequestId,
        email: String,
        client_ip: Option<String>,
    },
    /// Flow 3, step 6: the emailed link's token checked out (by the caller, with the server key)
    /// and names this request.
    ConfirmReset {
        request_id: ResetRequestId,
    },
    /// FAQ 5: the helpdesk resets TOTP on the user's written request.
    HelpdeskReset {
        reason: String,
        ticket: String,
    },
    /// The helpdesk lifts a lock.
    Unlock {
        reason: String,
    },
    /// The mailer reports on a reset link.
    RecordResetEmail {
        request_id: ResetRequestId,
        outcome: MailOutcome,
    },
    /// The mailer reports on a security notice.
    RecordNotice {
        notice: NoticeKind,
        cause_event_id: uuid::Uuid,
        outcome: MailOutcome,
    },
}

impl AccountCommand {
    /// The command's name in logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            AccountCommand::StartLogin { .. } => "start_login",
            AccountCommand::SubmitCode { .. } => "submit_code",
            AccountCommand::ActivateDevice { .. } => "activate_device",
            AccountCommand::ApproveOnDevice { .. } => "approve_on_device",
            AccountCommand::DenyOnDevice { .. } => "deny_on_device",
            AccountCommand::CancelLogin { .. } => "cancel_login",
            AccountCommand::ExpireStaleLogins => "expire_stale_logins",
            AccountCommand::Disable { .. } => "disable",
            AccountCommand::RequestReset { .. } => "request_reset",
            AccountCommand::ConfirmReset { .. } => "confirm_reset",
            AccountCommand::HelpdeskReset { .. } => "helpdesk_reset",
            AccountCommand::Unlock { .. } => "unlock",
            AccountCommand::RecordResetEmail { .. } => "record_reset_email",
            AccountCommand::RecordNotice { .. } => "record_notice",
        }
    }
}
