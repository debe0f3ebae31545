//! `Idempotency-Key` for every POST that moves money, enforced here for all of them.
//!
//! Before the handler runs the key is claimed in the database. A repeat with the same body
//! gets the first response again (`Idempotent-Replayed: true`); with another body, 409
//! `idempotency_key_reused`; while the first still runs, 409 `idempotency_key_in_use`.
//! A service that moves money completes the claim inside its own transaction
//! ([`IdempotencyClaim::complete_in`]), so the effect and the remembered answer commit
//! together. Otherwise this layer stores the answer itself — unless the request was
//! invalid or failed on our side, in which case the key is released so the client can retry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kassa_store::idempotency::{
    claim_idempotency_key_answered_in, complete_idempotency_key, release_idempotency_key_in,
    stage_idempotency_answer, Claim,
};
use kassa_store::{Conn, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::views::Answer;
use crate::AppState;

/// Request header naming the key.
pub const KEY_HEADER: &str = "idempotency-key";
/// Response header set on a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest key accepted.
const KEY_LEN_MAX: usize = 255;

/// A claimed key, handed to the handler in the request's extensions.
#[derive(Clone, Debug)]
pub struct IdempotencyClaim {
    /// Whose key it is: the merchant of a merchant key, or `admin:<key id>` for an admin
    /// key ([`ADMIN_SCOPE_PREFIX`], ADR 36). Stored where the merchant's id is.
    pub merchant_id: String,
    /// The key.
    pub key: String,
    completed: Arc<AtomicBool>,
    /// Set when the key is to be claimed inside the request's one transaction
    /// ([`claim_answered_in`](Self::claim_answered_in)) rather than before the handler ran
    /// (ADR 0034).
    deferred: Option<DeferredClaim>,
}

/// What claiming a key inside the effect's transaction needs.
#[derive(Clone, Debug)]
struct DeferredClaim {
    request_hash: String,
    stale_after_ms: i64,
    lost: Arc<AtomicBool>,
}

impl IdempotencyClaim {
    /// Claims the key and stores its final answer in one step, inside the transaction of the
    /// request's one effect (a deposit's start, whose answer is known before it writes). A
    /// key claimed before the handler is already ours: only the answer is stored. False when
    /// another request holds or answered the key first: roll back, and the caller answers
    /// as the idempotency rules say ([`lose`](Self::lose)). After commit, call
    /// [`mark_committed`](Self::mark_committed).
    pub async fn claim_answered_in(
        &self,
        conn: &mut Conn,
        answer: &Answer,
    ) -> Result<bool, StoreError> {
        let Some(deferred) = &self.deferred else {
            self.complete_in(conn, answer).await?;
            return Ok(true);
        };
        let stale_before_ms = kassa_store::now_ms() - deferred.stale_after_ms;
        let key = (
            self.merchant_id.as_str(),
            self.key.as_str(),
            deferred.request_hash.as_str(),
        );
        claim_idempotency_key_answered_in(conn, key, stale_before_ms, answer.status, &answer.body)
            .await
    }

    /// Tells the middleware this request did not get the key (another request with it is
    /// running or answered): its answer replaces the handler's.
    pub fn lose(&self) {
        if let Some(deferred) = &self.deferred {
            deferred.lost.store(true, Ordering::Release);
        }
    }

    /// Stores the final answer inside the transaction that makes the effect. Call
    /// [`mark_committed`](Self::mark_committed) after that transaction commits, and send
    /// exactly this answer.
    pub async fn complete_in(&self, conn: &mut Conn, answer: &Answer) -> Result<(), StoreError> {
        let (merchant_id, key) = (&self.merchant_id, &self.key);
        complete_idempotency_key(conn, merchant_id, key, answer.status, &answer.body).await
    }

    /// Stores a provisional answer with the first of several effects; a later
    /// [`complete_in`](Self::complete_in) replaces it. Should the request end before that,
    /// the provisional answer is what every repeat gets.
    pub async fn stage_in(&self, conn: &mut Conn, answer: &Answer) -> Result<(), StoreError> {
        let (merchant_id, key) = (&self.merchant_id, &self.key);
        stage_idempotency_answer(conn, merchant_id, key, answer.status, &answer.body).await
    }

    /// Gives the key back inside the transaction that recorded a failure the client may
    /// retry with the same key. Call [`mark_committed`](Self::mark_committed) after commit.
    pub async fn release_in(&self, conn: &mut Conn) -> Result<(), StoreError> {
        release_idempotency_key_in(conn, &self.merchant_id, &self.key).await
    }

    /// Tells the middleware the key is dealt with (answered or released) inside the effect's
    /// transaction.
    pub fn mark_committed(&self) {
        self.completed.store(true, Ordering::Release);
    }
}

/// For endpoints where a missing key is a 422.
pub async fn required(State(state): State<AppState>, request: Request, next: Next) -> Response {
    guard(state, Mode::Required, request, next).await
}

/// For endpoints whose use case claims the key inside its one transaction (a deposit's
/// start, ADR 0034): the key is only looked at here, so a repeat is answered at once, and
/// the claim commits together with the effect and its answer.
pub async fn in_effect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    guard(state, Mode::InEffect, request, next).await
}

/// For the admin endpoints that move money (a review decision): a key sent in the header is
/// honoured, scoped by the admin key that sent it (ADR 36); the decision is idempotent
/// without one.
pub async fn admin_optional(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    guard(state, Mode::AdminOptional, request, next).await
}

/// When a key is claimed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the handler; a missing key is a 422.
    Required,
    /// Before the handler, when the request names one.
    Optional,
    /// In the handler's transaction; a missing key is a 422.
    InEffect,
    /// Before the handler, when an admin key's request names one in the header.
    AdminOptional,
}

/// Prefix of the scope of an admin key's idempotency records, which stand where a
/// merchant's id stands for a merchant key's (ADR 36). Merchant ids (`mch_…`) never hold
/// a colon, so the two cannot meet.
pub const ADMIN_SCOPE_PREFIX: &str = "admin:";

/// Whose idempotency records a request's key belongs to: the merchant of a merchant key,
/// or (on admin endpoints) the admin key itself. `None`: the handler's extractor answers
/// 401/403.
fn key_scope(principal: Option<&Principal>, mode: Mode) -> Option<String> {
    let principal = principal?;
    match (&principal.merchant_id, mode) {
        (Some(merchant_id), mode) if mode != Mode::AdminOptional => Some(merchant_id.to_string()),
        (None, Mode::AdminOptional) => Some(format!("{ADMIN_SCOPE_PREFIX}{}", principal.key_id)),
        _ => None,
    }
}

/// For endpoints with an identifier of their own (the wallet's `txn_id`); a key is honoured
/// when sent.
pub async fn optional(State(state): State<AppState>, request: Request, next: Next) -> Response {
    guard(state, Mode::Optional, request, next).await
}

async fn guard(state: AppState, mode: Mode, request: Request, next: Next) -> Response {
    let key_required = matches!(mode, Mode::Required | Mode::InEffect);
    let Some(owner) = key_scope(request.extensions().get::<Principal>(), mode) else {
        // Not a caller of this endpoint: the handler's extractor answers 401/403.
        return next.run(request).await;
    };
    let header_key = match request.headers().get(KEY_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if valid_key(key) => Some(key.to_string()),
        Some(_) => return invalid_key("Idempotency-Key").into_response(),
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, state.config.http.body_limit_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than allowed",
            )
            .into_response()
        }
    };
    let key = match (header_key, key_required) {
        (Some(key), _) => key,
        (None, true) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_missing",
                "this request moves money and needs an Idempotency-Key header",
            )
            .with_details(serde_json::json!({ "field": "Idempotency-Key" }))
            .into_response();
        }
        (None, false) if mode == Mode::AdminOptional => {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        (None, false) => match body_key(&bytes) {
            Ok(Some(key)) => key,
            Ok(None) => {
                return next
                    .run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
            Err(error) => return error.into_response(),
        },
    };
    let request_hash = request_hash(parts.method.as_str(), parts.uri.path(), &bytes);
    let stale_after_ms = state.config.idempotency.in_progress_stale_ms;
    let store = &state.store;
    let claimed = if mode == Mode::InEffect {
        store
            .peek_idempotency_key(&owner, &key, &request_hash, stale_after_ms)
            .await
    } else {
        store
            .claim_idempotency_key(&owner, &key, &request_hash, stale_after_ms)
            .await
    };
    if let Some(answer) = answer_taken_key(claimed) {
        return answer;
    }
    let deferred = (mode == Mode::InEffect).then(|| DeferredClaim {
        request_hash: request_hash.clone(),
        stale_after_ms,
        lost: Arc::new(AtomicBool::new(false)),
    });
    let claim = IdempotencyClaim {
        merchant_id: owner.clone(),
        key: key.clone(),
        completed: Arc::new(AtomicBool::new(false)),
        deferred: deferred.clone(),
    };
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(claim.clone());
    let response = next.run(request).await;
    if claim.completed.load(Ordering::Acquire) {
        return response;
    }
    if let Some(deferred) = deferred {
        // Nothing was claimed, so there is nothing to store or release: the request either
        // committed its answer with its effect or changed nothing.
        if !deferred.lost.load(Ordering::Acquire) {
            return response;
        }
        let again = store
            .peek_idempotency_key(&owner, &key, &request_hash, stale_after_ms)
            .await;
        return answer_taken_key(again).unwrap_or_else(key_in_use);
    }
    let status = response.status();
    let nothing_happened = status.is_server_error()
        || matches!(
            status,
            StatusCode::BAD_REQUEST
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::NOT_FOUND
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNSUPPORTED_MEDIA_TYPE
                | StatusCode::UNPROCESSABLE_ENTITY
                | StatusCode::TOO_MANY_REQUESTS
        );
    if nothing_happened {
        if let Err(error) = store.release_idempotency_key(&owner, &key).await {
            tracing::error!(error = %error, "could not release an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if let Err(error) = store
        .complete_idempotency_key(&owner, &key, status.as_u16(), &text)
        .await
    {
        return ApiError::from(error).into_response();
    }
    Response::from_parts(parts, Body::from(body))
}

/// The answer for a key someone else has (replay, reused, in use), or `None` when it is ours
/// to use.
fn answer_taken_key(claimed: Result<Claim, StoreError>) -> Option<Response> {
    match claimed {
        Ok(Claim::Claimed) => None,
        Ok(Claim::Replay { status, body }) => Some(replay(status, body)),
        Ok(Claim::Reused) => Some(
            ApiError::conflict(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request; use a new key",
            )
            .into_response(),
        ),
        Ok(Claim::InUse) => Some(key_in_use()),
        Err(error) => Some(ApiError::from(error).into_response()),
    }
}

fn key_in_use() -> Response {
    ApiError::conflict(
        "idempotency_key_in_use",
        "a request with this Idempotency-Key is still running; retry later",
    )
    .into_response()
}

/// The `idempotency_key` field of a JSON body, for callers that cannot set headers. Only
/// parsed when the name appears, to keep the wallet's hot path cheap.
fn body_key(bytes: &Bytes) -> Result<Option<String>, ApiError> {
    const FIELD: &[u8] = b"\"idempotency_key\"";
    if !bytes.windows(FIELD.len()).any(|w| w == FIELD) {
        return Ok(None);
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(None); // the handler reports the malformed body
    };
    match body.get("idempotency_key") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key)) if valid_key(key) => Ok(Some(key.clone())),
        Some(_) => Err(invalid_key("idempotency_key")),
    }
}

fn invalid_key(field: &str) -> ApiError {
    ApiError::validation(
        field,
        format!("must be 1 to {KEY_LEN_MAX} printable ASCII characters"),
    )
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= KEY_LEN_MAX && key.bytes().all(|b| (0x21..0x7f).contains(&b))
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// Hash of what makes two requests "the same": method, path and the JSON body with its
/// keys sorted, so that field order and white space do not matter.
pub fn request_hash(method: &str, path: &str, body: &Bytes) -> String {
    let canonical = match serde_json::from_slice::<Value>(body) {
        Ok(value) => canonical_json(&value),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_field_order_and_white_space_but_not_values() {
        let a = request_hash(
            "POST",
            "/v1/x",
            &Bytes::from(r#"{"a":1,"b":{"c":2,"d":[1,2]}}"#),
        );
        let b = request_hash(
            "POST",
            "/v1/x",
            &Bytes::from("{ \"b\": {\"d\": [1, 2], \"c\": 2}, \"a\": 1 }"),
        );
        let c = request_hash(
            "POST",
            "/v1/x",
            &Bytes::from(r#"{"a":1,"b":{"c":3,"d":[1,2]}}"#),
        );
        let d = request_hash(
            "POST",
            "/v1/y",
            &Bytes::from(r#"{"a":1,"b":{"c":2,"d":[1,2]}}"#),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn keys_are_bounded_printable_ascii() {
        assert!(valid_key("order-42:retry"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(256)));
    }
}
