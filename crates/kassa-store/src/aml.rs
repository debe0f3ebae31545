//! AML alerts, the cases they join and the cases' audit trail (ADR 70), and the reads the
//! scenarios' facts are gathered from: a player's captured deposits and requested payouts,
//! the accounts and cards they deposited with, and how many players share an instrument.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::payments::CAPTURED_FAMILY;
use crate::{now_ms, placeholders, Store, StoreError, Tx};

/// An alert as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: String,
    pub merchant_id: String,
    pub player_id: String,
    pub scenario: String,
    /// One alert per player and key (scenario and window, or scenario and payout).
    pub dedupe_key: String,
    /// The case it joined (filled in when it is raised).
    pub case_id: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub amount_minor: i64,
    pub currency: String,
    /// JSON array of payment and payout ids.
    pub transactions: String,
    /// JSON object of the figures compared.
    pub figures: String,
    /// The event whose monitoring found it.
    pub found_after: String,
    pub created_at_ms: i64,
}

/// A case as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseRecord {
    pub id: String,
    pub merchant_id: String,
    pub player_id: String,
    pub status: String,
    pub close_reason: Option<String>,
    pub assignee: Option<String>,
    pub opened_at_ms: i64,
    pub updated_at_ms: i64,
    pub closed_at_ms: Option<i64>,
}

/// One entry of a case's audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseEvent {
    pub id: i64,
    pub case_id: String,
    /// `opened`, `alert`, `assigned`, `note`, `transition`, `exported`.
    pub event: String,
    pub actor: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub detail: Option<String>,
    pub created_at_ms: i64,
}

/// What an entry of the audit trail records; `from`/`to` for moves.
#[derive(Clone, Copy, Debug)]
pub struct NewCaseEvent<'a> {
    pub event: &'a str,
    pub actor: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// A new alert and whether it opened its case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaisedAlert {
    pub alert: AlertRecord,
    pub case_opened: bool,
}

/// A deposit or payout as the scenarios and the export read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovementRow {
    pub id: String,
    /// `deposit` or `withdrawal`.
    pub direction: &'static str,
    pub provider: String,
    pub provider_reference: Option<String>,
    /// A payout's destination; deposits carry none.
    pub instrument: Option<String>,
    pub method: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Captured (deposit) or requested (payout).
    pub at_ms: i64,
}

/// What a staff action changes on a case besides its audit trail.
#[derive(Clone, Copy, Debug)]
pub enum CaseChange<'a> {
    /// Its status, from `event.from` to `event.to`, with the reason when it closes.
    Move { close_reason: Option<&'a str> },
    /// Its assignee (`event.detail`), unless it is closed.
    Assign,
    /// Nothing but the entry (a note, an export).
    Entry,
}

/// Which cases or alerts to list.
#[derive(Clone, Debug, Default)]
pub struct AmlFilter<'a> {
    pub merchant_id: Option<&'a str>,
    pub player_id: Option<&'a str>,
    /// A case status, or an alert scenario.
    pub kind: Option<&'a str>,
    /// Alerts only: of this case.
    pub case_id: Option<&'a str>,
    /// Keyset: strictly older than this (time, id).
    pub before: Option<(i64, String)>,
}

const ALERT_COLUMNS: &str = "id, merchant_id, player_id, scenario, dedupe_key, case_id, \
     window_start_ms, window_end_ms, amount_minor, currency, transactions, figures, found_after, \
     created_at_ms";
const CASE_COLUMNS: &str = "id, merchant_id, player_id, status, close_reason, assignee, \
     opened_at_ms, updated_at_ms, closed_at_ms";
/// A deposit's instrument is the card submitted on Kassa's card page, by its fingerprint
/// (ADR 75); a payout's is its destination, a saved card's by its fingerprint where it
/// has one, so the same card under two tokens is one instrument.
const DEPOSIT_SELECT: &str = "SELECT p.id, p.provider, p.provider_reference, p.method, \
     p.amount_minor, p.currency, COALESCE((SELECT MIN(e.created_at_ms) FROM payment_events e \
     WHERE e.payment_id = p.id AND e.to_status = 'captured'), p.updated_at_ms) AS at_ms, \
     (SELECT MAX('card:' || r.card_fingerprint) FROM risk_decisions r WHERE r.subject_id = p.id \
     AND r.kind = 'card') AS instrument FROM payments p";
const PAYOUT_SELECT: &str = "SELECT id, provider, provider_reference, method, amount_minor, \
     currency, created_at_ms, COALESCE((SELECT MAX('card:' || v.fingerprint) FROM vault_cards v \
     WHERE v.token = payouts.destination), destination) AS instrument FROM payouts";

fn alert_from_row(row: &AnyRow) -> Result<AlertRecord, StoreError> {
    Ok(AlertRecord {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        player_id: row.try_get("player_id")?,
        scenario: row.try_get("scenario")?,
        dedupe_key: row.try_get("dedupe_key")?,
        case_id: row.try_get("case_id")?,
        window_start_ms: row.try_get("window_start_ms")?,
        window_end_ms: row.try_get("window_end_ms")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        transactions: row.try_get("transactions")?,
        figures: row.try_get("figures")?,
        found_after: row.try_get("found_after")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

fn case_from_row(row: &AnyRow) -> Result<CaseRecord, StoreError> {
    Ok(CaseRecord {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        player_id: row.try_get("player_id")?,
        status: row.try_get("status")?,
        close_reason: row.try_get("close_reason")?,
        assignee: row.try_get("assignee")?,
        opened_at_ms: row.try_get("opened_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        closed_at_ms: row.try_get("closed_at_ms")?,
    })
}

fn deposit_from_row(row: &AnyRow) -> Result<MovementRow, StoreError> {
    Ok(MovementRow {
        id: row.try_get("id")?,
        direction: "deposit",
        provider: row.try_get("provider")?,
        provider_reference: row.try_get("provider_reference")?,
        instrument: row.try_get("instrument")?,
        method: row.try_get("method")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        at_ms: row.try_get("at_ms")?,
    })
}

fn payout_from_row(row: &AnyRow) -> Result<MovementRow, StoreError> {
    let provider: Option<String> = row.try_get("provider")?;
    Ok(MovementRow {
        id: row.try_get("id")?,
        direction: "withdrawal",
        provider: provider.unwrap_or_default(),
        provider_reference: row.try_get("provider_reference")?,
        instrument: row.try_get("instrument")?,
        method: row.try_get("method")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        at_ms: row.try_get("created_at_ms")?,
    })
}

/// The card fingerprints of player `$2` of merchant `$1`: saved, or submitted on the card
/// page.
pub(crate) fn player_fingerprints() -> &'static str {
    "SELECT fingerprint AS fp FROM vault_cards WHERE merchant_id = $1 AND player_id = $2 \
     AND fingerprint IS NOT NULL UNION SELECT card_fingerprint AS fp FROM risk_decisions \
     WHERE merchant_id = $1 AND player_id = $2 AND card_fingerprint IS NOT NULL"
}

/// Every use of a fingerprinted card by a player of merchant `$1` (`fp`, `player_id`): its
/// saving, its submissions on the card page. Filtered by `fp` outside, which both backends
/// push into the branches and their fingerprint indexes.
pub(crate) fn card_uses() -> &'static str {
    "SELECT fingerprint AS fp, player_id FROM vault_cards WHERE merchant_id = $1 \
     AND fingerprint IS NOT NULL UNION ALL SELECT card_fingerprint AS fp, player_id \
     FROM risk_decisions WHERE merchant_id = $1 AND card_fingerprint IS NOT NULL"
}

impl Store {
    /// The player's deposits captured and payouts requested (not cancelled or rejected)
    /// since `since_ms`.
    pub async fn aml_movements_since(
        &self,
        merchant_id: &str,
        player_id: &str,
        since_ms: i64,
    ) -> Result<Vec<MovementRow>, StoreError> {
        // A captured payment was last changed at or after its capture.
        let deposits = format!(
            "{DEPOSIT_SELECT} WHERE p.merchant_id = $1 AND p.player_id = $2 AND p.{CAPTURED_FAMILY} \
             AND p.updated_at_ms > $3"
        );
        let rows = sqlx::query(&deposits)
            .bind(merchant_id)
            .bind(player_id)
            .bind(since_ms)
            .fetch_all(self.reader())
            .await?;
        let mut movements = rows
            .iter()
            .map(deposit_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        movements.retain(|m| m.at_ms > since_ms);
        let payouts = format!(
            "{PAYOUT_SELECT} WHERE merchant_id = $1 AND player_id = $2 AND created_at_ms > $3 \
             AND status NOT IN ('cancelled', 'rejected')"
        );
        let rows = sqlx::query(&payouts)
            .bind(merchant_id)
            .bind(player_id)
            .bind(since_ms)
            .fetch_all(self.reader())
            .await?;
        for row in &rows {
            movements.push(payout_from_row(row)?);
        }
        Ok(movements)
    }

    /// The deposits and payouts with these ids, whoever's (a case's transactions).
    pub async fn aml_movements_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<MovementRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = placeholders(1, ids.len());
        let deposits = format!("{DEPOSIT_SELECT} WHERE p.id IN ({list})");
        let payouts = format!("{PAYOUT_SELECT} WHERE id IN ({list})");
        let mut movements = Vec::new();
        for (sql, from_row) in [
            (deposits, deposit_from_row as fn(&AnyRow) -> _),
            (payouts, payout_from_row),
        ] {
            let mut query = sqlx::query(&sql);
            for id in ids {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.reader()).await? {
                movements.push(from_row(&row)?);
            }
        }
        Ok(movements)
    }

    /// The provider accounts the player's captured deposits went through, ever.
    pub async fn aml_deposit_accounts(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT provider FROM payments WHERE merchant_id = $1 AND player_id = $2 \
             AND {CAPTURED_FAMILY}"
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(merchant_id)
            .bind(player_id)
            .fetch_all(self.reader())
            .await?)
    }

    /// The instruments the player deposited with: saved cards (by fingerprint, or by token
    /// for a card saved without one) and the cards of their captured card-page deposits.
    pub async fn aml_deposit_instruments(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT COALESCE('card:' || fingerprint, token) AS instrument FROM vault_cards \
             WHERE merchant_id = $1 AND player_id = $2 \
             UNION SELECT 'card:' || r.card_fingerprint AS instrument FROM risk_decisions r \
             JOIN payments p ON p.id = r.subject_id WHERE r.merchant_id = $1 \
             AND r.player_id = $2 AND r.kind = 'card' AND r.card_fingerprint IS NOT NULL \
             AND p.{CAPTURED_FAMILY}"
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(merchant_id)
            .bind(player_id)
            .fetch_all(self.reader())
            .await?)
    }

    /// The player's instruments with how many of the merchant's players use each: payout
    /// destinations as given; cards by fingerprint, over the saved cards and the cards
    /// submitted on the card page (ADR 75); saved cards without a fingerprint by BIN,
    /// last four digits and expiry.
    pub async fn aml_instrument_players(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let destinations = sqlx::query(
            "SELECT destination AS instrument, COUNT(DISTINCT player_id) AS players FROM payouts \
             WHERE merchant_id = $1 AND destination IN (SELECT destination FROM payouts \
             WHERE merchant_id = $1 AND player_id = $2 AND destination IS NOT NULL \
             AND destination NOT LIKE 'card#_%' ESCAPE '#') GROUP BY destination",
        );
        let fingerprinted_sql = format!(
            "SELECT 'card:' || u.fp AS instrument, COUNT(DISTINCT u.player_id) AS players \
             FROM ({}) AS u WHERE u.fp IN ({}) GROUP BY u.fp",
            card_uses(),
            player_fingerprints(),
        );
        let fingerprinted = sqlx::query(&fingerprinted_sql);
        let legacy = sqlx::query(
            "SELECT 'card:' || v.bin || '******' || v.last4 || ':' || v.expiry_yymm AS instrument, \
             COUNT(DISTINCT o.player_id) AS players FROM vault_cards v JOIN vault_cards o \
             ON o.merchant_id = v.merchant_id AND o.bin = v.bin AND o.last4 = v.last4 \
             AND o.expiry_yymm = v.expiry_yymm WHERE v.merchant_id = $1 AND v.player_id = $2 \
             AND v.fingerprint IS NULL GROUP BY v.bin, v.last4, v.expiry_yymm",
        );
        let mut shared = Vec::new();
        for query in [destinations, fingerprinted, legacy] {
            let rows = query
                .bind(merchant_id)
                .bind(player_id)
                .fetch_all(self.reader())
                .await?;
            for row in rows {
                shared.push((row.try_get("instrument")?, row.try_get("players")?));
            }
        }
        Ok(shared)
    }

    /// The merchant's other players linked to `player_id`, and by what (ADR 75): a card
    /// (by fingerprint, saved or submitted, ever), a device or an IP of their risk decisions
    /// since `since_ms`, an email key. One row per player and link, ordered by player, at
    /// most `limit`.
    pub async fn linked_players(
        &self,
        merchant_id: &str,
        player_id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let shared = |column: &str| {
            format!(
                "SELECT o.player_id, '{column}' AS link FROM risk_decisions o \
                 WHERE o.merchant_id = $1 AND o.player_id <> $2 AND o.created_at_ms >= $3 \
                 AND o.{column} IN (SELECT {column} FROM risk_decisions WHERE merchant_id = $1 \
                 AND player_id = $2 AND {column} IS NOT NULL AND created_at_ms >= $3)"
            )
        };
        let sql = format!(
            "SELECT u.player_id, 'card' AS link FROM ({}) AS u WHERE u.fp IN ({}) \
             AND u.player_id <> $2 UNION {} UNION {} UNION SELECT o.player_id, 'email' AS link \
             FROM players o JOIN players me ON me.merchant_id = o.merchant_id \
             AND me.email_key = o.email_key WHERE me.merchant_id = $1 AND me.player_id = $2 \
             AND o.player_id <> $2 ORDER BY 1, 2 LIMIT $4",
            card_uses(),
            player_fingerprints(),
            shared("device"),
            shared("ip"),
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(player_id)
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("player_id")?, row.try_get("link")?)))
            .collect()
    }

    /// The scenarios and window ends of the player's alerts: a pattern inside one is known.
    pub async fn aml_alert_windows(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT scenario, MAX(window_end_ms) AS window_end_ms FROM aml_alerts \
             WHERE player_id = $1 AND merchant_id = $2 GROUP BY scenario",
        )
        .bind(player_id)
        .bind(merchant_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("scenario")?, row.try_get("window_end_ms")?)))
            .collect()
    }

    /// Stores `alert` in the player's open case, opening one if there is none, with the
    /// case's audit entries; `None` when the same pattern was already raised (nothing
    /// stored).
    pub async fn raise_aml_alert(
        &self,
        alert: &AlertRecord,
    ) -> Result<Option<RaisedAlert>, StoreError> {
        let mut tx = self.begin().await?;
        let (case_id, case_opened) = self
            .open_case_of(&mut tx, &alert.merchant_id, &alert.player_id)
            .await?;
        let alert = AlertRecord {
            case_id,
            ..alert.clone()
        };
        let sql = format!(
            "INSERT INTO aml_alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14) ON CONFLICT (merchant_id, player_id, dedupe_key) DO NOTHING \
             RETURNING id"
        );
        let inserted: Option<String> = sqlx::query_scalar(&sql)
            .bind(&alert.id)
            .bind(&alert.merchant_id)
            .bind(&alert.player_id)
            .bind(&alert.scenario)
            .bind(&alert.dedupe_key)
            .bind(&alert.case_id)
            .bind(alert.window_start_ms)
            .bind(alert.window_end_ms)
            .bind(alert.amount_minor)
            .bind(&alert.currency)
            .bind(&alert.transactions)
            .bind(&alert.figures)
            .bind(&alert.found_after)
            .bind(alert.created_at_ms)
            .fetch_optional(&mut *tx)
            .await?;
        if inserted.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        let joined = NewCaseEvent {
            event: "alert",
            actor: "aml",
            from: None,
            to: None,
            detail: Some(&alert.id),
        };
        self.insert_case_event(&mut tx, &alert.case_id, joined)
            .await?;
        tx.commit().await?;
        Ok(Some(RaisedAlert { alert, case_opened }))
    }

    /// The player's case that is not closed, opened now if there is none.
    async fn open_case_of(
        &self,
        tx: &mut Tx,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<(String, bool), StoreError> {
        let find = "SELECT id FROM aml_cases WHERE merchant_id = $1 AND player_id = $2 \
             AND status <> 'closed'";
        let found: Option<String> = sqlx::query_scalar(find)
            .bind(merchant_id)
            .bind(player_id)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(id) = found {
            return Ok((id, false));
        }
        let id = kassa_core::ids::generate("case");
        let now = now_ms();
        let sql = format!(
            "INSERT INTO aml_cases ({CASE_COLUMNS}) VALUES ($1, $2, $3, 'open', NULL, NULL, $4, $4, \
             NULL) ON CONFLICT (merchant_id, player_id) WHERE status <> 'closed' DO NOTHING \
             RETURNING id"
        );
        let inserted: Option<String> = sqlx::query_scalar(&sql)
            .bind(&id)
            .bind(merchant_id)
            .bind(player_id)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await?;
        if inserted.is_none() {
            // Another node opened it first (and committed: the insert waited for it).
            let id: String = sqlx::query_scalar(find)
                .bind(merchant_id)
                .bind(player_id)
                .fetch_one(&mut **tx)
                .await?;
            return Ok((id, false));
        }
        let opened = NewCaseEvent {
            event: "opened",
            actor: "aml",
            from: None,
            to: Some("open"),
            detail: None,
        };
        self.insert_case_event(tx, &id, opened).await?;
        Ok((id, true))
    }

    async fn insert_case_event(
        &self,
        tx: &mut Tx,
        case_id: &str,
        event: NewCaseEvent<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO aml_case_events (case_id, event, actor, from_status, to_status, detail, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(case_id)
        .bind(event.event)
        .bind(event.actor)
        .bind(event.from)
        .bind(event.to)
        .bind(event.detail)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// One case.
    pub async fn aml_case(&self, case_id: &str) -> Result<Option<CaseRecord>, StoreError> {
        let sql = format!("SELECT {CASE_COLUMNS} FROM aml_cases WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(case_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(case_from_row).transpose()
    }

    /// Cases newest first by `filter` (`kind`: a status), at most `limit`.
    pub async fn aml_cases(
        &self,
        filter: &AmlFilter<'_>,
        limit: u32,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        let (before_ms, before_id) = filter.before.clone().unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM aml_cases WHERE ($1 = '' OR status = $1) \
             AND ($2 = '' OR merchant_id = $2) AND ($3 = '' OR player_id = $3) \
             AND (opened_at_ms < $4 OR (opened_at_ms = $4 AND id < $5)) \
             ORDER BY opened_at_ms DESC, id DESC LIMIT $6"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.kind.unwrap_or(""))
            .bind(filter.merchant_id.unwrap_or(""))
            .bind(filter.player_id.unwrap_or(""))
            .bind(before_ms)
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(case_from_row).collect()
    }

    /// Alerts newest first by `filter` (`kind`: a scenario), at most `limit`.
    pub async fn aml_alerts(
        &self,
        filter: &AmlFilter<'_>,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let (before_ms, before_id) = filter.before.clone().unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM aml_alerts WHERE ($1 = '' OR scenario = $1) \
             AND ($2 = '' OR merchant_id = $2) AND ($3 = '' OR player_id = $3) \
             AND ($4 = '' OR case_id = $4) \
             AND (created_at_ms < $5 OR (created_at_ms = $5 AND id < $6)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $7"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.kind.unwrap_or(""))
            .bind(filter.merchant_id.unwrap_or(""))
            .bind(filter.player_id.unwrap_or(""))
            .bind(filter.case_id.unwrap_or(""))
            .bind(before_ms)
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// A case's audit trail, oldest first.
    pub async fn aml_case_events(&self, case_id: &str) -> Result<Vec<CaseEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, case_id, event, actor, from_status, to_status, detail, created_at_ms \
             FROM aml_case_events WHERE case_id = $1 ORDER BY id",
        )
        .bind(case_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CaseEvent {
                    id: row.try_get("id")?,
                    case_id: row.try_get("case_id")?,
                    event: row.try_get("event")?,
                    actor: row.try_get("actor")?,
                    from_status: row.try_get("from_status")?,
                    to_status: row.try_get("to_status")?,
                    detail: row.try_get("detail")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Changes a case with its audit entry, in one transaction; `false` (nothing changed)
    /// when the case is not where the change needs it: no longer at `event.from` for a
    /// move (someone moved it first), closed for an assignment, unknown.
    pub async fn change_aml_case(
        &self,
        case_id: &str,
        change: CaseChange<'_>,
        event: NewCaseEvent<'_>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let query = match change {
            CaseChange::Move { close_reason } => sqlx::query(
                "UPDATE aml_cases SET status = $1, close_reason = $2, closed_at_ms = $3, \
                 updated_at_ms = $4 WHERE id = $5 AND status = $6",
            )
            .bind(event.to)
            .bind(close_reason)
            .bind((event.to == Some("closed")).then_some(now)),
            CaseChange::Assign => sqlx::query(
                "UPDATE aml_cases SET assignee = $1, updated_at_ms = $2 WHERE id = $3 \
                 AND status <> 'closed'",
            )
            .bind(event.detail),
            CaseChange::Entry => {
                sqlx::query("UPDATE aml_cases SET updated_at_ms = $1 WHERE id = $2")
            }
        };
        let mut query = query.bind(now).bind(case_id);
        if let CaseChange::Move { .. } = change {
            query = query.bind(event.from);
        }
        if query.execute(&mut *tx).await?.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        self.insert_case_event(&mut tx, case_id, event).await?;
        tx.commit().await?;
        Ok(true)
    }
}
