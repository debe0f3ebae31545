//! Identifiers: Kassa's own prefixed ids, and validation of the ids callers send us.

use rand::distributions::Alphanumeric;
use rand::Rng;

/// Length of the random part of a generated id; 24 base62 characters is ~143 bits.
const RANDOM_ID_LEN: usize = 24;

/// Longest caller-chosen id (player id, txn id, idempotency key) Kassa accepts.
pub const EXTERNAL_ID_LEN_MAX: usize = 255;

/// A new random id with a type prefix, e.g. `pay_4fQ…`.
pub fn generate(prefix: &str) -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(RANDOM_ID_LEN)
        .map(char::from)
        .collect();
    format!("{prefix}_{random}")
}

/// Why a caller-chosen id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty ids cannot be looked up again.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`EXTERNAL_ID_LEN_MAX`].
    #[error("must be at most {EXTERNAL_ID_LEN_MAX} characters")]
    TooLong,
    /// Outside the printable ASCII set we allow (letters, digits and `-_.:@/`).
    #[error("may contain only letters, digits and - _ . : @ /")]
    BadCharacter,
}

/// Checks an id chosen by the caller (player id, txn id, round id).
pub fn validate_external(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > EXTERNAL_ID_LEN_MAX {
        return Err(IdError::TooLong);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:@/".contains(c);
    if !id.chars().all(allowed) {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_differ() {
        let a = generate("pay");
        let b = generate("pay");
        assert!(a.starts_with("pay_"));
        assert_eq!(a.len(), 4 + RANDOM_ID_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn external_ids_are_bounded_and_printable() {
        assert_eq!(validate_external("player-42"), Ok(()));
        assert_eq!(validate_external("round:7/spin.3@x"), Ok(()));
        assert_eq!(validate_external(""), Err(IdError::Empty));
        assert_eq!(validate_external(&"a".repeat(256)), Err(IdError::TooLong));
        assert_eq!(validate_external("a b"), Err(IdError::BadCharacter));
        assert_eq!(validate_external("é"), Err(IdError::BadCharacter));
    }
}
