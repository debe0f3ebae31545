//! The provider accounts Kassa can route to, by account id, and the kinds of connector that
//! can serve an account.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use kassa_core::routing::{BreakerSettings, CircuitState};

use crate::account::{AccountError, ProviderAccount};
use crate::guarded::Guarded;
use crate::provider::PaymentProvider;

/// Why a provider could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two providers with one name would make routing and stored payments ambiguous.
    #[error("a provider named {0:?} is already registered")]
    Duplicate(String),
    /// The account could not be turned into a connector.
    #[error(transparent)]
    Account(#[from] AccountError),
}

/// Builds the connector of one account of a kind. A closure, so that a kind needing the
/// server's services (the acquirer's trace numbers and advice queue) can capture them.
pub type ConnectorFactory =
    Arc<dyn Fn(&ProviderAccount) -> Result<Arc<dyn PaymentProvider>, AccountError> + Send + Sync>;

/// The connector kinds this build of Kassa speaks, by the `kind` an account names.
#[derive(Clone, Default)]
pub struct ProviderKinds {
    factories: BTreeMap<String, ConnectorFactory>,
}

impl ProviderKinds {
    /// No kinds.
    pub fn empty() -> ProviderKinds {
        ProviderKinds::default()
    }

    /// Every kind this crate builds on its own: today `sandbox` and `stripe`. The `iso8583` acquirer
    /// needs the server's trace numbers and job queue, so the server adds it
    /// ([`crate::acquirer::from_account`]).
    pub fn builtin() -> ProviderKinds {
        let mut kinds = ProviderKinds::empty();
        kinds.add(crate::sandbox::KIND, |account| {
            Ok(Arc::new(crate::sandbox::from_account(account)?))
        });
        kinds.add(crate::adyen::KIND, |account| {
            Ok(Arc::new(crate::adyen::from_account(account)?))
        });
        kinds.add(crate::stripe::KIND, |account| {
            Ok(Arc::new(crate::stripe::from_account(account)?))
        });
        kinds
    }

    /// Adds (or replaces) the factory of `kind`.
    pub fn add(
        &mut self,
        kind: &str,
        factory: impl Fn(&ProviderAccount) -> Result<Arc<dyn PaymentProvider>, AccountError>
            + Send
            + Sync
            + 'static,
    ) {
        self.factories.insert(kind.to_string(), Arc::new(factory));
    }

    /// The connector of `account`, by its kind.
    pub fn build(
        &self,
        account: &ProviderAccount,
    ) -> Result<Arc<dyn PaymentProvider>, AccountError> {
        account.check_id()?;
        let factory =
            self.factories
                .get(&account.kind)
                .ok_or_else(|| AccountError::UnknownKind {
                    account: account.id.clone(),
                    kind: account.kind.clone(),
                })?;
        factory(account)
    }
}

impl fmt::Debug for ProviderKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

/// What may be shown of a registered account (console, health, logs): never a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account id, the provider name payments are stored under.
    pub id: String,
    /// The merchant it serves; `None` serves every merchant (a provider registered directly).
    pub merchant_id: Option<String>,
    /// The connector kind, e.g. `sandbox`.
    pub kind: String,
    /// The name shown to people.
    pub display_name: String,
}

#[derive(Clone)]
struct Entry {
    summary: AccountSummary,
    /// `guarded`, as the rest of Kassa calls it.
    provider: Arc<dyn PaymentProvider>,
    guarded: Arc<Guarded>,
}

/// Maps an account id to its connector, each behind its circuit breaker. Cheap to clone:
/// connectors (and their breakers) are shared.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    // A BTreeMap so listings (console, health, logs) come out in a stable order.
    providers: BTreeMap<String, Entry>,
    breaker: BreakerSettings,
}

impl ProviderRegistry {
    /// An empty registry whose connectors get the default breaker settings.
    pub fn new() -> ProviderRegistry {
        ProviderRegistry::default()
    }

    /// An empty registry whose connectors get breakers with `settings`.
    pub fn with_breaker(settings: BreakerSettings) -> ProviderRegistry {
        ProviderRegistry {
            providers: BTreeMap::new(),
            breaker: settings,
        }
    }

    /// The account's circuit state, if it is registered.
    pub fn circuit_state(&self, name: &str) -> Option<CircuitState> {
        self.providers
            .get(name)
            .map(|entry| entry.guarded.circuit_state())
    }

    /// Every account of `accounts`, each built by its kind.
    pub fn from_accounts(
        accounts: &[ProviderAccount],
        kinds: &ProviderKinds,
    ) -> Result<ProviderRegistry, RegistryError> {
        let mut registry = ProviderRegistry::new();
        for account in accounts {
            registry.add_account(account, kinds)?;
        }
        Ok(registry)
    }

    /// Builds `account`'s connector and registers it for the account's merchant only.
    pub fn add_account(
        &mut self,
        account: &ProviderAccount,
        kinds: &ProviderKinds,
    ) -> Result<(), RegistryError> {
        if self.providers.contains_key(&account.id) {
            return Err(RegistryError::Duplicate(account.id.clone()));
        }
        let provider = kinds.build(account)?;
        let summary = AccountSummary {
            id: account.id.clone(),
            merchant_id: Some(account.merchant_id.clone()),
            kind: account.kind.clone(),
            display_name: account.display_name.clone(),
        };
        self.insert(summary, provider)
    }

    /// Adds a provider for every merchant under its [`PaymentProvider::name`]; refuses a
    /// second one of that name. Tests and tools use it; the server registers accounts.
    pub fn register(&mut self, provider: Arc<dyn PaymentProvider>) -> Result<(), RegistryError> {
        let summary = AccountSummary {
            id: provider.name().to_string(),
            merchant_id: None,
            kind: String::new(),
            display_name: provider.name().to_string(),
        };
        self.insert(summary, provider)
    }

    fn insert(
        &mut self,
        summary: AccountSummary,
        provider: Arc<dyn PaymentProvider>,
    ) -> Result<(), RegistryError> {
        // The stored name must be the one the connector reports, or its events would not match.
        if summary.id != provider.name() || self.providers.contains_key(&summary.id) {
            return Err(RegistryError::Duplicate(summary.id));
        }
        let guarded = Arc::new(Guarded::new(provider, self.breaker));
        let entry = Entry {
            summary,
            provider: guarded.clone(),
            guarded,
        };
        self.providers.insert(entry.summary.id.clone(), entry);
        Ok(())
    }

    /// The provider with this account id, if registered (whichever merchant it serves:
    /// stored payments and webhooks name it).
    pub fn get(&self, name: &str) -> Option<Arc<dyn PaymentProvider>> {
        self.providers.get(name).map(|entry| entry.provider.clone())
    }

    /// The provider with this account id if it serves `merchant_id`.
    pub fn get_for_merchant(
        &self,
        merchant_id: &str,
        name: &str,
    ) -> Option<Arc<dyn PaymentProvider>> {
        self.providers
            .get(name)
            .filter(|entry| entry.serves(merchant_id))
            .map(|entry| entry.provider.clone())
    }

    /// Every provider, by account id in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn PaymentProvider>)> {
        self.providers
            .iter()
            .map(|(name, entry)| (name.as_str(), &entry.provider))
    }

    /// The providers serving `merchant_id`, by account id in ascending order: what routing
    /// may choose from for that merchant's payments.
    pub fn for_merchant<'a>(
        &'a self,
        merchant_id: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Arc<dyn PaymentProvider>)> + 'a {
        self.providers
            .iter()
            .filter(move |(_, entry)| entry.serves(merchant_id))
            .map(|(name, entry)| (name.as_str(), &entry.provider))
    }

    /// What may be shown of every account, by id.
    pub fn accounts(&self) -> impl Iterator<Item = &AccountSummary> {
        self.providers.values().map(|entry| &entry.summary)
    }

    /// The account ids of every provider, ascending.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// How many providers are registered.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether no provider is registered.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

impl Entry {
    fn serves(&self, merchant_id: &str) -> bool {
        self.summary
            .merchant_id
            .as_deref()
            .is_none_or(|own| own == merchant_id)
    }
}

impl fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.providers.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{SandboxConfig, SandboxConnector};

    fn sandbox(name: &str) -> Arc<dyn PaymentProvider> {
        let config = SandboxConfig {
            base_url: "http://127.0.0.1:9".into(),
            api_secret: "a".into(),
            webhook_secret: "w".into(),
            timeout_ms: 1000,
        };
        Arc::new(SandboxConnector::named(name, config).unwrap())
    }

    #[test]
    fn providers_are_found_by_name_and_listed_in_order() {
        let mut registry = ProviderRegistry::new();
        assert!(registry.is_empty());
        registry.register(sandbox("sandbox_b")).unwrap();
        registry.register(sandbox("sandbox_a")).unwrap();
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.get("sandbox_a").unwrap().name(), "sandbox_a");
        assert!(registry.get("missing").is_none());
        let names: Vec<&str> = registry.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["sandbox_a", "sandbox_b"]);
        assert_eq!(format!("{registry:?}"), r#"{"sandbox_a", "sandbox_b"}"#);
    }

    #[test]
    fn a_second_provider_with_the_same_name_is_refused() {
        let mut registry = ProviderRegistry::new();
        registry.register(sandbox("sandbox")).unwrap();
        assert_eq!(
            registry.register(sandbox("sandbox")),
            Err(RegistryError::Duplicate("sandbox".into()))
        );
    }

    fn account(id: &str, merchant_id: &str, kind: &str) -> ProviderAccount {
        let mut credentials = crate::account::Credentials::new();
        credentials.insert("api_secret", "a-secret".into());
        credentials.insert("webhook_secret", "w-secret".into());
        let settings = serde_json::json!({"base_url": "http://127.0.0.1:9"});
        ProviderAccount {
            id: id.into(),
            merchant_id: merchant_id.into(),
            kind: kind.into(),
            display_name: format!("{id} for {merchant_id}"),
            credentials,
            settings: settings.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn accounts_serve_only_their_merchant() {
        let accounts = [
            account("sbx-a", "mch_a", "sandbox"),
            account("sbx-b", "mch_b", "sandbox"),
        ];
        let mut registry =
            ProviderRegistry::from_accounts(&accounts, &ProviderKinds::builtin()).unwrap();
        registry.register(sandbox("shared")).unwrap();
        let for_a: Vec<&str> = registry
            .for_merchant("mch_a")
            .map(|(name, _)| name)
            .collect();
        assert_eq!(for_a, ["sbx-a", "shared"]);
        assert!(registry.get_for_merchant("mch_a", "sbx-b").is_none());
        assert!(registry.get_for_merchant("mch_b", "sbx-b").is_some());
        // Stored payments and webhooks find an account whoever asks.
        assert_eq!(registry.get("sbx-b").unwrap().name(), "sbx-b");
        let summary = registry.accounts().next().unwrap();
        assert_eq!(summary.display_name, "sbx-a for mch_a");
        assert_eq!(summary.kind, "sandbox");
    }

    #[test]
    fn unknown_kinds_duplicate_ids_and_bad_ids_are_refused() {
        let kinds = ProviderKinds::builtin();
        let unknown = ProviderRegistry::from_accounts(&[account("x", "m", "no-such-kind")], &kinds);
        assert!(matches!(
            unknown,
            Err(RegistryError::Account(AccountError::UnknownKind { .. }))
        ));
        let twice = [account("x", "m", "sandbox"), account("x", "n", "sandbox")];
        assert_eq!(
            ProviderRegistry::from_accounts(&twice, &kinds).unwrap_err(),
            RegistryError::Duplicate("x".into())
        );
        let bad_id = ProviderRegistry::from_accounts(&[account("a/b", "m", "sandbox")], &kinds);
        assert!(matches!(
            bad_id,
            Err(RegistryError::Account(AccountError::InvalidId(_)))
        ));
    }
}
