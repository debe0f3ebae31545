//! Connector for Kassa's sandbox PSP (`kassa-sim`), a REST PSP with a hosted card page,
//! 3-D Secure and signed webhooks. See `docs/sandbox-psp.md` for the protocol.
//!
//! Its three parts: [`SandboxTranslator`] (signed JSON, pure), the shared
//! [`HttpTransport`], and [`SandboxWebhookSource`] (HMAC-signed JSON webhooks).

mod inbound;
mod translator;
mod wire;

use std::fmt;

use reqwest::Url;
use secrecy::SecretString;

pub use self::inbound::SandboxWebhookSource;
pub use self::translator::SandboxTranslator;
use crate::account::{AccountError, ProviderAccount};
use crate::connector::Connector;
use crate::transport::{HttpTransport, HttpTransportConfig, TransportConfigError};

/// The account kind of the sandbox PSP.
pub const KIND: &str = "sandbox";
/// Largest answer body read from the sandbox; real answers are a few hundred bytes.
const ANSWER_LEN_MAX: usize = 256 * 1024;
/// Attempts per call unless the account says otherwise: one retry rides out a blip.
const ATTEMPTS_MAX_DEFAULT: u32 = 2;
/// Wait before a retry unless the account says otherwise.
const RETRY_BACKOFF_MS_DEFAULT: u64 = 100;
/// Call timeout unless the account says otherwise.
const TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Where the sandbox PSP is and the secrets shared with it.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The sandbox's base URL, e.g. `http://127.0.0.1:8090` (a path prefix is kept).
    pub base_url: String,
    /// Key of the HMAC on every request Kassa sends.
    pub api_secret: SecretString,
    /// Key of the HMAC on every webhook the sandbox sends.
    pub webhook_secret: SecretString,
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
    /// The retry settings are out of range.
    #[error("sandbox transport: {0}")]
    Transport(TransportConfigError),
}

impl From<TransportConfigError> for SandboxConfigError {
    fn from(error: TransportConfigError) -> SandboxConfigError {
        match error {
            TransportConfigError::BaseUrl(url) => SandboxConfigError::BaseUrl(url),
            TransportConfigError::ZeroTimeout => SandboxConfigError::ZeroTimeout,
            TransportConfigError::Client(why) => SandboxConfigError::Client(why),
            other => SandboxConfigError::Transport(other),
        }
    }
}

/// How often and how patiently to retry a call the translator says is safe to repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub attempts_max: u32,
    /// Wait before the first retry.
    pub retry_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            retry_backoff_ms: RETRY_BACKOFF_MS_DEFAULT,
        }
    }
}

/// The sandbox PSP's connector: its translator over HTTP, its webhooks as inbound source.
pub type SandboxConnector = Connector<SandboxTranslator, HttpTransport, SandboxWebhookSource>;

impl Connector<SandboxTranslator, HttpTransport, SandboxWebhookSource> {
    /// The account id the sandbox registers under by default.
    pub const NAME: &'static str = "sandbox";

    /// A connector named [`SandboxConnector::NAME`].
    pub fn new(config: SandboxConfig) -> Result<SandboxConnector, SandboxConfigError> {
        SandboxConnector::named(Self::NAME, config)
    }

    /// A connector under another account id, e.g. a second sandbox acting as the backup route.
    pub fn named(
        name: &str,
        config: SandboxConfig,
    ) -> Result<SandboxConnector, SandboxConfigError> {
        SandboxConnector::with_retries(name, config, RetryPolicy::default())
    }

    /// A connector with its own retry policy.
    pub fn with_retries(
        name: &str,
        config: SandboxConfig,
        retries: RetryPolicy,
    ) -> Result<SandboxConnector, SandboxConfigError> {
        use secrecy::ExposeSecret;
        let base_url = Url::parse(&config.base_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| SandboxConfigError::BaseUrl(config.base_url.clone()))?;
        if config.api_secret.expose_secret().is_empty() {
            return Err(SandboxConfigError::EmptySecret("api_secret"));
        }
        if config.webhook_secret.expose_secret().is_empty() {
            return Err(SandboxConfigError::EmptySecret("webhook_secret"));
        }
        let transport = HttpTransport::new(HttpTransportConfig {
            base_url: config.base_url.clone(),
            timeout_ms: config.timeout_ms,
            attempts_max: retries.attempts_max,
            retry_backoff_ms: retries.retry_backoff_ms,
            response_len_max: ANSWER_LEN_MAX,
            other_origins: Vec::new(),
        })?;
        Ok(Connector::compose(
            name,
            SandboxTranslator::new(config.api_secret, base_url.path()),
            transport,
            SandboxWebhookSource::new(config.webhook_secret),
        ))
    }
}

/// Builds the sandbox connector of a provider account: credentials `api_secret` and
/// `webhook_secret`; settings `base_url` (required), `timeout_ms`, `attempts_max`,
/// `retry_backoff_ms`.
pub fn from_account(account: &ProviderAccount) -> Result<SandboxConnector, AccountError> {
    let base_url = account.setting_str("base_url", "")?;
    let invalid = |name: &str, why: String| AccountError::InvalidSetting {
        account: account.id.clone(),
        name: name.to_string(),
        why,
    };
    if base_url.is_empty() {
        return Err(invalid("base_url", "is required".into()));
    }
    let attempts_max = account.setting_u64("attempts_max", ATTEMPTS_MAX_DEFAULT.into())?;
    let config = SandboxConfig {
        base_url: base_url.to_string(),
        api_secret: account.credential("api_secret")?.clone(),
        webhook_secret: account.credential("webhook_secret")?.clone(),
        timeout_ms: account.setting_u64("timeout_ms", TIMEOUT_MS_DEFAULT)?,
    };
    let retries = RetryPolicy {
        attempts_max: u32::try_from(attempts_max).unwrap_or(u32::MAX),
        retry_backoff_ms: account.setting_u64("retry_backoff_ms", RETRY_BACKOFF_MS_DEFAULT)?,
    };
    SandboxConnector::with_retries(&account.id, config, retries)
        .map_err(|error| invalid("connector", error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{PaymentProvider, ProviderError};
    use crate::webhook;
    use crate::{HeaderMap, WebhookError};
    use reqwest::header::HeaderValue;
    use std::time::Duration;
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
        no_secret.webhook_secret = SecretString::from("");
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

    fn account(settings: serde_json::Value) -> ProviderAccount {
        let mut credentials = crate::account::Credentials::new();
        credentials.insert("api_secret", SecretString::from("api-secret-value"));
        credentials.insert("webhook_secret", SecretString::from("webhook-secret-value"));
        ProviderAccount {
            id: "sandbox-b".into(),
            merchant_id: "mch_demo".into(),
            kind: KIND.into(),
            display_name: "Backup sandbox".into(),
            credentials,
            settings: settings.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn an_account_becomes_a_connector_under_its_id_with_its_settings() {
        let connector = from_account(&account(serde_json::json!({
            "base_url": "http://127.0.0.1:9/psp", "timeout_ms": 1234, "attempts_max": 3
        })))
        .unwrap();
        assert_eq!(connector.name(), "sandbox-b");
        assert_eq!(connector.transport().config().timeout_ms, 1234);
        assert_eq!(connector.transport().config().attempts_max, 3);
        let no_url = from_account(&account(serde_json::json!({}))).unwrap_err();
        assert!(
            matches!(no_url, AccountError::InvalidSetting { ref name, .. } if name == "base_url")
        );
        let too_many = from_account(&account(serde_json::json!({
            "base_url": "http://h", "attempts_max": 99
        })));
        assert!(too_many.is_err());
        let mut no_secret = account(serde_json::json!({"base_url": "http://h"}));
        no_secret
            .credentials
            .insert("api_secret", SecretString::from(""));
        assert!(matches!(
            from_account(&no_secret),
            Err(AccountError::MissingCredential { .. })
        ));
    }
}
