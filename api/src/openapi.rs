//! The OpenAPI document served at `/openapi.json`, generated from the handlers' annotations so it
//! cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SPSE TOTP service",
        description = "Second factor for SPSE 4.5: TOTP activation by QR code, login approval from the phone or by typed code, disable. Every 4xx/5xx answer is `{\"error\": {\"code\", \"message\"}}`.",
    ),
    paths(
        routes::logins::start,
        routes::logins::status,
        routes::logins::submit_code,
        routes::logins::cancel,
        routes::device::activate,
        routes::device::pending,
        routes::device::approve,
        routes::device::deny,
        routes::accounts::get,
        routes::accounts::disable,
        routes::audit::history,
        routes::audit::state_as_of,
        routes::audit::export,
        routes::audit::verify,
        routes::audit::search,
        routes::audit_feed::feed,
        // Reset and recovery (issue 3).
        routes::captcha::issue,
        routes::resets::request,
        routes::resets::confirm,
        routes::reset_page::page,
        routes::helpdesk::get,
        routes::helpdesk::reset,
        routes::helpdesk::unlock,
    ),
    modifiers(&Security),
    tags(
        (name = "logins", description = "The portal's side of a login (API key, role portal)"),
        (name = "device", description = "The phone's side (device token from activation)"),
        (name = "accounts", description = "Account state and self-service disable (API key, role portal)"),
        (name = "audit", description = "History, state as of an instant, export and verification (API key, role auditor); the helpdesk's audit search (role helpdesk, X-Operator). Every read is recorded with its purpose."),
        (name = "resets", description = "Self-service reset by emailed link: captcha and request (role portal), confirmation (the link's token)"),
        (name = "helpdesk", description = "Account lookup, reset and unlock (API key, role helpdesk, operator in X-Operator)"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `spse-totp apikey create`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "device_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The device_token returned by POST /v1/device/activations",
                    ))
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
