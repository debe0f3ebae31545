//! Responsible-gambling deposit limits (issue 19, item 6): a player's gross deposit limits
//! per rolling 24 hours, 7 days and 30 days, the lowest winning; a decrease applies at once,
//! an increase (or a removal) only after the jurisdiction's cooling-off (UKGC RTS 12 and the
//! MGA: 24 h; Sweden: 72 h and not before the period has run once more). Pure: the caller
//! passes the time and the player's deposits. The wager, loss and session-time limits of
//! [`crate::play_limits`] change by the same rules.

use serde::{Deserialize, Serialize};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

stored_names! {
    /// What a limit counts.
    LimitKind {
        /// Deposits, gross, counting deposits under way.
        Deposit => "deposit",
        /// The stakes of bets.
        Wager => "wager",
        /// Stakes less wins; a rolled-back bet counts neither.
        Loss => "loss",
        /// The length of a play session.
        Session => "session",
    }
}

/// A limit's rolling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPeriod {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    Month,
}

impl LimitPeriod {
    /// Every period, shortest first.
    pub const ALL: [LimitPeriod; 3] = [LimitPeriod::Day, LimitPeriod::Week, LimitPeriod::Month];

    /// The window's length.
    pub fn window_ms(self) -> i64 {
        match self {
            LimitPeriod::Day => DAY_MS,
            LimitPeriod::Week => 7 * DAY_MS,
            LimitPeriod::Month => 30 * DAY_MS,
        }
    }

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitPeriod::Day => "day",
            LimitPeriod::Week => "week",
            LimitPeriod::Month => "month",
        }
    }

    /// The period of a stored or sent name.
    pub fn parse(name: &str) -> Option<LimitPeriod> {
        LimitPeriod::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// How a jurisdiction lets a player raise a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LimitPolicy {
    /// Wait before an increase applies.
    pub cooling_off_ms: i64,
    /// Whether an increase also waits until the period has run once more from the request.
    pub not_before_period_end: bool,
}

impl LimitPolicy {
    /// The policy of a jurisdiction: Sweden's 72 h and period end; otherwise (GB, MT and
    /// any other) 24 h.
    pub fn of(jurisdiction: Option<&str>) -> LimitPolicy {
        match jurisdiction {
            Some(code) if code.eq_ignore_ascii_case("SE") => LimitPolicy {
                cooling_off_ms: 72 * HOUR_MS,
                not_before_period_end: true,
            },
            _ => LimitPolicy {
                cooling_off_ms: 24 * HOUR_MS,
                not_before_period_end: false,
            },
        }
    }

    /// When an increase of a `period` limit asked for at `now_ms` applies.
    pub fn increase_applies_at(&self, period: LimitPeriod, now_ms: i64) -> i64 {
        let cooled = now_ms.saturating_add(self.cooling_off_ms);
        if self.not_before_period_end {
            cooled.max(now_ms.saturating_add(period.window_ms()))
        } else {
            cooled
        }
    }
}

/// An increase waiting for its cooling-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingIncrease {
    /// The new limit; `None` removes the limit.
    pub amount_minor: Option<i64>,
    /// When it applies.
    pub applies_at_ms: i64,
}

/// One period's limit (of deposits, stakes or losses) as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodLimit {
    /// Its window.
    pub period: LimitPeriod,
    /// The limit in force; `None`: none.
    pub amount_minor: Option<i64>,
    /// A larger limit (or none) asked for, waiting.
    pub pending: Option<PendingIncrease>,
}

impl PeriodLimit {
    /// No limit.
    pub fn none(period: LimitPeriod) -> PeriodLimit {
        PeriodLimit {
            period,
            amount_minor: None,
            pending: None,
        }
    }

    /// The limit at `now_ms`: a pending increase whose time has come is in force.
    pub fn at(&self, now_ms: i64) -> PeriodLimit {
        match self.pending {
            Some(pending) if pending.applies_at_ms <= now_ms => PeriodLimit {
                period: self.period,
                amount_minor: pending.amount_minor,
                pending: None,
            },
            _ => *self,
        }
    }

    /// The limit after the player asks for `wanted` at `now_ms`: lower (or a first limit)
    /// at once, dropping any pending increase; higher (or none) pending per `policy`.
    pub fn change(&self, wanted: Option<i64>, policy: LimitPolicy, now_ms: i64) -> PeriodLimit {
        let current = self.at(now_ms);
        let applies_at_ms = policy.increase_applies_at(self.period, now_ms);
        let (amount_minor, pending) = changed(current.amount_minor, wanted, applies_at_ms);
        PeriodLimit {
            period: self.period,
            amount_minor,
            pending,
        }
    }
}

/// A limit's value and pending increase after asking for `wanted` where `current` is in
/// force: a lower value (or a first one) at once, a higher one (or none) at `applies_at_ms`.
pub(crate) fn changed(
    current: Option<i64>,
    wanted: Option<i64>,
    applies_at_ms: i64,
) -> (Option<i64>, Option<PendingIncrease>) {
    let lower = match (wanted, current) {
        (Some(wanted), Some(current)) => wanted <= current,
        (Some(_), None) | (None, None) => true,
        (None, Some(_)) => false,
    };
    if lower {
        return (wanted, None);
    }
    let pending = PendingIncrease {
        amount_minor: wanted,
        applies_at_ms,
    };
    (current, Some(pending))
}

/// A deposit refused by a limit, with what the player needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("the {} deposit limit of {limit_minor} (minor units) would be exceeded: {used_minor} deposited in the window", period.as_str())]
pub struct LimitExceeded {
    /// The limit that refuses.
    pub period: LimitPeriod,
    /// Its amount.
    pub limit_minor: i64,
    /// Deposited within its window already.
    pub used_minor: i64,
    /// When enough of the window's deposits have aged out for this deposit to fit; `None`
    /// when it never fits (larger than the limit itself).
    pub fits_at_ms: Option<i64>,
}

/// How much of a limit in force is used at a moment, as the limit's refusal counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LimitUsage {
    /// Counted against the limit (a net gain counts as 0).
    pub used_minor: i64,
    /// What may still be counted before the limit refuses; never negative.
    pub remaining_minor: i64,
    /// When, with nothing more counted, more than `remaining_minor` fits again: the earliest
    /// counted amount leaves the window. `None` when nothing is used (or the limit is 0).
    pub resets_at_ms: Option<i64>,
}

impl LimitUsage {
    /// The usage of a limit of `limit_minor` with `used_minor` counted; `fits_at` is the
    /// refusal's own answer to "when would a deposit or bet of this amount fit".
    pub fn of(
        used_minor: i64,
        limit_minor: i64,
        fits_at: impl FnOnce(i64) -> Option<i64>,
    ) -> LimitUsage {
        let used_minor = used_minor.max(0);
        let remaining_minor = limit_minor.saturating_sub(used_minor).max(0);
        // The smallest amount that does not fit now fits once more room is freed.
        let resets_at_ms = match used_minor {
            0 => None,
            _ => fits_at(remaining_minor.saturating_add(1)),
        };
        LimitUsage {
            used_minor,
            remaining_minor,
            resets_at_ms,
        }
    }
}

/// The deposits of `deposits` within a `period` window ending at `now_ms`, oldest first,
/// and their sum.
fn in_window(deposits: &[(i64, i64)], period: LimitPeriod, now_ms: i64) -> (Vec<(i64, i64)>, i64) {
    let since = now_ms - period.window_ms();
    let mut in_window: Vec<(i64, i64)> = deposits
        .iter()
        .copied()
        .filter(|(at, _)| *at > since)
        .collect();
    in_window.sort_unstable();
    let used_minor = in_window.iter().map(|(_, a)| a).sum();
    (in_window, used_minor)
}

/// How much of `limit` (as in force at `now_ms`) the counted `deposits` use, counted as
/// [`check_deposit`] counts them; `None` when the period has no limit in force.
pub fn deposit_usage(
    limit: &PeriodLimit,
    deposits: &[(i64, i64)],
    now_ms: i64,
) -> Option<LimitUsage> {
    let limit = limit.at(now_ms);
    let limit_minor = limit.amount_minor?;
    let (oldest_first, used_minor) = in_window(deposits, limit.period, now_ms);
    Some(LimitUsage::of(used_minor, limit_minor, |amount_minor| {
        fits_at(
            &oldest_first,
            used_minor,
            amount_minor,
            limit_minor,
            limit.period,
        )
    }))
}

/// Checks a deposit of `amount_minor` at `now_ms` against every limit in force; `deposits`
/// are the player's counted deposits (created at, amount) of the last 30 days, any order.
/// The shortest period that refuses is reported.
pub fn check_deposit(
    limits: &[PeriodLimit],
    deposits: &[(i64, i64)],
    amount_minor: i64,
    now_ms: i64,
) -> Result<(), LimitExceeded> {
    let mut in_force: Vec<PeriodLimit> = limits.iter().map(|l| l.at(now_ms)).collect();
    in_force.sort_by_key(|l| l.period);
    for limit in in_force {
        let Some(limit_minor) = limit.amount_minor else {
            continue;
        };
        let (oldest_first, used_minor) = in_window(deposits, limit.period, now_ms);
        if used_minor.saturating_add(amount_minor) <= limit_minor {
            continue;
        }
        return Err(LimitExceeded {
            period: limit.period,
            limit_minor,
            used_minor,
            fits_at_ms: fits_at(
                &oldest_first,
                used_minor,
                amount_minor,
                limit_minor,
                limit.period,
            ),
        });
    }
    Ok(())
}

/// When the oldest deposits have aged out far enough for `amount_minor` to fit.
fn fits_at(
    oldest_first: &[(i64, i64)],
    used_minor: i64,
    amount_minor: i64,
    limit_minor: i64,
    period: LimitPeriod,
) -> Option<i64> {
    if amount_minor > limit_minor {
        return None;
    }
    let mut remaining = used_minor;
    for (at, amount) in oldest_first {
        remaining -= amount;
        if remaining + amount_minor <= limit_minor {
            return Some(at + period.window_ms());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn limit(period: LimitPeriod, amount: i64) -> PeriodLimit {
        PeriodLimit {
            period,
            amount_minor: Some(amount),
            pending: None,
        }
    }

    #[test]
    fn decreases_apply_at_once_and_increases_after_the_cooling_off() {
        let gb = LimitPolicy::of(Some("GB"));
        let day = limit(LimitPeriod::Day, 10_000);
        let lower = day.change(Some(5_000), gb, NOW);
        assert_eq!(lower.amount_minor, Some(5_000));
        assert_eq!(lower.pending, None);
        let higher = lower.change(Some(20_000), gb, NOW);
        assert_eq!(higher.amount_minor, Some(5_000), "still the lower limit");
        assert_eq!(
            higher.pending,
            Some(PendingIncrease {
                amount_minor: Some(20_000),
                applies_at_ms: NOW + 24 * HOUR_MS
            })
        );
        assert_eq!(higher.at(NOW + 24 * HOUR_MS - 1).amount_minor, Some(5_000));
        assert_eq!(higher.at(NOW + 24 * HOUR_MS).amount_minor, Some(20_000));
        let removed = lower.change(None, gb, NOW);
        assert_eq!(removed.amount_minor, Some(5_000), "removing is an increase");
        let lowered_again = higher.change(Some(4_000), gb, NOW + 1);
        assert_eq!(
            lowered_again.pending, None,
            "a decrease drops a pending increase"
        );
    }

    #[test]
    fn sweden_waits_72_hours_and_until_the_period_ends() {
        let se = LimitPolicy::of(Some("SE"));
        let day = limit(LimitPeriod::Day, 10_000).change(Some(20_000), se, NOW);
        assert_eq!(day.pending.unwrap().applies_at_ms, NOW + 72 * HOUR_MS);
        let month = limit(LimitPeriod::Month, 10_000).change(Some(20_000), se, NOW);
        assert_eq!(month.pending.unwrap().applies_at_ms, NOW + 30 * DAY_MS);
    }

    #[test]
    fn the_lowest_limit_refuses_and_says_when_it_fits() {
        let limits = [
            limit(LimitPeriod::Day, 10_000),
            limit(LimitPeriod::Week, 8_000),
        ];
        let deposits = [(NOW - 3 * DAY_MS, 5_000), (NOW - HOUR_MS, 2_000)];
        assert_eq!(check_deposit(&limits, &deposits, 1_000, NOW), Ok(()));
        let refused = check_deposit(&limits, &deposits, 2_000, NOW).unwrap_err();
        assert_eq!(
            refused.period,
            LimitPeriod::Week,
            "only the week's limit is reached"
        );
        assert_eq!(refused.used_minor, 7_000);
        assert_eq!(refused.fits_at_ms, Some(NOW - 3 * DAY_MS + 7 * DAY_MS));
        let too_big = check_deposit(&limits, &[], 9_000, NOW).unwrap_err();
        assert_eq!(too_big.fits_at_ms, None);
        let old = [(NOW - DAY_MS, 9_999)];
        assert_eq!(
            check_deposit(&limits[..1], &old, 10_000, NOW),
            Ok(()),
            "aged out"
        );
    }

    #[test]
    fn usage_counts_as_the_refusal_and_resets_when_the_oldest_deposit_ages_out() {
        let day = limit(LimitPeriod::Day, 10_000);
        let deposits = [
            (NOW - 2 * DAY_MS, 9_000),
            (NOW - 20 * HOUR_MS, 3_000),
            (NOW - HOUR_MS, 4_000),
        ];
        let usage = deposit_usage(&day, &deposits, NOW).unwrap();
        assert_eq!(usage.used_minor, 7_000);
        assert_eq!(usage.remaining_minor, 3_000);
        assert_eq!(usage.resets_at_ms, Some(NOW - 20 * HOUR_MS + DAY_MS));
        let refused = check_deposit(&[day], &deposits, 3_001, NOW).unwrap_err();
        assert_eq!(refused.used_minor, usage.used_minor);
        assert_eq!(refused.fits_at_ms, usage.resets_at_ms);
        let lowered = limit(LimitPeriod::Day, 2_000);
        let over = deposit_usage(&lowered, &deposits, NOW).unwrap();
        assert_eq!((over.used_minor, over.remaining_minor), (7_000, 0));
        assert_eq!(
            over.resets_at_ms,
            Some(NOW - HOUR_MS + DAY_MS),
            "only when both have aged out is there room again"
        );
        let unused = deposit_usage(&day, &deposits[..1], NOW).unwrap();
        assert_eq!((unused.used_minor, unused.resets_at_ms), (0, None));
        assert_eq!(
            deposit_usage(&PeriodLimit::none(LimitPeriod::Day), &deposits, NOW),
            None
        );
    }

    proptest! {
        /// Whatever the deposits and the order of limits: an accepted deposit keeps every
        /// window's total within its limit.
        #[test]
        fn an_accepted_deposit_never_breaks_a_limit(
            amounts in prop::collection::vec((0i64..40, 1i64..5_000), 0..30),
            day in 1i64..20_000, week in 1i64..50_000, amount in 1i64..10_000,
        ) {
            let limits = [limit(LimitPeriod::Week, week), limit(LimitPeriod::Day, day)];
            let deposits: Vec<(i64, i64)> =
                amounts.iter().map(|(hours, a)| (NOW - hours * HOUR_MS * 5, *a)).collect();
            if check_deposit(&limits, &deposits, amount, NOW).is_ok() {
                for limit in limits {
                    let since = NOW - limit.period.window_ms();
                    let used: i64 = deposits.iter().filter(|(at, _)| *at > since).map(|(_, a)| a).sum();
                    prop_assert!(used + amount <= limit.amount_minor.unwrap());
                }
            }
        }
    }
}
