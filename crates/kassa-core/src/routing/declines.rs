//! Decline classes as data: which provider decline reasons are *hard* (the issuer or the
//! player's situation said no; another provider would say no too, or must not be asked) and
//! which are *soft* (this provider could not decide; the next may). Only soft declines and
//! technical failures cascade.

use serde::{Deserialize, Serialize};

use super::document::DocumentError;

/// How a decline reason is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineClass {
    /// Final for this payment: no cascade.
    Hard,
    /// This provider could not decide: the next provider may be asked.
    Soft,
}

/// The reasons of each class; a reason in neither list is hard (the safe default: an unknown
/// decline never sends a player's card to a second provider).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclineClasses {
    /// Reasons that never cascade.
    pub hard: Vec<String>,
    /// Reasons that cascade to the next provider.
    pub soft: Vec<String>,
}

/// Reasons that never cascade, by default: the issuer's or the player's answer, or fraud.
pub const DEFAULT_HARD: &[&str] = &[
    "insufficient_funds",
    "do_not_honour",
    "stolen_card",
    "lost_card",
    "fraud",
    "suspected_fraud",
    "expired_card",
    "invalid_card",
    "authentication_failed",
    "restricted_card",
    "limit_exceeded",
    // Stripe's `decline_code`s of the same meaning (`do_not_honor`: the issuer gave no
    // reason; treated like `do_not_honour`, a routing document may move it).
    "do_not_honor",
    "fraudulent",
    "pickup_card",
];

/// Reasons that cascade, by default: the provider or the network could not decide.
pub const DEFAULT_SOFT: &[&str] = &[
    "issuer_unavailable",
    "technical_error",
    "system_malfunction",
    "timeout",
    "try_again",
    "processing_error",
    "provider_unavailable",
    "acquirer_unavailable",
    // Stripe's `decline_code`s of the same meaning.
    "try_again_later",
    "issuer_not_available",
    "reenter_transaction",
];

impl Default for DeclineClasses {
    fn default() -> DeclineClasses {
        DeclineClasses {
            hard: DEFAULT_HARD.iter().map(|r| r.to_string()).collect(),
            soft: DEFAULT_SOFT.iter().map(|r| r.to_string()).collect(),
        }
    }
}

impl DeclineClasses {
    /// The class of `reason`; unknown or missing reasons are hard.
    pub fn classify(&self, reason: Option<&str>) -> DeclineClass {
        match reason {
            Some(reason) if self.hard.iter().any(|r| r == reason) => DeclineClass::Hard,
            Some(reason) if self.soft.iter().any(|r| r == reason) => DeclineClass::Soft,
            _ => DeclineClass::Hard,
        }
    }

    pub(super) fn validate(&self) -> Result<(), DocumentError> {
        if let Some(reason) = self.hard.iter().find(|r| self.soft.contains(r)) {
            return Err(DocumentError {
                place: "declines".into(),
                problem: format!("{reason:?} is both hard and soft"),
            });
        }
        let too_many = self.hard.len() + self.soft.len() > super::document::LIST_MAX;
        if too_many {
            return Err(DocumentError {
                place: "declines".into(),
                problem: format!("at most {} reasons", super::document::LIST_MAX),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_missing_reasons_are_hard() {
        let classes = DeclineClasses::default();
        assert_eq!(
            classes.classify(Some("issuer_unavailable")),
            DeclineClass::Soft
        );
        assert_eq!(
            classes.classify(Some("insufficient_funds")),
            DeclineClass::Hard
        );
        assert_eq!(classes.classify(Some("something_new")), DeclineClass::Hard);
        assert_eq!(classes.classify(None), DeclineClass::Hard);
    }

    #[test]
    fn a_reason_in_both_lists_is_refused() {
        let mut classes = DeclineClasses::default();
        classes.soft.push("insufficient_funds".into());
        assert!(classes.validate().is_err());
    }
}
