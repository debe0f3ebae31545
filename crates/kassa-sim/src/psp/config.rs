//! The sandbox PSP's settings.

use std::fmt;

/// The API secret both sides use when none is configured; a sandbox is not a secret keeper.
pub const DEFAULT_API_SECRET: &str = "sandbox-api-secret";
/// The webhook secret both sides use when none is configured.
pub const DEFAULT_WEBHOOK_SECRET: &str = "sandbox-webhook-secret";

/// How the sandbox PSP listens, signs and misbehaves.
#[derive(Clone)]
pub struct SandboxPspConfig {
    /// Address to bind, e.g. `127.0.0.1:8090`, or `127.0.0.1:0` for any free port.
    pub listen: String,
    /// Base URL players' browsers reach the sandbox at, when it differs from `listen`
    /// (a container, a proxy). The hosted page's `redirect_url` is built from it.
    pub public_base_url: Option<String>,
    /// Key of the HMAC the sandbox checks on every API request.
    pub api_secret: String,
    /// Key of the HMAC on every webhook the sandbox sends.
    pub webhook_secret: String,
    /// Where webhooks go (Kassa's `/v1/payments/webhook`); `None` sends none.
    pub webhook_url: Option<String>,
    /// Wait between an outcome and its webhook.
    pub webhook_delay_ms: u64,
    /// Wait before the "approved after delay" test card is approved.
    pub slow_approval_delay_ms: u64,
    /// Deliver every webhook twice, with the same event id.
    pub duplicate_webhooks: bool,
    /// Deliver the events of one outcome in reverse order (`captured` before `authorized`).
    pub out_of_order_webhooks: bool,
    /// When false, the sandbox never sends a webhook by itself (only `/sandbox/` commands do).
    pub autopilot: bool,
    /// Attempts per webhook delivery before giving up, the first included.
    pub webhook_attempts_max: u32,
    /// Wait before the first retry; doubles with every retry.
    pub webhook_retry_backoff_ms: u64,
    /// Timeout of one webhook delivery attempt.
    pub webhook_timeout_ms: u64,
    /// How payment starts misbehave (latency, declines, errors, outage).
    pub behaviour: super::Behaviour,
}

impl Default for SandboxPspConfig {
    fn default() -> SandboxPspConfig {
        SandboxPspConfig {
            listen: "127.0.0.1:8090".into(),
            public_base_url: None,
            api_secret: DEFAULT_API_SECRET.into(),
            webhook_secret: DEFAULT_WEBHOOK_SECRET.into(),
            webhook_url: None,
            webhook_delay_ms: 200,
            slow_approval_delay_ms: 5000,
            duplicate_webhooks: false,
            out_of_order_webhooks: false,
            autopilot: true,
            webhook_attempts_max: 5,
            webhook_retry_backoff_ms: 500,
            webhook_timeout_ms: 5000,
            behaviour: super::Behaviour::default(),
        }
    }
}

impl fmt::Debug for SandboxPspConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxPspConfig")
            .field("listen", &self.listen)
            .field("public_base_url", &self.public_base_url)
            .field("api_secret", &"[redacted]")
            .field("webhook_secret", &"[redacted]")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_delay_ms", &self.webhook_delay_ms)
            .field("slow_approval_delay_ms", &self.slow_approval_delay_ms)
            .field("duplicate_webhooks", &self.duplicate_webhooks)
            .field("out_of_order_webhooks", &self.out_of_order_webhooks)
            .field("autopilot", &self.autopilot)
            .field("webhook_attempts_max", &self.webhook_attempts_max)
            .field("webhook_retry_backoff_ms", &self.webhook_retry_backoff_ms)
            .field("webhook_timeout_ms", &self.webhook_timeout_ms)
            .field("behaviour", &self.behaviour)
            .finish()
    }
}

/// Why a sandbox setting was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SandboxConfigError {
    /// An environment variable holds a value the sandbox does not understand.
    #[error("{name}={value:?} is not valid: {expected}")]
    BadEnv {
        /// The variable's name.
        name: &'static str,
        /// What it held.
        value: String,
        /// What it may hold.
        expected: &'static str,
    },
    /// A secret is empty, which would make every signature forgeable.
    #[error("sandbox {0} must not be empty")]
    EmptySecret(&'static str),
    /// `webhook_url` or `public_base_url` is not an http(s) URL.
    #[error("{0:?} is not an http(s) URL")]
    BadUrl(String),
    /// The misbehaviour settings are out of range.
    #[error("sandbox behaviour: {0}")]
    BadBehaviour(String),
}

impl SandboxPspConfig {
    /// The defaults, overridden by `KASSA_SANDBOX_AUTOPILOT` (`on`/`off`),
    /// `KASSA_SANDBOX_WEBHOOK_SECRET`, `KASSA_SANDBOX_API_SECRET` and
    /// `KASSA_SANDBOX_WEBHOOK_URL` when set.
    pub fn from_env_defaults() -> Result<SandboxPspConfig, SandboxConfigError> {
        SandboxPspConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`SandboxPspConfig::from_env_defaults`], reading variables through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SandboxPspConfig, SandboxConfigError> {
        let mut config = SandboxPspConfig::default();
        if let Some(value) = lookup("KASSA_SANDBOX_AUTOPILOT") {
            config.autopilot = match value.trim().to_ascii_lowercase().as_str() {
                "on" | "true" | "1" | "yes" => true,
                "off" | "false" | "0" | "no" => false,
                _ => {
                    return Err(SandboxConfigError::BadEnv {
                        name: "KASSA_SANDBOX_AUTOPILOT",
                        value,
                        expected: "on or off",
                    })
                }
            };
        }
        if let Some(secret) = lookup("KASSA_SANDBOX_WEBHOOK_SECRET") {
            config.webhook_secret = secret;
        }
        if let Some(secret) = lookup("KASSA_SANDBOX_API_SECRET") {
            config.api_secret = secret;
        }
        if let Some(url) = lookup("KASSA_SANDBOX_WEBHOOK_URL") {
            config.webhook_url = Some(url).filter(|url| !url.is_empty());
        }
        config.validate()?;
        Ok(config)
    }

    /// Refuses settings the sandbox cannot run with.
    pub fn validate(&self) -> Result<(), SandboxConfigError> {
        if self.api_secret.is_empty() {
            return Err(SandboxConfigError::EmptySecret("api_secret"));
        }
        if self.webhook_secret.is_empty() {
            return Err(SandboxConfigError::EmptySecret("webhook_secret"));
        }
        for url in [&self.webhook_url, &self.public_base_url]
            .into_iter()
            .flatten()
        {
            let parsed = reqwest::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if parsed.is_none() {
                return Err(SandboxConfigError::BadUrl(url.clone()));
            }
        }
        self.behaviour
            .validate()
            .map_err(SandboxConfigError::BadBehaviour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn autopilot_is_on_unless_the_environment_turns_it_off() {
        assert!(SandboxPspConfig::from_lookup(env(&[])).unwrap().autopilot);
        let off = SandboxPspConfig::from_lookup(env(&[("KASSA_SANDBOX_AUTOPILOT", "off")]));
        assert!(!off.unwrap().autopilot);
        let on = SandboxPspConfig::from_lookup(env(&[("KASSA_SANDBOX_AUTOPILOT", "ON")]));
        assert!(on.unwrap().autopilot);
        let bad = SandboxPspConfig::from_lookup(env(&[("KASSA_SANDBOX_AUTOPILOT", "maybe")]));
        assert!(matches!(bad, Err(SandboxConfigError::BadEnv { .. })));
    }

    #[test]
    fn secrets_and_webhook_url_come_from_the_environment() {
        let config = SandboxPspConfig::from_lookup(env(&[
            ("KASSA_SANDBOX_WEBHOOK_SECRET", "whsec_env"),
            (
                "KASSA_SANDBOX_WEBHOOK_URL",
                "http://127.0.0.1:8080/v1/payments/webhook",
            ),
        ]))
        .unwrap();
        assert_eq!(config.webhook_secret, "whsec_env");
        assert_eq!(config.api_secret, DEFAULT_API_SECRET);
        assert_eq!(
            config.webhook_url.as_deref(),
            Some("http://127.0.0.1:8080/v1/payments/webhook")
        );
        let empty = SandboxPspConfig::from_lookup(env(&[("KASSA_SANDBOX_WEBHOOK_SECRET", "")]));
        assert_eq!(
            empty.unwrap_err(),
            SandboxConfigError::EmptySecret("webhook_secret")
        );
    }

    #[test]
    fn debug_output_never_shows_the_secrets() {
        let shown = format!("{:?}", SandboxPspConfig::default());
        assert!(!shown.contains(DEFAULT_API_SECRET));
        assert!(!shown.contains(DEFAULT_WEBHOOK_SECRET));
    }
}
