//! The provider registry, built from the configured provider accounts (one per merchant and
//! provider). An account that names no `base_url` needs an embedded simulator, which only the
//! binary (`kassa serve`, `kassa demo`) and tests provide through [`EmbeddedProviders`]: the
//! server links no simulator code.

use futures::future::BoxFuture;
use kassa_connectors::{ProviderAccount, ProviderKinds, ProviderRegistry};

use crate::config::{Config, SandboxSimulatorConfig};

/// Path of the seed's webhook endpoint; it takes the `sandbox` account's webhooks.
pub const SEED_WEBHOOK_PATH: &str = "/v1/payments/webhook";

/// Where the account `account_id`'s webhooks go, below this Kassa's public URL.
pub fn webhook_path(account_id: &str) -> String {
    format!("/v1/providers/{account_id}/webhook")
}

/// What an embedded simulator needs to start for one account.
#[derive(Debug)]
pub struct EmbeddedLaunch {
    /// The account it stands in for (its kind and its secrets).
    pub account: ProviderAccount,
    /// Where it sends its webhooks.
    pub webhook_url: String,
    /// How the sandbox simulator behaves (autopilot, delays, misbehaviour).
    pub simulator: SandboxSimulatorConfig,
}

/// Stops an embedded simulator.
type StopSimulator = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A simulator running in this process for one account.
pub struct EmbeddedProvider {
    /// Its base URL, which the account's connector calls.
    pub base_url: String,
    /// The account it stands in for (set when the registry is built).
    pub account_id: String,
    stop: StopSimulator,
}

impl EmbeddedProvider {
    /// A running simulator at `base_url`, stopped by `stop`.
    pub fn new(base_url: String, stop: StopSimulator) -> EmbeddedProvider {
        EmbeddedProvider {
            base_url,
            account_id: String::new(),
            stop,
        }
    }

    /// Stops it and waits.
    pub async fn stop(self) {
        (self.stop)().await;
    }
}

/// Starts in-process simulators for accounts that name no `base_url`.
pub trait EmbeddedProviders: Send + Sync {
    /// Starts one for `launch.account`, or fails for a kind it cannot simulate.
    fn start(&self, launch: EmbeddedLaunch) -> BoxFuture<'_, anyhow::Result<EmbeddedProvider>>;
}

/// Builds the registry from the configured accounts, starting an embedded simulator for each
/// account without a `base_url` (an error when `embedded` is `None`).
pub async fn build(
    config: &Config,
    public_base_url: &str,
    embedded: Option<&dyn EmbeddedProviders>,
) -> anyhow::Result<(ProviderRegistry, Vec<EmbeddedProvider>)> {
    let mut registry = ProviderRegistry::with_breaker(config.routing.breaker);
    let mut started = Vec::new();
    let added = add_accounts(
        config,
        public_base_url,
        embedded,
        &mut registry,
        &mut started,
    )
    .await;
    if let Err(error) = added {
        // A half-built registry is dropped; the simulators it started must not outlive it.
        for simulator in started {
            simulator.stop().await;
        }
        return Err(error);
    }
    Ok((registry, started))
}

async fn add_accounts(
    config: &Config,
    public_base_url: &str,
    embedded: Option<&dyn EmbeddedProviders>,
    registry: &mut ProviderRegistry,
    started: &mut Vec<EmbeddedProvider>,
) -> anyhow::Result<()> {
    let kinds = ProviderKinds::builtin();
    for account_config in &config.providers.accounts {
        let mut account = account_config.to_account()?;
        if account.setting_str("base_url", "")?.is_empty() {
            let Some(embedded) = embedded else {
                anyhow::bail!(
                    "provider account {:?} names no base_url and this process runs no embedded \
                     simulator (kassa serve and kassa demo do)",
                    account.id
                );
            };
            let mut simulator = embedded
                .start(EmbeddedLaunch {
                    account: account.clone(),
                    webhook_url: format!("{public_base_url}{}", webhook_path(&account.id)),
                    simulator: config.sandbox.clone(),
                })
                .await?;
            account
                .settings
                .insert("base_url".into(), simulator.base_url.clone().into());
            simulator.account_id = account.id.clone();
            started.push(simulator);
        }
        registry.add_account(&account, &kinds)?;
        tracing::info!(account = %account.id, kind = %account.kind, merchant = %account.merchant_id, "provider account ready");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_server_does_not_link_the_simulators() {
        let manifest: toml::Table = toml::from_str(include_str!("../Cargo.toml")).unwrap();
        let dependencies = manifest["dependencies"].as_table().unwrap();
        assert!(
            !dependencies.contains_key("kassa-sim"),
            "kassa-sim is for the binary and tests only"
        );
    }
}
