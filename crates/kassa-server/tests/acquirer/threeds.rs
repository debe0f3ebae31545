//! 3-D Secure 2 for direct acquiring (ADRs 67, 68), over real HTTP against the 3-D Secure
//! simulator and the real ISO 8583 session against the host simulator: frictionless,
//! attempted, challenge passed and failed, rejected; the host sees ECI, CAVV and DS
//! transaction id in field 48 and refuses its 3DS-required cards without them.

use kassa_sim::threeds::{IssuedResult, ThreeDsSimConfig, ThreeDsSimHandle, CHALLENGE_CODE};
use kassa_store::threeds::ThreeDsOutcomeRecord;

use super::*;

/// The 3-D Secure simulator's test cards (Luhn-valid; the host wants 3-D Secure for them).
const FRICTIONLESS: &str = "4000000000003105";
const CHALLENGE: &str = "4000000000003204";
const ATTEMPTED: &str = "4000000000003303";
const REJECTED: &str = "4000000000003402";

struct Rig {
    app: TestApp,
    host: Iso8583HostHandle,
    directory: ThreeDsSimHandle,
}

/// An acquirer account with 3-D Secure at the simulator's Directory Server.
async fn rig(backend: TestBackend) -> Option<Rig> {
    logs();
    let host = host(0).await;
    let directory = kassa_sim::threeds::start(ThreeDsSimConfig {
        listen: "127.0.0.1:0".into(),
        public_base_url: None,
    })
    .await
    .unwrap();
    let (address, directory_url) = (
        host.local_addr().to_string(),
        directory.base_url().to_string(),
    );
    let app = common::spawn_with(backend, |c| {
        acquirer_only(c, &address);
        c.providers.accounts[0]
            .settings
            .insert("threeds_directory_url".into(), directory_url.into());
    })
    .await?;
    app.player("p1").await;
    Some(Rig {
        app,
        host,
        directory,
    })
}

async fn outcome(app: &TestApp, payment_id: &str) -> ThreeDsOutcomeRecord {
    let store = kassa_store::Store::connect(&app.database_url)
        .await
        .unwrap();
    store
        .threeds_outcome(payment_id)
        .await
        .unwrap()
        .expect("a 3-D Secure outcome")
}

/// How many purchases the host has read.
fn purchases(host: &Iso8583HostHandle) -> usize {
    host.received()
        .iter()
        .filter(|(mti, _)| mti == "0200")
        .count()
}

/// The last result the ACS issued, and the last field 48 the host read: the same ECI, CAVV
/// and DS transaction id.
fn assert_host_saw_the_issued_result(rig: &Rig, eci: &str) -> IssuedResult {
    let issued = rig.directory.results().pop().unwrap();
    let seen = rig
        .host
        .authentications()
        .pop()
        .expect("field 48 at the host");
    assert_eq!(issued.eci.as_deref(), Some(eci));
    assert_eq!(seen.eci, issued.eci);
    assert_eq!(seen.authentication_value, issued.authentication_value);
    assert_eq!(
        seen.ds_trans_id.as_deref(),
        Some(issued.ds_trans_id.as_str())
    );
    issued
}

/// A form's `action` and its hidden input `name`'s value, from a page.
fn form_of(html: &str, name: &str) -> (String, String) {
    let attribute = |from: &str, attribute: &str| {
        let start = from.find(&format!("{attribute}=\"")).unwrap() + attribute.len() + 2;
        from[start..start + from[start..].find('"').unwrap()].replace("&amp;", "&")
    };
    let action = attribute(html, "action");
    let input = &html[html.find(&format!("name=\"{name}\"")).unwrap()..];
    (action, attribute(input, "value"))
}

pub(super) async fn threeds_frictionless_and_attempted_carry_eci_and_cavv_to_the_host(
    backend: TestBackend,
) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let paid = pay(&rig.app, "20.00", FRICTIONLESS).await;
    assert_eq!(paid["status"], "captured", "{paid}");
    let issued = assert_host_saw_the_issued_result(&rig, "05");
    let id = paid["payment_id"].as_str().unwrap();
    let stored = outcome(&rig.app, id).await;
    assert_eq!(
        (stored.trans_status.as_str(), stored.eci.as_deref()),
        ("Y", Some("05"))
    );
    assert_eq!(
        (stored.ds_trans_id.as_str(), stored.challenged),
        (issued.ds_trans_id.as_str(), false)
    );

    let attempted = pay(&rig.app, "5.00", ATTEMPTED).await;
    assert_eq!(attempted["status"], "captured", "{attempted}");
    let issued = assert_host_saw_the_issued_result(&rig, "06");
    assert_eq!(rig.app.balance("p1").await.0, "25.00");
    rig.app.assert_ledger_verifies().await;
    let cavv = issued.authentication_value.unwrap();
    assert_no_pan_stored(&rig.app, &cavv, id).await;
    assert_no_pan_stored(&rig.app, FRICTIONLESS, id).await;
    assert_no_pan_logged(&cavv, "3-D Secure authentication answered");
    assert_no_pan_logged(FRICTIONLESS, "card submitted on the card page");
    rig.app.stop().await;
}

/// Submits `card` and follows the challenge with `code`; answers the payment id and Kassa's
/// last answer (status and location).
async fn pay_through_challenge(
    rig: &Rig,
    amount: &str,
    code: &str,
) -> (String, StatusCode, Option<String>) {
    let (id, page) = deposit(&rig.app, amount).await;
    let (status, _, to_acs) = submit(&page, CHALLENGE).await;
    assert_eq!(status, StatusCode::OK, "{to_acs}");
    let (acs_url, creq) = form_of(&to_acs, "creq");
    assert_eq!(acs_url, format!("{}/challenge", rig.directory.base_url()));
    assert_forged_rreq_refused(&page, &creq).await;
    let (status, _, challenge) = post_form(&acs_url, &[("creq", &creq)]).await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    let (_, acs_trans_id) = form_of(&challenge, "acs_trans_id");
    let answer_url = format!("{}/challenge/answer", rig.directory.base_url());
    let form = [("acs_trans_id", acs_trans_id.as_str()), ("code", code)];
    let (status, _, back) = post_form(&answer_url, &form).await;
    assert_eq!(status, StatusCode::OK, "{back}");
    let (return_url, cres) = form_of(&back, "cres");
    assert_eq!(return_url, format!("{page}/threeds/return"));
    let (status, location, _) = post_form(&return_url, &[("cres", &cres)]).await;
    (id, status, location)
}

/// An RReq that names the challenge (the ids the browser saw in the `creq`) but not the
/// Directory Server's transaction id is refused: it cannot authenticate the card.
async fn assert_forged_rreq_refused(page: &str, creq: &str) {
    use base64::Engine;
    let creq: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(creq)
            .unwrap(),
    )
    .unwrap();
    let forged = json!({
        "messageType": "RReq",
        "threeDSServerTransID": creq["threeDSServerTransID"],
        "acsTransID": creq["acsTransID"],
        "dsTransID": "00000000-0000-4000-8000-000000000000",
        "transStatus": "Y",
        "eci": "05",
        "authenticationValue": "AAABBEg0VhI0VniQEjRWAAAAAAA=",
    });
    let answer = browser()
        .post(format!("{page}/threeds/results"))
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let erro: Value = answer.json().await.unwrap();
    assert_eq!(
        (erro["messageType"].as_str(), erro["errorCode"].as_str()),
        (Some("Erro"), Some("301"))
    );
}

pub(super) async fn threeds_challenge_passed_charges_and_failed_sends_no_authorization(
    backend: TestBackend,
) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let (id, status, location) = pay_through_challenge(&rig, "30.00", CHALLENGE_CODE).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, Some(format!("/cashier/return?payment_id={id}")));
    assert_eq!(payment(&rig.app, &id).await["status"], "captured");
    let issued = assert_host_saw_the_issued_result(&rig, "05");
    assert!(issued.challenged);
    let stored = outcome(&rig.app, &id).await;
    assert_eq!(
        (stored.trans_status.as_str(), stored.challenged),
        ("Y", true)
    );

    let before = purchases(&rig.host);
    let (failed, status, _) = pay_through_challenge(&rig, "30.00", "0000").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let declined = payment(&rig.app, &failed).await;
    assert_eq!(declined["status"], "declined", "{declined}");
    assert_eq!(declined["failure_reason"], "authentication_failed");
    assert_eq!(
        purchases(&rig.host),
        before,
        "no authorization for a failed challenge"
    );
    assert_eq!(outcome(&rig.app, &failed).await.trans_status, "N");
    assert_eq!(rig.app.balance("p1").await.0, "30.00");
    rig.app.assert_ledger_verifies().await;
    assert_no_pan_stored(&rig.app, CHALLENGE, &id).await;
    assert_no_pan_stored(&rig.app, &issued.authentication_value.unwrap(), &id).await;
    rig.app.stop().await;
}

pub(super) async fn threeds_rejected_sends_no_authorization_and_the_host_wants_3ds(
    backend: TestBackend,
) {
    let Some(rig) = rig(backend).await else {
        return;
    };
    let before = purchases(&rig.host);
    let rejected = pay(&rig.app, "15.00", REJECTED).await;
    assert_eq!(rejected["status"], "declined", "{rejected}");
    assert_eq!(rejected["failure_reason"], "authentication_rejected");
    assert_eq!(
        purchases(&rig.host),
        before,
        "no authorization for a rejected card"
    );
    let id = rejected["payment_id"].as_str().unwrap();
    let stored = outcome(&rig.app, id).await;
    assert_eq!((stored.trans_status.as_str(), stored.eci), ("R", None));
    // A second submission of the same deposit is refused: its one card submission is used.
    let page = format!("{}/pay/card/{id}", rig.app.base);
    let (again, _, _) = submit(&page, FRICTIONLESS).await;
    assert_eq!(again, StatusCode::CONFLICT);
    assert_eq!(rig.app.balance("p1").await.0, "0.00");
    rig.app.assert_ledger_verifies().await;
    rig.app.stop().await;

    // Without 3-D Secure, the issuer of a 3DS card refuses the purchase: `05`.
    let Some((app, _host)) = super::rig(backend, 0).await else {
        return;
    };
    let refused = pay(&app, "15.00", FRICTIONLESS).await;
    assert_eq!(refused["status"], "declined", "{refused}");
    assert_eq!(refused["failure_reason"], "do_not_honour");
    app.stop().await;
}
