//! Players: creation and update with their ledger accounts, and a cache of the parts of a
//! player that never change (currency and account ids), which the wallet's hot path reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::ledger::{AccountId, AccountKind};
use kassa_core::movements::PlayerAccounts;
use kassa_core::status::AccountStatus;
use kassa_core::Currency;
use kassa_store::directory::{PlayerRecord, PlayerUpsert};
use kassa_store::{Store, StoreError};

/// Why a player could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    /// No such player for this merchant.
    #[error("no player {player_id:?}")]
    NotFound { player_id: String },
    /// The request's currency is not the player's wallet currency.
    #[error("player {player_id} holds {held}, not {asked}")]
    CurrencyMismatch {
        player_id: String,
        held: Currency,
        asked: Currency,
    },
    /// The player's account may not deposit or bet (self-excluded or blocked).
    #[error("player {player_id} is {status}: deposits and bets are refused")]
    Restricted {
        player_id: String,
        status: AccountStatus,
    },
    /// The database failed (or refused a currency change: `CurrencyImmutable`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PlayerError {
    /// `Ok` when the player's wallet holds `asked`.
    pub fn check_currency(
        player_id: &PlayerId,
        held: Currency,
        asked: Currency,
    ) -> Result<(), PlayerError> {
        if held == asked {
            return Ok(());
        }
        Err(PlayerError::CurrencyMismatch {
            player_id: player_id.to_string(),
            held,
            asked,
        })
    }
}

impl PlayerError {
    /// `Ok` when an account of this status may deposit and bet: only `active` may; an
    /// unknown stored status is refused as `blocked` (fail closed).
    pub fn check_may_play(
        player_id: &PlayerId,
        account_status: AccountStatus,
    ) -> Result<(), PlayerError> {
        match account_status {
            AccountStatus::Active => Ok(()),
            status => Err(PlayerError::Restricted {
                player_id: player_id.to_string(),
                status,
            }),
        }
    }
}

/// A player's wallet wiring; immutable once the player exists, so safe to cache on every
/// node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletAccounts {
    /// The wallet's currency.
    pub currency: Currency,
    /// Spendable money.
    pub cash: AccountId,
    /// Withdrawals in flight.
    pub hold: AccountId,
    /// The operator's side of bets and wins in this currency.
    pub house: AccountId,
    /// Where enrolled deposits come from until reconciled.
    pub suspense: AccountId,
}

impl WalletAccounts {
    /// The accounts the ledger's money movements take.
    pub fn ledger_accounts(&self) -> PlayerAccounts {
        PlayerAccounts {
            cash: self.cash,
            hold: self.hold,
            house: self.house,
            suspense: self.suspense,
        }
    }
}

/// Looks players up, caching their wallet wiring.
#[derive(Clone)]
pub struct PlayerDirectory {
    store: Store,
    wallets: Arc<DashMap<(MerchantId, PlayerId), WalletAccounts>>,
    statuses: Arc<DashMap<(MerchantId, PlayerId), (AccountStatus, Instant)>>,
}

/// How long a player's account status read for a bet is reused. A change made through this
/// node applies at once (the entry is dropped); one made through another node sharing the
/// database applies within this time (ADR 31).
const ACCOUNT_STATUS_CACHE_TTL: Duration = Duration::from_secs(1);

/// Most players' wiring kept in memory; past this the cache starts over.
const WALLET_CACHE_LEN_MAX: usize = 1_000_000;

impl PlayerDirectory {
    /// An empty directory over `store`.
    pub fn new(store: Store) -> PlayerDirectory {
        PlayerDirectory {
            store,
            wallets: Arc::new(DashMap::new()),
            statuses: Arc::new(DashMap::new()),
        }
    }

    /// Creates or updates a player; returns the record and whether it was created.
    pub async fn upsert(&self, player: PlayerUpsert) -> Result<(PlayerRecord, bool), PlayerError> {
        let key = (player.merchant_id.clone(), player.player_id.clone());
        let upserted = self.store.upsert_player(&player).await;
        // Dropped after the write (and whatever its result): a bet checked from now on
        // reads the new status.
        self.statuses.remove(&key);
        Ok(upserted?)
    }

    /// `Ok` when the player may bet now (see [`PlayerError::check_may_play`]); the status
    /// is read at most once per [`ACCOUNT_STATUS_CACHE_TTL`] per player.
    pub async fn check_may_play(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<(), PlayerError> {
        let key = (merchant_id.clone(), player_id.clone());
        if let Some(found) = self.statuses.get(&key) {
            if found.1.elapsed() < ACCOUNT_STATUS_CACHE_TTL {
                return PlayerError::check_may_play(player_id, found.0);
            }
        }
        let player = self.get(merchant_id, player_id).await?;
        if self.statuses.len() >= WALLET_CACHE_LEN_MAX {
            self.statuses.clear();
        }
        self.statuses
            .insert(key, (player.account_status, Instant::now()));
        PlayerError::check_may_play(player_id, player.account_status)
    }

    /// The player, or `PlayerError::NotFound`.
    pub async fn get(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<PlayerRecord, PlayerError> {
        self.store
            .get_player(merchant_id, player_id)
            .await?
            .ok_or_else(|| PlayerError::NotFound {
                player_id: player_id.to_string(),
            })
    }

    /// The player's wallet wiring, from memory when seen before.
    pub async fn wallet(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<WalletAccounts, PlayerError> {
        let key = (merchant_id.clone(), player_id.clone());
        if let Some(found) = self.wallets.get(&key) {
            return Ok(*found);
        }
        let player = self.get(merchant_id, player_id).await?;
        let house = self
            .store
            .account_id(
                merchant_id.as_str(),
                AccountKind::OperatorRevenue,
                "",
                player.currency,
            )
            .await?;
        let suspense = self
            .store
            .account_id(
                merchant_id.as_str(),
                AccountKind::Suspense,
                "",
                player.currency,
            )
            .await?;
        let wallet = WalletAccounts {
            currency: player.currency,
            cash: player.cash_account_id,
            hold: player.hold_account_id,
            house,
            suspense,
        };
        if self.wallets.len() >= WALLET_CACHE_LEN_MAX {
            self.wallets.clear();
        }
        self.wallets.insert(key, wallet);
        Ok(wallet)
    }
}
