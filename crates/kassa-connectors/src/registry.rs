//! The providers Kassa can route to, by name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::provider::PaymentProvider;

/// Why a provider could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two providers with one name would make routing and stored payments ambiguous.
    #[error("a provider named {0:?} is already registered")]
    Duplicate(String),
}

/// Maps a provider's name to its connector. Cheap to clone: connectors are shared.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    // A BTreeMap so listings (console, health, logs) come out in a stable order.
    providers: BTreeMap<String, Arc<dyn PaymentProvider>>,
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new() -> ProviderRegistry {
        ProviderRegistry::default()
    }

    /// Adds a provider under its [`PaymentProvider::name`]; refuses a second one of that name.
    pub fn register(&mut self, provider: Arc<dyn PaymentProvider>) -> Result<(), RegistryError> {
        let name = provider.name().to_string();
        if self.providers.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        self.providers.insert(name, provider);
        Ok(())
    }

    /// The provider with this name, if registered.
    pub fn get(&self, name: &str) -> Option<Arc<dyn PaymentProvider>> {
        self.providers.get(name).cloned()
    }

    /// Every provider, by name in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn PaymentProvider>)> {
        self.providers
            .iter()
            .map(|(name, provider)| (name.as_str(), provider))
    }

    /// The names of every provider, ascending.
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
}
