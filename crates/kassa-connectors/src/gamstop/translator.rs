//! GAMSTOP's request and answer. Pure.
//!
//! `POST {endpoint}` with `Content-Type: application/x-www-form-urlencoded`, the operator's
//! `X-API-Key` and Kassa's check id as `X-Trace-Id`; the body `firstName`, `lastName`,
//! `dateOfBirth` (`YYYY-MM-DD`), `email`, `postcode` and, when known, `mobile`. The answer is
//! `200` with `X-Exclusion: Y` (excluded), `N` (not registered) or `P` (previously excluded)
//! and `X-Unique-Id` (GAMSTOP's id of the answer).

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use crate::provider::ProviderError;
use crate::register::{
    refused_status, NamedRegister, RegisterAnswer, RegisterQuestion, RegisterTranslator,
};
use crate::translator::CallContext;
use crate::transport::{HttpRequest, HttpResponse};
use kassa_core::register::{PlayerIdentity, RegisterOutcome};

/// The answer header carrying the outcome.
pub const EXCLUSION_HEADER: &str = "x-exclusion";
/// The answer header carrying GAMSTOP's id of the answer.
pub const UNIQUE_ID_HEADER: &str = "x-unique-id";
/// Longest `X-Unique-Id` taken; GAMSTOP's are UUID-sized.
const UNIQUE_ID_LEN_MAX: usize = 128;

/// Builds GAMSTOP's requests and reads its answers.
pub struct GamstopTranslator {
    api_key: SecretString,
    /// The endpoint's path, e.g. `/v2`.
    path: String,
}

impl GamstopTranslator {
    /// A translator sending `api_key` to the endpoint at `path`.
    pub fn new(api_key: SecretString, path: &str) -> GamstopTranslator {
        GamstopTranslator {
            api_key,
            path: path.to_string(),
        }
    }
}

/// The one value of header `name`; none or several is a protocol error.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ProviderError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .map_err(|_| ProviderError::Protocol(format!("{name} is not visible ASCII"))),
        (None, _) => Err(ProviderError::Protocol(format!("the answer has no {name}"))),
        (Some(_), Some(_)) => Err(ProviderError::Protocol(format!(
            "the answer has several {name} headers"
        ))),
    }
}

impl NamedRegister for GamstopTranslator {
    const KIND: &'static str = super::KIND;
}

impl RegisterTranslator for GamstopTranslator {
    type Request = HttpRequest;
    type Response = HttpResponse;

    fn missing(&self, identity: &PlayerIdentity) -> Vec<&'static str> {
        [
            ("first_name", &identity.first_name),
            ("last_name", &identity.last_name),
            ("birth_date", &identity.birth_date),
            ("email", &identity.email),
            ("postcode", &identity.postcode),
        ]
        .into_iter()
        .filter(|(_, value)| value.as_deref().is_none_or(str::is_empty))
        .map(|(name, _)| name)
        .collect()
    }

    fn encode(
        &self,
        question: &RegisterQuestion<'_>,
        _context: &CallContext,
    ) -> Result<HttpRequest, ProviderError> {
        let identity = question.identity;
        let missing = self.missing(identity);
        if !missing.is_empty() {
            return Err(ProviderError::Protocol(format!(
                "the identity lacks {}",
                missing.join(", ")
            )));
        }
        let field = |value: &Option<String>| value.clone().unwrap_or_default();
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("firstName", &field(&identity.first_name))
            .append_pair("lastName", &field(&identity.last_name))
            .append_pair("dateOfBirth", &field(&identity.birth_date))
            .append_pair("email", &field(&identity.email))
            .append_pair("postcode", &field(&identity.postcode));
        if let Some(mobile) = identity.mobile.as_deref().filter(|m| !m.is_empty()) {
            form.append_pair("mobile", mobile);
        }
        let header = |text: &str| {
            HeaderValue::from_str(text)
                .map_err(|_| ProviderError::Protocol("a header value is not visible ASCII".into()))
        };
        let mut api_key = header(self.api_key.expose_secret())?;
        api_key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert("x-api-key", api_key);
        headers.insert("x-trace-id", header(question.check_id)?);
        Ok(HttpRequest {
            method: Method::POST,
            path_and_query: self.path.clone(),
            headers,
            body: form.finish().into_bytes(),
        })
    }

    fn decode(
        &self,
        _question: &RegisterQuestion<'_>,
        response: HttpResponse,
    ) -> Result<RegisterAnswer, ProviderError> {
        if response.status != StatusCode::OK {
            return Err(refused_status(response.status));
        }
        let outcome = match single_header(&response.headers, EXCLUSION_HEADER)? {
            "Y" => RegisterOutcome::Excluded,
            "N" => RegisterOutcome::NotExcluded,
            "P" => RegisterOutcome::PreviouslyExcluded,
            other => {
                return Err(ProviderError::Protocol(format!(
                    "X-Exclusion {:?} is none of Y, N, P",
                    other.chars().take(16).collect::<String>()
                )))
            }
        };
        let reference = single_header(&response.headers, UNIQUE_ID_HEADER)?;
        if reference.is_empty() || reference.len() > UNIQUE_ID_LEN_MAX {
            return Err(ProviderError::Protocol(format!(
                "X-Unique-Id must be 1 to {UNIQUE_ID_LEN_MAX} characters"
            )));
        }
        Ok(RegisterAnswer {
            outcome,
            reference: reference.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translator() -> GamstopTranslator {
        GamstopTranslator::new(SecretString::from("gamstop_key"), "/v2")
    }

    fn identity() -> PlayerIdentity {
        PlayerIdentity {
            first_name: Some("Harry".into()),
            last_name: Some("Potter".into()),
            birth_date: Some("1970-01-01".into()),
            email: Some("harry.potter@example.com".into()),
            postcode: Some("HP1 1AA".into()),
            mobile: None,
            national_id: None,
        }
    }

    fn context() -> CallContext {
        CallContext {
            now_unix_s: 1_760_694_060,
            nonce: "n0nce".into(),
            attempt: 1,
        }
    }

    fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> HttpResponse {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: Vec::new(),
        }
    }

    fn decode(response: HttpResponse) -> Result<RegisterAnswer, ProviderError> {
        let identity = identity();
        let question = RegisterQuestion {
            check_id: "rchk_1",
            identity: &identity,
        };
        translator().decode(&question, response)
    }

    #[test]
    fn a_check_is_a_form_post_with_the_api_key_and_the_check_id() {
        let identity = identity();
        let question = RegisterQuestion {
            check_id: "rchk_1",
            identity: &identity,
        };
        let request = translator().encode(&question, &context()).unwrap();
        assert_eq!(
            (request.method, request.path_and_query.as_str()),
            (Method::POST, "/v2")
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            "firstName=Harry&lastName=Potter&dateOfBirth=1970-01-01\
             &email=harry.potter%40example.com&postcode=HP1+1AA"
        );
        assert_eq!(request.headers["x-api-key"], "gamstop_key");
        assert!(request.headers["x-api-key"].is_sensitive());
        assert_eq!(request.headers["x-trace-id"], "rchk_1");
        assert_eq!(
            request.headers[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
    }

    #[test]
    fn an_identity_missing_a_field_is_not_sent() {
        let mut identity = identity();
        identity.email = None;
        identity.postcode = Some(String::new());
        assert_eq!(translator().missing(&identity), ["email", "postcode"]);
        let question = RegisterQuestion {
            check_id: "rchk_1",
            identity: &identity,
        };
        assert!(translator().encode(&question, &context()).is_err());
    }

    #[test]
    fn y_n_and_p_are_the_three_outcomes() {
        for (flag, outcome) in [
            ("Y", RegisterOutcome::Excluded),
            ("N", RegisterOutcome::NotExcluded),
            ("P", RegisterOutcome::PreviouslyExcluded),
        ] {
            let headers = [(EXCLUSION_HEADER, flag), (UNIQUE_ID_HEADER, "u-1")];
            let decoded = decode(answer(200, &headers)).unwrap();
            assert_eq!(decoded.outcome, outcome);
            assert_eq!(decoded.reference, "u-1");
        }
    }

    #[test]
    fn anything_else_is_an_error_never_not_excluded() {
        let bad: Vec<HttpResponse> = vec![
            answer(200, &[(UNIQUE_ID_HEADER, "u-1")]),
            answer(200, &[(EXCLUSION_HEADER, "y"), (UNIQUE_ID_HEADER, "u-1")]),
            answer(200, &[(EXCLUSION_HEADER, ""), (UNIQUE_ID_HEADER, "u-1")]),
            answer(200, &[(EXCLUSION_HEADER, "NO"), (UNIQUE_ID_HEADER, "u-1")]),
            answer(
                200,
                &[
                    (EXCLUSION_HEADER, "N"),
                    (EXCLUSION_HEADER, "Y"),
                    (UNIQUE_ID_HEADER, "u"),
                ],
            ),
            answer(200, &[(EXCLUSION_HEADER, "N")]),
            answer(200, &[(EXCLUSION_HEADER, "N"), (UNIQUE_ID_HEADER, "")]),
            answer(204, &[(EXCLUSION_HEADER, "N"), (UNIQUE_ID_HEADER, "u-1")]),
        ];
        for response in bad {
            let shown = format!("{response:?}");
            assert!(
                matches!(
                    decode(response),
                    Err(ProviderError::Protocol(_) | ProviderError::Rejected { .. })
                ),
                "{shown}"
            );
        }
        assert!(matches!(
            decode(answer(503, &[])),
            Err(ProviderError::Unavailable(_))
        ));
        assert!(matches!(
            decode(answer(429, &[])),
            Err(ProviderError::Unavailable(_))
        ));
        assert!(matches!(
            decode(answer(403, &[])),
            Err(ProviderError::Rejected { code, .. }) if code == "http_403"
        ));
    }
}
