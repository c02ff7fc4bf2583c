//! The messages, in Bahasa Indonesia (the users' language): each with a plain-text part and an
//! HTML part saying the same, naming the account, the time (WIB, the portal's time zone) and the
//! requesting address, and what to do when it was not the user.

use chrono::{DateTime, Datelike, Timelike, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use spse_totp_domain::{AccountKey, UserType};

use super::transport::SendError;

/// Western Indonesian Time, UTC+7, as the SPSE portal shows times.
fn wib(at: DateTime<Utc>) -> String {
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
    // WIB has no daylight saving: a fixed seven hours.
    let local = (at + chrono::Duration::hours(7)).naive_utc();
    format!(
        "{} {} {} pukul {:02}.{:02} WIB",
        local.day(),
        MONTHS[local.month0() as usize % 12],
        local.year(),
        local.hour(),
        local.minute()
    )
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
        ("Waktu", wib(requested_at)),
        (
            "Alamat IP",
            client_ip.unwrap_or("tidak diketahui").to_owned(),
        ),
    ]);
    let greeting = account.greeting();
    let until = wib(expires_at);
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
}

/// Sent after every reset and every activation: if it was not the user, they hear of it.
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
        ("Waktu", wib(at)),
        (
            "Alamat IP",
            client_ip.unwrap_or("tidak diketahui").to_owned(),
        ),
    ];
    let (subject, what) = match facts {
        NoticeFacts::Reset { by, removed_device } => {
            rows.push(("Melalui", (*by).to_owned()));
            if let Some(device) = removed_device {
                rows.push(("Perangkat", format!("{device} (tidak berlaku lagi)")));
            }
            (
                RESET_NOTICE_SUBJECT,
                "TOTP akun SPSE Anda telah di-reset. Perangkat lama tidak dapat digunakan lagi; \
                 pada login berikutnya Anda akan diminta mengaktifkan TOTP kembali.",
            )
        }
        NoticeFacts::Activated { device } => {
            rows.push(("Perangkat", device.clone()));
            (
                ACTIVATION_NOTICE_SUBJECT,
                "TOTP akun SPSE Anda telah diaktifkan pada perangkat berikut.",
            )
        }
    };
    let (facts_plain, facts_html) = facts_table(&rows);
    let greeting = account.greeting();
    let warning =
        "Jika ini bukan Anda, segera hubungi helpdesk LPSE dan ganti kata sandi SPSE Anda: \
                   seseorang mungkin mengetahui kata sandi Anda.";
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
        }
    }

    #[test]
    fn times_are_told_in_wib() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 17, 5, 0).unwrap();
        assert_eq!(wib(at), "1 Desember 2026 pukul 00.05 WIB");
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
