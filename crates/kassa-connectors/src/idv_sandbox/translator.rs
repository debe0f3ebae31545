//! The sandbox ID provider's requests and answers. Pure.
//!
//! `POST /applicants` `{"external_user_id", "level"}` → `{"id", …}`;
//! `POST /applicants/{id}/verification` → `{"url", …}`. Requests are signed like the
//! sandbox PSP's (`X-Kassa-Signature`, crate::signing).

use reqwest::Method;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::identity::{IdentityOperation, IdentityOutcome, IdentityTranslator};
use crate::provider::ProviderError;
use crate::signing;
use crate::translator::{CallContext, ReplaySafety};
use crate::transport::{HttpRequest, HttpResponse};

/// Builds the sandbox ID provider's signed requests and reads its answers.
pub struct IdvSandboxTranslator {
    api_secret: SecretString,
    /// The API's path below the origin, without a trailing slash.
    path_prefix: String,
}

impl IdvSandboxTranslator {
    /// A translator signing with `api_secret`, for an API under `path_prefix`.
    pub fn new(api_secret: SecretString, path_prefix: &str) -> IdvSandboxTranslator {
        IdvSandboxTranslator {
            api_secret,
            path_prefix: path_prefix.trim_end_matches('/').to_string(),
        }
    }
}

#[derive(Serialize)]
struct CreateApplicant<'a> {
    external_user_id: &'a str,
    level: &'a str,
}

#[derive(Deserialize)]
struct ApplicantAnswer {
    id: String,
    external_user_id: String,
}

#[derive(Deserialize)]
struct VerificationAnswer {
    applicant_id: String,
    url: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    message: String,
}

impl IdentityTranslator for IdvSandboxTranslator {
    type Request = HttpRequest;
    type Response = HttpResponse;

    /// The provider keys an applicant by Kassa's check id and answers the same page for the
    /// same applicant, so a repeat creates nothing twice.
    fn replay_safety(&self, _operation: &IdentityOperation<'_>) -> ReplaySafety {
        ReplaySafety::Safe
    }

    fn encode(
        &self,
        operation: &IdentityOperation<'_>,
        context: &CallContext,
    ) -> Result<HttpRequest, ProviderError> {
        let (path, body) = match operation {
            IdentityOperation::CreateApplicant { external_id, level } => {
                let body = CreateApplicant {
                    external_user_id: external_id,
                    level: level.as_str(),
                };
                let body = serde_json::to_vec(&body)
                    .map_err(|error| ProviderError::Protocol(error.to_string()))?;
                ("/applicants".to_string(), body)
            }
            IdentityOperation::StartVerification { applicant_id } => {
                let segment: String =
                    form_urlencoded::byte_serialize(applicant_id.as_bytes()).collect();
                (
                    format!("/applicants/{segment}/verification"),
                    b"{}".to_vec(),
                )
            }
        };
        let path_and_query = format!("{}{path}", self.path_prefix);
        signing::signed_http_request(
            &self.api_secret,
            Method::POST,
            path_and_query,
            body,
            context,
        )
    }

    fn decode(
        &self,
        operation: &IdentityOperation<'_>,
        response: HttpResponse,
    ) -> Result<IdentityOutcome, ProviderError> {
        let (status, body) = (response.status, response.body.as_slice());
        if status.is_server_error() {
            return Err(ProviderError::Unavailable(format!("answered {status}")));
        }
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorAnswer>(body) {
                Ok(error) => ProviderError::Rejected {
                    code: error.error,
                    message: error.message,
                },
                Err(_) => ProviderError::Rejected {
                    code: format!("http_{}", status.as_u16()),
                    message: String::from_utf8_lossy(body).chars().take(200).collect(),
                },
            });
        }
        let protocol = |error: serde_json::Error| ProviderError::Protocol(error.to_string());
        match operation {
            IdentityOperation::CreateApplicant { external_id, .. } => {
                let answer: ApplicantAnswer = serde_json::from_slice(body).map_err(protocol)?;
                if answer.external_user_id != *external_id || answer.id.is_empty() {
                    return Err(ProviderError::Protocol(format!(
                        "asked for applicant {external_id:?}, the answer is about {:?}",
                        answer.external_user_id
                    )));
                }
                Ok(IdentityOutcome::ApplicantCreated {
                    applicant_id: answer.id,
                })
            }
            IdentityOperation::StartVerification { applicant_id } => {
                let answer: VerificationAnswer = serde_json::from_slice(body).map_err(protocol)?;
                let url_ok = reqwest::Url::parse(&answer.url)
                    .is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
                if answer.applicant_id != *applicant_id || !url_ok {
                    return Err(ProviderError::Protocol(format!(
                        "a verification page for {applicant_id:?} came back as {:?} for {:?}",
                        answer.url, answer.applicant_id
                    )));
                }
                Ok(IdentityOutcome::VerificationStarted { url: answer.url })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_core::kyc::KycLevel;
    use reqwest::StatusCode;

    fn context() -> CallContext {
        CallContext {
            now_unix_s: 1_760_694_060,
            nonce: "n0nce".into(),
            attempt: 1,
        }
    }

    fn translator() -> IdvSandboxTranslator {
        IdvSandboxTranslator::new(SecretString::from("idv_api_secret"), "/idv/")
    }

    #[test]
    fn create_applicant_is_a_signed_json_post_keyed_by_the_check() {
        let operation = IdentityOperation::CreateApplicant {
            external_id: "kyc_1",
            level: KycLevel::Enhanced,
        };
        let request = translator().encode(&operation, &context()).unwrap();
        assert_eq!(request.path_and_query, "/idv/applicants");
        assert_eq!(
            request.body,
            br#"{"external_user_id":"kyc_1","level":"enhanced"}"#
        );
        let expected = signing::sign_request(
            b"idv_api_secret",
            "POST",
            "/idv/applicants",
            1_760_694_060,
            "n0nce",
            &request.body,
        );
        assert_eq!(
            request.headers[signing::SIGNATURE_HEADER],
            expected.as_str()
        );
    }

    #[test]
    fn answers_about_another_applicant_are_a_protocol_error() {
        let operation = IdentityOperation::CreateApplicant {
            external_id: "kyc_1",
            level: KycLevel::Basic,
        };
        let answer = |body: &str| HttpResponse {
            status: StatusCode::CREATED,
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            translator().decode(
                &operation,
                answer(r#"{"id":"app_1","external_user_id":"kyc_1"}"#)
            ),
            Ok(IdentityOutcome::ApplicantCreated {
                applicant_id: "app_1".into()
            })
        );
        assert!(matches!(
            translator().decode(
                &operation,
                answer(r#"{"id":"app_2","external_user_id":"kyc_2"}"#)
            ),
            Err(ProviderError::Protocol(_))
        ));
        let refused = HttpResponse {
            status: StatusCode::UNAUTHORIZED,
            headers: Default::default(),
            body: br#"{"error":"invalid_signature","message":"no"}"#.to_vec(),
        };
        assert!(matches!(
            translator().decode(&operation, refused),
            Err(ProviderError::Rejected { code, .. }) if code == "invalid_signature"
        ));
    }
}
