//! The provider registry: one line per provider. Today the sandbox PSP, in-process unless
//! `sandbox.base_url` names a `kassa sim psp` elsewhere.

use std::sync::Arc;

use kassa_connectors::{ProviderRegistry, SandboxConfig, SandboxConnector};
use kassa_sim::psp::{SandboxHandle, SandboxPspConfig};

use crate::config::Config;

/// Path of the seed's webhook endpoint, where the sandbox sends its events.
pub const SEED_WEBHOOK_PATH: &str = "/v1/payments/webhook";

/// Builds the registry, starting the in-process sandbox when it is configured so.
pub async fn build(
    config: &Config,
    public_base_url: &str,
) -> anyhow::Result<(ProviderRegistry, Option<SandboxHandle>)> {
    let mut registry = ProviderRegistry::new();
    let mut handle = None;
    let sandbox = &config.sandbox;
    if sandbox.enabled {
        let base_url = if sandbox.base_url.is_empty() {
            let started = kassa_sim::psp::start(SandboxPspConfig {
                listen: "127.0.0.1:0".into(),
                api_secret: sandbox.api_secret.clone(),
                webhook_secret: sandbox.webhook_secret.clone(),
                webhook_url: Some(format!("{public_base_url}{SEED_WEBHOOK_PATH}")),
                webhook_delay_ms: sandbox.webhook_delay_ms,
                slow_approval_delay_ms: sandbox.slow_approval_delay_ms,
                duplicate_webhooks: sandbox.duplicate_webhooks,
                out_of_order_webhooks: sandbox.out_of_order_webhooks,
                autopilot: sandbox.autopilot,
                ..SandboxPspConfig::default()
            })
            .await?;
            let url = started.base_url().to_string();
            handle = Some(started);
            url
        } else {
            sandbox.base_url.trim_end_matches('/').to_string()
        };
        let connector = SandboxConnector::new(SandboxConfig {
            base_url,
            api_secret: sandbox.api_secret.clone(),
            webhook_secret: sandbox.webhook_secret.clone(),
            timeout_ms: sandbox.timeout_ms,
        })?;
        registry.register(Arc::new(connector))?;
    }
    Ok((registry, handle))
}
