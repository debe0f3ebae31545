//! HTTP routes. Handlers are thin: extract, call one service function, map the result.
//! Conventions live in layers applied here once: trace ids and the error body (all routes),
//! authentication and rate limits (`/v1` except the public documents), `Idempotency-Key`
//! (money-moving POSTs), body size and time limits.

pub mod admin;
pub mod admin_webhooks;
pub mod cases;
pub mod exclusions;
pub mod health;
pub mod jobs;
pub mod kyc;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod payments;
pub mod payouts;
pub mod players;
pub mod registers;
pub mod risk;
pub mod routing;
pub mod text;
pub mod wallet;
pub mod webhook_endpoints;

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::Router;
use serde::de::DeserializeOwned;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::{auth, idempotency, trace, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kassa API",
        description = "Payments, wallet and ledger for online casinos. Amounts are decimal \
            strings in the currency's unit (\"50.00\"). Every error has the body \
            {error, message, trace_id, details}.",
        version = "1"
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "wallet", description = "Seamless-wallet calls of game rounds"),
        (name = "players", description = "Players and their balances"),
        (name = "payments", description = "Deposits, refunds and provider webhooks"),
        (name = "payouts", description = "Withdrawals"),
        (name = "webhooks", description = "Outbound webhooks to the operator: endpoints, attempts, replay"),
        (name = "admin", description = "Platform administration (admin keys)"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let (app, _) = openapi_router(state.clone()).split_for_parts();
    let timeout = Duration::from_millis(state.config.http.request_timeout_ms);
    app.fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.http.body_limit_bytes,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(axum::middleware::from_fn(text::refuse_control_characters))
        .layer(axum::middleware::from_fn(trace::middleware))
        .layer(axum::middleware::from_fn(metrics::track_http))
        .with_state(state)
}

/// The OpenAPI document, generated from the routes and types.
pub fn openapi_document(state: AppState) -> utoipa::openapi::OpenApi {
    let pagination = state.config.pagination.clone();
    let mut document = openapi_router(state).split_for_parts().1;
    openapi::complete(&mut document, &pagination);
    document
}

fn openapi_router(state: AppState) -> OpenApiRouter<AppState> {
    let wallet = OpenApiRouter::new()
        .routes(routes!(wallet::debit))
        .routes(routes!(wallet::credit))
        .routes(routes!(wallet::rollback))
        .route_layer(from_fn_with_state(state.clone(), idempotency::optional));
    // A deposit's start claims its key in its one transaction (ADR 0034).
    let deposit_start = OpenApiRouter::new()
        .routes(routes!(payments::init_payment))
        .route_layer(from_fn_with_state(state.clone(), idempotency::in_effect));
    let money_moving = OpenApiRouter::new()
        .routes(routes!(payments::create_refund))
        .routes(routes!(payouts::init_payout))
        .route_layer(from_fn_with_state(state.clone(), idempotency::required));
    // A review decision moves money (a hold sent or released) on an admin key (ADR 36).
    let review = OpenApiRouter::new()
        .routes(routes!(payouts::approve_payout))
        .routes(routes!(payouts::reject_payout))
        .route_layer(from_fn_with_state(
            state.clone(),
            idempotency::admin_optional,
        ));
    // A replay may move money (a dead-lettered capture applied) on an admin key (ADR 36).
    let replays = OpenApiRouter::new()
        .routes(routes!(admin_webhooks::replay_inbound))
        .routes(routes!(admin_webhooks::replay_inbound_bulk))
        .route_layer(from_fn_with_state(
            state.clone(),
            idempotency::admin_optional,
        ));
    // Case moves, notes and assignments honour a key the admin sends (ADR 36's scope).
    let cases = OpenApiRouter::new()
        .routes(routes!(cases::transition_case))
        .routes(routes!(cases::add_note))
        .routes(routes!(cases::assign_case))
        .route_layer(from_fn_with_state(
            state.clone(),
            idempotency::admin_optional,
        ));
    let authenticated = OpenApiRouter::new()
        .merge(wallet)
        .merge(cases)
        .merge(replays)
        .merge(deposit_start)
        .merge(money_moving)
        .merge(review)
        .routes(routes!(payments::get_payment))
        .routes(routes!(payments::list_payments))
        .routes(routes!(payments::cancel_payment))
        .routes(routes!(payments::payment_events))
        .routes(routes!(payouts::get_payout))
        .routes(routes!(payouts::list_payouts))
        .routes(routes!(payouts::cancel_payout))
        .routes(routes!(payouts::review_queue))
        .routes(routes!(payouts::set_switch))
        .routes(routes!(players::put_player, players::get_player))
        .routes(routes!(players::get_balance))
        .routes(routes!(limits::get_limits, limits::put_limits))
        .routes(routes!(
            exclusions::get_exclusion,
            exclusions::post_exclusion
        ))
        .routes(routes!(kyc::get_kyc, kyc::post_kyc))
        .routes(routes!(registers::put_identity))
        .routes(routes!(registers::post_register_check))
        .routes(routes!(players::list_transactions))
        .routes(routes!(admin::create_merchant))
        .routes(routes!(admin::verify_ledger))
        .routes(routes!(admin::webhook_deliveries))
        .routes(routes!(
            webhook_endpoints::create_endpoint,
            webhook_endpoints::list_endpoints
        ))
        .routes(routes!(
            webhook_endpoints::get_endpoint,
            webhook_endpoints::update_endpoint,
            webhook_endpoints::delete_endpoint
        ))
        .routes(routes!(webhook_endpoints::rotate_secret))
        .routes(routes!(webhook_endpoints::list_attempts))
        .routes(routes!(webhook_endpoints::replay_message))
        .routes(routes!(webhook_endpoints::recover))
        .routes(routes!(admin_webhooks::search_inbound))
        .routes(routes!(admin_webhooks::get_inbound))
        .routes(routes!(routing::get_routing, routing::put_routing))
        .routes(routes!(routing::routing_history))
        .routes(routes!(routing::routing_health))
        .routes(routes!(routing::routing_success_rate))
        .routes(routes!(risk::get_rules, risk::put_rules))
        .routes(routes!(risk::rules_history))
        .routes(routes!(risk::backtest))
        .routes(routes!(cases::list_cases))
        .routes(routes!(cases::get_case))
        .routes(routes!(cases::export_case))
        .routes(routes!(cases::list_alerts))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::retry_job))
        .route_layer(from_fn_with_state(state.clone(), auth::middleware));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(authenticated)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::openapi_json))
        .routes(routes!(payments::seed_webhook))
        .routes(routes!(payments::provider_webhook))
        .route(
            "/pay/card/{payment_id}",
            axum::routing::get(crate::web::card_page::card_page).post(
                axum::handler::Handler::layer(
                    crate::web::card_page::submit_card,
                    axum::middleware::map_response(crate::web::card_page::close_connection),
                ),
            ),
        )
        .routes(routes!(crate::web::card_threeds::results))
        .route(
            "/pay/card/{payment_id}/threeds/return",
            axum::routing::post(crate::web::card_threeds::return_from_challenge),
        )
        .route(
            "/cashier/return",
            axum::routing::get(crate::web::cashier::return_page),
        )
        .route(
            "/cashier/payments/{payment_id}/events",
            axum::routing::get(payments::public_payment_events),
        )
}

/// `Json` whose rejections use the documented error body: malformed JSON is 400
/// `invalid_json`, a missing or mistyped field 422 `validation_failed`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = axum::response::Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Parsed to a value first, so that one walk finds a control character in any field
        // (ADR 30) before the typed fields are read.
        let value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_rejection(rejection).into_response()),
        };
        if let Some(pointer) = text::control_character_pointer(&value) {
            return Err(text::control_character_error(&pointer).into_response());
        }
        serde_json::from_value(value).map(ApiJson).map_err(|error| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                error.to_string(),
            )
            .into_response()
        })
    }
}

/// `Query` whose rejections use the documented error body: 422 `validation_failed`.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                rejection
                    .body_text()
                    .replace("Failed to deserialize query string: ", "query: "),
            )
            .with_details(serde_json::json!({ "field": "query" }))),
        }
    }
}

/// `Path` whose rejections use the documented error body: 422 `validation_failed` (a
/// segment that is not UTF-8 once percent-decoded).
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::validation("path", rejection.body_text())),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            e.body_text().replace(
                "Failed to deserialize the JSON body into the target type: ",
                "",
            ),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than allowed",
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
    }
}

/// An audit note: at most 500 characters.
pub fn check_note(note: Option<&str>) -> Result<(), ApiError> {
    if note.is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::validation("note", "at most 500 characters"));
    }
    Ok(())
}

/// The cursor of a list of versions (the last version of the previous page).
pub fn version_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|cursor| {
            cursor
                .parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| ApiError::validation("cursor", "not a cursor of this list"))
        })
        .transpose()
}

/// Which page of a list: the page size and where the previous page ended.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (`pagination.page_size_default`, at most `pagination.page_size_max`).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The page size asked for, or the default; 422 outside 1..=`page_size_max`.
pub fn page_limit(
    config: &crate::config::PaginationConfig,
    limit: Option<u32>,
) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(config.page_size_default);
    if limit == 0 || limit > config.page_size_max {
        return Err(ApiError::validation(
            "limit",
            format!("must be between 1 and {}", config.page_size_max),
        ));
    }
    Ok(limit)
}

/// Cuts rows fetched as `limit + 1` to a page of `limit`; returns the cursor of its last row
/// when more follow.
pub fn split_page<T>(
    rows: &mut Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> String,
) -> Option<String> {
    if rows.len() <= limit as usize {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(cursor_of)
}

/// An opaque cursor for lists ordered by `(created_at_ms, id)`, newest first.
pub fn encode_keyset_cursor(created_at_ms: i64, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at_ms}:{id}"))
}

/// Reads a cursor made by [`encode_keyset_cursor`]; 422 for anything else.
pub fn decode_keyset_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (ms, id) = text.split_once(':')?;
            Some((ms.parse().ok()?, id.to_string()))
        })
        .ok_or_else(|| ApiError::validation("cursor", "is not a cursor this API returned"))
}

/// Checks a caller-chosen id field.
pub fn external_id(field: &str, value: &str) -> Result<(), ApiError> {
    kassa_core::ids::validate_external(value)
        .map_err(|e| ApiError::validation(field, e.to_string()))
}

/// Parses an id the request names into its type, or a 422 naming the field.
pub fn parse_id<T: std::str::FromStr<Err = kassa_core::ids::IdError>>(
    field: &str,
    value: &str,
) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|e: kassa_core::ids::IdError| ApiError::validation(field, e.to_string()))
}

pub use crate::views::rfc3339;

/// Sends an answer exactly as the use case stored it for an `Idempotency-Key`.
pub fn send_answer(answer: crate::views::Answer) -> axum::response::Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}
