//! The stored form of a [`PlayState`]: compact JSON, because it rides on the player's cash
//! account row, which the wallet writer reads and writes with every batch of the player
//! (SQLite keeps 1 KiB pages, ADR 18). Limits are tuples without names, periods are
//! `0`/`1`/`2`, bucket starts are hours or days since the epoch, and what is empty is left
//! out: a player with six period limits and a session limit stores under 300 bytes.

use serde::{Deserialize, Serialize};

use super::{Bucket, PlayLimits, PlayState, Session, SessionLimit, DAY_MS, HOUR_MS};
use crate::limits::{LimitPeriod, PendingIncrease, PeriodLimit};

/// A limit: (period, value, pending value, pending applies at); no pending when the last is
/// null.
type StoredLimit = (u8, Option<i64>, Option<i64>, Option<i64>);

#[derive(Default, Serialize, Deserialize)]
pub(super) struct Stored {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    w: Vec<StoredLimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    l: Vec<StoredLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<StoredLimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    h: Vec<(i64, i64, i64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    d: Vec<(i64, i64, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<(i64, i64)>,
}

fn period_code(period: LimitPeriod) -> u8 {
    match period {
        LimitPeriod::Day => 0,
        LimitPeriod::Week => 1,
        LimitPeriod::Month => 2,
    }
}

fn stored_limit(
    code: u8,
    value: Option<i64>,
    pending: Option<PendingIncrease>,
) -> Option<StoredLimit> {
    if value.is_none() && pending.is_none() {
        return None;
    }
    let (pending_value, applies_at) = match pending {
        Some(p) => (p.amount_minor, Some(p.applies_at_ms)),
        None => (None, None),
    };
    Some((code, value, pending_value, applies_at))
}

fn pending_of(stored: &StoredLimit) -> Option<PendingIncrease> {
    stored.3.map(|applies_at_ms| PendingIncrease {
        amount_minor: stored.2,
        applies_at_ms,
    })
}

fn period_limits(limits: &[PeriodLimit]) -> Vec<StoredLimit> {
    limits
        .iter()
        .filter_map(|l| stored_limit(period_code(l.period), l.amount_minor, l.pending))
        .collect()
}

fn period_limits_of(stored: &[StoredLimit]) -> Vec<PeriodLimit> {
    stored
        .iter()
        .filter_map(|s| {
            let period = *LimitPeriod::ALL.get(usize::from(s.0))?;
            Some(PeriodLimit {
                period,
                amount_minor: s.1,
                pending: pending_of(s),
            })
        })
        .collect()
}

fn buckets(buckets: &[Bucket], len: i64) -> Vec<(i64, i64, i64)> {
    buckets
        .iter()
        .map(|b| (b.start_ms.div_euclid(len), b.staked_minor, b.won_minor))
        .collect()
}

fn buckets_of(stored: &[(i64, i64, i64)], len: i64) -> Vec<Bucket> {
    stored
        .iter()
        .map(|&(index, staked, won)| Bucket::from((index.saturating_mul(len), staked, won)))
        .collect()
}

impl From<PlayState> for Stored {
    fn from(state: PlayState) -> Stored {
        let session = state.limits.session;
        Stored {
            w: period_limits(&state.limits.wager),
            l: period_limits(&state.limits.loss),
            s: stored_limit(0, session.minutes, session.pending),
            h: buckets(&state.hours, HOUR_MS),
            d: buckets(&state.days, DAY_MS),
            x: state.session.map(|s| (s.started_at_ms, s.last_play_at_ms)),
        }
    }
}

impl From<Stored> for PlayState {
    fn from(stored: Stored) -> PlayState {
        PlayState {
            limits: PlayLimits {
                wager: period_limits_of(&stored.w),
                loss: period_limits_of(&stored.l),
                session: stored
                    .s
                    .map_or_else(SessionLimit::default, |s| SessionLimit {
                        minutes: s.1,
                        pending: pending_of(&s),
                    }),
            },
            hours: buckets_of(&stored.h, HOUR_MS),
            days: buckets_of(&stored.d, DAY_MS),
            session: stored.x.map(|(started_at_ms, last_play_at_ms)| Session {
                started_at_ms,
                last_play_at_ms,
            }),
        }
    }
}
