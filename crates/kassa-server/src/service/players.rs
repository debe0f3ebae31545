//! Players: creation and update with their ledger accounts, and what the wallet's hot path
//! reads of them from memory: the parts that never change (currency and account ids) and
//! the list of players who may not bet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// A national self-exclusion register names the player as excluded (ADR 73):
    /// deposits and bets are refused as for a self-exclusion; withdrawals still go.
    #[error("the {register} register names player {player_id} as self-excluded: deposits and bets are refused")]
    RegisterExcluded {
        player_id: String,
        /// The register's kind, e.g. `gamstop`.
        register: String,
        /// When the register said so.
        checked_at_ms: i64,
    },
    /// The player is younger than their jurisdiction allows to deposit.
    #[error("player {player_id} is under {minimum_age_years}: deposits are refused")]
    Underage {
        player_id: String,
        minimum_age_years: u32,
    },
    /// A self-exclusion or time-out is in force: the account cannot be made active.
    #[error(
        "player {player_id} is excluded until {ends_at}: the exclusion cannot be lifted early"
    )]
    ExclusionInForce {
        player_id: String,
        /// RFC 3339, or `indefinitely`.
        ends_at: String,
    },
    /// The database failed (or refused a currency change: `CurrencyImmutable`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PlayerError {
    /// `Ok` unless the player's birth date makes them younger than their jurisdiction's
    /// minimum age today (an unknown birth date is for KYC to establish).
    pub fn check_age(player: &PlayerRecord, today: (i32, u32, u32)) -> Result<(), PlayerError> {
        let policy = kassa_core::exclusion::ExclusionPolicy::of(player.jurisdiction.as_deref());
        let age = player
            .birth_date
            .as_deref()
            .and_then(|born| kassa_core::exclusion::age_years(born, today));
        match age {
            Some(age) if age < policy.minimum_age_years => Err(PlayerError::Underage {
                player_id: player.player_id.to_string(),
                minimum_age_years: policy.minimum_age_years,
            }),
            _ => Ok(()),
        }
    }

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

/// Looks players up, caching their wallet wiring and which of them may not bet.
#[derive(Clone)]
pub struct PlayerDirectory {
    store: Store,
    wallets: Arc<DashMap<(MerchantId, PlayerId), WalletAccounts>>,
    restricted: Arc<RestrictedPlayers>,
}

/// How old the list of restricted players a bet is checked against may be. A change made
/// through this node applies at once (the list is read again); one made through another
/// node sharing the database applies within this time (ADR 31, ADR 41).
const RESTRICTED_PLAYERS_TTL: Duration = Duration::from_secs(1);

/// Most players' wiring kept in memory; past this the cache starts over.
const WALLET_CACHE_LEN_MAX: usize = 1_000_000;

/// The players who may not bet (every status but `active`), read whole from the database
/// at most once per [`RESTRICTED_PLAYERS_TTL`]: one read a second per node, where reading
/// each betting player's row cost a read per bet once players outnumbered the bets a
/// player makes per second (perf-log note 35). They are few: a self-exclusion or a block
/// is an exception, and the read is of a partial index of them alone.
#[derive(Default)]
struct RestrictedPlayers {
    snapshot: std::sync::RwLock<RestrictedSnapshot>,
    /// One read at a time; the bets that find the list stale wait for it.
    refreshing: tokio::sync::Mutex<()>,
    /// Counts changes made through this node; a read that overlapped one is not trusted
    /// as fresh.
    changes: AtomicU64,
}

/// Why a player on the restricted list may not bet.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Restriction {
    /// The account's own status (`self_excluded`, `blocked`).
    Status(AccountStatus),
    /// A national register's latest answer is `excluded` (ADR 73).
    Register {
        register: String,
        checked_at_ms: i64,
    },
}

#[derive(Default)]
struct RestrictedSnapshot {
    statuses: HashMap<(MerchantId, PlayerId), Restriction>,
    /// When the read that made `statuses` began; `None` when a change was made since.
    read_at: Option<Instant>,
}

impl RestrictedPlayers {
    /// The player's restriction if the list is fresh enough to answer.
    fn fresh_status(&self, key: &(MerchantId, PlayerId)) -> Option<Option<Restriction>> {
        let snapshot = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        let read_at = snapshot.read_at?;
        (read_at.elapsed() < RESTRICTED_PLAYERS_TTL).then(|| status_in(&snapshot.statuses, key))
    }

    /// The player's restriction (`None`: may bet), reading the list again first if it is
    /// stale.
    async fn status(
        &self,
        store: &Store,
        key: &(MerchantId, PlayerId),
    ) -> Result<Option<Restriction>, StoreError> {
        if let Some(status) = self.fresh_status(key) {
            return Ok(status);
        }
        let _one_read = self.refreshing.lock().await;
        if let Some(status) = self.fresh_status(key) {
            return Ok(status); // read by the bet this one waited for
        }
        let changes_before = self.changes.load(Ordering::SeqCst);
        let began = Instant::now();
        let statuses = read_restricted(store).await?;
        let status = status_in(&statuses, key);
        let mut snapshot = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        let unchanged = self.changes.load(Ordering::SeqCst) == changes_before;
        *snapshot = RestrictedSnapshot {
            statuses,
            read_at: unchanged.then_some(began),
        };
        Ok(status)
    }

    /// A player's status was written through this node: the next bet reads the list again.
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .read_at = None;
    }
}

/// A player not on the list may bet.
fn status_in(
    statuses: &HashMap<(MerchantId, PlayerId), Restriction>,
    key: &(MerchantId, PlayerId),
) -> Option<Restriction> {
    statuses.get(key).cloned()
}

/// The restricted players: those a register names as excluded, then those whose account
/// status restricts them (the account's own status wins where both apply).
async fn read_restricted(
    store: &Store,
) -> Result<HashMap<(MerchantId, PlayerId), Restriction>, StoreError> {
    let mut statuses: HashMap<_, _> = store
        .register_excluded_players()
        .await?
        .into_iter()
        .map(|p| {
            let restriction = Restriction::Register {
                register: p.register,
                checked_at_ms: p.checked_at_ms,
            };
            ((p.merchant_id, p.player_id), restriction)
        })
        .collect();
    for player in store.restricted_players().await? {
        let key = (player.merchant_id, player.player_id);
        statuses.insert(key, Restriction::Status(player.account_status));
    }
    Ok(statuses)
}

impl PlayerDirectory {
    /// An empty directory over `store`.
    pub fn new(store: Store) -> PlayerDirectory {
        PlayerDirectory {
            store,
            wallets: Arc::new(DashMap::new()),
            restricted: Arc::default(),
        }
    }

    /// Creates or updates a player; returns the record and whether it was created. An
    /// exclusion in force cannot be lifted by making the account active.
    pub async fn upsert(&self, player: PlayerUpsert) -> Result<(PlayerRecord, bool), PlayerError> {
        if player.account_status == AccountStatus::Active {
            let merchant = player.merchant_id.as_str();
            let excluded = self
                .store
                .player_exclusion(merchant, player.player_id.as_str())
                .await?
                .filter(|record| record.exclusion.in_force(kassa_store::now_ms()));
            if let Some(record) = excluded {
                return Err(PlayerError::ExclusionInForce {
                    player_id: player.player_id.to_string(),
                    ends_at: record
                        .exclusion
                        .ends_at_ms
                        .map_or_else(|| "indefinitely".into(), crate::api::rfc3339),
                });
            }
        }
        let upserted = self.store.upsert_player(&player).await;
        // After the write (and whatever its result): a bet checked from now on reads the
        // list again, with the new status.
        self.restricted.changed();
        Ok(upserted?)
    }

    /// Reads the restricted list again at the next check: an exclusion started or ended.
    pub fn restricted_changed(&self) {
        self.restricted.changed();
    }

    /// `Ok` when the player may bet now (see [`PlayerError::check_may_play`]), by the list
    /// of restricted players at most [`RESTRICTED_PLAYERS_TTL`] old. The caller has found
    /// the player (a player not on the list counts as `active`).
    pub async fn check_may_play(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<(), PlayerError> {
        let key = (merchant_id.clone(), player_id.clone());
        match self.restricted.status(&self.store, &key).await? {
            None => Ok(()),
            Some(Restriction::Status(status)) => PlayerError::check_may_play(player_id, status),
            Some(Restriction::Register {
                register,
                checked_at_ms,
            }) => Err(PlayerError::RegisterExcluded {
                player_id: player_id.to_string(),
                register,
                checked_at_ms,
            }),
        }
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
