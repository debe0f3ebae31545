//! AML as a use case (docs/aml.md, ADR 70): the monitoring job that runs the scenarios of
//! `kassa_core::aml` after money moved ([`monitor`]), the cases the alerts join with their
//! workflow, assignment, notes and audit trail, and the goAML export ([`export`]).
//! Nothing here is shown to the player or sent to the operator's webhooks: a case must not
//! tip anyone off.

pub mod export;
pub mod monitor;

use kassa_core::aml::case::{transition, CaseStatus, CloseReason, IllegalTransition};
use kassa_core::aml::goaml::ReportingEntity;
use kassa_core::aml::AmlSettings;
use kassa_store::aml::{AlertRecord, AmlFilter, CaseChange, CaseEvent, CaseRecord, NewCaseEvent};
use kassa_store::{Store, StoreError};

pub use export::{ExportFormat, Exported};
pub use monitor::{queue_monitoring, MonitorPayload, MonitoredEvent, AML_MONITOR};

/// Why a case use case did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum AmlError {
    /// No such case.
    #[error("no case {case_id:?}")]
    CaseNotFound { case_id: String },
    /// The workflow refuses the move.
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
    /// A closed case takes no assignee.
    #[error("case {case_id} is closed")]
    CaseClosed { case_id: String },
    /// The FIU's lookup tables are strict and do not map what the report would write.
    #[error("the FIU's lookup tables map no code for {}", unmapped.join(", "))]
    LookupsMissing { unmapped: Vec<String> },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A case with everything it holds.
#[derive(Clone, Debug)]
pub struct CaseFile {
    pub case: CaseRecord,
    /// Oldest first.
    pub alerts: Vec<AlertRecord>,
    /// The audit trail, oldest first.
    pub events: Vec<CaseEvent>,
    /// The merchant's other players linked to the case's player, each with what links
    /// them (`card`, `device`, `ip`, `email`), at most [`LINKED_PLAYERS_MAX`].
    pub linked_players: Vec<(String, Vec<String>)>,
}

/// Players a case lists as linked at most.
pub const LINKED_PLAYERS_MAX: u32 = 100;
/// How far back a device or IP links players in a case (a card or email links them ever).
pub const LINK_LOOKBACK_MS: i64 = 90 * 24 * 60 * 60 * 1_000;

/// A move asked for by staff.
#[derive(Clone, Debug)]
pub struct CaseMove<'a> {
    pub to: CaseStatus,
    pub reason: Option<CloseReason>,
    /// Why, kept in the audit trail.
    pub note: Option<&'a str>,
    /// The admin key that asked.
    pub actor: &'a str,
}

/// Alerts a case reads back at most (the rest are listed by `GET /v1/admin/alerts`).
pub const CASE_ALERTS_MAX: u32 = 1_000;

/// The AML use cases; cheap to clone.
#[derive(Clone)]
pub struct AmlService {
    store: Store,
    settings: AmlSettings,
    entity: ReportingEntity,
}

impl AmlService {
    /// Wires the service.
    pub fn new(store: Store, settings: AmlSettings, entity: ReportingEntity) -> AmlService {
        AmlService {
            store,
            settings,
            entity,
        }
    }

    /// The case, or [`AmlError::CaseNotFound`].
    pub async fn case(&self, case_id: &str) -> Result<CaseRecord, AmlError> {
        self.store
            .aml_case(case_id)
            .await?
            .ok_or_else(|| AmlError::CaseNotFound {
                case_id: case_id.to_string(),
            })
    }

    /// The case with its alerts and audit trail.
    pub async fn case_file(&self, case_id: &str) -> Result<CaseFile, AmlError> {
        let case = self.case(case_id).await?;
        let filter = AmlFilter {
            case_id: Some(case_id),
            ..AmlFilter::default()
        };
        let mut alerts = self.store.aml_alerts(&filter, CASE_ALERTS_MAX).await?;
        alerts.reverse();
        let events = self.store.aml_case_events(case_id).await?;
        let linked_players = self.linked_players(&case).await?;
        Ok(CaseFile {
            case,
            alerts,
            events,
            linked_players,
        })
    }

    /// The players linked to the case's player, grouped by player.
    async fn linked_players(
        &self,
        case: &CaseRecord,
    ) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let since_ms = kassa_store::now_ms() - LINK_LOOKBACK_MS;
        // Rows per link: a player may come up to four times.
        let rows = self
            .store
            .linked_players(
                &case.merchant_id,
                &case.player_id,
                since_ms,
                LINKED_PLAYERS_MAX * 4,
            )
            .await?;
        let mut linked: Vec<(String, Vec<String>)> = Vec::new();
        for (player, link) in rows {
            if let Some((_, links)) = linked.last_mut().filter(|(last, _)| *last == player) {
                links.push(link);
            } else if linked.len() < LINKED_PLAYERS_MAX as usize {
                linked.push((player, vec![link]));
            } else {
                break;
            }
        }
        Ok(linked)
    }

    /// Cases newest first.
    pub async fn cases(
        &self,
        filter: &AmlFilter<'_>,
        limit: u32,
    ) -> Result<Vec<CaseRecord>, AmlError> {
        Ok(self.store.aml_cases(filter, limit).await?)
    }

    /// Alerts newest first.
    pub async fn alerts(
        &self,
        filter: &AmlFilter<'_>,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, AmlError> {
        Ok(self.store.aml_alerts(filter, limit).await?)
    }

    /// Moves the case through its workflow, recording who, when and from → to.
    pub async fn transition(
        &self,
        case_id: &str,
        asked: CaseMove<'_>,
    ) -> Result<CaseRecord, AmlError> {
        let case = self.case(case_id).await?;
        let from = CaseStatus::parse(&case.status).ok_or_else(|| {
            StoreError::Corrupt(format!("case {case_id} status {:?}", case.status))
        })?;
        let to = transition(from, asked.to, asked.reason)?;
        let reason = asked.reason.map(CloseReason::as_str);
        let detail = serde_json::json!({ "reason": reason, "note": asked.note }).to_string();
        let event = NewCaseEvent {
            event: "transition",
            actor: asked.actor,
            from: Some(from.as_str()),
            to: Some(to.as_str()),
            detail: Some(&detail),
        };
        let change = CaseChange::Move {
            close_reason: reason,
        };
        if !self.store.change_aml_case(case_id, change, event).await? {
            // Someone moved it first: judge the move again from where it is now.
            let now = self.case(case_id).await?;
            let now = CaseStatus::parse(&now.status).unwrap_or(from);
            return Err(IllegalTransition::NotAllowed {
                from: now,
                to: asked.to,
            }
            .into());
        }
        if let Some(reason) = asked.reason {
            crate::metrics::record_case_closed(reason.as_str());
        }
        tracing::info!(%case_id, %from, %to, actor = %asked.actor, "AML case moved");
        self.case(case_id).await
    }

    /// Assigns the case to `assignee` (a person's or team's name), recorded in the trail.
    pub async fn assign(
        &self,
        case_id: &str,
        assignee: &str,
        actor: &str,
    ) -> Result<CaseRecord, AmlError> {
        let case = self.case(case_id).await?;
        let event = NewCaseEvent {
            event: "assigned",
            actor,
            from: None,
            to: None,
            detail: Some(assignee),
        };
        if !self
            .store
            .change_aml_case(&case.id, CaseChange::Assign, event)
            .await?
        {
            return Err(AmlError::CaseClosed { case_id: case.id });
        }
        self.case(case_id).await
    }

    /// Adds a note to the case's trail (closed cases too: the record stays open to notes).
    pub async fn note(
        &self,
        case_id: &str,
        text: &str,
        actor: &str,
    ) -> Result<CaseEvent, AmlError> {
        let case = self.case(case_id).await?;
        let event = NewCaseEvent {
            event: "note",
            actor,
            from: None,
            to: None,
            detail: Some(text),
        };
        self.store
            .change_aml_case(&case.id, CaseChange::Entry, event)
            .await?;
        let events = self.store.aml_case_events(&case.id).await?;
        events
            .into_iter()
            .rev()
            .find(|e| e.event == "note" && e.actor == actor)
            .ok_or_else(|| StoreError::Corrupt(format!("the note on {case_id} vanished")).into())
    }
}
