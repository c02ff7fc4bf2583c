//! Self-service reset (flow 3): asking for a link, and the link's token.
//!
//! The token is never stored. It is `base64url(request_id || HMAC-SHA256(reset key, request_id))`
//! where the request id is 128 random bits recorded in `ResetRequested` and the reset key is
//! derived from the master key. The mailer rebuilds the link from the event; the confirmation
//! recomputes the MAC and compares it in constant time. Guessing a token means guessing a MAC
//! under a key nobody outside the server has; a tampered token fails the MAC.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use spse_totp_domain::account::RequestReset;
use spse_totp_domain::reset_log::ResetLogEvent;
use spse_totp_domain::{AccountCommand, AccountEvent, AccountKey, DomainError, ResetRequestId};
use uuid::Uuid;

use crate::accounts::{AccountService, CommandError};
use crate::tokens::{hmac_sha256, random_bytes, Mac};
use crate::vault::MasterKey;
use spse_totp_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError};

const KEY_LABEL: &str = "spse-totp/v1/reset-link-token";
const ID_BYTES: usize = 16;
const MAC_BYTES: usize = 32;

/// Makes and checks reset-link tokens.
#[derive(Clone)]
pub struct ResetTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for ResetTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetTokens(..)")
    }
}

impl ResetTokens {
    pub fn new(master: &MasterKey) -> Self {
        ResetTokens {
            key: master.derive(KEY_LABEL),
        }
    }

    fn mac(&self, request_id: ResetRequestId) -> impl Mac {
        let mut mac = hmac_sha256(&self.key);
        mac.update(request_id.0.as_bytes());
        mac
    }

    /// The token of a request's link: 64 URL-safe characters.
    pub fn token(&self, request_id: ResetRequestId) -> String {
        let mut bytes = Vec::with_capacity(ID_BYTES + MAC_BYTES);
        bytes.extend_from_slice(request_id.0.as_bytes());
        bytes.extend_from_slice(&self.mac(request_id).finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The request a token names, if the token is one this server made.
    pub fn verify(&self, token: &str) -> Option<ResetRequestId> {
        if token.len() > 128 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        if bytes.len() != ID_BYTES + MAC_BYTES {
            return None;
        }
        let (id, tag) = bytes.split_at(ID_BYTES);
        let request_id = ResetRequestId(Uuid::from_slice(id).ok()?);
        // verify_slice compares in constant time.
        self.mac(request_id).verify_slice(tag).ok()?;
        Some(request_id)
    }
}

/// What became of a reset request. The portal is told none of this (no enumeration); it is for
/// logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A link will be mailed.
    Requested(ResetRequestId),
    /// The account exists but nothing is mailed (wrong email, nothing to reset, hourly limit).
    Declined,
    /// No such account.
    Unmatched,
}

/// Records a reset request, returning what became of it and the log position it reached. Every path does the same work: one account load, one decision and
/// one durable append (on the account's stream, or on the shared reset stream when there is no
/// account), so the answer takes about as long whatever the account and email.
pub async fn request(
    accounts: &AccountService,
    store: &dyn EventStore,
    key: &AccountKey,
    email: &str,
    client_ip: Option<String>,
    metadata: EventMetadata,
) -> Result<(RequestOutcome, Option<u64>), CommandError> {
    let request_id = ResetRequestId::from_random(random_bytes::<ID_BYTES>());
    let command = AccountCommand::RequestReset(RequestReset {
        request_id,
        email: email.to_owned(),
        client_ip: client_ip.clone(),
    });
    match accounts.execute(key, command, metadata.clone()).await {
        Ok(executed) => {
            let requested = executed
                .events
                .iter()
                .any(|e| matches!(e, AccountEvent::ResetRequested { .. }));
            let outcome = if requested {
                RequestOutcome::Requested(request_id)
            } else {
                RequestOutcome::Declined
            };
            Ok((outcome, executed.position))
        }
        Err(CommandError::Rejected {
            error: DomainError::AccountNotFound,
            ..
        }) => {
            let event = ResetLogEvent::ResetRequestUnmatched {
                user_type: key.user_type,
                user_id: key.user_id.clone(),
                client_ip,
                at: accounts.now(),
            };
            let position = append_log(store, event, metadata, accounts.now()).await?;
            Ok((RequestOutcome::Unmatched, Some(position)))
        }
        Err(e) => Err(e),
    }
}

/// Records that a client address went over its hourly share of reset requests.
pub async fn record_throttled(
    store: &dyn EventStore,
    client_ip: Option<String>,
    limit: u32,
    metadata: EventMetadata,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let event = ResetLogEvent::ResetRequestThrottled {
        client_ip,
        limit,
        at: now,
    };
    append_log(store, event, metadata, now).await.map(|_| ())
}

async fn append_log(
    store: &dyn EventStore,
    event: ResetLogEvent,
    metadata: EventMetadata,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let new = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        payload: event.to_payload(),
        metadata,
        recorded_at: now,
    };
    store
        .append(ResetLogEvent::STREAM, ExpectedVersion::Any, vec![new])
        .await
        .map(|appended| appended.last_position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ResetTokens {
        ResetTokens::new(&MasterKey::generate())
    }

    #[test]
    fn a_token_names_its_request_and_nothing_else() {
        let tokens = tokens();
        let id = ResetRequestId::from_random(random_bytes());
        let token = tokens.token(id);
        assert_eq!(token.len(), 64);
        assert_eq!(tokens.verify(&token), Some(id));
        assert!(!token.contains(&id.to_string()));
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let tokens = tokens();
        let token = tokens.token(ResetRequestId::from_random(random_bytes()));
        for i in [0, 10, 30, 63] {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(tokens.verify(&tampered), None, "position {i}");
        }
        assert_eq!(tokens.verify(&token[..60]), None);
        assert_eq!(tokens.verify("not a token"), None);
        assert_eq!(tokens.verify(""), None);
    }

    #[test]
    fn another_server_key_makes_other_tokens() {
        let id = ResetRequestId::from_random(random_bytes());
        assert_eq!(tokens().verify(&tokens().token(id)), None);
    }
}
