//! The OpenAPI document served at `/openapi.json`, generated from the handlers' annotations so it
//! cannot drift from the code.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SPSE TOTP service",
        description = "Second factor for SPSE 4.5: TOTP activation by QR code, login approval from the phone or by typed code, disable. Every 4xx/5xx answer is `{\"error\": {\"code\", \"message\"}}`; `message` follows `Accept-Language` (Bahasa Indonesia by default, English with `en`, q-values honoured), `code` never changes with it.",
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
        // For operators and load balancers.
        routes::system::healthz,
        routes::system::readyz,
        routes::system::activez,
        routes::system::metrics,
        routes::system::openapi,
    ),
    modifiers(&Security, &CommonAnswers, &OptionalBodies),
    tags(
        (name = "logins", description = "The portal's side of a login (API key, role portal)"),
        (name = "device", description = "The phone's side (device token from activation)"),
        (name = "accounts", description = "Account state and self-service disable (API key, role portal)"),
        (name = "audit", description = "History, state as of an instant, export and verification (API key, role auditor); the helpdesk's audit search (role helpdesk, X-Operator). Every read is recorded with its purpose."),
        (name = "resets", description = "Self-service reset by emailed link: captcha and request (role portal), confirmation (the link's token)"),
        (name = "helpdesk", description = "Account lookup, reset and unlock (API key, role helpdesk, operator in X-Operator)"),
        (name = "system", description = "Liveness, readiness, the active instance, metrics and this document (no authentication)"),
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

/// The answers that do not come from one handler but from what every route shares: the
/// extractors (a body that is not JSON, a query or path that does not parse), authentication,
/// and the server's own bounds (time limit, long-poll cap, contention, internal faults). Added
/// here once, where a route's own annotation has not already described them, so each
/// operation lists every status it can answer.
struct CommonAnswers;

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

fn answers_of(path: &str, operation: &Operation) -> Vec<(&'static str, &'static str)> {
    let mut answers = Vec::new();
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let params = operation.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| params.iter().any(|p| p.parameter_in == place);
    if operation.request_body.is_some() || has(ParameterIn::Query) || has(ParameterIn::Header) {
        answers.push((
            "400",
            "The request does not fit: malformed_json, invalid_request (with field), invalid_query, invalid_code_format, purpose_required, operator_required",
        ));
    }
    if secured {
        answers.push((
            "401",
            "No valid credential: unauthorized, device_not_recognised",
        ));
        // A device token has no role; an API key of another role is refused.
        if !path.starts_with("/v1/device/") {
            answers.push(("403", "An API key of another role: forbidden"));
        }
    }
    if has(ParameterIn::Path) {
        answers.push((
            "404",
            "A path segment that cannot name anything here: not_found",
        ));
    }
    if operation.request_body.is_some() {
        answers.push((
            "413",
            "The body is larger than SPSE_TOTP_MAX_BODY_BYTES: payload_too_large",
        ));
        answers.push((
            "415",
            "A body without Content-Type application/json: unsupported_media_type",
        ));
    }
    answers.push(("500", "A fault on the server, logged there: internal"));
    answers.push((
        "503",
        "Try again after Retry-After: busy, request_timeout, too_many_long_polls, not_ready, \
         instance_unavailable",
    ));
    answers
}

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in answers_of(path, operation) {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description));
                }
            }
        }
    }
}

/// utoipa writes an optional body (`Option<T>`) as "`null` or T". On the wire an optional body is
/// left out, and a body of `null` is refused like any other body that is not a T (400), so the
/// document says what the server takes: no body, or a T.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::Required;
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let Some(body) = operation.request_body.as_mut() else {
                    continue;
                };
                if body.required == Some(Required::True) {
                    continue;
                }
                for content in body.content.values_mut() {
                    let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
                        continue;
                    };
                    let not_null: Vec<_> = one_of
                        .items
                        .iter()
                        .filter(|s| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::Type::Null)))
                        .cloned()
                        .collect();
                    if let [only] = not_null.as_slice() {
                        content.schema = Some(only.clone());
                    }
                }
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
