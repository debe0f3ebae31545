//! Trace numbers: the STAN (field 11) and RRN (field 37) of every message a terminal sends,
//! unique per terminal per day. The connector does not keep them itself: a restart would
//! start counting again and reuse numbers the host still remembers. The server implements
//! [`TraceNumbers`] over its database; [`MemoryTraceNumbers`] is for tests and benches.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::provider::ProviderError;

/// Largest STAN: six digits, `000000` is not used.
pub const STAN_MAX: i64 = 999_999;

/// One message's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceNumber {
    /// Field 11, six digits.
    pub stan: String,
    /// Field 37, twelve characters: `YDDD` (last digit of the year, day of the year) and
    /// eight digits of the day's sequence.
    pub rrn: String,
}

impl TraceNumber {
    /// The numbers of the `sequence`th message (from 1) of a terminal on `day` (`YYYYMMDD`,
    /// UTC). Unique within the day for up to [`STAN_MAX`] messages; past that the STAN wraps
    /// (and the RRN stays unique).
    pub fn of(sequence: i64, day: &str) -> TraceNumber {
        let stan = (sequence - 1).rem_euclid(STAN_MAX) + 1;
        TraceNumber {
            stan: format!("{stan:06}"),
            rrn: format!(
                "{}{:08}",
                rrn_day_prefix(day),
                sequence.rem_euclid(100_000_000)
            ),
        }
    }
}

/// `YDDD` of a `YYYYMMDD` day: the year's last digit and the ordinal day.
fn rrn_day_prefix(day: &str) -> String {
    let parsed = time::Date::parse(
        day,
        &time::macros::format_description!("[year][month][day]"),
    );
    match parsed {
        Ok(date) => format!("{}{:03}", date.year().rem_euclid(10), date.ordinal()),
        Err(_) => "0000".to_string(),
    }
}

/// Today as `YYYYMMDD` (UTC), the day trace numbers count within.
pub fn utc_day(now: time::OffsetDateTime) -> String {
    let date = now.date();
    format!(
        "{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Hands out trace numbers, never the same twice for one terminal on one day.
#[async_trait]
pub trait TraceNumbers: Send + Sync {
    /// The next sequence number (1, 2, …) of `terminal_id` on `day` (`YYYYMMDD`, UTC).
    async fn next_sequence(&self, terminal_id: &str, day: &str) -> Result<i64, ProviderError>;
}

/// Trace numbers in memory: lost on restart, so only for tests, benches and the simulator's
/// own clients.
#[derive(Debug, Default)]
pub struct MemoryTraceNumbers(Mutex<HashMap<(String, String), i64>>);

#[async_trait]
impl TraceNumbers for MemoryTraceNumbers {
    async fn next_sequence(&self, terminal_id: &str, day: &str) -> Result<i64, ProviderError> {
        let mut counters = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let counter = counters
            .entry((terminal_id.to_string(), day.to_string()))
            .or_default();
        *counter += 1;
        Ok(*counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_six_digit_stans_and_twelve_character_rrns() {
        let first = TraceNumber::of(1, "20261206");
        assert_eq!(first.stan, "000001");
        assert_eq!(first.rrn, "634000000001");
        assert_eq!(TraceNumber::of(STAN_MAX, "20261206").stan, "999999");
        assert_eq!(TraceNumber::of(STAN_MAX + 1, "20261206").stan, "000001");
        assert_ne!(
            TraceNumber::of(STAN_MAX + 1, "20261206").rrn,
            TraceNumber::of(1, "20261206").rrn
        );
        assert_eq!(
            utc_day(time::macros::datetime!(2026-01-02 23:59 UTC)),
            "20260102"
        );
    }
}
