//! The pages a player's browser sees: the hosted payment page and the 3-D Secure 2 challenge.
//! Both post forms and answer `303 See Other`; the last one goes back to the merchant's
//! `returnUrl` with `redirectResult`, which `/payments/details` takes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::api::{decide, notify_authorisation};
use super::cards::{self, Verdict};
use super::{Payment, Shared};

use crate::html::{escape, page};

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Payment not found",
        "<p>No such payment.</p>",
    )
}

fn finished(payment: &Payment) -> Response {
    let body = format!("<p id=\"result\">{}</p>", escape(payment.result_code));
    page(StatusCode::CONFLICT, "Payment already finished", &body)
}

/// The merchant's `returnUrl` with `redirectResult`.
fn return_url(payment: &Payment) -> String {
    let joiner = if payment.return_url.contains('?') {
        '&'
    } else {
        '?'
    };
    format!(
        "{}{joiner}redirectResult={}",
        payment.return_url, payment.psp_reference
    )
}

/// `GET /hpp/{pspReference}`: the card form.
pub async fn payment_page(
    State(shared): State<Shared>,
    Path(psp_reference): Path<String>,
) -> Response {
    let store = shared.store();
    let Some(payment) = store.payments.get(&psp_reference) else {
        return not_found();
    };
    if payment.result_code != "RedirectShopper" {
        return finished(payment);
    }
    let amount = format!("{} {}", payment.value, escape(&payment.currency));
    let body = format!(
        "<p>Amount (minor units): <span id=\"amount\">{amount}</span></p>\
         <form method=\"post\"><label for=\"card_number\">Card number</label>\
         <input id=\"card_number\" name=\"card_number\" inputmode=\"numeric\" required>\
         <label for=\"expiry\">Expiry (MM/YY)</label><input id=\"expiry\" name=\"expiry\" required>\
         <label for=\"cvc\">CVC</label><input id=\"cvc\" name=\"cvc\" required>\
         <label for=\"cardholder\">Name on card</label><input id=\"cardholder\" name=\"cardholder\">\
         <button type=\"submit\" id=\"pay\">Pay</button></form>"
    );
    page(StatusCode::OK, "Adyen hosted payment page", &body)
}

#[derive(Deserialize)]
pub struct CardForm {
    #[serde(default)]
    card_number: String,
}

/// `POST /hpp/{pspReference}`: the card decides; a 3-D Secure card goes to the challenge.
pub async fn submit_card(
    State(shared): State<Shared>,
    Path(psp_reference): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    let verdict = cards::verdict(&form.card_number);
    let payment = {
        let mut store = shared.store();
        let Some(payment) = store.payments.get_mut(&psp_reference) else {
            return not_found();
        };
        if payment.result_code != "RedirectShopper" {
            return finished(payment);
        }
        decide(payment, verdict);
        payment.card = cards::facts(&form.card_number);
        payment.clone()
    };
    if verdict == Verdict::Challenge {
        return Redirect::to(&format!("/3ds/{psp_reference}")).into_response();
    }
    notify_authorisation(&shared, &payment);
    Redirect::to(&return_url(&payment)).into_response()
}

/// `GET /3ds/{pspReference}`: the issuer's challenge.
pub async fn challenge_page(
    State(shared): State<Shared>,
    Path(psp_reference): Path<String>,
) -> Response {
    let store = shared.store();
    match store.payments.get(&psp_reference) {
        None => not_found(),
        Some(payment) if payment.result_code == "ChallengeShopper" => page(
            StatusCode::OK,
            "3-D Secure 2 challenge",
            "<form method=\"post\"><label for=\"otp\">Password (test: password)</label>\
             <input id=\"otp\" name=\"otp\" type=\"password\" required>\
             <button type=\"submit\" id=\"submit-otp\">Continue</button></form>",
        ),
        Some(payment) => finished(payment),
    }
}

#[derive(Deserialize)]
pub struct ChallengeForm {
    #[serde(default)]
    otp: String,
}

/// `POST /3ds/{pspReference}`: the right password authorises, anything else refuses.
pub async fn submit_challenge(
    State(shared): State<Shared>,
    Path(psp_reference): Path<String>,
    Form(form): Form<ChallengeForm>,
) -> Response {
    let payment = {
        let mut store = shared.store();
        let Some(payment) = store.payments.get_mut(&psp_reference) else {
            return not_found();
        };
        if payment.result_code != "ChallengeShopper" {
            return finished(payment);
        }
        let verdict = if form.otp == cards::CHALLENGE_PASSWORD {
            Verdict::Authorise
        } else {
            Verdict::Refuse("3D Not Authenticated", "11")
        };
        decide(payment, verdict);
        payment.clone()
    };
    notify_authorisation(&shared, &payment);
    Redirect::to(&return_url(&payment)).into_response()
}
