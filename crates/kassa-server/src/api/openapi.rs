//! Completes the generated OpenAPI document with what the layers in [`super::router`] add to
//! every operation, so the document states every answer a client can get: the auth layer's
//! 401/403/429, the JSON body's 400/413/415/422, the checks of query and path parameters (422)
//! and the page-size limits from the configuration. The handlers' annotations say only what
//! is particular to each operation.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder,
};

use crate::config::PaginationConfig;

/// Pattern of an id in a path: an external id without `/`, not starting with `.` (a `/`
/// or a dot segment would change the path itself).
pub const PATH_ID_PATTERN: &str = "^[A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,254}$";
/// Pattern of an `Idempotency-Key`: 1 to 255 printable ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[\\x21-\\x7E]{1,255}$";
/// Path parameters that name an object by id.
const PATH_IDS: &[&str] = &[
    "player_id",
    "payment_id",
    "payout_id",
    "job_id",
    "endpoint_id",
    "event_id",
    "delivery_id",
    "case_id",
];

/// Adds the answers and limits every operation shares; keeps what an operation says itself.
pub fn complete(document: &mut OpenApi, pagination: &PaginationConfig) {
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_layer_responses(operation);
            limit_page_size(operation, pagination);
            constrain_path_ids(operation);
        }
    }
}

fn add_layer_responses(operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = operation.request_body.is_some();
    let has_parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|p| p.iter().any(|p| p.parameter_in != ParameterIn::Header));
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    };
    if secured {
        add(
            "401",
            "unauthorized: no `Authorization: Bearer <key>`, or a key Kassa does not know",
        );
        add(
            "403",
            "forbidden: an admin key on a merchant endpoint, a merchant key on an admin \
             endpoint, or an admin key without the role needed",
        );
    }
    if has_body {
        add("400", "invalid_json: the body is not JSON");
        add(
            "413",
            "payload_too_large: the body is over `http.body_limit_bytes`",
        );
        add(
            "415",
            "unsupported_media_type: the body is not sent as application/json",
        );
    }
    if has_body || has_parameters {
        add("422", "validation_failed: a field or parameter is invalid");
    }
    if secured {
        let retry_after = HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(
                utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::Type::Integer),
            ))
            .description(Some("Seconds to wait before the next request"))
            .build();
        let limited = ResponseBuilder::new()
            .description("rate_limited: too many requests for this API key")
            .header("Retry-After", retry_after)
            .content("application/json", error_content())
            .build();
        responses
            .entry("429".to_string())
            .or_insert(RefOr::T(limited));
    }
}

fn error_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build()
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", error_content())
            .build(),
    )
}

/// `limit` parameters take 1 to the configured page size unless the operation says otherwise.
fn limit_page_size(operation: &mut Operation, pagination: &PaginationConfig) {
    let Some(parameters) = operation.parameters.as_mut() else {
        return;
    };
    for parameter in parameters.iter_mut().filter(|p| p.name == "limit") {
        if let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut() {
            // utoipa says `minimum: 0` for an unsigned integer; 0 is refused.
            schema.minimum = Some(1.into());
            schema
                .maximum
                .get_or_insert(pagination.page_size_max.into());
            if parameter.description.is_none() {
                parameter.description = Some(format!(
                    "Page size, {} by default",
                    pagination.page_size_default
                ));
            }
        }
    }
}

/// Path ids and `Idempotency-Key` headers get the patterns the handlers check.
fn constrain_path_ids(operation: &mut Operation) {
    let Some(parameters) = operation.parameters.as_mut() else {
        return;
    };
    for parameter in parameters.iter_mut() {
        let is_key =
            parameter.parameter_in == ParameterIn::Header && parameter.name == "Idempotency-Key";
        if let (true, Some(RefOr::T(Schema::Object(schema)))) = (is_key, parameter.schema.as_mut())
        {
            schema.pattern = Some(IDEMPOTENCY_KEY_PATTERN.to_string());
        }
    }
    let ids = parameters
        .iter_mut()
        .filter(|p| p.parameter_in == ParameterIn::Path && PATH_IDS.contains(&p.name.as_str()));
    for parameter in ids {
        if let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut() {
            schema.pattern = Some(PATH_ID_PATTERN.to_string());
        }
    }
}
