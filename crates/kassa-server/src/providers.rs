//! The provider registry, built from the configured provider accounts (one per merchant and
//! provider). An account that names no `base_url` (an acquirer: no `address`) needs an
//! embedded simulator, which only the binary (`kassa serve`, `kassa demo`) and tests provide
//! through [`EmbeddedProviders`]: the server links no simulator code.

use futures::future::BoxFuture;
use kassa_connectors::identity::identity_kind;
use kassa_connectors::register::register_kind;
use kassa_connectors::{
    acquirer, ExclusionRegisters, IdentityProviders, ProviderAccount, ProviderKinds,
    ProviderRegistry,
};
use kassa_store::Store;

use crate::config::{Config, SandboxSimulatorConfig};
use crate::service::acquirer::Acquirers;

/// Path of Kassa's own card page, below the public URL; an acquirer account's deposits go
/// there (`{path}/{payment_id}`).
pub const CARD_PAGE_PATH: &str = "/pay/card";

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
    /// Its base URL, which the account's connector calls (for an ISO 8583 host, its
    /// `host:port`).
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

/// The kind an [`EmbeddedLaunch`] names to ask for a 3-D Secure Directory Server and ACS, for
/// an acquirer account with `threeds = true` and no `threeds_directory_url`.
pub const THREEDS_SIMULATOR: &str = "threeds";

/// Starts in-process simulators for accounts that name no `base_url`.
pub trait EmbeddedProviders: Send + Sync {
    /// Starts one for `launch.account`, or fails for a kind it cannot simulate.
    fn start(&self, launch: EmbeddedLaunch) -> BoxFuture<'_, anyhow::Result<EmbeddedProvider>>;
}

/// What building the registry needs besides the config.
pub struct BuildContext<'a> {
    /// This Kassa's public URL (webhook URLs, the card page).
    pub public_base_url: &'a str,
    /// Starts simulators for accounts without an address.
    pub embedded: Option<&'a dyn EmbeddedProviders>,
    /// The database the acquirer's trace numbers and advice jobs live in.
    pub store: &'a Store,
    /// Where acquirer connectors are recorded for the advice jobs.
    pub acquirers: &'a Acquirers,
}

/// The payment providers and the ID providers built from the configuration.
pub struct Built {
    /// The payment provider accounts (`[[providers.accounts]]`).
    pub registry: ProviderRegistry,
    /// The ID provider accounts (`[[kyc.accounts]]`).
    pub identities: IdentityProviders,
    /// The self-exclusion register accounts (`[[registers.accounts]]`).
    pub registers: ExclusionRegisters,
    /// The simulators started for accounts without a `base_url`.
    pub embedded: Vec<EmbeddedProvider>,
}

/// Builds the registry and the ID providers from the configured accounts, starting an
/// embedded simulator for each account without a `base_url` (an error when `embedded` is
/// `None`).
pub async fn build(config: &Config, context: BuildContext<'_>) -> anyhow::Result<Built> {
    let mut registry = ProviderRegistry::with_breaker(config.routing.breaker);
    let mut started = Vec::new();
    let mut kinds = ProviderKinds::builtin();
    crate::service::acquirer::add_kind(&mut kinds, context.store, context.acquirers);
    let added = add_accounts(
        config,
        &kinds,
        context.public_base_url,
        context.embedded,
        &mut registry,
        &mut started,
    )
    .await;
    let mut identities = IdentityProviders::default();
    let added = match added {
        Ok(()) => add_identity_accounts(config, &context, &mut identities, &mut started).await,
        Err(error) => Err(error),
    };
    let mut registers = ExclusionRegisters::default();
    let added = match added {
        Ok(()) => add_register_accounts(config, &context, &mut registers, &mut started).await,
        Err(error) => Err(error),
    };
    if let Err(error) = added {
        // A half-built registry is dropped; the simulators it started must not outlive it.
        for simulator in started {
            simulator.stop().await;
        }
        return Err(error);
    }
    Ok(Built {
        registry,
        identities,
        registers,
        embedded: started,
    })
}

/// The register accounts, each started like a payment account without a `base_url`.
async fn add_register_accounts(
    config: &Config,
    context: &BuildContext<'_>,
    registers: &mut ExclusionRegisters,
    started: &mut Vec<EmbeddedProvider>,
) -> anyhow::Result<()> {
    for account_config in &config.registers.accounts {
        let mut account = account_config.to_account()?;
        account.check_id()?;
        let factory = register_kind(&account.kind).ok_or_else(|| {
            anyhow::anyhow!(
                "register account {:?}: unknown kind {:?} (gamstop, spelpaus)",
                account.id,
                account.kind
            )
        })?;
        let taken = config.providers.accounts.iter().chain(&config.kyc.accounts);
        anyhow::ensure!(
            taken.into_iter().all(|a| a.id != account.id),
            "register account {:?} has the id of another provider account",
            account.id
        );
        embed_without_base_url(config, context, &mut account, started).await?;
        registers.add(&account.merchant_id, factory(&account)?)?;
        tracing::info!(account = %account.id, kind = %account.kind, merchant = %account.merchant_id, "register account ready");
    }
    Ok(())
}

/// The ID provider accounts, each started like a payment account without a `base_url`.
async fn add_identity_accounts(
    config: &Config,
    context: &BuildContext<'_>,
    identities: &mut IdentityProviders,
    started: &mut Vec<EmbeddedProvider>,
) -> anyhow::Result<()> {
    for account_config in &config.kyc.accounts {
        let mut account = account_config.to_account()?;
        account.check_id()?;
        let factory = identity_kind(&account.kind).ok_or_else(|| {
            anyhow::anyhow!(
                "ID provider account {:?}: unknown kind {:?}",
                account.id,
                account.kind
            )
        })?;
        anyhow::ensure!(
            config.providers.accounts.iter().all(|a| a.id != account.id),
            "ID provider account {:?} has the id of a payment provider account",
            account.id
        );
        embed_without_base_url(config, context, &mut account, started).await?;
        identities.add(&account.merchant_id, factory(&account)?)?;
        tracing::info!(account = %account.id, kind = %account.kind, merchant = %account.merchant_id, "ID provider account ready");
    }
    Ok(())
}

/// Starts the embedded simulator of an account (ID provider, register) that names no
/// `base_url`, and points the account at it.
async fn embed_without_base_url(
    config: &Config,
    context: &BuildContext<'_>,
    account: &mut ProviderAccount,
    started: &mut Vec<EmbeddedProvider>,
) -> anyhow::Result<()> {
    if account.setting_str("base_url", "")?.is_empty() {
        let simulator =
            start_embedded(config, context.embedded, account, context.public_base_url).await?;
        account
            .settings
            .insert("base_url".into(), simulator.base_url.clone().into());
        started.push(simulator);
    }
    Ok(())
}

/// Starts the embedded simulator of `account`, which names no address.
async fn start_embedded(
    config: &Config,
    embedded: Option<&dyn EmbeddedProviders>,
    account: &ProviderAccount,
    public_base_url: &str,
) -> anyhow::Result<EmbeddedProvider> {
    let location = match account.kind == acquirer::KIND {
        true => "address",
        false => "base_url",
    };
    let Some(embedded) = embedded else {
        anyhow::bail!(
            "provider account {:?} names no {location} and this process runs no \
             embedded simulator (kassa serve and kassa demo do)",
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
    simulator.account_id = account.id.clone();
    Ok(simulator)
}

async fn add_accounts(
    config: &Config,
    kinds: &ProviderKinds,
    public_base_url: &str,
    embedded: Option<&dyn EmbeddedProviders>,
    registry: &mut ProviderRegistry,
    started: &mut Vec<EmbeddedProvider>,
) -> anyhow::Result<()> {
    for account_config in &config.providers.accounts {
        let mut account = account_config.to_account()?;
        // Where the provider is: an acquirer's host `address`, a PSP's `base_url`.
        let location = match account.kind == acquirer::KIND {
            true => "address",
            false => "base_url",
        };
        if account.kind == acquirer::KIND && account.setting_str("card_page_url", "")?.is_empty() {
            // An acquirer's deposits go to Kassa's own card page.
            let url = format!("{public_base_url}{CARD_PAGE_PATH}");
            account.settings.insert("card_page_url".into(), url.into());
        }
        if wants_embedded_threeds(&account)? {
            let Some(embedded) = embedded else {
                anyhow::bail!(
                    "provider account {:?} has threeds = true but names no \
                     threeds_directory_url, and this process runs no embedded simulator",
                    account.id
                );
            };
            let mut directory_account = account.clone();
            directory_account.kind = THREEDS_SIMULATOR.into();
            let mut simulator = embedded
                .start(EmbeddedLaunch {
                    account: directory_account,
                    webhook_url: String::new(),
                    simulator: config.sandbox.clone(),
                })
                .await?;
            account.settings.insert(
                "threeds_directory_url".into(),
                simulator.base_url.clone().into(),
            );
            simulator.account_id = account.id.clone();
            started.push(simulator);
        }
        if account.setting_str(location, "")?.is_empty() {
            let simulator = start_embedded(config, embedded, &account, public_base_url).await?;
            account
                .settings
                .insert(location.into(), simulator.base_url.clone().into());
            started.push(simulator);
        }
        registry.add_account(&account, kinds)?;
        tracing::info!(account = %account.id, kind = %account.kind, merchant = %account.merchant_id, "provider account ready");
    }
    Ok(())
}

/// An acquirer account that turns 3-D Secure on (`threeds = true`) without naming its
/// Directory Server: an embedded one stands in.
fn wants_embedded_threeds(account: &ProviderAccount) -> anyhow::Result<bool> {
    let on = match account.settings.get("threeds") {
        None => false,
        Some(serde_json::Value::Bool(on)) => *on,
        Some(_) => anyhow::bail!(
            "provider account {:?}: threeds must be true or false",
            account.id
        ),
    };
    Ok(on
        && account.kind == acquirer::KIND
        && account.setting_str("threeds_directory_url", "")?.is_empty())
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
