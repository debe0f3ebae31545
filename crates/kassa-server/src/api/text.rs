//! Control characters are refused at the edge (ADR 30): no JSON string or key, path segment
//! or query value the API takes may contain one (`char::is_control`: C0 including tab and
//! newlines, DEL, C1). PostgreSQL cannot store NUL in text at all, and no field of this API
//! is free text where a line break means something, so one rule holds everywhere and both
//! backends answer the same 422.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;

/// Most nesting walked; deeper values are refused (serde_json already stops at 128).
const DEPTH_MAX: usize = 128;

/// The JSON pointer (RFC 6901) of the first string or key in `value` holding a control
/// character, if any.
pub fn control_character_pointer(value: &Value) -> Option<String> {
    find(value, &mut String::new(), 0)
}

fn find(value: &Value, pointer: &mut String, depth: usize) -> Option<String> {
    if depth > DEPTH_MAX {
        return Some(pointer.clone());
    }
    match value {
        Value::String(text) if has_control(text) => Some(pointer.clone()),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            with_segment(pointer, &index.to_string(), |p| find(item, p, depth + 1))
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            with_segment(pointer, key, |p| {
                if has_control(key) {
                    Some(p.clone())
                } else {
                    find(item, p, depth + 1)
                }
            })
        }),
        _ => None,
    }
}

fn with_segment<T>(pointer: &mut String, segment: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let length = pointer.len();
    pointer.push('/');
    pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    let found = f(pointer);
    pointer.truncate(length);
    found
}

/// Whether `text` holds a control character.
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// The 422 for a control character at `field` (a JSON pointer, `path` or a query name).
pub fn control_character_error(field: &str) -> ApiError {
    ApiError::validation(
        field,
        "must not contain control characters (U+0000 to U+001F, U+007F to U+009F)",
    )
}

/// Refuses a request whose decoded path or query holds a control character, before any
/// handler sees it.
pub async fn refuse_control_characters(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
    if has_control(&path) {
        return control_character_error("path").into_response();
    }
    if let Some(query) = uri.query() {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if has_control(&name) || has_control(&value) {
                let field = if has_control(&name) { "query" } else { &*name };
                return control_character_error(field).into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn points_at_the_first_string_or_key_with_a_control_character() {
        assert_eq!(
            control_character_pointer(&json!({"a": "ok", "b": [1, "x"]})),
            None
        );
        assert_eq!(
            control_character_pointer(&json!({"meta": {"session_id": "a\u{0}b"}})),
            Some("/meta/session_id".into())
        );
        assert_eq!(
            control_character_pointer(&json!({"list": ["ok", "tab\there"]})),
            Some("/list/1".into())
        );
        assert_eq!(
            control_character_pointer(&json!({"a/b~": "\u{7f}"})),
            Some("/a~1b~0".into())
        );
        assert_eq!(
            control_character_pointer(&json!({"k\u{1}": "v"})),
            Some("/k\u{1}".into())
        );
        assert_eq!(
            control_character_pointer(&json!("\u{85}")),
            Some(String::new())
        );
        assert_eq!(control_character_pointer(&json!("€ ü 日本")), None);
    }
}
