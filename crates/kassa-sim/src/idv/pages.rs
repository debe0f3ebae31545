//! The hosted verification page: server-rendered HTML that works without JavaScript, with
//! labels and stable element ids for browser tests; and the signed webhook its submission
//! sends.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::decide::{decide, Decision, Submission};
use super::Shared;
use crate::psp::escape;

/// The webhook's signature header.
pub const SIGNATURE_HEADER: &str = "X-Idv-Signature";
/// Longest wait between two delivery attempts.
const RETRY_BACKOFF_MS_MAX: u64 = 30_000;
/// Longest value taken in a form field.
const FIELD_LEN_MAX: usize = 200;

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Kassa sandbox ID provider</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}}\
label{{display:block;font-weight:600;margin-top:1rem}}input,select{{font-size:1rem;padding:.4rem;\
width:100%}}button{{margin-top:1.5rem;font-size:1rem;padding:.6rem 1.2rem}}\
.errors{{border:2px solid #b00020;padding:.5rem 1rem}}</style></head>\
<body><main>\n<p>Sandbox: no real identity is checked.</p>\n{body}\n</main></body></html>\n",
        title = escape(title),
    );
    (status, Html(html)).into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<h1>No such verification</h1>",
    )
}

fn form(id: &str, level: &str, error: Option<&str>) -> String {
    let errors = error.map_or(String::new(), |e| {
        format!(
            "<div class=\"errors\" role=\"alert\" id=\"errors\">{}</div>",
            escape(e)
        )
    });
    let funds = if level == "enhanced" {
        "<label for=\"source_of_funds\">Source of funds</label>\
<select id=\"source_of_funds\" name=\"source_of_funds\" required>\
<option value=\"salary\">Salary</option><option value=\"savings\">Savings</option>\
<option value=\"business\">Business income</option>\
<option value=\"unexplained\">Prefer not to say</option></select>"
    } else {
        ""
    };
    format!(
        "<h1>Verify your identity</h1>{errors}\
<form method=\"post\" action=\"/verify/{id}\" id=\"verification-form\">\
<label for=\"first_name\">First name</label><input id=\"first_name\" name=\"first_name\" required autocomplete=\"given-name\">\
<label for=\"last_name\">Last name</label><input id=\"last_name\" name=\"last_name\" required autocomplete=\"family-name\">\
<label for=\"birth_date\">Date of birth</label><input id=\"birth_date\" name=\"birth_date\" type=\"date\" required>\
<label for=\"document_number\">Passport or ID card number</label><input id=\"document_number\" name=\"document_number\" required>\
<label for=\"document_country\">Country that issued it</label>\
<select id=\"document_country\" name=\"document_country\" required>{countries}</select>\
<label for=\"document_file\">Document photo (file name)</label><input id=\"document_file\" name=\"document_file\" required>\
{funds}<button type=\"submit\" id=\"submit\">Submit for review</button></form>",
        id = escape(id),
        countries = country_options(),
    )
}

/// The countries the sandbox reviews documents of (ISO 3166-1 alpha-2, with their names).
const DOCUMENT_COUNTRIES: &[(&str, &str)] = &[
    ("MT", "Malta"),
    ("GB", "United Kingdom"),
    ("SE", "Sweden"),
    ("FI", "Finland"),
    ("DE", "Germany"),
    ("NL", "Netherlands"),
    ("IE", "Ireland"),
    ("EE", "Estonia"),
    ("US", "United States"),
];

fn country_options() -> String {
    DOCUMENT_COUNTRIES
        .iter()
        .map(|(code, name)| format!("<option value=\"{code}\">{name}</option>"))
        .collect()
}

/// `GET /verify/{id}`: the form, or where the review stands.
pub(super) async fn verification_page(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Response {
    let applicant = shared
        .applicants
        .lock()
        .expect("lock")
        .by_id
        .get(&id)
        .cloned();
    let Some(applicant) = applicant else {
        return not_found();
    };
    if applicant.review_status != "init" {
        return page(StatusCode::OK, "Submitted", SUBMITTED);
    }
    page(
        StatusCode::OK,
        "Verify your identity",
        &form(&id, &applicant.level, None),
    )
}

const SUBMITTED: &str = "<h1 id=\"submitted\">Thank you</h1>\
<p>Your documents are under review. You can close this page.</p>";

#[derive(Deserialize)]
pub(super) struct SubmittedForm {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    document_number: String,
    #[serde(default)]
    document_file: String,
    document_country: Option<String>,
    source_of_funds: Option<String>,
}

fn submission(form: SubmittedForm) -> Result<Submission, &'static str> {
    let fields = [
        &form.first_name,
        &form.last_name,
        &form.birth_date,
        &form.document_number,
        &form.document_file,
    ];
    if fields
        .iter()
        .any(|f| f.trim().is_empty() || f.len() > FIELD_LEN_MAX)
    {
        return Err("Please fill in every field (at most 200 characters each).");
    }
    let known_country = |code: &str| DOCUMENT_COUNTRIES.iter().any(|(known, _)| *known == code);
    if form
        .document_country
        .as_deref()
        .is_some_and(|code| !known_country(code))
    {
        return Err("Please choose the country that issued the document from the list.");
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if time::Date::parse(&form.birth_date, date).is_err() {
        return Err("The date of birth must be a date (YYYY-MM-DD).");
    }
    Ok(Submission {
        first_name: form.first_name,
        last_name: form.last_name,
        birth_date: form.birth_date,
        document_number: form.document_number,
        document_country: form.document_country,
        document_file: form.document_file,
        source_of_funds: form.source_of_funds,
    })
}

/// `POST /verify/{id}`: reviews the submission and sends the result by webhook.
pub(super) async fn submit(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    Form(submitted): Form<SubmittedForm>,
) -> Response {
    let mut applicants = shared.applicants.lock().expect("lock");
    let Some(applicant) = applicants.by_id.get_mut(&id) else {
        return not_found();
    };
    if applicant.review_status != "init" {
        return page(StatusCode::OK, "Submitted", SUBMITTED);
    }
    let submission = match submission(submitted) {
        Ok(submission) => submission,
        Err(why) => {
            let body = form(&id, &applicant.level, Some(why));
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Verify your identity",
                &body,
            );
        }
    };
    applicant.review_status = "completed";
    let decision = decide(&applicant.level, &submission);
    let body = result_body(applicant, &decision, submission.document_country.as_deref());
    drop(applicants);
    send_result(&shared, body);
    page(StatusCode::OK, "Submitted", SUBMITTED)
}

fn result_body(
    applicant: &super::Applicant,
    decision: &Decision,
    document_country: Option<&str>,
) -> Vec<u8> {
    let body = json!({
        "event_id": kassa_core::ids::generate("idvevt"),
        "type": "applicant.reviewed",
        "applicant_id": applicant.id,
        "external_user_id": applicant.external_user_id,
        "level": applicant.level,
        "review_result": decision.review_result,
        "reason": decision.reason,
        "checks": decision.checks,
        "document_country": document_country,
    });
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

/// The `X-Idv-Signature` value for `body` sent at `timestamp_unix_s`.
pub fn sign(secret: &[u8], timestamp_unix_s: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp_unix_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp_unix_s},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Sends the result after the review delay, signed afresh on every attempt (the timestamp
/// is signed), with bounded retries on 5xx and transport errors; a 4xx is final.
fn send_result(shared: &Shared, body: Vec<u8>) {
    let Some(url) = shared.config.webhook_url.clone() else {
        tracing::debug!("no webhook_url: result not sent");
        return;
    };
    let task = shared.clone();
    crate::serving::spawn_until_stopped(&shared.stopping, async move {
        let config = &task.config;
        tokio::time::sleep(Duration::from_millis(config.webhook_delay_ms)).await;
        let mut backoff_ms = config.webhook_retry_backoff_ms;
        let attempts_max = config.webhook_attempts_max.max(1);
        for attempt in 1..=attempts_max {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let signature = sign(config.webhook_secret.as_bytes(), now, &body);
            let sent = task
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) if answer.status().is_client_error() => {
                    tracing::warn!(status = %answer.status(), "IDV webhook refused, not retried");
                    return;
                }
                Ok(answer) => {
                    tracing::warn!(attempt, status = %answer.status(), "IDV webhook failed")
                }
                Err(error) => tracing::warn!(attempt, %error, "IDV webhook not delivered"),
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
        }
        tracing::error!(attempts_max, "IDV webhook given up");
    });
}
