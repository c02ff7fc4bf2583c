//! Identifiers. Each has one checked constructor, so a value of the type is always well formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The two kinds of SPSE user. The portal's login screen asks for this before the User ID, and
/// the same User ID may exist under both, so it is part of an account's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    /// Vendors.
    Penyedia,
    /// Government staff: PPK, Pokja and the rest.
    NonPenyedia,
}

impl UserType {
    pub const ALL: [UserType; 2] = [UserType::Penyedia, UserType::NonPenyedia];

    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Penyedia => "penyedia",
            UserType::NonPenyedia => "non_penyedia",
        }
    }
}

impl fmt::Display for UserType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("user_type must be \"penyedia\" or \"non_penyedia\"")]
    UserType,
    #[error("user_id must be 1 to 64 characters of letters, digits, '.', '_', '-' or '@'")]
    UserId,
    #[error("not a valid identifier")]
    Uuid,
}

impl FromStr for UserType {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "penyedia" => Ok(UserType::Penyedia),
            "non_penyedia" => Ok(UserType::NonPenyedia),
            _ => Err(IdError::UserType),
        }
    }
}

/// An SPSE User ID. The guide types `ppk1` and the acceptor page shows `PPK1`: User IDs are
/// case-insensitive, so the canonical form is upper case and every comparison uses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let trimmed = raw.trim();
        let ok = !trimmed.is_empty()
            && trimmed.len() <= Self::MAX_LEN
            && trimmed
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if ok {
            Ok(UserId(trimmed.to_ascii_uppercase()))
        } else {
            Err(IdError::UserId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        UserId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who an account is: user type and canonical User ID. It names the account's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountKey {
    pub user_type: UserType,
    pub user_id: UserId,
}

impl AccountKey {
    pub const STREAM_PREFIX: &'static str = "account-";

    pub fn new(user_type: UserType, user_id: UserId) -> Self {
        AccountKey { user_type, user_id }
    }

    /// `account-{user_type}-{USER_ID}`: one stream holds the account's whole TOTP life.
    pub fn stream_name(&self) -> String {
        format!("{}{}-{}", Self::STREAM_PREFIX, self.user_type, self.user_id)
    }

    /// The inverse of [`AccountKey::stream_name`], for readers of the global log.
    pub fn from_stream_name(stream: &str) -> Option<Self> {
        let rest = stream.strip_prefix(Self::STREAM_PREFIX)?;
        // The user type never contains '-', the User ID may: split at the first one.
        let (user_type, user_id) = rest.split_once('-')?;
        Some(AccountKey {
            user_type: user_type.parse().ok()?,
            user_id: UserId::parse(user_id).ok()?,
        })
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user_type, self.user_id)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered identifier (UUID v7).
            pub fn generate() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name).map_err(|_| IdError::Uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// One login attempt: started by the portal after the password check.
    LoginId
);
uuid_id!(
    /// One QR code handed out: its secret is sealed in the vault under this id.
    EnrollmentId
);
uuid_id!(
    /// One device binding, created when an enrollment is activated.
    DeviceId
);
uuid_id!(
    /// One self-service reset request. Unlike the other ids it is made of 128 random bits (see
    /// [`ResetRequestId::from_random`]): the emailed token is derived from it, so it must not be
    /// guessable from the time it was made.
    ResetRequestId
);

impl ResetRequestId {
    pub fn from_random(bytes: [u8; 16]) -> Self {
        ResetRequestId(Uuid::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_case_insensitive() {
        assert_eq!(
            UserId::parse("ppk1").unwrap(),
            UserId::parse("PPK1").unwrap()
        );
        assert_eq!(UserId::parse(" ppk1 ").unwrap().as_str(), "PPK1");
    }

    #[test]
    fn user_ids_reject_what_cannot_be_a_stream_name() {
        for bad in ["", " ", "a b", "ppk/1", "ppk\n1", &"x".repeat(65), "ppk1ß"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(UserId::parse("vendor.name-01@lpse").is_ok());
    }

    #[test]
    fn stream_names_round_trip_even_with_dashes_in_the_user_id() {
        let key = AccountKey::new(UserType::NonPenyedia, UserId::parse("ppk-1").unwrap());
        assert_eq!(key.stream_name(), "account-non_penyedia-PPK-1");
        assert_eq!(AccountKey::from_stream_name(&key.stream_name()), Some(key));
        assert_eq!(AccountKey::from_stream_name("apikey-1"), None);
    }
}
