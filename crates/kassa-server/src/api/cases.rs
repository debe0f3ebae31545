//! `/v1/admin/cases` and `/v1/admin/alerts`: the AML alerts the post-authorization scenarios
//! raised, the cases they joined, the case workflow (assign, note, move) with its audit
//! trail, and the goAML / plain-text export (docs/aml.md). Admin keys with role `admin`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kassa_core::aml::case::{CaseStatus, CloseReason};
use kassa_core::aml::goaml::ReportCode;
use kassa_core::aml::Scenario;
use kassa_store::aml::{AlertRecord, AmlFilter, CaseEvent, CaseRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::api::{
    check_note, decode_keyset_cursor, encode_keyset_cursor, page_limit, rfc3339, ApiJson, ApiPath,
    ApiQuery,
};
use crate::auth::{roles, Admin};
use crate::error::{ApiError, ErrorBody};
use crate::service::aml::{CaseMove, ExportFormat};
use crate::AppState;

/// Longest note, assignee or id filter accepted.
const NOTE_CHARS_MAX: usize = 2_000;
const NAME_CHARS_MAX: usize = 100;

/// A case.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseView {
    pub case_id: String,
    pub merchant_id: String,
    pub player_id: String,
    /// `open`, `investigating`, `escalated`, `reported`, `closed`.
    pub status: String,
    /// `no_suspicion`, `reported`, `duplicate`, `false_positive`; closed cases only.
    pub close_reason: Option<String>,
    pub assignee: Option<String>,
    pub opened_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
}

/// An alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub alert_id: String,
    pub case_id: String,
    pub merchant_id: String,
    pub player_id: String,
    /// `cdd_threshold`, `structuring`, `rapid_in_out`, `other_instrument`, `shared_instrument`.
    pub scenario: String,
    /// The window the pattern was found in.
    pub window_start: String,
    pub window_end: String,
    /// The sum the pattern is about, in the player's currency.
    pub amount: String,
    pub currency: String,
    /// The payments and payouts of the pattern.
    pub transactions: Vec<String>,
    /// The figures the scenario compared (`*_minor` in minor units).
    #[schema(value_type = Object)]
    pub figures: Value,
    /// The event whose monitoring found it (`payment.captured:pay_…`).
    pub found_after: String,
    pub created_at: String,
}

/// One entry of a case's audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseEventView {
    /// `opened`, `alert`, `assigned`, `note`, `transition`, `exported`.
    pub event: String,
    /// The admin key id, or `aml` for the monitoring job.
    pub actor: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    /// The note's text, the assignee, the alert's id, or the move's reason and note (JSON).
    pub detail: Option<String>,
    pub created_at: String,
}

/// A case with its alerts (oldest first) and audit trail (oldest first).
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseDetailView {
    #[serde(flatten)]
    pub case: CaseView,
    /// What it may move to next.
    pub next_statuses: Vec<String>,
    pub alerts: Vec<AlertView>,
    pub audit: Vec<CaseEventView>,
    /// The merchant's other players linked to the case's player (at most 100): by a card
    /// (its fingerprint), a device or an IP seen in risk decisions of the last 90 days, or
    /// an email address (docs/risk.md).
    pub linked_players: Vec<LinkedPlayerView>,
}

/// A player linked to a case's player.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedPlayerView {
    pub player_id: String,
    /// What links them: `card`, `device`, `email`, `ip`.
    pub links: Vec<String>,
}

/// A page of cases, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CasePage {
    pub data: Vec<CaseView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// A page of alerts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    pub data: Vec<AlertView>,
    pub next_cursor: Option<String>,
}

/// Which cases to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CaseListQuery {
    /// Only cases in this status.
    #[param(pattern = "^(open|investigating|escalated|reported|closed)$")]
    pub status: Option<String>,
    pub merchant_id: Option<String>,
    pub player_id: Option<String>,
    /// Page size (`pagination.page_size_default`, at most `pagination.page_size_max`).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Which alerts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertListQuery {
    /// Only alerts of this scenario.
    #[param(
        pattern = "^(cdd_threshold|structuring|rapid_in_out|other_instrument|shared_instrument)$"
    )]
    pub scenario: Option<String>,
    pub case_id: Option<String>,
    pub merchant_id: Option<String>,
    pub player_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A move through the workflow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionInput {
    /// `investigating`, `escalated`, `reported`, `closed`.
    #[schema(pattern = "^(open|investigating|escalated|reported|closed)$")]
    pub to: String,
    /// Required to close, refused otherwise: `no_suspicion`, `reported`, `duplicate`,
    /// `false_positive`.
    #[schema(pattern = "^(no_suspicion|reported|duplicate|false_positive)$")]
    pub reason: Option<String>,
    /// Why (at most 500 characters), kept in the audit trail.
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

/// A note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    /// 1 to 2,000 characters, not only blanks (422 otherwise).
    #[schema(min_length = 1, max_length = 2000)]
    pub text: String,
}

/// Who looks at a case.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignInput {
    /// A person's or team's name, 1 to 100 characters, not only blanks (422 otherwise).
    #[schema(min_length = 1, max_length = 100)]
    pub assignee: String,
}

/// How to export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `goaml` (XML) or `summary` (plain text).
    #[param(pattern = "^(goaml|summary)$")]
    pub format: String,
    /// `STR` (default) or `SAR`.
    #[param(pattern = "^(STR|SAR)$")]
    pub report_code: Option<String>,
    /// Move the case to `reported` first (only from `investigating` or `escalated`).
    pub mark_reported: Option<bool>,
}

fn case_view(case: &CaseRecord) -> CaseView {
    CaseView {
        case_id: case.id.clone(),
        merchant_id: case.merchant_id.clone(),
        player_id: case.player_id.clone(),
        status: case.status.clone(),
        close_reason: case.close_reason.clone(),
        assignee: case.assignee.clone(),
        opened_at: rfc3339(case.opened_at_ms),
        updated_at: rfc3339(case.updated_at_ms),
        closed_at: case.closed_at_ms.map(rfc3339),
    }
}

fn alert_view(alert: &AlertRecord) -> AlertView {
    let amount = kassa_core::Currency::from_code(&alert.currency)
        .map(|c| c.format_minor(alert.amount_minor))
        .unwrap_or_else(|_| alert.amount_minor.to_string());
    AlertView {
        alert_id: alert.id.clone(),
        case_id: alert.case_id.clone(),
        merchant_id: alert.merchant_id.clone(),
        player_id: alert.player_id.clone(),
        scenario: alert.scenario.clone(),
        window_start: rfc3339(alert.window_start_ms),
        window_end: rfc3339(alert.window_end_ms),
        amount,
        currency: alert.currency.clone(),
        transactions: serde_json::from_str(&alert.transactions).unwrap_or_default(),
        figures: serde_json::from_str(&alert.figures).unwrap_or_default(),
        found_after: alert.found_after.clone(),
        created_at: rfc3339(alert.created_at_ms),
    }
}

fn event_view(event: &CaseEvent) -> CaseEventView {
    CaseEventView {
        event: event.event.clone(),
        actor: event.actor.clone(),
        from_status: event.from_status.clone(),
        to_status: event.to_status.clone(),
        detail: event.detail.clone(),
        created_at: rfc3339(event.created_at_ms),
    }
}

/// 422 unless `value` is one of `allowed`'s names.
fn one_of<T: Copy>(
    field: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
    allowed: &[&str],
) -> Result<T, ApiError> {
    parse(value).ok_or_else(|| {
        ApiError::validation(field, format!("must be one of {}", allowed.join(", ")))
            .with_details(json!({ "field": field, "allowed": allowed }))
    })
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| name(*v)).collect()
}

fn short(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    if value.is_some_and(|v| v.chars().count() > NAME_CHARS_MAX) {
        return Err(ApiError::validation(
            field,
            format!("at most {NAME_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

/// Cases newest first, by status, merchant and player (admin keys).
#[utoipa::path(get, path = "/v1/admin/cases", tag = "admin", params(CaseListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = CasePage), (status = 403, body = ErrorBody),
        (status = 422, description = "an unknown status, a bad limit or cursor", body = ErrorBody)))]
pub async fn list_cases(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<CaseListQuery>,
) -> Result<Json<CasePage>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    if let Some(status) = query.status.as_deref() {
        let allowed = names(CaseStatus::ALL, CaseStatus::as_str);
        one_of("status", status, CaseStatus::parse, &allowed)?;
    }
    short("merchant_id", query.merchant_id.as_deref())?;
    short("player_id", query.player_id.as_deref())?;
    let limit = page_limit(&state.config.pagination, query.limit)?;
    let filter = AmlFilter {
        merchant_id: query.merchant_id.as_deref(),
        player_id: query.player_id.as_deref(),
        kind: query.status.as_deref(),
        case_id: None,
        before: query
            .cursor
            .as_deref()
            .map(decode_keyset_cursor)
            .transpose()?,
    };
    let mut cases = state.aml.cases(&filter, limit + 1).await?;
    let next_cursor = next_cursor(&mut cases, limit, |c| (c.opened_at_ms, &c.id));
    Ok(Json(CasePage {
        data: cases.iter().map(case_view).collect(),
        next_cursor,
    }))
}

/// Cuts a page fetched with one row more than `limit`; the cursor when there is more.
fn next_cursor<T>(rows: &mut Vec<T>, limit: u32, key: fn(&T) -> (i64, &String)) -> Option<String> {
    if rows.len() <= limit as usize {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|row| {
        let (at_ms, id) = key(row);
        encode_keyset_cursor(at_ms, id)
    })
}

/// Alerts newest first, by scenario, case, merchant and player (admin keys).
#[utoipa::path(get, path = "/v1/admin/alerts", tag = "admin", params(AlertListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AlertPage), (status = 403, body = ErrorBody),
        (status = 422, description = "an unknown scenario, a bad limit or cursor", body = ErrorBody)))]
pub async fn list_alerts(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<AlertListQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    if let Some(scenario) = query.scenario.as_deref() {
        let allowed = names(Scenario::ALL, Scenario::as_str);
        one_of("scenario", scenario, Scenario::parse, &allowed)?;
    }
    for (field, value) in [
        ("case_id", &query.case_id),
        ("merchant_id", &query.merchant_id),
        ("player_id", &query.player_id),
    ] {
        short(field, value.as_deref())?;
    }
    let limit = page_limit(&state.config.pagination, query.limit)?;
    let filter = AmlFilter {
        merchant_id: query.merchant_id.as_deref(),
        player_id: query.player_id.as_deref(),
        kind: query.scenario.as_deref(),
        case_id: query.case_id.as_deref(),
        before: query
            .cursor
            .as_deref()
            .map(decode_keyset_cursor)
            .transpose()?,
    };
    let mut alerts = state.aml.alerts(&filter, limit + 1).await?;
    let next_cursor = next_cursor(&mut alerts, limit, |a| (a.created_at_ms, &a.id));
    Ok(Json(AlertPage {
        data: alerts.iter().map(alert_view).collect(),
        next_cursor,
    }))
}

async fn detail(state: &AppState, case_id: &str) -> Result<CaseDetailView, ApiError> {
    let file = state.aml.case_file(case_id).await?;
    let next_statuses = CaseStatus::parse(&file.case.status)
        .map(|s| s.next().map(|n| n.as_str().to_string()).collect())
        .unwrap_or_default();
    Ok(CaseDetailView {
        case: case_view(&file.case),
        next_statuses,
        alerts: file.alerts.iter().map(alert_view).collect(),
        audit: file.events.iter().map(event_view).collect(),
        linked_players: file
            .linked_players
            .into_iter()
            .map(|(player_id, links)| LinkedPlayerView { player_id, links })
            .collect(),
    })
}

/// A case with its alerts and audit trail (admin keys).
#[utoipa::path(get, path = "/v1/admin/cases/{case_id}", tag = "admin",
    params(("case_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = CaseDetailView), (status = 403, body = ErrorBody),
        (status = 404, description = "case_not_found", body = ErrorBody)))]
pub async fn get_case(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(case_id): ApiPath<String>,
) -> Result<Json<CaseDetailView>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    Ok(Json(detail(&state, &case_id).await?))
}

/// Moves a case through its workflow (admin keys): `open → investigating → escalated →
/// reported → closed` (closing takes a reason). The move is in the audit trail.
#[utoipa::path(post, path = "/v1/admin/cases/{case_id}/transition", tag = "admin",
    request_body = TransitionInput,
    params(("case_id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Optional, scoped by the admin key; a repeat replays the first answer")),
    security(("bearer" = [])),
    responses((status = 200, body = CaseDetailView), (status = 403, body = ErrorBody),
        (status = 404, description = "case_not_found", body = ErrorBody),
        (status = 409, description = "case_transition_not_allowed (details: from, to, allowed); idempotency_key_reused, idempotency_key_in_use", body = ErrorBody),
        (status = 422, description = "an unknown status or reason; a reason missing to close or given otherwise", body = ErrorBody)))]
pub async fn transition_case(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(case_id): ApiPath<String>,
    ApiJson(input): ApiJson<TransitionInput>,
) -> Result<Json<CaseDetailView>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let to = one_of(
        "to",
        &input.to,
        CaseStatus::parse,
        &names(CaseStatus::ALL, CaseStatus::as_str),
    )?;
    let reason = input
        .reason
        .as_deref()
        .map(|r| {
            let allowed = names(CloseReason::ALL, CloseReason::as_str);
            one_of("reason", r, CloseReason::parse, &allowed)
        })
        .transpose()?;
    check_note(input.note.as_deref())?;
    let asked = CaseMove {
        to,
        reason,
        note: input.note.as_deref(),
        actor: &admin.key_id,
    };
    state.aml.transition(&case_id, asked).await?;
    Ok(Json(detail(&state, &case_id).await?))
}

/// Adds a note to a case's audit trail (admin keys).
#[utoipa::path(post, path = "/v1/admin/cases/{case_id}/notes", tag = "admin",
    request_body = NoteInput,
    params(("case_id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Optional, scoped by the admin key; a repeat replays the first answer")),
    security(("bearer" = [])),
    responses((status = 201, body = CaseEventView), (status = 403, body = ErrorBody),
        (status = 404, description = "case_not_found", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused, idempotency_key_in_use", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn add_note(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(case_id): ApiPath<String>,
    ApiJson(input): ApiJson<NoteInput>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let text = input.text.trim();
    // The length as sent, as the document states it.
    if text.is_empty() || input.text.chars().count() > NOTE_CHARS_MAX {
        return Err(ApiError::validation(
            "text",
            format!("is required (1 to {NOTE_CHARS_MAX} characters)"),
        ));
    }
    let note = state.aml.note(&case_id, text, &admin.key_id).await?;
    Ok((axum::http::StatusCode::CREATED, Json(event_view(&note))).into_response())
}

/// Assigns a case that is not closed (admin keys); recorded in the audit trail.
#[utoipa::path(post, path = "/v1/admin/cases/{case_id}/assign", tag = "admin",
    request_body = AssignInput,
    params(("case_id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Optional, scoped by the admin key; a repeat replays the first answer")),
    security(("bearer" = [])),
    responses((status = 200, body = CaseDetailView), (status = 403, body = ErrorBody),
        (status = 404, description = "case_not_found", body = ErrorBody),
        (status = 409, description = "case_closed; idempotency_key_reused, idempotency_key_in_use", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn assign_case(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(case_id): ApiPath<String>,
    ApiJson(input): ApiJson<AssignInput>,
) -> Result<Json<CaseDetailView>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let assignee = input.assignee.trim();
    if assignee.is_empty() {
        return Err(ApiError::validation("assignee", "is required"));
    }
    short("assignee", Some(&input.assignee))?;
    state.aml.assign(&case_id, assignee, &admin.key_id).await?;
    Ok(Json(detail(&state, &case_id).await?))
}

/// Exports a case as goAML XML (`format=goaml`, report code STR or SAR) or a plain-text
/// summary (`format=summary`), admin keys. Nothing is sent anywhere; the case moves to
/// `reported` only with `mark_reported=true`. The export is recorded in the audit trail.
#[utoipa::path(get, path = "/v1/admin/cases/{case_id}/export", tag = "admin",
    params(("case_id" = String, Path), ExportQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "the report", content((String = "application/xml"), (String = "text/plain"))),
        (status = 403, body = ErrorBody),
        (status = 404, description = "case_not_found", body = ErrorBody),
        (status = 409, description = "case_transition_not_allowed (mark_reported from a status that cannot move to reported)", body = ErrorBody),
        (status = 422, description = "an unknown format or report code; goaml_lookup_missing (strict FIU lookup tables map no code for a name the report would write: details.unmapped)", body = ErrorBody)))]
pub async fn export_case(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(case_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let format = match query.format.as_str() {
        "goaml" => ExportFormat::Goaml,
        "summary" => ExportFormat::Summary,
        _ => {
            return Err(ApiError::validation("format", "must be goaml or summary")
                .with_details(json!({ "field": "format", "allowed": ["goaml", "summary"] })))
        }
    };
    let code = match query.report_code.as_deref() {
        None => ReportCode::Str,
        Some(code) => one_of(
            "report_code",
            code,
            ReportCode::parse,
            &names(ReportCode::ALL, ReportCode::as_str),
        )?,
    };
    let mark_reported = query.mark_reported.unwrap_or(false);
    let exported = state
        .aml
        .export(&case_id, format, code, mark_reported, &admin.key_id)
        .await?;
    Ok((
        [(header::CONTENT_TYPE, exported.content_type)],
        exported.body,
    )
        .into_response())
}
