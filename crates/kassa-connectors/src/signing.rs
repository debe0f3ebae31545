//! Signatures on the requests Kassa sends to a provider (the sandbox PSP's scheme).
//!
//! `X-Kassa-Signature: v1=<hex HMAC-SHA256(api_secret, METHOD \n PATH \n TIMESTAMP \n NONCE \n BODY)>`,
//! with `X-Kassa-Timestamp` (Unix seconds) and `X-Kassa-Nonce` sent alongside. The timestamp
//! and the nonce let the provider refuse stale and replayed requests.

use hmac::{Hmac, Mac};
use rand::distributions::Alphanumeric;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::provider::ProviderError;
use crate::translator::CallContext;
use crate::transport::HttpRequest;

/// Header carrying the request's Unix timestamp in seconds.
pub const TIMESTAMP_HEADER: &str = "X-Kassa-Timestamp";
/// Header carrying the request's random nonce.
pub const NONCE_HEADER: &str = "X-Kassa-Nonce";
/// Header carrying `v1=<hex signature>`.
pub const SIGNATURE_HEADER: &str = "X-Kassa-Signature";
/// Length of the nonces Kassa generates; 32 base62 characters is ~190 bits.
pub const NONCE_LEN: usize = 32;

/// The `X-Kassa-Signature` value for one request. `path` is the URL's path (and query, if
/// any) exactly as sent, e.g. `/v1/payments/sbxpay_123`.
pub fn sign_request(
    secret: &[u8],
    method: &str,
    path: &str,
    timestamp_unix_s: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(timestamp_unix_s.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A fresh random nonce for one request.
pub fn new_nonce() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(NONCE_LEN)
        .map(char::from)
        .collect()
}

/// A request carrying `body` (JSON when not empty), signed with `secret` under the
/// `X-Kassa-*` headers for the attempt `context` describes: the scheme of the sandbox PSP and
/// the sandbox ID provider.
pub fn signed_http_request(
    secret: &SecretString,
    method: Method,
    path_and_query: String,
    body: Vec<u8>,
    context: &CallContext,
) -> Result<HttpRequest, ProviderError> {
    let signature = sign_request(
        secret.expose_secret().as_bytes(),
        method.as_str(),
        &path_and_query,
        context.now_unix_s,
        &context.nonce,
        &body,
    );
    let header = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| ProviderError::Protocol(format!("unsendable header value {text:?}")))
    };
    let mut headers = HeaderMap::new();
    headers.insert(TIMESTAMP_HEADER, header(&context.now_unix_s.to_string())?);
    headers.insert(NONCE_HEADER, header(&context.nonce)?);
    headers.insert(SIGNATURE_HEADER, header(&signature)?);
    if !body.is_empty() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(HttpRequest {
        method,
        path_and_query,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_every_part_of_the_request() {
        let base = sign_request(b"secret", "POST", "/v1/payments", 1_700_000_000, "n", b"{}");
        assert!(base.starts_with("v1="));
        assert_eq!(base.len(), 3 + 64);
        // The same input signs the same way; changing any one part changes the signature.
        assert_eq!(
            base,
            sign_request(b"secret", "POST", "/v1/payments", 1_700_000_000, "n", b"{}")
        );
        let variants = [
            sign_request(b"secreT", "POST", "/v1/payments", 1_700_000_000, "n", b"{}"),
            sign_request(b"secret", "GET", "/v1/payments", 1_700_000_000, "n", b"{}"),
            sign_request(b"secret", "POST", "/v1/payouts", 1_700_000_000, "n", b"{}"),
            sign_request(b"secret", "POST", "/v1/payments", 1_700_000_001, "n", b"{}"),
            sign_request(b"secret", "POST", "/v1/payments", 1_700_000_000, "m", b"{}"),
            sign_request(
                b"secret",
                "POST",
                "/v1/payments",
                1_700_000_000,
                "n",
                b"{ }",
            ),
        ];
        for variant in variants {
            assert_ne!(base, variant);
        }
    }

    #[test]
    fn signature_matches_an_independent_computation() {
        // HMAC-SHA256("key", "GET\n/p\n1\nabc\n") computed with openssl:
        // printf 'GET\n/p\n1\nabc\n' | openssl dgst -sha256 -hmac key
        let expected = "v1=299a35f0fec141451f25347929ddac980478e9d86203f2fcf527c42468687c2f";
        let actual = sign_request(b"key", "GET", "/p", 1, "abc", b"");
        assert_eq!(actual, expected);
    }

    #[test]
    fn nonces_are_long_and_random() {
        let a = new_nonce();
        assert!(a.len() >= 16);
        assert_ne!(a, new_nonce());
    }
}
