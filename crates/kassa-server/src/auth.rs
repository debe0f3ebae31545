//! API keys: `Authorization: Bearer <key>`, stored as SHA-256 hashes. Merchant keys act for
//! one merchant; admin keys carry roles for `/v1/admin/*`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
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
    pub merchant_id: Option<String>,
    /// Roles of an admin key.
    pub roles: Vec<String>,
}

/// A caller acting for a merchant.
#[derive(Clone, Debug)]
pub struct Merchant {
    /// The merchant's id.
    pub id: String,
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

/// SHA-256 of a key, hex; what the database stores.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
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
    known: Arc<DashMap<String, (ApiKeyRecord, Instant)>>,
}

impl KeyCache {
    /// An empty cache over `store`.
    pub fn new(store: Store) -> KeyCache {
        KeyCache {
            store,
            known: Arc::new(DashMap::new()),
        }
    }

    /// The key's record, if the key is live.
    pub async fn lookup(&self, key: &str) -> Result<Option<ApiKeyRecord>, ApiError> {
        let hash = hash_key(key);
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
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256);
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
    fn keys_are_random_and_hashes_are_stable() {
        let key = generate_key("sk_test");
        assert!(key.starts_with("sk_test_"));
        assert_eq!(key.len(), "sk_test_".len() + 32);
        assert_ne!(key, generate_key("sk_test"));
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
