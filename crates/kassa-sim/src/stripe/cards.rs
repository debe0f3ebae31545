//! The test payment methods and card numbers the simulator knows, and what each does.
//! Stripe's own test ids and numbers, plus two of Kassa's for failures Stripe cannot be
//! asked for: an answer that comes too late, and a server error.

/// What confirming an intent with a payment method comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardOutcome {
    /// Approved and captured (`succeeded`).
    Approve,
    /// Refused: a card error with Stripe's `code` and, when the issuer gave one, its
    /// `decline_code`.
    Decline {
        code: &'static str,
        decline_code: Option<&'static str>,
    },
    /// The issuer asks for 3-D Secure (`requires_action`).
    Challenge,
    /// Approved, but the answer is held back [`super::StripeSimConfig::slow_answer_ms`].
    SlowApprove,
    /// Nothing created; HTTP 500 with an `api_error`.
    ServerError,
}

/// Kassa's test payment method whose approval is answered too late (the intent is made).
pub const TIMEOUT_PAYMENT_METHOD: &str = "pm_card_kassaTimeout";
/// Kassa's test payment method answered with HTTP 500.
pub const SERVER_ERROR_PAYMENT_METHOD: &str = "pm_card_kassaServerError";

const fn decline(code: &'static str, decline_code: Option<&'static str>) -> CardOutcome {
    CardOutcome::Decline { code, decline_code }
}

/// (payment method id, card number, outcome).
const CARDS: &[(&str, &str, CardOutcome)] = &[
    ("pm_card_visa", "4242424242424242", CardOutcome::Approve),
    // Stripe's card issued in Germany (its "international cards" list).
    ("pm_card_de", "4000002760000016", CardOutcome::Approve),
    (
        "pm_card_mastercard",
        "5555555555554444",
        CardOutcome::Approve,
    ),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        "4000000000009995",
        decline("card_declined", Some("insufficient_funds")),
    ),
    (
        "pm_card_chargeDeclinedStolenCard",
        "4000000000009979",
        decline("card_declined", Some("stolen_card")),
    ),
    (
        "pm_card_chargeDeclinedLostCard",
        "4000000000009987",
        decline("card_declined", Some("lost_card")),
    ),
    (
        "pm_card_chargeDeclinedFraudulent",
        "4100000000000019",
        decline("card_declined", Some("fraudulent")),
    ),
    (
        "pm_card_chargeDeclinedProcessingError",
        "4000000000000119",
        decline("processing_error", None),
    ),
    (
        "pm_card_threeDSecure2Required",
        "4000002500003155",
        CardOutcome::Challenge,
    ),
    (
        TIMEOUT_PAYMENT_METHOD,
        "4000000000007726",
        CardOutcome::SlowApprove,
    ),
    (
        SERVER_ERROR_PAYMENT_METHOD,
        "4000000000005003",
        CardOutcome::ServerError,
    ),
];

/// The cards issued outside the United States, by number (Stripe's other test cards are
/// US cards).
const ISSUED_ABROAD: &[(&str, &str)] = &[("4000002760000016", "DE")];

/// What a charge shows of its card (`payment_method_details.card`): never the number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardFacts {
    pub brand: &'static str,
    pub country: &'static str,
    pub last4: String,
}

/// The card a payment method id (`pm_card_…`) or a card number names.
fn card(payment_method: &str) -> Option<&'static (&'static str, &'static str, CardOutcome)> {
    let digits: String = payment_method
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    CARDS
        .iter()
        .find(|(id, number, _)| *id == payment_method || *number == digits)
}

/// The outcome of a payment method id (`pm_card_…`) or a card number; `None` for one the
/// simulator does not know (Stripe answers `resource_missing`).
pub fn outcome(payment_method: &str) -> Option<CardOutcome> {
    card(payment_method).map(|(_, _, outcome)| *outcome)
}

/// The brand, issuing country and last four digits of a known payment method or number.
pub fn facts(payment_method: &str) -> Option<CardFacts> {
    let (_, number, _) = card(payment_method)?;
    let brand = match number.as_bytes().first() {
        Some(b'4') => "visa",
        Some(b'5') => "mastercard",
        _ => "unknown",
    };
    let country = ISSUED_ABROAD
        .iter()
        .find(|(abroad, _)| abroad == number)
        .map_or("US", |(_, country)| *country);
    Some(CardFacts {
        brand,
        country,
        last4: number[number.len() - 4..].to_string(),
    })
}

/// The human message Stripe gives with a card error's code.
pub fn message(code: &str, decline_code: Option<&str>) -> &'static str {
    match (code, decline_code) {
        (_, Some("insufficient_funds")) => "Your card has insufficient funds.",
        ("processing_error", _) => "An error occurred while processing your card. Try again in a little bit.",
        ("payment_intent_authentication_failure", _) => {
            "We are unable to authenticate your payment method. Please choose a different payment method and try again."
        }
        _ => "Your card was declined.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_shows_its_brand_country_and_last_four_only() {
        let german = facts("pm_card_de").unwrap();
        assert_eq!(
            (german.brand, german.country, german.last4.as_str()),
            ("visa", "DE", "0016")
        );
        assert_eq!(facts("4000 0027 6000 0016"), Some(german));
        let master = facts("pm_card_mastercard").unwrap();
        assert_eq!(
            (master.brand, master.country, master.last4.as_str()),
            ("mastercard", "US", "4444")
        );
        assert_eq!(facts("pm_card_nonexistent"), None);
    }

    #[test]
    fn ids_and_numbers_name_the_same_outcome() {
        assert_eq!(outcome("pm_card_visa"), Some(CardOutcome::Approve));
        assert_eq!(outcome("4242 4242 4242 4242"), Some(CardOutcome::Approve));
        assert_eq!(
            outcome("4000000000009995"),
            Some(decline("card_declined", Some("insufficient_funds")))
        );
        assert_eq!(
            outcome("pm_card_threeDSecure2Required"),
            Some(CardOutcome::Challenge)
        );
        assert_eq!(outcome("pm_card_unknown"), None);
    }
}
