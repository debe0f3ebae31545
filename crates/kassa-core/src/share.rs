//! A share of an amount (e.g. "turnover of at least 1.0 × the last deposit") without floats.
//!
//! A [`Share`] is a whole number of basis points (1/10,000), so `1.0` is 10,000 and `0.35` is
//! 3,500, and comparisons against amounts are exact integer arithmetic in `i128`: no deposit
//! of any size rounds a turnover across the line.

use std::fmt;

/// Basis points in a share of 1 (all of it).
pub const BASIS_POINTS_PER_WHOLE: u32 = 10_000;

/// Largest share accepted: 1,000 × the amount. Wagering requirements are single or double
/// digit multiples; anything past this is a typo in the config.
pub const SHARE_MAX_BASIS_POINTS: u32 = 1_000 * BASIS_POINTS_PER_WHOLE;

/// Most decimal places a share may be written with (one basis point).
const DECIMALS_MAX: usize = 4;

/// A non-negative share of an amount, in basis points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Share {
    basis_points: u32,
}

/// Why a share was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Not a plain decimal number such as `1`, `1.0` or `0.35`.
    #[error("must be a decimal number such as 1.0 or 0.35")]
    NotDecimal,
    /// Finer than one basis point.
    #[error("may have at most {DECIMALS_MAX} decimal places")]
    TooPrecise,
    /// Larger than [`SHARE_MAX_BASIS_POINTS`].
    #[error("must be at most {}", Share::MAX)]
    TooLarge,
}

impl Share {
    /// No share at all: nothing is ever below it.
    pub const ZERO: Share = Share { basis_points: 0 };
    /// The whole amount (1.0).
    pub const WHOLE: Share = Share {
        basis_points: BASIS_POINTS_PER_WHOLE,
    };
    /// The largest share accepted.
    pub const MAX: Share = Share {
        basis_points: SHARE_MAX_BASIS_POINTS,
    };

    /// A share of `basis_points` / 10,000.
    pub fn from_basis_points(basis_points: u32) -> Result<Share, ShareError> {
        if basis_points > SHARE_MAX_BASIS_POINTS {
            return Err(ShareError::TooLarge);
        }
        Ok(Share { basis_points })
    }

    /// The share in basis points.
    pub fn basis_points(self) -> u32 {
        self.basis_points
    }

    /// Parses a plain decimal (`1`, `1.0`, `0.35`, `2.5`), exactly.
    pub fn parse(text: &str) -> Result<Share, ShareError> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
            return Err(ShareError::NotDecimal);
        }
        if text.ends_with('.') {
            return Err(ShareError::NotDecimal);
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > DECIMALS_MAX {
            return Err(ShareError::TooPrecise);
        }
        let whole = whole.trim_start_matches('0');
        // Longer than the maximum's digits cannot fit; this also keeps the parse in range.
        if whole.len() > 4 {
            return Err(ShareError::TooLarge);
        }
        let whole: u32 = whole.parse().unwrap_or(0);
        let fraction_points: u32 = format!("{fraction:0<4}").parse().unwrap_or(0);
        Share::from_basis_points(whole * BASIS_POINTS_PER_WHOLE + fraction_points)
    }

    /// Whether `part` is less than this share of `whole` (`part < share × whole`), exactly;
    /// e.g. whether the turnover since a deposit is below the share of it required.
    pub fn exceeds(self, part: i64, whole: i64) -> bool {
        let scaled_part = i128::from(part) * i128::from(BASIS_POINTS_PER_WHOLE);
        let scaled_share = i128::from(self.basis_points) * i128::from(whole);
        scaled_part < scaled_share
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.basis_points / BASIS_POINTS_PER_WHOLE;
        let fraction = self.basis_points % BASIS_POINTS_PER_WHOLE;
        let fraction = format!("{fraction:04}");
        let fraction = fraction.trim_end_matches('0');
        let fraction = if fraction.is_empty() { "0" } else { fraction };
        write!(f, "{whole}.{fraction}")
    }
}

impl serde::Serialize for Share {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Accepts `"1.0"`, `1` and, so that existing config files keep working, a float literal
/// such as `1.0` or `0.35`, read by its shortest decimal spelling (never by float
/// arithmetic): `0.35` is exactly 3,500 basis points.
impl<'de> serde::Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Share, D::Error> {
        deserializer.deserialize_any(ShareVisitor)
    }
}

struct ShareVisitor;

impl serde::de::Visitor<'_> for ShareVisitor {
    type Value = Share;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a share such as \"1.0\", 1 or 0.35")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Share, E> {
        Share::parse(text).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, whole: u64) -> Result<Share, E> {
        Share::parse(&whole.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, whole: i64) -> Result<Share, E> {
        Share::parse(&whole.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Share, E> {
        // Display prints the shortest decimal that reads back as the same f64, which is the
        // literal as written for any share with at most 4 decimals.
        Share::parse(&value.to_string()).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        let cases = [
            ("1", 10_000),
            ("1.0", 10_000),
            ("0.35", 3_500),
            ("0.0001", 1),
            ("2.50", 25_000),
            ("007.5", 75_000),
            ("0", 0),
            ("1000", SHARE_MAX_BASIS_POINTS),
            ("1.23450000", 12_345),
        ];
        for (text, basis_points) in cases {
            assert_eq!(
                Share::parse(text).map(Share::basis_points),
                Ok(basis_points),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_fine_or_huge_shares_are_refused() {
        for text in [
            "", ".5", "1.", "-1", "+1", "1e2", "0,5", " 1", "1.2.3", "abc",
        ] {
            assert_eq!(Share::parse(text), Err(ShareError::NotDecimal), "{text}");
        }
        assert_eq!(Share::parse("0.00001"), Err(ShareError::TooPrecise));
        assert_eq!(Share::parse("1000.0001"), Err(ShareError::TooLarge));
        assert_eq!(
            Share::parse("99999999999999999999"),
            Err(ShareError::TooLarge)
        );
        assert_eq!(
            Share::from_basis_points(SHARE_MAX_BASIS_POINTS + 1),
            Err(ShareError::TooLarge)
        );
    }

    #[test]
    fn display_reads_back() {
        for text in ["1.0", "0.35", "0.0001", "12.5", "0.0"] {
            assert_eq!(Share::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn config_values_of_every_shape_mean_the_same() {
        #[derive(serde::Deserialize)]
        struct Config {
            share: Share,
        }
        let read = |json: &str| serde_json::from_str::<Config>(json).map(|c| c.share);
        assert_eq!(read(r#"{"share": "1.0"}"#).unwrap(), Share::WHOLE);
        assert_eq!(read(r#"{"share": 1}"#).unwrap(), Share::WHOLE);
        assert_eq!(read(r#"{"share": 1.0}"#).unwrap(), Share::WHOLE);
        assert_eq!(read(r#"{"share": 0.35}"#).unwrap().basis_points(), 3_500);
        assert_eq!(read(r#"{"share": 0.1}"#).unwrap().basis_points(), 1_000);
        assert!(read(r#"{"share": -1}"#).is_err());
        assert!(read(r#"{"share": 0.00001}"#).is_err());
        assert!(read(r#"{"share": 1e30}"#).is_err());
    }

    #[test]
    fn the_line_is_exact() {
        let share = Share::parse("0.35").unwrap();
        // 0.35 × 1,000 = 350: 349 is below, 350 is not.
        assert!(share.exceeds(349, 1_000));
        assert!(!share.exceeds(350, 1_000));
        // 0.0041 is not exact in binary: 0.0041 × 100,000 is 410.00000000000006 as f64, so
        // the float comparison calls a turnover of exactly 410 "below"; the integer one
        // does not.
        let share = Share::parse("0.0041").unwrap();
        let float_share: f64 = "0.0041".parse().unwrap();
        assert!(410_f64 < float_share * 100_000_f64);
        assert!(!share.exceeds(410, 100_000));
        assert!(share.exceeds(409, 100_000));
        // Amounts at the edge of i64 neither overflow nor lose the last unit.
        assert!(Share::WHOLE.exceeds(i64::MAX - 1, i64::MAX));
        assert!(!Share::WHOLE.exceeds(i64::MAX, i64::MAX));
        assert!(!Share::ZERO.exceeds(0, i64::MAX));
        assert!(Share::MAX.exceeds(i64::MAX, i64::MAX));
    }

    proptest! {
        #[test]
        fn comparison_agrees_with_exact_rationals(
            basis_points in 0..=SHARE_MAX_BASIS_POINTS,
            part in any::<i64>(),
            whole in any::<i64>(),
        ) {
            let share = Share::from_basis_points(basis_points).unwrap();
            // part < bp/10000 × whole  ⇔  part × 10000 < bp × whole, checked here in
            // i128 written out in the other order as a cross-check of the scaling.
            let expected = i128::from(whole) * i128::from(basis_points)
                > 10_000_i128 * i128::from(part);
            prop_assert_eq!(share.exceeds(part, whole), expected);
            prop_assert_eq!(Share::parse(&share.to_string()), Ok(share));
        }
    }
}
