//! First start: an empty database gets a demo merchant with an API key and an admin key,
//! printed once. `KASSA_DEMO_API_KEY` / `KASSA_DEMO_ADMIN_KEY` choose the keys, so scripts
//! know them; set on a later start, they are added if missing.

use kassa_store::Store;

use crate::auth::{generate_key, roles, KeyHasher};

/// Chooses the demo merchant key.
pub const DEMO_API_KEY_VAR: &str = "KASSA_DEMO_API_KEY";
/// Chooses the demo admin key.
pub const DEMO_ADMIN_KEY_VAR: &str = "KASSA_DEMO_ADMIN_KEY";
/// The demo merchant's id.
pub const DEMO_MERCHANT_ID: &str = "mch_demo";

/// Keys created by this start.
#[derive(Clone, Debug)]
pub struct DemoKeys {
    /// Merchant key of the demo merchant.
    pub api_key: String,
    /// Admin key with role `admin`.
    pub admin_key: String,
}

/// Creates the demo merchant on an empty database; adds keys named by the environment.
/// Returns the keys when it created the merchant.
pub async fn ensure_demo_merchant(
    store: &Store,
    hasher: &KeyHasher,
) -> anyhow::Result<Option<DemoKeys>> {
    let wanted_api_key = std::env::var(DEMO_API_KEY_VAR)
        .ok()
        .filter(|k| !k.is_empty());
    let wanted_admin_key = std::env::var(DEMO_ADMIN_KEY_VAR)
        .ok()
        .filter(|k| !k.is_empty());
    if store.count_merchants().await? > 0 {
        // Later starts: make sure keys a script names exist, without printing anything.
        if let Some(key) = wanted_api_key {
            add_key_if_missing(store, hasher, &key, Some(DEMO_MERCHANT_ID), &[]).await?;
        }
        if let Some(key) = wanted_admin_key {
            add_key_if_missing(store, hasher, &key, None, &[roles::ADMIN]).await?;
        }
        return Ok(None);
    }
    store
        .create_merchant(DEMO_MERCHANT_ID, "Demo casino")
        .await?;
    let api_key = wanted_api_key.unwrap_or_else(|| generate_key("sk_test"));
    let admin_key = wanted_admin_key.unwrap_or_else(|| generate_key("ak_test"));
    add_key_if_missing(store, hasher, &api_key, Some(DEMO_MERCHANT_ID), &[]).await?;
    add_key_if_missing(store, hasher, &admin_key, None, &[roles::ADMIN]).await?;
    Ok(Some(DemoKeys { api_key, admin_key }))
}

async fn add_key_if_missing(
    store: &Store,
    hasher: &KeyHasher,
    key: &str,
    merchant_id: Option<&str>,
    key_roles: &[&str],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        key.len() >= 16 && key.len() <= 256,
        "demo keys must be 16 to 256 characters"
    );
    let hash = hasher.hash_key(key);
    if store.find_api_key(&hash).await?.is_some() {
        return Ok(());
    }
    let prefix: String = key.chars().take(12).collect();
    store
        .create_api_key(
            &kassa_core::ids::generate("key"),
            merchant_id,
            &hash,
            &prefix,
            key_roles,
        )
        .await?;
    Ok(())
}
