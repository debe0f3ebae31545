//! Standard Webhooks signatures for outbound events: secrets `whsec_<base64 of the key>`,
//! `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`, several
//! signatures space-separated (a rotated secret signs beside the new one).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret's key (the spec asks for 24 to 64).
pub const SECRET_KEY_BYTES: usize = 32;

/// A stored secret that is not `whsec_` + base64.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret is not whsec_ followed by base64")]
pub struct MalformedSecret;

/// A fresh secret: `whsec_` + base64 of [`SECRET_KEY_BYTES`] random bytes.
pub fn new_secret() -> SecretString {
    let mut key = [0u8; SECRET_KEY_BYTES];
    rand::thread_rng().fill_bytes(&mut key);
    SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// One `v1,<base64>` signature of `body` sent as message `id` at `timestamp_s`.
pub fn sign(
    secret: &SecretString,
    id: &str,
    timestamp_s: i64,
    body: &[u8],
) -> Result<String, MalformedSecret> {
    let encoded = secret
        .expose_secret()
        .strip_prefix(SECRET_PREFIX)
        .ok_or(MalformedSecret)?;
    let key = STANDARD.decode(encoded).map_err(|_| MalformedSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| MalformedSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[&SecretString],
    id: &str,
    timestamp_s: i64,
    body: &[u8],
) -> Result<String, MalformedSecret> {
    let signatures = secrets
        .iter()
        .map(|secret| sign(secret, id, timestamp_s, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_string())
    }

    /// The vectors of the standard-webhooks libraries' own tests (research notes §4).
    #[test]
    fn the_spec_test_vectors_sign_as_published() {
        let signed = sign(
            &secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let signed = sign(
            &secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(signed, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn a_changed_body_or_timestamp_changes_the_signature() {
        let key = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_ne!(
            sign(&key, id, 1614265331, br#"{"test": 2432232314}"#).unwrap(),
            good
        );
        assert_ne!(
            sign(&key, id, 1614265330, br#"{"test": 2432232315}"#).unwrap(),
            good
        );
    }

    #[test]
    fn rotation_signs_with_every_secret_space_separated() {
        let old = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let new = new_secret();
        let header = signature_header(
            &[&new, &old],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].starts_with("v1,"));
        assert_eq!(parts[1], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn new_secrets_are_whsec_and_decode_to_32_random_bytes() {
        let a = new_secret();
        let b = new_secret();
        let encoded = a.expose_secret().strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), SECRET_KEY_BYTES);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(
            !format!("{a:?}").contains(encoded),
            "Debug never shows a secret"
        );
    }

    #[test]
    fn a_malformed_secret_is_refused_not_used() {
        assert!(sign(&secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "m", 1, b"{}").is_err());
        assert!(sign(&secret("whsec_not base64!"), "m", 1, b"{}").is_err());
    }
}
