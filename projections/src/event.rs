//! A recorded event, decoded once for all projectors.

use spse_totp_domain::access::AccessEvent;
use spse_totp_domain::apikey::ApiKeyEvent;
use spse_totp_domain::masterkey::MasterKeyEvent;
use spse_totp_domain::operator::{self, OperatorEvent, Username};
use spse_totp_domain::reset_log::ResetLogEvent;
use spse_totp_domain::{AccountEvent, AccountKey};
use spse_totp_store::RecordedEvent;

#[derive(Debug, Clone)]
pub enum Decoded {
    Account(AccountKey, AccountEvent),
    ApiKey(ApiKeyEvent),
    /// An audit or helpdesk read, recorded in the day's access stream.
    Access(AccessEvent),
    /// Reset requests that concern no account (unknown User ID, throttled address).
    ResetLog(ResetLogEvent),
    /// A console operator's sign-ins and changes (issue 15).
    Operator(Username, OperatorEvent),
    /// A master key rotation began or finished (fingerprints only).
    MasterKey(MasterKeyEvent),
    /// A stream this version does not project (from a newer version, or another tool).
    Other,
}

impl Decoded {
    pub fn decode(recorded: &RecordedEvent) -> Result<Decoded, String> {
        if let Some(key) = AccountKey::from_stream_name(&recorded.stream) {
            let event = AccountEvent::from_stored(
                &recorded.event_type,
                recorded.schema_version,
                recorded.payload.clone(),
            )
            .map_err(|e| e.to_string())?;
            return Ok(Decoded::Account(key, event));
        }
        if recorded.stream.starts_with(ApiKeyEvent::STREAM_PREFIX) {
            let event = ApiKeyEvent::from_stored(&recorded.event_type, recorded.payload.clone())
                .map_err(|e| e.to_string())?;
            return Ok(Decoded::ApiKey(event));
        }
        if let Some(name) = recorded.stream.strip_prefix(operator::STREAM_PREFIX) {
            let username = Username::parse(name).map_err(|e| e.to_string())?;
            let event = OperatorEvent::from_stored(&recorded.event_type, recorded.payload.clone())
                .map_err(|e| e.to_string())?;
            return Ok(Decoded::Operator(username, event));
        }
        if recorded.stream.starts_with(AccessEvent::STREAM_PREFIX) {
            let event = AccessEvent::from_stored(&recorded.event_type, recorded.payload.clone())
                .map_err(|e| e.to_string())?;
            return Ok(Decoded::Access(event));
        }
        if recorded.stream == ResetLogEvent::STREAM {
            let event = ResetLogEvent::from_stored(
                &recorded.event_type,
                recorded.schema_version,
                recorded.payload.clone(),
            )
            .map_err(|e| e.to_string())?;
            return Ok(Decoded::ResetLog(event));
        }
        if recorded.stream == MasterKeyEvent::STREAM {
            let event = MasterKeyEvent::from_stored(&recorded.event_type, recorded.payload.clone())
                .map_err(|e| e.to_string())?;
            return Ok(Decoded::MasterKey(event));
        }
        Ok(Decoded::Other)
    }
}
