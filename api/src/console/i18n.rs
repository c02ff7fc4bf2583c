//! Bahasa Indonesia by default; English when the browser asks for it first (`Accept-Language`)
//! or the operator picks it with the switch (`?lang=en`, kept in a cookie).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::session::cookie;
use crate::state::AppState;

pub const LANG_COOKIE: &str = "spse_console_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Id,
    En,
}

impl Lang {
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Id => &ID,
            Lang::En => &EN,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    fn parse(text: &str) -> Option<Lang> {
        match text.trim() {
            "id" => Some(Lang::Id),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

/// The language a request asked for (the console's middleware remembers a `?lang=` switch).
#[derive(Debug, Clone, Copy)]
pub struct Chosen {
    pub lang: Lang,
}

impl FromRequestParts<AppState> for Chosen {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let asked = parts.uri.query().and_then(|q| {
            url_pairs(q)
                .find(|(k, _)| k == "lang")
                .and_then(|(_, v)| Lang::parse(&v))
        });
        if let Some(lang) = asked {
            return Ok(Chosen { lang });
        }
        if let Some(lang) = cookie(&parts.headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
            return Ok(Chosen { lang });
        }
        // The first language the browser names decides; anything but English is Indonesian.
        let first = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|tag| tag.trim().to_ascii_lowercase());
        let lang = if first.is_some_and(|tag| tag.starts_with("en")) {
            Lang::En
        } else {
            Lang::Id
        };
        Ok(Chosen { lang })
    }
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        Some((k.to_owned(), v.to_owned()))
    })
}

/// Every string the console shows, in one language.
pub struct Texts {
    pub title: &'static str,
    pub lang_switch: &'static str,
    pub lang_other: &'static str,
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub password_again: &'static str,
    pub code: &'static str,
    pub code_hint: &'static str,
    pub sign_in_refused: &'static str,
    pub locked_until: &'static str,
    pub form_expired: &'static str,
    pub forbidden: &'static str,
    pub setup_title: &'static str,
    pub setup_password_hint: &'static str,
    pub setup_passwords_differ: &'static str,
    pub setup_password_short: &'static str,
    pub setup_scan: &'static str,
    pub setup_show_qr: &'static str,
    pub setup_activate: &'static str,
    pub setup_done: &'static str,
    pub setup_link_invalid: &'static str,
    pub setup_link_expired: &'static str,
    pub code_wrong: &'static str,
    pub save: &'static str,
    pub search: &'static str,
    pub user_id_prefix: &'static str,
    pub email: &'static str,
    pub user_type: &'static str,
    pub any: &'static str,
    pub no_results: &'static str,
    pub totp_status: &'static str,
    pub lock: &'static str,
    pub device: &'static str,
    pub not_locked: &'static str,
    pub name: &'static str,
    pub activated_at: &'static str,
    pub pending_logins: &'static str,
    pub timeline: &'static str,
    pub when: &'static str,
    pub what: &'static str,
    pub who: &'static str,
    pub reset_totp: &'static str,
    pub reason: &'static str,
    pub ticket: &'static str,
    pub reset_will: &'static str,
    pub reset_will_remove_device: &'static str,
    pub reset_will_cancel: &'static str,
    pub reset_will_activate: &'static str,
    pub confirm_reset: &'static str,
    pub cancel: &'static str,
    pub reset_done: &'static str,
    pub unlock: &'static str,
    pub unlock_done: &'static str,
    pub required_fields: &'static str,
    pub account_not_found: &'static str,
    pub action_refused: &'static str,
    pub accounts: &'static str,
    pub audit: &'static str,
    pub purpose: &'static str,
    pub purpose_hint: &'static str,
    pub state_as_of: &'static str,
    pub show: &'static str,
    pub devices_ever: &'static str,
    pub event_type: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub none: &'static str,
    pub signed_in_as: &'static str,
    pub chain: &'static str,
    pub chain_last: &'static str,
    pub chain_never: &'static str,
    pub chain_run: &'static str,
    pub chain_ok: &'static str,
    pub chain_broken: &'static str,
    pub result: &'static str,
    pub export: &'static str,
    pub export_hint: &'static str,
    pub download: &'static str,
    pub log_search: &'static str,
    pub actor: &'static str,
    pub actor_hint: &'static str,
    pub client_ip: &'static str,
    pub download_csv: &'static str,
    pub next_page: &'static str,
    pub no_events: &'static str,
    pub summary: &'static str,
    pub time_invalid: &'static str,
    pub operators: &'static str,
    pub api_keys: &'static str,
    pub role: &'static str,
    pub status: &'static str,
    pub last_sign_in: &'static str,
    pub create_operator: &'static str,
    pub create: &'static str,
    pub disable: &'static str,
    pub setup_link_once: &'static str,
    pub operator_created: &'static str,
    pub operator_disabled: &'static str,
    pub operator_totp_reset: &'static str,
    pub create_key: &'static str,
    pub key_once: &'static str,
    pub key_created: &'static str,
    pub key_no_revoke: &'static str,
    pub created_at: &'static str,
    pub checked: &'static str,
    pub streams: &'static str,
    pub newest_checkpoint: &'static str,
    pub no_checkpoint: &'static str,
    pub broken_at: &'static str,
}

pub static ID: Texts = Texts {
    title: "Konsol SPSE TOTP",
    lang_switch: "?lang=en",
    lang_other: "English",
    sign_in: "Masuk",
    sign_out: "Keluar",
    username: "Nama pengguna",
    password: "Kata sandi",
    password_again: "Ulangi kata sandi",
    code: "Kode TOTP",
    code_hint: "6 digit dari aplikasi autentikator",
    sign_in_refused: "Nama pengguna, kata sandi atau kode salah.",
    locked_until: "Terlalu banyak percobaan gagal. Akun operator terkunci sampai",
    form_expired: "Formulir tidak sah atau kedaluwarsa. Muat ulang halaman lalu coba lagi; tidak ada yang diubah.",
    forbidden: "Peran Anda tidak boleh membuka halaman ini.",
    setup_title: "Aktivasi akun operator",
    setup_password_hint: "Pilih kata sandi minimal 12 karakter.",
    setup_passwords_differ: "Kedua kata sandi tidak sama.",
    setup_password_short: "Kata sandi minimal 12 karakter.",
    setup_scan: "Pindai kode QR ini dengan aplikasi autentikator, lalu masukkan kode 6 digit yang tampil.",
    setup_show_qr: "Tampilkan kode QR",
    setup_activate: "Aktifkan",
    setup_done: "Akun operator aktif. Silakan masuk.",
    setup_link_invalid: "Tautan aktivasi tidak berlaku atau sudah digunakan.",
    setup_link_expired: "Tautan aktivasi sudah kedaluwarsa. Minta tautan baru kepada admin.",
    code_wrong: "Kode salah. Pindai kode QR yang baru ini lalu coba lagi.",
    save: "Simpan",
    search: "Cari",
    user_id_prefix: "User ID (awalan)",
    email: "Email",
    user_type: "Jenis pengguna",
    any: "Semua",
    no_results: "Tidak ada akun yang cocok.",
    totp_status: "Status TOTP",
    lock: "Kunci",
    device: "Perangkat",
    not_locked: "Tidak terkunci",
    name: "Nama",
    activated_at: "Diaktifkan",
    pending_logins: "Login menunggu",
    timeline: "Riwayat terakhir",
    when: "Waktu",
    what: "Kejadian",
    who: "Oleh",
    reset_totp: "Reset TOTP",
    reason: "Alasan",
    ticket: "Nomor tiket",
    reset_will: "Reset TOTP akan:",
    reset_will_remove_device: "melepas perangkat",
    reset_will_cancel: "membatalkan login yang menunggu:",
    reset_will_activate: "meminta pengguna mengaktifkan TOTP lagi (pindai QR) pada login berikutnya.",
    confirm_reset: "Ya, reset TOTP",
    cancel: "Batal",
    reset_done: "TOTP berhasil di reset.",
    unlock: "Buka kunci",
    unlock_done: "Kunci akun dibuka.",
    required_fields: "Isi semua kolom yang wajib.",
    account_not_found: "Akun tidak ditemukan.",
    action_refused: "Tindakan ditolak:",
    accounts: "Akun",
    audit: "Audit",
    purpose: "Tujuan",
    purpose_hint: "Mengapa Anda membaca ini (nomor tiket, referensi audit)",
    state_as_of: "Keadaan pada",
    show: "Tampilkan",
    devices_ever: "Semua perangkat yang pernah terikat",
    event_type: "Jenis kejadian",
    from: "Dari",
    to: "Sampai",
    none: "-",
    signed_in_as: "Masuk sebagai",
    chain: "Rantai hash log",
    chain_last: "Verifikasi terakhir",
    chain_never: "Rantai belum pernah diverifikasi dari konsol.",
    chain_run: "Jalankan verifikasi",
    chain_ok: "Utuh",
    chain_broken: "RUSAK",
    result: "Hasil",
    export: "Ekspor subjek",
    export_hint: "Satu dokumen JSON berisi semua yang disimpan tentang akun ini, termasuk siapa yang membacanya.",
    download: "Unduh",
    log_search: "Pencarian log",
    actor: "Pelaku",
    actor_hint: "portal, device, helpdesk, system, operator, auditor atau console; boleh jenis:nama",
    client_ip: "Alamat IP",
    download_csv: "Unduh CSV",
    next_page: "Halaman berikut",
    no_events: "Tidak ada kejadian yang cocok.",
    summary: "Ringkasan",
    time_invalid: "Waktu tidak sah: gunakan pemilih tanggal dan jam.",
    operators: "Operator",
    api_keys: "Kunci API",
    role: "Peran",
    status: "Status",
    last_sign_in: "Terakhir masuk",
    create_operator: "Buat operator",
    create: "Buat",
    disable: "Nonaktifkan",
    setup_link_once: "Kirim tautan aktivasi ini kepada operator. Tautan hanya ditampilkan sekali, sekali pakai, dan berlaku 24 jam.",
    operator_created: "Operator dibuat.",
    operator_disabled: "Operator dinonaktifkan; semua sesinya berakhir.",
    operator_totp_reset: "TOTP operator direset; sesinya berakhir.",
    create_key: "Buat kunci API",
    key_once: "Salin kunci ini sekarang: kunci hanya ditampilkan sekali dan tidak disimpan.",
    key_created: "Kunci API dibuat.",
    key_no_revoke: "Pencabutan kunci belum didukung oleh layanan (juga tidak di baris perintah).",
    created_at: "Dibuat",
    checked: "Kejadian diperiksa",
    streams: "Jumlah stream",
    newest_checkpoint: "Posisi titik periksa bertanda tangan terbaru",
    no_checkpoint: "Belum ada titik periksa bertanda tangan",
    broken_at: "Mata rantai rusak pertama",
};

pub static EN: Texts = Texts {
    title: "SPSE TOTP Console",
    lang_switch: "?lang=id",
    lang_other: "Bahasa Indonesia",
    sign_in: "Sign in",
    sign_out: "Sign out",
    username: "Username",
    password: "Password",
    password_again: "Password again",
    code: "TOTP code",
    code_hint: "6 digits from your authenticator app",
    sign_in_refused: "The username, password or code is wrong.",
    locked_until: "Too many failed attempts. This operator is locked until",
    form_expired:
        "The form is not valid or has expired. Reload the page and try again; nothing was changed.",
    forbidden: "Your role may not open this page.",
    setup_title: "Activate your operator account",
    setup_password_hint: "Choose a password of at least 12 characters.",
    setup_passwords_differ: "The two passwords differ.",
    setup_password_short: "A password has at least 12 characters.",
    setup_scan:
        "Scan this QR code with an authenticator app, then enter the 6-digit code it shows.",
    setup_show_qr: "Show the QR code",
    setup_activate: "Activate",
    setup_done: "Your operator account is active. Please sign in.",
    setup_link_invalid: "This setup link is not valid or was already used.",
    setup_link_expired: "This setup link has expired. Ask an admin for a new one.",
    code_wrong: "Wrong code. Scan this new QR code and try again.",
    save: "Save",
    search: "Search",
    user_id_prefix: "User ID (prefix)",
    email: "Email",
    user_type: "User type",
    any: "Any",
    no_results: "No account matches.",
    totp_status: "TOTP status",
    lock: "Lock",
    device: "Device",
    not_locked: "Not locked",
    name: "Name",
    activated_at: "Activated",
    pending_logins: "Pending logins",
    timeline: "Recent history",
    when: "When",
    what: "What happened",
    who: "By",
    reset_totp: "Reset TOTP",
    reason: "Reason",
    ticket: "Ticket number",
    reset_will: "Resetting TOTP will:",
    reset_will_remove_device: "remove the device",
    reset_will_cancel: "cancel the pending logins:",
    reset_will_activate: "make the user activate TOTP again (scan a QR code) at their next login.",
    confirm_reset: "Yes, reset TOTP",
    cancel: "Cancel",
    reset_done: "TOTP has been reset.",
    unlock: "Unlock",
    unlock_done: "The account is unlocked.",
    required_fields: "Fill in every required field.",
    account_not_found: "No such account.",
    action_refused: "Refused:",
    accounts: "Accounts",
    audit: "Audit",
    purpose: "Purpose",
    purpose_hint: "Why you read this (ticket number, audit reference)",
    state_as_of: "State as of",
    show: "Show",
    devices_ever: "Every device ever bound",
    event_type: "Event type",
    from: "From",
    to: "To",
    none: "-",
    signed_in_as: "Signed in as",
    chain: "The log's hash chain",
    chain_last: "Last verification",
    chain_never: "The chain has not been verified from the console yet.",
    chain_run: "Run the verification",
    chain_ok: "Intact",
    chain_broken: "BROKEN",
    result: "Result",
    export: "Subject export",
    export_hint: "One JSON document with everything held about the account, including who read it.",
    download: "Download",
    log_search: "Log search",
    actor: "Actor",
    actor_hint: "portal, device, helpdesk, system, operator, auditor or console; or kind:name",
    client_ip: "IP address",
    download_csv: "Download CSV",
    next_page: "Next page",
    no_events: "No event matches.",
    summary: "Summary",
    time_invalid: "The time is not valid: use the date and time picker.",
    operators: "Operators",
    api_keys: "API keys",
    role: "Role",
    status: "Status",
    last_sign_in: "Last sign-in",
    create_operator: "Create an operator",
    create: "Create",
    disable: "Disable",
    setup_link_once: "Send this setup link to the operator. It is shown once, works once and is valid for 24 hours.",
    operator_created: "The operator is created.",
    operator_disabled: "The operator is disabled; their sessions have ended.",
    operator_totp_reset: "The operator's TOTP is reset; their sessions have ended.",
    create_key: "Create an API key",
    key_once: "Copy this key now: it is shown once and not stored.",
    key_created: "The API key is created.",
    key_no_revoke: "Revoking a key is not supported by the service yet (nor on the command line).",
    created_at: "Created",
    checked: "Events checked",
    streams: "Streams",
    newest_checkpoint: "Position of the newest signed checkpoint",
    no_checkpoint: "No signed checkpoint yet",
    broken_at: "First broken link",
};

/// An account event in plain words, for the helpdesk's timeline.
pub fn event_phrase(lang: Lang, event_type: &str) -> &'static str {
    let (id, en) = match event_type {
        "AccountRegistered" => ("Akun terdaftar", "Account registered"),
        "ProfileUpdated" => ("Profil diperbarui", "Profile updated"),
        "EnrollmentStarted" => ("Kode QR aktivasi ditampilkan", "Activation QR code shown"),
        "TotpActivated" => ("TOTP diaktifkan di perangkat", "TOTP activated on a device"),
        "LoginStarted" => ("Login dimulai", "Login started"),
        "LoginApproved" => ("Login disetujui", "Login approved"),
        "LoginDenied" => ("Login ditolak dari perangkat", "Login denied on the device"),
        "LoginExpired" => ("Login kedaluwarsa", "Login expired"),
        "LoginCancelled" => ("Login dibatalkan", "Login cancelled"),
        "CodeRejected" => ("Kode salah", "Wrong code"),
        "AccountLocked" => ("Akun terkunci", "Account locked"),
        "AccountUnlocked" => ("Kunci akun dibuka", "Account unlocked"),
        "ResetRequested" => ("Reset diminta", "Reset requested"),
        "ResetRequestDeclined" => ("Permintaan reset diabaikan", "Reset request ignored"),
        "ResetEmailSent" => ("Email reset terkirim", "Reset email sent"),
        "ResetEmailFailed" => ("Email reset gagal", "Reset email failed"),
        "TotpReset" => ("TOTP direset", "TOTP reset"),
        "TotpDisabled" => ("TOTP dinonaktifkan", "TOTP disabled"),
        "NoticeEmailSent" => ("Email pemberitahuan terkirim", "Notice email sent"),
        "NoticeEmailFailed" => ("Email pemberitahuan gagal", "Notice email failed"),
        _ => ("Kejadian lain", "Other event"),
    };
    match lang {
        Lang::Id => id,
        Lang::En => en,
    }
}
