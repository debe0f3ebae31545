//! Adyen's wire format, pure: Checkout API v71 for payments and modifications, the Payout
//! API v68 (`storeDetailAndSubmitThirdParty`) for payouts.

use kassa_core::Currency;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::{refusal_reason, wire};
use crate::provider::{
    Capabilities, PaymentStart, PaymentStarted, PayoutAccepted, ProviderError,
    ProviderPaymentStatus, ProviderPayoutStatus, RefundAccepted,
};
use crate::translator::{CallContext, Operation, Outcome, ReplaySafety, Translator};
use crate::transport::{HttpRequest, HttpResponse};

/// The Checkout API version Kassa speaks.
pub const CHECKOUT_PATH: &str = "/v71";
/// The Payout API path Kassa's payouts go to.
pub const PAYOUT_PATH: &str = "/pal/servlet/Payout/v68/storeDetailAndSubmitThirdParty";
/// Kassa's method name of Adyen's `sepadirectdebit`: the IBAN comes from the cashier's
/// Drop-in, as its payment method token; there is no hosted page for it.
pub const SEPA_DIRECT_DEBIT: &str = "sepa_direct_debit";
/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header making a write safe to send again (Adyen answers the first result).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest piece of an unparseable answer quoted in an error.
const ANSWER_QUOTE_LEN_MAX: usize = 200;
/// Currencies Kassa's Adyen accounts take (Adyen takes more; these are Kassa's markets).
const CURRENCY_CODES: &[&str] = &[
    "EUR", "USD", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF",
    "RON", "BGN", "JPY", "BRL", "MXN", "ZAR", "TRY", "INR",
];

/// Builds Adyen's requests for one merchant account and reads its answers.
pub struct AdyenTranslator {
    api_key: SecretString,
    merchant_account: String,
    capabilities: Capabilities,
    /// The path before `/v71` on the Checkout host: empty on the test host, `/checkout` on a
    /// live one (`https://{prefix}-checkout-live.adyenpayments.com/checkout`).
    checkout_prefix: String,
    /// The Payout API's own host (`https://pal-test.adyen.com`, live
    /// `https://{prefix}-pal-live.adyenpayments.com`); empty: the Checkout host serves it
    /// (the simulator).
    payout_base: String,
}

impl AdyenTranslator {
    /// A translator calling as `merchant_account` with `api_key`.
    pub fn new(api_key: SecretString, merchant_account: &str) -> AdyenTranslator {
        AdyenTranslator {
            api_key,
            merchant_account: merchant_account.to_string(),
            capabilities: Capabilities {
                methods: vec!["card".into(), SEPA_DIRECT_DEBIT.into()],
                currencies: CURRENCY_CODES
                    .iter()
                    .map(|code| Currency::from_code(code).expect("Adyen currencies are known"))
                    .collect(),
                countries: Vec::new(),
                payouts: true,
                refunds: true,
            },
            checkout_prefix: String::new(),
            payout_base: String::new(),
        }
    }

    /// The same translator for an API on two hosts: Checkout calls under `checkout_prefix`
    /// (a path, no trailing slash), payouts at `payout_base` (`scheme://host[/path]`).
    pub fn with_hosts(mut self, checkout_prefix: &str, payout_base: &str) -> AdyenTranslator {
        self.checkout_prefix = checkout_prefix.trim_end_matches('/').to_string();
        self.payout_base = payout_base.trim_end_matches('/').to_string();
        self
    }

    /// A JSON `POST` with the API key and an idempotency key derived from Kassa's ids, so a
    /// retried attempt (same key) is answered, never acted on twice.
    fn post(
        &self,
        path: String,
        body: &impl serde::Serialize,
        idempotency_key: &str,
    ) -> Result<HttpRequest, ProviderError> {
        let header = |text: &str| {
            HeaderValue::from_str(text)
                .map_err(|_| ProviderError::Protocol("unsendable header value".into()))
        };
        let mut headers = HeaderMap::new();
        let mut key = header(self.api_key.expose_secret())?;
        key.set_sensitive(true);
        headers.insert(API_KEY_HEADER, key);
        headers.insert(IDEMPOTENCY_HEADER, header(idempotency_key)?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = serde_json::to_vec(body).map_err(|e| ProviderError::Protocol(e.to_string()))?;
        Ok(HttpRequest {
            method: Method::POST,
            path_and_query: path,
            headers,
            body,
        })
    }
}

fn amount(amount_minor: i64, currency: Currency) -> wire::Amount {
    wire::Amount {
        value: amount_minor,
        currency: currency.code().to_string(),
    }
}

impl Translator for AdyenTranslator {
    type Request = HttpRequest;
    type Response = HttpResponse;

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Every write carries an `Idempotency-Key` made of Kassa's id and the operation, so
    /// each is safe to send again.
    fn replay_safety(&self, _operation: &Operation<'_>) -> ReplaySafety {
        ReplaySafety::Safe
    }

    fn encode(
        &self,
        operation: &Operation<'_>,
        _context: &CallContext,
    ) -> Result<HttpRequest, ProviderError> {
        let merchant_account = self.merchant_account.as_str();
        match operation {
            Operation::StartPayment(request) => {
                let return_url = crate::translator::return_url_naming_payment(
                    &request.return_url,
                    &request.payment_id,
                );
                let body = wire::PaymentBody {
                    merchant_account,
                    amount: amount(request.amount_minor, request.currency),
                    reference: &request.payment_id,
                    payment_method: payment_method(
                        &request.method,
                        request.payment_method_token.as_ref(),
                    )?,
                    return_url: &return_url,
                    country_code: request.country.as_deref(),
                    shopper_interaction: "Ecommerce",
                    channel: "Web",
                };
                let key = format!("{}:payment", request.payment_id);
                self.post(
                    format!("{}{CHECKOUT_PATH}/payments", self.checkout_prefix),
                    &body,
                    &key,
                )
            }
            Operation::GetStatus(_) => Err(ProviderError::Unsupported(
                "status sync (Adyen has no payment lookup; notifications carry outcomes)",
            )),
            Operation::Cancel(reference) => {
                let path = format!(
                    "{}{CHECKOUT_PATH}/payments/{}/cancels",
                    self.checkout_prefix,
                    reference_segment(reference)?
                );
                let body = wire::CancelBody { merchant_account };
                self.post(path, &body, &format!("{reference}:cancel"))
            }
            Operation::Refund(request) => {
                let path = format!(
                    "{}{CHECKOUT_PATH}/payments/{}/refunds",
                    self.checkout_prefix,
                    reference_segment(&request.provider_reference)?
                );
                let body = wire::RefundBody {
                    merchant_account,
                    amount: amount(request.amount_minor, request.currency),
                    reference: &request.refund_id,
                };
                self.post(path, &body, &format!("{}:refund", request.refund_id))
            }
            Operation::Payout(request) => {
                let body = wire::PayoutBody {
                    merchant_account,
                    amount: amount(request.amount_minor, request.currency),
                    reference: &request.payout_id,
                    recurring: wire::Recurring { contract: "PAYOUT" },
                    shopper_reference: &request.payout_id,
                    selected_recurring_detail_reference: request.destination.as_deref(),
                };
                let key = format!("{}:payout", request.payout_id);
                self.post(format!("{}{PAYOUT_PATH}", self.payout_base), &body, &key)
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
                started(decode_answer(status, body)?).map(Outcome::Started)
            }
            Operation::GetStatus(_) => Err(ProviderError::Unsupported("status sync")),
            Operation::Cancel(_) => {
                let answer: wire::ModificationAnswer = decode_answer(status, body)?;
                received(&answer)?;
                // Received, not done: the CANCELLATION notification says how it ended.
                Ok(Outcome::Cancelled(ProviderPaymentStatus::Pending))
            }
            Operation::Refund(request) => {
                let answer: wire::ModificationAnswer = decode_answer(status, body)?;
                received(&answer)?;
                if answer.reference.as_deref() != Some(request.refund_id.as_str()) {
                    return Err(ProviderError::Protocol(format!(
                        "asked to refund {:?}, the answer is about {:?}",
                        request.refund_id, answer.reference
                    )));
                }
                Ok(Outcome::RefundAccepted(RefundAccepted {
                    refund_id: request.refund_id.clone(),
                    provider_reference: answer.payment_psp_reference,
                    settled: false,
                    reversal_advice_key: None,
                }))
            }
            Operation::Payout(_) => {
                let answer: wire::PayoutAnswer = decode_answer(status, body)?;
                if answer.result_code != "[payout-submit-received]" {
                    return Err(ProviderError::Protocol(format!(
                        "unknown payout resultCode {:?}",
                        answer.result_code
                    )));
                }
                Ok(Outcome::PayoutAccepted(PayoutAccepted {
                    provider_reference: answer.psp_reference,
                    status: ProviderPayoutStatus::Pending,
                    reversal_advice_key: None,
                }))
            }
        }
    }
}

fn received(answer: &wire::ModificationAnswer) -> Result<(), ProviderError> {
    if answer.status != "received" {
        return Err(ProviderError::Protocol(format!(
            "a modification answered status {:?}",
            answer.status
        )));
    }
    Ok(())
}

/// The `paymentMethod` of a start: the Drop-in's when the cashier sent one, else the scheme
/// (Adyen's hosted page asks for the card). A token that is not a JSON object with a `type`
/// is refused before anything is sent.
fn payment_method(
    method: &str,
    token: Option<&crate::PaymentMethodToken>,
) -> Result<wire::PaymentMethod, ProviderError> {
    let refused = |why: &str| ProviderError::Rejected {
        code: "invalid_payment_method_token".into(),
        message: format!("the Adyen payment method token {why}"),
    };
    let Some(token) = token else {
        return match method {
            SEPA_DIRECT_DEBIT => Err(refused("is required for a SEPA direct debit")),
            _ => Ok(wire::PaymentMethod::Scheme { kind: "scheme" }),
        };
    };
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(token.expose()).map_err(|_| refused("is not a JSON object"))?;
    match object.get("type") {
        Some(serde_json::Value::String(kind)) if !kind.is_empty() => {
            Ok(wire::PaymentMethod::FromDropIn(object))
        }
        _ => Err(refused("has no `type`")),
    }
}

/// A payment answer's `resultCode` (and `action`) as the player's next step.
fn started(answer: wire::PaymentAnswer) -> Result<PaymentStarted, ProviderError> {
    let provider_reference = answer
        .psp_reference
        .filter(|reference| !reference.is_empty())
        .ok_or_else(|| ProviderError::Protocol("a payment answer without pspReference".into()))?;
    let action_url = |wanted: &str| match &answer.action {
        Some(action) if action.kind == wanted => match (&action.url, action.method.as_deref()) {
            (Some(url), None | Some("GET")) => Ok(url.clone()),
            _ => Err(ProviderError::Protocol(format!(
                "a {wanted} action Kassa cannot follow (no url, or not a GET)"
            ))),
        },
        _ => Err(ProviderError::Protocol(format!(
            "resultCode {:?} without a {wanted} action",
            answer.result_code
        ))),
    };
    let start = match answer.result_code.as_str() {
        "Authorised" => PaymentStart::Authorized,
        "Refused" => PaymentStart::Declined {
            reason: Some(refusal_reason(
                answer.refusal_reason.as_deref().unwrap_or("Refused"),
            )),
        },
        // Adyen could not process it at all: a technical failure another provider may not
        // have, so a soft reason.
        "Error" => PaymentStart::Declined {
            reason: Some("technical_error".into()),
        },
        "Cancelled" => PaymentStart::Declined {
            reason: Some("cancelled".into()),
        },
        "RedirectShopper" => PaymentStart::Redirect {
            url: action_url("redirect")?,
        },
        // Pending with a redirect is a bank's page; without one (a debit, a voucher being
        // processed) the outcome comes by the AUTHORISATION notification.
        "Pending" | "Received" => match &answer.action {
            Some(_) => PaymentStart::Redirect {
                url: action_url("redirect")?,
            },
            None => PaymentStart::Processing,
        },
        "ChallengeShopper" | "IdentifyShopper" => PaymentStart::Challenge {
            url: action_url("threeDS2")?,
        },
        other => {
            return Err(ProviderError::Protocol(format!(
                "unknown resultCode {other:?}"
            )))
        }
    };
    Ok(PaymentStarted {
        provider_reference,
        start,
    })
}

fn quote(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .chars()
        .take(ANSWER_QUOTE_LEN_MAX)
        .collect()
}

/// A 2xx body as `T`; Adyen's error object as [`ProviderError::Rejected`]; 5xx unavailable.
fn decode_answer<T: DeserializeOwned>(
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
            code: error.error_code,
            message: error.message,
        }),
        Err(_) => Err(ProviderError::Rejected {
            code: format!("http_{}", status.as_u16()),
            message: quote(answer),
        }),
    }
}

/// Path segment for a pspReference, refusing anything that could escape the path.
fn reference_segment(psp_reference: &str) -> Result<&str, ProviderError> {
    if psp_reference.is_empty() || !psp_reference.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ProviderError::Protocol(format!(
            "{psp_reference:?} is not an Adyen pspReference"
        )));
    }
    Ok(psp_reference)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{PaymentRequest, PayoutRequest, RefundRequest};

    fn translator() -> AdyenTranslator {
        AdyenTranslator::new(SecretString::from("AQE-key"), "KassaECOM")
    }

    fn context() -> CallContext {
        CallContext {
            now_unix_s: 1,
            nonce: "n".into(),
            attempt: 2,
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

    fn request() -> PaymentRequest {
        PaymentRequest {
            payment_id: "pay_1".into(),
            amount_minor: 5000,
            currency: eur(),
            method: "card".into(),
            country: Some("MT".into()),
            return_url: "https://kassa/r".into(),
            payment_method_token: None,
        }
    }

    fn start(body: &str) -> Result<Outcome, ProviderError> {
        translator().decode(&Operation::StartPayment(&request()), answer(200, body))
    }

    #[test]
    fn a_payment_request_is_exactly_these_bytes_with_the_key_headers() {
        let message = translator()
            .encode(&Operation::StartPayment(&request()), &context())
            .unwrap();
        assert_eq!(message.method, Method::POST);
        assert_eq!(message.path_and_query, "/v71/payments");
        assert_eq!(
            String::from_utf8(message.body).unwrap(),
            r#"{"merchantAccount":"KassaECOM","amount":{"value":5000,"currency":"EUR"},"reference":"pay_1","paymentMethod":{"type":"scheme"},"returnUrl":"https://kassa/r?payment_id=pay_1","countryCode":"MT","shopperInteraction":"Ecommerce","channel":"Web"}"#
        );
        assert_eq!(message.headers["x-api-key"], "AQE-key");
        assert!(message.headers["x-api-key"].is_sensitive());
        // The same on every attempt: a retry is answered, never charged again.
        assert_eq!(message.headers["idempotency-key"], "pay_1:payment");
    }

    #[test]
    fn a_live_account_calls_checkout_under_its_prefix_and_payouts_on_their_own_host() {
        let live = translator().with_hosts("/checkout/", "https://x-pal-live.adyenpayments.com");
        let start = live
            .encode(&Operation::StartPayment(&request()), &context())
            .unwrap();
        assert_eq!(start.path_and_query, "/checkout/v71/payments");
        let payout = PayoutRequest {
            payout_id: "po_1".into(),
            amount_minor: 100,
            method: "card".into(),
            currency: eur(),
            destination: Some("8415".into()),
        };
        let sent = live
            .encode(&Operation::Payout(&payout), &context())
            .unwrap();
        assert_eq!(
            sent.path_and_query,
            format!("https://x-pal-live.adyenpayments.com{PAYOUT_PATH}")
        );
    }

    #[test]
    fn modifications_and_payouts_are_exact() {
        let t = translator();
        let refund = RefundRequest {
            provider_reference: "PSP0000000000001".into(),
            refund_id: "rf_1".into(),
            amount_minor: 2000,
            currency: eur(),
        };
        let payout = PayoutRequest {
            payout_id: "po_1".into(),
            amount_minor: 12345,
            currency: eur(),
            method: "card".into(),
            destination: None,
        };
        let sent = |op: Operation<'_>| {
            let message = t.encode(&op, &context()).unwrap();
            (
                message.path_and_query,
                String::from_utf8(message.body).unwrap(),
                message.headers["idempotency-key"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(
            sent(Operation::Refund(&refund)),
            (
                "/v71/payments/PSP0000000000001/refunds".into(),
                r#"{"merchantAccount":"KassaECOM","amount":{"value":2000,"currency":"EUR"},"reference":"rf_1"}"#.into(),
                "rf_1:refund".into()
            )
        );
        assert_eq!(
            sent(Operation::Cancel("PSP0000000000001")),
            (
                "/v71/payments/PSP0000000000001/cancels".into(),
                r#"{"merchantAccount":"KassaECOM"}"#.into(),
                "PSP0000000000001:cancel".into()
            )
        );
        assert_eq!(
            sent(Operation::Payout(&payout)),
            (
                PAYOUT_PATH.into(),
                r#"{"merchantAccount":"KassaECOM","amount":{"value":12345,"currency":"EUR"},"reference":"po_1","recurring":{"contract":"PAYOUT"},"shopperReference":"po_1"}"#.into(),
                "po_1:payout".into()
            )
        );
        for bad in ["../x", "", "a/b"] {
            assert!(t.encode(&Operation::Cancel(bad), &context()).is_err());
        }
        assert_eq!(
            t.encode(&Operation::GetStatus("PSP1"), &context()).err(),
            Some(ProviderError::Unsupported(
                "status sync (Adyen has no payment lookup; notifications carry outcomes)"
            ))
        );
        let accepted = t.decode(
            &Operation::Refund(&refund),
            answer(201, r#"{"merchantAccount":"KassaECOM","paymentPspReference":"PSP0000000000001","pspReference":"RF00000000000001","reference":"rf_1","status":"received","amount":{"value":2000,"currency":"EUR"}}"#),
        );
        assert_eq!(
            accepted,
            Ok(Outcome::RefundAccepted(RefundAccepted {
                refund_id: "rf_1".into(),
                provider_reference: "PSP0000000000001".into(),
                settled: false,
                reversal_advice_key: None,
            }))
        );
    }

    #[test]
    fn result_codes_become_the_players_next_step() {
        let started = |body: &str| match start(body) {
            Ok(Outcome::Started(started)) => started.start,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            started(r#"{"pspReference":"P1","resultCode":"Authorised"}"#),
            PaymentStart::Authorized
        );
        assert_eq!(
            started(
                r#"{"pspReference":"P1","resultCode":"RedirectShopper","action":{"type":"redirect","method":"GET","url":"https://hpp/1"}}"#
            ),
            PaymentStart::Redirect {
                url: "https://hpp/1".into()
            }
        );
        assert_eq!(
            started(
                r#"{"pspReference":"P1","resultCode":"ChallengeShopper","action":{"type":"threeDS2","subtype":"challenge","token":"t","url":"https://acs/1"}}"#
            ),
            PaymentStart::Challenge {
                url: "https://acs/1".into()
            }
        );
        let declined = |reason: &str| {
            started(&format!(
                r#"{{"pspReference":"P1","resultCode":"Refused","refusalReason":"{reason}","refusalReasonCode":"2"}}"#
            ))
        };
        let reason = |text: &str| PaymentStart::Declined {
            reason: Some(text.into()),
        };
        assert_eq!(declined("Not enough balance"), reason("insufficient_funds"));
        assert_eq!(declined("Stolen Card"), reason("stolen_card"));
        assert_eq!(declined("Acquirer Error"), reason("acquirer_unavailable"));
        assert_eq!(declined("Issuer Unavailable"), reason("issuer_unavailable"));
        assert_eq!(declined("Refused"), reason("refused"));
        assert_eq!(declined("Some New Reason"), reason("some_new_reason"));
        assert_eq!(
            started(r#"{"pspReference":"P1","resultCode":"Error"}"#),
            reason("technical_error")
        );
        assert!(start(r#"{"resultCode":"Authorised"}"#).is_err());
        assert!(start(r#"{"pspReference":"P1","resultCode":"RedirectShopper","action":{"type":"redirect","method":"POST","url":"u"}}"#).is_err());
        assert!(start(r#"{"pspReference":"P1","resultCode":"ChallengeShopper"}"#).is_err());
        assert!(start(r#"{"pspReference":"P1","resultCode":"Maybe"}"#).is_err());
        for code in ["Received", "Pending"] {
            let bare = format!(r#"{{"pspReference":"P1","resultCode":"{code}"}}"#);
            assert_eq!(started(&bare), PaymentStart::Processing, "{code}");
        }
        assert_eq!(
            started(
                r#"{"pspReference":"P1","resultCode":"Pending","action":{"type":"redirect","method":"GET","url":"https://bank/1"}}"#
            ),
            PaymentStart::Redirect {
                url: "https://bank/1".into()
            }
        );
    }

    #[test]
    fn a_drop_in_payment_method_travels_as_it_came_and_a_malformed_one_is_refused() {
        let mut request = request();
        request.payment_method_token = crate::PaymentMethodToken::parse(
            r#"{"type":"scheme","encryptedCardNumber":"test_4111111111111111","encryptedSecurityCode":"test_737"}"#,
        );
        let message = translator()
            .encode(&Operation::StartPayment(&request), &context())
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(
            body["paymentMethod"],
            serde_json::json!({"type":"scheme","encryptedCardNumber":"test_4111111111111111","encryptedSecurityCode":"test_737"})
        );
        for bad in [
            "pm_123",
            "[1]",
            r#"{"encryptedCardNumber":"x"}"#,
            r#"{"type":""}"#,
        ] {
            request.payment_method_token = crate::PaymentMethodToken::parse(bad);
            let refused = translator().encode(&Operation::StartPayment(&request), &context());
            assert!(
                matches!(refused, Err(ProviderError::Rejected { ref code, .. }) if code == "invalid_payment_method_token"),
                "{bad}: {refused:?}"
            );
        }
    }

    #[test]
    fn adyen_errors_are_rejections_and_5xx_is_unavailable() {
        let request = request();
        let op = &Operation::StartPayment(&request);
        let rejected = translator().decode(
            op,
            answer(422, r#"{"status":422,"errorCode":"130","message":"Required field 'reference' is not provided.","errorType":"validation"}"#),
        );
        assert_eq!(
            rejected,
            Err(ProviderError::Rejected {
                code: "130".into(),
                message: "Required field 'reference' is not provided.".into()
            })
        );
        let down = translator().decode(op, answer(500, r#"{"status":500}"#));
        assert!(matches!(down, Err(ProviderError::Unavailable(_))));
        let bare = translator().decode(op, answer(401, ""));
        assert!(matches!(bare, Err(ProviderError::Rejected { code, .. }) if code == "http_401"));
    }
}
