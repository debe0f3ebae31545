//! Responsible-gambling limits as use cases: read them, change them (a decrease at once, an
//! increase after the jurisdiction's cooling-off, `kassa_core::limits`), and refuse a
//! deposit that would break a deposit limit, before any provider hears of it. Wager, loss
//! and session-time limits are enforced by the wallet writer (`kassa_core::play_limits`,
//! ADR 77); a change of them also changes the play state it reads, in one transaction.

use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::limits::{
    check_deposit, deposit_usage, LimitExceeded, LimitKind, LimitPeriod, LimitPolicy, LimitUsage,
    PendingIncrease, PeriodLimit,
};
use kassa_core::play_limits::{PlayLimits, PlayRules, PlayState, SessionLimit, SessionUsage};
use kassa_core::Currency;
use kassa_store::directory::PlayerRecord;
use kassa_store::{Store, StoreError, Tx};
use serde_json::{json, Value};

use crate::service::players::{PlayerDirectory, PlayerError};

/// Who asked for a limit change.
pub const SET_BY: &[&str] = &["player", "operator"];

/// Why a limit change was refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The player is unknown.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A deposit refused by a limit, in the player's currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepositRefused {
    pub exceeded: LimitExceeded,
    pub currency: Currency,
}

/// The changes one request asks for: `None` removes a limit; kinds and periods left out do
/// not change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitChanges {
    pub deposit: Vec<(LimitPeriod, Option<i64>)>,
    pub wager: Vec<(LimitPeriod, Option<i64>)>,
    pub loss: Vec<(LimitPeriod, Option<i64>)>,
    /// The session-time limit in minutes, when asked.
    pub session_minutes: Option<Option<i64>>,
}

impl LimitChanges {
    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.deposit.is_empty()
            && self.wager.is_empty()
            && self.loss.is_empty()
            && self.session_minutes.is_none()
    }
}

/// A player's limits as shown: every period of each kind with how much of it is used, and
/// the policy that governs increases.
#[derive(Debug)]
pub struct PlayerLimits {
    pub player_id: PlayerId,
    pub currency: Currency,
    pub policy: LimitPolicy,
    /// Day, week and month, as in force now (a due increase applied).
    pub deposit: Vec<ShownLimit>,
    pub wager: Vec<ShownLimit>,
    pub loss: Vec<ShownLimit>,
    pub session: SessionLimit,
    /// The session under way, when a session limit is in force.
    pub session_usage: Option<SessionUsage>,
    /// Minutes without a wallet call that end a session.
    pub session_break_minutes: i64,
}

/// One period's limit as shown.
#[derive(Clone, Copy, Debug)]
pub struct ShownLimit {
    pub limit: PeriodLimit,
    /// How much of it is used, counted as its refusal counts; `None` when no limit is in
    /// force.
    pub usage: Option<LimitUsage>,
}

/// The limit use cases; cheap to clone.
#[derive(Clone)]
pub struct LimitsService {
    store: Store,
    players: PlayerDirectory,
    session_break_ms: i64,
}

impl LimitsService {
    /// Wires the service; `session_break_ms` is the wallet writer's
    /// (`wallet.play_session_break_minutes`).
    pub fn new(store: Store, players: PlayerDirectory, session_break_ms: i64) -> LimitsService {
        LimitsService {
            store,
            players,
            session_break_ms,
        }
    }

    /// The player's limits now, with how much of each is used.
    pub async fn get(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<PlayerLimits, LimitsError> {
        let player = self.players.get(merchant_id, player_id).await?;
        let stored = self.store.limits(merchant_id, player_id).await?;
        let now = self.store.clock().now_ms();
        let play = stored.play.at(now);
        let limited =
            in_force(&play.wager) || in_force(&play.loss) || play.session.minutes.is_some();
        let play_state = match limited {
            true => self.store.play_state(player.cash_account_id).await?,
            false => None,
        };
        let state = play_state.unwrap_or_default();
        let played = |kind, limits: &[PeriodLimit]| {
            every_period(limits, now)
                .into_iter()
                .map(|limit| ShownLimit {
                    limit,
                    usage: limit
                        .amount_minor
                        .map(|amount| state.usage(kind, limit.period, amount, now)),
                })
                .collect()
        };
        let rules = PlayRules {
            now_ms: now,
            session_break_ms: self.session_break_ms,
        };
        Ok(PlayerLimits {
            player_id: player.player_id.clone(),
            currency: player.currency,
            policy: LimitPolicy::of(player.jurisdiction.as_deref()),
            deposit: self
                .shown_deposit_limits(&player, &stored.deposit, now)
                .await?,
            wager: played(LimitKind::Wager, &play.wager),
            loss: played(LimitKind::Loss, &play.loss),
            session: stored.play.session.at(now),
            session_usage: play.session.minutes.map(|_| {
                state
                    .session
                    .map_or_else(SessionUsage::default, |s| s.usage(rules))
            }),
            session_break_minutes: self.session_break_ms / 60_000,
        })
    }

    /// Every period's deposit limit at `now_ms` with its usage: the deposits and
    /// reservations a deposit start's check would count ([`check_within_limits`]).
    async fn shown_deposit_limits(
        &self,
        player: &PlayerRecord,
        stored: &[PeriodLimit],
        now_ms: i64,
    ) -> Result<Vec<ShownLimit>, StoreError> {
        let limits = every_period(stored, now_ms);
        let counted = match in_force(&limits) {
            true => {
                let since = now_ms - LimitPeriod::Month.window_ms();
                let ids = (&player.merchant_id, &player.player_id);
                self.store.counted_deposits(ids.0, ids.1, since).await?
            }
            false => Vec::new(),
        };
        Ok(limits
            .into_iter()
            .map(|limit| ShownLimit {
                limit,
                usage: deposit_usage(&limit, &counted, now_ms),
            })
            .collect())
    }

    /// Applies the asked changes in one transaction, under the lock of the player's cash
    /// account (which the wallet writer takes for each of the player's calls), with a
    /// `player.limit.changed` event for each limit that changed.
    pub async fn set(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        changes: &LimitChanges,
        set_by: &str,
    ) -> Result<PlayerLimits, LimitsError> {
        let player = self.players.get(merchant_id, player_id).await?;
        let change = Change {
            player: &player,
            policy: LimitPolicy::of(player.jurisdiction.as_deref()),
            now_ms: self.store.clock().now_ms(),
            set_by,
        };
        let mut tx = self.store.begin().await?;
        let play_state = self
            .store
            .lock_play_state(&mut tx, player.cash_account_id)
            .await?;
        let stored = self
            .store
            .limits_in(&mut tx, merchant_id, player_id)
            .await?;
        let mut events = Vec::new();
        let mut periods = |kind, stored: &[PeriodLimit], asked: &[(LimitPeriod, Option<i64>)]| {
            change.periods(kind, stored, asked, &mut events)
        };
        let deposit = periods(LimitKind::Deposit, &stored.deposit, &changes.deposit);
        let play = PlayLimits {
            wager: periods(LimitKind::Wager, &stored.play.wager, &changes.wager),
            loss: periods(LimitKind::Loss, &stored.play.loss, &changes.loss),
            session: match changes.session_minutes {
                Some(wanted) => change.session(&stored.play.session, wanted, &mut events),
                None => stored.play.session,
            },
        };
        let ids = (merchant_id, player_id);
        self.write_limits(&mut tx, ids, changes, (&deposit, &play), set_by)
            .await?;
        let play_changed = play != stored.play;
        if play_changed {
            self.store_play_state(&mut tx, &player, play_state, play, change.now_ms)
                .await?;
        }
        for payload in events {
            self.store
                .insert_outbox(
                    &mut tx,
                    merchant_id.as_str(),
                    "player.limit.changed",
                    player_id.as_str(),
                    &payload.to_string(),
                )
                .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(player_id = %player_id, %set_by, play_changed, "limits changed");
        self.get(merchant_id, player_id).await
    }

    /// Writes the limits `changes` asked for (of `deposit` and `play`, the limits after
    /// them), each row replacing what was there.
    async fn write_limits(
        &self,
        tx: &mut Tx,
        ids: (&MerchantId, &PlayerId),
        changes: &LimitChanges,
        (deposit, play): (&[PeriodLimit], &PlayLimits),
        set_by: &str,
    ) -> Result<(), StoreError> {
        let asked = [
            (LimitKind::Deposit, &changes.deposit, deposit),
            (LimitKind::Wager, &changes.wager, &play.wager[..]),
            (LimitKind::Loss, &changes.loss, &play.loss[..]),
        ];
        for (kind, asked, limits) in asked {
            for limit in limits
                .iter()
                .filter(|l| asked.iter().any(|(p, _)| *p == l.period))
            {
                self.store.put_limit(tx, ids, kind, limit, set_by).await?;
            }
        }
        if changes.session_minutes.is_some() {
            self.store
                .put_session_limit(tx, ids, &play.session, set_by)
                .await?;
        }
        Ok(())
    }

    /// Stores the play state the wallet writer checks the player's bets against: the new
    /// limits on the state kept so far, or, for a first play limit, on the player's play
    /// of the last 31 days read from the journal (a limit counts play before it was set,
    /// as a deposit limit counts earlier deposits); none once no play limit is left.
    async fn store_play_state(
        &self,
        tx: &mut Tx,
        player: &PlayerRecord,
        stored: Option<PlayState>,
        limits: PlayLimits,
        now_ms: i64,
    ) -> Result<(), LimitsError> {
        let cash = player.cash_account_id;
        if limits.at(now_ms).is_empty() {
            self.store.put_play_state(tx, cash, None).await?;
            return Ok(());
        }
        let state = match stored {
            Some(state) => PlayState { limits, ..state },
            None => {
                let rules = PlayRules {
                    now_ms,
                    session_break_ms: self.session_break_ms,
                };
                let (hourly, minutes) = self
                    .store
                    .play_history(tx, &player.merchant_id, &player.player_id, rules)
                    .await?;
                PlayState::from_history(limits, &hourly, &minutes, rules)
            }
        };
        self.store.put_play_state(tx, cash, Some(&state)).await?;
        Ok(())
    }
}

/// One limit change request: whose, under which policy, when and by whom.
struct Change<'a> {
    player: &'a PlayerRecord,
    policy: LimitPolicy,
    now_ms: i64,
    set_by: &'a str,
}

impl Change<'_> {
    /// The `kind` limits after the `asked` changes of `stored`, each change with its event
    /// payload pushed to `events`.
    fn periods(
        &self,
        kind: LimitKind,
        stored: &[PeriodLimit],
        asked: &[(LimitPeriod, Option<i64>)],
        events: &mut Vec<Value>,
    ) -> Vec<PeriodLimit> {
        let mut limits: Vec<PeriodLimit> = stored.to_vec();
        for (period, wanted) in asked {
            let current = every_period(stored, self.now_ms)
                .into_iter()
                .find(|l| l.period == *period)
                .unwrap_or_else(|| PeriodLimit::none(*period));
            let changed = current.change(*wanted, self.policy, self.now_ms);
            limits.retain(|l| l.period != *period);
            limits.push(changed);
            let currency = self.player.currency;
            let amount = |minor: Option<i64>| minor.map(|a| currency.format_minor(a));
            let mut event = self.event(kind, period.as_str(), changed.pending, amount);
            event["amount"] = json!(amount(changed.amount_minor));
            events.push(event);
        }
        limits.sort_by_key(|l| l.period);
        limits
    }

    /// The session limit after asking for `wanted` minutes, with its event.
    fn session(
        &self,
        stored: &SessionLimit,
        wanted: Option<i64>,
        events: &mut Vec<Value>,
    ) -> SessionLimit {
        let changed = stored.change(wanted, self.policy, self.now_ms);
        let mut event = self.event(LimitKind::Session, "session", changed.pending, |m| {
            m.map(|m| m.to_string())
        });
        event["minutes"] = json!(changed.minutes);
        if let Some(pending) = changed.pending {
            event["pending"]["minutes"] = json!(pending.amount_minor);
        }
        events.push(event);
        changed
    }

    /// A `player.limit.changed` payload for one limit.
    fn event(
        &self,
        kind: LimitKind,
        period: &str,
        pending: Option<PendingIncrease>,
        amount: impl Fn(Option<i64>) -> Option<String>,
    ) -> Value {
        json!({
            "player_id": self.player.player_id.as_str(), "kind": kind.as_str(),
            "period": period, "currency": self.player.currency.code(),
            "pending": pending.map(|p| json!({
                "amount": amount(p.amount_minor),
                "applies_at": crate::api::rfc3339(p.applies_at_ms),
            })),
            "set_by": self.set_by,
        })
    }
}

/// Whether any of `limits` (as they are at a moment) is in force.
fn in_force(limits: &[PeriodLimit]) -> bool {
    limits.iter().any(|l| l.amount_minor.is_some())
}

/// Every period's limit at `now_ms`, those without a row as none.
fn every_period(stored: &[PeriodLimit], now_ms: i64) -> Vec<PeriodLimit> {
    LimitPeriod::ALL
        .into_iter()
        .map(|period| {
            stored
                .iter()
                .find(|l| l.period == period)
                .map_or_else(|| PeriodLimit::none(period), |l| l.at(now_ms))
        })
        .collect()
}

/// How long a deposit start's reservation counts if the start is never recorded (a crash
/// while the provider is asked): longer than any provider call with its retries.
const RESERVATION_TTL_MS: i64 = 5 * 60 * 1_000;

/// What the limit check of a deposit start came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitCheck {
    /// The player has no deposit limit in force: nothing reserved.
    NoLimit,
    /// Within the limits; the amount is reserved until the deposit is recorded
    /// ([`kassa_store::Store::release_deposit_reservation`]).
    Reserved,
}

/// Whether the player has a deposit limit in force: one indexed read, outside any
/// transaction, so a player without limits takes no lock for them.
pub async fn limits_in_force(
    store: &Store,
    merchant_id: &MerchantId,
    player_id: &PlayerId,
) -> Result<bool, StoreError> {
    let now = store.clock().now_ms();
    let limits = store.deposit_limits(merchant_id, player_id).await?;
    let limits: Vec<PeriodLimit> = limits.iter().map(|l| l.at(now)).collect();
    Ok(in_force(&limits))
}

/// A deposit start's amount, checked against the player's limits inside the start's short
/// transaction before any provider is asked (ADR 65): the limit rows locked, the deposits
/// and other starts' reservations counted. `Err` refuses; the caller rolls back.
pub async fn check_within_limits(
    store: &Store,
    tx: &mut Tx,
    start: &LimitedStart<'_>,
) -> Result<Result<(), DepositRefused>, StoreError> {
    let now = store.clock().now_ms();
    // Read again under the lock: a change since the first read is the one that counts.
    let limits = store
        .lock_deposit_limits(tx, start.merchant_id, start.player_id)
        .await?;
    let since = now - LimitPeriod::Month.window_ms();
    let counted = store
        .counted_deposits_in(
            tx,
            start.merchant_id,
            start.player_id,
            since,
            start.payment_id,
        )
        .await?;
    Ok(
        check_deposit(&limits, &counted, start.amount_minor, now).map_err(|exceeded| {
            DepositRefused {
                exceeded,
                currency: start.currency,
            }
        }),
    )
}

/// Reserves a checked start's amount for its payment while its provider is asked, in the
/// transaction of [`check_within_limits`]: starts of one player at the same instant, on any
/// node, count each other.
pub async fn reserve(
    store: &Store,
    tx: &mut Tx,
    start: &LimitedStart<'_>,
) -> Result<(), StoreError> {
    let now = store.clock().now_ms();
    store
        .reserve_deposit(
            tx,
            start.payment_id,
            start.merchant_id,
            start.player_id,
            start.amount_minor,
            now,
            now + RESERVATION_TTL_MS,
        )
        .await
}

/// A deposit start as the limits see it.
#[derive(Clone, Copy, Debug)]
pub struct LimitedStart<'a> {
    pub merchant_id: &'a MerchantId,
    pub player_id: &'a PlayerId,
    pub payment_id: &'a str,
    pub amount_minor: i64,
    pub currency: Currency,
}
