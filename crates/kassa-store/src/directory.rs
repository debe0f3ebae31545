//! Merchants, their API keys, and players with their ledger accounts.

use kassa_core::email::EmailAddress;
use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::ledger::{AccountId, AccountKind};
use kassa_core::status::{AccountStatus, KycStatus};
use kassa_core::Currency;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, Store, StoreError, Tx};

/// An API key as found by its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Key id (not the secret).
    pub id: String,
    /// Merchant the key acts for; `None` for platform admin keys.
    pub merchant_id: Option<MerchantId>,
    /// Admin roles (`admin`, `finance`, …); empty for merchant keys.
    pub roles: Vec<String>,
}

/// A player as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayerRecord {
    /// Merchant the player belongs to.
    pub merchant_id: MerchantId,
    /// The merchant's id for the player.
    pub player_id: PlayerId,
    /// The one currency the player's wallet holds.
    pub currency: Currency,
    /// ISO 3166-1 alpha-2 country.
    pub country: String,
    /// Licence the player plays under (e.g. `GB`, `MT`).
    pub jurisdiction: Option<String>,
    /// How far the identity check has got.
    pub kyc_status: KycStatus,
    /// ISO 8601 date.
    pub birth_date: Option<String>,
    /// `self_excluded` may still withdraw, `blocked` may not.
    pub account_status: AccountStatus,
    /// Spendable money.
    pub cash_account_id: AccountId,
    /// Money held for withdrawals in flight.
    pub hold_account_id: AccountId,
    /// Normalised; masked by `Debug`.
    pub email: Option<EmailAddress>,
    /// The issuing country of the identity document a verified KYC check read (ADR 86).
    pub kyc_country: Option<String>,
}

/// What a caller sends to create or update a player.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayerUpsert {
    /// Merchant the player belongs to.
    pub merchant_id: MerchantId,
    /// The merchant's id for the player.
    pub player_id: PlayerId,
    /// Wallet currency; fixed once set.
    pub currency: Currency,
    /// Country code.
    pub country: String,
    /// Licence.
    pub jurisdiction: Option<String>,
    /// KYC status.
    pub kyc_status: KycStatus,
    /// Date of birth.
    pub birth_date: Option<String>,
    /// Account standing.
    pub account_status: AccountStatus,
    /// Email address, normalised.
    pub email: Option<EmailAddress>,
}

const PLAYER_COLUMNS: &str = "merchant_id, player_id, currency, country, jurisdiction, \
     kyc_status, birth_date, account_status, cash_account_id, hold_account_id, email, kyc_country";

/// A status column read back as its enum; a name outside it is corrupt data (the tables'
/// CHECK constraints allow only these names).
pub(crate) fn stored_status<T>(
    row: &AnyRow,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{column} {text:?}")))
}

/// An id column read back as its type; an id that does not parse is corrupt data (every id
/// passed the same check on its way in).
pub(crate) fn stored_id<T: std::str::FromStr<Err = kassa_core::ids::IdError>>(
    row: &AnyRow,
    column: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    parse_stored_id(column, &text)
}

/// Stored id text as its type; see [`stored_id`].
pub(crate) fn parse_stored_id<T: std::str::FromStr<Err = kassa_core::ids::IdError>>(
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    text.parse()
        .map_err(|error| StoreError::Corrupt(format!("{column} {text:?}: {error}")))
}

fn player_from_row(row: &AnyRow) -> Result<PlayerRecord, StoreError> {
    let code: String = row.try_get("currency")?;
    Ok(PlayerRecord {
        merchant_id: stored_id(row, "merchant_id")?,
        player_id: stored_id(row, "player_id")?,
        currency: Currency::from_code(&code).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        country: row.try_get("country")?,
        jurisdiction: row.try_get("jurisdiction")?,
        kyc_status: stored_status(row, "kyc_status", KycStatus::parse)?,
        birth_date: row.try_get("birth_date")?,
        account_status: stored_status(row, "account_status", AccountStatus::parse)?,
        cash_account_id: row.try_get("cash_account_id")?,
        hold_account_id: row.try_get("hold_account_id")?,
        email: row
            .try_get::<Option<String>, _>("email")?
            .map(EmailAddress::from_stored),
        kyc_country: row.try_get("kyc_country")?,
    })
}

/// What names a ledger account: merchant, kind, owner, currency.
pub(crate) type AccountKey = (String, AccountKind, String, Currency);

/// A player who may not bet, as [`Store::restricted_players`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestrictedPlayer {
    /// Merchant the player belongs to.
    pub merchant_id: MerchantId,
    /// The merchant's id for the player.
    pub player_id: PlayerId,
    /// Any status but `active`.
    pub account_status: AccountStatus,
}

/// The statement [`Store::restricted_players`] runs, the same on both backends; public so
/// that a test can ask PostgreSQL for its plan. The statuses are named (they are the enum's
/// own names, not input), not `<> 'active'` alone, so that PostgreSQL reads the partial index
/// `players_restricted` even without table statistics (migration 0013); the `<> 'active'`
/// proves to the planner that the index covers the rows asked for.
pub fn restricted_players_sql() -> String {
    let restricted: Vec<String> = AccountStatus::ALL
        .iter()
        .filter(|status| **status != AccountStatus::Active)
        .map(|status| format!("'{}'", status.as_str()))
        .collect();
    format!(
        "SELECT merchant_id, player_id, account_status FROM players \
         WHERE account_status IN ({}) AND account_status <> 'active'",
        restricted.join(", ")
    )
}

impl Store {
    /// Creates a merchant.
    pub async fn create_merchant(&self, id: &str, name: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO merchants (id, name, created_at_ms) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(now_ms())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Every player whose account is not `active`: the few a bet is refused for (ADR 41).
    pub async fn restricted_players(&self) -> Result<Vec<RestrictedPlayer>, StoreError> {
        sqlx::query(&restricted_players_sql())
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(|row| {
                Ok(RestrictedPlayer {
                    merchant_id: stored_id(row, "merchant_id")?,
                    player_id: stored_id(row, "player_id")?,
                    account_status: stored_status(row, "account_status", AccountStatus::parse)?,
                })
            })
            .collect()
    }

    /// How many merchants exist (zero on a fresh database).
    pub async fn count_merchants(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM merchants")
            .fetch_one(self.reader())
            .await?)
    }

    /// Stores a key by its hash. `merchant_id` is `None` for admin keys.
    pub async fn create_api_key(
        &self,
        id: &str,
        merchant_id: Option<&str>,
        key_hash: &str,
        key_prefix: &str,
        roles: &[&str],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, merchant_id, key_hash, key_prefix, roles, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(merchant_id)
        .bind(key_hash)
        .bind(key_prefix)
        .bind(roles.join(","))
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Rewrites every stored key hash that does not start with `keyed_prefix` to what
    /// `upgrade` makes of it (the old unsalted hashes, on a database from before keyed
    /// hashing), in one transaction. Hashes `upgrade` cannot read are left as they are and
    /// never match a key. Safe to run on several nodes at once: a row is rewritten only if
    /// it still holds the hash read. Returns how many rows were rewritten.
    pub async fn upgrade_api_key_hashes(
        &self,
        keyed_prefix: &str,
        upgrade: impl Fn(&str) -> Option<String>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT id, key_hash FROM api_keys WHERE key_hash NOT LIKE $1")
            .bind(format!("{keyed_prefix}%"))
            .fetch_all(&mut *tx)
            .await?;
        let mut upgraded = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            let old_hash: String = row.try_get("key_hash")?;
            let Some(new_hash) = upgrade(&old_hash) else {
                continue;
            };
            upgraded +=
                sqlx::query("UPDATE api_keys SET key_hash = $1 WHERE id = $2 AND key_hash = $3")
                    .bind(&new_hash)
                    .bind(&id)
                    .bind(&old_hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
        }
        tx.commit().await?;
        Ok(upgraded)
    }

    /// Finds a live key by the hash of its secret.
    pub async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, merchant_id, roles FROM api_keys \
             WHERE key_hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(self.reader())
        .await?;
        row.map(|row| {
            let roles: String = row.try_get("roles")?;
            let merchant_id: Option<String> = row.try_get("merchant_id")?;
            Ok(ApiKeyRecord {
                id: row.try_get("id")?,
                merchant_id: merchant_id
                    .map(|id| parse_stored_id("merchant_id", &id))
                    .transpose()?,
                roles: roles
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .transpose()
    }

    /// Finds a player.
    pub async fn get_player(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<Option<PlayerRecord>, StoreError> {
        let sql = format!(
            "SELECT {PLAYER_COLUMNS} FROM players WHERE merchant_id = $1 AND player_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(merchant_id.as_str())
            .bind(player_id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(player_from_row).transpose()
    }

    /// Creates a player with their cash and hold accounts, or updates their details.
    /// Returns the player and whether it was created.
    pub async fn upsert_player(
        &self,
        player: &PlayerUpsert,
    ) -> Result<(PlayerRecord, bool), StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {PLAYER_COLUMNS} FROM players WHERE merchant_id = $1 AND player_id = $2{}",
            self.lock_clause()
        );
        let existing = sqlx::query(&sql)
            .bind(player.merchant_id.as_str())
            .bind(player.player_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let now = now_ms();
        let created = match existing.as_ref().map(player_from_row).transpose()? {
            Some(current) => {
                if current.currency != player.currency {
                    return Err(StoreError::CurrencyImmutable {
                        player_id: player.player_id.to_string(),
                        current: current.currency.code().to_string(),
                    });
                }
                sqlx::query(
                    "UPDATE players SET country = $1, jurisdiction = $2, kyc_status = $3, \
                     birth_date = $4, updated_at_ms = $5, account_status = $8, email = $9, \
                     email_key = $10 WHERE merchant_id = $6 AND player_id = $7",
                )
                .bind(&player.country)
                .bind(&player.jurisdiction)
                .bind(player.kyc_status.as_str())
                .bind(&player.birth_date)
                .bind(now)
                .bind(player.merchant_id.as_str())
                .bind(player.player_id.as_str())
                .bind(player.account_status.as_str())
                .bind(player.email.as_ref().map(EmailAddress::as_str))
                .bind(player.email.as_ref().map(EmailAddress::match_key))
                .execute(&mut *tx)
                .await?;
                false
            }
            None => {
                let merchant = player.merchant_id.as_str();
                let currency = player.currency;
                let cash = ensure_account(
                    &mut tx,
                    merchant,
                    AccountKind::PlayerCash,
                    player.player_id.as_str(),
                    currency,
                )
                .await?;
                let hold = ensure_account(
                    &mut tx,
                    merchant,
                    AccountKind::PlayerHold,
                    player.player_id.as_str(),
                    currency,
                )
                .await?;
                // The house side of every bet and the suspense account exist per currency.
                ensure_account(
                    &mut tx,
                    merchant,
                    AccountKind::OperatorRevenue,
                    "",
                    currency,
                )
                .await?;
                ensure_account(&mut tx, merchant, AccountKind::Suspense, "", currency).await?;
                sqlx::query(
                    "INSERT INTO players (merchant_id, player_id, currency, country, jurisdiction, \
                     kyc_status, birth_date, cash_account_id, hold_account_id, created_at_ms, \
                     updated_at_ms, account_status, email, email_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13)",
                )
                .bind(merchant)
                .bind(player.player_id.as_str())
                .bind(currency.code())
                .bind(&player.country)
                .bind(&player.jurisdiction)
                .bind(player.kyc_status.as_str())
                .bind(&player.birth_date)
                .bind(cash)
                .bind(hold)
                .bind(now)
                .bind(player.account_status.as_str())
                .bind(player.email.as_ref().map(EmailAddress::as_str))
                .bind(player.email.as_ref().map(EmailAddress::match_key))
                .execute(&mut *tx)
                .await?;
                true
            }
        };
        let row = sqlx::query(&format!(
            "SELECT {PLAYER_COLUMNS} FROM players WHERE merchant_id = $1 AND player_id = $2"
        ))
        .bind(player.merchant_id.as_str())
        .bind(player.player_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let record = player_from_row(&row)?;
        tx.commit().await?;
        Ok((record, created))
    }

    /// The id of an existing account, read without taking the write lock.
    pub async fn find_account_id(
        &self,
        merchant_id: &str,
        kind: AccountKind,
        owner: &str,
        currency: Currency,
    ) -> Result<Option<AccountId>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM ledger_accounts \
             WHERE merchant_id = $1 AND kind = $2 AND owner = $3 AND currency = $4",
        )
        .bind(merchant_id)
        .bind(kind.as_str())
        .bind(owner)
        .bind(currency.code())
        .fetch_optional(self.reader())
        .await?)
    }

    /// The id of an account, created inside `tx` if it does not exist yet. An id already
    /// seen committed comes from memory: no statement, and no wait on the account's row
    /// while another transaction holds it (a unique-index check waits for a transaction
    /// that has updated the row; captures update their clearing account's balance).
    /// Only ids committed by other transactions are remembered: one created (or updated)
    /// by `tx` vanishes if `tx` rolls back.
    pub async fn ledger_account(
        &self,
        tx: &mut Tx,
        merchant_id: &str,
        kind: AccountKind,
        owner: &str,
        currency: Currency,
    ) -> Result<AccountId, StoreError> {
        let key: AccountKey = (merchant_id.to_owned(), kind, owner.to_owned(), currency);
        let known = self
            .known_accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        if let Some(id) = known {
            return Ok(id);
        }
        if let Some(id) = self.committed_account_id(tx, &key).await? {
            self.known_accounts
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, id);
            return Ok(id);
        }
        ensure_account(tx, merchant_id, kind, owner, currency).await
    }

    /// The account's id if it exists and was committed by another transaction than `tx`.
    ///
    /// SQLite: read on a reader connection, which sees committed rows only (a write
    /// transaction of the group commit may hold rows of other units not yet committed).
    /// PostgreSQL: read inside `tx`, since the reader pool is the writer pool and waiting
    /// for a second connection while holding one can exhaust it; a row version this
    /// transaction wrote (`xmin` is its id) is not reported as committed.
    async fn committed_account_id(
        &self,
        tx: &mut Tx,
        (merchant_id, kind, owner, currency): &AccountKey,
    ) -> Result<Option<AccountId>, StoreError> {
        if self.backend() == crate::Backend::Sqlite {
            return self
                .find_account_id(merchant_id, *kind, owner, *currency)
                .await;
        }
        let found: Option<(AccountId, bool)> = sqlx::query_as(
            "SELECT id, CAST(xmin AS TEXT) = \
             COALESCE(CAST(txid_current_if_assigned() % 4294967296 AS TEXT), '') AS written_here \
             FROM ledger_accounts \
             WHERE merchant_id = $1 AND kind = $2 AND owner = $3 AND currency = $4",
        )
        .bind(merchant_id)
        .bind(kind.as_str())
        .bind(owner)
        .bind(currency.code())
        .fetch_optional(&mut **tx)
        .await?;
        Ok(found.and_then(|(id, written_here)| (!written_here).then_some(id)))
    }

    /// The id of a merchant-wide account (`owner` empty) or a provider's, creating it if needed.
    /// Call it outside any open write transaction (use [`ensure_account`] inside one).
    pub async fn account_id(
        &self,
        merchant_id: &str,
        kind: AccountKind,
        owner: &str,
        currency: Currency,
    ) -> Result<AccountId, StoreError> {
        if let Some(id) = self
            .find_account_id(merchant_id, kind, owner, currency)
            .await?
        {
            return Ok(id);
        }
        let mut tx = self.begin().await?;
        let id = ensure_account(&mut tx, merchant_id, kind, owner, currency).await?;
        tx.commit().await?;
        Ok(id)
    }
}

/// Finds or creates an account inside `tx`.
pub async fn ensure_account(
    tx: &mut Tx,
    merchant_id: &str,
    kind: AccountKind,
    owner: &str,
    currency: Currency,
) -> Result<AccountId, StoreError> {
    sqlx::query(
        "INSERT INTO ledger_accounts (merchant_id, kind, owner, currency, floor, balance_minor) \
         VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (merchant_id, kind, owner, currency) DO NOTHING",
    )
    .bind(merchant_id)
    .bind(kind.as_str())
    .bind(owner)
    .bind(currency.code())
    .bind(kind.floor().as_str())
    .execute(&mut **tx)
    .await?;
    let id = sqlx::query_scalar(
        "SELECT id FROM ledger_accounts \
         WHERE merchant_id = $1 AND kind = $2 AND owner = $3 AND currency = $4",
    )
    .bind(merchant_id)
    .bind(kind.as_str())
    .bind(owner)
    .bind(currency.code())
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}
