//! A reset link's token and a captcha's answer are credentials: after a whole reset flow, neither
//! (nor the token's MAC, in any encoding) appears in the database file, its WAL, or anything the
//! service logged.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::json;
use spse_totp_tests::resets::{email_of, USER_IP};
use spse_totp_tests::TestServer;

fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedBuffer(Arc::clone(&buffer));
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only global subscriber of this test binary");
        buffer
    })
    .clone()
}

#[derive(Clone)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn reset_tokens_and_captcha_answers_are_stored_and_logged_nowhere() {
    let logs = captured_logs();
    let s = TestServer::start().await;
    s.activate_with_email("non_penyedia", "ppk1").await;

    let mut answers = Vec::new();
    let mut solve = async |s: &TestServer| {
        let issued = s.services.resets.captchas.issue(s.now()).await.unwrap();
        answers.push(issued.answer.clone());
        issued
    };
    let issued = solve(&s).await;
    let (status, _) = s
        .request_reset_with(json!({"user_type": "non_penyedia", "user_id": "ppk1",
            "email": email_of("ppk1"), "captcha_id": issued.captcha_id.to_string(),
            "captcha_answer": issued.answer, "client_ip": USER_IP}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A captcha issued and never answered stays in its table: only as a keyed hash.
    let _unanswered = solve(&s).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let token = loop {
        let found = s.outbox().into_iter().find_map(|data| {
            let data = data
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            let start = data.find("/reset-totp?token=")? + "/reset-totp?token=".len();
            Some(
                data[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect::<String>(),
            )
        });
        if let Some(token) = found {
            break token;
        }
        assert!(std::time::Instant::now() < deadline, "no reset email");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(s.reset_page(&token, None).await.0, StatusCode::OK);
    assert_eq!(s.confirm_reset(&token).await.0, StatusCode::OK);
    assert_eq!(s.confirm_reset(&token).await.0, StatusCode::GONE);

    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token)
        .unwrap();
    let mac = &raw[16..];
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("token".into(), token.clone().into_bytes()),
        ("token MAC (raw)".into(), mac.to_vec()),
        ("token MAC (hex)".into(), hex(mac).into_bytes()),
        (
            "token MAC (base64)".into(),
            base64::engine::general_purpose::STANDARD
                .encode(mac)
                .into_bytes(),
        ),
        (
            "token MAC (base64url)".into(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(mac)
                .into_bytes(),
        ),
    ];
    for answer in &answers {
        needles.push((
            format!("captcha answer {answer}"),
            answer.clone().into_bytes(),
        ));
        needles.push((
            format!("captcha answer {answer} (upper case)"),
            answer.to_uppercase().into_bytes(),
        ));
    }

    s.services.projections.catch_up().await.unwrap();
    let db = s.dir.path().join("spse-totp.db");
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        if let Ok(bytes) = std::fs::read(&path) {
            places.push((path, bytes));
        }
    }
    places.push(("the logs".into(), logs.lock().unwrap().clone()));
    let mut found = Vec::new();
    for (place, haystack) in &places {
        for (name, needle) in &needles {
            if contains(haystack, needle) {
                found.push(format!("{name} in {place}"));
            }
        }
    }
    assert!(places[0].1.len() > 1000, "the database file was read");
    // The search finds what is there: the outbox holds the link, as it must.
    let outbox = s.outbox().concat().replace("=\r\n", "").replace("=3D", "=");
    assert!(contains(outbox.as_bytes(), token.as_bytes()));
    assert!(!places.last().unwrap().1.is_empty(), "logs were captured");
    assert!(found.is_empty(), "found: {found:#?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
