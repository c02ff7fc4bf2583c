//! The user guide's screens end to end (issue 16): the reference portal under `/demo` in a real
//! headless Chromium, and the `spse-totp-device` companion run as the real binary playing the
//! phone. The service runs on a test clock: the tests move it, and pass its time to the
//! companion (`--at`) so its codes match. Screenshots of each page go to `docs/demo/`.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use chrono::Duration;
use reqwest::StatusCode;
use spse_totp_projections::mail::{SmtpSettings, SmtpTls};
use spse_totp_tests::browser::{docs_dir, Browser};
use spse_totp_tests::resets::{wait_for_links, CAPTCHA_ANSWER};
use spse_totp_tests::smtp_sink::SmtpSink;
use spse_totp_tests::{companion, TestServer};
use tempfile::TempDir;

const PASSWORD: &str = "rahasia-demo-123";

/// The demo server, its users file, and the folder for the companion's state and screenshots.
struct Demo {
    s: TestServer,
    work: TempDir,
}

async fn demo(sink: Option<&SmtpSink>) -> Demo {
    let work = tempfile::tempdir().expect("a work folder");
    let users = work.path().join("demo-users.toml");
    for (user_type, user_id, name) in [
        ("non_penyedia", "ppk1", "PPK Satu"),
        ("penyedia", "vendor01", "CV Maju Jaya"),
        ("penyedia", "vendor02", "PT Sentosa"),
        ("non_penyedia", "pokja7", "Pokja Tujuh"),
        ("penyedia", "vendor03", "CV Tiga"),
        ("penyedia", "vendor04", "CV Empat"),
    ] {
        spse_totp_api::demo::users::add_user(
            &users,
            user_type,
            user_id,
            name,
            &format!("{user_id}@lpse.example.go.id"),
            PASSWORD,
        )
        .expect("a demo user");
    }
    let smtp_port = sink.map(SmtpSink::port);
    let s = TestServer::start_with(move |config| {
        config.demo.enabled = true;
        config.demo.users_file = users;
        config.reset.captcha_test_answer = Some(CAPTCHA_ANSWER.to_owned());
        if let Some(port) = smtp_port {
            config.mail.smtp = Some(SmtpSettings {
                host: "127.0.0.1".to_owned(),
                port,
                tls: SmtpTls::None,
                username: None,
                password: None,
                timeout: StdDuration::from_secs(5),
            });
        }
    })
    .await;
    Demo { s, work }
}

fn shot(name: &str) -> PathBuf {
    docs_dir().join("demo").join(name)
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Demo {
    fn state(&self, name: &str) -> PathBuf {
        self.work.path().join(format!("{name}.json"))
    }

    /// Runs `spse-totp-device` with `state`, computing codes at the server's test time.
    async fn device(&self, state: &Path, args: &[&str]) -> Run {
        let output = tokio::process::Command::new(companion::binary())
            .arg("--state")
            .arg(state)
            .arg("--at")
            .arg(self.s.now().to_rfc3339())
            .args(args)
            .output()
            .await
            .expect("the companion runs");
        Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn device_ok(&self, state: &Path, args: &[&str]) -> String {
        let run = self.device(state, args).await;
        assert!(
            run.ok,
            "spse-totp-device {args:?}: {}{}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    fn url(&self, path: &str) -> String {
        self.s.url(path)
    }

    /// The login form: user type, User ID, password, "Login".
    async fn sign_in(&self, b: &Browser, user_type: &str, user_id: &str, screenshot: Option<&str>) {
        b.goto(&self.url("/demo/login"))
            .await
            .expect("the login page");
        b.wait_for(&format!("#user_type option[value={user_type}]"))
            .await
            .expect("the user type")
            .click()
            .await
            .expect("picked");
        b.fill("#user_id", user_id).await.expect("User ID");
        b.fill("#password", PASSWORD).await.expect("password");
        if let Some(name) = screenshot {
            b.screenshot(&shot(name)).await.expect("a screenshot");
        }
        b.click("#submit").await.expect("Login");
    }

    /// Flow 1: sign in, screenshot the QR code, enroll the companion from the image; the page
    /// reaches the home page by itself. Returns the companion's state file.
    async fn activate(
        &self,
        b: &Browser,
        user_type: &str,
        user_id: &str,
        screenshots: bool,
    ) -> PathBuf {
        self.sign_in(b, user_type, user_id, screenshots.then_some("01-login.png"))
            .await;
        b.wait_for("#qr svg")
            .await
            .expect("the activation page's QR code");
        let qr = self.work.path().join(format!("{user_id}-qr.png"));
        b.screenshot_element("#qr", &qr)
            .await
            .expect("the QR code's image");
        if screenshots {
            b.screenshot(&shot("02-activation.png"))
                .await
                .expect("a screenshot");
        }
        let state = self.state(user_id);
        let out = self
            .device_ok(
                &state,
                &[
                    "enroll",
                    "--qr-image",
                    qr.to_str().expect("a path"),
                    "--label",
                    "Pixel 7",
                ],
            )
            .await;
        assert!(out.contains(&user_id.to_uppercase()), "{out}");
        let greeting = b
            .text_of("#greeting")
            .await
            .expect("the home page, by itself");
        assert!(greeting.starts_with("Selamat datang"), "{greeting}");
        state
    }

    async fn sign_out(&self, b: &Browser) {
        b.click("#logout").await.expect("Keluar");
        b.wait_for("#login").await.expect("the login page");
    }

    /// The single pending login the companion lists.
    async fn pending_login(&self, state: &Path) -> String {
        let out = self.device_ok(state, &["pending", "--wait", "5"]).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "one waiting login: {out}");
        assert!(
            out.contains("127.0.0.1"),
            "the browser's address is shown: {out}"
        );
        lines[0]
            .split_whitespace()
            .next()
            .expect("a login id")
            .to_owned()
    }

    async fn totp_status(&self, user_type: &str, user_id: &str) -> String {
        let (status, body) = self
            .s
            .get(
                &format!("/v1/accounts/{user_type}/{user_id}"),
                &self.s.portal_key,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["totp_status"].as_str().unwrap_or_default().to_owned()
    }
}

/// The text of an element once it is shown (the reset page reveals its outcome after the
/// confirmation's request returns): polls the page, up to 15 seconds.
async fn shown_text(b: &Browser, css: &str) -> String {
    for _ in 0..150 {
        let text = b.text_of(css).await.expect("the element");
        if !text.is_empty() {
            return text;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    panic!("{css} was never shown");
}

macro_rules! browser_or_skip {
    () => {
        match Browser::start().await.expect("the browser starts") {
            Some(browser) => browser,
            None => return,
        }
    };
}

/// Flows 1 and 2: a new user activates from the QR code's screenshot; the next sign-in shows
/// the acceptor page, the companion approves with its number and the page moves on by itself;
/// a second sign-in is denied and the page says so.
#[tokio::test]
async fn activation_from_the_qr_screenshot_then_approval_and_denial_on_the_companion() {
    let b = browser_or_skip!();
    let d = demo(None).await;
    let state = d.activate(&b, "non_penyedia", "ppk1", true).await;
    b.screenshot(&shot("03-home.png"))
        .await
        .expect("a screenshot");
    assert!(b
        .text_of("#greeting")
        .await
        .expect("greeting")
        .contains("PPK Satu"));
    d.sign_out(&b).await;

    d.sign_in(&b, "non_penyedia", "PPK1", None).await;
    let number = b
        .text_of("#approval-number")
        .await
        .expect("the approval number");
    let page = b.text_of("main").await.expect("the acceptor page");
    for words in [
        "Acceptor Time-based One-time Password",
        "Sesi akan tertutup dalam",
        "Mohon untuk tidak merefresh halaman ini!",
        "Konfirmasi Authorize Login",
        "Reset TOTP?",
    ] {
        assert!(page.contains(words), "{words:?} in {page}");
    }
    b.screenshot(&shot("04-acceptor.png"))
        .await
        .expect("a screenshot");
    let login_id = d.pending_login(&state).await;
    // RFC 6238 5.2: the approval's code must come from a later step than the activation's.
    d.s.advance(Duration::seconds(30));
    let out = d
        .device_ok(&state, &["approve", &login_id, "--number", &number])
        .await;
    assert_eq!(out.trim(), "approved");
    let greeting = b
        .text_of("#greeting")
        .await
        .expect("the home page, by itself");
    assert!(greeting.contains("PPK Satu"), "{greeting}");
    d.sign_out(&b).await;

    d.sign_in(&b, "non_penyedia", "ppk1", None).await;
    b.wait_for("#approval-number")
        .await
        .expect("the acceptor page");
    let login_id = d.pending_login(&state).await;
    assert_eq!(
        d.device_ok(&state, &["deny", &login_id]).await.trim(),
        "denied"
    );
    let outcome = b.text_of("#outcome").await.expect("the denial, by itself");
    assert!(outcome.contains("ditolak"), "{outcome}");
    b.screenshot(&shot("05-denied.png"))
        .await
        .expect("a screenshot");
    b.close().await.expect("the browser closes");
}

/// Flow 2 with a standard authenticator: the code `spse-totp-device code` prints, typed into
/// the acceptor page, completes the sign-in.
#[tokio::test]
async fn a_typed_code_from_the_companion_completes_a_sign_in() {
    let b = browser_or_skip!();
    let d = demo(None).await;
    let state = d.activate(&b, "penyedia", "vendor01", false).await;
    d.sign_out(&b).await;
    d.sign_in(&b, "penyedia", "vendor01", None).await;
    b.wait_for("#approval-number")
        .await
        .expect("the acceptor page");
    d.s.advance(Duration::seconds(30));
    let code = d.device_ok(&state, &["code"]).await;
    assert_eq!(code.trim().len(), 6, "{code}");
    // A wrong code first: the page says so and how many attempts are left.
    let wrong = format!(
        "{:06}",
        (code.trim().parse::<u32>().expect("digits") + 1) % 1_000_000
    );
    b.fill("#code", &wrong).await.expect("the code field");
    b.click("#send-code").await.expect("Kirim");
    let error = b.text_of(".alert.err").await.expect("the error");
    assert!(error.contains("Sisa percobaan: 4"), "{error}");
    b.screenshot(&shot("06-acceptor-wrong-code.png"))
        .await
        .expect("a screenshot");
    b.fill("#code", code.trim()).await.expect("the code field");
    b.click("#send-code").await.expect("Kirim");
    let greeting = b.text_of("#greeting").await.expect("the home page");
    assert!(greeting.contains("CV Maju Jaya"), "{greeting}");
    b.close().await.expect("the browser closes");
}

/// Flow 3 from the login page: the form with the captcha, the mailed link opened in the browser,
/// the confirmation; the next sign-in activates again and the old companion no longer works.
#[tokio::test]
async fn reset_from_the_login_page_then_activation_again_and_the_old_device_refused() {
    let b = browser_or_skip!();
    let sink = SmtpSink::start().await;
    let d = demo(Some(&sink)).await;
    let old = d.activate(&b, "penyedia", "vendor02", false).await;
    d.s.settle_mail().await;
    d.sign_out(&b).await;

    b.click("#reset-link").await.expect("Reset TOTP?");
    b.wait_for("#captcha").await.expect("the captcha image");
    b.fill("#user_id", "vendor02").await.expect("User ID");
    b.fill("#email", "vendor02@lpse.example.go.id")
        .await
        .expect("Email");
    b.fill("#captcha_answer", CAPTCHA_ANSWER)
        .await
        .expect("Kode Keamanan");
    b.wait_for("#user_type option[value=penyedia]")
        .await
        .expect("type")
        .click()
        .await
        .expect("picked");
    b.screenshot(&shot("07-reset-form.png"))
        .await
        .expect("a screenshot");
    b.click("#send").await.expect("Kirim");
    let outcome = b.text_of("#outcome").await.expect("the answer");
    assert!(
        outcome.contains("Permintaan reset TOTP telah dikirim"),
        "{outcome}"
    );
    b.screenshot(&shot("08-reset-sent.png"))
        .await
        .expect("a screenshot");

    let mail = wait_for_links(&sink, 1).await;
    assert_eq!(
        mail[0].header("Subject").as_deref(),
        Some("Konfirmasi Permintaan Reset TOTP")
    );
    let token = mail[0].reset_token().expect("a reset link");
    b.goto(&d.url(&format!("/reset-totp?token={token}")))
        .await
        .expect("the link");
    b.click("#go").await.expect("Reset TOTP");
    b.accept_dialog().await.expect("the confirmation");
    let done = shown_text(&b, "#done .ok").await;
    assert!(done.starts_with("TOTP berhasil di"), "{done}");
    b.screenshot(&shot("09-reset-done.png"))
        .await
        .expect("a screenshot");
    assert_eq!(d.totp_status("penyedia", "vendor02").await, "inactive");

    d.sign_in(&b, "penyedia", "vendor02", None).await;
    b.wait_for("#qr svg").await.expect("activation again");
    let refused = d.device(&old, &["pending"]).await;
    assert!(
        !refused.ok,
        "the old device still works: {}",
        refused.stdout
    );
    assert!(
        refused.stderr.contains("device_not_recognised"),
        "{}",
        refused.stderr
    );
    b.close().await.expect("the browser closes");
    sink.stop().await;
}

/// FAQ 4: "Nonaktifkan TOTP" from the home page; the next sign-in activates again.
#[tokio::test]
async fn disable_from_the_home_page_then_activation_again() {
    let b = browser_or_skip!();
    let d = demo(None).await;
    let state = d.activate(&b, "non_penyedia", "pokja7", false).await;
    d.s.advance(Duration::seconds(30));
    let code = d.device_ok(&state, &["code"]).await;
    b.fill("#code", code.trim()).await.expect("the code field");
    b.screenshot(&shot("10-home-disable.png"))
        .await
        .expect("a screenshot");
    b.click("#disable").await.expect("Nonaktifkan TOTP");
    let notice = b.text_of(".alert.ok").await.expect("the notice");
    assert!(notice.contains("TOTP berhasil dinonaktifkan"), "{notice}");
    b.screenshot(&shot("11-disabled.png"))
        .await
        .expect("a screenshot");
    assert_eq!(d.totp_status("non_penyedia", "pokja7").await, "disabled");
    d.sign_in(&b, "non_penyedia", "pokja7", None).await;
    b.wait_for("#qr svg").await.expect("activation again");
    b.close().await.expect("the browser closes");
}

/// "expired" and "locked" each get a page of their own; a wrong password gets no second factor.
#[tokio::test]
async fn expired_and_locked_sign_ins_and_a_wrong_password_each_say_so() {
    let b = browser_or_skip!();
    let d = demo(None).await;
    let state = d.activate(&b, "penyedia", "vendor03", false).await;
    d.sign_out(&b).await;

    d.sign_in(&b, "penyedia", "vendor03", None).await;
    b.wait_for("#approval-number")
        .await
        .expect("the acceptor page");
    d.s.advance(Duration::minutes(11));
    // "Lanjutkan" works without JavaScript; the page's script may get there first, as the
    // expiry is recorded.
    b.click_or_moved_on("#continue", "#outcome")
        .await
        .expect("Lanjutkan, or the page moving on by itself");
    let outcome = b.text_of("#outcome").await.expect("the expiry");
    assert!(
        outcome.contains("Waktu konfirmasi login sudah habis"),
        "{outcome}"
    );
    b.screenshot(&shot("12-expired.png"))
        .await
        .expect("a screenshot");

    d.sign_in(&b, "penyedia", "vendor03", None).await;
    b.wait_for("#approval-number")
        .await
        .expect("the acceptor page");
    let code = d.device_ok(&state, &["code"]).await;
    let wrong = format!(
        "{:06}",
        (code.trim().parse::<u32>().expect("digits") + 7) % 1_000_000
    );
    for _ in 0..5 {
        b.fill("#code", &wrong).await.expect("the code field");
        b.click_to_load("#send-code").await.expect("Kirim");
    }
    let outcome = b.text_of("#outcome").await.expect("the lock");
    assert!(outcome.contains("terkunci"), "{outcome}");
    b.screenshot(&shot("13-locked.png"))
        .await
        .expect("a screenshot");

    b.goto(&d.url("/demo/login")).await.expect("the login page");
    b.fill("#user_id", "vendor04").await.expect("User ID");
    b.fill("#password", "salah").await.expect("password");
    b.click("#submit").await.expect("Login");
    let error = b.text_of(".alert.err").await.expect("the error");
    assert!(error.contains("password salah"), "{error}");
    let (status, body) =
        d.s.get("/v1/accounts/penyedia/vendor04", &d.s.portal_key)
            .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no login was started: {body}"
    );
    b.close().await.expect("the browser closes");
}

/// The pages are off unless asked for, and carry a strict policy when on.
#[tokio::test]
async fn the_portal_is_off_by_default_and_its_pages_carry_a_strict_policy() {
    let off = TestServer::start().await;
    let response = reqwest::get(off.url("/demo/login"))
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let d = demo(None).await;
    let response = reqwest::get(d.url("/demo/login")).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("HttpOnly; SameSite=Strict"));
    let html = response.text().await.expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no other host: {html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );

    // A form without the session's CSRF token changes nothing.
    let client = reqwest::Client::new();
    let response = client
        .post(d.url("/demo/login"))
        .form(&[
            ("csrf", "forged"),
            ("user_type", "penyedia"),
            ("user_id", "vendor01"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (status, _) =
        d.s.get("/v1/accounts/penyedia/vendor01", &d.s.portal_key)
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `GET /v1/device/logins?wait_seconds=N` answers as soon as a login starts, is capped at 30,
/// and is in the OpenAPI document.
#[tokio::test]
async fn the_device_long_poll_answers_when_a_login_starts() {
    let s = TestServer::start().await;
    let (phone, _) = s.activate_by_device("penyedia", "vendor09").await;
    let token = phone.token().to_owned();
    let started = std::time::Instant::now();
    let waiting = {
        let client = s.client.clone();
        let url = s.url("/v1/device/logins?wait_seconds=20");
        tokio::spawn(async move {
            let response = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("an answer");
            (
                response.status(),
                response.json::<serde_json::Value>().await.expect("json"),
            )
        })
    };
    // Give the poll time to be waiting before the login starts (a real-time pause for ordering,
    // not for time logic).
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let (status, login) = s.start_login("penyedia", "vendor09").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let (status, body) = waiting.await.expect("the poll");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["logins"][0]["login_id"], login["login_id"], "{body}");
    assert!(
        started.elapsed() < StdDuration::from_secs(10),
        "it answered at once, not at the deadline"
    );

    let (status, body) = s
        .get("/v1/device/logins?wait_seconds=31", phone.token())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");

    let (_, doc) = s
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    let params = &doc["paths"]["/v1/device/logins"]["get"]["parameters"];
    assert!(
        params
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "wait_seconds")),
        "{params}"
    );
}

/// `enroll --uri` and `watch`: the companion waits for a login and approves it with the number
/// typed at its prompt, as the app's "Authorize Login" screen does.
#[tokio::test]
async fn the_companion_watches_and_approves_with_the_typed_number() {
    use tokio::io::AsyncWriteExt as _;
    let d = demo(None).await;
    let (status, login) = d.s.start_login("penyedia", "vendor05").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let uri = login["activation"]["otpauth_uri"].as_str().expect("a URI");
    let state = d.state("vendor05");
    d.device_ok(&state, &["enroll", "--uri", uri]).await;
    d.s.advance(Duration::seconds(30));

    let mut watch = tokio::process::Command::new(companion::binary())
        .arg("--state")
        .arg(&state)
        .arg("--at")
        .arg(d.s.now().to_rfc3339())
        .args(["watch", "--once"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the companion runs");
    let (status, login) = d.s.start_login("penyedia", "vendor05").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let number = login["approval_number"].as_u64().expect("a number");
    let mut stdin = watch.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{number}\n").as_bytes())
        .await
        .expect("the answer typed");
    let output = tokio::time::timeout(StdDuration::from_secs(30), watch.wait_with_output())
        .await
        .expect("watch returns")
        .expect("its output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("Authorize Login?") && stdout.contains("approved"),
        "{stdout}"
    );
    let login_id = login["login_id"].as_str().expect("login_id");
    let (_, view) =
        d.s.get(&format!("/v1/logins/{login_id}"), &d.s.portal_key)
            .await;
    assert_eq!(view["status"], "approved", "{view}");
    assert_eq!(view["method"], "device", "{view}");
}
