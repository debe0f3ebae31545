//! How the sandbox misbehaves when starting payments, so routing, cascades and circuit
//! breakers can be seen working: added latency, a share of payments declined at once (with a
//! soft reason by default), a share answered 503, and an outage. Set at start
//! ([`super::SandboxPspConfig::behaviour`]) and changed at run time with
//! `PUT /sandbox/behaviour`; the draws hash the payment id, so a retried start of the same
//! payment meets the same fate.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::api::ApiError;
use super::Shared;

/// The misbehaviour of payment starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Added before every payment start is answered.
    pub latency_ms: u64,
    /// Share of new payments declined at once, per mille.
    pub decline_permille: u32,
    /// The reason those declines carry.
    pub decline_reason: String,
    /// Share of payment starts answered 503, per mille.
    pub error_permille: u32,
    /// Every payment start answered 503.
    pub outage: bool,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            latency_ms: 0,
            decline_permille: 0,
            decline_reason: "issuer_unavailable".into(),
            error_permille: 0,
            outage: false,
        }
    }
}

/// The provider account setting an embedded sandbox reads its starting behaviour from
/// (`[providers.accounts.settings.simulator_behaviour]`).
pub const SETTINGS_KEY: &str = "simulator_behaviour";

/// Most latency the sandbox adds; more would only hold connections open.
const LATENCY_MAX_MS: u64 = 60_000;

impl Behaviour {
    /// Refuses settings outside their ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.decline_permille > 1_000 || self.error_permille > 1_000 {
            return Err("decline_permille and error_permille are at most 1000".into());
        }
        if self.latency_ms > LATENCY_MAX_MS {
            return Err(format!("latency_ms is at most {LATENCY_MAX_MS}"));
        }
        let reason_ok = !self.decline_reason.is_empty()
            && self.decline_reason.len() <= 64
            && self
                .decline_reason
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !reason_ok {
            return Err("decline_reason is 1 to 64 letters, digits or '_'".into());
        }
        Ok(())
    }

    /// The behaviour an embedded simulator starts with, from its provider account's setting
    /// [`SETTINGS_KEY`] (a table of these fields); the default when absent.
    pub fn from_account_settings(
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Behaviour, String> {
        let Some(table) = settings.get(SETTINGS_KEY) else {
            return Ok(Behaviour::default());
        };
        let behaviour: Behaviour = serde_json::from_value(table.clone())
            .map_err(|e| format!("setting {SETTINGS_KEY}: {e}"))?;
        behaviour
            .validate()
            .map_err(|why| format!("setting {SETTINGS_KEY}: {why}"))?;
        Ok(behaviour)
    }

    /// Waits the latency, then fails the start if an outage or the error draw says so.
    pub async fn before_start(&self, payment_id: &str) -> Result<(), ApiError> {
        if self.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.latency_ms)).await;
        }
        if self.outage || draw(payment_id, "error") < self.error_permille {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the sandbox is unavailable (injected)",
            ));
        }
        Ok(())
    }

    /// The reason a new payment is declined at once, if the decline draw says so.
    pub fn decline(&self, payment_id: &str) -> Option<&str> {
        (draw(payment_id, "decline") < self.decline_permille).then_some(&self.decline_reason)
    }
}

/// A number in `0..1000` from the payment id; `salt` makes the draws independent.
fn draw(payment_id: &str, salt: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update([0])
        .chain_update(payment_id.as_bytes())
        .finalize();
    (u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])) % 1_000
}

/// `GET /sandbox/behaviour`.
pub async fn get_behaviour(State(shared): State<Shared>) -> Json<Behaviour> {
    Json(shared.behaviour())
}

/// `PUT /sandbox/behaviour`: replaces the whole behaviour.
pub async fn put_behaviour(
    State(shared): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Json<Behaviour>, ApiError> {
    let behaviour: Behaviour = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_behaviour",
            e.to_string(),
        )
    })?;
    behaviour.validate().map_err(|why| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_behaviour",
            why,
        )
    })?;
    *shared.behaviour.lock().expect("behaviour lock") = behaviour.clone();
    tracing::info!(?behaviour, "sandbox behaviour changed");
    Ok(Json(behaviour))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_setting_gives_the_starting_behaviour_and_bad_ones_are_refused() {
        let settings = |value: serde_json::Value| value.as_object().unwrap().clone();
        assert_eq!(
            Behaviour::from_account_settings(&settings(serde_json::json!({}))),
            Ok(Behaviour::default())
        );
        let slow = settings(serde_json::json!({
            "base_url": "ignored", "simulator_behaviour": {"latency_ms": 250, "outage": true}}));
        let behaviour = Behaviour::from_account_settings(&slow).unwrap();
        assert_eq!((behaviour.latency_ms, behaviour.outage), (250, true));
        let wrong =
            settings(serde_json::json!({"simulator_behaviour": {"decline_permille": 1001}}));
        assert!(Behaviour::from_account_settings(&wrong).is_err());
        let unknown = settings(serde_json::json!({"simulator_behaviour": {"speed": 1}}));
        assert!(Behaviour::from_account_settings(&unknown).is_err());
    }

    #[test]
    fn draws_follow_their_shares() {
        let half = Behaviour {
            decline_permille: 500,
            ..Behaviour::default()
        };
        let declined = (0..10_000)
            .filter(|n| half.decline(&format!("pay_{n}")).is_some())
            .count();
        assert!((4_800..=5_200).contains(&declined), "{declined}");
        assert_eq!(Behaviour::default().decline("pay_1"), None);
    }
}
