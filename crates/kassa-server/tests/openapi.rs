//! The OpenAPI document states every answer a client can get and the limits the handlers
//! check (issue #21): schemathesis relies on it, so a gap is a defect. The document does not
//! depend on the database, so one backend serves.

mod common;

use kassa_store::testing::TestBackend;
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_states_every_layer_answer_and_limit() {
    let app = common::spawn(TestBackend::Sqlite).await.unwrap();
    let answer = app
        .send(Method::GET, "/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let document = answer.body;
    let mut gaps = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            gaps.extend(operation_gaps(&format!("{method} {path}"), operation));
        }
    }
    let schemas = &document["components"]["schemas"];
    let length = |schema: &str, field: &str| {
        let property = &schemas[schema]["properties"][field];
        (
            property["minLength"].as_u64(),
            property["maxLength"].as_u64(),
        )
    };
    if length("MerchantInput", "name") != (Some(1), Some(200)) {
        gaps.push("MerchantInput.name: no length limits".into());
    }
    if length("ReviewInput", "reason") != (Some(1), Some(500)) {
        gaps.push("ReviewInput.reason: no length limits".into());
    }
    // A provider event for a payment not (yet) found is answered 503, so the provider
    // retries (ADR 34).
    for webhook in ["/v1/payments/webhook", "/v1/providers/{provider}/webhook"] {
        if document["paths"][webhook]["post"]["responses"]["503"].is_null() {
            gaps.push(format!(
                "POST {webhook}: no 503 (payment_not_found, retryable)"
            ));
        }
    }
    let create_merchant = document["paths"]["/v1/admin/merchants"]["post"].to_string();
    if create_merchant.contains("role `admin`") {
        gaps.push("POST /v1/admin/merchants: says its key has role admin".into());
    }
    assert!(gaps.is_empty(), "{gaps:#?}");
    app.stop().await;
}

/// What an operation's entry leaves out of what the layers answer or the handlers check.
fn operation_gaps(name: &str, operation: &Value) -> Vec<String> {
    let mut gaps = Vec::new();
    let responses = operation["responses"].as_object().unwrap();
    let secured = operation["security"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    let mut needed: Vec<&str> = Vec::new();
    if secured {
        needed.extend(["401", "403", "429"]);
    }
    if operation["requestBody"].is_object() {
        needed.extend(["400", "413", "415", "422"]);
    }
    for status in needed {
        if !responses.contains_key(status) {
            gaps.push(format!("{name}: no {status}"));
        }
    }
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let (at, field) = (
            parameter["in"].as_str().unwrap(),
            parameter["name"].as_str().unwrap(),
        );
        // A query parameter documented as a path parameter sends clients to a URL that
        // does not exist.
        if at == "path" && !name.contains(&format!("{{{field}}}")) {
            gaps.push(format!("{name}: path parameter {field} is not in the path"));
        }
        let schema = &parameter["schema"];
        let constrained = match (at, field) {
            ("path", id) if id.ends_with("_id") => schema["pattern"].is_string(),
            ("header", "Idempotency-Key") => schema["pattern"].is_string(),
            ("query", "limit") => schema["minimum"] == 1 && schema["maximum"].is_u64(),
            _ => true,
        };
        if !constrained {
            gaps.push(format!("{name}: {at} parameter {field} has no limit"));
        }
    }
    gaps
}
