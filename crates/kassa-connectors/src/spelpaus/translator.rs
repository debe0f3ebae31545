//! Spelpaus's request and answer. Pure.
//!
//! `POST {prefix}/api/blocking-info/{actor_id}` with `Content-Type: application/json`, the
//! operator's key as `X-Api-Key` and the body `{"requestId": <Kassa's check id>,
//! "subjectId": <12-digit personal identity number>}`. The answer is `200`
//! `{"isBlocked": true|false, "requestId": <the same>, "responseId": <Spelpaus's id>}`; a
//! malformed request is answered `400` with the fields' errors.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::provider::ProviderError;
use crate::register::{
    refused_status, NamedRegister, RegisterAnswer, RegisterQuestion, RegisterTranslator,
};
use crate::translator::CallContext;
use crate::transport::{HttpRequest, HttpResponse};
use kassa_core::register::{PlayerIdentity, RegisterOutcome};

/// Longest `responseId` taken; Spelpaus's are 32 hex digits.
const RESPONSE_ID_LEN_MAX: usize = 128;

/// Builds Spelpaus's requests and reads its answers.
pub struct SpelpausTranslator {
    api_key: SecretString,
    /// The request path, e.g. `/api/blocking-info/20`.
    path: String,
}

impl SpelpausTranslator {
    /// A translator for the API under `prefix`, asking as actor `actor_id` with `api_key`.
    pub fn new(api_key: SecretString, prefix: &str, actor_id: &str) -> SpelpausTranslator {
        let prefix = prefix.trim_end_matches('/');
        SpelpausTranslator {
            api_key,
            path: format!("{prefix}/api/blocking-info/{actor_id}"),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockingInfoRequest<'a> {
    request_id: &'a str,
    subject_id: &'a str,
}

/// The answer, strictly typed: `isBlocked` must be a JSON boolean, not `"false"` or `0`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockingInfoAnswer {
    is_blocked: bool,
    request_id: String,
    response_id: String,
}

impl NamedRegister for SpelpausTranslator {
    const KIND: &'static str = super::KIND;
}

impl RegisterTranslator for SpelpausTranslator {
    type Request = HttpRequest;
    type Response = HttpResponse;

    fn missing(&self, identity: &PlayerIdentity) -> Vec<&'static str> {
        match identity.national_id.as_deref() {
            Some(id) if !id.is_empty() => Vec::new(),
            _ => vec!["national_id"],
        }
    }

    fn encode(
        &self,
        question: &RegisterQuestion<'_>,
        _context: &CallContext,
    ) -> Result<HttpRequest, ProviderError> {
        let subject_id = question
            .identity
            .national_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProviderError::Protocol("the identity lacks national_id".into()))?;
        let body = serde_json::to_vec(&BlockingInfoRequest {
            request_id: question.check_id,
            subject_id,
        })
        .map_err(|error| ProviderError::Protocol(error.to_string()))?;
        let mut api_key = HeaderValue::from_str(self.api_key.expose_secret())
            .map_err(|_| ProviderError::Protocol("api_key is not visible ASCII".into()))?;
        api_key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-api-key", api_key);
        Ok(HttpRequest {
            method: Method::POST,
            path_and_query: self.path.clone(),
            headers,
            body,
        })
    }

    fn decode(
        &self,
        question: &RegisterQuestion<'_>,
        response: HttpResponse,
    ) -> Result<RegisterAnswer, ProviderError> {
        if response.status != StatusCode::OK {
            return Err(refused_status(response.status));
        }
        // The parser's message names what was wrong, never the body (no personal data).
        let answer: BlockingInfoAnswer = serde_json::from_slice(&response.body).map_err(|e| {
            ProviderError::Protocol(format!("not a blocking-info answer ({:?})", e.classify()))
        })?;
        if answer.request_id != question.check_id {
            return Err(ProviderError::Protocol(
                "the answer is about another request".into(),
            ));
        }
        if answer.response_id.is_empty() || answer.response_id.len() > RESPONSE_ID_LEN_MAX {
            return Err(ProviderError::Protocol(format!(
                "responseId must be 1 to {RESPONSE_ID_LEN_MAX} characters"
            )));
        }
        Ok(RegisterAnswer {
            outcome: match answer.is_blocked {
                true => RegisterOutcome::Excluded,
                false => RegisterOutcome::NotExcluded,
            },
            reference: answer.response_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translator() -> SpelpausTranslator {
        SpelpausTranslator::new(SecretString::from("spelpaus_key"), "", "20")
    }

    fn identity() -> PlayerIdentity {
        PlayerIdentity {
            national_id: Some("198112189876".into()),
            ..Default::default()
        }
    }

    fn decode(status: u16, body: &str) -> Result<RegisterAnswer, ProviderError> {
        let identity = identity();
        let question = RegisterQuestion {
            check_id: "rchk_1",
            identity: &identity,
        };
        let response = HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        };
        translator().decode(&question, response)
    }

    #[test]
    fn a_check_posts_the_request_id_and_the_personal_number_as_the_actor() {
        let identity = identity();
        let question = RegisterQuestion {
            check_id: "rchk_1",
            identity: &identity,
        };
        let context = CallContext {
            now_unix_s: 0,
            nonce: "n".into(),
            attempt: 1,
        };
        let request = translator().encode(&question, &context).unwrap();
        assert_eq!(request.path_and_query, "/api/blocking-info/20");
        assert_eq!(
            request.body,
            br#"{"requestId":"rchk_1","subjectId":"198112189876"}"#
        );
        assert_eq!(request.headers["x-api-key"], "spelpaus_key");
        assert_eq!(
            translator().missing(&PlayerIdentity::default()),
            ["national_id"]
        );
    }

    #[test]
    fn blocked_or_not() {
        let answer = decode(
            200,
            r#"{"isBlocked":true,"requestId":"rchk_1","responseId":"d9a60f1c"}"#,
        )
        .unwrap();
        assert_eq!(answer.outcome, RegisterOutcome::Excluded);
        assert_eq!(answer.reference, "d9a60f1c");
        let answer = decode(
            200,
            r#"{"isBlocked":false,"requestId":"rchk_1","responseId":"517c772a"}"#,
        )
        .unwrap();
        assert_eq!(answer.outcome, RegisterOutcome::NotExcluded);
    }

    #[test]
    fn anything_else_is_an_error_never_not_blocked() {
        for body in [
            "",
            "null",
            "[]",
            r#"{"requestId":"rchk_1","responseId":"r"}"#,
            r#"{"isBlocked":"false","requestId":"rchk_1","responseId":"r"}"#,
            r#"{"isBlocked":0,"requestId":"rchk_1","responseId":"r"}"#,
            r#"{"isBlocked":null,"requestId":"rchk_1","responseId":"r"}"#,
            r#"{"isBlocked":false,"requestId":"rchk_2","responseId":"r"}"#,
            r#"{"isBlocked":false,"requestId":"rchk_1","responseId":""}"#,
            r#"{"isBlocked":false,"requestId":"rchk_1"}"#,
        ] {
            assert!(
                matches!(decode(200, body), Err(ProviderError::Protocol(_))),
                "{body}"
            );
        }
        assert!(matches!(
            decode(400, r#"{"SubjectId":["too long"]}"#),
            Err(ProviderError::Rejected { code, .. }) if code == "http_400"
        ));
        assert!(matches!(
            decode(502, ""),
            Err(ProviderError::Unavailable(_))
        ));
    }
}
