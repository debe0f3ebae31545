//! `/v1/admin/jobs`: the job queue for operators (admin keys): what is queued, running, dead
//! and why, and a retry for a dead job.

use crate::api::{ApiPath, ApiQuery};
use axum::extract::State;
use axum::Json;
use kassa_store::jobs::{JobRecord, JobState, RetryRefusal};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::api::{decode_keyset_cursor, encode_keyset_cursor, page_limit, rfc3339};
use crate::auth::{roles, Admin};
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Longest `kind` filter accepted.
const KIND_LEN_MAX: usize = 100;

/// A background job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: String,
    /// `payout.send`, `payouts.schedule`, `payments.status_sync`, `outbox.publish`, …
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `dead`, `cancelled`.
    pub state: String,
    /// The handler's input.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// At most one unfinished job per kind and key (a payout id; a recurring job's kind).
    pub dedupe_key: Option<String>,
    /// Runs started so far.
    pub attempts: i64,
    /// Runs allowed before the job is dead.
    pub attempts_max: i64,
    /// When the next run may start.
    pub run_at: String,
    /// A recurring job's period.
    pub repeat_every_ms: Option<i64>,
    /// The node holding the job while it runs.
    pub lease_owner: Option<String>,
    pub lease_until: Option<String>,
    /// The error of the last failed run.
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub data: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Which jobs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Only jobs in this state (`queued`, `running`, `succeeded`, `dead`, `cancelled`).
    pub state: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Page size (`pagination.page_size_default`, at most `pagination.page_size_max`).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Jobs newest first, by state and kind (admin keys).
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "admin", params(JobListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = JobPage),
        (status = 403, description = "not an admin key with role admin", body = ErrorBody),
        (status = 422, description = "an unknown state, a bad limit or cursor", body = ErrorBody),
    ))]
pub async fn list_jobs(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<JobListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let job_state = query
        .state
        .as_deref()
        .map(|text| {
            JobState::parse(text).ok_or_else(|| {
                ApiError::validation("state", "is not a job state").with_details(json!({
                    "field": "state",
                    "allowed": JobState::ALL.map(JobState::as_str),
                }))
            })
        })
        .transpose()?;
    if query
        .kind
        .as_deref()
        .is_some_and(|k| k.len() > KIND_LEN_MAX)
    {
        return Err(ApiError::validation(
            "kind",
            format!("must be at most {KIND_LEN_MAX} characters"),
        ));
    }
    let limit = page_limit(&state.config.pagination, query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(decode_keyset_cursor)
        .transpose()?;
    let mut jobs = state
        .store
        .list_jobs(job_state, query.kind.as_deref(), before, limit + 1)
        .await?;
    let next_cursor = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last()
            .map(|j| encode_keyset_cursor(j.created_at_ms, &j.id))
    } else {
        None
    };
    Ok(Json(JobPage {
        data: jobs.iter().map(view).collect(),
        next_cursor,
    }))
}

/// One job (admin keys).
#[utoipa::path(get, path = "/v1/admin/jobs/{job_id}", tag = "admin",
    params(("job_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, body = JobView),
        (status = 403, body = ErrorBody),
        (status = 404, description = "job_not_found", body = ErrorBody),
    ))]
pub async fn get_job(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(job_id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let job = state
        .store
        .get_job(&job_id)
        .await?
        .ok_or_else(|| job_not_found(&job_id))?;
    Ok(Json(view(&job)))
}

/// Queues a dead job again, now, with a fresh attempt budget (admin keys). Only a dead job:
/// 409 `job_not_dead` otherwise, 409 `job_duplicate` when a newer job with the same kind and
/// dedupe key is waiting or running (the work would run twice).
#[utoipa::path(post, path = "/v1/admin/jobs/{job_id}/retry", tag = "admin",
    params(("job_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "the job, queued", body = JobView),
        (status = 403, body = ErrorBody),
        (status = 404, description = "job_not_found", body = ErrorBody),
        (status = 409, description = "job_not_dead, job_duplicate", body = ErrorBody),
    ))]
pub async fn retry_job(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(job_id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    match state.store.retry_dead_job(&job_id).await? {
        Ok(job) => {
            tracing::info!(job_id = %job.id, kind = %job.kind, by = %admin.key_id, "dead job retried");
            Ok(Json(view(&job)))
        }
        Err(RetryRefusal::NotFound) => Err(job_not_found(&job_id)),
        Err(RetryRefusal::NotDead(current)) => Err(ApiError::conflict(
            "job_not_dead",
            format!(
                "a {} job cannot be retried; only a dead one",
                current.as_str()
            ),
        )
        .with_details(json!({ "state": current.as_str() }))),
        Err(RetryRefusal::Duplicate) => Err(ApiError::conflict(
            "job_duplicate",
            "a job of the same kind and dedupe key is already queued or running",
        )),
    }
}

fn job_not_found(job_id: &str) -> ApiError {
    ApiError::not_found("job_not_found", format!("no job {job_id:?}"))
}

fn view(job: &JobRecord) -> JobView {
    JobView {
        job_id: job.id.clone(),
        kind: job.kind.clone(),
        state: job.state.as_str().to_string(),
        // A payload that is not JSON (a hand-made job) is shown as the text it is.
        payload: serde_json::from_str(&job.payload)
            .unwrap_or_else(|_| serde_json::Value::String(job.payload.clone())),
        dedupe_key: job.dedupe_key.clone(),
        attempts: job.attempts,
        attempts_max: job.attempts_max,
        run_at: rfc3339(job.run_at_ms),
        repeat_every_ms: job.repeat_every_ms,
        lease_owner: job.lease_owner.clone(),
        lease_until: job.lease_until_ms.map(rfc3339),
        last_error: job.last_error.clone(),
        created_at: rfc3339(job.created_at_ms),
        updated_at: rfc3339(job.updated_at_ms),
    }
}
