//! The hosted payment page and the 3-D Secure challenge page: server-rendered HTML that
//! works without JavaScript, with labels and stable element ids for browser tests.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::api::cancel_pending;
use super::cards::{self, CardOutcome, ExpiryError, ThreeDs};
use super::store::{Payment, PaymentStatus, Stage};
use super::webhooks::{self, Trigger, WebhookEvent};
use super::Shared;

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;\
padding:0 1rem;color:#1a1a1a;line-height:1.5}h1{font-size:1.4rem}\
label{display:block;font-weight:600;margin-top:1rem}\
input{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;border:1px solid #555;\
border-radius:4px}input[aria-invalid=true]{border:2px solid #b00020}\
.hint{color:#444;font-size:.9rem;margin:.2rem 0 0}\
button{margin-top:1.5rem;font-size:1rem;padding:.6rem 1.2rem;border-radius:4px;\
border:0;background:#0b57d0;color:#fff;cursor:pointer}button.secondary{background:#555}\
:focus-visible{outline:3px solid #f9a825;outline-offset:2px}\
.errors{border:2px solid #b00020;padding:.5rem 1rem;border-radius:4px;background:#fdecea}\
.amount{font-size:1.2rem;font-weight:700}.sandbox{background:#fff3cd;padding:.3rem .6rem;\
border-radius:4px;font-size:.9rem}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Kassa sandbox PSP</title><style>{STYLE}</style></head>\
<body><main>\n<p class=\"sandbox\">Sandbox: no real money moves.</p>\n{body}\n</main></body></html>\n",
        title = escape(title),
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (status, Html(layout(title, body))).into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Payment not found",
        "<h1>Payment not found</h1><p>This payment link is not valid.</p>",
    )
}

/// The merchant's return URL with `payment_id` and `status` appended.
fn return_url(payment: &Payment) -> String {
    match reqwest::Url::parse(&payment.return_url) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .append_pair("payment_id", &payment.payment_id)
                .append_pair("status", payment.status.as_str());
            url.to_string()
        }
        // Checked at init; kept as given if it somehow no longer parses.
        Err(_) => payment.return_url.clone(),
    }
}

/// Shown when the hosted flow is over (or the page is revisited).
fn finished_page(payment: &Payment) -> Response {
    let body = format!(
        "<h1>Payment {status}</h1><p>This payment is {status}.</p>\
<p><a id=\"return\" href=\"{url}\">Return to the merchant</a></p>",
        status = escape(payment.status.as_str()),
        url = escape(&return_url(payment)),
    );
    page(StatusCode::OK, "Payment", &body)
}

/// Values of the card form worth showing again after an error (never the number or CVC).
#[derive(Default)]
struct Retyped<'a> {
    expiry: &'a str,
    cardholder: &'a str,
}

#[derive(Default)]
struct FieldErrors {
    card_number: Option<&'static str>,
    expiry: Option<&'static str>,
    cvc: Option<&'static str>,
    cardholder: Option<&'static str>,
}

impl FieldErrors {
    fn any(&self) -> bool {
        self.card_number.is_some()
            || self.expiry.is_some()
            || self.cvc.is_some()
            || self.cardholder.is_some()
    }
}

fn field(
    id: &str,
    name: &str,
    label: &str,
    hint: &str,
    attributes: &str,
    value: &str,
    error: Option<&str>,
) -> String {
    let error_html = match error {
        Some(error) => format!(
            "<p class=\"hint\" id=\"{id}-error\"><strong>Error:</strong> {}</p>",
            escape(error)
        ),
        None => String::new(),
    };
    let described_by = match error {
        Some(_) => format!("{id}-hint {id}-error"),
        None => format!("{id}-hint"),
    };
    format!(
        "<label for=\"{id}\">{label}</label><p class=\"hint\" id=\"{id}-hint\">{hint}</p>{error_html}\
<input id=\"{id}\" name=\"{name}\" {attributes} value=\"{value}\" required \
aria-describedby=\"{described_by}\" aria-invalid=\"{invalid}\">",
        value = escape(value),
        invalid = error.is_some(),
    )
}

fn card_form(payment: &Payment, retyped: &Retyped, errors: &FieldErrors) -> String {
    let amount = format!(
        "{} {}",
        payment.currency.format_minor(payment.amount_minor),
        payment.currency.code()
    );
    let mut summary = String::new();
    if errors.any() {
        let items: String = [
            errors.card_number,
            errors.expiry,
            errors.cvc,
            errors.cardholder,
        ]
        .into_iter()
        .flatten()
        .map(|error| format!("<li>{}</li>", escape(error)))
        .collect();
        summary = format!(
            "<div class=\"errors\" id=\"errors\" role=\"alert\" tabindex=\"-1\">\
<h2>There is a problem</h2><ul>{items}</ul></div>"
        );
    }
    let reference = escape(&payment.provider_reference);
    format!(
        "<h1>Pay by card</h1><p>Amount to pay: <span class=\"amount\" id=\"amount\">{amount}</span></p>\
{summary}<form method=\"post\" action=\"/pay/{reference}\" novalidate>{number}{expiry}{cvc}{holder}\
<button type=\"submit\" id=\"pay\">Pay {amount}</button></form>\
<form method=\"post\" action=\"/pay/{reference}/cancel\">\
<button type=\"submit\" id=\"cancel\" class=\"secondary\">Cancel and return</button></form>",
        amount = escape(&amount),
        number = field(
            "card-number",
            "card_number",
            "Card number",
            "The 12 to 19 digits on the front of your card.",
            "type=\"text\" inputmode=\"numeric\" autocomplete=\"cc-number\"",
            "",
            errors.card_number,
        ),
        expiry = field(
            "expiry",
            "expiry",
            "Expiry date",
            "Month and year, as MM/YY.",
            "type=\"text\" inputmode=\"numeric\" autocomplete=\"cc-exp\" placeholder=\"MM/YY\"",
            retyped.expiry,
            errors.expiry,
        ),
        cvc = field(
            "cvc",
            "cvc",
            "Security code (CVC)",
            "The 3 or 4 digits on the back of your card.",
            "type=\"text\" inputmode=\"numeric\" autocomplete=\"cc-csc\"",
            "",
            errors.cvc,
        ),
        holder = field(
            "cardholder",
            "cardholder",
            "Name on card",
            "As printed on the card.",
            "type=\"text\" autocomplete=\"cc-name\"",
            retyped.cardholder,
            errors.cardholder,
        ),
    )
}

/// `GET /pay/{reference}`: the card form, or where the payment stands.
pub async fn card_page(State(shared): State<Shared>, Path(reference): Path<String>) -> Response {
    let store = shared.store.lock().expect("store lock");
    let Some(payment) = store.payments.get(&reference) else {
        return not_found();
    };
    match payment.stage {
        Stage::AwaitingCard if payment.status == PaymentStatus::Pending => page(
            StatusCode::OK,
            "Pay by card",
            &card_form(payment, &Retyped::default(), &FieldErrors::default()),
        ),
        Stage::AwaitingChallenge => Redirect::to(&format!("/3ds/{reference}")).into_response(),
        _ => finished_page(payment),
    }
}

/// The card form's fields. No `Debug`: the card number must never reach a log.
#[derive(Deserialize)]
pub struct CardForm {
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    expiry: String,
    #[serde(default)]
    cvc: String,
    #[serde(default)]
    cardholder: String,
}

fn validate(form: &CardForm) -> Result<String, FieldErrors> {
    let mut errors = FieldErrors::default();
    let number = cards::normalize_card_number(&form.card_number);
    if number.is_none() {
        errors.card_number = Some(if form.card_number.trim().is_empty() {
            "Enter your card number."
        } else {
            "The card number is not valid. Check the digits and try again."
        });
    }
    match cards::check_expiry(&form.expiry, time::OffsetDateTime::now_utc()) {
        Ok(()) => {}
        Err(ExpiryError::Format) => {
            errors.expiry = Some("Enter the expiry date as MM/YY, for example 12/30.")
        }
        Err(ExpiryError::Expired) => errors.expiry = Some("The card has expired."),
    }
    if !cards::cvc_valid(&form.cvc) {
        errors.cvc = Some("Enter the 3 or 4 digit security code.");
    }
    let holder = form.cardholder.trim();
    if holder.is_empty() || holder.chars().count() > 100 {
        errors.cardholder = Some("Enter the name on the card (at most 100 characters).");
    }
    match number {
        Some(number) if !errors.any() => Ok(number),
        _ => Err(errors),
    }
}

/// Approves a payment: captured now, `authorized` then `captured` webhooks.
pub fn approve(payment: &mut Payment) -> Vec<WebhookEvent> {
    payment.status = PaymentStatus::Captured;
    payment.stage = Stage::Done;
    vec![
        WebhookEvent::payment(payment, "authorized", payment.amount_minor),
        WebhookEvent::payment(payment, "captured", payment.amount_minor),
    ]
}

/// Declines a payment with a reason: one `declined` webhook.
pub fn decline(payment: &mut Payment, reason: &str) -> Vec<WebhookEvent> {
    payment.status = PaymentStatus::Declined;
    payment.stage = Stage::Done;
    vec![WebhookEvent::payment(payment, "declined", payment.amount_minor).with_reason(reason)]
}

/// Says on each event how 3-D Secure ran, as real providers do (Stripe's
/// `three_d_secure.result`, Adyen's `threeDAuthenticated`).
fn with_three_ds(events: &mut [WebhookEvent], how: &'static str) {
    for event in events {
        event.three_ds = Some(how);
    }
}

/// `POST /pay/{reference}`: checks the card, then 3-D Secure, then the issuer's answer.
pub async fn submit_card(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    let webhook_delay = Duration::from_millis(shared.config.webhook_delay_ms);
    let mut store = shared.store.lock().expect("store lock");
    let Some(payment) = store.payments.get_mut(&reference) else {
        return not_found();
    };
    if payment.stage != Stage::AwaitingCard || payment.status != PaymentStatus::Pending {
        return finished_page(payment);
    }
    let number = match validate(&form) {
        Ok(number) => number,
        Err(errors) => {
            let retyped = Retyped {
                expiry: &form.expiry,
                cardholder: &form.cardholder,
            };
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Check your card details",
                &card_form(payment, &retyped, &errors),
            );
        }
    };
    let (three_ds, outcome) = cards::behaviour(&number);
    if three_ds == ThreeDs::Challenge {
        payment.stage = Stage::AwaitingChallenge;
        payment.challenge_outcome = Some(outcome);
        return Redirect::to(&format!("/3ds/{reference}")).into_response();
    }
    let mut events = match outcome {
        CardOutcome::Approved => approve(payment),
        CardOutcome::Declined(reason) => decline(payment, reason),
        CardOutcome::NoAnswer => {
            payment.stage = Stage::Processing;
            Vec::new()
        }
        CardOutcome::ApprovedAfterDelay => {
            payment.stage = Stage::Processing;
            schedule_slow_approval(&shared, reference.clone());
            Vec::new()
        }
    };
    with_three_ds(&mut events, "frictionless");
    tracing::info!(provider_reference = %reference, status = payment.status.as_str(), "card submitted");
    let location = return_url(payment);
    drop(store);
    webhooks::send(&shared, events, webhook_delay, Trigger::Autopilot);
    Redirect::to(&location).into_response()
}

fn schedule_slow_approval(shared: &Shared, reference: String) {
    let task_shared = shared.clone();
    shared.spawn(async move {
        let wait = Duration::from_millis(task_shared.config.slow_approval_delay_ms);
        tokio::time::sleep(wait).await;
        let events = {
            let mut store = task_shared.store.lock().expect("store lock");
            match store.payments.get_mut(&reference) {
                // Cancelled meanwhile: the late approval must not resurrect it.
                Some(payment) if payment.status == PaymentStatus::Pending => approve(payment),
                _ => return,
            }
        };
        webhooks::send(&task_shared, events, Duration::ZERO, Trigger::Autopilot);
    });
}

/// `POST /pay/{reference}/cancel`: the player gives up on the hosted page.
pub async fn cancel_on_page(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
) -> Response {
    let (location, events) = {
        let mut store = shared.store.lock().expect("store lock");
        let Some(payment) = store.payments.get_mut(&reference) else {
            return not_found();
        };
        if payment.stage == Stage::Done {
            return finished_page(payment);
        }
        let events = cancel_pending(payment).unwrap_or_default();
        (return_url(payment), events)
    };
    let delay = Duration::from_millis(shared.config.webhook_delay_ms);
    webhooks::send(&shared, events, delay, Trigger::Autopilot);
    Redirect::to(&location).into_response()
}

fn challenge_form(payment: &Payment) -> String {
    format!(
        "<h1>Verify it's you</h1><p>Your bank asks you to confirm this payment of \
<span class=\"amount\">{amount} {currency}</span>.</p>\
<form method=\"post\" action=\"/3ds/{reference}\">\
<label for=\"otp\">One-time code</label>\
<p class=\"hint\" id=\"otp-hint\">Enter the 6-digit code your bank sent you. \
In the sandbox the code is {code}.</p>\
<input id=\"otp\" name=\"otp\" type=\"text\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
required aria-describedby=\"otp-hint\">\
<button type=\"submit\" id=\"submit-otp\">Confirm payment</button></form>",
        amount = payment.currency.format_minor(payment.amount_minor),
        currency = payment.currency.code(),
        reference = escape(&payment.provider_reference),
        code = cards::CHALLENGE_CODE,
    )
}

/// `GET /3ds/{reference}`: the 3-D Secure challenge.
pub async fn challenge_page(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
) -> Response {
    let store = shared.store.lock().expect("store lock");
    match store.payments.get(&reference) {
        None => not_found(),
        Some(payment) if payment.stage == Stage::AwaitingChallenge => {
            page(StatusCode::OK, "Verify it's you", &challenge_form(payment))
        }
        Some(payment) => finished_page(payment),
    }
}

#[derive(Deserialize)]
pub struct ChallengeForm {
    #[serde(default)]
    otp: String,
}

/// `POST /3ds/{reference}`: one attempt; the right code approves, anything else declines.
pub async fn submit_challenge(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
    Form(form): Form<ChallengeForm>,
) -> Response {
    let (location, events) = {
        let mut store = shared.store.lock().expect("store lock");
        let Some(payment) = store.payments.get_mut(&reference) else {
            return not_found();
        };
        if payment.stage != Stage::AwaitingChallenge || payment.status != PaymentStatus::Pending {
            return finished_page(payment);
        }
        let mut events = match (
            form.otp.trim() == cards::CHALLENGE_CODE,
            payment.challenge_outcome,
        ) {
            (true, Some(CardOutcome::Declined(reason))) => decline(payment, reason),
            (true, _) => approve(payment),
            (false, _) => decline(payment, cards::REASON_AUTHENTICATION_FAILED),
        };
        with_three_ds(&mut events, "challenge");
        tracing::info!(provider_reference = %reference, status = payment.status.as_str(), "3-D Secure challenge answered");
        (return_url(payment), events)
    };
    let delay = Duration::from_millis(shared.config.webhook_delay_ms);
    webhooks::send(&shared, events, delay, Trigger::Autopilot);
    Redirect::to(&location).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn validation_names_every_bad_field() {
        let form = CardForm {
            card_number: "4242424242424241".into(),
            expiry: "13/99".into(),
            cvc: "1".into(),
            cardholder: " ".into(),
        };
        let errors = validate(&form).unwrap_err();
        assert!(errors.card_number.is_some());
        assert!(errors.expiry.is_some());
        assert!(errors.cvc.is_some());
        assert!(errors.cardholder.is_some());
        let good = CardForm {
            card_number: "4242 4242 4242 4242".into(),
            expiry: "12/99".into(),
            cvc: "123".into(),
            cardholder: "Ada Lovelace".into(),
        };
        assert_eq!(validate(&good).ok().as_deref(), Some("4242424242424242"));
    }
}
