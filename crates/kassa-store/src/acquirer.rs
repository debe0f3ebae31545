//! Direct card acquiring's own rows: the ISO 8583 trace numbers (STAN and RRN; one counter
//! per terminal and UTC day, bumped atomically so that no two messages of a terminal share a
//! number that day, across restarts and nodes), and the one card submission per payment.

use sqlx::Row;

use crate::{Store, StoreError, Tx};

impl Store {
    /// The next number (1, 2, …) of `terminal_id` on `day` (`YYYYMMDD`, UTC). One upsert:
    /// concurrent callers, on any node, each get a number of their own.
    pub async fn next_trace_number(&self, terminal_id: &str, day: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO acquirer_trace_numbers (terminal_id, day, last_number) VALUES ($1, $2, 1) \
             ON CONFLICT (terminal_id, day) \
             DO UPDATE SET last_number = acquirer_trace_numbers.last_number + 1 \
             RETURNING last_number",
        )
        .bind(terminal_id)
        .bind(day)
        .fetch_one(self.autocommit())
        .await?;
        Ok(row.try_get("last_number")?)
    }
}

impl Store {
    /// Claims the one card submission of `payment_id`; `false` when it was claimed before.
    pub async fn claim_card_submission(&self, payment_id: &str) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO card_submissions (payment_id, submitted_at_ms) VALUES ($1, $2) \
             ON CONFLICT (payment_id) DO NOTHING",
        )
        .bind(payment_id)
        .bind(crate::now_ms())
        .execute(self.autocommit())
        .await?;
        Ok(inserted.rows_affected() == 1)
    }
}

/// A saved card as the vault stores it: ciphertext, and what may be shown.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultCardRecord {
    /// The token the card is paid with again, e.g. `card_…`.
    pub token: String,
    pub merchant_id: String,
    pub player_id: String,
    /// The master key that wrapped `wrapped_key`.
    pub key_id: String,
    /// The card's data key, sealed under the master key (nonce first).
    pub wrapped_key: Vec<u8>,
    /// The card, sealed under its data key (nonce first).
    pub ciphertext: Vec<u8>,
    pub last4: String,
    pub expiry_yymm: String,
    /// The first six digits (the issuer), for routing.
    pub bin: String,
    pub created_at_ms: i64,
    /// The provider account that last approved this card, which a returning card prefers.
    pub approved_account: Option<String>,
    /// The card's keyed fingerprint (ADR 75); `None` for a card saved before fingerprints
    /// or without a fingerprint key.
    pub fingerprint: Option<String>,
}

impl std::fmt::Debug for VaultCardRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultCardRecord")
            .field("token", &self.token)
            .field("key_id", &self.key_id)
            .field("last4", &self.last4)
            .finish_non_exhaustive()
    }
}

const VAULT_COLUMNS: &str = "token, merchant_id, player_id, key_id, wrapped_key, ciphertext, \
     last4, expiry_yymm, bin, created_at_ms, approved_account, fingerprint";

fn vault_card_of(row: &sqlx::any::AnyRow) -> Result<VaultCardRecord, StoreError> {
    Ok(VaultCardRecord {
        token: row.try_get("token")?,
        merchant_id: row.try_get("merchant_id")?,
        player_id: row.try_get("player_id")?,
        key_id: row.try_get("key_id")?,
        wrapped_key: row.try_get("wrapped_key")?,
        ciphertext: row.try_get("ciphertext")?,
        last4: row.try_get("last4")?,
        expiry_yymm: row.try_get("expiry_yymm")?,
        bin: row.try_get("bin")?,
        created_at_ms: row.try_get("created_at_ms")?,
        approved_account: row.try_get("approved_account")?,
        fingerprint: row.try_get("fingerprint")?,
    })
}

impl Store {
    /// Saves a sealed card.
    pub async fn insert_vault_card(&self, card: &VaultCardRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO vault_cards ({VAULT_COLUMNS}) VALUES ({})",
            self.params(1, 12)
        );
        sqlx::query(&sql)
            .bind(&card.token)
            .bind(&card.merchant_id)
            .bind(&card.player_id)
            .bind(&card.key_id)
            .bind(&card.wrapped_key)
            .bind(&card.ciphertext)
            .bind(&card.last4)
            .bind(&card.expiry_yymm)
            .bind(&card.bin)
            .bind(card.created_at_ms)
            .bind(&card.approved_account)
            .bind(&card.fingerprint)
            .execute(self.autocommit())
            .await?;
        Ok(())
    }

    /// A player's saved cards, newest first.
    pub async fn player_vault_cards(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Vec<VaultCardRecord>, StoreError> {
        let sql = format!(
            "SELECT {VAULT_COLUMNS} FROM vault_cards WHERE merchant_id = $1 AND player_id = $2 \
             ORDER BY created_at_ms DESC, token"
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(player_id)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(vault_card_of).collect()
    }

    /// The provider account that last approved the saved card `token` of this player.
    pub async fn vault_card_approved_account(
        &self,
        merchant_id: &str,
        player_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        let account: Option<Option<String>> = sqlx::query_scalar(
            "SELECT approved_account FROM vault_cards \
             WHERE token = $1 AND merchant_id = $2 AND player_id = $3",
        )
        .bind(token)
        .bind(merchant_id)
        .bind(player_id)
        .fetch_optional(self.reader())
        .await?;
        Ok(account.flatten())
    }

    /// Records that `account` approved the saved card `token`, in the payment's transaction.
    pub async fn set_vault_card_approved_account(
        &self,
        tx: &mut Tx,
        token: &str,
        account: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE vault_cards SET approved_account = $1 WHERE token = $2")
            .bind(account)
            .bind(token)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Up to `limit` cards whose data key is wrapped by another key than `key_id`.
    pub async fn vault_cards_not_under(
        &self,
        key_id: &str,
        limit: u32,
    ) -> Result<Vec<VaultCardRecord>, StoreError> {
        let sql = format!(
            "SELECT {VAULT_COLUMNS} FROM vault_cards WHERE key_id <> $1 ORDER BY token LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(key_id)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(vault_card_of).collect()
    }

    /// Up to `limit` saved cards after `after_token`, in token order: those without a
    /// fingerprint, or every card with `all` (after the fingerprint key changed).
    pub async fn vault_cards_to_fingerprint(
        &self,
        after_token: &str,
        all: bool,
        limit: u32,
    ) -> Result<Vec<VaultCardRecord>, StoreError> {
        let missing_only = if all { "" } else { " AND fingerprint IS NULL" };
        let sql = format!(
            "SELECT {VAULT_COLUMNS} FROM vault_cards WHERE token > $1{missing_only} \
             ORDER BY token LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after_token)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(vault_card_of).collect()
    }

    /// Sets a saved card's fingerprint; `false` when it already had this one.
    pub async fn set_vault_card_fingerprint(
        &self,
        token: &str,
        fingerprint: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE vault_cards SET fingerprint = $1 WHERE token = $2 \
             AND (fingerprint IS NULL OR fingerprint <> $1)",
        )
        .bind(fingerprint)
        .bind(token)
        .execute(self.autocommit())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a card's wrapped data key (a re-wrap under a new master key), if it is still
    /// wrapped by `old_key_id`; the card's ciphertext does not change.
    pub async fn rewrap_vault_card(
        &self,
        token: &str,
        old_key_id: &str,
        new_key_id: &str,
        wrapped_key: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE vault_cards SET key_id = $1, wrapped_key = $2 WHERE token = $3 AND key_id = $4",
        )
        .bind(new_key_id)
        .bind(wrapped_key)
        .bind(token)
        .bind(old_key_id)
        .execute(self.autocommit())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
