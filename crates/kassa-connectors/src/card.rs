//! A card number on its way to a direct acquirer: held as a secret, checked (Luhn, expiry),
//! never shown. `Debug` prints the last four digits only, so a card can sit in a struct that
//! is logged without leaking its number.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Why card details were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// Not 12 to 19 digits, or the Luhn check digit is wrong.
    #[error("the card number is not valid")]
    InvalidNumber,
    /// Not a month and year, or a month that has ended.
    #[error("the expiry date is not valid or has passed")]
    InvalidExpiry,
}

/// Shortest and longest PAN (ISO/IEC 7812).
const PAN_DIGITS: std::ops::RangeInclusive<usize> = 12..=19;

/// A card's number and expiry. The CVC is not part of it: it is checked at the page and
/// never travels further (nor is it stored).
#[derive(Clone)]
pub struct CardDetails {
    pan: SecretString,
    expiry_yymm: String,
}

impl CardDetails {
    /// Checks the number (digits, length, Luhn) and the expiry (`YYMM`) against `today_yymm`
    /// (`YYMM` of the current UTC month): a card is valid through the end of its month.
    pub fn new(pan: &str, expiry_yymm: &str, today_yymm: &str) -> Result<CardDetails, CardError> {
        if !luhn_valid(pan) {
            return Err(CardError::InvalidNumber);
        }
        if !expiry_valid(expiry_yymm, today_yymm) {
            return Err(CardError::InvalidExpiry);
        }
        Ok(CardDetails {
            pan: SecretString::from(pan.to_string()),
            expiry_yymm: expiry_yymm.to_string(),
        })
    }

    /// The number, for building the one message that carries it.
    pub fn pan(&self) -> &str {
        self.pan.expose_secret()
    }

    /// The expiry as `YYMM` (ISO 8583 field 14).
    pub fn expiry_yymm(&self) -> &str {
        &self.expiry_yymm
    }

    /// The last four digits, all that may be shown.
    pub fn last4(&self) -> &str {
        let pan = self.pan();
        &pan[pan.len().saturating_sub(4)..]
    }
}

impl fmt::Debug for CardDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardDetails")
            .field("last4", &self.last4())
            .field("expiry_yymm", &self.expiry_yymm)
            .finish()
    }
}

/// Whether `pan` is 12 to 19 ASCII digits with a correct Luhn check digit.
pub fn luhn_valid(pan: &str) -> bool {
    PAN_DIGITS.contains(&pan.len()) && kassa_core::card::luhn_valid(pan)
}

/// Whether `expiry_yymm` is a month (`YYMM`) not before `today_yymm`.
pub fn expiry_valid(expiry_yymm: &str, today_yymm: &str) -> bool {
    let parse = |text: &str| -> Option<(u32, u32)> {
        if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (year, month) = (text[..2].parse().ok()?, text[2..].parse().ok()?);
        (1..=12).contains(&month).then_some((year, month))
    };
    match (parse(expiry_yymm), parse(today_yymm)) {
        (Some(expiry), Some(today)) => expiry >= today,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_refuses_a_changed_digit() {
        for good in ["4000000000000002", "4111111111111111", "5555555555554444"] {
            assert!(luhn_valid(good), "{good}");
        }
        for bad in [
            "4000000000000003",
            "4111",
            "41111111111111111111",
            "4111-1111-1111-1111",
            "",
        ] {
            assert!(!luhn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn expiry_is_valid_through_its_month() {
        assert!(expiry_valid("2612", "2612"));
        assert!(expiry_valid("2701", "2612"));
        assert!(!expiry_valid("2611", "2612"));
        assert!(!expiry_valid("2613", "2612"));
        assert!(!expiry_valid("26a1", "2612"));
    }

    #[test]
    fn debug_shows_the_last_four_digits_only() {
        let card = CardDetails::new("4111111111111111", "3012", "2612").unwrap();
        let shown = format!("{card:?}");
        assert!(!shown.contains("411111111111"), "{shown}");
        assert!(shown.contains("1111"));
        assert_eq!(
            CardDetails::new("4111111111111112", "3012", "2612").unwrap_err(),
            CardError::InvalidNumber
        );
        assert_eq!(
            CardDetails::new("4111111111111111", "2001", "2612").unwrap_err(),
            CardError::InvalidExpiry
        );
    }
}
