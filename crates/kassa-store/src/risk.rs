//! The risk rules' versions per scope, and the stored pre-authorization decisions with their
//! inputs: the velocity counters of later decisions are counted from them, and the backtest
//! replays them under a draft rule set (ADRs 62, 63).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::payments::CAPTURED_FAMILY;
use crate::versions::{version_from_row, VERSION_COLUMNS};
use crate::{now_ms, Backend, Conn, GroupedTx, Store, StoreError};

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
    /// The card's keyed fingerprint, where the card was known (ADR 75).
    pub card_fingerprint: Option<String>,
    /// The player's email key, where the player has an email.
    pub email_key: Option<String>,
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
    /// A card's keyed fingerprint: counted over the cards submitted on the card page.
    Card(&'a str),
    /// A player's email key: counted over the deposits of every player with it.
    Email(&'a str),
}

impl VelocitySubject<'_> {
    fn column(&self) -> &'static str {
        match self {
            VelocitySubject::Player(_) => "player_id",
            VelocitySubject::Ip(_) => "ip",
            VelocitySubject::Device(_) => "device",
            VelocitySubject::Card(_) => "card_fingerprint",
            VelocitySubject::Email(_) => "email_key",
        }
    }

    fn value(&self) -> &str {
        match self {
            VelocitySubject::Player(v)
            | VelocitySubject::Ip(v)
            | VelocitySubject::Device(v)
            | VelocitySubject::Card(v)
            | VelocitySubject::Email(v) => v,
        }
    }

    /// The decisions counted: a card's are those made when it was submitted (`card`), the
    /// others' those made when a deposit started.
    fn counted_kind(&self) -> &'static str {
        match self {
            VelocitySubject::Card(_) => "card",
            _ => "deposit",
        }
    }

    /// Whether the other players seen with this subject are counted: an IP's, a device's
    /// and a card's are a feature, kept in `risk_subject_players` by a trigger (ADR 94); a
    /// player's own are not, and an email key's are counted from the players table
    /// (`email_players`).
    fn counts_other_players(&self) -> bool {
        matches!(
            self,
            VelocitySubject::Ip(_) | VelocitySubject::Device(_) | VelocitySubject::Card(_)
        )
    }

    /// The lock key of this subject of `merchant_id` (see [`Store::lock_risk_subjects`]).
    pub fn lock_key(&self, merchant_id: &str) -> i32 {
        // FNV-1a: stable across nodes and releases, unlike std's hasher. A collision only
        // makes two subjects wait for each other.
        let mut hash: u32 = 0x811c_9dc5;
        for part in [self.column(), merchant_id, self.value()] {
            for byte in part.bytes().chain([0xff]) {
                hash ^= u32::from(byte);
                hash = hash.wrapping_mul(0x0100_0193);
            }
        }
        i32::from_ne_bytes(hash.to_ne_bytes())
    }
}

/// What a velocity count is for: the merchant, the player (whose own decisions are not
/// "other players"), the subject decided on (whose own earlier decision, a retry's, is not
/// counted) and the windows' starts.
#[derive(Clone, Copy, Debug)]
pub struct VelocityAsk<'a> {
    pub merchant_id: &'a str,
    pub player_id: &'a str,
    pub subject_id: &'a str,
    pub window_starts_ms: &'a [i64],
}

/// The lock class of the risk subjects' advisory locks on PostgreSQL ("KR").
const RISK_LOCK_CLASS: i32 = 0x4b52;

/// Lock keys in the order they are taken: ascending, each once.
pub(crate) fn lock_order(keys: &[i32]) -> Vec<i32> {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// How [`lock_statement`] passes the keys.
pub(crate) enum LockKeys {
    /// As parameters `$1`, `$2`, … in the order given.
    Bound,
    /// Written into the statement (integers), for a simple query without parameters.
    Inline,
}

/// One PostgreSQL statement taking the advisory locks of `keys` (in [`lock_order`], at least
/// one) for the rest of the transaction. The arguments of `||` are evaluated left to right,
/// so the locks are taken in order; each `void` is cast to text, which every driver reads.
pub(crate) fn lock_statement(keys: &[i32], passed: LockKeys) -> String {
    let locks: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let key = match passed {
                LockKeys::Bound => format!("${}", i + 1),
                LockKeys::Inline => key.to_string(),
            };
            format!("CAST(pg_advisory_xact_lock({RISK_LOCK_CLASS}, {key}) AS TEXT)")
        })
        .collect();
    format!("SELECT {} AS locked", locks.join(" || "))
}

/// A subject's deposit attempts, declines (by risk or by the provider) and amounts per
/// window, in the order of the windows asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Velocity {
    pub attempts: Vec<i64>,
    pub declines: Vec<i64>,
    pub amount_minor: Vec<i64>,
    /// Other players of the merchant seen with the subject since `seen_since_ms`: counted
    /// for an IP, a device and a card, 0 for a player and an email key.
    pub other_players: i64,
}

/// What a decision reads of a player's past ([`Store::player_history`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlayerHistory {
    /// Captured deposits (refunded or charged back since included).
    pub approved: i64,
    pub approved_sum_minor: i64,
    pub chargebacks: i64,
    /// When the player was created; `None` for an unknown player.
    pub player_created_at_ms: Option<i64>,
    /// The issuing countries (distinct, sorted) of the cards that paid the player's
    /// captured deposits made since the `card_countries_since_ms` asked for (ADR 84).
    pub card_countries: Vec<String>,
    /// The scenarios (sorted) of the alerts in the player's open AML case; `None` without
    /// an open case, empty for a case opened by hand.
    pub open_case_scenarios: Option<Vec<String>>,
    /// How many of the merchant's other players have the email key asked about; `None`
    /// when none was asked about.
    pub email_players: Option<i64>,
}

const DECISION_COLUMNS: &str = "id, merchant_id, player_id, kind, subject_id, jurisdiction, ip, \
     device, amount_minor, outcome, score, features, decision, created_at_ms, card_fingerprint, \
     email_key";

fn velocity_of(row: &AnyRow, windows: usize) -> Result<Velocity, StoreError> {
    let mut velocity = Velocity {
        other_players: row.try_get("others")?,
        ..Velocity::default()
    };
    for i in 0..windows {
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
        card_fingerprint: row.try_get("card_fingerprint")?,
        email_key: row.try_get("email_key")?,
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
        insert_decision(conn, record, "").await
    }

    /// Records a decision inside the caller's transaction in place of an earlier one of the
    /// same subject and kind (a retry of the same payment, a card submitted again), so an
    /// attempt counts once. One statement on PostgreSQL (a deleting CTE), two on SQLite.
    pub async fn replace_risk_decision(
        &self,
        conn: &mut Conn,
        record: &RiskDecisionRecord,
    ) -> Result<(), StoreError> {
        // $4 and $5 are the new row's kind and subject.
        let earlier = "DELETE FROM risk_decisions WHERE subject_id = $5 AND kind = $4";
        if self.backend() == Backend::Postgres {
            return insert_decision(conn, record, &format!("WITH replaced AS ({earlier}) ")).await;
        }
        sqlx::query("DELETE FROM risk_decisions WHERE subject_id = $1 AND kind = $2")
            .bind(&record.subject_id)
            .bind(&record.kind)
            .execute(&mut *conn)
            .await?;
        insert_decision(conn, record, "").await
    }

    /// The decision of `kind` stored for `subject_id` (a deposit's, found by the card page).
    pub async fn risk_decision_of(
        &self,
        subject_id: &str,
        kind: &str,
    ) -> Result<Option<RiskDecisionRecord>, StoreError> {
        let sql = format!(
            "SELECT {DECISION_COLUMNS} FROM risk_decisions WHERE subject_id = $1 AND kind = $2 \
             ORDER BY created_at_ms DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(subject_id)
            .bind(kind)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(decision_from_row).transpose()
    }

    /// Takes, for the rest of the caller's transaction, the lock of each subject key
    /// ([`VelocitySubject::lock_key`]), in ascending order so two decisions never wait for
    /// each other in a circle: a decision counting a subject's velocity and storing its own
    /// attempt runs after every earlier one of the subject has committed. PostgreSQL:
    /// transaction-scoped advisory locks; SQLite: nothing, its write transactions already
    /// run one at a time. Nothing when `tx` took these locks at its begin
    /// ([`Store::begin_risk_decision`]).
    pub async fn lock_risk_subjects(
        &self,
        tx: &mut GroupedTx,
        keys: &[i32],
    ) -> Result<(), StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        let keys = lock_order(keys);
        // Also true of no keys at all.
        let held = keys
            .iter()
            .all(|key| tx.risk_locks_held.binary_search(key).is_ok());
        if held {
            return Ok(());
        }
        let sql = lock_statement(&keys, LockKeys::Bound);
        let mut query = sqlx::query(&sql);
        for key in keys {
            query = query.bind(key);
        }
        query.fetch_one(&mut ***tx).await?;
        Ok(())
    }

    /// Stores a payment's newest risk decision (the card's, made after the start's).
    pub async fn set_payment_risk(
        &self,
        conn: &mut Conn,
        payment_id: &str,
        risk: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE payments SET risk = $1 WHERE id = $2")
            .bind(risk)
            .bind(payment_id)
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

    /// Each subject's decisions counted over the windows of `ask` (each window at least the
    /// subject's `seen_since_ms`), and the other players seen with it since then; in the
    /// order of `subjects`. One statement on `conn` (the caller's transaction, so it sees
    /// what the transaction's locks ordered before it): a `UNION ALL` of one aggregate per
    /// subject, each led by the subject's index and reading no further back than its
    /// earliest window; the other players come from `risk_subject_players` (ADR 94), so a
    /// busy IP's 30 days are not read per decision.
    pub async fn risk_velocity_in(
        &self,
        conn: &mut Conn,
        ask: &VelocityAsk<'_>,
        subjects: &[(VelocitySubject<'_>, i64)],
    ) -> Result<Vec<Velocity>, StoreError> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let windows = ask.window_starts_ms.len();
        let earliest_window_ms = ask.window_starts_ms.iter().copied().min().unwrap_or(0);
        let parts: Vec<String> = subjects
            .iter()
            .enumerate()
            .map(|(n, (subject, _))| {
                // This part's parameters: the subject, where its scan starts, and since when
                // other players count.
                let first = FIRST_WINDOW_PARAMETER + windows + 3 * n;
                velocity_part(n, subject, windows, [first, first + 1, first + 2])
            })
            .collect();
        let sql = parts.join(" UNION ALL ");
        let mut query = sqlx::query(&sql)
            .bind(ask.merchant_id)
            .bind(ask.player_id)
            .bind(ask.subject_id);
        for start in ask.window_starts_ms {
            query = query.bind(*start);
        }
        for (subject, seen_since_ms) in subjects {
            // Rows before the earliest window are in no count.
            let scan_since_ms = (*seen_since_ms).max(earliest_window_ms);
            query = query
                .bind(subject.value())
                .bind(scan_since_ms)
                .bind(*seen_since_ms);
        }
        let rows = query.fetch_all(&mut *conn).await?;
        let mut counted = vec![Velocity::default(); subjects.len()];
        for row in &rows {
            let n: i64 = row.try_get("subject")?;
            let velocity = usize::try_from(n)
                .ok()
                .and_then(|n| counted.get_mut(n))
                .ok_or_else(|| StoreError::Corrupt(format!("velocity row {n}")))?;
            *velocity = velocity_of(row, windows)?;
        }
        Ok(counted)
    }

    /// What a decision reads of a player's past, in one statement so that it costs one
    /// round trip: their captured deposits, chargebacks and age, the countries of the cards
    /// that paid the captured deposits since `card_countries_since_ms` (a card the issuer
    /// refused is recorded on its payment but paid nothing, so it is not counted), their
    /// open AML case's scenarios, and how many other players share `email_key`.
    pub async fn player_history(
        &self,
        merchant_id: &str,
        player_id: &str,
        card_countries_since_ms: i64,
        email_key: Option<&str>,
    ) -> Result<PlayerHistory, StoreError> {
        let recent_card =
            format!("CASE WHEN {CAPTURED_FAMILY} AND created_at_ms >= $3 THEN card_country END");
        // Both ignore NULLs; the order is not promised, so the lists are sorted below.
        let list = |expression: &str| match self.backend {
            Backend::Sqlite => format!("group_concat({expression})"),
            Backend::Postgres => format!("string_agg({expression}, ',')"),
        };
        let (card_countries, scenarios) =
            (list(&format!("DISTINCT {recent_card}")), list("a.scenario"));
        let open_case = "FROM aml_cases c WHERE c.merchant_id = $1 AND c.player_id = $2 \
             AND c.status <> 'closed'";
        let sql = format!(
            "SELECT COUNT(CASE WHEN {CAPTURED_FAMILY} THEN 1 END) AS approved, \
             CAST(COALESCE(SUM(CASE WHEN {CAPTURED_FAMILY} THEN amount_minor END), 0) AS BIGINT) AS approved_sum, \
             COUNT(CASE WHEN status = 'charged_back' THEN 1 END) AS chargebacks, \
             {card_countries} AS card_countries, \
             (SELECT created_at_ms FROM players WHERE merchant_id = $1 AND player_id = $2) \
             AS player_created_at_ms, \
             (SELECT COUNT(*) {open_case}) AS open_cases, \
             (SELECT {scenarios} FROM aml_alerts a WHERE a.case_id IN (SELECT c.id {open_case})) \
             AS open_case_scenarios, \
             (SELECT COUNT(*) FROM players WHERE merchant_id = $1 AND email_key = $4 \
             AND player_id <> $2) AS email_players \
             FROM payments WHERE merchant_id = $1 AND player_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(player_id)
            .bind(card_countries_since_ms)
            .bind(email_key)
            .fetch_one(self.reader())
            .await?;
        let open_cases: i64 = row.try_get("open_cases")?;
        let open_case_scenarios = match open_cases {
            0 => None,
            _ => Some(sorted_list(row.try_get("open_case_scenarios")?)),
        };
        Ok(PlayerHistory {
            approved: row.try_get("approved")?,
            approved_sum_minor: row.try_get("approved_sum")?,
            chargebacks: row.try_get("chargebacks")?,
            player_created_at_ms: row.try_get("player_created_at_ms")?,
            card_countries: sorted_list(row.try_get("card_countries")?),
            open_case_scenarios,
            email_players: email_key
                .map(|_| row.try_get("email_players"))
                .transpose()?,
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

/// The number of the velocity count's first window parameter: `$1` to `$3` are the merchant,
/// the asking player and the subject decided on, then come the windows' starts, then three
/// per subject ([`velocity_part`]).
const FIRST_WINDOW_PARAMETER: usize = 4;

/// The aggregate of subject `n` in [`Store::risk_velocity_in`]: its decisions counted over
/// the `windows` (parameters from [`FIRST_WINDOW_PARAMETER`] on), and its other players;
/// `parameters` are the numbers of the subject's value, its scan's start and the other
/// players' since.
fn velocity_part(
    n: usize,
    subject: &VelocitySubject<'_>,
    windows: usize,
    parameters: [usize; 3],
) -> String {
    let [value, scan_since, seen_since] = parameters;
    // A refused attempt, or one whose payment the provider declined or that failed.
    let declined = "(r.outcome = 'decline' OR r.subject_failed = 1)";
    let mut columns = Vec::new();
    for i in 0..windows {
        let since = format!("r.created_at_ms >= ${}", FIRST_WINDOW_PARAMETER + i);
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
    let columns = columns.join(", ");
    let column = subject.column();
    let others = match subject.counts_other_players() {
        true => format!(
            "(SELECT COUNT(*) FROM risk_subject_players p WHERE p.merchant_id = $1 \
             AND p.subject = '{column}' AND p.value = ${value} AND p.player_id <> $2 \
             AND p.last_seen_ms >= ${seen_since})"
        ),
        false => "CAST(0 AS BIGINT)".to_string(),
    };
    format!(
        "SELECT CAST({n} AS BIGINT) AS subject, {columns}, {others} AS others \
         FROM risk_decisions r \
         WHERE r.{column} = ${value} AND r.merchant_id = $1 AND r.created_at_ms >= ${scan_since} \
         AND r.kind = '{}' AND r.subject_id <> $3",
        subject.counted_kind(),
    )
}

/// Inserts `record`, the statement led by `prefix` (a CTE that may use the row's values).
async fn insert_decision(
    conn: &mut Conn,
    record: &RiskDecisionRecord,
    prefix: &str,
) -> Result<(), StoreError> {
    // A decision stored after its payment failed (a card submitted again) starts counted as
    // failed; the payments trigger keeps it so from then on (ADR 88).
    let sql = format!(
        "{prefix}INSERT INTO risk_decisions ({DECISION_COLUMNS}, subject_failed) VALUES ($1, \
         $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, (SELECT COUNT(*) \
         FROM payments WHERE id = $5 AND status IN ('declined', 'failed')))"
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
        .bind(&record.card_fingerprint)
        .bind(&record.email_key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A comma-separated list as an aggregate returns it (`NULL` when empty), sorted.
fn sorted_list(listed: Option<String>) -> Vec<String> {
    let mut items: Vec<String> = listed
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::to_string)
        .collect();
    items.sort();
    items
}
