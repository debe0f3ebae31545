//! Post-authorization monitoring: after a capture, a refund, a chargeback or a payout
//! request, an `aml.monitor` job (queued in the event's own transaction, so a deposit's
//! latency does not grow) gathers the player's facts and runs the scenarios; each alert found
//! is stored once per pattern and joins the player's open case.

use kassa_core::aml::settings::HOUR_MS;
use kassa_core::aml::{detect, Alert, AmlThresholds, Direction, Facts, Movement, Scenario};
use kassa_core::ids::{MerchantId, PlayerId};
use kassa_store::aml::{AlertRecord, MovementRow, RaisedAlert};
use kassa_store::directory::PlayerRecord;
use kassa_store::jobs::NewJob;
use kassa_store::{now_ms, Conn, Store, StoreError};
use serde::{Deserialize, Serialize};

use super::AmlService;

/// One run of the scenarios for a player after an event. A payout request's run is its own
/// (dedupe key: the payout, whose instrument the run checks); the other events of a player
/// coalesce into one job (ADR 72): every run reads the player's movements as of its start,
/// and an event during a run makes the job run again, so a peak queues at most one job per
/// player instead of one per capture.
pub const AML_MONITOR: &str = "aml.monitor";
/// Attempts of a monitoring job: it only fails when the database does.
const MONITOR_ATTEMPTS_MAX: i64 = 20;

/// The events after which the scenarios run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MonitoredEvent {
    #[serde(rename = "payment.captured")]
    Captured,
    #[serde(rename = "payment.refunded")]
    Refunded,
    #[serde(rename = "payment.charged_back")]
    ChargedBack,
    #[serde(rename = "payout.requested")]
    PayoutRequested,
}

impl MonitoredEvent {
    fn as_str(self) -> &'static str {
        match self {
            MonitoredEvent::Captured => "payment.captured",
            MonitoredEvent::Refunded => "payment.refunded",
            MonitoredEvent::ChargedBack => "payment.charged_back",
            MonitoredEvent::PayoutRequested => "payout.requested",
        }
    }
}

/// Input of an [`AML_MONITOR`] job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MonitorPayload {
    pub event: MonitoredEvent,
    pub merchant_id: String,
    pub player_id: String,
    /// The payment or payout the event is about.
    pub subject_id: String,
}

/// Queues the scenarios' run after `event` on `conn`, inside the event's transaction. A
/// player's coalescing run is due `coalesce_ms` after the event that queued it, and the
/// events until then join it (ADR 87); a payout request's own run is due at once.
pub async fn queue_monitoring(
    store: &Store,
    conn: &mut Conn,
    event: MonitoredEvent,
    (merchant_id, player_id): (&MerchantId, &PlayerId),
    subject_id: &str,
    coalesce_ms: u64,
) -> Result<(), StoreError> {
    let payload = MonitorPayload {
        event,
        merchant_id: merchant_id.to_string(),
        player_id: player_id.to_string(),
        subject_id: subject_id.to_string(),
    };
    let payload = serde_json::to_string(&payload).expect("a payload serializes");
    let (dedupe_key, delay_ms) = match event {
        MonitoredEvent::PayoutRequested => (format!("{}:{subject_id}", event.as_str()), 0),
        _ => (
            format!("player:{merchant_id}:{player_id}"),
            i64::try_from(coalesce_ms).unwrap_or(i64::MAX),
        ),
    };
    let job = NewJob {
        kind: AML_MONITOR,
        payload: &payload,
        dedupe_key: Some(&dedupe_key),
        run_at_ms: now_ms().saturating_add(delay_ms),
        attempts_max: MONITOR_ATTEMPTS_MAX,
        repeat_every_ms: None,
    };
    match event {
        MonitoredEvent::PayoutRequested => store.enqueue_job_on(conn, &job).await?,
        _ => store.enqueue_coalescing_job_on(conn, &job).await?,
    };
    Ok(())
}

fn movement_of(row: &MovementRow) -> Movement {
    Movement {
        id: row.id.clone(),
        direction: match row.direction {
            "deposit" => Direction::Deposit,
            _ => Direction::Withdrawal,
        },
        amount_minor: row.amount_minor,
        at_ms: row.at_ms,
        account: row.provider.clone(),
        instrument: row.instrument.clone(),
    }
}

impl AmlService {
    /// Runs the scenarios for the payload's player; returns the alerts newly raised. Safe to
    /// run twice: a pattern already stored raises nothing.
    pub async fn monitor(&self, payload: &MonitorPayload) -> Result<Vec<RaisedAlert>, StoreError> {
        let (Ok(merchant_id), Ok(player_id)) = (
            MerchantId::parse(&payload.merchant_id),
            PlayerId::parse(&payload.player_id),
        ) else {
            return Ok(Vec::new());
        };
        let Some(player) = self.store.get_player(&merchant_id, &player_id).await? else {
            return Ok(Vec::new());
        };
        let thresholds = self
            .settings
            .for_jurisdiction(player.jurisdiction.as_deref());
        let facts = self.facts(payload, &thresholds, &player).await?;
        let found_after = format!("{}:{}", payload.event.as_str(), payload.subject_id);
        let mut raised = Vec::new();
        for alert in detect(&thresholds, &facts) {
            let record = self.alert_record(payload, &facts.currency, &found_after, &alert);
            if let Some(new) = self.store.raise_aml_alert(&record).await? {
                crate::metrics::record_aml_alert(alert.scenario.as_str(), new.case_opened);
                tracing::info!(alert_id = %new.alert.id, case_id = %new.alert.case_id,
                    scenario = %alert.scenario, "AML alert raised");
                raised.push(new);
            }
        }
        Ok(raised)
    }

    /// The player's facts as of now.
    async fn facts(
        &self,
        payload: &MonitorPayload,
        thresholds: &AmlThresholds,
        player: &PlayerRecord,
    ) -> Result<Facts, StoreError> {
        let (merchant, player_id) = (payload.merchant_id.as_str(), payload.player_id.as_str());
        let now = now_ms();
        let rows = self
            .store
            .aml_movements_since(merchant, player_id, now - thresholds.lookback_ms())
            .await?;
        let movements: Vec<Movement> = rows.iter().map(movement_of).collect();
        let withdrawal = match payload.event {
            MonitoredEvent::PayoutRequested => movements
                .iter()
                .find(|m| m.id == payload.subject_id)
                .cloned(),
            _ => None,
        };
        let wagered_before_withdrawal_minor = match &withdrawal {
            Some(w) => {
                let since_ms = w.at_ms - i64::from(thresholds.rapid_window_hours) * HOUR_MS;
                self.store
                    .player_turnover_between(
                        &player.merchant_id,
                        &player.player_id,
                        since_ms,
                        w.at_ms,
                    )
                    .await?
            }
            None => 0,
        };
        let earlier = self
            .store
            .aml_alert_windows(merchant, player_id)
            .await?
            .into_iter()
            .filter_map(|(scenario, end_ms)| Scenario::parse(&scenario).map(|s| (s, end_ms)))
            .collect();
        Ok(Facts {
            currency: player.currency.code().to_string(),
            now_ms: now,
            movements,
            withdrawal,
            wagered_before_withdrawal_minor,
            deposit_accounts: self.store.aml_deposit_accounts(merchant, player_id).await?,
            deposit_instruments: self
                .store
                .aml_deposit_instruments(merchant, player_id)
                .await?,
            instrument_players: self
                .store
                .aml_instrument_players(merchant, player_id)
                .await?
                .into_iter()
                .map(|(instrument, players)| {
                    (instrument, u32::try_from(players).unwrap_or(u32::MAX))
                })
                .collect(),
            earlier,
        })
    }

    fn alert_record(
        &self,
        payload: &MonitorPayload,
        currency: &str,
        found_after: &str,
        alert: &Alert,
    ) -> AlertRecord {
        AlertRecord {
            id: kassa_core::ids::generate("alr"),
            merchant_id: payload.merchant_id.clone(),
            player_id: payload.player_id.clone(),
            scenario: alert.scenario.as_str().to_string(),
            dedupe_key: alert.key.clone(),
            case_id: String::new(),
            window_start_ms: alert.window_start_ms,
            window_end_ms: alert.window_end_ms,
            amount_minor: alert.amount_minor,
            currency: currency.to_string(),
            transactions: serde_json::to_string(&alert.transactions).unwrap_or_default(),
            figures: serde_json::to_string(&alert.figures).unwrap_or_default(),
            found_after: found_after.to_string(),
            created_at_ms: now_ms(),
        }
    }
}
