//! Stripe's PaymentIntents API, pure: form-encoded requests with the secret key as bearer and
//! an `Idempotency-Key` derived from Kassa's ids on every POST; JSON answers and Stripe's
//! error object read back into Kassa's outcomes.

use kassa_core::Currency;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::wire::{self, Form};
use crate::provider::{
    Capabilities, PaymentStart, PaymentStarted, PaymentStatusReport, PayoutAccepted, ProviderError,
    ProviderPaymentStatus, ProviderPayoutStatus, RefundAccepted,
};
use crate::translator::{CallContext, Operation, Outcome, ReplaySafety, Translator};
use crate::transport::{HttpRequest, HttpResponse};

/// The API version Kassa's reading of the answers follows.
pub const API_VERSION: &str = "2024-06-20";
/// Header naming the API version.
const VERSION_HEADER: &str = "stripe-version";
/// Header making a POST idempotent at Stripe.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest piece of an unparseable answer quoted in an error.
const ANSWER_QUOTE_LEN_MAX: usize = 200;
/// Currencies whose minor unit is the same at Stripe as in ISO 4217 (Stripe treats some,
/// e.g. HUF and ISK, differently), so `amount` is Kassa's `amount_minor` as is.
const CURRENCY_CODES: &[&str] = &[
    "EUR", "USD", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "RON",
    "BGN", "JPY", "BRL", "MXN", "ZAR",
];

/// Builds Stripe requests for one account and reads Stripe's answers.
pub struct StripeTranslator {
    secret_key: SecretString,
    /// The test payment method every intent is confirmed with (ADR 59).
    payment_method: String,
    capabilities: Capabilities,
}

impl StripeTranslator {
    /// A translator calling with `secret_key`, confirming intents with `payment_method`.
    pub fn new(secret_key: SecretString, payment_method: &str) -> StripeTranslator {
        StripeTranslator {
            secret_key,
            payment_method: payment_method.to_string(),
            capabilities: Capabilities {
                methods: vec!["card".into()],
                currencies: CURRENCY_CODES
                    .iter()
                    .map(|code| Currency::from_code(code).expect("Stripe currencies are known"))
                    .collect(),
                countries: Vec::new(),
                payouts: true,
                refunds: true,
            },
        }
    }

    fn request(
        &self,
        method: Method,
        path: String,
        post: Option<(Form, String)>,
    ) -> Result<HttpRequest, ProviderError> {
        let header = |text: &str| {
            HeaderValue::from_str(text)
                .map_err(|_| ProviderError::Protocol("unsendable header value".into()))
        };
        let mut headers = HeaderMap::new();
        let bearer = format!("Bearer {}", self.secret_key.expose_secret());
        let mut authorization = header(&bearer)?;
        authorization.set_sensitive(true);
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(VERSION_HEADER, HeaderValue::from_static(API_VERSION));
        let mut body = Vec::new();
        if let Some((form, idempotency_key)) = post {
            body = form.encode();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            headers.insert(IDEMPOTENCY_HEADER, header(&idempotency_key)?);
        }
        Ok(HttpRequest {
            method,
            path_and_query: path,
            headers,
            body,
        })
    }
}

/// The idempotency key of `operation` on the object `id`: the same for every attempt of one
/// Kassa operation, so Stripe answers a retry with the first answer instead of acting again.
pub fn idempotency_key(operation: &str, id: &str) -> String {
    format!("kassa-{operation}-{id}")
}

impl Translator for StripeTranslator {
    type Request = HttpRequest;
    type Response = HttpResponse;

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Every POST carries an `Idempotency-Key` made of Kassa's id of the operation, and
    /// Stripe answers a repeated key with the saved first answer; reads are reads.
    fn replay_safety(&self, _operation: &Operation<'_>) -> ReplaySafety {
        ReplaySafety::Safe
    }

    fn encode(
        &self,
        operation: &Operation<'_>,
        _context: &CallContext,
    ) -> Result<HttpRequest, ProviderError> {
        match operation {
            Operation::StartPayment(request) => {
                // The cashier's Stripe.js token when the deposit carries one (live), else
                // the account's test payment method (ADRs 59, 64).
                let payment_method = request
                    .payment_method_token
                    .as_ref()
                    .map_or(self.payment_method.as_str(), |token| token.expose());
                let form = Form::default()
                    .field("amount", request.amount_minor.to_string())
                    .field("currency", request.currency.code().to_ascii_lowercase())
                    .field("confirm", "true")
                    .field("payment_method", payment_method)
                    .field("payment_method_types[0]", "card")
                    .field(
                        "return_url",
                        crate::translator::return_url_naming_payment(
                            &request.return_url,
                            &request.payment_id,
                        ),
                    )
                    .field("metadata[kassa_payment_id]", request.payment_id.as_str());
                let key = idempotency_key("start", &request.payment_id);
                self.request(
                    Method::POST,
                    "/v1/payment_intents".into(),
                    Some((form, key)),
                )
            }
            Operation::GetStatus(reference) => {
                let path = format!("/v1/payment_intents/{}", object_id(reference)?);
                self.request(Method::GET, path, None)
            }
            Operation::Cancel(reference) => {
                let path = format!("/v1/payment_intents/{}/cancel", object_id(reference)?);
                let key = idempotency_key("cancel", reference);
                self.request(Method::POST, path, Some((Form::default(), key)))
            }
            Operation::Refund(request) => {
                let form = Form::default()
                    .field("payment_intent", request.provider_reference.as_str())
                    .field("amount", request.amount_minor.to_string())
                    .field("metadata[kassa_refund_id]", request.refund_id.as_str());
                let key = idempotency_key("refund", &request.refund_id);
                self.request(Method::POST, "/v1/refunds".into(), Some((form, key)))
            }
            Operation::Payout(request) => {
                let mut form = Form::default()
                    .field("amount", request.amount_minor.to_string())
                    .field("currency", request.currency.code().to_ascii_lowercase());
                if let Some(destination) = &request.destination {
                    form = form.field("destination", destination.as_str());
                }
                let form = form.field("metadata[kassa_payout_id]", request.payout_id.as_str());
                let key = idempotency_key("payout", &request.payout_id);
                self.request(Method::POST, "/v1/payouts".into(), Some((form, key)))
            }
        }
    }

    fn decode(
        &self,
        operation: &Operation<'_>,
        response: HttpResponse,
    ) -> Result<Outcome, ProviderError> {
        let (status, body) = (response.status, response.body.as_slice());
        match operation {
            Operation::StartPayment(_) => {
                match decode_answer::<wire::PaymentIntent>(status, body) {
                    Ok(intent) => started(intent).map(Outcome::Started),
                    Err(Refusal::Card(error)) => declined_start(*error).map(Outcome::Started),
                    Err(Refusal::Other(error)) => Err(error),
                }
            }
            Operation::GetStatus(_) => {
                let intent: wire::PaymentIntent = decode_answer(status, body)?;
                status_report(intent).map(Outcome::Status)
            }
            Operation::Cancel(_) => {
                let intent: wire::PaymentIntent = decode_answer(status, body)?;
                Ok(Outcome::Cancelled(payment_status(&intent)?))
            }
            Operation::Refund(request) => {
                let refund: wire::Refund = decode_answer(status, body)?;
                if refund.metadata.kassa_refund_id.as_deref() != Some(&request.refund_id) {
                    return Err(ProviderError::Protocol(format!(
                        "asked for refund {:?}, Stripe answered about {:?}",
                        request.refund_id, refund.metadata.kassa_refund_id
                    )));
                }
                if matches!(refund.status.as_str(), "failed" | "canceled") {
                    return Err(ProviderError::Rejected {
                        code: format!("refund_{}", refund.status),
                        message: format!("Stripe refund {} is {}", refund.id, refund.status),
                    });
                }
                Ok(Outcome::RefundAccepted(RefundAccepted {
                    refund_id: request.refund_id.clone(),
                    provider_reference: refund
                        .payment_intent
                        .unwrap_or_else(|| request.provider_reference.clone()),
                    settled: false,
                    reversal_advice_key: None,
                }))
            }
            Operation::Payout(_) => {
                let payout: wire::Payout = decode_answer(status, body)?;
                Ok(Outcome::PayoutAccepted(PayoutAccepted {
                    status: payout_status(&payout.status)?,
                    provider_reference: payout.id,
                    reversal_advice_key: None,
                }))
            }
        }
    }
}

/// An object id Stripe made (`pi_…`), checked before it becomes a path segment.
fn object_id(id: &str) -> Result<&str, ProviderError> {
    let fits = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if id.is_empty() || id.len() > 255 || !id.chars().all(fits) {
        return Err(ProviderError::Protocol(format!(
            "bad Stripe object id {id:?}"
        )));
    }
    Ok(id)
}

/// What a created intent asks for next. `succeeded` (captured, automatic capture) and
/// `requires_capture` are approvals; `requires_action` with a redirect is 3-D Secure.
fn started(intent: wire::PaymentIntent) -> Result<PaymentStarted, ProviderError> {
    let start = match intent.status.as_str() {
        "succeeded" | "requires_capture" => PaymentStart::Authorized,
        "requires_action" => {
            let url = intent
                .next_action
                .and_then(|action| action.redirect_to_url)
                .map(|redirect| redirect.url)
                .ok_or_else(|| {
                    ProviderError::Protocol("requires_action without redirect_to_url".into())
                })?;
            PaymentStart::Challenge { url }
        }
        "requires_payment_method" => PaymentStart::Declined {
            reason: intent.last_payment_error.and_then(|error| error.reason()),
        },
        "canceled" => PaymentStart::Declined {
            reason: intent.cancellation_reason.or(Some("canceled".into())),
        },
        // The bank decides later (some wallets and debits): the event says how it ended.
        "processing" => PaymentStart::Processing,
        // Anything newer has no next step Kassa knows.
        other => {
            return Err(ProviderError::Protocol(format!(
                "a confirmed payment intent answered {other:?}"
            )))
        }
    };
    Ok(PaymentStarted {
        provider_reference: intent.id,
        start,
    })
}

/// A card error (402) on confirmation: the intent it left behind is declined with the
/// issuer's reason.
fn declined_start(error: wire::ErrorObject) -> Result<PaymentStarted, ProviderError> {
    let reason = error.decline_code.or(error.code);
    let intent = error
        .payment_intent
        .ok_or_else(|| ProviderError::Protocol("a card error without its payment_intent".into()))?;
    Ok(PaymentStarted {
        provider_reference: intent.id,
        start: PaymentStart::Declined { reason },
    })
}

fn status_report(intent: wire::PaymentIntent) -> Result<PaymentStatusReport, ProviderError> {
    let status = payment_status(&intent)?;
    let currency = currency(&intent.currency)?;
    let payment_id = intent.metadata.kassa_payment_id.ok_or_else(|| {
        ProviderError::Protocol(format!("intent {} has no kassa_payment_id", intent.id))
    })?;
    Ok(PaymentStatusReport {
        provider_reference: intent.id,
        payment_id,
        status,
        amount_minor: intent.amount,
        currency,
    })
}

/// Kassa's status of an intent. A `requires_payment_method` intent that carries a payment
/// error was declined; without one it never had a card.
fn payment_status(intent: &wire::PaymentIntent) -> Result<ProviderPaymentStatus, ProviderError> {
    Ok(match intent.status.as_str() {
        "requires_payment_method" if intent.last_payment_error.is_some() => {
            ProviderPaymentStatus::Declined
        }
        "requires_payment_method" | "requires_confirmation" | "requires_action" | "processing" => {
            ProviderPaymentStatus::Pending
        }
        "requires_capture" => ProviderPaymentStatus::Authorized,
        "succeeded" => ProviderPaymentStatus::Captured,
        "canceled" => ProviderPaymentStatus::Cancelled,
        other => {
            return Err(ProviderError::Protocol(format!(
                "unknown payment intent status {other:?}"
            )))
        }
    })
}

fn payout_status(text: &str) -> Result<ProviderPayoutStatus, ProviderError> {
    match text {
        "pending" | "in_transit" => Ok(ProviderPayoutStatus::Pending),
        "paid" => Ok(ProviderPayoutStatus::Paid),
        "failed" | "canceled" => Ok(ProviderPayoutStatus::Failed),
        other => Err(ProviderError::Protocol(format!(
            "unknown payout status {other:?}"
        ))),
    }
}

/// Kassa's currency of Stripe's lower-case code.
pub(super) fn currency(code: &str) -> Result<Currency, ProviderError> {
    Currency::from_code(&code.to_ascii_uppercase())
        .map_err(|_| ProviderError::Protocol(format!("unknown currency {code:?}")))
}

fn quote(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .chars()
        .take(ANSWER_QUOTE_LEN_MAX)
        .collect()
}

/// Why an answer is not the object asked for.
enum Refusal {
    /// A card error (HTTP 402, `type: card_error`): the issuer or Stripe's fraud checks
    /// refused the card.
    Card(Box<wire::ErrorObject>),
    /// Anything else, already typed.
    Other(ProviderError),
}

impl From<Refusal> for ProviderError {
    fn from(refusal: Refusal) -> ProviderError {
        match refusal {
            Refusal::Card(error) => ProviderError::Rejected {
                code: error
                    .decline_code
                    .or(error.code)
                    .unwrap_or_else(|| "card_error".into()),
                message: error.message.unwrap_or_default(),
            },
            Refusal::Other(error) => error,
        }
    }
}

/// A 2xx answer as `T`; a 5xx or 429 is unavailable, a 402 a card error, other 4xx a
/// rejection with Stripe's `code` (else its error `type`).
fn decode_answer<T: DeserializeOwned>(status: StatusCode, answer: &[u8]) -> Result<T, Refusal> {
    if status.is_success() {
        return serde_json::from_slice(answer).map_err(|error| {
            Refusal::Other(ProviderError::Protocol(format!(
                "unexpected answer ({error}): {}",
                quote(answer)
            )))
        });
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(Refusal::Other(ProviderError::Unavailable(format!(
            "answered {status}"
        ))));
    }
    let Ok(wire::ErrorAnswer { error }) = serde_json::from_slice(answer) else {
        return Err(Refusal::Other(ProviderError::Rejected {
            code: format!("http_{}", status.as_u16()),
            message: quote(answer),
        }));
    };
    if status == StatusCode::PAYMENT_REQUIRED && error.kind == "card_error" {
        return Err(Refusal::Card(Box::new(error)));
    }
    Err(Refusal::Other(ProviderError::Rejected {
        code: error.code.unwrap_or(error.kind),
        message: error.message.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{PaymentRequest, PayoutRequest, RefundRequest};

    fn translator() -> StripeTranslator {
        StripeTranslator::new(SecretString::from("sk_test_123"), "pm_card_visa")
    }

    fn context() -> CallContext {
        CallContext {
            now_unix_s: 1,
            nonce: "n".into(),
            attempt: 1,
        }
    }

    fn eur() -> Currency {
        Currency::from_code("EUR").unwrap()
    }

    fn deposit() -> PaymentRequest {
        PaymentRequest {
            payment_id: "pay_1".into(),
            amount_minor: 5000,
            currency: eur(),
            method: "card".into(),
            country: Some("MT".into()),
            return_url: "http://shop/r?a=1".into(),
            payment_method_token: None,
        }
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
        request.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// (method, path, body, idempotency key) of an operation's request.
    fn sent(operation: Operation<'_>) -> (Method, String, String, Option<String>) {
        let request = translator().encode(&operation, &context()).unwrap();
        assert_eq!(
            header(&request, "authorization"),
            Some("Bearer sk_test_123")
        );
        assert!(request.headers["authorization"].is_sensitive());
        assert_eq!(header(&request, "stripe-version"), Some(API_VERSION));
        let key = header(&request, "idempotency-key").map(str::to_string);
        if request.method == Method::POST {
            assert_eq!(
                header(&request, "content-type"),
                Some("application/x-www-form-urlencoded")
            );
        }
        let body = String::from_utf8(request.body).unwrap();
        (request.method, request.path_and_query, body, key)
    }

    #[test]
    fn a_deposit_is_exactly_this_confirmed_payment_intent() {
        let request = deposit();
        let (method, path, body, key) = sent(Operation::StartPayment(&request));
        assert_eq!(
            (method, path.as_str()),
            (Method::POST, "/v1/payment_intents")
        );
        assert_eq!(
            body,
            "amount=5000&currency=eur&confirm=true&payment_method=pm_card_visa\
             &payment_method_types%5B0%5D=card\
             &return_url=http%3A%2F%2Fshop%2Fr%3Fa%3D1%26payment_id%3Dpay_1\
             &metadata%5Bkassa_payment_id%5D=pay_1"
        );
        assert_eq!(key.as_deref(), Some("kassa-start-pay_1"));
    }

    #[test]
    fn a_deposit_with_the_cashiers_token_confirms_with_it_not_the_accounts_method() {
        let mut request = deposit();
        request.payment_method_token = crate::PaymentMethodToken::parse("pm_1QxYz");
        let (_, _, body, _) = sent(Operation::StartPayment(&request));
        assert!(body.contains("&payment_method=pm_1QxYz&"), "{body}");
        assert!(!body.contains("pm_card_visa"), "{body}");
    }

    #[test]
    fn every_attempt_of_one_operation_carries_the_same_idempotency_key() {
        let request = deposit();
        let operation = Operation::StartPayment(&request);
        let later = CallContext {
            now_unix_s: 99,
            nonce: "other".into(),
            attempt: 2,
        };
        let first = translator().encode(&operation, &context()).unwrap();
        let second = translator().encode(&operation, &later).unwrap();
        assert_eq!(first, second, "a retry is byte for byte the first request");
        assert_eq!(translator().replay_safety(&operation), ReplaySafety::Safe);
    }

    #[test]
    fn status_cancel_refund_and_payout_requests_are_exact() {
        assert_eq!(
            sent(Operation::GetStatus("pi_1")),
            (
                Method::GET,
                "/v1/payment_intents/pi_1".into(),
                String::new(),
                None
            )
        );
        assert_eq!(
            sent(Operation::Cancel("pi_1")),
            (
                Method::POST,
                "/v1/payment_intents/pi_1/cancel".into(),
                String::new(),
                Some("kassa-cancel-pi_1".into())
            )
        );
        let refund = RefundRequest {
            provider_reference: "pi_1".into(),
            refund_id: "rf_1".into(),
            amount_minor: 2000,
            currency: eur(),
        };
        assert_eq!(
            sent(Operation::Refund(&refund)),
            (
                Method::POST,
                "/v1/refunds".into(),
                "payment_intent=pi_1&amount=2000&metadata%5Bkassa_refund_id%5D=rf_1".into(),
                Some("kassa-refund-rf_1".into())
            )
        );
        let payout = PayoutRequest {
            payout_id: "po_1".into(),
            amount_minor: 12345,
            currency: eur(),
            method: "card".into(),
            destination: Some("card_9".into()),
        };
        assert_eq!(
            sent(Operation::Payout(&payout)),
            (
                Method::POST,
                "/v1/payouts".into(),
                "amount=12345&currency=eur&destination=card_9&metadata%5Bkassa_payout_id%5D=po_1"
                    .into(),
                Some("kassa-payout-po_1".into())
            )
        );
    }

    #[test]
    fn ids_that_could_escape_the_path_are_refused() {
        for id in ["../x", "pi/1", "", "pi?x", "pi 1"] {
            assert!(matches!(
                translator().encode(&Operation::GetStatus(id), &context()),
                Err(ProviderError::Protocol(_))
            ));
        }
    }

    fn start(status: u16, body: &str) -> Result<Outcome, ProviderError> {
        translator().decode(&Operation::StartPayment(&deposit()), answer(status, body))
    }

    fn started_as(reference: &str, start: PaymentStart) -> Result<Outcome, ProviderError> {
        Ok(Outcome::Started(PaymentStarted {
            provider_reference: reference.into(),
            start,
        }))
    }

    #[test]
    fn intent_statuses_become_the_next_step() {
        let intent = |status: &str, extra: &str| {
            format!(
                r#"{{"id":"pi_1","object":"payment_intent","status":"{status}","amount":5000,"currency":"eur"{extra}}}"#
            )
        };
        assert_eq!(
            start(200, &intent("succeeded", "")),
            started_as("pi_1", PaymentStart::Authorized)
        );
        assert_eq!(
            start(200, &intent("requires_capture", "")),
            started_as("pi_1", PaymentStart::Authorized)
        );
        let action = r#","next_action":{"type":"redirect_to_url","redirect_to_url":{"url":"http://s/3ds/pi_1","return_url":"http://r"}}"#;
        assert_eq!(
            start(200, &intent("requires_action", action)),
            started_as(
                "pi_1",
                PaymentStart::Challenge {
                    url: "http://s/3ds/pi_1".into()
                }
            )
        );
        let failed = r#","last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"stolen_card"}"#;
        assert_eq!(
            start(200, &intent("requires_payment_method", failed)),
            started_as(
                "pi_1",
                PaymentStart::Declined {
                    reason: Some("stolen_card".into())
                }
            )
        );
        assert!(matches!(
            start(200, &intent("requires_action", "")),
            Err(ProviderError::Protocol(_))
        ));
        assert_eq!(
            start(200, &intent("processing", "")),
            started_as("pi_1", PaymentStart::Processing)
        );
        assert!(matches!(
            start(200, &intent("requires_confirmation", "")),
            Err(ProviderError::Protocol(_))
        ));
    }

    #[test]
    fn a_card_error_is_a_decline_with_the_issuers_reason() {
        let body = r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds.","payment_intent":{"id":"pi_2","object":"payment_intent","status":"requires_payment_method","amount":5000,"currency":"eur"}}}"#;
        assert_eq!(
            start(402, body),
            started_as(
                "pi_2",
                PaymentStart::Declined {
                    reason: Some("insufficient_funds".into())
                }
            )
        );
        let processing = r#"{"error":{"type":"card_error","code":"processing_error","message":"An error occurred while processing your card.","payment_intent":{"id":"pi_3","object":"payment_intent","status":"requires_payment_method","amount":5000,"currency":"eur"}}}"#;
        assert_eq!(
            start(402, processing),
            started_as(
                "pi_3",
                PaymentStart::Declined {
                    reason: Some("processing_error".into())
                }
            )
        );
    }

    #[test]
    fn other_errors_are_typed_by_status() {
        assert!(matches!(
            start(500, r#"{"error":{"type":"api_error","message":"boom"}}"#),
            Err(ProviderError::Unavailable(_))
        ));
        assert!(matches!(
            start(429, "{}"),
            Err(ProviderError::Unavailable(_))
        ));
        assert_eq!(
            start(
                400,
                r#"{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters"}}"#
            ),
            Err(ProviderError::Rejected {
                code: "idempotency_error".into(),
                message: "Keys for idempotent requests can only be used with the same parameters"
                    .into()
            })
        );
        assert_eq!(
            start(
                401,
                r#"{"error":{"type":"invalid_request_error","code":"api_key_invalid","message":"Invalid API Key provided"}}"#
            ),
            Err(ProviderError::Rejected {
                code: "api_key_invalid".into(),
                message: "Invalid API Key provided".into()
            })
        );
        assert!(
            matches!(start(404, "<html>"), Err(ProviderError::Rejected { code, .. }) if code == "http_404")
        );
        assert!(matches!(
            start(200, "<html>"),
            Err(ProviderError::Protocol(_))
        ));
        let refund = RefundRequest {
            provider_reference: "pi_1".into(),
            refund_id: "rf_1".into(),
            amount_minor: 1,
            currency: eur(),
        };
        // Outside a start, a card error is a rejection.
        let card_error = translator().decode(
            &Operation::Refund(&refund),
            answer(
                402,
                r#"{"error":{"type":"card_error","code":"expired_card"}}"#,
            ),
        );
        assert!(
            matches!(card_error, Err(ProviderError::Rejected { code, .. }) if code == "expired_card")
        );
    }

    #[test]
    fn a_status_answer_is_kassas_view_of_the_intent() {
        let decoded = translator().decode(
            &Operation::GetStatus("pi_1"),
            answer(200, r#"{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":1500,"currency":"jpy","metadata":{"kassa_payment_id":"pay_1"}}"#),
        );
        assert_eq!(
            decoded,
            Ok(Outcome::Status(PaymentStatusReport {
                provider_reference: "pi_1".into(),
                payment_id: "pay_1".into(),
                status: ProviderPaymentStatus::Captured,
                amount_minor: 1500,
                currency: Currency::from_code("JPY").unwrap(),
            }))
        );
        let declined = translator().decode(
            &Operation::Cancel("pi_1"),
            answer(
                200,
                r#"{"id":"pi_1","status":"canceled","amount":1,"currency":"eur"}"#,
            ),
        );
        assert_eq!(
            declined,
            Ok(Outcome::Cancelled(ProviderPaymentStatus::Cancelled))
        );
        let unknown = translator().decode(
            &Operation::GetStatus("pi_1"),
            answer(200, r#"{"id":"pi_1","status":"settled","amount":1,"currency":"eur","metadata":{"kassa_payment_id":"pay_1"}}"#),
        );
        assert!(matches!(unknown, Err(ProviderError::Protocol(_))));
    }

    #[test]
    fn a_refund_answer_must_be_about_the_refund_asked_for() {
        let refund = RefundRequest {
            provider_reference: "pi_1".into(),
            refund_id: "rf_1".into(),
            amount_minor: 100,
            currency: eur(),
        };
        let body = |kassa_id: &str, status: &str| {
            format!(
                r#"{{"id":"re_1","object":"refund","amount":100,"status":"{status}","payment_intent":"pi_1","metadata":{{"kassa_refund_id":"{kassa_id}"}}}}"#
            )
        };
        let decode =
            |text: String| translator().decode(&Operation::Refund(&refund), answer(200, &text));
        assert_eq!(
            decode(body("rf_1", "succeeded")),
            Ok(Outcome::RefundAccepted(RefundAccepted {
                refund_id: "rf_1".into(),
                provider_reference: "pi_1".into(),
                settled: false,
                reversal_advice_key: None,
            }))
        );
        assert!(matches!(
            decode(body("rf_2", "pending")),
            Err(ProviderError::Protocol(_))
        ));
        assert!(matches!(
            decode(body("rf_1", "failed")),
            Err(ProviderError::Rejected { .. })
        ));
    }

    #[test]
    fn a_payout_answer_is_pending_until_stripe_says_paid() {
        let payout = PayoutRequest {
            payout_id: "po_1".into(),
            amount_minor: 100,
            currency: eur(),
            method: "card".into(),
            destination: None,
        };
        let decode = |status: &str| {
            translator().decode(
                &Operation::Payout(&payout),
                answer(200, &format!(r#"{{"id":"po_9","object":"payout","amount":100,"currency":"eur","status":"{status}"}}"#)),
            )
        };
        assert_eq!(
            decode("pending"),
            Ok(Outcome::PayoutAccepted(PayoutAccepted {
                provider_reference: "po_9".into(),
                status: ProviderPayoutStatus::Pending,
                reversal_advice_key: None,
            }))
        );
        assert!(matches!(
            decode("in_transit"),
            Ok(Outcome::PayoutAccepted(PayoutAccepted {
                status: ProviderPayoutStatus::Pending,
                ..
            }))
        ));
        assert!(matches!(
            decode("teleported"),
            Err(ProviderError::Protocol(_))
        ));
    }
}
