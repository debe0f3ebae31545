//! Provider accounts: one merchant's contract with one provider, credentials held as secrets.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// Longest account id; it is stored on every payment and appears in webhook URLs.
pub const ACCOUNT_ID_LEN_MAX: usize = 64;

/// Why a provider account cannot be turned into a connector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The id is empty, too long, or has characters a URL path segment would need escaped.
    #[error("provider account id {0:?} must be 1 to {ACCOUNT_ID_LEN_MAX} characters of a-z, 0-9, _ and -")]
    InvalidId(String),
    /// No connector kind of this name is known.
    #[error("provider account {account:?}: unknown kind {kind:?}")]
    UnknownKind {
        /// The account's id.
        account: String,
        /// The kind it names.
        kind: String,
    },
    /// A credential the kind needs is missing or empty (an empty key makes every signature
    /// forgeable).
    #[error("provider account {account:?}: credential {name:?} is missing or empty")]
    MissingCredential {
        /// The account's id.
        account: String,
        /// The credential's name.
        name: String,
    },
    /// A setting is missing, of the wrong type, or out of range.
    #[error("provider account {account:?}: setting {name:?}: {why}")]
    InvalidSetting {
        /// The account's id.
        account: String,
        /// The setting's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
}

/// An account's credentials by name (`api_secret`, `webhook_secret`, a bearer key, an HMAC
/// key, an SMPP password). Debug and logs show the names, never a value.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, SecretString>);

impl Credentials {
    /// No credentials.
    pub fn new() -> Credentials {
        Credentials::default()
    }

    /// Adds (or replaces) the credential `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: SecretString) {
        self.0.insert(name.into(), value);
    }

    /// The credential `name`, if present.
    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name)
    }

    /// The names of every credential, ascending.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl FromIterator<(String, SecretString)> for Credentials {
    fn from_iter<It: IntoIterator<Item = (String, SecretString)>>(iter: It) -> Self {
        Credentials(iter.into_iter().collect())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, "[redacted]")))
            .finish()
    }
}

/// One merchant's account at one provider: what the registry turns into a connector.
#[derive(Clone, Debug)]
pub struct ProviderAccount {
    /// Unique across Kassa; the name payments are stored and webhooks addressed under, e.g.
    /// `sandbox` (`/v1/providers/sandbox/webhook`).
    pub id: String,
    /// The merchant whose payments may use this account.
    pub merchant_id: String,
    /// Which connector speaks to it, e.g. `sandbox`.
    pub kind: String,
    /// The name shown to people, e.g. `Sandbox PSP (EUR)`.
    pub display_name: String,
    /// Keys and passwords, as secrets.
    pub credentials: Credentials,
    /// Everything else the kind reads (base URL, timeouts, merchant account codes), not
    /// secret.
    pub settings: Map<String, Value>,
}

impl ProviderAccount {
    /// Checks the id is usable in storage and URLs.
    pub fn check_id(&self) -> Result<(), AccountError> {
        let fits = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if self.id.is_empty() || self.id.len() > ACCOUNT_ID_LEN_MAX || !self.id.chars().all(fits) {
            return Err(AccountError::InvalidId(self.id.clone()));
        }
        Ok(())
    }

    /// The credential `name`, which must be present and not empty.
    pub fn credential(&self, name: &str) -> Result<&SecretString, AccountError> {
        self.credentials
            .get(name)
            .filter(|secret| !secret.expose_secret().is_empty())
            .ok_or_else(|| AccountError::MissingCredential {
                account: self.id.clone(),
                name: name.to_string(),
            })
    }

    /// An HTTP transport to the required setting `base_url`, with `timeout_ms` and
    /// `attempts_max` (defaults given), and the path of `base_url` without a trailing slash
    /// (requests carry absolute paths).
    pub(crate) fn http_transport(
        &self,
        timeout_ms_default: u64,
        attempts_max_default: u64,
        response_len_max: usize,
    ) -> Result<(crate::transport::HttpTransport, String), AccountError> {
        let base_url = self.setting_str("base_url", "")?;
        if base_url.is_empty() {
            return Err(self.invalid("base_url", "is required".into()));
        }
        let attempts_max = self.setting_u64("attempts_max", attempts_max_default)?;
        let transport =
            crate::transport::HttpTransport::new(crate::transport::HttpTransportConfig {
                base_url: base_url.to_string(),
                timeout_ms: self.setting_u64("timeout_ms", timeout_ms_default)?,
                attempts_max: u32::try_from(attempts_max).unwrap_or(u32::MAX),
                retry_backoff_ms: 100,
                response_len_max,
                other_origins: Vec::new(),
            })
            .map_err(|error| self.invalid("base_url", error.to_string()))?;
        let path = reqwest::Url::parse(base_url)
            .map(|url| url.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        Ok((transport, path))
    }

    /// The string setting `name`, or `default` when absent.
    pub fn setting_str<'a>(
        &'a self,
        name: &str,
        default: &'a str,
    ) -> Result<&'a str, AccountError> {
        match self.settings.get(name) {
            None => Ok(default),
            Some(Value::String(text)) => Ok(text),
            Some(other) => Err(self.invalid(name, format!("expected a string, got {other}"))),
        }
    }

    /// The unsigned integer setting `name`, or `default` when absent.
    pub fn setting_u64(&self, name: &str, default: u64) -> Result<u64, AccountError> {
        match self.settings.get(name) {
            None => Ok(default),
            Some(value) => value.as_u64().ok_or_else(|| {
                self.invalid(name, format!("expected an unsigned integer, got {value}"))
            }),
        }
    }

    fn invalid(&self, name: &str, why: String) -> AccountError {
        AccountError::InvalidSetting {
            account: self.id.clone(),
            name: name.to_string(),
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> ProviderAccount {
        let mut credentials = Credentials::new();
        credentials.insert("api_secret", SecretString::from("sk_live_very_secret_1"));
        credentials.insert("webhook_secret", SecretString::from("whsec_very_secret_2"));
        credentials.insert("empty", SecretString::from(""));
        let mut settings = Map::new();
        settings.insert("base_url".into(), Value::from("http://psp"));
        settings.insert("timeout_ms".into(), Value::from(2500));
        ProviderAccount {
            id: "sandbox-eu".into(),
            merchant_id: "mch_demo".into(),
            kind: "sandbox".into(),
            display_name: "Sandbox EU".into(),
            credentials,
            settings,
        }
    }

    #[test]
    fn debug_and_log_output_of_an_account_never_show_a_credential() {
        let account = account();
        let shown = format!("{account:?} {account:#?} {:?}", account.credentials);
        for secret in ["sk_live_very_secret_1", "whsec_very_secret_2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("api_secret") && shown.contains("[redacted]"));
    }

    #[test]
    fn credentials_must_be_present_and_not_empty() {
        let account = account();
        assert_eq!(
            account.credential("api_secret").unwrap().expose_secret(),
            "sk_live_very_secret_1"
        );
        for name in ["empty", "missing"] {
            assert_eq!(
                account.credential(name).unwrap_err(),
                AccountError::MissingCredential {
                    account: "sandbox-eu".into(),
                    name: name.into()
                }
            );
        }
    }

    #[test]
    fn settings_are_typed_with_defaults() {
        let account = account();
        assert_eq!(account.setting_str("base_url", "").unwrap(), "http://psp");
        assert_eq!(account.setting_str("absent", "dflt").unwrap(), "dflt");
        assert_eq!(account.setting_u64("timeout_ms", 1).unwrap(), 2500);
        assert_eq!(account.setting_u64("absent", 7).unwrap(), 7);
        assert!(account.setting_u64("base_url", 1).is_err());
        assert!(account.setting_str("timeout_ms", "").is_err());
    }

    #[test]
    fn ids_must_fit_a_url_segment() {
        let mut account = account();
        assert!(account.check_id().is_ok());
        for bad in [
            "",
            "a/b",
            "Sandbox",
            "x y",
            &"a".repeat(ACCOUNT_ID_LEN_MAX + 1),
        ] {
            account.id = bad.to_string();
            assert!(account.check_id().is_err(), "{bad}");
        }
    }
}
