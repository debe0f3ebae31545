//! The browser's 3-D Secure page and the test-only controls (`/_sim/`): disputes, and what
//! the simulator holds.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{approve, decline, Answer};
use super::events::{self, event};
use super::objects::{new_id, now_unix_s, Dispute, PaymentError};
use super::Shared;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Html("<h1>No such payment</h1>")).into_response()
}

/// `GET /3ds/{id}`: the issuer's challenge, with a button to complete and one to fail it.
pub async fn challenge_page(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let objects = shared.objects();
    let Some(intent) = objects.intents.get(&id) else {
        return not_found();
    };
    if intent.status != "requires_action" {
        let text = format!("<h1>This payment is {}</h1>", escape(intent.status));
        return (StatusCode::OK, Html(text)).into_response();
    }
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>3D Secure 2 Test Page</title></head>
<body><h1>3D Secure 2 Test Page</h1>
<p>Authenticate a payment of {amount} {currency} (minor units) for {id}.</p>
<form method="post" action="/3ds/{id}">
<button type="submit" id="complete" name="result" value="complete">Complete authentication</button>
<button type="submit" id="fail" name="result" value="fail">Fail authentication</button>
</form></body></html>"#,
        amount = intent.amount,
        currency = escape(&intent.currency.to_ascii_uppercase()),
        id = escape(&intent.id),
    );
    Html(page).into_response()
}

#[derive(Deserialize)]
pub struct ChallengeAnswer {
    #[serde(default)]
    result: String,
}

/// `POST /3ds/{id}`: `result=complete` approves, anything else fails the authentication;
/// then back to the `return_url`, with the query Stripe adds.
pub async fn answer_challenge(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<ChallengeAnswer>,
) -> Response {
    let base_url = shared.base_url.clone();
    let (location, events) = {
        let mut objects = shared.objects();
        let Some(intent) = objects.intents.get_mut(&id) else {
            return not_found();
        };
        if intent.status != "requires_action" {
            return (StatusCode::CONFLICT, Html("<h1>Already answered</h1>")).into_response();
        }
        let (events, redirect_status) = if form.result == "complete" {
            (approve(intent, &base_url), "succeeded")
        } else {
            let error = PaymentError {
                code: "payment_intent_authentication_failure",
                decline_code: None,
            };
            (decline(intent, error, &base_url).events, "failed")
        };
        let return_url = intent.return_url.clone().unwrap_or_default();
        let separator = if return_url.contains('?') { '&' } else { '?' };
        let location = format!(
            "{return_url}{separator}payment_intent={}&payment_intent_client_secret={}&redirect_status={redirect_status}",
            intent.id,
            intent.client_secret()
        );
        (location, events)
    };
    events::send(&shared, events);
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

#[derive(Deserialize)]
pub struct IntentQuery {
    kassa_payment_id: Option<String>,
}

/// `GET /_sim/payment_intents[?kassa_payment_id=…]`: the intents held, as a list object.
pub async fn list_intents(
    State(shared): State<Shared>,
    Query(query): Query<IntentQuery>,
) -> Json<Value> {
    let objects = shared.objects();
    let data: Vec<Value> = objects
        .intents
        .values()
        .filter(|intent| match &query.kassa_payment_id {
            Some(id) => intent.metadata.get("kassa_payment_id") == Some(id),
            None => true,
        })
        .map(|intent| intent.to_json(&shared.base_url))
        .collect();
    Json(json!({"object": "list", "data": data, "has_more": false}))
}

fn answer(answer: Answer) -> Response {
    (answer.status, Json(answer.body)).into_response()
}

/// `POST /_sim/payment_intents/{id}/dispute`: the cardholder disputes a captured payment
/// (`charge.dispute.created`).
pub async fn open_dispute(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let created = {
        let mut objects = shared.objects();
        let Some(intent) = objects.intents.get(&id) else {
            return answer(Answer::missing("payment_intent", &id));
        };
        if intent.status != "succeeded" {
            return answer(Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "only a succeeded payment can be disputed",
            ));
        }
        let dispute = Dispute {
            id: new_id("dp"),
            payment_intent: intent.id.clone(),
            charge: intent.latest_charge.clone(),
            amount: intent.amount,
            currency: intent.currency.clone(),
            status: "needs_response",
            created: now_unix_s(),
        };
        let body = dispute.to_json();
        objects.disputes.insert(dispute.id.clone(), dispute);
        body
    };
    events::send(
        &shared,
        vec![event("charge.dispute.created", created.clone())],
    );
    Json(created).into_response()
}

#[derive(Deserialize)]
pub struct CloseDispute {
    /// `won` or `lost`.
    status: String,
}

/// `POST /_sim/disputes/{id}/close` with `status=won|lost` (`charge.dispute.closed`).
pub async fn close_dispute(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<CloseDispute>,
) -> Response {
    let status = match form.status.as_str() {
        "won" => "won",
        "lost" => "lost",
        _ => {
            return answer(Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "status is won or lost",
            ))
        }
    };
    let closed = {
        let mut objects = shared.objects();
        let Some(dispute) = objects.disputes.get_mut(&id) else {
            return answer(Answer::missing("dispute", &id));
        };
        if matches!(dispute.status, "won" | "lost") {
            return answer(Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "the dispute is closed",
            ));
        }
        dispute.status = status;
        dispute.to_json()
    };
    events::send(
        &shared,
        vec![event("charge.dispute.closed", closed.clone())],
    );
    Json(closed).into_response()
}
