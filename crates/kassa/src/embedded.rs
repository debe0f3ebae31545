//! The in-process provider simulators `kassa serve`, `kassa demo` and `kassa bench` start for
//! provider accounts that name no `base_url`. The server takes them through a hook, so only
//! this binary (and the server's tests) link simulator code.

use futures::future::BoxFuture;
use kassa_connectors::ExposeSecret;
use kassa_server::providers::{EmbeddedLaunch, EmbeddedProvider, EmbeddedProviders};
use kassa_sim::psp::SandboxPspConfig;

/// Starts the sandbox PSP for `sandbox` accounts, the ISO 8583 host simulator for `iso8583`
/// accounts, the Stripe simulator for `stripe` accounts and the Adyen simulator for `adyen`
/// accounts, the sandbox ID provider for `idv_sandbox` accounts and the register sandboxes
/// for `gamstop` and `spelpaus` accounts; other kinds have no simulator yet.
pub struct Simulators;

impl EmbeddedProviders for Simulators {
    fn start(&self, launch: EmbeddedLaunch) -> BoxFuture<'_, anyhow::Result<EmbeddedProvider>> {
        match launch.account.kind.as_str() {
            kassa_connectors::acquirer::KIND => Box::pin(start_iso8583_host()),
            kassa_server::providers::THREEDS_SIMULATOR => Box::pin(start_threeds()),
            kassa_connectors::adyen::KIND => Box::pin(start_adyen(launch)),
            kassa_connectors::stripe::KIND => Box::pin(start_stripe(launch)),
            kassa_connectors::idv_sandbox::KIND => Box::pin(start_idv(launch)),
            kassa_connectors::gamstop::KIND | kassa_connectors::spelpaus::KIND => {
                Box::pin(start_register(launch))
            }
            _ => Box::pin(start_sandbox(launch)),
        }
    }
}

/// The ISO 8583 host simulator on a free port (test cards: `kassa sim iso8583 --help`).
async fn start_iso8583_host() -> anyhow::Result<EmbeddedProvider> {
    let handle = kassa_sim::iso8583::start(kassa_sim::iso8583::Iso8583HostConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    })
    .await?;
    let address = handle.local_addr().to_string();
    Ok(EmbeddedProvider::new(
        address,
        Box::new(move || {
            handle.stop();
            Box::pin(async {})
        }),
    ))
}

/// The 3-D Secure Directory Server and ACS on a free port (test cards: `kassa sim threeds
/// --help`), for an acquirer account with `threeds = true` and no `threeds_directory_url`.
async fn start_threeds() -> anyhow::Result<EmbeddedProvider> {
    let handle = kassa_sim::threeds::start(kassa_sim::threeds::ThreeDsSimConfig {
        listen: "127.0.0.1:0".into(),
        public_base_url: None,
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}

async fn start_sandbox(launch: EmbeddedLaunch) -> anyhow::Result<EmbeddedProvider> {
    let account = &launch.account;
    anyhow::ensure!(
        account.kind == kassa_connectors::sandbox::KIND,
        "provider account {:?}: no embedded simulator for kind {:?}; set its base_url",
        account.id,
        account.kind
    );
    let secret = |name: &str| -> anyhow::Result<String> {
        Ok(account.credential(name)?.expose_secret().to_string())
    };
    let simulator = &launch.simulator;
    let handle = kassa_sim::psp::start(SandboxPspConfig {
        listen: "127.0.0.1:0".into(),
        api_secret: secret("api_secret")?,
        webhook_secret: secret("webhook_secret")?,
        webhook_url: Some(launch.webhook_url.clone()),
        webhook_delay_ms: simulator.webhook_delay_ms,
        slow_approval_delay_ms: simulator.slow_approval_delay_ms,
        duplicate_webhooks: simulator.duplicate_webhooks,
        out_of_order_webhooks: simulator.out_of_order_webhooks,
        autopilot: simulator.autopilot,
        behaviour: kassa_sim::psp::Behaviour::from_account_settings(&account.settings)
            .map_err(|why| anyhow::anyhow!("provider account {:?}: {why}", account.id))?,
        ..SandboxPspConfig::default()
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}

/// The Adyen simulator on a free port, signing with the account's HMAC key and taking only
/// its API key.
async fn start_adyen(launch: EmbeddedLaunch) -> anyhow::Result<EmbeddedProvider> {
    let account = &launch.account;
    let secret = |name: &str| -> anyhow::Result<String> {
        Ok(account.credential(name)?.expose_secret().to_string())
    };
    let handle = kassa_sim::adyen::start(kassa_sim::adyen::AdyenSimConfig {
        listen: "127.0.0.1:0".into(),
        api_key: Some(secret("api_key")?),
        hmac_key_hex: secret("hmac_key")?,
        webhook_url: Some(launch.webhook_url.clone()),
        notification_delay_ms: launch.simulator.webhook_delay_ms,
        ..Default::default()
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}

/// The Stripe simulator for a `stripe` account, taking only that account's secret key; its
/// time-out card answers a second after the account's call timeout.
async fn start_stripe(launch: EmbeddedLaunch) -> anyhow::Result<EmbeddedProvider> {
    let account = &launch.account;
    let secret = |name: &str| -> anyhow::Result<String> {
        Ok(account.credential(name)?.expose_secret().to_string())
    };
    let timeout_ms = account.setting_u64("timeout_ms", 30_000)?;
    let handle = kassa_sim::stripe::start(kassa_sim::stripe::StripeSimConfig {
        listen: "127.0.0.1:0".into(),
        secret_key: Some(secret("secret_key")?),
        webhook_secret: secret("webhook_secret")?,
        webhook_url: Some(launch.webhook_url.clone()),
        webhook_delay_ms: launch.simulator.webhook_delay_ms,
        slow_answer_ms: timeout_ms + 1_000,
        ..Default::default()
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}

/// The sandbox ID provider for an `idv_sandbox` account, with the account's secrets.
async fn start_idv(launch: EmbeddedLaunch) -> anyhow::Result<EmbeddedProvider> {
    let account = &launch.account;
    let secret = |name: &str| -> anyhow::Result<String> {
        Ok(account.credential(name)?.expose_secret().to_string())
    };
    let handle = kassa_sim::idv::start(kassa_sim::idv::IdvSimConfig {
        listen: "127.0.0.1:0".into(),
        api_secret: secret("api_secret")?,
        webhook_secret: secret("webhook_secret")?,
        webhook_url: Some(launch.webhook_url.clone()),
        webhook_delay_ms: launch.simulator.webhook_delay_ms,
        ..Default::default()
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}

/// The register sandbox for a `gamstop` or `spelpaus` account, expecting its `api_key`.
async fn start_register(launch: EmbeddedLaunch) -> anyhow::Result<EmbeddedProvider> {
    let account = &launch.account;
    let shape = kassa_sim::register::RegisterShape::of_kind(&account.kind)
        .ok_or_else(|| anyhow::anyhow!("{:?} is not a register kind", account.kind))?;
    let handle = kassa_sim::register::start(kassa_sim::register::RegisterSimConfig {
        listen: "127.0.0.1:0".into(),
        shape,
        api_key: account.credential("api_key")?.expose_secret().to_string(),
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}
