//! The 3DS Server half of 3-D Secure 2 for direct acquiring (ADR 67): EMVCo 3DS 2.2
//! message shapes as JSON over HTTP, and the call to the Directory Server.
//!
//! * Kassa sends the AReq to the Directory Server, which answers the ACS's ARes:
//!   `transStatus` `Y` (authenticated, frictionless) or `A` (attempted) with an ECI and the
//!   authentication value (CAVV); `C` with the ACS's challenge URL; `N`, `R` or `U` refused.
//! * A challenge: the browser posts a base64url `creq` to the ACS; once the cardholder
//!   answered, the ACS sends the RReq to Kassa's `threeDSServerURL` (server to server, the
//!   authoritative result) and posts a base64url `cres` back to Kassa's `notificationURL`.
//!
//! The authentication value is a [`SecretString`]: it proves the cardholder and goes only
//! into the authorization message, never into logs or the database.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::card::CardDetails;
use crate::provider::ProviderError;

/// The EMVCo protocol version Kassa speaks.
pub const MESSAGE_VERSION: &str = "2.2.0";
/// `deviceChannel` of a browser-based authentication.
const DEVICE_CHANNEL_BROWSER: &str = "02";
/// `messageCategory` of a payment authentication.
const MESSAGE_CATEGORY_PAYMENT: &str = "01";
/// `challengeWindowSize` `05`: the full page (Kassa's card page navigates to the ACS).
const CHALLENGE_WINDOW_FULL_PAGE: &str = "05";
/// Longest answer read from the Directory Server.
const ANSWER_LEN_MAX: usize = 16 * 1024;

/// `transStatus`: what the ACS decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransStatus {
    /// Authenticated.
    Y,
    /// Not authenticated (the cardholder failed).
    N,
    /// Authentication could not be performed.
    U,
    /// Attempted: the issuer does not take part, a proof of attempt is given.
    A,
    /// A challenge is required.
    C,
    /// Rejected by the issuer: do not authorize.
    R,
}

impl TransStatus {
    /// The letter on the wire.
    pub fn letter(self) -> &'static str {
        match self {
            TransStatus::Y => "Y",
            TransStatus::N => "N",
            TransStatus::U => "U",
            TransStatus::A => "A",
            TransStatus::C => "C",
            TransStatus::R => "R",
        }
    }

    /// Whether the authorization may go ahead with the result (`Y` or `A`).
    pub fn permits_authorization(self) -> bool {
        matches!(self, TransStatus::Y | TransStatus::A)
    }
}

/// The AReq Kassa sends (a subset of EMVCo 2.2's browser flow). Not `Debug`: it holds the PAN.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationRequest<'a> {
    message_type: &'static str,
    message_version: &'static str,
    #[serde(rename = "threeDSServerTransID")]
    three_ds_server_trans_id: &'a str,
    device_channel: &'static str,
    message_category: &'static str,
    acct_number: &'a str,
    card_expiry_date: &'a str,
    purchase_amount: String,
    purchase_currency: &'a str,
    purchase_exponent: u8,
    mcc: &'static str,
    acquirer_merchant_id: &'a str,
    #[serde(rename = "notificationURL")]
    notification_url: &'a str,
    #[serde(rename = "threeDSServerURL")]
    three_ds_server_url: &'a str,
}

/// What an AReq is built from.
pub struct Purchase<'a> {
    /// Kassa's transaction id for this authentication.
    pub three_ds_server_trans_id: &'a str,
    /// The card.
    pub card: &'a CardDetails,
    /// Minor units.
    pub amount_minor: i64,
    /// ISO 4217 numeric.
    pub currency_numeric: &'a str,
    /// Digits after the decimal point of the currency.
    pub currency_exponent: u8,
    /// The merchant as the acquirer knows it (field 42).
    pub acquirer_merchant_id: &'a str,
    /// Where the ACS posts the `cres` through the browser.
    pub notification_url: &'a str,
    /// Where the Directory Server sends the RReq.
    pub three_ds_server_url: &'a str,
}

impl<'a> AuthenticationRequest<'a> {
    /// The AReq of `purchase`.
    pub fn of(purchase: &Purchase<'a>) -> AuthenticationRequest<'a> {
        AuthenticationRequest {
            message_type: "AReq",
            message_version: MESSAGE_VERSION,
            three_ds_server_trans_id: purchase.three_ds_server_trans_id,
            device_channel: DEVICE_CHANNEL_BROWSER,
            message_category: MESSAGE_CATEGORY_PAYMENT,
            acct_number: purchase.card.pan(),
            card_expiry_date: purchase.card.expiry_yymm(),
            purchase_amount: purchase.amount_minor.to_string(),
            purchase_currency: purchase.currency_numeric,
            purchase_exponent: purchase.currency_exponent,
            mcc: crate::acquirer::wire::MCC_GAMBLING,
            acquirer_merchant_id: purchase.acquirer_merchant_id,
            notification_url: purchase.notification_url,
            three_ds_server_url: purchase.three_ds_server_url,
        }
    }
}

/// The three ids of one authentication, as every message after the AReq carries them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct TransIds {
    /// Kassa's id, echoed.
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    /// The ACS's id.
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    /// The Directory Server's id, carried to the authorization.
    #[serde(rename = "dsTransID")]
    pub ds_trans_id: String,
}

/// The ACS's result as ARes and RReq carry it.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationResult {
    /// `ARes`, `RReq`.
    pub message_type: String,
    /// Kassa's, the ACS's and the Directory Server's ids.
    #[serde(flatten)]
    pub ids: TransIds,
    /// The decision.
    pub trans_status: TransStatus,
    /// Electronic commerce indicator, with `Y` and `A`.
    #[serde(default)]
    pub eci: Option<String>,
    /// The CAVV (base64), with `Y` and `A`.
    #[serde(default)]
    pub authentication_value: Option<SecretString>,
    /// Where the browser posts the `creq`, with `C`.
    #[serde(rename = "acsURL", default)]
    pub acs_url: Option<String>,
    /// Why, for `N`, `U` and `R`.
    #[serde(default)]
    pub trans_status_reason: Option<String>,
}

impl fmt::Debug for AuthenticationResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticationResult")
            .field("message_type", &self.message_type)
            .field("ids", &self.ids)
            .field("trans_status", &self.trans_status)
            .field("eci", &self.eci)
            .finish_non_exhaustive()
    }
}

impl AuthenticationResult {
    /// What the authorization message carries, when the result permits one: `Y`/`A` with an
    /// ECI and an authentication value. `None` for any other result or a result without them.
    pub fn card_authentication(&self) -> Option<CardAuthentication> {
        if !self.trans_status.permits_authorization() {
            return None;
        }
        let eci = self.eci.clone().filter(|eci| valid_eci(eci))?;
        let value = self
            .authentication_value
            .as_ref()
            .filter(|v| valid_authentication_value(v.expose_secret()))?;
        Some(CardAuthentication {
            eci,
            authentication_value: value.clone(),
            ds_trans_id: self.ids.ds_trans_id.clone(),
        })
    }
}

/// Two digits.
fn valid_eci(eci: &str) -> bool {
    eci.len() == 2 && eci.bytes().all(|b| b.is_ascii_digit())
}

/// A CAVV: 28 base64 characters (20 bytes), as EMVCo defines the authentication value.
fn valid_authentication_value(value: &str) -> bool {
    value.len() == 28
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// The RRes Kassa answers an RReq with.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultsResponse {
    /// `RRes`.
    pub message_type: String,
    /// The RReq's, echoed.
    #[serde(flatten)]
    pub ids: TransIds,
    /// `01`: received.
    pub results_status: String,
}

impl ResultsResponse {
    /// The RRes acknowledging `result`.
    pub fn received(result: &AuthenticationResult) -> ResultsResponse {
        ResultsResponse {
            message_type: "RRes".into(),
            ids: result.ids.clone(),
            results_status: "01".into(),
        }
    }
}

/// The CReq the browser carries to the ACS.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeRequest {
    /// `CReq`.
    pub message_type: String,
    /// [`MESSAGE_VERSION`].
    pub message_version: String,
    /// Kassa's id.
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    /// The ACS's id from the ARes.
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    /// `05`, a full page.
    pub challenge_window_size: String,
}

impl ChallengeRequest {
    /// The CReq following `ares`.
    pub fn after(ares: &AuthenticationResult) -> ChallengeRequest {
        ChallengeRequest {
            message_type: "CReq".into(),
            message_version: MESSAGE_VERSION.into(),
            three_ds_server_trans_id: ares.ids.three_ds_server_trans_id.clone(),
            acs_trans_id: ares.ids.acs_trans_id.clone(),
            challenge_window_size: CHALLENGE_WINDOW_FULL_PAGE.into(),
        }
    }

    /// The form value `creq`: the JSON, base64url without padding.
    pub fn encoded(&self) -> String {
        // Serializing plain strings cannot fail.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The CRes the ACS posts back through the browser. Only says the challenge ended: the
/// result Kassa acts on is the RReq's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeResponse {
    /// `CRes`.
    pub message_type: String,
    /// Kassa's id.
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    /// The ACS's id.
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    /// The result as the browser saw it.
    pub trans_status: TransStatus,
    /// `Y`: the challenge is over.
    pub challenge_completion_ind: String,
}

impl ChallengeResponse {
    /// Reads the form value `cres`; `None` if it is not a base64url CRes.
    pub fn decode(cres: &str) -> Option<ChallengeResponse> {
        let bytes = URL_SAFE_NO_PAD.decode(cres.trim_end_matches('=')).ok()?;
        let cres: ChallengeResponse = serde_json::from_slice(&bytes).ok()?;
        (cres.message_type == "CRes").then_some(cres)
    }
}

/// What the authorization message carries of a successful authentication (ADR 68).
#[derive(Clone)]
pub struct CardAuthentication {
    /// Electronic commerce indicator (`05`/`06` Visa, `02`/`01` Mastercard).
    pub eci: String,
    /// The CAVV/AAV, base64 (28 characters).
    pub authentication_value: SecretString,
    /// The Directory Server's transaction id (a UUID).
    pub ds_trans_id: String,
}

impl fmt::Debug for CardAuthentication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardAuthentication")
            .field("eci", &self.eci)
            .field("ds_trans_id", &self.ds_trans_id)
            .finish_non_exhaustive()
    }
}

/// Kassa's client of one Directory Server.
#[derive(Clone, Debug)]
pub struct DirectoryServer {
    areq_url: String,
    http: reqwest::Client,
}

impl DirectoryServer {
    /// The Directory Server at `base_url` (its AReq endpoint is `{base_url}/areq`), each
    /// call bounded by `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<DirectoryServer, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ProviderError::Unavailable(format!("3DS client: {e}")))?;
        Ok(DirectoryServer {
            areq_url: format!("{}/areq", base_url.trim_end_matches('/')),
            http,
        })
    }

    /// Sends the AReq; answers the ARes once it is checked to answer this AReq and to carry
    /// what its status needs (an ACS URL with `C`).
    pub async fn authenticate(
        &self,
        areq: &AuthenticationRequest<'_>,
    ) -> Result<AuthenticationResult, ProviderError> {
        let answer = self
            .http
            .post(&self.areq_url)
            .json(areq)
            .send()
            .await
            .map_err(|e| match e.is_timeout() {
                true => ProviderError::Timeout,
                false => ProviderError::Unavailable(format!("directory server: {e}")),
            })?;
        let status = answer.status();
        let body = answer
            .bytes()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("directory server: {e}")))?;
        if !status.is_success() || body.len() > ANSWER_LEN_MAX {
            return Err(ProviderError::Protocol(format!(
                "directory server answered {status} ({} bytes)",
                body.len()
            )));
        }
        let ares: AuthenticationResult = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Protocol(format!("ARes: {e}")))?;
        check_ares(&ares, areq.three_ds_server_trans_id)?;
        Ok(ares)
    }
}

/// An ARes answers our AReq and carries what its status needs.
fn check_ares(ares: &AuthenticationResult, trans_id: &str) -> Result<(), ProviderError> {
    let fault = |why: &str| Err(ProviderError::Protocol(format!("ARes: {why}")));
    if ares.message_type != "ARes" {
        return fault("not an ARes");
    }
    if ares.ids.three_ds_server_trans_id != trans_id {
        return fault("answers another AReq");
    }
    if ares.trans_status == TransStatus::C && ares.acs_url.is_none() {
        return fault("a challenge without an ACS URL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: TransStatus, eci: Option<&str>, value: Option<&str>) -> AuthenticationResult {
        AuthenticationResult {
            message_type: "ARes".into(),
            ids: TransIds {
                three_ds_server_trans_id: "t".into(),
                acs_trans_id: "a".into(),
                ds_trans_id: "d".into(),
            },
            trans_status: status,
            eci: eci.map(Into::into),
            authentication_value: value.map(|v| SecretString::from(v.to_string())),
            acs_url: None,
            trans_status_reason: None,
        }
    }

    const CAVV: &str = "AAABBEg0VhI0VniQEjRWAAAAAAA=";

    #[test]
    fn only_y_and_a_with_eci_and_cavv_permit_an_authorization() {
        let ok = result(TransStatus::Y, Some("05"), Some(CAVV));
        let auth = ok.card_authentication().unwrap();
        assert_eq!((auth.eci.as_str(), auth.ds_trans_id.as_str()), ("05", "d"));
        assert!(result(TransStatus::A, Some("06"), Some(CAVV))
            .card_authentication()
            .is_some());
        for status in [
            TransStatus::N,
            TransStatus::R,
            TransStatus::U,
            TransStatus::C,
        ] {
            assert!(result(status, Some("05"), Some(CAVV))
                .card_authentication()
                .is_none());
        }
        assert!(result(TransStatus::Y, None, Some(CAVV))
            .card_authentication()
            .is_none());
        assert!(result(TransStatus::Y, Some("05"), Some("short"))
            .card_authentication()
            .is_none());
    }

    #[test]
    fn the_cavv_is_in_no_debug_output() {
        let ares = result(TransStatus::Y, Some("05"), Some(CAVV));
        assert!(!format!("{ares:?}").contains(CAVV));
        let auth = ares.card_authentication().unwrap();
        assert!(!format!("{auth:?}").contains(CAVV));
    }

    #[test]
    fn a_cres_reads_back_from_base64url() {
        let json = r#"{"messageType":"CRes","threeDSServerTransID":"t","acsTransID":"a","transStatus":"Y","challengeCompletionInd":"Y"}"#;
        let cres = ChallengeResponse::decode(&URL_SAFE_NO_PAD.encode(json)).unwrap();
        assert_eq!(cres.trans_status, TransStatus::Y);
        assert!(ChallengeResponse::decode("not base64!").is_none());
        let creq = ChallengeRequest::after(&result(TransStatus::C, None, None));
        let back: ChallengeRequest =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(creq.encoded()).unwrap()).unwrap();
        assert_eq!(back.acs_trans_id, "a");
    }
}
