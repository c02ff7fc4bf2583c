//! The pages, one handler each. Every step that involves the second factor is a call in
//! [`super::service`]; what is left here is what any portal does anyway: check the password,
//! keep the session, render the answer.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::service::{Answer, LoginStart, ResetForm, ServiceError};
use super::session::{same_token, set_cookie, PendingTotp, Session};
use super::users;
use super::Portal;

type Shared = State<Arc<Portal>>;

/// The browser's address as this server sees it (the portal relays it to the service, which
/// shows it on the phone).
pub struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// How long one long-poll of the waiting pages holds (the service allows up to 30 s).
const WAIT_SECONDS: u8 = 25;

/// Something that is not the user's doing: the service is unreachable, a template failed.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    #[error(transparent)]
    Users(#[from] users::UsersError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "demo portal page failed");
        let page = Outcome {
            title: "Terjadi kesalahan".to_owned(),
            class: "err",
            message: "Layanan TOTP sedang tidak dapat dihubungi. Silakan coba beberapa saat lagi."
                .to_owned(),
            detail: None,
        };
        let html = page
            .render()
            .unwrap_or_else(|_| "Terjadi kesalahan".to_owned());
        html_response(StatusCode::BAD_GATEWAY, html)
    }
}

type PageResult = Result<Response, PageError>;

fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn render(page: &impl Template) -> PageResult {
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// The response, with the session cookie set when the session is new.
fn with_cookie(mut response: Response, new_id: Option<&str>) -> Response {
    if let Some(value) = new_id.and_then(set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

fn user_type_label(user_type: &str) -> &'static str {
    if user_type == "penyedia" {
        "Penyedia"
    } else {
        "Non Penyedia"
    }
}

/// "mm:ss" until `expires_at` on the portal's clock.
fn remaining(portal: &Portal, expires_at: DateTime<Utc>) -> (i64, String) {
    let seconds = (expires_at - portal.clock.now()).num_seconds().max(0);
    (seconds, format!("{:02}:{:02}", seconds / 60, seconds % 60))
}

/// The session of a request whose form carries its CSRF token; `None` when either is missing.
fn checked(portal: &Portal, headers: &HeaderMap, csrf: &str) -> Option<(String, Session)> {
    portal
        .sessions
        .get(headers)
        .filter(|(_, session)| same_token(&session.csrf, csrf))
}

fn expired_form() -> Response {
    let page = Outcome {
        title: "Sesi tidak valid".to_owned(),
        class: "err",
        message: "Formulir ini sudah tidak berlaku. Silakan ulangi dari halaman login.".to_owned(),
        detail: None,
    };
    match page.render() {
        Ok(html) => html_response(StatusCode::FORBIDDEN, html),
        Err(e) => PageError::from(e).into_response(),
    }
}

fn client_ip(peer: &Peer) -> Option<String> {
    peer.0.map(|addr| addr.ip().to_string())
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[derive(Template)]
#[template(path = "demo/login.html")]
struct LoginPage {
    title: String,
    csrf: String,
    user_type: String,
    user_id: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "demo/activation.html")]
struct ActivationPage {
    title: String,
    csrf: String,
    user_id: String,
    qr_svg: String,
    seconds_left: i64,
    countdown: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "demo/acceptor.html")]
struct AcceptorPage {
    title: String,
    csrf: String,
    user_id: String,
    approval_number: Option<u64>,
    seconds_left: i64,
    countdown: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "demo/home.html")]
struct HomePage {
    title: String,
    csrf: String,
    name: String,
    user_id: String,
    user_type: String,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "demo/outcome.html")]
struct Outcome {
    title: String,
    class: &'static str,
    message: String,
    detail: Option<String>,
}

#[derive(Template)]
#[template(path = "demo/reset.html")]
struct ResetPage {
    title: String,
    csrf: String,
    captcha_id: String,
    captcha_png: String,
    user_id: String,
    email: String,
    user_type: String,
    error: Option<String>,
}

pub async fn index(State(portal): Shared, headers: HeaderMap) -> Response {
    match portal.sessions.get(&headers) {
        Some((_, session)) if session.signed_in.is_some() => see_other("/demo/home"),
        _ => see_other("/demo/login"),
    }
}

fn login_page(
    session: &Session,
    user_type: &str,
    user_id: &str,
    error: Option<String>,
) -> LoginPage {
    LoginPage {
        title: "Login".to_owned(),
        csrf: session.csrf.clone(),
        user_type: user_type.to_owned(),
        user_id: user_id.to_owned(),
        error,
        notice: session.notice.clone(),
    }
}

pub async fn login_form(State(portal): Shared, headers: HeaderMap) -> PageResult {
    let (id, session, new) = portal.sessions.get_or_create(&headers);
    portal.sessions.update(&id, |s| s.notice = None);
    let page = render(&login_page(&session, "penyedia", "", None))?;
    Ok(with_cookie(page, new.then_some(id.as_str())))
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf: String,
    user_type: String,
    user_id: String,
    password: String,
}

/// The password check (the portal's own), then `POST /v1/logins`.
pub async fn login(
    State(portal): Shared,
    peer: Peer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let Some((old_id, session)) = checked(&portal, &headers, &form.csrf) else {
        return Ok(expired_form());
    };
    let users = users::load(&portal.users_file)?;
    let (user_type, user_id, password) =
        (form.user_type.clone(), form.user_id.clone(), form.password);
    let found = tokio::task::spawn_blocking(move || {
        users::authenticate(&users, &user_type, &user_id, &password)
    })
    .await
    .ok()
    .flatten();
    let Some(user) = found else {
        let error = Some("User ID atau password salah.".to_owned());
        return render(&login_page(&session, &form.user_type, &form.user_id, error));
    };
    let answer = portal
        .api
        .start_login(LoginStart {
            user_type: &user.user_type,
            user_id: &user.user_id,
            email: &user.email,
            name: &user.name,
            client_ip: client_ip(&peer),
            user_agent: user_agent(&headers),
        })
        .await?;
    if answer.status == StatusCode::LOCKED {
        return locked_page(&answer);
    }
    if !answer.is_success() {
        tracing::warn!(status = %answer.status, code = ?answer.error_code(), "start login refused");
        let error = Some("Login tidak dapat diproses. Silakan coba lagi.".to_owned());
        return render(&login_page(&session, &form.user_type, &form.user_id, error));
    }
    let pending = pending_of(&answer);
    // A new session id once the password is right: an id planted before login is worth nothing.
    portal.sessions.remove(&old_id);
    let (id, _) = portal.sessions.create();
    portal.sessions.update(&id, |s| {
        s.user = Some(user);
        s.pending = pending;
    });
    Ok(with_cookie(see_other("/demo/totp"), Some(&id)))
}

fn pending_of(answer: &Answer) -> Option<PendingTotp> {
    let body = &answer.body;
    Some(PendingTotp {
        login_id: body["login_id"].as_str()?.to_owned(),
        activation: body["status"] == "awaiting_activation",
        qr_svg: body["activation"]["qr_svg"].as_str().map(str::to_owned),
        approval_number: body["approval_number"].as_u64(),
        expires_at: body["expires_at"].as_str()?.parse().ok()?,
        error: None,
    })
}

/// The activation page (QR code) or the acceptor page (approval number), by the login's stage.
pub async fn totp(State(portal): Shared, headers: HeaderMap) -> PageResult {
    let Some((_, session)) = portal.sessions.get(&headers) else {
        return Ok(see_other("/demo/login"));
    };
    let (Some(user), Some(pending)) = (&session.user, &session.pending) else {
        return Ok(see_other("/demo/login"));
    };
    let (seconds_left, countdown) = remaining(&portal, pending.expires_at);
    let user_id = user.user_id.to_uppercase();
    if pending.activation {
        // The SVG is inlined (no request for it); its XML prolog is not HTML.
        let svg = pending.qr_svg.as_deref().unwrap_or_default();
        let svg = svg.find("<svg").map_or(svg, |at| &svg[at..]);
        render(&ActivationPage {
            title: "Aktivasi TOTP".to_owned(),
            csrf: session.csrf.clone(),
            user_id,
            qr_svg: svg.to_owned(),
            seconds_left,
            countdown,
            error: pending.error.clone(),
        })
    } else {
        render(&AcceptorPage {
            title: "Acceptor TOTP".to_owned(),
            csrf: session.csrf.clone(),
            user_id,
            approval_number: pending.approval_number,
            seconds_left,
            countdown,
            error: pending.error.clone(),
        })
    }
}

/// The waiting pages' script asks here; this holds on the service's long-poll and says whether
/// the login is decided (then the script opens `/demo/totp/next`).
pub async fn wait(State(portal): Shared, headers: HeaderMap) -> Result<Response, PageError> {
    let Some((_, session)) = portal.sessions.get(&headers) else {
        return Ok(Json(json!({ "done": true })).into_response());
    };
    let Some(pending) = session.pending else {
        return Ok(Json(json!({ "done": true })).into_response());
    };
    let answer = portal
        .api
        .login_status(&pending.login_id, WAIT_SECONDS)
        .await?;
    let status = answer.str("status").unwrap_or("unknown");
    let done = !matches!(status, "awaiting_activation" | "awaiting_approval");
    Ok(Json(json!({ "done": done })).into_response())
}

/// Where a decided login leads: home when approved, a page saying why otherwise; back to the
/// waiting page while it still waits. Also the no-JavaScript "Lanjutkan" button's target.
pub async fn next(State(portal): Shared, headers: HeaderMap) -> PageResult {
    let Some((id, session)) = portal.sessions.get(&headers) else {
        return Ok(see_other("/demo/login"));
    };
    let Some(pending) = &session.pending else {
        return Ok(see_other(if session.signed_in.is_some() {
            "/demo/home"
        } else {
            "/demo/login"
        }));
    };
    let answer = portal.api.login_status(&pending.login_id, 0).await?;
    decided(&portal, &id, &answer)
}

/// The page for a login's status as the service answered it.
fn decided(portal: &Portal, id: &str, answer: &Answer) -> PageResult {
    let status = answer.str("status").unwrap_or_default();
    let (title, message) = match status {
        "approved" => {
            let login_id = answer.str("login_id").map(str::to_owned);
            portal.sessions.update(id, |s| {
                s.signed_in = login_id;
                s.pending = None;
            });
            return Ok(see_other("/demo/home"));
        }
        "awaiting_activation" | "awaiting_approval" => return Ok(see_other("/demo/totp")),
        "denied" => (
            "Login ditolak",
            "Permintaan login ini ditolak dari SPSE Authenticator.",
        ),
        "expired" => (
            "Waktu habis",
            "Waktu konfirmasi login sudah habis. Silakan login kembali.",
        ),
        "cancelled" => (
            "Login dibatalkan",
            "Permintaan login ini dibatalkan. Silakan login kembali.",
        ),
        _ => (
            "Login gagal",
            "Login tidak dapat diproses. Silakan login kembali.",
        ),
    };
    portal.sessions.update(id, |s| {
        s.pending = None;
        s.user = None;
    });
    render(&Outcome {
        title: title.to_owned(),
        class: "err",
        message: message.to_owned(),
        detail: None,
    })
}

fn locked_page(answer: &Answer) -> PageResult {
    let until = answer.body["error"]["locked_until"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map(|t| {
            format!(
                "Akun dapat digunakan kembali setelah {} UTC.",
                t.format("%d-%m-%Y %H:%M")
            )
        });
    let page = Outcome {
        title: "Akun terkunci".to_owned(),
        class: "err",
        message: "Akun Anda terkunci karena terlalu banyak percobaan yang gagal.".to_owned(),
        detail: until,
    };
    Ok(html_response(StatusCode::LOCKED, page.render()?))
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

/// A typed code: `POST /v1/logins/{id}/code`.
pub async fn code(
    State(portal): Shared,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> PageResult {
    let Some((id, session)) = checked(&portal, &headers, &form.csrf) else {
        return Ok(expired_form());
    };
    let Some(pending) = &session.pending else {
        return Ok(see_other("/demo/login"));
    };
    let answer = portal
        .api
        .submit_code(&pending.login_id, form.code.trim())
        .await?;
    if answer.is_success() {
        return decided(&portal, &id, &answer);
    }
    let error = match answer.error_code() {
        Some("account_locked") => return locked_page(&answer),
        Some("login_expired") | Some("enrollment_expired") => {
            let status = json!({ "status": "expired" });
            return decided(
                &portal,
                &id,
                &Answer {
                    status: answer.status,
                    body: status,
                },
            );
        }
        Some("login_not_pending") => {
            let status = json!({ "status": answer.body["error"]["status"] });
            return decided(
                &portal,
                &id,
                &Answer {
                    status: answer.status,
                    body: status,
                },
            );
        }
        Some("invalid_code_format") => "Kode TOTP terdiri dari 6 angka.".to_owned(),
        Some("invalid_code") => match answer.body["error"]["attempts_left"].as_u64() {
            Some(left) => format!("Kode TOTP salah. Sisa percobaan: {left}."),
            None => "Kode TOTP salah.".to_owned(),
        },
        _ => "Kode TOTP tidak dapat diproses.".to_owned(),
    };
    portal.sessions.update(&id, |s| {
        if let Some(p) = s.pending.as_mut() {
            p.error = Some(error);
        }
    });
    Ok(see_other("/demo/totp"))
}

pub async fn home(State(portal): Shared, headers: HeaderMap) -> PageResult {
    let Some((id, session)) = portal.sessions.get(&headers) else {
        return Ok(see_other("/demo/login"));
    };
    let (Some(user), Some(_)) = (&session.user, &session.signed_in) else {
        return Ok(see_other("/demo/login"));
    };
    portal.sessions.update(&id, |s| s.notice = None);
    render(&HomePage {
        title: "Beranda".to_owned(),
        csrf: session.csrf.clone(),
        name: user.name.clone(),
        user_id: user.user_id.to_uppercase(),
        user_type: user_type_label(&user.user_type).to_owned(),
        notice: session.notice.clone(),
        error: None,
    })
}

/// FAQ 4, "DISABLE TOTP": `POST /v1/accounts/{type}/{id}/disable` with this session's approved
/// login and a fresh code. The user is signed out; the next login activates again.
pub async fn disable(
    State(portal): Shared,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> PageResult {
    let Some((id, session)) = checked(&portal, &headers, &form.csrf) else {
        return Ok(expired_form());
    };
    let (Some(user), Some(login_id)) = (&session.user, &session.signed_in) else {
        return Ok(see_other("/demo/login"));
    };
    let answer = portal
        .api
        .disable(&user.user_type, &user.user_id, login_id, form.code.trim())
        .await?;
    if answer.is_success() {
        portal.sessions.update(&id, |s| {
            s.user = None;
            s.signed_in = None;
            s.notice = Some(
                "TOTP berhasil dinonaktifkan. Pada login berikutnya Anda akan diminta mengaktifkan TOTP kembali."
                    .to_owned(),
            );
        });
        return Ok(see_other("/demo/login"));
    }
    let error = match answer.error_code() {
        Some("account_locked") => return locked_page(&answer),
        Some("invalid_code") | Some("invalid_code_format") => "Kode TOTP salah.",
        Some("recent_login_required") => "Silakan login kembali sebelum menonaktifkan TOTP.",
        _ => "TOTP tidak dapat dinonaktifkan.",
    };
    let page = HomePage {
        title: "Beranda".to_owned(),
        csrf: session.csrf.clone(),
        name: user.name.clone(),
        user_id: user.user_id.to_uppercase(),
        user_type: user_type_label(&user.user_type).to_owned(),
        notice: None,
        error: Some(error.to_owned()),
    };
    Ok(html_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        page.render()?,
    ))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(
    State(portal): Shared,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    let Some((id, session)) = checked(&portal, &headers, &form.csrf) else {
        return Ok(expired_form());
    };
    if let Some(pending) = &session.pending {
        // Leaving a login undecided: tell the service, so the phone stops offering it.
        let _ = portal.api.cancel_login(&pending.login_id).await;
    }
    portal.sessions.remove(&id);
    Ok(see_other("/demo/login"))
}

async fn reset_page(
    portal: &Portal,
    session: &Session,
    form: Option<&ResetForm>,
    error: Option<String>,
) -> PageResult {
    let captcha = portal.api.captcha().await?;
    let page = ResetPage {
        title: "Reset TOTP".to_owned(),
        csrf: session.csrf.clone(),
        captcha_id: captcha.str("captcha_id").unwrap_or_default().to_owned(),
        captcha_png: captcha.str("image_png").unwrap_or_default().to_owned(),
        user_id: form.map(|f| f.user_id.clone()).unwrap_or_default(),
        email: form.map(|f| f.email.clone()).unwrap_or_default(),
        user_type: form.map_or_else(|| "penyedia".to_owned(), |f| f.user_type.clone()),
        error,
    };
    render(&page)
}

/// "Reset TOTP?": the form with a fresh captcha from `GET /v1/captcha`.
pub async fn reset_form(State(portal): Shared, headers: HeaderMap) -> PageResult {
    let (id, session, new) = portal.sessions.get_or_create(&headers);
    let page = reset_page(&portal, &session, None, None).await?;
    Ok(with_cookie(page, new.then_some(id.as_str())))
}

/// "Kirim": `POST /v1/resets`. The page says the same whether or not the account and email
/// match, as the service does.
pub async fn reset(
    State(portal): Shared,
    peer: Peer,
    headers: HeaderMap,
    Form(form): Form<ResetForm>,
) -> PageResult {
    let Some((_, session)) = checked(&portal, &headers, &form.csrf) else {
        return Ok(expired_form());
    };
    let answer = portal.api.request_reset(&form, client_ip(&peer)).await?;
    if answer.status == StatusCode::ACCEPTED {
        return render(&Outcome {
            title: "Permintaan reset TOTP terkirim".to_owned(),
            class: "ok",
            message: "Permintaan reset TOTP telah dikirim. Jika User ID dan email sesuai dengan data di LPSE, \
                      tautan reset akan dikirim ke email Anda dengan judul \"Konfirmasi Permintaan Reset TOTP\"."
                .to_owned(),
            detail: Some("Buka email tersebut dan klik tombol \"Reset TOTP\".".to_owned()),
        });
    }
    let error = match answer.error_code() {
        Some("captcha_invalid") => "Kode Keamanan salah atau sudah kedaluwarsa.",
        Some("invalid_request") => "Periksa kembali User ID, email dan Tipe User.",
        _ => "Permintaan reset tidak dapat diproses.",
    };
    reset_page(&portal, &session, Some(&form), Some(error.to_owned())).await
}

pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/portal.css"))
}

pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/wait.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
