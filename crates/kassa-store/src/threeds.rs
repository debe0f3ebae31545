//! The outcome of 3-D Secure for a card-page deposit (ADR 67): what the authentication
//! decided and under which ids, never the authentication value.

use sqlx::Row;

use crate::{Store, StoreError, Tx};

/// One payment's 3-D Secure outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreeDsOutcomeRecord {
    pub payment_id: String,
    /// EMVCo `transStatus` of the final result: `Y`, `A`, `N`, `R` or `U`.
    pub trans_status: String,
    /// With `Y` and `A`.
    pub eci: Option<String>,
    pub three_ds_server_trans_id: String,
    pub acs_trans_id: String,
    pub ds_trans_id: String,
    /// The cardholder was challenged.
    pub challenged: bool,
    pub created_at_ms: i64,
}

impl Store {
    /// Records `outcome` in the payment's transaction.
    pub async fn insert_threeds_outcome(
        &self,
        tx: &mut Tx,
        outcome: &ThreeDsOutcomeRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO threeds_outcomes (payment_id, trans_status, eci, \
             three_ds_server_trans_id, acs_trans_id, ds_trans_id, challenged, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&outcome.payment_id)
        .bind(&outcome.trans_status)
        .bind(&outcome.eci)
        .bind(&outcome.three_ds_server_trans_id)
        .bind(&outcome.acs_trans_id)
        .bind(&outcome.ds_trans_id)
        .bind(i64::from(outcome.challenged))
        .bind(outcome.created_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The 3-D Secure outcome of `payment_id`, if it had one.
    pub async fn threeds_outcome(
        &self,
        payment_id: &str,
    ) -> Result<Option<ThreeDsOutcomeRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT payment_id, trans_status, eci, three_ds_server_trans_id, acs_trans_id, \
             ds_trans_id, challenged, created_at_ms FROM threeds_outcomes WHERE payment_id = $1",
        )
        .bind(payment_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|row| {
            Ok(ThreeDsOutcomeRecord {
                payment_id: row.try_get("payment_id")?,
                trans_status: row.try_get("trans_status")?,
                eci: row.try_get("eci")?,
                three_ds_server_trans_id: row.try_get("three_ds_server_trans_id")?,
                acs_trans_id: row.try_get("acs_trans_id")?,
                ds_trans_id: row.try_get("ds_trans_id")?,
                challenged: row.try_get::<i64, _>("challenged")? != 0,
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .transpose()
    }
}
