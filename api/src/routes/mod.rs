//! The REST API, one module per resource.

pub mod accounts;
pub mod audit;
pub mod audit_feed;
pub mod captcha;
pub mod device;
pub mod helpdesk;
pub mod logins;
pub mod reset_page;
pub mod resets;
pub mod system;

use serde::Serialize;
use spse_totp_domain::{AccountKey, TotpStatus};
use utoipa::ToSchema;

/// The error shape, for the handlers' OpenAPI annotations (`body = super::ErrorBody`).
pub use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};

/// `penyedia` or `non_penyedia`: the two kinds of SPSE account (schema only).
#[derive(ToSchema)]
#[schema(as = UserType)]
#[allow(dead_code)]
pub enum UserTypeName {
    #[schema(rename = "penyedia")]
    Penyedia,
    #[schema(rename = "non_penyedia")]
    NonPenyedia,
}

/// An account's TOTP status (schema only).
#[derive(ToSchema)]
#[schema(as = TotpStatus)]
#[allow(dead_code)]
pub enum TotpStatusName {
    #[schema(rename = "inactive")]
    Inactive,
    #[schema(rename = "active")]
    Active,
    #[schema(rename = "disabled")]
    Disabled,
}

/// A login's status (schema only).
#[derive(ToSchema)]
#[schema(as = LoginStatus)]
#[allow(dead_code)]
pub enum LoginStatusName {
    #[schema(rename = "awaiting_activation")]
    AwaitingActivation,
    #[schema(rename = "awaiting_approval")]
    AwaitingApproval,
    #[schema(rename = "approved")]
    Approved,
    #[schema(rename = "denied")]
    Denied,
    #[schema(rename = "expired")]
    Expired,
    #[schema(rename = "cancelled")]
    Cancelled,
}

/// The account a response is about.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountRef {
    #[schema(value_type = UserTypeName)]
    pub user_type: String,
    /// Canonical (upper-case) User ID.
    pub user_id: String,
    /// `inactive` (never activated, or reset), `active` or `disabled`.
    #[schema(value_type = TotpStatusName)]
    pub totp_status: String,
}

impl AccountRef {
    pub fn new(key: &AccountKey, status: TotpStatus) -> Self {
        AccountRef {
            user_type: key.user_type.as_str().to_owned(),
            user_id: key.user_id.to_string(),
            totp_status: status.as_str().to_owned(),
        }
    }
}

/// Trims, refuses control characters and overlong text.
pub fn clean_text(
    field: &'static str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{field} must be at most {max} characters, without control characters"),
        ));
    }
    Ok(Some(value))
}

/// The schema of a relayed client address: an IPv4 or IPv6 address as `std::net::IpAddr`
/// parses it (surrounding blanks are trimmed first). `empty_is_absent`: where an empty string
/// counts as leaving the field out (the login calls), the document says so too.
pub fn ip_schema(empty_is_absent: bool, description: &str) -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let address = |format| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(format)))
    };
    let mut any_of = AnyOfBuilder::new()
        .item(address(KnownFormat::Ipv4))
        .item(address(KnownFormat::Ipv6));
    if empty_is_absent {
        any_of = any_of.item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(0)),
        );
    }
    any_of = any_of.item(ObjectBuilder::new().schema_type(Type::Null));
    any_of.description(Some(description)).into()
}
