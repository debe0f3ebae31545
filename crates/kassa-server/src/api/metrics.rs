//! `/metrics` in the Prometheus text format, served on its own listen address
//! (`[metrics] listen`, ADR 53), and the layer that counts the main API's requests by route
//! template and status class.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::{metrics, AppState};

/// Route label of a request no route matched: raw paths never become labels.
const UNMATCHED_ROUTE: &str = "unmatched";

/// The metrics listener's router: `GET /metrics`, nothing else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

/// Refreshes the gauges read at scrape, then renders every metric.
async fn scrape(State(state): State<AppState>) -> Response {
    refresh_circuit_gauges(&state);
    refresh_database_gauges(&state).await;
    match metrics::render() {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not installed\n",
        )
            .into_response(),
    }
}

/// Each provider account's circuit on this node (its breaker changes state on calls and on
/// the clock; a scrape reads where it stands), and with it whether the account is up.
fn refresh_circuit_gauges(state: &AppState) {
    for account in state.routing.health() {
        metrics::set_circuit_state(&account.account, circuit_state(account.circuit));
    }
}

/// The state a health view names (`closed`, `half_open`, `open`).
fn circuit_state(name: &str) -> metrics::CircuitState {
    [
        metrics::CircuitState::Closed,
        metrics::CircuitState::HalfOpen,
        metrics::CircuitState::Open,
    ]
    .into_iter()
    .find(|state| state.as_str() == name)
    .unwrap_or_default()
}

/// The outbox and outbound webhook backlogs and the players whose deposits failed lately; a
/// database error leaves the last values (and is logged): a scrape still answers while the
/// database is away.
async fn refresh_database_gauges(state: &AppState) {
    match state.store.outbox_unpublished_count().await {
        Ok(events) => metrics::set_outbox_backlog(events),
        Err(error) => tracing::warn!(error = %error, "metrics: outbox backlog not read"),
    }
    let since_ms = kassa_store::now_ms() - metrics::FAILED_PLAYERS_WINDOW_MS;
    match state
        .store
        .players_with_failed_deposits_since(since_ms)
        .await
    {
        Ok(players) => metrics::set_deposit_failed_players(players),
        Err(error) => tracing::warn!(error = %error, "metrics: failed deposits not read"),
    }
    let kind = crate::workers::kinds::WEBHOOK_DELIVER;
    match state.store.unfinished_job_count(kind).await {
        Ok(jobs) => metrics::set_webhook_deliveries_queued(jobs),
        Err(error) => tracing::warn!(error = %error, "metrics: webhook queue not read"),
    }
}

/// Counts each answered request by its route template (`/v1/payments/{payment_id}`) and
/// status class, with its duration. Applied with `Router::layer`, so it wraps each route
/// and sees the path the router matched.
pub async fn track_http(request: Request, next: Next) -> Response {
    if !metrics::installed() {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::record_http_request(&route, response.status().as_u16(), started.elapsed());
    response
}
