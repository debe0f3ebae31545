//! Identifiers: Kassa's own prefixed ids, and validation of the ids callers send us.
//!
//! Each kind of id is its own type, so a payout id cannot be passed where a payment id is
//! meant. Kassa's own ids ([`PaymentId`], [`PayoutId`], [`RefundId`], [`MerchantId`]) carry
//! a prefix naming their kind; ids callers choose ([`PlayerId`], [`TxnId`], [`RoundId`],
//! [`ExternalPaymentId`]) follow [`validate_external`]; a provider's [`DisputeId`] is taken
//! as the provider sent it.

use std::fmt;

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
    /// A Kassa id without the prefix of its kind (e.g. a payout id given as a payment id).
    #[error("must start with {0}_")]
    WrongPrefix(&'static str),
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

/// Declares a newtype over `String` for one kind of id, with `as_str`, `Display`,
/// `AsRef<str>`, conversions and serde (deserializing runs the kind's `parse`).
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<$name, IdError> {
                $name::parse(&text)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<$name, IdError> {
                $name::parse(text)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Declares an id Kassa generates, with its prefix, `generate` and a `parse` that checks the
/// prefix as well as the external-id rules.
macro_rules! generated_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        id_type!($(#[$meta])* $name);

        impl $name {
            /// The prefix of every id of this kind, without the `_`.
            pub const PREFIX: &'static str = $prefix;

            /// A new random id of this kind.
            pub fn generate() -> $name {
                $name(generate($prefix))
            }

            /// An id of this kind given back to us (a path, a stored row, a provider's echo).
            pub fn parse(text: &str) -> Result<$name, IdError> {
                validate_external(text)?;
                match text.strip_prefix($prefix).and_then(|rest| rest.strip_prefix('_')) {
                    Some(rest) if !rest.is_empty() => Ok($name(text.to_string())),
                    _ => Err(IdError::WrongPrefix($prefix)),
                }
            }
        }
    };
}

/// Declares an id the caller chooses, checked by [`validate_external`].
macro_rules! external_id {
    ($(#[$meta:meta])* $name:ident) => {
        id_type!($(#[$meta])* $name);

        impl $name {
            /// The caller's id, if it follows [`validate_external`].
            pub fn parse(text: &str) -> Result<$name, IdError> {
                validate_external(text)?;
                Ok($name(text.to_string()))
            }
        }
    };
}

generated_id!(
    /// A payment (deposit), `pay_…`.
    PaymentId,
    "pay"
);
generated_id!(
    /// A payout (withdrawal), `po_…`.
    PayoutId,
    "po"
);
generated_id!(
    /// A refund of a payment, `rf_…`.
    RefundId,
    "rf"
);
generated_id!(
    /// A merchant (an operator's casino), `mch_…`.
    MerchantId,
    "mch"
);
external_id!(
    /// A player, as the merchant names them.
    PlayerId
);
external_id!(
    /// A wallet call's transaction id, chosen by the caller; its idempotency key.
    TxnId
);
external_id!(
    /// A game round, tying a bet to its win.
    RoundId
);
external_id!(
    /// A deposit in the caller's own books, named when a wallet credit enrols it.
    ExternalPaymentId
);
id_type!(
    /// A provider's id for a dispute (chargeback); only its emptiness is checked, since the
    /// provider's signed event is the authority on it.
    DisputeId
);

impl DisputeId {
    /// The provider's dispute id; refused only when empty.
    pub fn parse(text: &str) -> Result<DisputeId, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        Ok(DisputeId(text.to_string()))
    }
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

    #[test]
    fn kassa_ids_are_generated_with_and_parsed_by_their_prefix() {
        let payment = PaymentId::generate();
        assert!(payment.as_str().starts_with("pay_"));
        assert_eq!(PaymentId::parse(payment.as_str()), Ok(payment.clone()));
        assert!(PayoutId::generate().as_str().starts_with("po_"));
        assert!(RefundId::generate().as_str().starts_with("rf_"));
        assert_eq!(MerchantId::parse("mch_demo").unwrap().as_str(), "mch_demo");
        assert_eq!(PaymentId::parse("po_abc"), Err(IdError::WrongPrefix("pay")));
        assert_eq!(PaymentId::parse("pay_"), Err(IdError::WrongPrefix("pay")));
        assert_eq!(PaymentId::parse("payx"), Err(IdError::WrongPrefix("pay")));
        assert_eq!(PayoutId::parse("pay_abc"), Err(IdError::WrongPrefix("po")));
        assert_eq!(PaymentId::parse("pay_a b"), Err(IdError::BadCharacter));
        assert_eq!(RefundId::parse(""), Err(IdError::Empty));
    }

    #[test]
    fn caller_ids_follow_the_external_rules() {
        assert_eq!(
            PlayerId::parse("player-42").unwrap().to_string(),
            "player-42"
        );
        assert_eq!(TxnId::parse(&"t".repeat(256)), Err(IdError::TooLong));
        assert_eq!(RoundId::parse("r 1"), Err(IdError::BadCharacter));
        assert_eq!(ExternalPaymentId::parse(""), Err(IdError::Empty));
        assert_eq!(DisputeId::parse("dp 1/ü").unwrap().as_str(), "dp 1/ü");
        assert_eq!(DisputeId::parse(""), Err(IdError::Empty));
    }

    #[test]
    fn ids_travel_as_plain_strings_and_are_checked_when_read() {
        let payout = PayoutId::parse("po_123").unwrap();
        assert_eq!(serde_json::to_string(&payout).unwrap(), "\"po_123\"");
        let back: PayoutId = serde_json::from_str("\"po_123\"").unwrap();
        assert_eq!(back, payout);
        assert!(serde_json::from_str::<PayoutId>("\"pay_123\"").is_err());
        assert!(serde_json::from_str::<PlayerId>("\"a b\"").is_err());
    }
}
