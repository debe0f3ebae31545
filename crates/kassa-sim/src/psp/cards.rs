//! Card checks and the sandbox's test cards. Card numbers stay inside this module's callers:
//! they are never stored, logged or sent anywhere.

use time::{Month, OffsetDateTime};

/// Which 3-D Secure 2 path a card takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreeDs {
    /// The issuer authenticates without asking the player anything.
    Frictionless,
    /// The player must enter a one-time code on the challenge page.
    Challenge,
}

/// What the issuer answers once authentication is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardOutcome {
    /// Approved at once: `authorized` then `captured` webhooks.
    Approved,
    /// Approved after `slow_approval_delay_ms`.
    ApprovedAfterDelay,
    /// Declined with this reason: one `declined` webhook.
    Declined(&'static str),
    /// The issuer never answers: the payment stays pending and no webhook is ever sent.
    NoAnswer,
}

/// One documented test card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestCard {
    /// The card number.
    pub number: &'static str,
    /// Its 3-D Secure path.
    pub three_ds: ThreeDs,
    /// Its outcome (for a challenge card: when the right code is entered).
    pub outcome: CardOutcome,
}

/// The one-time code that passes the 3-D Secure challenge.
pub const CHALLENGE_CODE: &str = "123456";
/// Decline reason when the challenge code is wrong.
pub const REASON_AUTHENTICATION_FAILED: &str = "authentication_failed";
/// Decline reason of the insufficient-funds card.
pub const REASON_INSUFFICIENT_FUNDS: &str = "insufficient_funds";
/// Decline reason of the fraud card.
pub const REASON_SUSPECTED_FRAUD: &str = "suspected_fraud";
/// Decline reason of the cards whose issuer cannot be reached: a soft decline.
pub const REASON_ISSUER_UNAVAILABLE: &str = "issuer_unavailable";

/// The test cards, as documented in `docs/sandbox-psp.md`.
pub const TEST_CARDS: &[TestCard] = &[
    TestCard {
        number: "4242424242424242",
        three_ds: ThreeDs::Frictionless,
        outcome: CardOutcome::Approved,
    },
    TestCard {
        number: "4000000000003220",
        three_ds: ThreeDs::Challenge,
        outcome: CardOutcome::Approved,
    },
    TestCard {
        number: "4000000000009995",
        three_ds: ThreeDs::Frictionless,
        outcome: CardOutcome::Declined(REASON_INSUFFICIENT_FUNDS),
    },
    TestCard {
        number: "4100000000000019",
        three_ds: ThreeDs::Frictionless,
        outcome: CardOutcome::Declined(REASON_SUSPECTED_FRAUD),
    },
    TestCard {
        number: "4000000000000119",
        three_ds: ThreeDs::Frictionless,
        outcome: CardOutcome::NoAnswer,
    },
    TestCard {
        number: "4000000000000259",
        three_ds: ThreeDs::Frictionless,
        outcome: CardOutcome::Declined(REASON_ISSUER_UNAVAILABLE),
    },
    TestCard {
        number: "4000000000003246",
        three_ds: ThreeDs::Challenge,
        outcome: CardOutcome::Declined(REASON_ISSUER_UNAVAILABLE),
    },
    TestCard {
        number: "4000000000000077",
        three_ds: ThreeDs::Frictionless,
        outcome: CardOutcome::ApprovedAfterDelay,
    },
];

/// How a (Luhn-valid) card number behaves; numbers not in the table are approved frictionless.
pub fn behaviour(number: &str) -> (ThreeDs, CardOutcome) {
    TEST_CARDS
        .iter()
        .find(|card| card.number == number)
        .map(|card| (card.three_ds, card.outcome))
        .unwrap_or((ThreeDs::Frictionless, CardOutcome::Approved))
}

/// Whether a string of ASCII digits passes the Luhn (mod 10) check (shared with the
/// connectors through `kassa-core`).
pub use kassa_core::card::luhn_valid;

/// The card number without the spaces and dashes people type, if it looks like a PAN
/// (12 to 19 digits) and passes Luhn.
pub fn normalize_card_number(typed: &str) -> Option<String> {
    let digits: String = typed.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let plausible = (12..=19).contains(&digits.len()) && luhn_valid(&digits);
    plausible.then_some(digits)
}

/// Why an expiry date was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryError {
    /// Not `MM/YY`.
    Format,
    /// Before the current month.
    Expired,
}

/// Checks an expiry typed as `MM/YY` (spaces allowed) against `today`.
pub fn check_expiry(typed: &str, today: OffsetDateTime) -> Result<(), ExpiryError> {
    let compact: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    let (month, year) = compact.split_once('/').ok_or(ExpiryError::Format)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(month) || !two_digits(year) {
        return Err(ExpiryError::Format);
    }
    let month: u8 = month.parse().map_err(|_| ExpiryError::Format)?;
    let year: i32 = 2000 + year.parse::<i32>().map_err(|_| ExpiryError::Format)?;
    Month::try_from(month).map_err(|_| ExpiryError::Format)?;
    let current = (today.year(), u8::from(today.month()));
    if (year, month) < current {
        return Err(ExpiryError::Expired);
    }
    Ok(())
}

/// Whether a CVC is 3 or 4 digits.
pub fn cvc_valid(typed: &str) -> bool {
    let typed = typed.trim();
    (3..=4).contains(&typed.len()) && typed.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn every_test_card_passes_luhn_and_is_distinct() {
        for card in TEST_CARDS {
            assert!(luhn_valid(card.number), "{}", card.number);
            assert_eq!(
                normalize_card_number(card.number).as_deref(),
                Some(card.number)
            );
        }
        let mut numbers: Vec<_> = TEST_CARDS.iter().map(|card| card.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), TEST_CARDS.len());
    }

    #[test]
    fn the_test_card_table_matches_the_documentation() {
        use CardOutcome::*;
        use ThreeDs::*;
        let expected = [
            ("4242424242424242", Frictionless, Approved),
            ("4000000000003220", Challenge, Approved),
            (
                "4000000000009995",
                Frictionless,
                Declined("insufficient_funds"),
            ),
            (
                "4100000000000019",
                Frictionless,
                Declined("suspected_fraud"),
            ),
            ("4000000000000119", Frictionless, NoAnswer),
            (
                "4000000000000259",
                Frictionless,
                Declined("issuer_unavailable"),
            ),
            (
                "4000000000003246",
                Challenge,
                Declined("issuer_unavailable"),
            ),
            ("4000000000000077", Frictionless, ApprovedAfterDelay),
        ];
        for (number, three_ds, outcome) in expected {
            assert_eq!(behaviour(number), (three_ds, outcome), "{number}");
        }
        assert_eq!(TEST_CARDS.len(), expected.len());
        // A valid card outside the table is approved without a challenge.
        assert_eq!(behaviour("5555555555554444"), (Frictionless, Approved));
    }

    #[test]
    fn luhn_refuses_single_digit_errors_and_non_digits() {
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("4242 4242 4242 4242"));
        assert!(!luhn_valid(""));
        assert_eq!(
            normalize_card_number("4242 4242-4242 4242").as_deref(),
            Some("4242424242424242")
        );
        assert_eq!(normalize_card_number("0000000000"), None);
        assert_eq!(normalize_card_number("4242424242424241"), None);
    }

    #[test]
    fn expiry_must_be_mm_yy_and_not_in_the_past() {
        let today = datetime!(2025-10-17 09:41 UTC);
        assert_eq!(check_expiry("10/25", today), Ok(()));
        assert_eq!(check_expiry("12 / 30", today), Ok(()));
        assert_eq!(check_expiry("09/25", today), Err(ExpiryError::Expired));
        assert_eq!(check_expiry("13/30", today), Err(ExpiryError::Format));
        assert_eq!(check_expiry("00/30", today), Err(ExpiryError::Format));
        assert_eq!(check_expiry("1230", today), Err(ExpiryError::Format));
        assert_eq!(check_expiry("1/30", today), Err(ExpiryError::Format));
    }

    #[test]
    fn cvc_is_three_or_four_digits() {
        assert!(cvc_valid("123"));
        assert!(cvc_valid("1234"));
        assert!(!cvc_valid("12"));
        assert!(!cvc_valid("12a"));
    }
}
