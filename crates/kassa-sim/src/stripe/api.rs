//! The `/v1/` API: bearer authentication, form bodies in bracket notation, idempotent POSTs,
//! and the PaymentIntent, refund and payout endpoints.

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::cards::{self, CardOutcome};
use super::events::event;
use super::objects::{
    new_id, now_unix_s, Intent, Metadata, Objects, PaymentError, Payout, Refund, SavedAnswer,
};
use super::Shared;

/// Largest request body read; Stripe's own limit is far above any real form here.
const BODY_LEN_MAX: usize = 1024 * 1024;
/// Stripe's answer to a request without a key.
const NO_API_KEY: &str = "You did not provide an API key. You need to provide your API key in \
    the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').";
/// Stripe's answer to confirming an intent that has no payment method.
const NO_PAYMENT_METHOD: &str =
    "You cannot confirm this PaymentIntent because it's missing a payment method.";

/// What one API call came to: the answer, the events it causes, and how long the answer is
/// held back (the time-out test card).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub events: Vec<Value>,
    pub hold: Option<Duration>,
}

impl Answer {
    pub fn ok(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body,
            events: Vec::new(),
            hold: None,
        }
    }

    pub fn with_events(mut self, events: Vec<Value>) -> Answer {
        self.events = events;
        self
    }

    /// Stripe's error object.
    pub fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Answer {
        Answer {
            status,
            body: json!({"error": {"type": kind, "code": code, "message": message}}),
            events: Vec::new(),
            hold: None,
        }
    }

    /// `resource_missing` for an id the simulator does not hold.
    pub fn missing(kind: &str, id: &str) -> Answer {
        let message = format!("No such {kind}: '{id}'");
        Answer::error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &message,
        )
    }

    fn invalid(message: &str) -> Answer {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        )
    }

    fn unexpected_state(message: &str) -> Answer {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("payment_intent_unexpected_state"),
            message,
        )
    }

    fn into_response(self, replayed: bool) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            "request-id",
            HeaderValue::from_str(&new_id("req")).expect("ids are ASCII"),
        );
        if replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

/// A form body, in order, with bracket-notation names kept whole.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(body: &[u8]) -> Params {
        Params(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `metadata[key]=value` pairs.
    pub fn metadata(&self) -> Metadata {
        self.0
            .iter()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix("metadata[")?.strip_suffix(']')?;
                Some((key.to_string(), value.clone()))
            })
            .collect()
    }

    /// A strictly positive integer amount in the currency's smallest unit.
    fn amount(&self, name: &str) -> Result<Option<i64>, Answer> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => match text.parse::<i64>() {
                Ok(amount) if amount > 0 => Ok(Some(amount)),
                _ => Err(Answer::invalid(&format!("Invalid integer: {text}"))),
            },
        }
    }

    /// The required `amount` and `currency` of a new intent or payout.
    fn amount_and_currency(&self) -> Result<(i64, String), Answer> {
        let amount = self
            .amount("amount")?
            .ok_or_else(|| Answer::invalid("Missing required param: amount."))?;
        Ok((amount, self.currency()?))
    }

    fn currency(&self) -> Result<String, Answer> {
        match self.get("currency") {
            Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Ok(code.to_ascii_lowercase())
            }
            Some(code) => Err(Answer::invalid(&format!("Invalid currency: {code}"))),
            None => Err(Answer::invalid("Missing required param: currency.")),
        }
    }

    /// The payment method: an id, or a raw card number in `payment_method_data`.
    fn payment_method(&self) -> Option<&str> {
        self.get("payment_method")
            .or_else(|| self.get("payment_method_data[card][number]"))
    }
}

/// The key of `Authorization: Bearer <key>`, or of Basic auth with the key as user name and
/// no password (`curl -u sk_test_…:`), both of which Stripe takes.
fn api_key(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    if let Some(key) = value.strip_prefix("Bearer ") {
        return Some(key.to_string());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(user, _)| user.to_string())
}

/// Checks the key against the configured one, or any `sk_test_…`.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(), Answer> {
    let Some(key) = api_key(headers) else {
        return Err(Answer::error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            NO_API_KEY,
        ));
    };
    let accepted = match &shared.config.secret_key {
        Some(configured) => &key == configured,
        None => key.starts_with("sk_test_") && key.len() > "sk_test_".len(),
    };
    if !accepted {
        // Stripe shows only the key's last four characters.
        let tail: String = key
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Answer::error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("api_key_invalid"),
            &format!("Invalid API Key provided: ********{tail}"),
        ));
    }
    Ok(())
}

/// Authenticates, then runs `work` once per `Idempotency-Key`: a repeat with the same
/// method, path and body gets the saved first answer (`Idempotent-Replayed: true`), a repeat
/// with others `idempotency_error`. Like Stripe, answers refusing the request itself (400,
/// 401, 404) are not saved. `work` runs under the objects lock, so two requests with one key
/// cannot both act.
pub async fn call(
    shared: &Shared,
    request: Request,
    work: impl FnOnce(&mut Objects, &Params) -> Answer,
) -> Response {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (&parts.method, &parts.uri, &parts.headers);
    if let Err(refusal) = authenticate(shared, headers) {
        return refusal.into_response(false);
    }
    let Ok(body) = axum::body::to_bytes(body, BODY_LEN_MAX).await else {
        return Answer::invalid("The request body is too large.").into_response(false);
    };
    let body = body.as_ref();
    let params = Params::parse(body);
    let key = match *method {
        Method::POST => headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
        _ => None,
    };
    let fingerprint = format!("{method} {} {}", uri.path(), String::from_utf8_lossy(body));
    let answer = {
        let mut objects = shared.objects();
        if let Some(saved) = key.as_ref().and_then(|key| objects.idempotency.get(key)) {
            if saved.fingerprint != fingerprint {
                let key = key.as_deref().unwrap_or_default();
                let message = format!(
                    "Keys for idempotent requests can only be used with the same parameters \
                     they were first used with. Try using a key other than '{key}' if you \
                     meant to execute a different request."
                );
                return Answer::error(StatusCode::BAD_REQUEST, "idempotency_error", None, &message)
                    .into_response(false);
            }
            let replay = Answer {
                status: StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK),
                body: saved.body.clone(),
                events: Vec::new(),
                hold: None,
            };
            return replay.into_response(true);
        }
        let answer = work(&mut objects, &params);
        let refused = matches!(answer.status.as_u16(), 400 | 401 | 404);
        if let (Some(key), false) = (key, refused) {
            let saved = SavedAnswer {
                fingerprint,
                status: answer.status.as_u16(),
                body: answer.body.clone(),
            };
            objects.idempotency.insert(key, saved);
        }
        answer
    };
    super::events::send(shared, answer.events.clone());
    if let Some(hold) = answer.hold {
        tokio::time::sleep(hold).await;
    }
    answer.into_response(false)
}

/// `POST /v1/payment_intents`, confirmed at once with `confirm=true`.
pub async fn create_intent(State(shared): State<Shared>, request: Request) -> Response {
    let base_url = shared.base_url.clone();
    let slow = Duration::from_millis(shared.config.slow_answer_ms);
    call(&shared, request, |objects, params| {
        let (amount, currency) = match params.amount_and_currency() {
            Ok(both) => both,
            Err(refusal) => return refusal,
        };
        let mut intent = Intent {
            id: new_id("pi"),
            amount,
            currency,
            status: "requires_payment_method",
            capture_method: params
                .get("capture_method")
                .unwrap_or("automatic")
                .to_string(),
            payment_method: None,
            return_url: params.get("return_url").map(str::to_string),
            metadata: params.metadata(),
            created: now_unix_s(),
            last_payment_error: None,
            latest_charge: None,
            cancellation_reason: None,
            refunds: Vec::new(),
            card: None,
        };
        let confirm = params.get("confirm") == Some("true");
        let answer = match params.payment_method() {
            Some(method) if confirm => confirm_with(&mut intent, method, &base_url, slow),
            Some(method) => match cards::outcome(method) {
                Some(_) => {
                    intent.payment_method = Some(method.to_string());
                    intent.status = "requires_confirmation";
                    Answer::ok(intent.to_json(&base_url))
                }
                None => no_such_payment_method(method),
            },
            None if confirm => return Answer::unexpected_state(NO_PAYMENT_METHOD),
            None => Answer::ok(intent.to_json(&base_url)),
        };
        if answer.status.is_server_error() || answer.status == StatusCode::BAD_REQUEST {
            return answer; // nothing was created
        }
        let created = event("payment_intent.created", intent.to_json(&base_url));
        let mut answer = answer;
        answer.events.insert(0, created);
        objects.intents.insert(intent.id.clone(), intent);
        answer
    })
    .await
}

fn no_such_payment_method(method: &str) -> Answer {
    let mut answer = Answer::error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such PaymentMethod: '{method}'"),
    );
    answer.body["error"]["param"] = json!("payment_method");
    answer
}

/// Confirms `intent` with a payment method: approve, decline (402), challenge or fail.
fn confirm_with(intent: &mut Intent, method: &str, base_url: &str, slow: Duration) -> Answer {
    let Some(outcome) = cards::outcome(method) else {
        return no_such_payment_method(method);
    };
    intent.card = cards::facts(method);
    // A raw card number becomes a payment method of its own; the number is never echoed.
    intent.payment_method = Some(match method.starts_with("pm_") {
        true => method.to_string(),
        false => new_id("pm"),
    });
    match outcome {
        CardOutcome::Approve | CardOutcome::SlowApprove => {
            let events = approve(intent, base_url);
            let mut answer = Answer::ok(intent.to_json(base_url)).with_events(events);
            if outcome == CardOutcome::SlowApprove {
                answer.hold = Some(slow);
            }
            answer
        }
        CardOutcome::Decline { code, decline_code } => {
            let error = PaymentError { code, decline_code };
            decline(intent, error, base_url)
        }
        CardOutcome::Challenge => {
            if intent.return_url.is_none() {
                return Answer::invalid(
                    "This PaymentIntent requires a return_url to be confirmed with a card that \
                     requires authentication.",
                );
            }
            intent.status = "requires_action";
            let body = intent.to_json(base_url);
            let events = vec![event("payment_intent.requires_action", body.clone())];
            Answer::ok(body).with_events(events)
        }
        CardOutcome::ServerError => Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "An unknown error occurred",
        ),
    }
}

/// Approves: captured (`succeeded`) unless capture is manual (`requires_capture`).
pub fn approve(intent: &mut Intent, base_url: &str) -> Vec<Value> {
    let charge = new_id("ch");
    intent.latest_charge = Some(charge);
    intent.last_payment_error = None;
    if intent.capture_method == "manual" {
        intent.status = "requires_capture";
        return vec![event(
            "payment_intent.amount_capturable_updated",
            intent.to_json(base_url),
        )];
    }
    intent.status = "succeeded";
    let body = intent.to_json(base_url);
    // `charge.succeeded` comes first, as at Stripe; Kassa takes the card that paid from it.
    let charge = json!({
        "id": intent.latest_charge, "object": "charge", "amount": intent.amount,
        "currency": intent.currency, "payment_intent": intent.id,
        "metadata": intent.metadata, "status": "succeeded", "captured": true,
        "payment_method_details": intent.payment_method_details(),
    });
    vec![
        event("charge.succeeded", charge),
        event("payment_intent.succeeded", body),
    ]
}

/// Declines: the intent wants another payment method; the answer is a 402 card error
/// carrying it.
pub fn decline(intent: &mut Intent, error: PaymentError, base_url: &str) -> Answer {
    intent.status = "requires_payment_method";
    intent.latest_charge = Some(new_id("ch"));
    let mut error_json = error.to_json();
    intent.last_payment_error = Some(error);
    let body = intent.to_json(base_url);
    error_json["payment_intent"] = body.clone();
    error_json["charge"] = json!(intent.latest_charge);
    Answer {
        status: StatusCode::PAYMENT_REQUIRED,
        body: json!({ "error": error_json }),
        events: vec![event("payment_intent.payment_failed", body)],
        hold: None,
    }
}

/// `GET /v1/payment_intents/{id}`.
pub async fn get_intent(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let base_url = shared.base_url.clone();
    call(&shared, request, |objects, _| {
        match objects.intents.get(&id) {
            Some(intent) => Answer::ok(intent.to_json(&base_url)),
            None => Answer::missing("payment_intent", &id),
        }
    })
    .await
}

/// `POST /v1/payment_intents/{id}/confirm|capture|cancel`.
pub async fn act_on_intent(
    State(shared): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    request: Request,
) -> Response {
    let base_url = shared.base_url.clone();
    let slow = Duration::from_millis(shared.config.slow_answer_ms);
    let path = request.uri().path().to_string();
    call(&shared, request, |objects, params| {
        let Some(intent) = objects.intents.get_mut(&id) else {
            return Answer::missing("payment_intent", &id);
        };
        let status = intent.status;
        match action.as_str() {
            "confirm" => {
                if !matches!(status, "requires_payment_method" | "requires_confirmation") {
                    return Answer::unexpected_state(&format!(
                        "You cannot confirm this PaymentIntent because it has a status of {status}."
                    ));
                }
                if let Some(url) = params.get("return_url") {
                    intent.return_url = Some(url.to_string());
                }
                let method = params
                    .payment_method()
                    .map(str::to_string)
                    .or_else(|| intent.payment_method.clone());
                match method {
                    Some(method) => confirm_with(intent, &method, &base_url, slow),
                    None => Answer::unexpected_state(NO_PAYMENT_METHOD),
                }
            }
            "capture" => {
                if status != "requires_capture" {
                    return Answer::unexpected_state(&format!(
                        "This PaymentIntent could not be captured because it has a status of \
                         {status}."
                    ));
                }
                intent.status = "succeeded";
                let body = intent.to_json(&base_url);
                Answer::ok(body.clone()).with_events(vec![event("payment_intent.succeeded", body)])
            }
            "cancel" => {
                if matches!(status, "succeeded" | "canceled") {
                    return Answer::unexpected_state(&format!(
                        "You cannot cancel this PaymentIntent because it has a status of \
                         {status}. Only a PaymentIntent with one of the following statuses may \
                         be canceled: requires_payment_method, requires_capture, \
                         requires_confirmation, requires_action, processing."
                    ));
                }
                intent.status = "canceled";
                intent.cancellation_reason = params.get("cancellation_reason").map(str::to_string);
                let body = intent.to_json(&base_url);
                Answer::ok(body.clone()).with_events(vec![event("payment_intent.canceled", body)])
            }
            _ => unknown(&method_path("POST", &path)),
        }
    })
    .await
}

/// `POST /v1/refunds` of a captured intent, `amount` defaulting to what is left.
pub async fn create_refund(State(shared): State<Shared>, request: Request) -> Response {
    call(&shared, request, |objects, params| {
        let Some(intent_id) = params.get("payment_intent") else {
            return Answer::invalid(
                "One of the following params should be provided for this request: \
                 payment_intent or charge.",
            );
        };
        let Some(intent) = objects.intents.get(intent_id).cloned() else {
            return Answer::missing("payment_intent", intent_id);
        };
        if intent.status != "succeeded" {
            return Answer::invalid(&format!(
                "This PaymentIntent ({intent_id}) does not have a successful charge to refund."
            ));
        }
        let left = objects.refundable(&intent);
        let amount = match params.amount("amount") {
            Ok(amount) => amount.unwrap_or(left),
            Err(refusal) => return refusal,
        };
        if left == 0 {
            let charge = intent.latest_charge.clone().unwrap_or_default();
            return Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("charge_already_refunded"),
                &format!("Charge {charge} has already been refunded."),
            );
        }
        if amount > left {
            return Answer::invalid(&format!(
                "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
            ));
        }
        let refund = Refund {
            id: new_id("re"),
            amount,
            currency: intent.currency.clone(),
            payment_intent: intent.id.clone(),
            charge: intent.latest_charge.clone(),
            metadata: params.metadata(),
            created: now_unix_s(),
        };
        let answer = refund.to_json();
        let refund_id = refund.id.clone();
        objects.refunds.insert(refund_id.clone(), refund);
        let intent = objects.intents.get_mut(intent_id).expect("looked up above");
        intent.refunds.push(refund_id);
        let intent = intent.clone();
        let charge = objects.charge_json(&intent);
        Answer::ok(answer.clone()).with_events(vec![
            event("charge.refunded", charge),
            event("refund.created", answer),
        ])
    })
    .await
}

/// Destination of a payout that fails (`payout.failed`, `account_closed`), after Stripe's
/// failing test bank account.
pub const FAILING_PAYOUT_DESTINATION: &str = "ba_kassa_account_closed";

/// `POST /v1/payouts`: answered `pending`; `payout.paid` (or `payout.failed`) follows.
pub async fn create_payout(State(shared): State<Shared>, request: Request) -> Response {
    call(&shared, request, |objects, params| {
        let (amount, currency) = match params.amount_and_currency() {
            Ok(both) => both,
            Err(refusal) => return refusal,
        };
        let destination = params.get("destination").map(str::to_string);
        let mut payout = Payout {
            id: new_id("po"),
            amount,
            currency,
            destination,
            metadata: params.metadata(),
            status: "pending",
            failure_code: None,
            created: now_unix_s(),
        };
        let answer = payout.to_json();
        let fails = payout.destination.as_deref() == Some(FAILING_PAYOUT_DESTINATION);
        (payout.status, payout.failure_code) = match fails {
            true => ("failed", Some("account_closed")),
            false => ("paid", None),
        };
        let kind = if fails {
            "payout.failed"
        } else {
            "payout.paid"
        };
        let events = vec![event(kind, payout.to_json())];
        objects.payouts.insert(payout.id.clone(), payout);
        Answer::ok(answer).with_events(events)
    })
    .await
}

/// `GET /v1/payouts/{id}`.
pub async fn get_payout(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    call(&shared, request, |objects, _| {
        match objects.payouts.get(&id) {
            Some(payout) => Answer::ok(payout.to_json()),
            None => Answer::missing("payout", &id),
        }
    })
    .await
}

fn method_path(method: &str, path: &str) -> String {
    format!("{method} {path}")
}

fn unknown(route: &str) -> Answer {
    Answer::error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL ({route})."),
    )
}

/// Any other route: Stripe's 404 error object.
pub async fn unknown_route(method: Method, uri: Uri) -> Response {
    unknown(&method_path(method.as_str(), uri.path())).into_response(false)
}
