//! Currencies, amounts in minor units, and exact parsing of decimal strings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A currency or crypto asset Kassa can hold, with the exponent of its minor unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

/// ISO 4217 exponents for the fiat currencies a casino meets, plus the crypto assets whose
/// ledger exponent is chosen so that amounts fit an `i64` (BTC 8, ETH 9, stablecoins 6).
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KZT", 2),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PEN", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
    ("BTC", 8),
    ("ETH", 9),
    ("LTC", 8),
    ("USDC", 6),
    ("USDT", 6),
];

/// Why a currency code or an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The code is not in Kassa's currency table.
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    /// The text is not a plain decimal number.
    #[error("{0:?} is not a decimal amount like \"50.00\"")]
    NotADecimal(String),
    /// More fractional digits than the currency's minor unit allows.
    #[error("{amount:?} has more than {exponent} decimals, the most {code} allows")]
    TooManyDecimals {
        amount: String,
        code: &'static str,
        exponent: u8,
    },
    /// The amount does not fit in 64-bit minor units.
    #[error("amount {0:?} is too large")]
    Overflow(String),
    /// Zero or negative where a positive amount is required.
    #[error("amount must be greater than zero")]
    NotPositive,
    /// Two amounts of different currencies were combined.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(&'static str, &'static str),
    /// Above the most one operation may move in this currency.
    #[error("amount {amount:?} is above the most one operation may move, {max} {code}")]
    TooLarge {
        amount: String,
        code: &'static str,
        max: String,
        max_minor: i64,
    },
    /// A configured maximum outside `1..=AMOUNT_MAX_MINOR_CEILING`.
    #[error("amount maximum {0} must be between 1 and 10^15 minor units")]
    LimitOutOfRange(i64),
}

impl Currency {
    /// Looks a currency up by its code (upper case, e.g. `EUR`, `BTC`).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(known, _)| *known == code)
            .map(|(code, exponent)| Currency {
                code,
                exponent: *exponent,
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))
    }

    /// The currency's code, e.g. `EUR`.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// How many decimal digits the minor unit has (EUR 2, JPY 0, BHD 3, BTC 8).
    pub fn exponent(self) -> u8 {
        self.exponent
    }

    /// Every currency Kassa knows.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(|(code, exponent)| Currency {
            code,
            exponent: *exponent,
        })
    }

    /// Parses a decimal string ("50.00", "5", "0.5") into minor units. Only the canonical
    /// spelling is accepted: no more decimals than the currency has (not even zeros: "1.000"
    /// EUR is refused, as the API documents), no leading zeros ("01.00"), no "-0".
    pub fn parse_minor(self, text: &str) -> Result<i64, MoneyError> {
        let not_decimal = || MoneyError::NotADecimal(text.to_string());
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (unsigned, None),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let fraction_ok = fraction.is_none_or(|f| !f.is_empty() && all_digits(f));
        if whole.is_empty() || !all_digits(whole) || !fraction_ok {
            return Err(not_decimal());
        }
        if whole.len() > 1 && whole.starts_with('0') {
            return Err(not_decimal());
        }
        let fraction = fraction.unwrap_or("");
        let exponent = usize::from(self.exponent);
        if fraction.len() > exponent {
            return Err(MoneyError::TooManyDecimals {
                amount: text.to_string(),
                code: self.code,
                exponent: self.exponent,
            });
        }
        let overflow = || MoneyError::Overflow(text.to_string());
        let mut minor: i64 = 0;
        let padded_fraction = fraction.bytes().chain(std::iter::repeat(b'0'));
        for digit in whole.bytes().chain(padded_fraction.take(exponent)) {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(digit - b'0')))
                .ok_or_else(overflow)?;
        }
        if negative && minor == 0 {
            return Err(not_decimal());
        }
        Ok(if negative { -minor } else { minor })
    }

    /// Parses a decimal string that must be strictly positive.
    pub fn parse_positive_minor(self, text: &str) -> Result<i64, MoneyError> {
        let minor = self.parse_minor(text)?;
        if minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        Ok(minor)
    }

    /// Formats minor units as the decimal string the API returns ("50.00", "-0.05", "100").
    pub fn format_minor(self, amount_minor: i64) -> String {
        let exponent = u32::from(self.exponent);
        let sign = if amount_minor < 0 { "-" } else { "" };
        let magnitude = amount_minor.unsigned_abs();
        if exponent == 0 {
            return format!("{sign}{magnitude}");
        }
        let scale = 10u64.pow(exponent);
        let width = exponent as usize;
        format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        Currency::from_code(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> String {
        currency.code.to_string()
    }
}

/// The highest per-operation maximum a configuration may set (10^15 minor units, 10 trillion
/// EUR): at most that per call, an account needs over 9,000 maximal calls in a row before the
/// ledger's overflow refusal is even reachable (ADR 21).
pub const AMOUNT_MAX_MINOR_CEILING: i64 = 1_000_000_000_000_000;

/// The most one operation may move, per currency: a default and per-currency overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmountLimits {
    default_max_minor: i64,
    max_minor_by_code: Vec<(&'static str, i64)>,
}

impl AmountLimits {
    /// Limits of `default_max_minor` for every currency but those in `overrides`; each value
    /// must be within `1..=AMOUNT_MAX_MINOR_CEILING`.
    pub fn new(
        default_max_minor: i64,
        overrides: impl IntoIterator<Item = (Currency, i64)>,
    ) -> Result<AmountLimits, MoneyError> {
        let in_range = |max: i64| {
            if (1..=AMOUNT_MAX_MINOR_CEILING).contains(&max) {
                Ok(max)
            } else {
                Err(MoneyError::LimitOutOfRange(max))
            }
        };
        let mut max_minor_by_code = Vec::new();
        for (currency, max) in overrides {
            max_minor_by_code.push((currency.code, in_range(max)?));
        }
        Ok(AmountLimits {
            default_max_minor: in_range(default_max_minor)?,
            max_minor_by_code,
        })
    }

    /// The most one operation may move in `currency`, in minor units.
    pub fn max_minor(&self, currency: Currency) -> i64 {
        self.max_minor_by_code
            .iter()
            .rev()
            .find(|(code, _)| *code == currency.code)
            .map_or(self.default_max_minor, |(_, max)| *max)
    }

    /// Refuses an amount above the maximum of its currency.
    pub fn check(&self, currency: Currency, amount_minor: i64) -> Result<i64, MoneyError> {
        let max_minor = self.max_minor(currency);
        if amount_minor > max_minor {
            return Err(self.too_large(currency, currency.format_minor(amount_minor)));
        }
        Ok(amount_minor)
    }

    /// Parses a strictly positive amount no larger than the maximum of its currency; text
    /// too large even for 64 bits is refused the same way.
    pub fn parse_positive(&self, currency: Currency, text: &str) -> Result<i64, MoneyError> {
        match currency.parse_positive_minor(text) {
            Ok(amount_minor) => self.check(currency, amount_minor),
            Err(MoneyError::Overflow(_)) => Err(self.too_large(currency, text.to_string())),
            Err(other) => Err(other),
        }
    }

    fn too_large(&self, currency: Currency, amount: String) -> MoneyError {
        let max_minor = self.max_minor(currency);
        MoneyError::TooLarge {
            amount,
            code: currency.code,
            max: currency.format_minor(max_minor),
            max_minor,
        }
    }
}

/// An amount in a currency's minor unit. Never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    /// The amount in minor units (cents for EUR, satoshi for BTC).
    pub amount_minor: i64,
    /// The currency the amount is in.
    pub currency: Currency,
}

impl Money {
    /// An amount of `amount_minor` minor units of `currency`.
    pub fn new(amount_minor: i64, currency: Currency) -> Money {
        Money {
            amount_minor,
            currency,
        }
    }

    /// Parses "50.00" in `currency`, refusing extra decimals.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        Ok(Money::new(currency.parse_minor(text)?, currency))
    }

    /// The amount as the API writes it, in its currency's decimals ("50.00", "1500").
    pub fn format_amount(self) -> String {
        self.currency.format_minor(self.amount_minor)
    }

    /// Adds two amounts of the same currency, refusing overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|sum| Money::new(sum, self.currency))
            .ok_or_else(|| MoneyError::Overflow(format!("{self} + {other}")))
    }

    /// Subtracts an amount of the same currency, refusing overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_sub(other.amount_minor)
            .map(|difference| Money::new(difference, self.currency))
            .ok_or_else(|| MoneyError::Overflow(format!("{self} - {other}")))
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(
                self.currency.code,
                other.currency.code,
            ))
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.currency.format_minor(self.amount_minor),
            self.currency
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn eur() -> Currency {
        Currency::from_code("EUR").unwrap()
    }

    #[test]
    fn parses_exact_scale_and_refuses_extra_decimals() {
        assert_eq!(eur().parse_minor("50.00"), Ok(5000));
        assert_eq!(eur().parse_minor("50"), Ok(5000));
        assert_eq!(eur().parse_minor("0.5"), Ok(50));
        assert_eq!(eur().parse_minor("0.05"), Ok(5));
        assert_eq!(eur().parse_minor("-0.05"), Ok(-5));
        for too_precise in ["50.001", "50.010", "1.000", "50.000", "0.000"] {
            assert!(
                matches!(
                    eur().parse_minor(too_precise),
                    Err(MoneyError::TooManyDecimals { .. })
                ),
                "{too_precise:?}: more decimals than EUR has, even zeros, is refused"
            );
        }
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(jpy.parse_minor("1500"), Ok(1500));
        assert!(jpy.parse_minor("1500.5").is_err());
        assert!(jpy.parse_minor("1500.0").is_err());
        let bhd = Currency::from_code("BHD").unwrap();
        assert_eq!(bhd.parse_minor("1.234"), Ok(1234));
        let btc = Currency::from_code("BTC").unwrap();
        assert_eq!(btc.parse_minor("0.00000001"), Ok(1));
        assert!(btc.parse_minor("0.000000001").is_err());
    }

    #[test]
    fn refuses_text_that_is_not_a_plain_decimal() {
        for bad in [
            "", ".", "5.", ".5", "1e3", "+5", " 5", "5 ", "5,00", "--5", "0x10", "NaN", "01.00",
            "00", "007", "-0", "-0.00", "-01", "1..0", "1.0.0", "-", "-.5",
        ] {
            assert!(eur().parse_minor(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            eur().parse_minor("92233720368547758.08"),
            Err(MoneyError::Overflow(_))
        ));
        assert_eq!(eur().parse_minor("92233720368547758.07"), Ok(i64::MAX));
        assert_eq!(
            eur().parse_positive_minor("0.00"),
            Err(MoneyError::NotPositive)
        );
        assert!(Currency::from_code("eur").is_err());
        assert!(Currency::from_code("XXX").is_err());
    }

    #[test]
    fn limits_refuse_amounts_above_the_currency_maximum() {
        let btc = Currency::from_code("BTC").unwrap();
        let limits = AmountLimits::new(100_000, [(btc, 500)]).unwrap();
        assert_eq!(limits.max_minor(eur()), 100_000);
        assert_eq!(limits.max_minor(btc), 500);
        assert_eq!(limits.parse_positive(eur(), "1000.00"), Ok(100_000));
        let refused = limits.parse_positive(eur(), "1000.01").unwrap_err();
        assert_eq!(
            refused,
            MoneyError::TooLarge {
                amount: "1000.01".into(),
                code: "EUR",
                max: "1000.00".into(),
                max_minor: 100_000,
            }
        );
        assert!(matches!(
            limits.parse_positive(eur(), "92233720368547758.08"),
            Err(MoneyError::TooLarge { .. })
        ));
        assert!(matches!(
            limits.parse_positive(eur(), "92233720368547758.07"),
            Err(MoneyError::TooLarge { .. })
        ));
        assert_eq!(limits.parse_positive(btc, "0.00000500"), Ok(500));
        assert!(limits.parse_positive(btc, "0.00000501").is_err());
        assert_eq!(
            limits.parse_positive(eur(), "0.00"),
            Err(MoneyError::NotPositive)
        );
        assert!(limits.check(eur(), 100_001).is_err());
        assert_eq!(limits.check(eur(), 100_000), Ok(100_000));
        for out_of_range in [0, -1, AMOUNT_MAX_MINOR_CEILING + 1, i64::MAX] {
            assert_eq!(
                AmountLimits::new(out_of_range, []),
                Err(MoneyError::LimitOutOfRange(out_of_range))
            );
            assert!(AmountLimits::new(1, [(btc, out_of_range)]).is_err());
        }
    }

    #[test]
    fn formats_minor_units() {
        assert_eq!(eur().format_minor(5000), "50.00");
        assert_eq!(eur().format_minor(-5), "-0.05");
        assert_eq!(eur().format_minor(i64::MIN), "-92233720368547758.08");
        assert_eq!(
            Currency::from_code("JPY").unwrap().format_minor(1500),
            "1500"
        );
        assert_eq!(
            Currency::from_code("ETH").unwrap().format_minor(1),
            "0.000000001"
        );
    }

    #[test]
    fn money_formats_its_amount_in_its_currency() {
        assert_eq!(Money::new(5000, eur()).format_amount(), "50.00");
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(Money::new(1500, jpy).format_amount(), "1500");
        assert_eq!(Money::new(-5, eur()).to_string(), "-0.05 EUR");
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::new(i64::MAX, eur());
        assert!(a.checked_add(Money::new(1, eur())).is_err());
        let usd = Currency::from_code("USD").unwrap();
        assert!(Money::new(1, eur())
            .checked_add(Money::new(1, usd))
            .is_err());
        assert_eq!(
            Money::new(1, eur())
                .checked_sub(Money::new(3, eur()))
                .unwrap()
                .amount_minor,
            -2
        );
    }

    proptest! {
        /// Amount text comes straight from API callers: any string is parsed or refused,
        /// never panics, and whatever is accepted formats back to the same value.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,40}", index in 0usize..64) {
            let currency = Currency::all().nth(index % Currency::all().count()).unwrap();
            if let Ok(minor) = currency.parse_minor(&text) {
                // Only the canonical spelling is accepted: what formatting gives back, perhaps
                // short of trailing fractional zeros.
                let formatted = currency.format_minor(minor);
                prop_assert!(formatted.starts_with(&text), "{} accepted as {}", text, formatted);
                let rest = &formatted[text.len()..];
                prop_assert!(rest.trim_start_matches('.').bytes().all(|b| b == b'0'));
                prop_assert_eq!(currency.parse_minor(&formatted), Ok(minor));
            }
        }

        #[test]
        fn digit_heavy_text_parses_or_is_refused(text in "-?[0-9]{0,25}(\\.[0-9]{0,12})?", index in 0usize..64) {
            let currency = Currency::all().nth(index % Currency::all().count()).unwrap();
            let _ = currency.parse_minor(&text);
        }

        #[test]
        fn format_then_parse_round_trips(amount in (i64::MIN + 1)..=i64::MAX, index in 0usize..64) {
            let currency = Currency::all().nth(index % Currency::all().count()).unwrap();
            let text = currency.format_minor(amount);
            prop_assert_eq!(currency.parse_minor(&text), Ok(amount));
        }
    }
}
