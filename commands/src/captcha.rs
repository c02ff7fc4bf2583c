//! The "Kode Keamanan" of the reset form: a distorted code drawn as a PNG, stored in the database
//! so any instance can check it, single use, five minutes.
//!
//! Only a keyed hash of the answer is stored (HMAC under a key derived from the master key, bound
//! to the captcha id), so neither the database file nor a backup tells the answer. Checking it
//! deletes the row in the same statement that reads it, so an answer is tried once at most, right
//! or wrong, whichever instance gets it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::tokens::{hmac_sha256, Mac};
use crate::vault::MasterKey;
use spse_totp_store::Database;

const KEY_LABEL: &str = "spse-totp/v1/captcha-answer";
const CHARS: u32 = 5;
pub const TTL_MINUTES: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum CaptchaError {
    #[error("the captcha image could not be drawn")]
    Draw,
    #[error("captcha store: {0}")]
    Database(#[from] sqlx::Error),
}

/// A captcha handed out. `answer` never leaves the process except as the image.
pub struct IssuedCaptcha {
    pub captcha_id: Uuid,
    pub image_png: Vec<u8>,
    pub answer: String,
    pub expires_at: DateTime<Utc>,
}

impl IssuedCaptcha {
    pub fn image_base64(&self) -> String {
        STANDARD.encode(&self.image_png)
    }
}

#[derive(Clone)]
pub struct Captchas {
    db: Database,
    key: [u8; 32],
    test_answer: Option<String>,
}

impl Captchas {
    /// `test_answer`, when set, is accepted for any live captcha besides its own answer: for
    /// integrators' automated test environments only.
    pub fn new(db: &Database, master: &MasterKey, test_answer: Option<String>) -> Self {
        Captchas {
            db: db.clone(),
            key: master.derive(KEY_LABEL),
            test_answer: test_answer.map(|a| normalise(&a)).filter(|a| !a.is_empty()),
        }
    }

    fn digest(&self, captcha_id: Uuid, answer: &str) -> Vec<u8> {
        let mut mac = hmac_sha256(&self.key);
        mac.update(captcha_id.as_bytes());
        mac.update(normalise(answer).as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Draws and stores a new captcha.
    pub async fn issue(&self, now: DateTime<Utc>) -> Result<IssuedCaptcha, CaptchaError> {
        // Drawing takes a few milliseconds of CPU: off the async workers.
        let (answer, image_png) = tokio::task::spawn_blocking(draw)
            .await
            .map_err(|_| CaptchaError::Draw)??;
        let captcha_id = Uuid::new_v4();
        let expires_at = now + Duration::minutes(TTL_MINUTES);
        let pool = self.db.write().await;
        sqlx::query(
            "INSERT INTO captchas (captcha_id, answer_hmac, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(captcha_id.to_string())
        .bind(hex::encode(self.digest(captcha_id, &answer)))
        .bind(expires_at.timestamp_micros())
        .execute(&*pool)
        .await?;
        Ok(IssuedCaptcha {
            captcha_id,
            image_png,
            answer,
            expires_at,
        })
    }

    /// Uses up the captcha and says whether `answer` solves it in time. An unknown, used or
    /// expired captcha, or a malformed id, is simply not solved.
    pub async fn redeem(
        &self,
        captcha_id: &str,
        answer: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, CaptchaError> {
        let Ok(captcha_id) = Uuid::parse_str(captcha_id.trim()) else {
            return Ok(false);
        };
        let row: Option<(String, i64)> = {
            let pool = self.db.write().await;
            sqlx::query_as(
                "DELETE FROM captchas WHERE captcha_id = $1 RETURNING answer_hmac, expires_at",
            )
            .bind(captcha_id.to_string())
            .fetch_optional(&*pool)
            .await?
        };
        let Some((stored, expires_at)) = row else {
            return Ok(false);
        };
        if expires_at <= now.timestamp_micros() {
            return Ok(false);
        }
        let Ok(stored) = hex::decode(stored) else {
            return Ok(false);
        };
        let solves = |candidate: &str| {
            let mut mac = hmac_sha256(&self.key);
            mac.update(captcha_id.as_bytes());
            mac.update(normalise(candidate).as_bytes());
            mac.verify_slice(&stored).is_ok()
        };
        let by_test_answer = self
            .test_answer
            .as_deref()
            .is_some_and(|test| normalise(answer) == test);
        Ok(solves(answer) || by_test_answer)
    }

    /// Deletes captchas past their time.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<u64, CaptchaError> {
        let pool = self.db.write().await;
        Ok(sqlx::query("DELETE FROM captchas WHERE expires_at < $1")
            .bind(now.timestamp_micros())
            .execute(&*pool)
            .await?
            .rows_affected())
    }
}

/// People read `o` for `O`: answers compare without case or blanks.
fn normalise(answer: &str) -> String {
    answer
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

fn draw() -> Result<(String, Vec<u8>), CaptchaError> {
    use captcha::filters::{Dots, Noise, Wave};
    let mut captcha = captcha::Captcha::new();
    captcha
        .add_chars(CHARS)
        .apply_filter(Noise::new(0.2))
        .apply_filter(Wave::new(2.0, 8.0).horizontal())
        .view(220, 90)
        .apply_filter(Dots::new(8));
    let png = captcha.as_png().ok_or(CaptchaError::Draw)?;
    Ok((captcha.chars_as_string(), png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_of_the_answer_length() {
        let (answer, png) = draw().unwrap();
        assert_eq!(answer.chars().count(), CHARS as usize);
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn answers_compare_without_case_or_blanks() {
        assert_eq!(normalise(" aB c"), "ABC");
    }
}
