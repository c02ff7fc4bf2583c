//! The messages, in Bahasa Indonesia (the users' language): each with a plain-text part and an
//! HTML part saying the same, naming the account, the time (in the LPSE's zone: WIB, WITA or WIT)
//! and the user's address, and what to do when it was not the user.

use chrono::{DateTime, Datelike, Timelike, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use spse_totp_domain::{AccountKey, UserType};

use super::transport::SendError;

/// The LPSE's time zone, in which letters tell times. Indonesia keeps no daylight saving, so each
/// zone is a fixed offset and no time zone database is needed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LocalZone {
    /// `Asia/Jakarta` (and `Asia/Pontianak`): Western Indonesian Time, UTC+7.
    #[default]
    Wib,
    /// `Asia/Makassar`: Central Indonesian Time, UTC+8.
    Wita,
    /// `Asia/Jayapura`: Eastern Indonesian Time, UTC+9.
    Wit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not Asia/Jakarta (WIB), Asia/Makassar (WITA) or Asia/Jayapura (WIT)")]
pub struct UnknownZone(pub String);

impl LocalZone {
    /// Reads an IANA name of one of Indonesia's zones.
    pub fn parse(name: &str) -> Result<Self, UnknownZone> {
        match name.trim() {
            "Asia/Jakarta" | "Asia/Pontianak" => Ok(LocalZone::Wib),
            "Asia/Makassar" => Ok(LocalZone::Wita),
            "Asia/Jayapura" => Ok(LocalZone::Wit),
            other => Err(UnknownZone(other.to_owned())),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LocalZone::Wib => "WIB",
            LocalZone::Wita => "WITA",
            LocalZone::Wit => "WIT",
        }
    }

    /// The zone's offset from UTC (Indonesia keeps no daylight saving time).
    pub fn offset(self) -> chrono::FixedOffset {
        let seconds = i32::try_from(self.offset_hours() * 3600).unwrap_or(0);
        chrono::FixedOffset::east_opt(seconds).unwrap_or_else(|| chrono::Offset::fix(&Utc))
    }

    fn offset_hours(self) -> i64 {
        match self {
            LocalZone::Wib => 7,
            LocalZone::Wita => 8,
            LocalZone::Wit => 9,
        }
    }

    /// `1 Desember 2026 pukul 00.05 WIB`, as the SPSE portal writes times.
    pub fn format(self, at: DateTime<Utc>) -> String {
        const MONTHS: [&str; 12] = [
            "Januari",
            "Februari",
            "Maret",
            "April",
            "Mei",
            "Juni",
            "Juli",
            "Agustus",
            "September",
            "Oktober",
            "November",
            "Desember",
        ];
        let local = (at + chrono::Duration::hours(self.offset_hours())).naive_utc();
        format!(
            "{} {} {} pukul {:02}.{:02} {}",
            local.day(),
            MONTHS[local.month0() as usize % 12],
            local.year(),
            local.hour(),
            local.minute(),
            self.label()
        )
    }
}

fn user_type_label(user_type: UserType) -> &'static str {
    match user_type {
        UserType::Penyedia => "Penyedia",
        UserType::NonPenyedia => "Non Penyedia",
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A message ready to be built for one recipient.
#[derive(Debug, Clone)]
pub struct Letter {
    pub to: String,
    pub subject: String,
    pub plain: String,
    pub html: String,
    /// Deterministic (derived from the event that caused it), so a message sent again after a
    /// crash carries the same id and receiving systems can tell it is the same message.
    pub message_id: String,
    pub date: DateTime<Utc>,
}

impl Letter {
    pub fn build(&self, from: &str) -> Result<Message, SendError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| SendError::permanent(format!("the sender address is not valid: {e}")))?;
        let to: Mailbox = self.to.parse().map_err(|e| {
            SendError::permanent(format!("the recipient address is not valid: {e}"))
        })?;
        Message::builder()
            .from(from)
            .to(to)
            .subject(self.subject.clone())
            .message_id(Some(self.message_id.clone()))
            .date(self.date.into())
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(self.plain.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(self.html.clone()),
                    ),
            )
            .map_err(|e| SendError::permanent(format!("the message could not be built: {e}")))
    }
}

/// Who the letter is about.
#[derive(Debug, Clone)]
pub struct AccountFacts {
    pub key: AccountKey,
    pub name: Option<String>,
    /// The LPSE's zone, in which the letter tells times.
    pub zone: LocalZone,
}

impl AccountFacts {
    fn greeting(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.key.user_id.to_string())
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"id\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family:Arial,Helvetica,sans-serif;color:#222;max-width:560px;margin:0 auto;padding:16px\">\
         {body}<p style=\"color:#777;font-size:12px\">Email ini dikirim otomatis oleh layanan TOTP SPSE. Mohon tidak membalas email ini.</p>\
         </body></html>",
        title = escape(title),
    )
}

fn facts_table(rows: &[(&str, String)]) -> (String, String) {
    let plain = rows
        .iter()
        .map(|(k, v)| format!("  {k:<10}: {v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let html = format!(
        "<table style=\"border-collapse:collapse\">{}</table>",
        rows.iter()
            .map(|(k, v)| format!(
                "<tr><td style=\"padding:2px 12px 2px 0;color:#555\">{}</td><td><b>{}</b></td></tr>",
                escape(k),
                escape(v)
            ))
            .collect::<String>()
    );
    (plain, html)
}

pub const RESET_SUBJECT: &str = "Konfirmasi Permintaan Reset TOTP";

/// Flow 3, step 4: the link that resets TOTP.
#[allow(clippy::too_many_arguments)]
pub fn reset_link(
    account: &AccountFacts,
    to: &str,
    link: &str,
    requested_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    client_ip: Option<&str>,
    message_id: String,
    date: DateTime<Utc>,
) -> Letter {
    let (facts_plain, facts_html) = facts_table(&[
        ("User ID", account.key.user_id.to_string()),
        (
            "Tipe User",
            user_type_label(account.key.user_type).to_owned(),
        ),
        ("Waktu", account.zone.format(requested_at)),
        (
            "Alamat IP",
            client_ip.unwrap_or("tidak diketahui").to_owned(),
        ),
    ]);
    let greeting = account.greeting();
    let until = account.zone.format(expires_at);
    let plain = format!(
        "Yth. {greeting},\n\n\
         Kami menerima permintaan reset TOTP untuk akun SPSE berikut:\n\n{facts_plain}\n\n\
         Untuk melanjutkan, buka tautan di bawah ini lalu klik tombol \"Reset TOTP\":\n\n{link}\n\n\
         Tautan ini hanya dapat digunakan satu kali dan berlaku sampai {until}.\n\
         Setelah reset, aktifkan kembali TOTP saat login berikutnya dengan memindai kode QR.\n\n\
         Jika Anda tidak merasa meminta reset TOTP, abaikan email ini: TOTP Anda tetap aktif dan \
         tidak ada yang berubah. Jika email seperti ini terus datang, hubungi helpdesk LPSE.\n"
    );
    let html = page(
        RESET_SUBJECT,
        &format!(
            "<p>Yth. {greeting},</p><p>Kami menerima permintaan reset TOTP untuk akun SPSE berikut:</p>{facts_html}\
             <p>Untuk melanjutkan, klik tombol di bawah ini:</p>\
             <p><a href=\"{link}\" style=\"display:inline-block;background:#c0392b;color:#fff;padding:12px 24px;\
             border-radius:4px;text-decoration:none;font-weight:bold\">Reset TOTP</a></p>\
             <p style=\"font-size:13px\">Jika tombol tidak berfungsi, salin tautan ini ke browser Anda:<br>{link}</p>\
             <p>Tautan ini hanya dapat digunakan satu kali dan berlaku sampai {until}.</p>\
             <p><b>Jika Anda tidak merasa meminta reset TOTP</b>, abaikan email ini: TOTP Anda tetap aktif dan tidak ada \
             yang berubah. Jika email seperti ini terus datang, hubungi helpdesk LPSE.</p>",
            greeting = escape(&greeting),
            link = escape(link),
            until = escape(&until),
        ),
    );
    Letter {
        to: to.to_owned(),
        subject: RESET_SUBJECT.to_owned(),
        plain,
        html,
        message_id,
        date,
    }
}

pub const RESET_NOTICE_SUBJECT: &str = "Pemberitahuan: TOTP akun SPSE Anda telah di-reset";
pub const ACTIVATION_NOTICE_SUBJECT: &str = "Pemberitahuan: TOTP akun SPSE Anda telah diaktifkan";
pub const DISABLE_NOTICE_SUBJECT: &str = "Pemberitahuan: TOTP akun SPSE Anda telah dinonaktifkan";
pub const LOCK_NOTICE_SUBJECT: &str = "Pemberitahuan: akun SPSE Anda dikunci sementara";
pub const UNLOCK_NOTICE_SUBJECT: &str = "Pemberitahuan: kunci akun SPSE Anda telah dibuka";

/// What a notice reports.
#[derive(Debug, Clone)]
pub enum NoticeFacts {
    Reset {
        /// "tautan email" or "helpdesk".
        by: &'static str,
        removed_device: Option<String>,
    },
    Activated {
        device: String,
    },
    /// The user turned TOTP off (FAQ 4).
    Disabled,
    /// Too many wrong codes in a row.
    Locked {
        until: DateTime<Utc>,
        /// 1 for the first lock since the last success, 2 for the next, ...
        lock_number: u32,
        /// The lock limit was reached: it holds until the helpdesk lifts it, whatever `until` says.
        until_unlock: bool,
    },
    /// A helpdesk operator lifted the lock.
    Unlocked,
}

/// What happened and what to do if it was not the user, per notice.
fn notice_text(facts: &NoticeFacts) -> (&'static str, &'static str, &'static str) {
    const NOT_YOU: &str =
        "Jika ini bukan Anda, segera hubungi helpdesk LPSE dan ganti kata sandi SPSE Anda: \
         seseorang mungkin mengetahui kata sandi Anda.";
    match facts {
        NoticeFacts::Reset { .. } => (
            RESET_NOTICE_SUBJECT,
            "TOTP akun SPSE Anda telah di-reset. Perangkat lama tidak dapat digunakan lagi; \
             pada login berikutnya Anda akan diminta mengaktifkan TOTP kembali.",
            NOT_YOU,
        ),
        NoticeFacts::Activated { .. } => (
            ACTIVATION_NOTICE_SUBJECT,
            "TOTP akun SPSE Anda telah diaktifkan pada perangkat berikut.",
            NOT_YOU,
        ),
        NoticeFacts::Disabled => (
            DISABLE_NOTICE_SUBJECT,
            "TOTP akun SPSE Anda telah dinonaktifkan. Login berikutnya tidak lagi meminta kode \
             TOTP sampai Anda mengaktifkannya kembali dengan memindai kode QR.",
            NOT_YOU,
        ),
        NoticeFacts::Locked { .. } => (
            LOCK_NOTICE_SUBJECT,
            "Akun SPSE Anda dikunci sementara karena terlalu banyak kode TOTP atau persetujuan \
             yang salah. Selama terkunci, kode TOTP tidak diperiksa dan login tidak dapat \
             diselesaikan.",
            "Jika bukan Anda yang mencoba login, seseorang mungkin mengetahui kata sandi Anda: \
             segera ganti kata sandi SPSE Anda dan hubungi helpdesk LPSE.",
        ),
        NoticeFacts::Unlocked => (
            UNLOCK_NOTICE_SUBJECT,
            "Helpdesk LPSE telah membuka kunci akun SPSE Anda; Anda dapat login kembali dengan \
             kode TOTP.",
            "Jika Anda tidak meminta pembukaan kunci ini, segera hubungi helpdesk LPSE.",
        ),
    }
}

/// Sent after every change to the second factor (reset, activation, disable, each lock, unlock
/// by the helpdesk): if it was not the user, they hear of it.
pub fn notice(
    account: &AccountFacts,
    to: &str,
    facts: &NoticeFacts,
    at: DateTime<Utc>,
    client_ip: Option<&str>,
    message_id: String,
    date: DateTime<Utc>,
) -> Letter {
    let mut rows = vec![
        ("User ID", account.key.user_id.to_string()),
        (
            "Tipe User",
            user_type_label(account.key.user_type).to_owned(),
        ),
        ("Waktu", account.zone.format(at)),
        (
            "Alamat IP",
            client_ip.unwrap_or("tidak diketahui").to_owned(),
        ),
    ];
    match facts {
        NoticeFacts::Reset { by, removed_device } => {
            rows.push(("Melalui", (*by).to_owned()));
            if let Some(device) = removed_device {
                rows.push(("Perangkat", format!("{device} (tidak berlaku lagi)")));
            }
        }
        NoticeFacts::Activated { device } => rows.push(("Perangkat", device.clone())),
        NoticeFacts::Disabled => {}
        NoticeFacts::Locked {
            until,
            lock_number,
            until_unlock,
        } => {
            let until = if *until_unlock {
                "sampai dibuka oleh helpdesk".to_owned()
            } else {
                format!("sampai {}", account.zone.format(*until))
            };
            rows.push(("Terkunci", until));
            rows.push(("Kunci ke-", lock_number.to_string()));
        }
        NoticeFacts::Unlocked => rows.push(("Melalui", "helpdesk".to_owned())),
    }
    let (subject, what, warning) = notice_text(facts);
    let (facts_plain, facts_html) = facts_table(&rows);
    let greeting = account.greeting();
    let plain = format!("Yth. {greeting},\n\n{what}\n\n{facts_plain}\n\n{warning}\n");
    let html = page(
        subject,
        &format!(
            "<p>Yth. {}</p><p>{}</p>{facts_html}<p><b>{}</b></p>",
            escape(&greeting),
            escape(what),
            escape(warning)
        ),
    );
    Letter {
        to: to.to_owned(),
        subject: subject.to_owned(),
        plain,
        html,
        message_id,
        date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use spse_totp_domain::UserId;

    fn facts() -> AccountFacts {
        AccountFacts {
            key: AccountKey::new(UserType::NonPenyedia, UserId::parse("ppk1").unwrap()),
            name: Some("PPK <Satu>".to_owned()),
            zone: LocalZone::Wib,
        }
    }

    #[test]
    fn times_are_told_in_wib() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 17, 5, 0).unwrap();
        assert_eq!(LocalZone::Wib.format(at), "1 Desember 2026 pukul 00.05 WIB");
    }

    #[test]
    fn times_are_told_in_the_lpse_zone() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 16, 5, 0).unwrap();
        let zone = |name| LocalZone::parse(name).unwrap();
        assert_eq!(
            zone("Asia/Jakarta").format(at),
            "30 November 2026 pukul 23.05 WIB"
        );
        assert_eq!(
            zone("Asia/Makassar").format(at),
            "1 Desember 2026 pukul 00.05 WITA"
        );
        assert_eq!(
            zone("Asia/Jayapura").format(at),
            "1 Desember 2026 pukul 01.05 WIT"
        );
        assert!(LocalZone::parse("Asia/Singapore").is_err());
        assert!(LocalZone::parse("WIB").is_err());
    }

    #[test]
    fn the_reset_letter_names_account_time_address_and_link_and_escapes_html() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        let link = "https://spse.example/reset-totp?token=abc";
        let letter = reset_link(
            &facts(),
            "ppk1@lpse.example",
            link,
            at,
            at + chrono::Duration::hours(1),
            Some("10.1.2.3"),
            "<x@spse-totp>".to_owned(),
            at,
        );
        assert_eq!(letter.subject, "Konfirmasi Permintaan Reset TOTP");
        for part in [&letter.plain, &letter.html] {
            assert!(part.contains("PPK1") && part.contains("10.1.2.3"));
            assert!(part.contains("pukul 16.00 WIB"));
            assert!(part.contains(link));
        }
        assert!(letter.html.contains(">Reset TOTP</a>"));
        assert!(letter.html.contains("PPK &lt;Satu&gt;"));
        let built = letter.build("SPSE TOTP <totp@spse.example>").unwrap();
        let text = String::from_utf8(built.formatted()).unwrap();
        assert!(text.contains("Message-ID: <x@spse-totp>"));
    }
}
