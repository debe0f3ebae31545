//! Self-exclusion, time-outs and the age check, per jurisdiction (issue 19 item 6, ADR 57).
//! Pure: what a request may ask for, whether it shortens the exclusion in force, and how
//! old a player is.
//!
//! Where the numbers come from (`../shared/research/risk-aml-recon.md` §3): a UKGC
//! self-exclusion lasts at least 6 months and takes effect at once; the MGA's likewise;
//! Sweden's Spelpaus runs 1, 3 or 6 months or indefinitely and cannot be cut short. A time-out
//! (a short break the player chooses) lasts 1 day to 6 weeks everywhere.

use serde::Serialize;

/// One day.
pub const DAY_MS: i64 = 86_400_000;
/// Longest time-out, in days (6 weeks).
pub const TIME_OUT_DAYS_MAX: u32 = 42;
/// Longest fixed self-exclusion, in days (5 years); longer is indefinite.
pub const SELF_EXCLUSION_DAYS_MAX: u32 = 1_826;

/// A break from play.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionKind {
    /// A short break (1 day to 6 weeks).
    TimeOut,
    /// A self-exclusion (months, years or indefinite).
    SelfExclusion,
}

impl ExclusionKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionKind::TimeOut => "time_out",
            ExclusionKind::SelfExclusion => "self_exclusion",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<ExclusionKind> {
        match text {
            "time_out" => Some(ExclusionKind::TimeOut),
            "self_exclusion" => Some(ExclusionKind::SelfExclusion),
            _ => None,
        }
    }
}

/// The self-exclusion durations a jurisdiction allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule", content = "days")]
pub enum SelfExclusionDays {
    /// At least this many days (and at most [`SELF_EXCLUSION_DAYS_MAX`]).
    AtLeast(u32),
    /// Exactly one of these.
    OneOf(&'static [u32]),
}

/// A jurisdiction's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ExclusionPolicy {
    /// Fixed self-exclusions allowed; an indefinite one is always allowed.
    pub self_exclusion_days: SelfExclusionDays,
    /// Youngest age allowed to deposit.
    pub minimum_age_years: u32,
}

impl ExclusionPolicy {
    /// The rules of `jurisdiction` (ISO 3166-1 alpha-2, as the player's licence).
    pub fn of(jurisdiction: Option<&str>) -> ExclusionPolicy {
        let days = match jurisdiction {
            Some("GB") | Some("MT") => SelfExclusionDays::AtLeast(180),
            Some("SE") => SelfExclusionDays::OneOf(&[30, 90, 180]),
            _ => SelfExclusionDays::AtLeast(1),
        };
        // Greece and Estonia (casino games) set 21; the rest here 18.
        let minimum_age_years = match jurisdiction {
            Some("GR") | Some("EE") => 21,
            _ => 18,
        };
        ExclusionPolicy {
            self_exclusion_days: days,
            minimum_age_years,
        }
    }
}

/// An exclusion as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exclusion {
    pub kind: ExclusionKind,
    pub starts_at_ms: i64,
    /// `None`: indefinite.
    pub ends_at_ms: Option<i64>,
}

impl Exclusion {
    /// Whether it still applies at `now_ms`.
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.ends_at_ms.is_none_or(|end| now_ms < end)
    }
}

/// Why an exclusion request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExclusionRefusal {
    /// The duration is not one the jurisdiction allows for this kind.
    #[error("{kind:?} of {days} days is not allowed here: {allowed}")]
    DurationNotAllowed {
        kind: ExclusionKind,
        days: u32,
        allowed: &'static str,
    },
    /// A time-out cannot be indefinite.
    #[error("a time-out lasts 1 to {TIME_OUT_DAYS_MAX} days")]
    IndefiniteTimeOut,
    /// It would end the exclusion in force sooner.
    #[error("an exclusion in force cannot be shortened")]
    WouldShorten {
        /// When the one in force ends; `None`: never.
        ends_at_ms: Option<i64>,
    },
}

/// The exclusion a request for `kind` lasting `days` (`None`: indefinite) makes at `now_ms`,
/// given the one in force, if any.
pub fn request(
    policy: &ExclusionPolicy,
    kind: ExclusionKind,
    days: Option<u32>,
    current: Option<&Exclusion>,
    now_ms: i64,
) -> Result<Exclusion, ExclusionRefusal> {
    match (kind, days) {
        (ExclusionKind::TimeOut, None) => return Err(ExclusionRefusal::IndefiniteTimeOut),
        (ExclusionKind::TimeOut, Some(days)) if !(1..=TIME_OUT_DAYS_MAX).contains(&days) => {
            return Err(ExclusionRefusal::DurationNotAllowed {
                kind,
                days,
                allowed: "1 to 42 days",
            })
        }
        (ExclusionKind::SelfExclusion, Some(days)) => check_self_exclusion(policy, days)?,
        _ => {}
    }
    let ends_at_ms = days.map(|d| now_ms.saturating_add(i64::from(d) * DAY_MS));
    if let Some(current) = current.filter(|c| c.in_force(now_ms)) {
        let shorter = match (ends_at_ms, current.ends_at_ms) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(new), Some(old)) => new < old,
        };
        if shorter {
            return Err(ExclusionRefusal::WouldShorten {
                ends_at_ms: current.ends_at_ms,
            });
        }
    }
    Ok(Exclusion {
        kind,
        starts_at_ms: now_ms,
        ends_at_ms,
    })
}

fn check_self_exclusion(policy: &ExclusionPolicy, days: u32) -> Result<(), ExclusionRefusal> {
    let refuse = |allowed| {
        Err(ExclusionRefusal::DurationNotAllowed {
            kind: ExclusionKind::SelfExclusion,
            days,
            allowed,
        })
    };
    match policy.self_exclusion_days {
        _ if days > SELF_EXCLUSION_DAYS_MAX => refuse("at most 1826 days, or indefinite"),
        SelfExclusionDays::AtLeast(min) if days < min => match min {
            180 => refuse("at least 180 days, or indefinite"),
            _ => refuse("at least 1 day, or indefinite"),
        },
        SelfExclusionDays::OneOf(options) if !options.contains(&days) => {
            refuse("30, 90 or 180 days, or indefinite")
        }
        _ => Ok(()),
    }
}

/// Whole years between `birth_date` (`YYYY-MM-DD`) and `today` (`(year, month, day)`);
/// `None` for a date that does not parse.
pub fn age_years(birth_date: &str, today: (i32, u32, u32)) -> Option<u32> {
    let mut parts = birth_date.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let birthday_passed = (today.1, today.2) >= (month, day);
    let years = today.0 - year - i32::from(!birthday_passed);
    u32::try_from(years).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000 * DAY_MS;

    fn gb() -> ExclusionPolicy {
        ExclusionPolicy::of(Some("GB"))
    }

    #[test]
    fn a_uk_self_exclusion_lasts_at_least_six_months() {
        let refused = request(&gb(), ExclusionKind::SelfExclusion, Some(90), None, NOW);
        assert!(matches!(
            refused,
            Err(ExclusionRefusal::DurationNotAllowed { .. })
        ));
        let made = request(&gb(), ExclusionKind::SelfExclusion, Some(180), None, NOW).unwrap();
        assert_eq!(made.ends_at_ms, Some(NOW + 180 * DAY_MS));
        let forever = request(&gb(), ExclusionKind::SelfExclusion, None, None, NOW).unwrap();
        assert_eq!(forever.ends_at_ms, None);
        assert!(forever.in_force(i64::MAX));
    }

    #[test]
    fn sweden_offers_one_three_or_six_months() {
        let se = ExclusionPolicy::of(Some("SE"));
        assert!(request(&se, ExclusionKind::SelfExclusion, Some(90), None, NOW).is_ok());
        assert!(request(&se, ExclusionKind::SelfExclusion, Some(100), None, NOW).is_err());
        assert!(request(&se, ExclusionKind::SelfExclusion, None, None, NOW).is_ok());
    }

    #[test]
    fn time_outs_last_one_day_to_six_weeks() {
        let policy = ExclusionPolicy::of(None);
        assert!(request(&policy, ExclusionKind::TimeOut, Some(1), None, NOW).is_ok());
        assert!(request(&policy, ExclusionKind::TimeOut, Some(43), None, NOW).is_err());
        assert_eq!(
            request(&policy, ExclusionKind::TimeOut, None, None, NOW),
            Err(ExclusionRefusal::IndefiniteTimeOut)
        );
    }

    #[test]
    fn an_exclusion_in_force_is_never_shortened_only_extended() {
        let current = request(&gb(), ExclusionKind::SelfExclusion, Some(365), None, NOW).unwrap();
        let later = NOW + 10 * DAY_MS;
        // A 6-month one asked 10 days in ends before the year: refused.
        let shorter = request(
            &gb(),
            ExclusionKind::SelfExclusion,
            Some(180),
            Some(&current),
            later,
        );
        assert_eq!(
            shorter,
            Err(ExclusionRefusal::WouldShorten {
                ends_at_ms: current.ends_at_ms
            })
        );
        let time_out = request(
            &gb(),
            ExclusionKind::TimeOut,
            Some(7),
            Some(&current),
            later,
        );
        assert!(matches!(
            time_out,
            Err(ExclusionRefusal::WouldShorten { .. })
        ));
        assert!(request(
            &gb(),
            ExclusionKind::SelfExclusion,
            Some(400),
            Some(&current),
            later
        )
        .is_ok());
        assert!(request(
            &gb(),
            ExclusionKind::SelfExclusion,
            None,
            Some(&current),
            later
        )
        .is_ok());
        // Once it has ended, anything allowed goes.
        let after = current.ends_at_ms.unwrap();
        assert!(request(
            &gb(),
            ExclusionKind::TimeOut,
            Some(1),
            Some(&current),
            after
        )
        .is_ok());
    }

    #[test]
    fn age_counts_whole_years_from_the_birthday() {
        assert_eq!(age_years("2008-12-07", (2026, 12, 6)), Some(17));
        assert_eq!(age_years("2008-12-06", (2026, 12, 6)), Some(18));
        assert_eq!(age_years("2030-01-01", (2026, 12, 6)), None);
        assert_eq!(age_years("not a date", (2026, 12, 6)), None);
        assert_eq!(ExclusionPolicy::of(Some("GR")).minimum_age_years, 21);
    }
}
