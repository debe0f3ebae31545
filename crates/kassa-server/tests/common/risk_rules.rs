//! Rule sets stored through `PUT /v1/admin/risk/rules` and decisions read back: the
//! helpers of the risk tests.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::TestApp;

/// Sends `method` `path` with the admin key.
pub async fn admin(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> super::Answer {
    app.as_admin(method, path, body).await
}

/// Stores `rules` as the rule set of `scope` (a query string, may be empty), based on the
/// newest version; returns the stored view.
pub async fn set_rules(app: &TestApp, scope: &str, rules: Value) -> Value {
    let path = format!("/v1/admin/risk/rules{scope}");
    let current = admin(app, Method::GET, &path, None).await;
    assert_eq!(current.status, StatusCode::OK, "{}", current.body);
    let change = json!({
        "rules": rules,
        "based_on_version": current.body["version"],
        "note": "test",
    });
    let stored = admin(app, Method::PUT, &path, Some(change)).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    stored.body
}

/// Thresholds no test score reaches: every decision approves.
pub fn never() -> Value {
    json!({"review": 100000, "step_up": 100000, "decline": 100000})
}

pub fn rule(id: &str, when: Value, score: i32) -> Value {
    json!({"id": id, "description": format!("{id} fired"), "when": when, "score": score})
}

pub fn gte(feature: &str, value: i64) -> Value {
    json!({"gte": {"feature": feature, "value": value}})
}

/// The ids of the rules that fired.
pub fn fired(risk: &Value) -> Vec<String> {
    risk["fired"]
        .as_array()
        .unwrap_or_else(|| panic!("no fired rules in {risk}"))
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

/// What rule `id` read of feature `feature`.
pub fn read<'a>(risk: &'a Value, id: &str, feature: &str) -> &'a Value {
    let rule = risk["fired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == id)
        .unwrap_or_else(|| panic!("{id} did not fire: {risk}"));
    &rule["read"][feature]
}
