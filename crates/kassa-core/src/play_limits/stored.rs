//! The stored form of a [`PlayState`]. It rides on the player's cash account row, which the
//! wallet writer reads and writes with every batch of the player (SQLite keeps 1 KiB pages,
//! ADR 18; PostgreSQL logs the whole new row of every update), so it is small: limits are
//! tuples, periods `0`/`1`/`2`, bucket starts hours or days since the epoch, then packed as
//! varints with each bucket start the gap from the one before, in base64 after a `~` mark
//! (ADR 81). A player with six period limits, a session limit and an hour of play stores
//! about 100 bytes (JSON: about 270). States stored before as compact JSON (`{…}`) still read.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::packed::{Packer, Unpacker, Unreadable};
use super::{
    Bucket, PlayLimits, PlayState, PlayStateError, Session, SessionLimit, DAY_MS, HOUR_MS,
};
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
        Stored::from(&state)
    }
}

impl From<&PlayState> for Stored {
    fn from(state: &PlayState) -> Stored {
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

/// What starts a packed state's text; a JSON state (stored before ADR 81) starts with `{`.
const PACKED_MARK: char = '~';
/// The packed layout's version, its first byte.
const PACKED_VERSION: u8 = 1;
/// Limits of one kind a packed state may hold: one per period, with room to spare.
const LIMITS_MAX: usize = 16;
/// Buckets of one length a packed state may hold: a day's hours or 30 days, with room.
const BUCKETS_MAX: usize = 64;
/// A limit's flags: which of its value, pending value and pending time are there.
const HAS_VALUE: u8 = 1;
const HAS_PENDING_VALUE: u8 = 2;
const HAS_PENDING_AT: u8 = 4;

impl Stored {
    /// The state as text: the mark, then base64 of the packed bytes (ADR 81).
    pub(super) fn pack(&self) -> String {
        let mut packer = Packer::default();
        packer.byte(PACKED_VERSION);
        for limits in [&self.w, &self.l] {
            packer.count(limits.len());
            for limit in limits {
                packer.byte(limit.0);
                pack_limit(&mut packer, limit);
            }
        }
        match &self.s {
            Some(limit) => pack_limit(&mut packer, limit),
            None => packer.byte(0),
        }
        for buckets in [&self.h, &self.d] {
            pack_buckets(&mut packer, buckets);
        }
        match self.x {
            Some((started_at_ms, last_play_at_ms)) => {
                packer.byte(1);
                packer.int(started_at_ms);
                packer.int(last_play_at_ms.wrapping_sub(started_at_ms));
            }
            None => packer.byte(0),
        }
        let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(packer.into_bytes());
        format!("{PACKED_MARK}{text}")
    }

    /// A state from its text: packed, or JSON as stored before ADR 81.
    pub(super) fn unpack(text: &str) -> Result<Stored, PlayStateError> {
        let Some(packed) = text.strip_prefix(PACKED_MARK) else {
            return Ok(serde_json::from_str(text)?);
        };
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(packed)
            .map_err(|_| PlayStateError::Packed("not base64"))?;
        unpack_bytes(&bytes).map_err(PlayStateError::Packed)
    }
}

fn pack_limit(packer: &mut Packer, limit: &StoredLimit) {
    let (_, value, pending_value, pending_at) = *limit;
    let flag = |present: bool, flag: u8| if present { flag } else { 0 };
    packer.byte(
        flag(value.is_some(), HAS_VALUE)
            | flag(pending_value.is_some(), HAS_PENDING_VALUE)
            | flag(pending_at.is_some(), HAS_PENDING_AT),
    );
    for field in [value, pending_value, pending_at].into_iter().flatten() {
        packer.int(field);
    }
}

/// Buckets oldest first: the first start, then each start as the gap from the one before.
fn pack_buckets(packer: &mut Packer, buckets: &[(i64, i64, i64)]) {
    packer.count(buckets.len());
    let mut previous = 0i64;
    for &(start, staked, won) in buckets {
        packer.int(start.wrapping_sub(previous));
        packer.int(staked);
        packer.int(won);
        previous = start;
    }
}

fn unpack_bytes(bytes: &[u8]) -> Result<Stored, Unreadable> {
    let mut unpacker = Unpacker::new(bytes);
    if unpacker.byte()? != PACKED_VERSION {
        return Err("an unknown packed version");
    }
    let mut kinds = [Vec::new(), Vec::new()];
    for limits in &mut kinds {
        for _ in 0..unpacker.count(LIMITS_MAX)? {
            let period = unpacker.byte()?;
            limits.push(unpack_limit(&mut unpacker, period)?);
        }
    }
    let session_limit = unpack_limit(&mut unpacker, 0)?;
    let s = (session_limit != (0, None, None, None)).then_some(session_limit);
    let h = unpack_buckets(&mut unpacker)?;
    let d = unpack_buckets(&mut unpacker)?;
    let x = match unpacker.byte()? {
        0 => None,
        1 => {
            let started_at_ms = unpacker.int()?;
            Some((started_at_ms, started_at_ms.wrapping_add(unpacker.int()?)))
        }
        _ => return Err("a bad session mark"),
    };
    unpacker.finish()?;
    let [w, l] = kinds;
    Ok(Stored { w, l, s, h, d, x })
}

fn unpack_limit(unpacker: &mut Unpacker<'_>, period: u8) -> Result<StoredLimit, Unreadable> {
    let flags = unpacker.byte()?;
    if flags & !(HAS_VALUE | HAS_PENDING_VALUE | HAS_PENDING_AT) != 0 {
        return Err("unknown limit flags");
    }
    let mut field = |flag: u8| match flags & flag {
        0 => Ok(None),
        _ => unpacker.int().map(Some),
    };
    Ok((
        period,
        field(HAS_VALUE)?,
        field(HAS_PENDING_VALUE)?,
        field(HAS_PENDING_AT)?,
    ))
}

fn unpack_buckets(unpacker: &mut Unpacker<'_>) -> Result<Vec<(i64, i64, i64)>, Unreadable> {
    let count = unpacker.count(BUCKETS_MAX)?;
    let mut buckets = Vec::with_capacity(count);
    let mut previous = 0i64;
    for _ in 0..count {
        let start = previous.wrapping_add(unpacker.int()?);
        buckets.push((start, unpacker.int()?, unpacker.int()?));
        previous = start;
    }
    Ok(buckets)
}
