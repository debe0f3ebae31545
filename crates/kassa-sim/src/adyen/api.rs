//! The API Kassa's connector calls, with Adyen's paths, bodies, result codes and errors.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::cards::{self, Verdict};
use super::notifications::{self, Item};
use super::{Payment, Shared};

/// Adyen's service exception, answered as `{status, errorCode, message, errorType}`.
pub struct ServiceError {
    status: StatusCode,
    code: &'static str,
    message: String,
    kind: &'static str,
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let body = json!({
            "status": self.status.as_u16(), "errorCode": self.code, "message": self.message,
            "errorType": self.kind
        });
        (self.status, Json(body)).into_response()
    }
}

/// Adyen's service exception as an answer.
pub fn error(
    status: StatusCode,
    code: &'static str,
    message: &str,
    kind: &'static str,
) -> Response {
    ServiceError {
        status,
        code,
        message: message.to_string(),
        kind,
    }
    .into_response()
}

fn required(field: &str) -> ServiceError {
    ServiceError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "130",
        message: format!("Required field '{field}' is not provided."),
        kind: "validation",
    }
}

/// Every API call needs a non-empty `X-API-Key` (the configured one, when one is).
pub async fn require_api_key(
    State(shared): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let allowed = match &shared.config.api_key {
        Some(key) => !given.is_empty() && given == key,
        None => !given.is_empty(),
    };
    if !allowed {
        return error(
            StatusCode::UNAUTHORIZED,
            "000",
            "HTTP Status Response - Unauthorized",
            "security",
        );
    }
    next.run(request).await
}

/// The JSON body, or Adyen's answer to one that is not JSON.
fn body_of(raw: &Bytes) -> Result<Value, ServiceError> {
    serde_json::from_slice::<Value>(raw)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| ServiceError {
            status: StatusCode::BAD_REQUEST,
            code: "702",
            message: "Unable to parse the request body as a JSON object.".into(),
            kind: "validation",
        })
}

fn text<'a>(body: &'a Value, field: &str) -> Result<&'a str, ServiceError> {
    body[field]
        .as_str()
        .filter(|value| !value.is_empty())
        .ok_or_else(|| required(field))
}

fn amount_of(body: &Value) -> Result<(i64, String), ServiceError> {
    let value = body["amount"]["value"].as_i64().filter(|value| *value >= 0);
    let currency = body["amount"]["currency"]
        .as_str()
        .filter(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()));
    match (value, currency) {
        (Some(value), Some(currency)) => Ok((value, currency.to_string())),
        _ => Err(required("amount")),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
        .map(str::to_string)
}

/// The first answer to this key, if it came before: Adyen answers a replay, never acts twice.
fn replayed(shared: &Shared, key: Option<&String>) -> Option<Response> {
    let store = shared.store();
    let (status, body) = store.answers.get(key?)?.clone();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Some((status, Json(body)).into_response())
}

fn remember(shared: &Shared, key: Option<String>, status: StatusCode, body: &Value) {
    if let Some(key) = key {
        shared
            .store()
            .answers
            .insert(key, (status.as_u16(), body.clone()));
    }
}

/// A write as it arrived: its idempotency key and its JSON body.
struct Write {
    key: Option<String>,
    body: Value,
}

/// The write's key and body, or the answer to give at once: the first answer to a replayed
/// key, or Adyen's error for a body that is not a JSON object.
fn begin_write(shared: &Shared, headers: &HeaderMap, raw: &Bytes) -> Result<Write, Box<Response>> {
    let key = idempotency_key(headers);
    if let Some(answer) = replayed(shared, key.as_ref()) {
        return Err(Box::new(answer));
    }
    let body = body_of(raw).map_err(|error| Box::new(error.into_response()))?;
    Ok(Write { key, body })
}

/// What every payment and payout names: `merchantAccount`, `amount` and `reference`.
fn account_amount_reference(body: &Value) -> Result<(String, (i64, String), String), ServiceError> {
    Ok((
        text(body, "merchantAccount")?.to_string(),
        amount_of(body)?,
        text(body, "reference")?.to_string(),
    ))
}

/// The test card the request carries: Adyen's unencrypted test form (`test_<number>`), a
/// raw `number`, or the card on file a test set.
fn card_of(shared: &Shared, body: &Value) -> Option<String> {
    let method = &body["paymentMethod"];
    let given = method["encryptedCardNumber"]
        .as_str()
        .and_then(|number| number.strip_prefix("test_"))
        .or_else(|| method["number"].as_str());
    given
        .map(str::to_string)
        .or_else(|| shared.store().card_on_file.clone())
}

/// Whether the payment is a SEPA direct debit with the IBAN Adyen's Drop-in collects.
fn is_sepa_debit(body: &Value) -> bool {
    let method = &body["paymentMethod"];
    method["type"].as_str() == Some("sepadirectdebit")
        && method["sepa.ibanNumber"]
            .as_str()
            .is_some_and(|iban| !iban.is_empty())
}

/// The AUTHORISATION notification of a decided payment.
pub fn notify_authorisation(shared: &Shared, payment: &Payment) {
    let success = payment.result_code == "Authorised";
    let reason = payment.refusal_reason.unwrap_or("");
    notifications::send(
        shared,
        &[Item::of_payment(payment, "AUTHORISATION", success, reason)],
    );
}

/// Decides `payment` with a card's verdict; answers whether the answer must come late.
pub fn decide(payment: &mut Payment, verdict: Verdict) -> bool {
    match verdict {
        Verdict::Authorise => payment.result_code = "Authorised",
        // On the hosted page there is no HTTP answer to fail: the acquirer failed.
        Verdict::ServerError => {
            payment.result_code = "Refused";
            payment.refusal_reason = Some("Acquirer Error");
        }
        Verdict::SlowAuthorise => {
            payment.result_code = "Authorised";
            return true;
        }
        Verdict::Refuse(reason, _) => {
            payment.result_code = "Refused";
            payment.refusal_reason = Some(reason);
        }
        Verdict::Challenge => payment.result_code = "ChallengeShopper",
    }
    false
}

fn payment_answer(shared: &Shared, payment: &Payment, verdict: Option<Verdict>) -> Value {
    let mut answer = json!({
        "pspReference": payment.psp_reference,
        "resultCode": payment.result_code,
        "merchantReference": payment.reference,
        "amount": {"value": payment.value, "currency": payment.currency},
    });
    let base = &shared.base_url;
    match (payment.result_code, verdict) {
        ("RedirectShopper", _) => {
            answer["action"] = json!({
                "paymentMethodType": "scheme", "type": "redirect", "method": "GET",
                "url": format!("{base}/hpp/{}", payment.psp_reference)
            });
        }
        ("ChallengeShopper", _) => {
            answer["action"] = json!({
                "paymentMethodType": "scheme", "type": "threeDS2", "subtype": "challenge",
                "token": payment.psp_reference,
                "url": format!("{base}/3ds/{}", payment.psp_reference)
            });
        }
        ("Refused", Some(Verdict::Refuse(reason, code))) => {
            answer["refusalReason"] = json!(reason);
            answer["refusalReasonCode"] = json!(code);
        }
        _ => {}
    }
    answer
}

/// `POST /v71/payments`.
pub async fn payments(State(shared): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    let Write { key, body } = match begin_write(&shared, &headers, &raw) {
        Ok(write) => write,
        Err(answer) => return *answer,
    };
    let fields = account_amount_reference(&body)
        .and_then(|fields| Ok((fields, text(&body, "returnUrl")?.to_string())));
    let ((merchant_account, (value, currency), reference), return_url) = match fields {
        Ok(fields) => fields,
        Err(answer) => return answer.into_response(),
    };
    let card = card_of(&shared, &body);
    let verdict = card.as_deref().map(cards::verdict);
    if verdict == Some(Verdict::ServerError) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "905",
            "Internal error (simulated by the test card)",
            "internal",
        );
    }
    let (payment, late) = {
        let mut store = shared.store();
        let mut payment = Payment {
            psp_reference: store.psp_reference(),
            merchant_account,
            reference,
            value,
            currency,
            return_url,
            result_code: "RedirectShopper",
            refusal_reason: None,
            refunded: 0,
            card: card.as_deref().and_then(cards::facts),
        };
        let late = verdict.is_some_and(|verdict| decide(&mut payment, verdict));
        let debit = is_sepa_debit(&body);
        if debit {
            // A direct debit is received, not decided: the bank's answer comes days later
            // in real life, by notification at once here.
            payment.result_code = "Received";
        }
        let mut kept = payment.clone();
        if debit {
            kept.result_code = "Authorised";
        }
        store.payments.insert(payment.psp_reference.clone(), kept);
        (payment, late)
    };
    let answer = payment_answer(&shared, &payment, verdict);
    remember(&shared, key, StatusCode::OK, &answer);
    match payment.result_code {
        "Authorised" | "Refused" => notify_authorisation(&shared, &payment),
        "Received" => notify_authorisation(
            &shared,
            &Payment {
                result_code: "Authorised",
                ..payment.clone()
            },
        ),
        _ => {}
    }
    tracing::info!(psp_reference = %payment.psp_reference, result_code = payment.result_code, "payment");
    if late {
        // Acted and remembered already: a retry with the same key gets this answer at once.
        tokio::time::sleep(Duration::from_millis(shared.config.slow_answer_ms)).await;
    }
    (StatusCode::OK, Json(answer)).into_response()
}

/// `POST /v71/payments/details`: the result after a redirect or a challenge.
pub async fn payment_details(State(shared): State<Shared>, raw: Bytes) -> Response {
    let body = match body_of(&raw) {
        Ok(body) => body,
        Err(answer) => return answer.into_response(),
    };
    let details = &body["details"];
    let Some(result) = details["redirectResult"]
        .as_str()
        .or_else(|| details["threeDSResult"].as_str())
    else {
        return required("details").into_response();
    };
    let Some(payment) = shared.store().payments.get(result).cloned() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "101",
            "Invalid redirectResult",
            "validation",
        );
    };
    let mut answer = json!({
        "pspReference": payment.psp_reference,
        "resultCode": payment.result_code,
        "merchantReference": payment.reference,
        "amount": {"value": payment.value, "currency": payment.currency},
    });
    if let Some(reason) = payment.refusal_reason {
        answer["refusalReason"] = json!(reason);
    }
    (StatusCode::OK, Json(answer)).into_response()
}

/// `POST /v71/payments/{pspReference}/{captures|cancels|refunds}`: received; the outcome
/// comes by notification.
pub async fn modification(
    State(shared): State<Shared>,
    Path((psp_reference, modification)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let event_code = match modification.as_str() {
        "captures" => "CAPTURE",
        "cancels" => "CANCELLATION",
        "refunds" => "REFUND",
        _ => return error(StatusCode::NOT_FOUND, "000", "Not found", "validation"),
    };
    let Write { key, body } = match begin_write(&shared, &headers, &raw) {
        Ok(write) => write,
        Err(answer) => return *answer,
    };
    let merchant_account = match text(&body, "merchantAccount") {
        Ok(account) => account.to_string(),
        Err(answer) => return answer.into_response(),
    };
    let amount = match event_code {
        "CANCELLATION" => None,
        _ => match amount_of(&body) {
            Ok(amount) => Some(amount),
            Err(answer) => return answer.into_response(),
        },
    };
    let outcome = {
        let mut store = shared.store();
        let modification_reference = store.psp_reference();
        let refusal = match event_code {
            "REFUND" => store.refund_refusal.clone(),
            _ => None,
        };
        match store.payments.get_mut(&psp_reference) {
            Some(payment) if payment.merchant_account == merchant_account => {
                let applied = match refusal {
                    // Received now, refused later: the payment keeps its refundable amount.
                    Some(_) => Ok(()),
                    None => apply_modification(payment, event_code, amount.as_ref()),
                };
                applied.map(|()| (payment.clone(), modification_reference, refusal))
            }
            _ => Err("Original pspReference required for this operation"),
        }
    };
    let (payment, modification_reference, refusal) = match outcome {
        Ok(done) => done,
        Err(why) => return error(StatusCode::UNPROCESSABLE_ENTITY, "167", why, "validation"),
    };
    let reference = body["reference"]
        .as_str()
        .unwrap_or(&payment.reference)
        .to_string();
    let (value, currency) = amount.unwrap_or((payment.value, payment.currency.clone()));
    let mut answer = json!({
        "merchantAccount": merchant_account,
        "paymentPspReference": psp_reference,
        "pspReference": modification_reference,
        "reference": reference,
        "status": "received",
    });
    if event_code != "CANCELLATION" {
        answer["amount"] = json!({"value": value, "currency": currency});
    }
    remember(&shared, key, StatusCode::CREATED, &answer);
    notifications::send(
        &shared,
        &[Item {
            event_code,
            success: refusal.is_none(),
            psp_reference: &modification_reference,
            original_reference: Some(&psp_reference),
            merchant_account: &merchant_account,
            merchant_reference: &reference,
            value,
            currency: &currency,
            reason: refusal.as_deref().unwrap_or(""),
            card: None,
        }],
    );
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn apply_modification(
    payment: &mut Payment,
    event_code: &str,
    amount: Option<&(i64, String)>,
) -> Result<(), &'static str> {
    if payment.result_code != "Authorised" {
        return Err("Original pspReference is not in a modifiable state");
    }
    match (event_code, amount) {
        ("CANCELLATION", _) => payment.result_code = "Cancelled",
        ("REFUND", Some((value, currency))) => {
            if currency != &payment.currency || payment.refunded + value > payment.value {
                return Err("Invalid amount specified");
            }
            payment.refunded += value;
        }
        _ => {}
    }
    Ok(())
}

/// `POST /pal/servlet/Payout/v68/storeDetailAndSubmitThirdParty`.
pub async fn payout(State(shared): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    let Write { key, body } = match begin_write(&shared, &headers, &raw) {
        Ok(write) => write,
        Err(answer) => return *answer,
    };
    let fields = account_amount_reference(&body)
        .and_then(|fields| text(&body, "shopperReference").map(|_| fields));
    let (merchant_account, (value, currency), reference) = match fields {
        Ok(fields) => fields,
        Err(answer) => return answer.into_response(),
    };
    if body["recurring"]["contract"].as_str() != Some("PAYOUT") {
        return required("recurring.contract").into_response();
    }
    let psp_reference = shared.store().psp_reference();
    let answer = json!({"pspReference": psp_reference, "resultCode": "[payout-submit-received]"});
    remember(&shared, key, StatusCode::OK, &answer);
    notifications::send(
        &shared,
        &[Item {
            event_code: "PAYOUT_THIRDPARTY",
            success: true,
            psp_reference: &psp_reference,
            original_reference: None,
            merchant_account: &merchant_account,
            merchant_reference: &reference,
            value,
            currency: &currency,
            reason: "",
            card: None,
        }],
    );
    (StatusCode::OK, Json(answer)).into_response()
}
