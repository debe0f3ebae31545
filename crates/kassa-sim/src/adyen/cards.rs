//! The simulator's test cards: what each card number makes Adyen answer.

/// Approves (Visa).
pub const APPROVE_VISA: &str = "4111111111111111";
/// Approves (Mastercard).
pub const APPROVE_MASTERCARD: &str = "5555555555554444";
/// Refused `Not enough balance` (a hard decline).
pub const NOT_ENOUGH_BALANCE: &str = "4000020000000000";
/// Refused `Stolen Card` (a hard decline).
pub const STOLEN_CARD: &str = "4000300011112220";
/// Refused `Acquirer Error` (a soft decline: another provider may take it).
pub const ACQUIRER_ERROR: &str = "4000000000000119";
/// Asks for a 3-D Secure 2 challenge (Adyen's own 3DS2 test card); password [`CHALLENGE_PASSWORD`].
pub const THREE_DS2: &str = "4212345678901237";
/// Authorises at once but answers only after the simulator's `slow_answer_ms`.
pub const SLOW_ANSWER: &str = "4000000000000002";
/// Answers HTTP 500 without acting.
pub const SERVER_ERROR: &str = "4000000000000500";
/// Approves (Visa), a card the simulator says was issued in Germany.
pub const APPROVE_VISA_DE: &str = "4000002760000016";
/// What the 3-D Secure challenge page accepts, as in Adyen's test environment.
pub const CHALLENGE_PASSWORD: &str = "password";

/// What a card number makes a payment do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `Authorised`.
    Authorise,
    /// `Refused` with this `refusalReason` and `refusalReasonCode`.
    Refuse(&'static str, &'static str),
    /// `ChallengeShopper`.
    Challenge,
    /// `Authorised`, answered late.
    SlowAuthorise,
    /// HTTP 500, nothing done.
    ServerError,
}

/// The verdict of `card_number` (spaces ignored); an unknown card is `Refused`.
pub fn verdict(card_number: &str) -> Verdict {
    let digits: String = card_number.chars().filter(|c| !c.is_whitespace()).collect();
    match digits.as_str() {
        APPROVE_VISA | APPROVE_MASTERCARD | APPROVE_VISA_DE => Verdict::Authorise,
        NOT_ENOUGH_BALANCE => Verdict::Refuse("Not enough balance", "5"),
        STOLEN_CARD => Verdict::Refuse("Stolen Card", "6"),
        ACQUIRER_ERROR => Verdict::Refuse("Acquirer Error", "4"),
        THREE_DS2 => Verdict::Challenge,
        SLOW_ANSWER => Verdict::SlowAuthorise,
        SERVER_ERROR => Verdict::ServerError,
        _ => Verdict::Refuse("Refused", "2"),
    }
}

/// What an authorisation's `additionalData` says of the card: never the number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardFacts {
    /// `cardIssuingCountry` (and `issuerCountry`).
    pub country: &'static str,
    /// `paymentMethod`: `visa` or `mc`.
    pub brand: &'static str,
    /// `cardSummary`: the last four digits.
    pub last4: String,
}

/// The facts of `card_number`: the simulator's own issuing countries (NL, where Adyen's test
/// platform is, except [`APPROVE_VISA_DE`]); `None` for what is not a card number.
pub fn facts(card_number: &str) -> Option<CardFacts> {
    let digits: String = card_number.chars().filter(|c| !c.is_whitespace()).collect();
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(CardFacts {
        country: if digits == APPROVE_VISA_DE {
            "DE"
        } else {
            "NL"
        },
        brand: if digits.starts_with('5') {
            "mc"
        } else {
            "visa"
        },
        last4: digits[digits.len() - 4..].to_string(),
    })
}
