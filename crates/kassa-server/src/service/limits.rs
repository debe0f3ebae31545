//! Responsible-gambling deposit limits as use cases: read them, change them (a decrease at
//! once, an increase after the jurisdiction's cooling-off, `kassa_core::limits`), and refuse
//! a deposit that would break one, before any provider hears of it.

use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::limits::{check_deposit, DepositLimit, LimitExceeded, LimitPeriod, LimitPolicy};
use kassa_core::Currency;
use kassa_store::{now_ms, Store, StoreError, Tx};
use serde_json::json;

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

/// A player's limits as shown: every period, with the policy that governs increases.
#[derive(Debug)]
pub struct PlayerLimits {
    pub player_id: PlayerId,
    pub currency: Currency,
    pub policy: LimitPolicy,
    /// Day, week and month, as in force now (a due increase applied).
    pub deposit: Vec<DepositLimit>,
}

/// The limit use cases; cheap to clone.
#[derive(Clone)]
pub struct LimitsService {
    store: Store,
    players: PlayerDirectory,
}

impl LimitsService {
    /// Wires the service.
    pub fn new(store: Store, players: PlayerDirectory) -> LimitsService {
        LimitsService { store, players }
    }

    /// The player's deposit limits now.
    pub async fn get(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<PlayerLimits, LimitsError> {
        let player = self.players.get(merchant_id, player_id).await?;
        let stored = self.store.deposit_limits(merchant_id, player_id).await?;
        Ok(PlayerLimits {
            player_id: player.player_id,
            currency: player.currency,
            policy: LimitPolicy::of(player.jurisdiction.as_deref()),
            deposit: every_period(&stored, now_ms()),
        })
    }

    /// Applies the asked changes (`None` removes a period's limit) in one transaction, with a
    /// `player.limit.changed` event for each period that changed.
    pub async fn set(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        changes: &[(LimitPeriod, Option<i64>)],
        set_by: &str,
    ) -> Result<PlayerLimits, LimitsError> {
        let player = self.players.get(merchant_id, player_id).await?;
        let policy = LimitPolicy::of(player.jurisdiction.as_deref());
        let now = now_ms();
        let stored = every_period(
            &self.store.deposit_limits(merchant_id, player_id).await?,
            now,
        );
        let mut tx = self.store.begin().await?;
        for (period, wanted) in changes {
            let current = stored
                .iter()
                .find(|l| l.period == *period)
                .copied()
                .unwrap_or_else(|| DepositLimit::none(*period));
            let changed = current.change(*wanted, policy, now);
            self.store
                .put_deposit_limit(&mut tx, merchant_id, player_id, &changed, set_by)
                .await?;
            let payload = json!({
                "player_id": player_id.as_str(), "kind": "deposit", "period": period.as_str(),
                "currency": player.currency.code(),
                "amount": changed.amount_minor.map(|a| player.currency.format_minor(a)),
                "pending": changed.pending.map(|p| json!({
                    "amount": p.amount_minor.map(|a| player.currency.format_minor(a)),
                    "applies_at": crate::api::rfc3339(p.applies_at_ms),
                })),
                "set_by": set_by,
            });
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
        tracing::info!(player_id = %player_id, %set_by, "deposit limits changed");
        self.get(merchant_id, player_id).await
    }
}

/// Every period's limit at `now_ms`, those without a row as none.
fn every_period(stored: &[DepositLimit], now_ms: i64) -> Vec<DepositLimit> {
    LimitPeriod::ALL
        .into_iter()
        .map(|period| {
            stored
                .iter()
                .find(|l| l.period == period)
                .map_or_else(|| DepositLimit::none(period), |l| l.at(now_ms))
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
    let now = now_ms();
    let limits = store.deposit_limits(merchant_id, player_id).await?;
    Ok(limits.iter().any(|l| l.at(now).amount_minor.is_some()))
}

/// A deposit start's amount, checked against the player's limits inside the start's short
/// transaction before any provider is asked (ADR 65): the limit rows locked, the deposits
/// and other starts' reservations counted. `Err` refuses; the caller rolls back.
pub async fn check_within_limits(
    store: &Store,
    tx: &mut Tx,
    start: &LimitedStart<'_>,
) -> Result<Result<(), DepositRefused>, StoreError> {
    let now = now_ms();
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
    let now = now_ms();
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
