//! The served OpenAPI document is exact where clients rely on it (issue 13, section 6): every
//! operation lists the answers every route can give, `code` is six digits, user types and
//! statuses are enums, and the operator routes are described too. Schemathesis (`.ci/schemathesis`)
//! checks the running server against it; this test holds the document's own shape.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use spse_totp_tests::TestServer;

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    }
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_openapi_document_lists_every_answer_and_exact_values() {
    let server = TestServer::start().await;
    let (status, doc) = server.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/healthz",
        "/readyz",
        "/activez",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths[route]["get"].is_object(), "{route} is described");
    }
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let answers = operation["responses"].as_object().unwrap();
            for status in ["500", "503"] {
                assert!(
                    answers.contains_key(status),
                    "{method} {path} lists {status}"
                );
            }
            if operation.get("security").is_some() {
                assert!(answers.contains_key("401"), "{method} {path} lists 401");
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        answers.contains_key(status),
                        "{method} {path} lists {status}"
                    );
                }
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    for body in [
        "CodeRequest",
        "ApproveRequest",
        "ActivationRequest",
        "DisableRequest",
    ] {
        assert_eq!(
            schemas[body]["properties"]["code"]["pattern"], "^[0-9]{6}$",
            "{body}"
        );
    }
    let user_type = resolve(
        &doc,
        &schemas["StartLoginRequest"]["properties"]["user_type"],
    );
    assert_eq!(strings(&user_type["enum"]), ["penyedia", "non_penyedia"]);
    let status = resolve(&doc, &schemas["LoginView"]["properties"]["status"]);
    assert_eq!(
        strings(&status["enum"]),
        [
            "awaiting_activation",
            "awaiting_approval",
            "approved",
            "denied",
            "expired",
            "cancelled"
        ]
    );
    let totp = resolve(&doc, &schemas["AccountRef"]["properties"]["totp_status"]);
    assert_eq!(strings(&totp["enum"]), ["inactive", "active", "disabled"]);
    let path_type = doc["paths"]["/v1/accounts/{user_type}/{user_id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "user_type")
        .unwrap();
    assert_eq!(
        strings(&resolve(&doc, &path_type["schema"])["enum"]),
        ["penyedia", "non_penyedia"]
    );
    // A console operator's device is answered as the `operator` type: the device answers say so.
    let owner = resolve(
        &doc,
        &schemas["ActivationResponse"]["properties"]["account"],
    );
    let pending = &schemas["PendingLogins"]["properties"]["user_type"];
    for owner_type in [&owner["properties"]["user_type"], pending] {
        assert_eq!(
            strings(&resolve(&doc, owner_type)["enum"]),
            ["penyedia", "non_penyedia", "operator"]
        );
    }
}
