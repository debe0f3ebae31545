//! A simulated 3-D Secure 2 Directory Server and ACS in one process (`kassa sim threeds
//! --listen ADDR`), speaking EMVCo 3DS 2.2 message shapes as JSON over HTTP, for Kassa's own
//! 3DS Server (direct acquiring, ADR 67).
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /areq` | AReq (JSON) → ARes: `transStatus`, `eci` and `authenticationValue` (Y, A), `acsURL` (C) |
//! | `POST /challenge` | the browser's form post of `creq` (base64url CReq) → the ACS page asking for the code |
//! | `POST /challenge/answer` | the code typed: the RReq goes to the AReq's `threeDSServerURL` (answered by an RRes), then the page posts `cres` (base64url CRes) to its `notificationURL` |
//!
//! # Test cards (`acctNumber`, by its last four digits)
//!
//! | ends in | ARes |
//! |---|---|
//! | `31xx`, e.g. `4000000000003105` | `Y` frictionless, ECI `05` (`02` for Mastercard, PAN starting 2 or 5) |
//! | `32xx`, e.g. `4000000000003204` | `C` challenge: the code [`CHALLENGE_CODE`] gives `Y` (ECI `05`), anything else `N` |
//! | `33xx`, e.g. `4000000000003303` | `A` attempted (not enrolled), ECI `06` (`01` Mastercard) |
//! | `34xx`, e.g. `4000000000003402` | `R` rejected by the issuer |
//! | `35xx`, e.g. `4000000000003501` | `U` authentication unavailable |
//! | anything else | `Y` frictionless |
//!
//! Each successful result carries a fresh 20-byte authentication value (CAVV, base64), which
//! the simulator keeps ([`ThreeDsSimHandle::results`]) so a test can check that the acquirer
//! host saw the same one.

mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

/// The code that passes a challenge.
pub const CHALLENGE_CODE: &str = "1234";
/// Longest request body taken.
const BODY_LEN_MAX: usize = 16 * 1024;

/// How the simulator listens.
#[derive(Clone, Debug)]
pub struct ThreeDsSimConfig {
    /// Where to listen, e.g. `127.0.0.1:8093` (`:0` for any free port).
    pub listen: String,
    /// The base URL browsers reach it at; by default `http://{bound address}`.
    pub public_base_url: Option<String>,
}

impl Default for ThreeDsSimConfig {
    fn default() -> ThreeDsSimConfig {
        ThreeDsSimConfig {
            listen: "127.0.0.1:8093".into(),
            public_base_url: None,
        }
    }
}

/// One authentication's result as the ACS gave it, for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedResult {
    /// The Directory Server's id.
    pub ds_trans_id: String,
    /// `Y`, `N`, `A`, `R`, `U` (a challenge's final status, not `C`).
    pub trans_status: String,
    /// With `Y` and `A`.
    pub eci: Option<String>,
    /// With `Y` and `A`.
    pub authentication_value: Option<String>,
    /// Whether a challenge was shown.
    pub challenged: bool,
}

/// What the AReq said, kept for the challenge.
#[derive(Clone, Debug)]
struct Challenge {
    three_ds_server_trans_id: String,
    ds_trans_id: String,
    mastercard: bool,
    notification_url: String,
    three_ds_server_url: String,
}

#[derive(Default)]
struct Memory {
    challenges: HashMap<String, Challenge>,
    issued: Vec<IssuedResult>,
}

struct Simulator {
    base_url: String,
    memory: Mutex<Memory>,
    http: reqwest::Client,
}

type Shared = Arc<Simulator>;

impl Simulator {
    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running simulator; dropping it stops it too.
pub struct ThreeDsSimHandle {
    serving: crate::serving::Serving,
    shared: Shared,
}

impl ThreeDsSimHandle {
    /// Where it answers (its AReq endpoint is `{base_url}/areq`).
    pub fn base_url(&self) -> &str {
        self.serving.base_url()
    }

    /// Every final result issued so far, in order.
    pub fn results(&self) -> Vec<IssuedResult> {
        self.shared.memory().issued.clone()
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.serving.stop().await;
    }
}

/// The AReq fields the simulator reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationRequest {
    message_type: String,
    #[serde(rename = "threeDSServerTransID")]
    three_ds_server_trans_id: String,
    acct_number: String,
    #[serde(rename = "notificationURL")]
    notification_url: String,
    #[serde(rename = "threeDSServerURL")]
    three_ds_server_url: String,
}

/// What a test card makes the ACS do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CardRule {
    Frictionless,
    Challenge,
    Attempted,
    Rejected,
    Unavailable,
}

fn card_rule(pan: &str) -> CardRule {
    match pan.get(pan.len().saturating_sub(4)..pan.len().saturating_sub(2)) {
        Some("32") => CardRule::Challenge,
        Some("33") => CardRule::Attempted,
        Some("34") => CardRule::Rejected,
        Some("35") => CardRule::Unavailable,
        _ => CardRule::Frictionless,
    }
}

/// ECI of a result: Visa-style `05`/`06`, Mastercard `02`/`01`.
fn eci(status: &str, mastercard: bool) -> Option<&'static str> {
    match (status, mastercard) {
        ("Y", false) => Some("05"),
        ("A", false) => Some("06"),
        ("Y", true) => Some("02"),
        ("A", true) => Some("01"),
        _ => None,
    }
}

/// A fresh id shaped like a UUID v4.
fn trans_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A fresh CAVV: 20 random bytes, base64 (28 characters).
fn authentication_value() -> String {
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

impl Simulator {
    /// Records a final result and answers its fields as ARes/RReq carry them.
    fn issue(&self, ds_trans_id: &str, status: &str, mastercard: bool, challenged: bool) -> Value {
        let eci = eci(status, mastercard);
        let value = eci.map(|_| authentication_value());
        self.memory().issued.push(IssuedResult {
            ds_trans_id: ds_trans_id.to_string(),
            trans_status: status.to_string(),
            eci: eci.map(Into::into),
            authentication_value: value.clone(),
            challenged,
        });
        let mut fields = json!({ "transStatus": status });
        if let (Some(eci), Some(value)) = (eci, value) {
            fields["eci"] = eci.into();
            fields["authenticationValue"] = value.into();
        }
        if matches!(status, "N" | "R" | "U") {
            // EMVCo transStatusReason: 01 card authentication failed, 09 security failure.
            fields["transStatusReason"] = if status == "N" { "01" } else { "09" }.into();
        }
        fields
    }
}

/// `POST /areq`: the Directory Server passes the AReq to the card's ACS and answers its ARes.
async fn areq(
    State(shared): State<Shared>,
    Json(areq): Json<AuthenticationRequest>,
) -> Result<Json<Value>, (axum::http::StatusCode, Json<Value>)> {
    if areq.message_type != "AReq" || !areq.acct_number.bytes().all(|b| b.is_ascii_digit()) {
        let error = json!({"messageType": "Erro", "errorCode": "203", "errorDescription": "not a valid AReq"});
        return Err((axum::http::StatusCode::BAD_REQUEST, Json(error)));
    }
    let (acs_trans_id, ds_trans_id) = (trans_id(), trans_id());
    let mastercard = areq.acct_number.starts_with(['2', '5']);
    let mut ares = json!({
        "messageType": "ARes",
        "messageVersion": "2.2.0",
        "threeDSServerTransID": areq.three_ds_server_trans_id,
        "acsTransID": acs_trans_id,
        "dsTransID": ds_trans_id,
    });
    let status = match card_rule(&areq.acct_number) {
        CardRule::Challenge => None,
        CardRule::Frictionless => Some("Y"),
        CardRule::Attempted => Some("A"),
        CardRule::Rejected => Some("R"),
        CardRule::Unavailable => Some("U"),
    };
    let fields = match status {
        Some(status) => shared.issue(&ds_trans_id, status, mastercard, false),
        None => {
            shared.memory().challenges.insert(
                acs_trans_id.clone(),
                Challenge {
                    three_ds_server_trans_id: areq.three_ds_server_trans_id.clone(),
                    ds_trans_id,
                    mastercard,
                    notification_url: areq.notification_url,
                    three_ds_server_url: areq.three_ds_server_url,
                },
            );
            json!({"transStatus": "C", "acsURL": format!("{}/challenge", shared.base_url)})
        }
    };
    merge(&mut ares, fields);
    Ok(Json(ares))
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// Sends the RReq and waits for the RRes (`resultsStatus` `01`); `false` if the 3DS Server
/// did not take it.
async fn send_rreq(http: &reqwest::Client, url: &str, rreq: &Value) -> bool {
    let sent = http.post(url).json(rreq).send().await;
    let answer = match sent {
        Ok(answer) if answer.status().is_success() => answer.json::<Value>().await.ok(),
        Ok(answer) => {
            tracing::warn!(status = %answer.status(), "3DS Server refused the RReq");
            None
        }
        Err(error) => {
            tracing::warn!(%error, "RReq not delivered");
            None
        }
    };
    answer.is_some_and(|rres| rres["messageType"] == "RRes" && rres["resultsStatus"] == "01")
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/areq", post(areq))
        .route("/challenge", post(pages::challenge_page))
        .route("/challenge/answer", post(pages::challenge_answer))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LEN_MAX))
        .with_state(shared)
}

/// Binds `config.listen` and serves in the background.
pub async fn start(config: ThreeDsSimConfig) -> anyhow::Result<ThreeDsSimHandle> {
    let bound = crate::serving::bind(&config.listen, config.public_base_url.as_deref()).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the RReq HTTP client")?;
    let shared = Arc::new(Simulator {
        base_url: bound.base_url().to_string(),
        memory: Mutex::new(Memory::default()),
        http,
    });
    let serving = bound.serve(router(shared.clone()), "3-D Secure simulator");
    Ok(ThreeDsSimHandle { serving, shared })
}

/// Serves until ctrl-c (`kassa sim threeds`).
pub async fn run(config: ThreeDsSimConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for ctrl-c")?;
    handle.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_pick_the_acs_decision() {
        assert_eq!(card_rule("4000000000003105"), CardRule::Frictionless);
        assert_eq!(card_rule("4000000000003204"), CardRule::Challenge);
        assert_eq!(card_rule("4000000000003303"), CardRule::Attempted);
        assert_eq!(card_rule("4000000000003402"), CardRule::Rejected);
        assert_eq!(card_rule("4000000000003501"), CardRule::Unavailable);
        assert_eq!(card_rule("4000000000000002"), CardRule::Frictionless);
        assert_eq!(eci("Y", true), Some("02"));
        assert_eq!(eci("N", false), None);
        assert_eq!(authentication_value().len(), 28);
        assert_eq!(trans_id().len(), 36);
    }
}
