//! Checks the signature on every API request (see `docs/sandbox-psp.md`, "Request signing").

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::api::ApiError;
use super::Shared;

pub const TIMESTAMP_HEADER: &str = "X-Kassa-Timestamp";
pub const NONCE_HEADER: &str = "X-Kassa-Nonce";
pub const SIGNATURE_HEADER: &str = "X-Kassa-Signature";
/// Largest accepted distance between a request's timestamp and the sandbox's clock.
pub const TIMESTAMP_TOLERANCE_S: i64 = 300;
/// Shortest and longest accepted nonce.
const NONCE_LEN_MIN: usize = 16;
const NONCE_LEN_MAX: usize = 128;
/// How long a nonce is remembered: longer than the whole window a timestamp is accepted in
/// (2 × 300 s), so a request cannot be replayed after its nonce is forgotten.
pub const NONCE_MEMORY: Duration = Duration::from_secs(600);
/// Most nonces remembered; past it the sandbox refuses requests rather than forget early.
pub const NONCES_MAX: usize = 100_000;
/// Largest API request body.
pub const API_BODY_LEN_MAX: usize = 64 * 1024;

/// The nonces seen in the last [`NONCE_MEMORY`].
#[derive(Default)]
pub struct NonceMemory {
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum NonceError {
    Replayed,
    Full,
}

impl NonceMemory {
    /// Remembers `nonce`, refusing one seen within the memory window.
    pub fn remember(&mut self, nonce: &str, now: Instant) -> Result<(), NonceError> {
        while let Some((seen_at, _)) = self.order.front() {
            if now.duration_since(*seen_at) < NONCE_MEMORY {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        if self.seen.contains_key(nonce) {
            return Err(NonceError::Replayed);
        }
        if self.seen.len() >= NONCES_MAX {
            return Err(NonceError::Full);
        }
        self.seen.insert(nonce.to_string(), now);
        self.order.push_back((now, nonce.to_string()));
        Ok(())
    }
}

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// What a simulator checks requests with: its API secret and the nonces it has seen.
pub(crate) struct RequestKeys<'a> {
    pub api_secret: &'a [u8],
    pub nonces: &'a std::sync::Mutex<NonceMemory>,
}

/// Checks headers and signature of one request; remembers its nonce when it is good.
pub(crate) fn check(
    keys: &RequestKeys<'_>,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_unix_s: i64,
) -> Result<(), ApiError> {
    let (Some(timestamp), Some(nonce), Some(signature)) = (
        header(headers, TIMESTAMP_HEADER),
        header(headers, NONCE_HEADER),
        header(headers, SIGNATURE_HEADER),
    ) else {
        return Err(unauthorized(
            "missing_signature",
            "X-Kassa-Timestamp, X-Kassa-Nonce and X-Kassa-Signature are required",
        ));
    };
    let timestamp_unix_s: i64 = timestamp.parse().map_err(|_| {
        unauthorized(
            "invalid_timestamp",
            "X-Kassa-Timestamp must be Unix seconds",
        )
    })?;
    if (now_unix_s - timestamp_unix_s).abs() > TIMESTAMP_TOLERANCE_S {
        return Err(unauthorized(
            "stale_timestamp",
            "X-Kassa-Timestamp is more than 300 s from the sandbox's clock",
        ));
    }
    if !(NONCE_LEN_MIN..=NONCE_LEN_MAX).contains(&nonce.len()) {
        return Err(unauthorized(
            "invalid_nonce",
            "X-Kassa-Nonce must be 16 to 128 characters",
        ));
    }
    let signature = signature
        .strip_prefix("v1=")
        .and_then(|hex_text| hex::decode(hex_text).ok())
        .ok_or_else(|| unauthorized("invalid_signature", "X-Kassa-Signature must be v1=<hex>"))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(keys.api_secret).expect("HMAC accepts any key length");
    for part in [method, path, timestamp, nonce] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| unauthorized("invalid_signature", "the signature does not match"))?;
    let mut nonces = keys.nonces.lock().expect("nonce memory lock");
    match nonces.remember(nonce, Instant::now()) {
        Ok(()) => Ok(()),
        Err(NonceError::Replayed) => Err(unauthorized(
            "replayed_nonce",
            "this X-Kassa-Nonce was already used",
        )),
        Err(NonceError::Full) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "nonce_memory_full",
            "too many requests in the replay window; retry later",
        )),
    }
}

/// Middleware on the `/v1` routes: refuses any request whose signature does not check out.
pub async fn require_signature(
    State(shared): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let keys = RequestKeys {
        api_secret: shared.config.api_secret.as_bytes(),
        nonces: &shared.nonces,
    };
    match signed_request(&keys, request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// The request, body read and put back, when its signature checks out; else the answer that
/// refuses it.
pub(crate) async fn signed_request(
    keys: &RequestKeys<'_>,
    request: Request,
) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, API_BODY_LEN_MAX).await else {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request bodies are limited to 64 KiB",
        )
        .into_response());
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| parts.uri.path());
    let now_unix_s = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Err(error) = check(
        keys,
        parts.method.as_str(),
        path,
        &parts.headers,
        &body,
        now_unix_s,
    ) {
        tracing::warn!(method = %parts.method, path, code = error.code, "request refused");
        return Err(error.into_response());
    }
    Ok(Request::from_parts(parts, Body::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_refused_the_second_time_until_it_is_forgotten() {
        let mut memory = NonceMemory::default();
        let start = Instant::now();
        assert_eq!(memory.remember("nonce-0000000001", start), Ok(()));
        assert_eq!(memory.remember("nonce-0000000002", start), Ok(()));
        assert_eq!(
            memory.remember("nonce-0000000001", start + Duration::from_secs(599)),
            Err(NonceError::Replayed)
        );
        let later = start + NONCE_MEMORY;
        assert_eq!(memory.remember("nonce-0000000001", later), Ok(()));
        assert_eq!(memory.seen.len(), 1, "expired nonces are dropped");
    }
}
