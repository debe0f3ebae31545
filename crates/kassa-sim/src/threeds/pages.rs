//! The ACS's challenge pages: the `creq` arrives by a form post from the 3DS Server's page,
//! the cardholder types the code, the RReq goes to the 3DS Server, and the page posts `cres`
//! back through the browser.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{merge, send_rreq, Shared, CHALLENGE_CODE};

use crate::html::{escape, page};

fn refused(why: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Authentication not possible",
        &format!("<p>{}</p>", escape(why)),
    )
}

#[derive(Deserialize)]
pub(super) struct CreqForm {
    creq: String,
}

/// The CReq fields the ACS reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChallengeRequest {
    message_type: String,
    #[serde(rename = "threeDSServerTransID")]
    three_ds_server_trans_id: String,
    #[serde(rename = "acsTransID")]
    acs_trans_id: String,
}

fn read_creq(creq: &str) -> Option<ChallengeRequest> {
    let bytes = URL_SAFE_NO_PAD.decode(creq.trim_end_matches('=')).ok()?;
    let creq: ChallengeRequest = serde_json::from_slice(&bytes).ok()?;
    (creq.message_type == "CReq").then_some(creq)
}

/// `POST /challenge`: the page asking for the code.
pub(super) async fn challenge_page(
    State(shared): State<Shared>,
    Form(form): Form<CreqForm>,
) -> Response {
    let Some(creq) = read_creq(&form.creq) else {
        return refused("The challenge request is not a CReq.");
    };
    let known = shared
        .memory()
        .challenges
        .get(&creq.acs_trans_id)
        .is_some_and(|c| c.three_ds_server_trans_id == creq.three_ds_server_trans_id);
    if !known {
        return refused("No authentication is waiting for this challenge.");
    }
    let body = format!(
        r#"<p>Your bank sent a code to your phone. Type it to confirm the payment (test code: {CHALLENGE_CODE}).</p>
<form method="post" action="/challenge/answer">
<input type="hidden" name="acs_trans_id" value="{id}">
<label for="code">Code</label> <input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required>
<button id="confirm" type="submit">Confirm</button>
</form>"#,
        id = escape(&creq.acs_trans_id)
    );
    page(StatusCode::OK, "Confirm your payment", &body)
}

#[derive(Deserialize)]
pub(super) struct AnswerForm {
    acs_trans_id: String,
    code: String,
}

/// `POST /challenge/answer`: decides, sends the RReq, then posts `cres` through the browser.
pub(super) async fn challenge_answer(
    State(shared): State<Shared>,
    Form(form): Form<AnswerForm>,
) -> Response {
    let Some(challenge) = shared.memory().challenges.remove(&form.acs_trans_id) else {
        return refused("This challenge is over or unknown.");
    };
    let status = if form.code.trim() == CHALLENGE_CODE {
        "Y"
    } else {
        "N"
    };
    let ids = json!({
        "threeDSServerTransID": challenge.three_ds_server_trans_id,
        "acsTransID": form.acs_trans_id,
        "dsTransID": challenge.ds_trans_id,
    });
    let mut rreq =
        json!({"messageType": "RReq", "messageVersion": "2.2.0", "challengeCancel": null});
    merge(&mut rreq, ids.clone());
    merge(
        &mut rreq,
        shared.issue(&challenge.ds_trans_id, status, challenge.mastercard, true),
    );
    if !send_rreq(&shared.http, &challenge.three_ds_server_url, &rreq).await {
        return refused("The merchant did not take the result; try again later.");
    }
    let mut cres = json!({"messageType": "CRes", "messageVersion": "2.2.0", "transStatus": status, "challengeCompletionInd": "Y"});
    merge(&mut cres, ids);
    post_back(&challenge.notification_url, &cres)
}

/// A page that posts `cres` to the 3DS Server's notification URL at once.
fn post_back(notification_url: &str, cres: &Value) -> Response {
    let encoded = URL_SAFE_NO_PAD.encode(cres.to_string());
    let body = format!(
        r#"<p>Returning to the merchant…</p>
<form id="back" method="post" action="{url}">
<input type="hidden" name="cres" value="{encoded}">
<noscript><button type="submit">Continue</button></noscript>
</form>
<script>document.getElementById("back").submit();</script>"#,
        url = escape(notification_url)
    );
    page(StatusCode::OK, "Authentication finished", &body)
}
