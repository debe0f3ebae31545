use proptest::prelude::*;

use super::*;
use crate::ledger::{Account, AccountId, Command, EntryMeta, EntryStatus, Floor, LedgerView};
use crate::ledger::{Outcome, Request};
use crate::limits::{LimitPolicy, PendingIncrease};
use crate::money::Currency;

/// A Tuesday, 10:30 UTC.
const NOW: i64 = 1_800_000_000_000 - 1_800_000_000_000 % DAY_MS + 10 * HOUR_MS + 30 * MINUTE_MS;
const BREAK_MS: i64 = 20 * MINUTE_MS;
const CASH: AccountId = 1;
const HOUSE: AccountId = 2;

fn rules(now_ms: i64) -> PlayRules {
    PlayRules {
        now_ms,
        session_break_ms: BREAK_MS,
    }
}

fn limit(period: LimitPeriod, amount: i64) -> PeriodLimit {
    PeriodLimit {
        period,
        amount_minor: Some(amount),
        pending: None,
    }
}

/// A limit of `amount` for every period.
fn periods(amount: i64) -> Vec<PeriodLimit> {
    LimitPeriod::ALL.iter().map(|p| limit(*p, amount)).collect()
}

fn state(wager: &[PeriodLimit], loss: &[PeriodLimit], session_minutes: Option<i64>) -> PlayState {
    PlayState {
        limits: PlayLimits {
            wager: wager.to_vec(),
            loss: loss.to_vec(),
            session: SessionLimit {
                minutes: session_minutes,
                pending: None,
            },
        },
        ..PlayState::default()
    }
}

fn eur() -> Currency {
    Currency::from_code("EUR").unwrap()
}

fn view(balance: i64) -> LedgerView {
    let account = |id, balance_minor, floor| Account {
        id,
        currency: eur(),
        balance_minor,
        floor,
    };
    LedgerView::new(
        [
            account(CASH, balance, Floor::NonNegative),
            account(HOUSE, 0, Floor::Unbounded),
        ],
        [],
    )
}

fn bet(txn_id: &str, amount_minor: i64) -> Request {
    Request {
        txn_id: txn_id.into(),
        label: "debit".into(),
        command: Command::Transfer {
            debit: CASH,
            credit: HOUSE,
            amount_minor,
        },
        fingerprint: format!("bet:{amount_minor}"),
        subject: Some(CASH),
        meta: EntryMeta::default(),
    }
}

fn win(txn_id: &str, amount_minor: i64) -> Request {
    Request {
        txn_id: txn_id.into(),
        label: "credit".into(),
        command: Command::Transfer {
            debit: HOUSE,
            credit: CASH,
            amount_minor,
        },
        fingerprint: format!("win:{amount_minor}"),
        subject: Some(CASH),
        meta: EntryMeta::default(),
    }
}

fn rollback(txn_id: &str, original: &str) -> Request {
    Request {
        txn_id: txn_id.into(),
        label: "rollback".into(),
        command: Command::Reverse {
            original_txn_id: original.into(),
            original_label: Some("debit".into()),
        },
        fingerprint: format!("rollback:{original}"),
        subject: None,
        meta: EntryMeta::default(),
    }
}

fn status(outcome: &Outcome) -> EntryStatus {
    match outcome {
        Outcome::Recorded(entry) | Outcome::Replayed(entry) => entry.status,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wager_limit_refuses_the_bet_that_would_cross_it_and_moves_nothing() {
    let mut gate = PlayGate::new(
        rules(NOW),
        [(CASH, state(&[limit(LimitPeriod::Day, 1_000)], &[], None))],
    );
    let mut view = view(10_000);
    assert_eq!(
        status(&gate.apply(&mut view, &bet("b1", 600))),
        EntryStatus::Posted
    );
    let refused = gate.apply(&mut view, &bet("b2", 500));
    assert_eq!(status(&refused), EntryStatus::LimitRefused);
    let Outcome::Recorded(entry) = &refused else {
        unreachable!()
    };
    let exceeded = PlayLimitExceeded::decode(entry.meta.refusal.as_deref().unwrap()).unwrap();
    assert_eq!(exceeded.kind, LimitKind::Wager);
    assert_eq!(exceeded.period, Some(LimitPeriod::Day));
    assert_eq!((exceeded.limit, exceeded.used), (1_000, 600));
    let hour_start = NOW - NOW % HOUR_MS;
    assert_eq!(exceeded.resets_at_ms, Some(hour_start + HOUR_MS + DAY_MS));
    assert_eq!(
        view.account(CASH).unwrap().balance_minor,
        9_400,
        "nothing moved"
    );
    assert_eq!(
        status(&gate.apply(&mut view, &bet("b2", 500))),
        EntryStatus::LimitRefused,
        "a replay answers the refusal again"
    );
    assert_eq!(
        status(&gate.apply(&mut view, &bet("b3", 400))),
        EntryStatus::Posted
    );
    let changes = gate.into_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].1.used(LimitKind::Wager, LimitPeriod::Day, NOW),
        1_000
    );
}

#[test]
fn a_loss_limit_counts_wins_and_rollbacks() {
    let mut gate = PlayGate::new(
        rules(NOW),
        [(CASH, state(&[], &[limit(LimitPeriod::Week, 1_000)], None))],
    );
    let mut view = view(10_000);
    for request in [bet("b1", 800), win("w1", 300), bet("b2", 500)] {
        assert_eq!(
            status(&gate.apply(&mut view, &request)),
            EntryStatus::Posted
        );
    }
    assert_eq!(
        status(&gate.apply(&mut view, &bet("b3", 1))),
        EntryStatus::LimitRefused,
        "800 - 300 + 500 lost"
    );
    assert_eq!(
        status(&gate.apply(&mut view, &rollback("r1", "b2"))),
        EntryStatus::Posted
    );
    assert_eq!(
        status(&gate.apply(&mut view, &bet("b4", 500))),
        EntryStatus::Posted
    );
    let (_, state) = gate.into_changes().remove(0);
    assert_eq!(state.used(LimitKind::Loss, LimitPeriod::Week, NOW), 1_000);
    assert_eq!(state.used(LimitKind::Wager, LimitPeriod::Week, NOW), 1_300);
}

#[test]
fn insufficient_funds_comes_before_a_limit_and_deposits_are_no_wins() {
    let mut gate = PlayGate::new(
        rules(NOW),
        [(CASH, state(&[limit(LimitPeriod::Day, 100)], &[], None))],
    );
    let mut view = view(50);
    assert_eq!(
        status(&gate.apply(&mut view, &bet("b1", 200))),
        EntryStatus::Rejected
    );
    let mut deposit = win("d1", 1_000);
    deposit.meta.reference = Some("pay_1".into());
    assert_eq!(
        status(&gate.apply(&mut view, &deposit)),
        EntryStatus::Posted
    );
    assert!(gate.into_changes().is_empty(), "neither is play");
}

#[test]
fn a_session_limit_refuses_after_its_time_and_a_break_starts_a_new_session() {
    let mut state = state(&[], &[], Some(60));
    for minute in (0..=45).step_by(15) {
        let at = rules(NOW + minute * MINUTE_MS);
        assert_eq!(state.check_bet(100, at), Ok(()), "minute {minute}");
        state.count_bet(100, at);
    }
    let refused = state
        .check_bet(100, rules(NOW + 60 * MINUTE_MS))
        .unwrap_err();
    assert_eq!(refused.kind, LimitKind::Session);
    assert_eq!((refused.limit, refused.used), (60, 60));
    assert_eq!(refused.resets_at_ms, Some(NOW + 45 * MINUTE_MS + BREAK_MS));
    assert!(state.check_bet(100, rules(NOW + 64 * MINUTE_MS)).is_err());
    assert_eq!(
        state.check_bet(100, rules(NOW + 65 * MINUTE_MS)),
        Ok(()),
        "after the break"
    );
}

#[test]
fn usage_counts_as_the_gate_and_resets_when_a_bucket_leaves_the_window() {
    let mut state = state(
        &[limit(LimitPeriod::Day, 1_000)],
        &[limit(LimitPeriod::Day, 500)],
        None,
    );
    state.count_bet(300, rules(NOW - 5 * HOUR_MS));
    state.count_bet(400, rules(NOW));
    state.count_win(900, rules(NOW));
    let wager = state.usage(LimitKind::Wager, LimitPeriod::Day, 1_000, NOW);
    assert_eq!((wager.used_minor, wager.remaining_minor), (700, 300));
    let oldest_hour = NOW - 5 * HOUR_MS - (NOW - 5 * HOUR_MS) % HOUR_MS;
    assert_eq!(wager.resets_at_ms, Some(oldest_hour + HOUR_MS + DAY_MS));
    let refused = state.check_bet(301, rules(NOW)).unwrap_err();
    assert_eq!(refused.used, wager.used_minor);
    assert_eq!(refused.resets_at_ms, wager.resets_at_ms);
    let loss = state.usage(LimitKind::Loss, LimitPeriod::Day, 500, NOW);
    assert_eq!(
        (loss.used_minor, loss.remaining_minor, loss.resets_at_ms),
        (0, 500, None),
        "a net gain counts as nothing"
    );
    let over = state.usage(LimitKind::Wager, LimitPeriod::Day, 200, NOW);
    assert_eq!((over.used_minor, over.remaining_minor), (700, 0));
    let this_hour = NOW - NOW % HOUR_MS;
    assert_eq!(over.resets_at_ms, Some(this_hour + HOUR_MS + DAY_MS));
}

#[test]
fn session_usage_is_the_session_under_way_until_its_break() {
    let mut state = state(&[], &[], Some(60));
    state.count_bet(100, rules(NOW));
    state.count_bet(100, rules(NOW + 10 * MINUTE_MS));
    let session = state.session.unwrap();
    let usage = session.usage(rules(NOW + 25 * MINUTE_MS + 1));
    assert_eq!(usage.used_minutes(), 25);
    assert_eq!(usage.ends_at_ms, Some(NOW + 10 * MINUTE_MS + BREAK_MS));
    let after_break = session.usage(rules(NOW + 10 * MINUTE_MS + BREAK_MS));
    assert_eq!(after_break, SessionUsage::default());
}

#[test]
fn increases_wait_for_the_cooling_off() {
    let gb = LimitPolicy::of(Some("GB"));
    let session = SessionLimit {
        minutes: Some(30),
        pending: None,
    };
    let longer = session.change(Some(90), gb, NOW);
    assert_eq!(longer.minutes, Some(30));
    assert_eq!(longer.at(NOW + DAY_MS).minutes, Some(90));
    assert_eq!(longer.change(Some(10), gb, NOW).minutes, Some(10));
}

#[test]
fn history_fills_the_buckets_and_the_session_under_way() {
    let hour = NOW - NOW % HOUR_MS;
    let hourly = [
        (hour - 2 * DAY_MS, 900, 0),
        (hour - 3 * HOUR_MS, 500, 100),
        (hour, 200, 0),
    ];
    let minute = NOW - NOW % MINUTE_MS;
    let minutes = [
        minute - 50 * MINUTE_MS,
        minute - 10 * MINUTE_MS,
        minute - 25 * MINUTE_MS,
    ];
    let state = PlayState::from_history(PlayLimits::default(), &hourly, &minutes, rules(NOW));
    assert_eq!(state.used(LimitKind::Wager, LimitPeriod::Day, NOW), 700);
    assert_eq!(state.used(LimitKind::Loss, LimitPeriod::Week, NOW), 1_500);
    let session = state.session.unwrap();
    assert_eq!(
        session.started_at_ms,
        minute - 25 * MINUTE_MS,
        "a 24-minute gap is a break"
    );
    assert_eq!(session.last_play_at_ms, minute - 9 * MINUTE_MS - 1);
    assert_eq!(PlayState::decode(&state.encode()).unwrap(), state);
}

proptest! {
    /// Whatever the play: a bet the gate lets through keeps every wager and loss window
    /// within its limit, counted exactly from the accepted calls.
    #[test]
    fn accepted_play_never_breaks_a_limit(
        calls in prop::collection::vec((0u8..3, 1i64..400, 0i64..90), 1..60),
        day in 1i64..3_000, week in 1i64..6_000, loss in 1i64..2_000,
    ) {
        let mut state = state(&[limit(LimitPeriod::Day, day), limit(LimitPeriod::Week, week)],
            &[limit(LimitPeriod::Month, loss)], None);
        let mut now = NOW;
        let mut accepted: Vec<(i64, i64, i64)> = Vec::new(); // (at, staked, won)
        for (kind, amount, minutes) in calls {
            now += minutes * MINUTE_MS * 7;
            let at = rules(now);
            let mut bet_accepted = false;
            match kind {
                0 => if state.check_bet(amount, at).is_ok() {
                    state.count_bet(amount, at);
                    accepted.push((now, amount, 0));
                    bet_accepted = true;
                },
                1 => { state.count_win(amount, at); accepted.push((now, 0, amount)); }
                _ => if let Some(i) = accepted.iter().rposition(|c| c.1 > 0) {
                    let (bet_at, staked, _) = accepted.remove(i);
                    state.count_rollback(staked, bet_at, at);
                },
            }
            for (kind, period, limit) in [(LimitKind::Wager, LimitPeriod::Day, day),
                (LimitKind::Wager, LimitPeriod::Week, week), (LimitKind::Loss, LimitPeriod::Month, loss)] {
                let since = now - period.window_ms();
                let in_window = accepted.iter().filter(|c| c.0 > since);
                let staked: i64 = in_window.clone().map(|c| c.1).sum();
                let won: i64 = in_window.map(|c| c.2).sum();
                let exact = if kind == LimitKind::Loss { staked - won } else { staked };
                prop_assert!(state.used(kind, period, now) >= exact, "{kind} {period:?} counted low");
                prop_assert!(!bet_accepted || exact <= limit, "{kind} {period:?}: {exact} > {limit}");
            }
        }
    }

    /// A refused bet's reset time is when it fits, and not a bucket earlier.
    #[test]
    fn a_refusal_resets_when_the_bet_fits(
        stakes in prop::collection::vec((0i64..60, 1i64..500), 1..20), amount in 1i64..600,
    ) {
        let mut state = state(&[limit(LimitPeriod::Day, 1_000)], &[], None);
        for (hours_ago, stake) in &stakes {
            state.count_bet(*stake, rules(NOW - hours_ago * HOUR_MS / 3));
        }
        if let Err(refused) = state.check_bet(amount, rules(NOW)) {
            if let Some(at) = refused.resets_at_ms {
                prop_assert!(state.check_bet(amount, rules(at)).is_ok());
                prop_assert!(at - 1 < NOW || state.check_bet(amount, rules(at - 1)).is_err());
            }
        }
    }
}

#[test]
fn a_fully_limited_state_stores_small() {
    let mut state = state(
        &periods(1_000_000_000),
        &periods(1_000_000_000),
        Some(1_440),
    );
    state.count_bet(12_345, rules(NOW));
    state.count_win(6_789, rules(NOW + MINUTE_MS));
    let stored = state.encode();
    assert!(stored.len() <= 110, "{} bytes: {stored}", stored.len());
    assert_eq!(PlayState::decode(&stored).unwrap(), state);
    // The same state as stored before ADR 81 (compact JSON) still reads.
    let json = serde_json::to_string(&state).unwrap();
    assert!(json.starts_with('{') && json.len() > 250, "{json}");
    assert_eq!(PlayState::decode(&json).unwrap(), state);
}

/// A day of hourly play and a month of daily play: what a regular player with limits keeps.
#[test]
fn a_month_of_play_stores_in_well_under_a_sqlite_page() {
    let mut state = state(&periods(500_000), &periods(200_000), Some(240));
    for hour in 0..(30 * 24) {
        let at = NOW + hour * HOUR_MS;
        state.count_bet(1_250 + hour, rules(at));
        state.count_win(990, rules(at + MINUTE_MS));
    }
    assert!(
        state.hours.len() >= 24 && state.days.len() >= 30,
        "{state:?}"
    );
    let stored = state.encode();
    assert!(stored.len() < 700, "{} bytes", stored.len());
    assert_eq!(PlayState::decode(&stored).unwrap(), state);
    let json = serde_json::to_string(&state).unwrap();
    assert!(
        json.len() > 1_024,
        "JSON: {} bytes, over a 1 KiB page",
        json.len()
    );
}

#[test]
fn damaged_states_are_errors() {
    let mut state = state(&[limit(LimitPeriod::Day, 1_000)], &[], Some(60));
    state.count_bet(100, rules(NOW));
    let stored = state.encode();
    for bad in [
        "".to_string(),
        "~".to_string(),
        "~!!".to_string(),
        stored[..stored.len() - 2].to_string(),
        format!("{stored}AA"),
        "{\"w\": 5}".to_string(),
    ] {
        assert!(PlayState::decode(&bad).is_err(), "{bad:?} read back");
    }
}

proptest! {
    /// Whatever the limits, pending increases, buckets and session: a state reads back as
    /// it was stored.
    #[test]
    fn a_state_reads_back_as_stored(
        limits in prop::collection::vec(
            (0usize..3, prop::option::of(0i64..1_000_000),
             prop::option::of((prop::option::of(0i64..1_000_000), 0i64..i64::MAX / 2))),
            0..6),
        session in prop::option::of(1i64..1_440),
        calls in prop::collection::vec((0u8..3, 1i64..10_000, 0i64..600), 0..40),
    ) {
        let mut state = PlayState::default();
        for (i, (period, amount, pending)) in limits.into_iter().enumerate() {
            let limit = PeriodLimit {
                period: LimitPeriod::ALL[period],
                amount_minor: amount,
                pending: pending.map(|(amount_minor, applies_at_ms)| PendingIncrease {
                    amount_minor,
                    applies_at_ms,
                }),
            };
            if limit.amount_minor.is_none() && limit.pending.is_none() {
                continue;
            }
            match i % 2 {
                0 => state.limits.wager.push(limit),
                _ => state.limits.loss.push(limit),
            }
        }
        state.limits.session.minutes = session;
        let mut now = NOW;
        for (kind, amount, minutes) in calls {
            now += minutes * MINUTE_MS;
            match kind {
                0 => state.count_bet(amount, rules(now)),
                1 => state.count_win(amount, rules(now)),
                _ => state.count_rollback(amount, now - HOUR_MS, rules(now)),
            }
        }
        prop_assert_eq!(PlayState::decode(&state.encode()).unwrap(), state);
    }
}
