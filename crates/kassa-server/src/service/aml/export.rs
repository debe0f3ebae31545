//! A case exported as a goAML report (STR or SAR) or a plain-text summary. Exporting sends
//! nothing anywhere and changes nothing the player can see; it moves the case to `reported`
//! only when asked, and every export is recorded in the case's trail.

use std::collections::BTreeMap;

use kassa_core::aml::case::CaseStatus;
use kassa_core::aml::goaml::{iso_datetime, Flow, Report, ReportCode, ReportTransaction, Subject};
use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::Currency;
use kassa_store::aml::{CaseChange, MovementRow, NewCaseEvent};
use kassa_store::{now_ms, StoreError};

use super::{AmlError, AmlService, CaseFile, CaseMove};

/// What the export is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// goAML XML.
    Goaml,
    /// Plain text for a person.
    Summary,
}

/// An export: its body and media type.
#[derive(Clone, Debug)]
pub struct Exported {
    pub body: String,
    pub content_type: &'static str,
}

/// The scenarios of the case's alerts, sorted, each once: the report's indicators.
fn indicators(file: &CaseFile) -> Vec<String> {
    let mut indicators: Vec<String> = file.alerts.iter().map(|a| a.scenario.clone()).collect();
    indicators.sort();
    indicators.dedup();
    indicators
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

impl AmlService {
    /// Writes the case as `format`; with `mark_reported`, first moves it to `reported`
    /// (refused, and nothing exported, where the workflow does not allow it).
    pub async fn export(
        &self,
        case_id: &str,
        format: ExportFormat,
        code: ReportCode,
        mark_reported: bool,
        actor: &str,
    ) -> Result<Exported, AmlError> {
        let case = self.case(case_id).await?;
        if format == ExportFormat::Goaml && self.entity.lookups.strict {
            // Before any move: a refused export must not leave the case `reported`.
            let file = self.case_file(case_id).await?;
            let unmapped = self.unmapped_lookups(&file).await?;
            if !unmapped.is_empty() {
                return Err(AmlError::LookupsMissing { unmapped });
            }
        }
        if mark_reported && case.status != CaseStatus::Reported.as_str() {
            let asked = CaseMove {
                to: CaseStatus::Reported,
                reason: None,
                note: Some("exported as a report"),
                actor,
            };
            self.transition(case_id, asked).await?;
        }
        let file = self.case_file(case_id).await?;
        let body = self.report_text(&file, format, code).await?;
        let detail = serde_json::json!({
            "format": match format { ExportFormat::Goaml => "goaml", ExportFormat::Summary => "summary" },
            "report_code": code.as_str(),
            "mark_reported": mark_reported,
        })
        .to_string();
        let exported = NewCaseEvent {
            event: "exported",
            actor,
            from: None,
            to: None,
            detail: Some(&detail),
        };
        self.store
            .change_aml_case(case_id, CaseChange::Entry, exported)
            .await?;
        let content_type = match format {
            ExportFormat::Goaml => "application/xml; charset=utf-8",
            ExportFormat::Summary => "text/plain; charset=utf-8",
        };
        Ok(Exported { body, content_type })
    }

    async fn report_text(
        &self,
        file: &CaseFile,
        format: ExportFormat,
        code: ReportCode,
    ) -> Result<String, AmlError> {
        let case = &file.case;
        let merchant = MerchantId::parse(&case.merchant_id).map_err(corrupt)?;
        let player = PlayerId::parse(&case.player_id).map_err(corrupt)?;
        let player = self
            .store
            .get_player(&merchant, &player)
            .await?
            .ok_or_else(|| corrupt(format!("case {} names an unknown player", case.id)))?;
        let identity = self
            .store
            .player_identity(merchant.as_str(), &case.player_id)
            .await?
            .map(|(identity, _)| identity);
        let subject = Subject {
            player_id: case.player_id.clone(),
            currency: player.currency,
            country: player.country.clone(),
            birth_date: player.birth_date.clone(),
            identity,
        };
        let transactions = self.transactions(file).await?;
        let report = Report {
            entity: &self.entity,
            code,
            case_id: &case.id,
            submitted_at_ms: now_ms(),
            subject: &subject,
            reason: reason(file, player.currency),
            action: action(file),
            transactions,
            indicators: indicators(file),
        };
        Ok(match format {
            ExportFormat::Goaml => report.xml(),
            ExportFormat::Summary => report.summary(),
        })
    }

    /// What the report of `file` would write in Kassa's own words, unmapped by the FIU's
    /// lookup tables (`table:name`).
    async fn unmapped_lookups(&self, file: &CaseFile) -> Result<Vec<String>, AmlError> {
        let transactions = self.transactions(file).await?;
        let methods: Vec<&str> = transactions.iter().map(|t| t.method.as_str()).collect();
        let scenarios = indicators(file);
        let scenarios: Vec<&str> = scenarios.iter().map(String::as_str).collect();
        Ok(self.entity.lookups.unmapped(&methods, &scenarios))
    }

    /// The payments and payouts of the case's alerts, oldest first.
    async fn transactions(&self, file: &CaseFile) -> Result<Vec<ReportTransaction>, AmlError> {
        let mut ids: Vec<String> = Vec::new();
        for alert in &file.alerts {
            let listed: Vec<String> = serde_json::from_str(&alert.transactions)
                .map_err(|e| corrupt(format!("alert {}: {e}", alert.id)))?;
            for id in listed {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let mut rows = self.store.aml_movements_by_id(&ids).await?;
        rows.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
        rows.iter().map(report_transaction).collect()
    }
}

fn report_transaction(row: &MovementRow) -> Result<ReportTransaction, AmlError> {
    Ok(ReportTransaction {
        id: row.id.clone(),
        provider_reference: row.provider_reference.clone(),
        flow: match row.direction {
            "deposit" => Flow::In,
            _ => Flow::Out,
        },
        method: row.method.clone(),
        amount_minor: row.amount_minor,
        currency: Currency::from_code(&row.currency).map_err(corrupt)?,
        at_ms: row.at_ms,
        account: row.provider.clone(),
    })
}

/// One line per alert: the scenario, when, and the figures it compared (amounts as
/// decimals).
fn reason(file: &CaseFile, currency: Currency) -> String {
    let lines: Vec<String> = file
        .alerts
        .iter()
        .map(|alert| {
            let figures: BTreeMap<String, i64> =
                serde_json::from_str(&alert.figures).unwrap_or_default();
            let figures: Vec<String> = figures
                .iter()
                .map(|(name, value)| match name.strip_suffix("_minor") {
                    Some(name) => format!("{name} {} {currency}", currency.format_minor(*value)),
                    None => format!("{name} {value}"),
                })
                .collect();
            format!(
                "{} at {} UTC ({}): {}",
                alert.scenario,
                iso_datetime(alert.created_at_ms),
                alert.id,
                figures.join(", ")
            )
        })
        .collect();
    lines.join("\n")
}

/// What staff did: the moves, assignments and notes of the trail.
fn action(file: &CaseFile) -> String {
    let lines: Vec<String> = file
        .events
        .iter()
        .filter(|e| matches!(e.event.as_str(), "transition" | "assigned" | "note"))
        .map(|e| {
            let what = match e.event.as_str() {
                "transition" => format!(
                    "moved {} -> {}",
                    e.from_status.as_deref().unwrap_or("?"),
                    e.to_status.as_deref().unwrap_or("?")
                ),
                "assigned" => format!("assigned to {}", e.detail.as_deref().unwrap_or("")),
                _ => format!("note: {}", e.detail.as_deref().unwrap_or("")),
            };
            format!(
                "{} UTC {} by {}",
                iso_datetime(e.created_at_ms),
                what,
                e.actor
            )
        })
        .collect();
    match lines.is_empty() {
        true => format!("case {} under review", file.case.status),
        false => lines.join("\n"),
    }
}
