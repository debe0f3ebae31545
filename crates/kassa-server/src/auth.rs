//! API keys: `Authorization: Bearer <key>` (the scheme name in any case, RFC 9110), stored
//! under a keyed hash (HMAC-SHA256 with a server secret, ADR 26). Merchant keys act for one
//! merchant; admin keys carry roles for `/v1/admin/*`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use kassa_core::ids::MerchantId;
use kassa_store::directory::ApiKeyRecord;
use kassa_store::Store;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

/// How long a looked-up key is trusted before it is read again (so a revoked key stops
/// working within this time on every node).
const KEY_CACHE_TTL: Duration = Duration::from_secs(10);
/// Most keys remembered; past this the cache is emptied and refilled.
const KEY_CACHE_LEN_MAX: usize = 10_000;

/// Roles an admin key may carry.
pub mod roles {
    /// Everything under `/v1/admin`.
    pub const ADMIN: &str = "admin";
    /// Ledger and reconciliation views.
    pub const FINANCE: &str = "finance";
    /// Every role a key may be given.
    pub const ALL: &[&str] = &[ADMIN, FINANCE];
}

/// Who is calling, put into the request by [`middleware`].
#[derive(Clone, Debug)]
pub struct Principal {
    /// The key's id (never the secret).
    pub key_id: String,
    /// The merchant a merchant key acts for.
    pub merchant_id: Option<MerchantId>,
    /// Roles of an admin key.
    pub roles: Vec<String>,
}

/// A caller acting for a merchant.
#[derive(Clone, Debug)]
pub struct Merchant {
    /// The merchant's id.
    pub id: MerchantId,
}

/// A caller with an admin key.
#[derive(Clone, Debug)]
pub struct Admin {
    /// The key's id, recorded as who did what.
    pub key_id: String,
    /// The key's roles.
    pub roles: Vec<String>,
}

impl Admin {
    /// Refuses unless the key has one of `allowed`.
    pub fn require_any(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if self.roles.iter().any(|r| allowed.contains(&r.as_str())) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this key needs one of the roles {allowed:?}"
            )))
        }
    }
}

/// Marks a stored hash as keyed; a bare 64-hex hash is the unsalted SHA-256 of old databases.
pub const KEYED_HASH_PREFIX: &str = "hmac-sha256:";

/// Hashes API keys for storage under the server's secret: `hmac-sha256:` and the hex of
/// HMAC-SHA256(secret, SHA-256(key)). Keying the SHA-256 digest rather than the key lets a
/// start upgrade the old unsalted hashes in place, without knowing the keys.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    /// A hasher keyed with `secret`.
    pub fn new(secret: &[u8]) -> KeyHasher {
        KeyHasher {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length"),
        }
    }

    /// A hasher keyed with the configured secret (the public demo one when none is set).
    pub fn from_config(auth: &crate::config::AuthConfig) -> KeyHasher {
        KeyHasher::new(auth.effective_key_hash_secret().0.as_bytes())
    }

    /// What the database stores for `key`.
    pub fn hash_key(&self, key: &str) -> String {
        self.hash_digest(&Sha256::digest(key.as_bytes()))
    }

    /// The keyed hash of an old unsalted SHA-256 hash (hex), or `None` if it is not one.
    pub fn upgrade_legacy_hash(&self, legacy_hex: &str) -> Option<String> {
        let digest = hex::decode(legacy_hex).ok().filter(|d| d.len() == 32)?;
        Some(self.hash_digest(&digest))
    }

    fn hash_digest(&self, digest: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(digest);
        format!(
            "{KEYED_HASH_PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(<secret>)")
    }
}

/// The key in an `Authorization` value: the `Bearer` scheme in any case (RFC 9110 §11.1),
/// one or more spaces, then the key (at most 256 bytes).
pub fn bearer_key(value: &str) -> Option<&str> {
    let (scheme, key) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(key.trim()).filter(|k| !k.is_empty() && k.len() <= 256)
}

/// A new secret key: `prefix` and 32 random base62 characters (~190 bits).
pub fn generate_key(prefix: &str) -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("{prefix}_{random}")
}

/// Looks keys up, remembering answers briefly so the hot path skips the database.
#[derive(Clone)]
pub struct KeyCache {
    store: Store,
    hasher: KeyHasher,
    known: Arc<DashMap<String, (ApiKeyRecord, Instant)>>,
}

impl KeyCache {
    /// An empty cache over `store`, hashing keys with `hasher`.
    pub fn new(store: Store, hasher: KeyHasher) -> KeyCache {
        KeyCache {
            store,
            hasher,
            known: Arc::new(DashMap::new()),
        }
    }

    /// What the database stores for `key`.
    pub fn hash_key(&self, key: &str) -> String {
        self.hasher.hash_key(key)
    }

    /// The key's record, if the key is live.
    pub async fn lookup(&self, key: &str) -> Result<Option<ApiKeyRecord>, ApiError> {
        let hash = self.hasher.hash_key(key);
        if let Some(found) = self.known.get(&hash) {
            if found.1.elapsed() < KEY_CACHE_TTL {
                return Ok(Some(found.0.clone()));
            }
        }
        let record = self.store.find_api_key(&hash).await?;
        if let Some(record) = &record {
            if self.known.len() >= KEY_CACHE_LEN_MAX {
                self.known.clear();
            }
            self.known.insert(hash, (record.clone(), Instant::now()));
        }
        Ok(record)
    }
}

/// Authenticates every `/v1` request (except the public ones) and applies the key's rate
/// limit.
pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_key);
    let Some(key) = key else {
        return ApiError::unauthorized().into_response();
    };
    let record = match state.auth.lookup(key).await {
        Ok(Some(record)) => record,
        Ok(None) => return ApiError::unauthorized().into_response(),
        Err(error) => return error.into_response(),
    };
    if let Some(limiter) = &state.limiter {
        if let Err(retry_after_s) = limiter.check(&record.id) {
            return ApiError::rate_limited(retry_after_s).into_response();
        }
    }
    request.extensions_mut().insert(Principal {
        key_id: record.id,
        merchant_id: record.merchant_id,
        roles: record.roles,
    });
    next.run(request).await
}

fn principal(parts: &Parts) -> Result<&Principal, ApiError> {
    parts
        .extensions
        .get::<Principal>()
        .ok_or_else(ApiError::unauthorized)
}

impl<S: Send + Sync> FromRequestParts<S> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Merchant, ApiError> {
        match &principal(parts)?.merchant_id {
            Some(id) => Ok(Merchant { id: id.clone() }),
            None => Err(ApiError::forbidden(
                "this endpoint needs a merchant API key, not an admin key",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Admin, ApiError> {
        let principal = principal(parts)?;
        if principal.roles.is_empty() {
            return Err(ApiError::forbidden("this endpoint needs an admin API key"));
        }
        Ok(Admin {
            key_id: principal.key_id.clone(),
            roles: principal.roles.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashes_are_keyed() {
        let key = generate_key("sk_test");
        assert!(key.starts_with("sk_test_"));
        assert_eq!(key.len(), "sk_test_".len() + 32);
        assert_ne!(key, generate_key("sk_test"));
        let hasher = KeyHasher::new(b"secret-one-secret-one-secret-one");
        let hash = hasher.hash_key("abc");
        assert_eq!(hash, hasher.hash_key("abc"), "stable");
        assert!(hash.starts_with(KEYED_HASH_PREFIX));
        // HMAC-SHA256(key = "secret-one-…", message = SHA-256("abc")), computed independently.
        assert_eq!(
            hash,
            "hmac-sha256:4f3774f29dcc3209c5c2be038ef29f73bd11939a76d440fae5604989769dbb53"
        );
        let other = KeyHasher::new(b"secret-two-secret-two-secret-two");
        assert_ne!(hash, other.hash_key("abc"), "the secret matters");
        let unsalted = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(!hash.contains(unsalted));
        assert_eq!(hasher.upgrade_legacy_hash(unsalted), Some(hash));
        assert_eq!(hasher.upgrade_legacy_hash("not hex"), None);
        assert_eq!(hasher.upgrade_legacy_hash("abcd"), None);
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k1", "bearer k1", "BEARER k1", "bEaReR   k1 "] {
            assert_eq!(bearer_key(value), Some("k1"), "{value:?}");
        }
        for value in ["Basic k1", "Bearer", "Bearer ", "Bearerk1", "Token k1", ""] {
            assert_eq!(bearer_key(value), None, "{value:?}");
        }
        assert_eq!(bearer_key(&format!("Bearer {}", "k".repeat(257))), None);
    }
}
