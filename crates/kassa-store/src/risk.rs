//! The risk rules' versions per scope, and the stored pre-authorization decisions with their
//! inputs: the velocity counters of later decisions are counted from them, and the backtest
//! replays them under a draft rule set (ADRs 62, 63).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::versions::{version_from_row, VERSION_COLUMNS};
use crate::{now_ms, Conn, Store, StoreError};

/// One stored version of a scope's rule set.
pub use crate::versions::DocumentVersion as RuleSetVersion;

/// One decision as stored, with its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskDecisionRecord {
    pub id: String,
    pub merchant_id: String,
    pub player_id: String,
    /// `deposit` or `payout`.
    pub kind: String,
    /// The payment or payout decided on.
    pub subject_id: String,
    pub jurisdiction: Option<String>,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub amount_minor: i64,
    pub outcome: String,
    pub score: i64,
    /// The features as gathered (JSON object).
    pub features: String,
    /// The decision and its explanation (JSON).
    pub decision: String,
    pub created_at_ms: i64,
}

/// Whom velocity is counted for.
#[derive(Clone, Copy, Debug)]
pub enum VelocitySubject<'a> {
    Player(&'a str),
    Ip(&'a str),
    Device(&'a str),
}

impl VelocitySubject<'_> {
    fn column(&self) -> &'static str {
        match self {
            VelocitySubject::Player(_) => "player_id",
            VelocitySubject::Ip(_) => "ip",
            VelocitySubject::Device(_) => "device",
        }
    }

    fn value(&self) -> &str {
        match self {
            VelocitySubject::Player(v) | VelocitySubject::Ip(v) | VelocitySubject::Device(v) => v,
        }
    }
}

/// A subject's deposit attempts, declines (by risk or by the provider) and amounts per
/// window, in the order of the windows asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Velocity {
    pub attempts: Vec<i64>,
    pub declines: Vec<i64>,
    pub amount_minor: Vec<i64>,
    /// Other players of the merchant seen with the subject since `seen_since_ms`.
    pub other_players: i64,
}

/// A player's deposit history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepositHistory {
    /// Captured deposits (refunded or charged back since included).
    pub approved: i64,
    pub approved_sum_minor: i64,
    pub chargebacks: i64,
    /// When the player was created; `None` for an unknown player.
    pub player_created_at_ms: Option<i64>,
}

const DECISION_COLUMNS: &str = "id, merchant_id, player_id, kind, subject_id, jurisdiction, ip, \
     device, amount_minor, outcome, score, features, decision, created_at_ms";

fn decision_from_row(row: &AnyRow) -> Result<RiskDecisionRecord, StoreError> {
    Ok(RiskDecisionRecord {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        player_id: row.try_get("player_id")?,
        kind: row.try_get("kind")?,
        subject_id: row.try_get("subject_id")?,
        jurisdiction: row.try_get("jurisdiction")?,
        ip: row.try_get("ip")?,
        device: row.try_get("device")?,
        amount_minor: row.try_get("amount_minor")?,
        outcome: row.try_get("outcome")?,
        score: row.try_get("score")?,
        features: row.try_get("features")?,
        decision: row.try_get("decision")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

impl Store {
    /// The newest version of every scope that has one: one small read tells a node whether
    /// any rule set changed.
    pub async fn risk_rule_heads(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, MAX(version) AS version FROM risk_rule_versions GROUP BY scope",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("scope")?, row.try_get("version")?)))
            .collect()
    }

    /// The newest version of `scope`'s rule set, `None` before the first.
    pub async fn latest_risk_rules(
        &self,
        scope: &str,
    ) -> Result<Option<RuleSetVersion>, StoreError> {
        Ok(self.risk_rules_history(scope, None, 1).await?.pop())
    }

    /// Stores `document` as `scope`'s version after `based_on` (`None`: the first).
    /// `Ok(None)`: another writer stored that version first.
    pub async fn insert_risk_rules(
        &self,
        scope: &str,
        based_on: Option<i64>,
        document: &str,
        actor: &str,
        note: Option<&str>,
    ) -> Result<Option<RuleSetVersion>, StoreError> {
        let Some(version) = based_on.unwrap_or(0).checked_add(1) else {
            return Ok(None);
        };
        let stored = RuleSetVersion {
            version,
            document: document.to_string(),
            actor: actor.to_string(),
            note: note.map(str::to_string),
            created_at_ms: now_ms(),
        };
        let sql = format!(
            "INSERT INTO risk_rule_versions (scope, {VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        );
        let inserted = sqlx::query(&sql)
            .bind(scope)
            .bind(stored.version)
            .bind(&stored.document)
            .bind(&stored.actor)
            .bind(&stored.note)
            .bind(stored.created_at_ms)
            .execute(self.autocommit())
            .await;
        match inserted.map_err(StoreError::from) {
            Ok(_) => Ok(Some(stored)),
            Err(error) if crate::is_unique_violation(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `scope`'s versions older than `before` (all when `None`), newest first, at most
    /// `limit`.
    pub async fn risk_rules_history(
        &self,
        scope: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RuleSetVersion>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM risk_rule_versions WHERE scope = $1 AND version < $2 \
             ORDER BY version DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(scope)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Records a decision inside the caller's transaction (the payment's or payout's).
    pub async fn insert_risk_decision(
        &self,
        conn: &mut Conn,
        record: &RiskDecisionRecord,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO risk_decisions ({DECISION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14)"
        );
        sqlx::query(&sql)
            .bind(&record.id)
            .bind(&record.merchant_id)
            .bind(&record.player_id)
            .bind(&record.kind)
            .bind(&record.subject_id)
            .bind(&record.jurisdiction)
            .bind(&record.ip)
            .bind(&record.device)
            .bind(record.amount_minor)
            .bind(&record.outcome)
            .bind(record.score)
            .bind(&record.features)
            .bind(&record.decision)
            .bind(record.created_at_ms)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Records a decision that nothing else is written with (a refused start).
    pub async fn insert_risk_decision_alone(
        &self,
        record: &RiskDecisionRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self.insert_risk_decision(&mut tx, record).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `subject`'s deposit decisions of `merchant_id` counted over windows starting at
    /// `window_starts_ms` (each at least `seen_since_ms`), and the other players seen with
    /// it since `seen_since_ms`. One statement, led by the subject's index.
    pub async fn risk_velocity(
        &self,
        merchant_id: &str,
        player_id: &str,
        subject: VelocitySubject<'_>,
        window_starts_ms: &[i64],
        seen_since_ms: i64,
    ) -> Result<Velocity, StoreError> {
        let declined = "(r.outcome = 'decline' OR p.status IN ('declined', 'failed'))";
        let mut columns = Vec::new();
        for (i, _) in window_starts_ms.iter().enumerate() {
            let since = format!("r.created_at_ms >= ${}", i + 5);
            columns.push(format!(
                "COUNT(CASE WHEN {since} THEN 1 END) AS attempts_{i}"
            ));
            columns.push(format!(
                "COUNT(CASE WHEN {since} AND {declined} THEN 1 END) AS declines_{i}"
            ));
            columns.push(format!(
                "CAST(COALESCE(SUM(CASE WHEN {since} THEN r.amount_minor END), 0) AS BIGINT) \
                 AS amount_{i}"
            ));
        }
        let sql = format!(
            "SELECT {}, COUNT(DISTINCT CASE WHEN r.player_id <> $4 THEN r.player_id END) AS others \
             FROM risk_decisions r LEFT JOIN payments p ON p.id = r.subject_id \
             WHERE r.{} = $1 AND r.merchant_id = $2 AND r.created_at_ms >= $3 \
             AND r.kind = 'deposit'",
            columns.join(", "),
            subject.column(),
        );
        let mut query = sqlx::query(&sql)
            .bind(subject.value())
            .bind(merchant_id)
            .bind(seen_since_ms)
            .bind(player_id);
        for start in window_starts_ms {
            query = query.bind(*start);
        }
        let row = query.fetch_one(self.reader()).await?;
        let mut velocity = Velocity {
            other_players: row.try_get("others")?,
            ..Velocity::default()
        };
        for i in 0..window_starts_ms.len() {
            velocity
                .attempts
                .push(row.try_get(format!("attempts_{i}").as_str())?);
            velocity
                .declines
                .push(row.try_get(format!("declines_{i}").as_str())?);
            velocity
                .amount_minor
                .push(row.try_get(format!("amount_{i}").as_str())?);
        }
        Ok(velocity)
    }

    /// A player's captured deposits, chargebacks and age: one statement.
    pub async fn deposit_history(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<DepositHistory, StoreError> {
        let captured = "status IN ('captured', 'partially_refunded', 'refunded', 'charged_back')";
        let sql = format!(
            "SELECT COUNT(CASE WHEN {captured} THEN 1 END) AS approved, \
             CAST(COALESCE(SUM(CASE WHEN {captured} THEN amount_minor END), 0) AS BIGINT) AS approved_sum, \
             COUNT(CASE WHEN status = 'charged_back' THEN 1 END) AS chargebacks, \
             (SELECT created_at_ms FROM players WHERE merchant_id = $1 AND player_id = $2) \
             AS player_created_at_ms \
             FROM payments WHERE merchant_id = $1 AND player_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(player_id)
            .fetch_one(self.reader())
            .await?;
        Ok(DepositHistory {
            approved: row.try_get("approved")?,
            approved_sum_minor: row.try_get("approved_sum")?,
            chargebacks: row.try_get("chargebacks")?,
            player_created_at_ms: row.try_get("player_created_at_ms")?,
        })
    }

    /// Decisions since `since_ms`, oldest first, at most `limit`; only `merchant_id`'s and
    /// `jurisdiction`'s when given.
    pub async fn risk_decisions_since(
        &self,
        since_ms: i64,
        merchant_id: Option<&str>,
        jurisdiction: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RiskDecisionRecord>, StoreError> {
        let sql = format!(
            "SELECT {DECISION_COLUMNS} FROM risk_decisions WHERE created_at_ms >= $1 \
             AND ($2 = '' OR merchant_id = $2) AND ($3 = '' OR jurisdiction = $3) \
             ORDER BY created_at_ms, id LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .bind(merchant_id.unwrap_or(""))
            .bind(jurisdiction.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(decision_from_row).collect()
    }
}
