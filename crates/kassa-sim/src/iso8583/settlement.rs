//! The host's settlement file: the day's approved, non-reversed transactions as CSV, for the
//! reconciliation work to come. Served at `GET /settlement/{YYYY-MM-DD}` when the host
//! simulator has a `settlement_listen` address.
//!
//! Format: UTF-8 CSV, a header line, then one line per transaction in the order the host
//! approved them, `\n` line ends, no quoting (no field holds a comma):
//!
//! | column | what |
//! |---|---|
//! | `date` | the UTC day the host approved it, `YYYY-MM-DD` |
//! | `mti` | the request's MTI: `0200` purchase, refund or OCT; `0100` a completed authorization |
//! | `terminal_id` | field 41, spaces trimmed |
//! | `stan` | field 11 |
//! | `rrn` | field 37 |
//! | `pan_masked` | first six and last four digits, `*` between (a refund: its purchase's card) |
//! | `amount_minor` | field 4 as a number (a completed authorization: the completed amount) |
//! | `currency` | field 49, ISO 4217 numeric |
//! | `processing_code` | field 3 (`000000` purchase, `200000` refund, `260000` OCT) |
//! | `response_code` | field 39 of the answer, `00` |
//! | `auth_id` | field 38 of the answer |
//!
//! Listed: approved `0200`s (purchases, refunds, OCTs) and completed `0100`s, neither reversed.
//! Not listed: declines, reversed transactions, authorizations never completed.

use std::fmt::Write;

/// The header line of the file.
pub const HEADER: &str = "date,mti,terminal_id,stan,rrn,pan_masked,amount_minor,currency,processing_code,response_code,auth_id";

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub date: String,
    pub mti: String,
    pub terminal_id: String,
    pub stan: String,
    pub rrn: String,
    pub pan_masked: String,
    pub amount_minor: u64,
    pub currency: String,
    pub processing_code: String,
    pub auth_id: String,
}

/// The file of `lines`.
pub(crate) fn file(lines: &[Line]) -> String {
    let mut out = format!("{HEADER}\n");
    for l in lines {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},00,{}",
            l.date,
            l.mti,
            l.terminal_id.trim_end(),
            l.stan,
            l.rrn,
            l.pan_masked,
            l.amount_minor,
            l.currency,
            l.processing_code,
            l.auth_id
        );
    }
    out
}

/// The first six and last four digits of `pan`, `*` between.
pub(crate) fn mask(pan: &str) -> String {
    let (first, last) = (
        pan.get(..6).unwrap_or(""),
        pan.get(pan.len().saturating_sub(4)..).unwrap_or(""),
    );
    format!("{first}{}{last}", "*".repeat(pan.len().saturating_sub(10)))
}

/// Today's UTC date, `YYYY-MM-DD`.
pub(crate) fn today() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}

/// Whether `date` is `YYYY-MM-DD` digits.
pub(crate) fn is_date(date: &str) -> bool {
    let bytes = date.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pan_is_masked_and_a_date_checked() {
        assert_eq!(mask("4000000000000002"), "400000******0002");
        assert!(is_date("2026-12-06"));
        assert!(!is_date("20261206") && !is_date("2026-12-0x") && !is_date("../etc/pas"));
        assert_eq!(today().len(), 10);
    }
}
