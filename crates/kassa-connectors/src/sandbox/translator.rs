//! The sandbox PSP's wire format: signed JSON requests, JSON answers. Pure.

use kassa_core::Currency;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use super::wire;
use crate::provider::{
    Capabilities, PaymentStart, PaymentStarted, PaymentStatusReport, PayoutAccepted, ProviderError,
    ProviderPaymentStatus, ProviderPayoutStatus, RefundAccepted,
};
use crate::signing;
use crate::translator::{CallContext, Operation, Outcome, ReplaySafety, Translator};
use crate::transport::{HttpRequest, HttpResponse};

/// Longest piece of an unparseable answer quoted in an error.
const ANSWER_QUOTE_LEN_MAX: usize = 200;
/// Fiat currencies the sandbox's card scheme settles in.
const CURRENCY_CODES: &[&str] = &[
    "EUR", "USD", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF",
    "RON", "BGN", "JPY", "BRL", "MXN", "ZAR", "TRY", "INR",
];

/// Builds the sandbox's signed requests and reads its answers.
pub struct SandboxTranslator {
    api_secret: SecretString,
    /// The API's path below the origin, without a trailing slash (`""` or e.g. `/psp`).
    path_prefix: String,
    capabilities: Capabilities,
}

impl SandboxTranslator {
    /// A translator signing with `api_secret`, for an API under `path_prefix`.
    pub fn new(api_secret: SecretString, path_prefix: &str) -> SandboxTranslator {
        SandboxTranslator {
            api_secret,
            path_prefix: path_prefix.trim_end_matches('/').to_string(),
            capabilities: Capabilities {
                methods: vec!["card".into()],
                currencies: CURRENCY_CODES
                    .iter()
                    .map(|code| Currency::from_code(code).expect("sandbox currencies are known"))
                    .collect(),
                countries: Vec::new(),
                payouts: true,
                refunds: true,
            },
        }
    }

    fn signed(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        context: &CallContext,
    ) -> Result<HttpRequest, ProviderError> {
        let path_and_query = format!("{}{path}", self.path_prefix);
        signing::signed_http_request(
            &self.api_secret,
            method,
            path_and_query,
            body.unwrap_or_default(),
            context,
        )
    }
}

fn json(body: &impl serde::Serialize) -> Result<Option<Vec<u8>>, ProviderError> {
    serde_json::to_vec(body)
        .map(Some)
        .map_err(|error| ProviderError::Protocol(error.to_string()))
}

impl Translator for SandboxTranslator {
    type Request = HttpRequest;
    type Response = HttpResponse;

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Every sandbox write is keyed by Kassa's id and answered again, not repeated, when it
    /// comes twice (docs/sandbox-psp.md: the same `payment_id`, `refund_id` or `payout_id`
    /// answers the first one; cancelling a cancelled payment answers 200), so each is safe.
    fn replay_safety(&self, _operation: &Operation<'_>) -> ReplaySafety {
        ReplaySafety::Safe
    }

    fn encode(
        &self,
        operation: &Operation<'_>,
        context: &CallContext,
    ) -> Result<HttpRequest, ProviderError> {
        match operation {
            Operation::StartPayment(request) => {
                let body = wire::InitPaymentBody {
                    payment_id: &request.payment_id,
                    amount: request.currency.format_minor(request.amount_minor),
                    currency: request.currency.code(),
                    method: &request.method,
                    country: request.country.as_deref(),
                    return_url: &request.return_url,
                };
                self.signed(Method::POST, "/v1/payments", json(&body)?, context)
            }
            Operation::GetStatus(reference) => {
                let path = format!("/v1/payments/{}", reference_segment(reference)?);
                self.signed(Method::GET, &path, None, context)
            }
            Operation::Cancel(reference) => {
                let path = format!("/v1/payments/{}/cancel", reference_segment(reference)?);
                self.signed(Method::POST, &path, Some(b"{}".to_vec()), context)
            }
            Operation::Refund(request) => {
                let body = wire::RefundBody {
                    provider_reference: &request.provider_reference,
                    refund_id: &request.refund_id,
                    amount: request.currency.format_minor(request.amount_minor),
                };
                self.signed(Method::POST, "/v1/refunds", json(&body)?, context)
            }
            Operation::Payout(request) => {
                let body = wire::PayoutBody {
                    payout_id: &request.payout_id,
                    amount: request.currency.format_minor(request.amount_minor),
                    currency: request.currency.code(),
                    method: &request.method,
                    destination: request.destination.as_deref(),
                };
                self.signed(Method::POST, "/v1/payouts", json(&body)?, context)
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
                let answer: wire::InitPaymentAnswer = decode_answer(status, body)?;
                started(answer).map(Outcome::Started)
            }
            Operation::GetStatus(_) => {
                let answer: wire::PaymentAnswer = decode_answer(status, body)?;
                status_report(answer).map(Outcome::Status)
            }
            Operation::Cancel(_) => {
                let answer: wire::CancelAnswer = decode_answer(status, body)?;
                payment_status(&answer.status).map(Outcome::Cancelled)
            }
            Operation::Refund(request) => {
                let answer: wire::RefundAnswer = decode_answer(status, body)?;
                if answer.refund_id != request.refund_id {
                    return Err(ProviderError::Protocol(format!(
                        "asked to refund {:?}, the answer is about {:?}",
                        request.refund_id, answer.refund_id
                    )));
                }
                if answer.status != "pending" && answer.status != "refunded" {
                    return Err(ProviderError::Protocol(format!(
                        "unknown refund status {:?}",
                        answer.status
                    )));
                }
                Ok(Outcome::RefundAccepted(RefundAccepted {
                    refund_id: answer.refund_id,
                    provider_reference: answer.provider_reference,
                    settled: false,
                    reversal_advice_key: None,
                }))
            }
            Operation::Payout(_) => {
                let answer: wire::PayoutAnswer = decode_answer(status, body)?;
                Ok(Outcome::PayoutAccepted(PayoutAccepted {
                    provider_reference: answer.provider_reference,
                    status: payout_status(&answer.status)?,
                    reversal_advice_key: None,
                }))
            }
        }
    }
}

/// The sandbox answers `pending` with its hosted card page (3-D Secure, when the card asks for
/// it, comes later on that page), or a final status when it decided at once.
fn started(answer: wire::InitPaymentAnswer) -> Result<PaymentStarted, ProviderError> {
    let start = match (payment_status(&answer.status)?, answer.redirect_url) {
        (ProviderPaymentStatus::Pending, Some(url)) => PaymentStart::Redirect { url },
        (ProviderPaymentStatus::Authorized | ProviderPaymentStatus::Captured, _) => {
            PaymentStart::Authorized
        }
        (ProviderPaymentStatus::Declined | ProviderPaymentStatus::Failed, _) => {
            PaymentStart::Declined {
                reason: answer.reason,
            }
        }
        (status, _) => {
            return Err(ProviderError::Protocol(format!(
                "a new payment answered {status:?} without a page for the player"
            )))
        }
    };
    Ok(PaymentStarted {
        provider_reference: answer.provider_reference,
        start,
    })
}

fn status_report(answer: wire::PaymentAnswer) -> Result<PaymentStatusReport, ProviderError> {
    let currency = Currency::from_code(&answer.currency)
        .map_err(|error| ProviderError::Protocol(error.to_string()))?;
    let amount_minor = currency
        .parse_minor(&answer.amount)
        .map_err(|error| ProviderError::Protocol(error.to_string()))?;
    Ok(PaymentStatusReport {
        provider_reference: answer.provider_reference,
        payment_id: answer.payment_id,
        status: payment_status(&answer.status)?,
        amount_minor,
        currency,
    })
}

fn quote(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.chars().take(ANSWER_QUOTE_LEN_MAX).collect()
}

pub(super) fn decode_answer<T: DeserializeOwned>(
    status: StatusCode,
    answer: &[u8],
) -> Result<T, ProviderError> {
    if status.is_success() {
        return serde_json::from_slice(answer).map_err(|error| {
            ProviderError::Protocol(format!("unexpected answer ({error}): {}", quote(answer)))
        });
    }
    if status.is_server_error() {
        return Err(ProviderError::Unavailable(format!("answered {status}")));
    }
    match serde_json::from_slice::<wire::ErrorAnswer>(answer) {
        Ok(error) => Err(ProviderError::Rejected {
            code: error.error,
            message: error.message,
        }),
        Err(_) => Err(ProviderError::Rejected {
            code: format!("http_{}", status.as_u16()),
            message: quote(answer),
        }),
    }
}

pub(super) fn payment_status(text: &str) -> Result<ProviderPaymentStatus, ProviderError> {
    Ok(match text {
        "pending" => ProviderPaymentStatus::Pending,
        "authorized" => ProviderPaymentStatus::Authorized,
        "captured" => ProviderPaymentStatus::Captured,
        "declined" => ProviderPaymentStatus::Declined,
        "failed" => ProviderPaymentStatus::Failed,
        "cancelled" => ProviderPaymentStatus::Cancelled,
        "partially_refunded" => ProviderPaymentStatus::PartiallyRefunded,
        "refunded" => ProviderPaymentStatus::Refunded,
        "charged_back" => ProviderPaymentStatus::ChargedBack,
        other => {
            return Err(ProviderError::Protocol(format!(
                "unknown payment status {other:?}"
            )))
        }
    })
}

fn payout_status(text: &str) -> Result<ProviderPayoutStatus, ProviderError> {
    match text {
        "pending" => Ok(ProviderPayoutStatus::Pending),
        "paid" => Ok(ProviderPayoutStatus::Paid),
        "failed" => Ok(ProviderPayoutStatus::Failed),
        other => Err(ProviderError::Protocol(format!(
            "unknown payout status {other:?}"
        ))),
    }
}

/// Path segment for a provider reference, refusing anything that could escape the path.
fn reference_segment(provider_reference: &str) -> Result<&str, ProviderError> {
    let safe = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if provider_reference.is_empty() || !provider_reference.chars().all(safe) {
        return Err(ProviderError::Protocol(format!(
            "provider reference {provider_reference:?} is not a sandbox reference"
        )));
    }
    Ok(provider_reference)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{PaymentRequest, PayoutRequest, RefundRequest};
    use reqwest::header::HeaderMap;

    fn translator(prefix: &str) -> SandboxTranslator {
        SandboxTranslator::new(SecretString::from("key"), prefix)
    }

    fn context() -> CallContext {
        CallContext {
            now_unix_s: 1,
            nonce: "abc".into(),
            attempt: 1,
        }
    }

    fn eur() -> Currency {
        Currency::from_code("EUR").unwrap()
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn header<'a>(request: &'a HttpRequest, name: &str) -> &'a str {
        request.headers[name].to_str().unwrap()
    }

    #[test]
    fn a_status_request_is_exactly_the_signed_get() {
        let request = translator("")
            .encode(&Operation::GetStatus("sbxpay_1"), &context())
            .unwrap();
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.path_and_query, "/v1/payments/sbxpay_1");
        assert!(request.body.is_empty());
        assert_eq!(header(&request, "x-kassa-timestamp"), "1");
        assert_eq!(header(&request, "x-kassa-nonce"), "abc");
        // printf 'GET\n/v1/payments/sbxpay_1\n1\nabc\n' | openssl dgst -sha256 -hmac key
        assert_eq!(
            header(&request, "x-kassa-signature"),
            "v1=77d4a29e16ab41fb843b67c89fd9696c11c0a213fd41dd21ad899493bb65830e"
        );
        assert!(request.headers.get("content-type").is_none());
    }

    #[test]
    fn a_payment_request_is_exactly_these_bytes_signed_under_the_path_prefix() {
        let request = PaymentRequest {
            payment_id: "pay_1".into(),
            amount_minor: 5000,
            currency: eur(),
            method: "card".into(),
            country: Some("MT".into()),
            return_url: "http://shop/r".into(),
            payment_method_token: None,
        };
        let message = translator("/psp/")
            .encode(&Operation::StartPayment(&request), &context())
            .unwrap();
        assert_eq!(message.method, Method::POST);
        assert_eq!(message.path_and_query, "/psp/v1/payments");
        assert_eq!(
            String::from_utf8(message.body.clone()).unwrap(),
            r#"{"payment_id":"pay_1","amount":"50.00","currency":"EUR","method":"card","country":"MT","return_url":"http://shop/r"}"#
        );
        assert_eq!(header(&message, "content-type"), "application/json");
        let expected =
            signing::sign_request(b"key", "POST", "/psp/v1/payments", 1, "abc", &message.body);
        assert_eq!(header(&message, "x-kassa-signature"), expected);
    }

    #[test]
    fn refund_payout_and_cancel_bodies_are_exact() {
        let t = translator("");
        let refund = RefundRequest {
            provider_reference: "sbxpay_1".into(),
            refund_id: "rf_1".into(),
            amount_minor: 2000,
            currency: eur(),
        };
        let payout = PayoutRequest {
            payout_id: "po_1".into(),
            amount_minor: 12345,
            currency: eur(),
            method: "bank_transfer".into(),
            destination: None,
        };
        let body = |op: Operation<'_>| {
            let message = t.encode(&op, &context()).unwrap();
            (
                message.path_and_query,
                String::from_utf8(message.body).unwrap(),
            )
        };
        assert_eq!(
            body(Operation::Refund(&refund)),
            (
                "/v1/refunds".into(),
                r#"{"provider_reference":"sbxpay_1","refund_id":"rf_1","amount":"20.00"}"#.into()
            )
        );
        assert_eq!(
            body(Operation::Payout(&payout)),
            ("/v1/payouts".into(), r#"{"payout_id":"po_1","amount":"123.45","currency":"EUR","method":"bank_transfer"}"#.into())
        );
        assert_eq!(
            body(Operation::Cancel("sbxpay_1")),
            ("/v1/payments/sbxpay_1/cancel".into(), "{}".into())
        );
    }

    #[test]
    fn references_that_could_escape_the_path_are_refused() {
        for reference in ["../admin", "a/b", "", "x?y"] {
            assert!(matches!(
                translator("").encode(&Operation::GetStatus(reference), &context()),
                Err(ProviderError::Protocol(_))
            ));
        }
    }

    #[test]
    fn a_pending_payment_with_a_page_starts_as_a_redirect() {
        let request = PaymentRequest {
            payment_id: "pay_1".into(),
            amount_minor: 1,
            currency: eur(),
            method: "card".into(),
            country: None,
            return_url: "http://r".into(),
            payment_method_token: None,
        };
        let op = Operation::StartPayment(&request);
        let decoded = translator("").decode(
            &op,
            answer(201, r#"{"provider_reference":"sbxpay_9","payment_id":"pay_1","status":"pending","redirect_url":"http://psp/pay/sbxpay_9"}"#),
        );
        assert_eq!(
            decoded,
            Ok(Outcome::Started(PaymentStarted {
                provider_reference: "sbxpay_9".into(),
                start: PaymentStart::Redirect {
                    url: "http://psp/pay/sbxpay_9".into()
                },
            }))
        );
        let declined = translator("").decode(
            &op,
            answer(
                201,
                r#"{"provider_reference":"sbxpay_9","status":"declined","redirect_url":null}"#,
            ),
        );
        assert!(matches!(
            declined,
            Ok(Outcome::Started(PaymentStarted {
                start: PaymentStart::Declined { .. },
                ..
            }))
        ));
        let no_page = translator("").decode(
            &op,
            answer(
                201,
                r#"{"provider_reference":"sbxpay_9","status":"pending"}"#,
            ),
        );
        assert!(matches!(no_page, Err(ProviderError::Protocol(_))));
    }

    #[test]
    fn a_status_answer_becomes_minor_units() {
        let decoded = translator("").decode(
            &Operation::GetStatus("sbxpay_1"),
            answer(200, r#"{"provider_reference":"sbxpay_1","payment_id":"pay_1","status":"partially_refunded","amount":"1500","currency":"JPY"}"#),
        );
        let Ok(Outcome::Status(report)) = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!(report.amount_minor, 1500);
        assert_eq!(report.status, ProviderPaymentStatus::PartiallyRefunded);
    }

    #[test]
    fn answers_map_to_typed_errors() {
        let rejected: Result<wire::CancelAnswer, _> = decode_answer(
            StatusCode::CONFLICT,
            br#"{"error":"invalid_state","message":"not pending"}"#,
        );
        assert_eq!(
            rejected.err(),
            Some(ProviderError::Rejected {
                code: "invalid_state".into(),
                message: "not pending".into()
            })
        );
        let bare: Result<wire::CancelAnswer, _> = decode_answer(StatusCode::NOT_FOUND, b"nope");
        assert!(matches!(bare, Err(ProviderError::Rejected { code, .. }) if code == "http_404"));
        let down: Result<wire::CancelAnswer, _> = decode_answer(StatusCode::BAD_GATEWAY, b"<html>");
        assert!(matches!(down, Err(ProviderError::Unavailable(_))));
        let garbage: Result<wire::CancelAnswer, _> = decode_answer(StatusCode::OK, b"<html>");
        assert!(matches!(garbage, Err(ProviderError::Protocol(_))));
        assert!(payment_status("settled").is_err());
        let refund = RefundRequest {
            provider_reference: "sbxpay_1".into(),
            refund_id: "rf_1".into(),
            amount_minor: 1,
            currency: eur(),
        };
        let other_refund = translator("").decode(
            &Operation::Refund(&refund),
            answer(
                201,
                r#"{"refund_id":"rf_2","provider_reference":"sbxpay_1","status":"pending"}"#,
            ),
        );
        assert!(matches!(other_refund, Err(ProviderError::Protocol(_))));
    }
}
