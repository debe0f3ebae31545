//! Connector for Kassa's sandbox PSP (`kassa-sim`), a REST PSP with a hosted card page,
//! 3-D Secure and signed webhooks. See `docs/sandbox-psp.md` for the protocol.

mod wire;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use kassa_core::Currency;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::{ProviderEvent, WebhookError};
use crate::provider::{
    Capabilities, PaymentProvider, PaymentRequest, PaymentSession, PaymentStatusReport,
    PayoutAccepted, PayoutRequest, ProviderError, ProviderPaymentStatus, ProviderPayoutStatus,
    RefundAccepted, RefundRequest,
};
use crate::signing::{self, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::webhook;

/// Largest answer body read from the sandbox; real answers are a few hundred bytes.
const ANSWER_LEN_MAX: usize = 256 * 1024;
/// Longest piece of an unparseable answer quoted in an error.
const ANSWER_QUOTE_LEN_MAX: usize = 200;
/// Fiat currencies the sandbox's card scheme settles in.
const CURRENCY_CODES: &[&str] = &[
    "EUR", "USD", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF",
    "RON", "BGN", "JPY", "BRL", "MXN", "ZAR", "TRY", "INR",
];

/// Where the sandbox PSP is and the secrets shared with it.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The sandbox's base URL, e.g. `http://127.0.0.1:8090`.
    pub base_url: String,
    /// Key of the HMAC on every request Kassa sends.
    pub api_secret: String,
    /// Key of the HMAC on every webhook the sandbox sends.
    pub webhook_secret: String,
    /// Timeout of one call, connection included.
    pub timeout_ms: u64,
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("base_url", &self.base_url)
            .field("api_secret", &"[redacted]")
            .field("webhook_secret", &"[redacted]")
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Why a [`SandboxConfig`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SandboxConfigError {
    /// `base_url` is not an absolute http(s) URL.
    #[error("sandbox base_url {0:?} is not an http(s) URL")]
    BaseUrl(String),
    /// A secret is empty, which would make every signature forgeable.
    #[error("sandbox {0} must not be empty")]
    EmptySecret(&'static str),
    /// A zero timeout would fail every call.
    #[error("sandbox timeout_ms must be greater than zero")]
    ZeroTimeout,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Talks to the sandbox PSP over HTTP, signing every request.
pub struct SandboxConnector {
    name: String,
    base_url: Url,
    config: SandboxConfig,
    client: reqwest::Client,
    capabilities: Capabilities,
}

impl fmt::Debug for SandboxConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConnector")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

impl SandboxConnector {
    /// The name the sandbox registers under by default.
    pub const NAME: &'static str = "sandbox";

    /// A connector named [`SandboxConnector::NAME`].
    pub fn new(config: SandboxConfig) -> Result<SandboxConnector, SandboxConfigError> {
        SandboxConnector::named(Self::NAME, config)
    }

    /// A connector under another name, e.g. a second sandbox acting as the backup route.
    pub fn named(
        name: &str,
        config: SandboxConfig,
    ) -> Result<SandboxConnector, SandboxConfigError> {
        let mut base_url = Url::parse(&config.base_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| SandboxConfigError::BaseUrl(config.base_url.clone()))?;
        // A trailing slash makes `join` keep a path prefix such as `/psp` instead of replacing it.
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        if config.api_secret.is_empty() {
            return Err(SandboxConfigError::EmptySecret("api_secret"));
        }
        if config.webhook_secret.is_empty() {
            return Err(SandboxConfigError::EmptySecret("webhook_secret"));
        }
        if config.timeout_ms == 0 {
            return Err(SandboxConfigError::ZeroTimeout);
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would carry a signed request somewhere it was not meant for.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| SandboxConfigError::Client(error.to_string()))?;
        let capabilities = Capabilities {
            methods: vec!["card".into()],
            currencies: CURRENCY_CODES
                .iter()
                .map(|code| Currency::from_code(code).expect("sandbox currencies are known"))
                .collect(),
            countries: Vec::new(),
            payouts: true,
            refunds: true,
        };
        Ok(SandboxConnector {
            name: name.to_string(),
            base_url,
            config,
            client,
            capabilities,
        })
    }

    /// Sends one signed request and decodes a 2xx answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ProviderError> {
        let url = self
            .base_url
            .join(path.trim_start_matches('/'))
            .map_err(|error| ProviderError::Protocol(format!("bad path {path:?}: {error}")))?;
        let body_bytes = match body {
            Some(body) => serde_json::to_vec(body)
                .map_err(|error| ProviderError::Protocol(error.to_string()))?,
            None => Vec::new(),
        };
        let signed_path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let timestamp_unix_s = time::OffsetDateTime::now_utc().unix_timestamp();
        let nonce = signing::new_nonce();
        let signature = signing::sign_request(
            self.config.api_secret.as_bytes(),
            method.as_str(),
            &signed_path,
            timestamp_unix_s,
            &nonce,
            &body_bytes,
        );
        let mut request = self
            .client
            .request(method.clone(), url)
            .header(TIMESTAMP_HEADER, timestamp_unix_s.to_string())
            .header(NONCE_HEADER, nonce)
            .header(SIGNATURE_HEADER, signature);
        if body.is_some() {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body_bytes);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let answer = read_limited(response).await?;
        tracing::debug!(provider = %self.name, %method, path, %status, "sandbox call");
        decode_answer(status, &answer)
    }
}

fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Unavailable(error.to_string())
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut answer = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if answer.len() + chunk.len() > ANSWER_LEN_MAX {
            return Err(ProviderError::Protocol(format!(
                "answer is larger than {ANSWER_LEN_MAX} bytes"
            )));
        }
        answer.extend_from_slice(&chunk);
    }
    Ok(answer)
}

fn quote(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.chars().take(ANSWER_QUOTE_LEN_MAX).collect()
}

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
            code: error.error,
            message: error.message,
        }),
        Err(_) => Err(ProviderError::Rejected {
            code: format!("http_{}", status.as_u16()),
            message: quote(answer),
        }),
    }
}

fn payment_status(text: &str) -> Result<ProviderPaymentStatus, ProviderError> {
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

#[async_trait]
impl PaymentProvider for SandboxConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn init_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<PaymentSession, ProviderError> {
        let body = wire::InitPaymentBody {
            payment_id: &request.payment_id,
            amount: request.currency.format_minor(request.amount_minor),
            currency: request.currency.code(),
            method: &request.method,
            country: request.country.as_deref(),
            return_url: &request.return_url,
        };
        let answer: wire::InitPaymentAnswer =
            self.call(Method::POST, "/v1/payments", Some(&body)).await?;
        Ok(PaymentSession {
            provider_reference: answer.provider_reference,
            status: payment_status(&answer.status)?,
            redirect_url: answer.redirect_url,
        })
    }

    async fn get_status(
        &self,
        provider_reference: &str,
    ) -> Result<PaymentStatusReport, ProviderError> {
        let path = format!("/v1/payments/{}", reference_segment(provider_reference)?);
        let answer: wire::PaymentAnswer = self.call(Method::GET, &path, None::<&()>).await?;
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

    async fn cancel(
        &self,
        provider_reference: &str,
    ) -> Result<ProviderPaymentStatus, ProviderError> {
        let path = format!(
            "/v1/payments/{}/cancel",
            reference_segment(provider_reference)?
        );
        let answer: wire::CancelAnswer = self
            .call(Method::POST, &path, Some(&serde_json::Map::new()))
            .await?;
        payment_status(&answer.status)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundAccepted, ProviderError> {
        let body = wire::RefundBody {
            provider_reference: &request.provider_reference,
            refund_id: &request.refund_id,
            amount: request.currency.format_minor(request.amount_minor),
        };
        let answer: wire::RefundAnswer =
            self.call(Method::POST, "/v1/refunds", Some(&body)).await?;
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
        Ok(RefundAccepted {
            refund_id: answer.refund_id,
            provider_reference: answer.provider_reference,
        })
    }

    async fn payout(&self, request: &PayoutRequest) -> Result<PayoutAccepted, ProviderError> {
        let body = wire::PayoutBody {
            payout_id: &request.payout_id,
            amount: request.currency.format_minor(request.amount_minor),
            currency: request.currency.code(),
            method: &request.method,
            destination: request.destination.as_deref(),
        };
        let answer: wire::PayoutAnswer =
            self.call(Method::POST, "/v1/payouts", Some(&body)).await?;
        Ok(PayoutAccepted {
            provider_reference: answer.provider_reference,
            status: payout_status(&answer.status)?,
        })
    }

    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        raw_body: &[u8],
        now_unix_s: i64,
    ) -> Result<ProviderEvent, WebhookError> {
        webhook::verify_signed_webhook(
            self.config.webhook_secret.as_bytes(),
            headers,
            raw_body,
            now_unix_s,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn config(base_url: &str, timeout_ms: u64) -> SandboxConfig {
        SandboxConfig {
            base_url: base_url.into(),
            api_secret: "api-secret-value".into(),
            webhook_secret: "webhook-secret-value".into(),
            timeout_ms,
        }
    }

    #[test]
    fn debug_output_never_shows_the_secrets() {
        let connector = SandboxConnector::new(config("http://127.0.0.1:9", 1000)).unwrap();
        let shown = format!("{connector:?} {:?}", config("http://x", 1));
        assert!(!shown.contains("api-secret-value"), "{shown}");
        assert!(!shown.contains("webhook-secret-value"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn unusable_configs_are_refused() {
        assert!(matches!(
            SandboxConnector::new(config("not a url", 1000)),
            Err(SandboxConfigError::BaseUrl(_))
        ));
        assert!(matches!(
            SandboxConnector::new(config("ftp://host", 1000)),
            Err(SandboxConfigError::BaseUrl(_))
        ));
        assert_eq!(
            SandboxConnector::new(config("http://h", 0)).unwrap_err(),
            SandboxConfigError::ZeroTimeout
        );
        let mut no_secret = config("http://h", 1);
        no_secret.webhook_secret.clear();
        assert_eq!(
            SandboxConnector::new(no_secret).unwrap_err(),
            SandboxConfigError::EmptySecret("webhook_secret")
        );
    }

    #[test]
    fn the_connector_verifies_webhooks_with_its_webhook_secret() {
        let connector = SandboxConnector::new(config("http://h", 1000)).unwrap();
        let body = br#"{"event_id":"e","payout_id":"po_1","status":"paid","amount":"1.00","currency":"EUR","timestamp":"2025-10-17T09:41:00Z"}"#;
        let mut headers = HeaderMap::new();
        let signature = webhook::sign_webhook(b"webhook-secret-value", body);
        headers.insert("X-Signature", HeaderValue::from_str(&signature).unwrap());
        assert!(connector
            .verify_webhook(&headers, body, 1_760_694_060)
            .is_ok());
        let signature = webhook::sign_webhook(b"api-secret-value", body);
        headers.insert("X-Signature", HeaderValue::from_str(&signature).unwrap());
        assert_eq!(
            connector.verify_webhook(&headers, body, 1_760_694_060),
            Err(WebhookError::InvalidSignature)
        );
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
    }

    #[tokio::test]
    async fn a_provider_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts the connection, reads the request, never answers.
        let silent = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = socket.shutdown().await;
        });
        let connector = SandboxConnector::new(config(&format!("http://{address}"), 150)).unwrap();
        let started = std::time::Instant::now();
        let result = connector.get_status("sbxpay_1").await;
        assert_eq!(result, Err(ProviderError::Timeout));
        assert!(started.elapsed() < Duration::from_secs(2));
        silent.abort();
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_unavailable() {
        // Bind then drop, so the port is (almost certainly) closed.
        let address = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let connector = SandboxConnector::new(config(&format!("http://{address}"), 1000)).unwrap();
        let result = connector.get_status("sbxpay_1").await;
        assert!(
            matches!(result, Err(ProviderError::Unavailable(_))),
            "{result:?}"
        );
        assert!(result.unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn references_that_could_escape_the_path_are_refused() {
        let connector = SandboxConnector::new(config("http://127.0.0.1:9", 1000)).unwrap();
        for reference in ["../admin", "a/b", "", "x?y"] {
            assert!(matches!(
                connector.get_status(reference).await,
                Err(ProviderError::Protocol(_))
            ));
        }
    }
}
