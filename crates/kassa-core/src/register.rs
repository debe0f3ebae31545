//! National self-exclusion registers (GAMSTOP in Great Britain, Spelpaus in Sweden; issue 19
//! item 6, ADR 73). Pure: what a register's answer means, when a cached answer may be used
//! instead of asking again, and the identity a check sends, masked in `Debug` because it is
//! personal data.

use std::fmt;

/// What a register said about a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Registered with a self-exclusion in force (GAMSTOP `Y`, Spelpaus `isBlocked: true`).
    Excluded,
    /// Not registered (GAMSTOP `N`, Spelpaus `isBlocked: false`).
    NotExcluded,
    /// Was self-excluded, the minimum period has lapsed and the exclusion was removed at the
    /// person's request (GAMSTOP `P`); they may play.
    PreviouslyExcluded,
}

impl RegisterOutcome {
    /// Every outcome, in the stored spelling's order.
    pub const ALL: [RegisterOutcome; 3] = [
        RegisterOutcome::Excluded,
        RegisterOutcome::NotExcluded,
        RegisterOutcome::PreviouslyExcluded,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterOutcome::Excluded => "excluded",
            RegisterOutcome::NotExcluded => "not_excluded",
            RegisterOutcome::PreviouslyExcluded => "previously_excluded",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<RegisterOutcome> {
        RegisterOutcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }

    /// Whether deposits and bets are refused: only a self-exclusion in force refuses.
    pub fn blocks(self) -> bool {
        self == RegisterOutcome::Excluded
    }
}

/// How long a register's answer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterPolicy {
    /// An answer younger than this is used without asking again.
    pub recheck_after_ms: i64,
    /// An answer younger than this stands in for a register that cannot be reached; at least
    /// `recheck_after_ms`.
    pub valid_for_ms: i64,
}

/// The latest answer stored for a player.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedCheck {
    /// What the register said.
    pub outcome: RegisterOutcome,
    /// When it said so.
    pub checked_at_ms: i64,
}

/// What a deposit does about the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckPlan {
    /// The stored answer is recent enough: no call.
    UseCached(RegisterOutcome),
    /// Ask the register; if it cannot answer, use `fallback`, or refuse without one.
    Ask {
        /// The stored answer still valid for an outage, if any.
        fallback: Option<RegisterOutcome>,
    },
}

/// Whether to ask the register before a deposit at `now_ms`, given the stored answer and when
/// the identity it was asked with last changed. An answer about an identity changed since
/// is asked again; an `excluded` answer always stands in for an outage (refusing never
/// harms the player's protection), any other only within `valid_for_ms`.
pub fn plan(
    policy: &RegisterPolicy,
    cached: Option<CachedCheck>,
    identity_changed_at_ms: i64,
    now_ms: i64,
) -> CheckPlan {
    let Some(cached) = cached else {
        return CheckPlan::Ask { fallback: None };
    };
    let age_ms = now_ms.saturating_sub(cached.checked_at_ms);
    let same_identity = identity_changed_at_ms <= cached.checked_at_ms;
    if same_identity && age_ms < policy.recheck_after_ms {
        return CheckPlan::UseCached(cached.outcome);
    }
    let valid = same_identity && age_ms < policy.valid_for_ms;
    CheckPlan::Ask {
        fallback: (valid || cached.outcome.blocks()).then_some(cached.outcome),
    }
}

/// The identity a register check sends: personal data, kept to the fields the registers ask
/// for. `Debug` says which fields are present, never their values, so a stray `{:?}` in a log
/// leaks nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PlayerIdentity {
    /// Given name (GAMSTOP).
    pub first_name: Option<String>,
    /// Family name (GAMSTOP).
    pub last_name: Option<String>,
    /// `YYYY-MM-DD`, the player's own birth date (GAMSTOP).
    pub birth_date: Option<String>,
    /// E-mail address (GAMSTOP).
    pub email: Option<String>,
    /// Postcode (GAMSTOP).
    pub postcode: Option<String>,
    /// Mobile number (GAMSTOP, optional).
    pub mobile: Option<String>,
    /// Swedish personal identity number, 12 digits `YYYYMMDDNNNC` (Spelpaus).
    pub national_id: Option<String>,
}

impl fmt::Debug for PlayerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |field: &Option<String>| field.as_ref().map(|_| "<redacted>");
        f.debug_struct("PlayerIdentity")
            .field("first_name", &mask(&self.first_name))
            .field("last_name", &mask(&self.last_name))
            .field("birth_date", &mask(&self.birth_date))
            .field("email", &mask(&self.email))
            .field("postcode", &mask(&self.postcode))
            .field("mobile", &mask(&self.mobile))
            .field("national_id", &mask(&self.national_id))
            .finish()
    }
}

/// A Swedish personal identity number as Spelpaus takes it: `YYYYMMDDNNNC` or
/// `YYYYMMDD-NNNC`, a real month, a day of 1 to 31 (61 to 91 for a coordination number) and
/// a Luhn check digit over the last ten digits. Answers the 12 digits.
pub fn swedish_personal_number(text: &str) -> Result<String, &'static str> {
    let digits: String = match text.len() {
        13 if text.as_bytes()[8] == b'-' => format!("{}{}", &text[..8], &text[9..]),
        12 => text.to_string(),
        _ => return Err("must be 12 digits, YYYYMMDDNNNC (a dash before the last four allowed)"),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be digits only, YYYYMMDDNNNC");
    }
    let number = |range: std::ops::Range<usize>| digits[range].parse::<u32>().unwrap_or(0);
    let (month, day) = (number(4..6), number(6..8));
    let day_ok = (1..=31).contains(&day) || (61..=91).contains(&day);
    if !(1..=12).contains(&month) || !day_ok {
        return Err("does not start with a birth date YYYYMMDD");
    }
    if !luhn_valid(&digits[2..]) {
        return Err("has a wrong check digit");
    }
    Ok(digits)
}

/// The Luhn check over ASCII digits (the last one is the check digit).
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match i % 2 {
                1 if d * 2 > 9 => d * 2 - 9,
                1 => d * 2,
                _ => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const POLICY: RegisterPolicy = RegisterPolicy {
        recheck_after_ms: 24 * HOUR,
        valid_for_ms: 72 * HOUR,
    };

    fn cached(outcome: RegisterOutcome, checked_at_ms: i64) -> Option<CachedCheck> {
        Some(CachedCheck {
            outcome,
            checked_at_ms,
        })
    }

    #[test]
    fn a_player_never_checked_is_asked_with_nothing_to_fall_back_on() {
        assert_eq!(
            plan(&POLICY, None, 0, 100 * HOUR),
            CheckPlan::Ask { fallback: None }
        );
    }

    #[test]
    fn a_recent_answer_is_used_an_older_one_asked_again_and_kept_for_an_outage() {
        let not = RegisterOutcome::NotExcluded;
        let now = 100 * HOUR;
        assert_eq!(
            plan(&POLICY, cached(not, now - 23 * HOUR), 0, now),
            CheckPlan::UseCached(not)
        );
        assert_eq!(
            plan(&POLICY, cached(not, now - 25 * HOUR), 0, now),
            CheckPlan::Ask {
                fallback: Some(not)
            }
        );
        assert_eq!(
            plan(&POLICY, cached(not, now - 73 * HOUR), 0, now),
            CheckPlan::Ask { fallback: None }
        );
    }

    #[test]
    fn an_exclusion_always_stands_in_for_an_outage() {
        let excluded = RegisterOutcome::Excluded;
        let now = 1_000 * HOUR;
        assert_eq!(
            plan(&POLICY, cached(excluded, 0), 0, now),
            CheckPlan::Ask {
                fallback: Some(excluded)
            }
        );
    }

    #[test]
    fn an_answer_about_an_identity_changed_since_is_asked_again() {
        let not = RegisterOutcome::NotExcluded;
        let now = 100 * HOUR;
        assert_eq!(
            plan(&POLICY, cached(not, now - HOUR), now - 1, now),
            CheckPlan::Ask { fallback: None }
        );
    }

    #[test]
    fn only_an_exclusion_in_force_blocks() {
        assert!(RegisterOutcome::Excluded.blocks());
        assert!(!RegisterOutcome::PreviouslyExcluded.blocks());
        assert!(!RegisterOutcome::NotExcluded.blocks());
        for outcome in RegisterOutcome::ALL {
            assert_eq!(RegisterOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(RegisterOutcome::parse("Y"), None);
    }

    #[test]
    fn debug_shows_which_fields_are_present_never_their_values() {
        let identity = PlayerIdentity {
            first_name: Some("Ada".into()),
            email: Some("ada@example.com".into()),
            national_id: None,
            ..Default::default()
        };
        let shown = format!("{identity:?}");
        assert!(
            !shown.contains("Ada") && !shown.contains("example.com"),
            "{shown}"
        );
        assert!(
            shown.contains("first_name: Some(\"<redacted>\")"),
            "{shown}"
        );
        assert!(shown.contains("national_id: None"), "{shown}");
    }

    #[test]
    fn swedish_personal_numbers_need_a_date_and_a_check_digit() {
        // 811218-9876 is the Swedish tax agency's textbook example.
        assert_eq!(
            swedish_personal_number("19811218-9876"),
            Ok("198112189876".into())
        );
        assert_eq!(
            swedish_personal_number("198112189876"),
            Ok("198112189876".into())
        );
        assert!(swedish_personal_number("198112189877").is_err());
        assert!(swedish_personal_number("198113189876").is_err());
        assert!(swedish_personal_number("1981121898").is_err());
        assert!(swedish_personal_number("19811218987x").is_err());
        assert!(swedish_personal_number("1981121819876").is_err());
    }
}
