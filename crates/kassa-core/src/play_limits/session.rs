//! Play sessions and the limit on their length. Kassa sees play only as wallet calls, so a
//! session is a run of calls that moved money with no gap as long as the session break
//! (`wallet.play_session_break_minutes`, ADR 78): it begins with the first such call after
//! a break and lasts until the last.

use serde::{Deserialize, Serialize};

use super::{LimitKind, PlayLimitExceeded, PlayRules, MINUTE_MS};
use crate::limits::{changed, LimitPolicy, PendingIncrease};

/// The longest session limit, in minutes: a day.
pub const SESSION_MINUTES_MAX: i64 = 24 * 60;

/// The session-time limit as stored; its pending increase's `amount_minor` is minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLimit {
    /// Longest session, minutes; `None`: no limit.
    pub minutes: Option<i64>,
    /// A longer limit (or none) asked for, waiting.
    pub pending: Option<PendingIncrease>,
}

impl SessionLimit {
    /// The limit at `now_ms`: a pending increase whose time has come is in force.
    pub fn at(&self, now_ms: i64) -> SessionLimit {
        match self.pending {
            Some(pending) if pending.applies_at_ms <= now_ms => SessionLimit {
                minutes: pending.amount_minor,
                pending: None,
            },
            _ => *self,
        }
    }

    /// The limit after the player asks for `wanted` minutes at `now_ms`: shorter (or a
    /// first limit) at once, longer (or none) after the cooling-off. A session has no
    /// period to wait for, so only the cooling-off applies.
    pub fn change(&self, wanted: Option<i64>, policy: LimitPolicy, now_ms: i64) -> SessionLimit {
        let current = self.at(now_ms);
        let applies_at_ms = now_ms.saturating_add(policy.cooling_off_ms);
        let (minutes, pending) = changed(current.minutes, wanted, applies_at_ms);
        SessionLimit { minutes, pending }
    }
}

/// A run of play: when it began and when money last moved in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The first call after a break.
    pub started_at_ms: i64,
    /// The latest call.
    pub last_play_at_ms: i64,
}

impl Session {
    /// The session after a call that moved money at `rules.now_ms`: the same one within the
    /// break, else a new one.
    pub fn after_play(session: Option<Session>, rules: PlayRules) -> Session {
        let now_ms = rules.now_ms;
        match session {
            Some(s) if now_ms - s.last_play_at_ms < rules.session_break_ms => Session {
                started_at_ms: s.started_at_ms,
                last_play_at_ms: s.last_play_at_ms.max(now_ms),
            },
            _ => Session {
                started_at_ms: now_ms,
                last_play_at_ms: now_ms,
            },
        }
    }

    /// The session under way from the minutes with a call (each minute's start, any
    /// order), counted long: it began at the start of its first minute, was last played at
    /// the end of its last, and a gap is a break only when it surely was one.
    pub fn from_minutes(minutes: &[i64], rules: PlayRules) -> Option<Session> {
        let mut minutes: Vec<i64> = minutes.to_vec();
        minutes.sort_unstable_by(|a, b| b.cmp(a));
        minutes.dedup();
        let newest = *minutes.first()?;
        let mut started_at_ms = newest;
        for &older in &minutes[1..] {
            if started_at_ms - (older + MINUTE_MS) >= rules.session_break_ms {
                break;
            }
            started_at_ms = older;
        }
        Some(Session {
            started_at_ms,
            last_play_at_ms: newest + MINUTE_MS - 1,
        })
    }

    /// How long the session under way at `rules.now_ms` has lasted, and when its break
    /// would end it; after a break no session is under way.
    pub fn usage(&self, rules: PlayRules) -> SessionUsage {
        let now_ms = rules.now_ms;
        if now_ms - self.last_play_at_ms >= rules.session_break_ms {
            return SessionUsage::default();
        }
        SessionUsage {
            played_ms: now_ms - self.started_at_ms,
            ends_at_ms: Some(self.last_play_at_ms + rules.session_break_ms),
        }
    }

    /// Refuses a bet at `rules.now_ms` once the session has lasted `limit`'s minutes; after a
    /// break a new session starts, and the bet is allowed.
    pub fn check(&self, limit: SessionLimit, rules: PlayRules) -> Result<(), PlayLimitExceeded> {
        let Some(minutes) = limit.minutes else {
            return Ok(());
        };
        let usage = self.usage(rules);
        let Some(ends_at_ms) = usage.ends_at_ms else {
            return Ok(());
        };
        if usage.played_ms < minutes.saturating_mul(MINUTE_MS) {
            return Ok(());
        }
        Err(PlayLimitExceeded {
            kind: LimitKind::Session,
            period: None,
            limit: minutes,
            used: usage.used_minutes(),
            resets_at_ms: Some(ends_at_ms),
        })
    }
}

/// The session under way at a moment, as the session limit counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionUsage {
    /// How long it has lasted; 0 when none is under way.
    pub played_ms: i64,
    /// When the break would end it, with no more play; `None` when none is under way.
    pub ends_at_ms: Option<i64>,
}

impl SessionUsage {
    /// Whole minutes played, as a refusal reports them.
    pub fn used_minutes(&self) -> i64 {
        self.played_ms / MINUTE_MS
    }
}
