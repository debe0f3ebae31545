//! Responsible-gambling play limits (issue 19, item 6; ADR 77): wager limits on the stakes
//! of a player's bets, loss limits on stakes less wins (a rolled-back bet counts neither),
//! each per rolling day, week and month with the lowest winning, and a limit on how long a
//! play session lasts. They change by the deposit limits' rules ([`crate::limits`]).
//!
//! Pure: the wallet writer loads the [`PlayState`] of each limited player a batch touches
//! inside the transaction that posts the batch, and [`PlayGate`] applies the batch through
//! the ledger, refusing the bets that would break a limit and counting the calls that
//! moved money; the writer stores the changed states with the postings.
//!
//! Usage is kept in buckets: hours for the day window, UTC days for the week and month
//! windows. A window counts every bucket that overlaps it, so a limit may refuse up to an
//! hour (day) or a day (week, month) early, never late; the wins of the bucket that began
//! before the window are left out, so a loss is never counted low.

mod gate;
mod packed;
mod session;
mod stored;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use gate::{PlayGate, PlayRules};
pub use session::{Session, SessionLimit, SessionUsage, SESSION_MINUTES_MAX};

use crate::limits::{LimitKind, LimitPeriod, LimitUsage, PeriodLimit};

/// The pause in play that ends a session unless configured otherwise
/// (`wallet.play_session_break_minutes`): 20 minutes, Kassa's choice (ADR 78).
pub const SESSION_BREAK_MINUTES_DEFAULT: i64 = 20;

/// [`SESSION_BREAK_MINUTES_DEFAULT`] in milliseconds.
pub const SESSION_BREAK_MS_DEFAULT: i64 = SESSION_BREAK_MINUTES_DEFAULT * MINUTE_MS;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A player's wager, loss and session-time limits, each with its pending increase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayLimits {
    /// Limits on the stakes of bets, by period.
    pub wager: Vec<PeriodLimit>,
    /// Limits on stakes less wins, by period.
    pub loss: Vec<PeriodLimit>,
    /// The limit on a session's length.
    pub session: SessionLimit,
}

impl PlayLimits {
    /// Whether no limit is in force or waiting: such a player needs no state at all.
    pub fn is_empty(&self) -> bool {
        let period_empty = |l: &PeriodLimit| l.amount_minor.is_none() && l.pending.is_none();
        self.wager.iter().all(period_empty)
            && self.loss.iter().all(period_empty)
            && self.session.minutes.is_none()
            && self.session.pending.is_none()
    }

    /// The limits at `now_ms`: pending increases whose time has come are in force.
    pub fn at(&self, now_ms: i64) -> PlayLimits {
        let at = |limits: &[PeriodLimit]| {
            let mut limits: Vec<PeriodLimit> = limits.iter().map(|l| l.at(now_ms)).collect();
            limits.sort_by_key(|l| l.period);
            limits
        };
        PlayLimits {
            wager: at(&self.wager),
            loss: at(&self.loss),
            session: self.session.at(now_ms),
        }
    }
}

/// The stakes and wins of one hour or one UTC day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Where the hour or day begins.
    pub start_ms: i64,
    /// Stakes of posted bets not rolled back.
    pub staked_minor: i64,
    /// Wins paid.
    pub won_minor: i64,
}

impl From<(i64, i64, i64)> for Bucket {
    fn from((start_ms, staked_minor, won_minor): (i64, i64, i64)) -> Bucket {
        Bucket {
            start_ms,
            staked_minor,
            won_minor,
        }
    }
}

/// A bet refused by a play limit, with what the player needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("the {kind} limit of {limit} would be exceeded: {used} used")]
pub struct PlayLimitExceeded {
    /// `wager`, `loss` or `session`.
    pub kind: LimitKind,
    /// The window of a wager or loss limit; `None` for a session limit.
    pub period: Option<LimitPeriod>,
    /// The limit: minor units, or minutes for a session limit.
    pub limit: i64,
    /// Counted against it so far (a net gain counts as 0): minor units, or minutes played.
    pub used: i64,
    /// When the bet would fit (a session limit: when the break is over); `None` when it
    /// never does (a stake larger than the limit itself).
    pub resets_at_ms: Option<i64>,
}

impl PlayLimitExceeded {
    /// The refusal as stored on its journal entry.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A refusal stored by [`encode`](Self::encode).
    pub fn decode(text: &str) -> Option<PlayLimitExceeded> {
        serde_json::from_str(text).ok()
    }
}

/// A stored play state that does not read back.
#[derive(Debug, thiserror::Error)]
pub enum PlayStateError {
    /// A state stored as JSON (before ADR 81) that is not.
    #[error("unreadable play state: {0}")]
    Json(#[from] serde_json::Error),
    /// A packed state that is not.
    #[error("unreadable play state: {0}")]
    Packed(&'static str),
}

/// What is kept for a player with a play limit: the limits and the usage they count. Stored
/// in a compact form ([`encode`](Self::encode)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "stored::Stored", into = "stored::Stored")]
pub struct PlayState {
    /// The limits, as [`crate::limits`] changes them.
    pub limits: PlayLimits,
    /// Hour buckets of the last day, oldest first.
    pub hours: Vec<Bucket>,
    /// UTC-day buckets of the last 30 days, oldest first.
    pub days: Vec<Bucket>,
    /// The session under way or last played.
    pub session: Option<Session>,
}

impl PlayState {
    /// The state as stored (packed, ADR 81).
    pub fn encode(&self) -> String {
        stored::Stored::from(self).pack()
    }

    /// A state stored by [`encode`](Self::encode), or as JSON before ADR 81.
    pub fn decode(text: &str) -> Result<PlayState, PlayStateError> {
        Ok(stored::Stored::unpack(text)?.into())
    }

    /// A state for `limits` whose usage is the player's play before they were set: posted
    /// bets and wins summed per hour, `(hour start, staked, won)`, and the minutes with a
    /// wallet call of the last day (any order).
    pub fn from_history(
        limits: PlayLimits,
        hourly: &[(i64, i64, i64)],
        played_minutes: &[i64],
        rules: PlayRules,
    ) -> PlayState {
        let mut state = PlayState {
            limits,
            ..PlayState::default()
        };
        for &(hour_ms, staked_minor, won_minor) in hourly {
            state.add(hour_ms, staked_minor, won_minor);
        }
        state.session = Session::from_minutes(played_minutes, rules);
        state.prune(rules.now_ms);
        state
    }

    /// Counted against a `kind` limit of `period` at `now_ms`: the stakes, or the stakes
    /// less the wins, of the buckets overlapping the window.
    pub fn used(&self, kind: LimitKind, period: LimitPeriod, now_ms: i64) -> i64 {
        let (buckets, len) = self.buckets_for(period);
        let since = now_ms - period.window_ms();
        let (mut staked, mut won) = (0i64, 0i64);
        for bucket in buckets.iter().filter(|b| b.start_ms + len > since) {
            staked = staked.saturating_add(bucket.staked_minor);
            // Wins from before the window would count a loss low.
            if bucket.start_ms >= since {
                won = won.saturating_add(bucket.won_minor);
            }
        }
        match kind {
            LimitKind::Loss => staked.saturating_sub(won),
            _ => staked,
        }
    }

    /// How much of a `kind` limit of `limit_minor` over `period` is used at `now_ms`, counted
    /// as [`check_bet`](Self::check_bet) counts it (a net gain as 0); it resets when, with no
    /// more play, a bucket leaves the window and frees room.
    pub fn usage(
        &self,
        kind: LimitKind,
        period: LimitPeriod,
        limit_minor: i64,
        now_ms: i64,
    ) -> LimitUsage {
        let used = self.used(kind, period, now_ms);
        LimitUsage::of(used, limit_minor, |amount_minor| {
            self.fits_at(kind, period, amount_minor, limit_minor, now_ms)
        })
    }

    /// Refuses a bet of `amount_minor` at `rules.now_ms` that would break a limit in force:
    /// wager limits, then loss limits, shortest period first, then the session limit.
    pub fn check_bet(&self, amount_minor: i64, rules: PlayRules) -> Result<(), PlayLimitExceeded> {
        let now_ms = rules.now_ms;
        let limits = self.limits.at(now_ms);
        for (kind, list) in [
            (LimitKind::Wager, &limits.wager),
            (LimitKind::Loss, &limits.loss),
        ] {
            for limit in list {
                let Some(limit_minor) = limit.amount_minor else {
                    continue;
                };
                let used = self.used(kind, limit.period, now_ms);
                if used.saturating_add(amount_minor) > limit_minor {
                    return Err(PlayLimitExceeded {
                        kind,
                        period: Some(limit.period),
                        limit: limit_minor,
                        used: used.max(0),
                        resets_at_ms: self.fits_at(
                            kind,
                            limit.period,
                            amount_minor,
                            limit_minor,
                            now_ms,
                        ),
                    });
                }
            }
        }
        match self.session {
            Some(session) => session.check(limits.session, rules),
            None => Ok(()),
        }
    }

    /// The first time after `now_ms` when, with no more play, a bet of `amount_minor` fits
    /// the limit: tried at each moment a bucket leaves the window.
    fn fits_at(
        &self,
        kind: LimitKind,
        period: LimitPeriod,
        amount_minor: i64,
        limit_minor: i64,
        now_ms: i64,
    ) -> Option<i64> {
        if amount_minor > limit_minor {
            return None;
        }
        let (buckets, len) = self.buckets_for(period);
        buckets
            .iter()
            .map(|b| b.start_ms + len + period.window_ms())
            .filter(|at| *at > now_ms)
            .find(|at| self.used(kind, period, *at).saturating_add(amount_minor) <= limit_minor)
    }

    /// The buckets a `period` window counts, and their length: hours for the day, days for
    /// the week and the month.
    fn buckets_for(&self, period: LimitPeriod) -> (&[Bucket], i64) {
        match period {
            LimitPeriod::Day => (&self.hours, HOUR_MS),
            LimitPeriod::Week | LimitPeriod::Month => (&self.days, DAY_MS),
        }
    }

    /// Counts a posted bet.
    pub fn count_bet(&mut self, amount_minor: i64, rules: PlayRules) {
        self.add(rules.now_ms, amount_minor, 0);
        self.played(rules);
    }

    /// Counts a paid win.
    pub fn count_win(&mut self, amount_minor: i64, rules: PlayRules) {
        self.add(rules.now_ms, 0, amount_minor);
        self.played(rules);
    }

    /// Counts a rollback of a bet of `amount_minor` posted at `bet_at_ms`: its stake leaves
    /// the buckets it was counted in (if they are still kept).
    pub fn count_rollback(&mut self, amount_minor: i64, bet_at_ms: i64, rules: PlayRules) {
        for (buckets, len) in [(&mut self.hours, HOUR_MS), (&mut self.days, DAY_MS)] {
            let start = bet_at_ms - bet_at_ms.rem_euclid(len);
            if let Ok(i) = buckets.binary_search_by_key(&start, |b| b.start_ms) {
                let bucket = &mut buckets[i];
                bucket.staked_minor -= amount_minor.min(bucket.staked_minor);
            }
        }
        self.played(rules);
    }

    /// Drops the buckets no window counts any more.
    pub fn prune(&mut self, now_ms: i64) {
        self.hours
            .retain(|b| b.start_ms + HOUR_MS > now_ms - LimitPeriod::Day.window_ms());
        self.days
            .retain(|b| b.start_ms + DAY_MS > now_ms - LimitPeriod::Month.window_ms());
    }

    fn add(&mut self, at_ms: i64, staked_minor: i64, won_minor: i64) {
        for (buckets, len) in [(&mut self.hours, HOUR_MS), (&mut self.days, DAY_MS)] {
            let start_ms = at_ms - at_ms.rem_euclid(len);
            let i = match buckets.binary_search_by_key(&start_ms, |b| b.start_ms) {
                Ok(i) => i,
                Err(i) => {
                    buckets.insert(i, Bucket::from((start_ms, 0, 0)));
                    i
                }
            };
            let bucket = &mut buckets[i];
            bucket.staked_minor = bucket.staked_minor.saturating_add(staked_minor);
            bucket.won_minor = bucket.won_minor.saturating_add(won_minor);
        }
    }

    fn played(&mut self, rules: PlayRules) {
        self.session = Some(Session::after_play(self.session, rules));
        self.prune(rules.now_ms);
    }
}
