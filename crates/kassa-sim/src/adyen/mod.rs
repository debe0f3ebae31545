//! An Adyen-shaped simulator: the Checkout API v71 (`/payments`, `/payments/details`,
//! modifications by pspReference), the Payout API v68 (`storeDetailAndSubmitThirdParty`),
//! a hosted payment page with a 3-D Secure 2 challenge, and HMAC-signed notification batches
//! sent until answered `[accepted]`. Paths, field names, result codes and error bodies are
//! Adyen's; see `docs/providers/adyen.md`.
//!
//! How the card reaches it: Kassa never holds card numbers for a provider with a hosted page.
//! A payment started without card details answers `RedirectShopper` to the hosted page
//! (`/hpp/{pspReference}`), where the player types the card ([`cards`] decides). A payment
//! with test card details (`paymentMethod.encryptedCardNumber = "test_<number>"`, Adyen's
//! test convention, or `number`) is decided at once; so is one started while a test set a
//! card on file (`PUT /_sim/card-on-file`), as a shopper's stored card would be.

mod api;
pub mod cards;
mod control;
pub mod notifications;
mod pages;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post, put};
use axum::Router;
use tokio::sync::watch;

pub use notifications::hmac_signature;

/// The HMAC key (hex) the simulator signs with unless told otherwise.
pub const DEFAULT_HMAC_KEY_HEX: &str =
    "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

/// How the simulator runs.
#[derive(Clone, Debug)]
pub struct AdyenSimConfig {
    /// Where to listen, e.g. `127.0.0.1:8091` (`:0` for any free port).
    pub listen: String,
    /// The base URL players' browsers reach it at; by default `http://{bound address}`.
    pub public_base_url: Option<String>,
    /// The one `X-API-Key` accepted; `None` accepts any non-empty key, as Adyen's test
    /// mocks do.
    pub api_key: Option<String>,
    /// The notification HMAC key, hex.
    pub hmac_key_hex: String,
    /// Where notifications go; `None` sends none.
    pub webhook_url: Option<String>,
    /// Wait before a notification batch is first sent.
    pub notification_delay_ms: u64,
    /// Wait before the first resend; doubles up to 10 s.
    pub notification_retry_backoff_ms: u64,
    /// Attempts per batch before giving up.
    pub notification_attempts_max: u32,
    /// How late the [`cards::SLOW_ANSWER`] card's answer comes.
    pub slow_answer_ms: u64,
}

impl Default for AdyenSimConfig {
    fn default() -> AdyenSimConfig {
        AdyenSimConfig {
            listen: "127.0.0.1:8091".into(),
            public_base_url: None,
            api_key: None,
            hmac_key_hex: DEFAULT_HMAC_KEY_HEX.into(),
            webhook_url: None,
            notification_delay_ms: 50,
            notification_retry_backoff_ms: 200,
            notification_attempts_max: 50,
            slow_answer_ms: 3_000,
        }
    }
}

/// A payment as the simulator holds it.
#[derive(Clone, Debug)]
struct Payment {
    psp_reference: String,
    merchant_account: String,
    reference: String,
    value: i64,
    currency: String,
    return_url: String,
    result_code: &'static str,
    refusal_reason: Option<&'static str>,
    refunded: i64,
    /// The card it was paid with, once one was given.
    card: Option<cards::CardFacts>,
}

/// What the simulator remembers.
#[derive(Default)]
struct Store {
    payments: HashMap<String, Payment>,
    /// `Idempotency-Key` → the first answer (status, body).
    answers: HashMap<String, (u16, serde_json::Value)>,
    card_on_file: Option<String>,
    /// When set, refunds are received and then refused with this reason (`REFUND`,
    /// `success=false`), as Adyen does when the balance or the payment does not allow one.
    refund_refusal: Option<String>,
    next_reference: u64,
}

impl Store {
    /// A fresh 16-character pspReference.
    fn psp_reference(&mut self) -> String {
        self.next_reference += 1;
        format!("88{:014}", self.next_reference)
    }
}

struct Simulator {
    config: AdyenSimConfig,
    base_url: String,
    store: Mutex<Store>,
    http: reqwest::Client,
    stopping: watch::Receiver<bool>,
}

type Shared = Arc<Simulator>;

impl Simulator {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("store lock")
    }

    /// Runs background work until it ends or the simulator stops.
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        crate::serving::spawn_until_stopped(&self.stopping, work);
    }
}

/// A running Adyen simulator; dropping it stops it too.
pub type AdyenSimHandle = crate::serving::Serving;

fn router(shared: Shared) -> Router {
    let checkout = Router::new()
        .route("/v71/payments", post(api::payments))
        .route("/v71/payments/details", post(api::payment_details))
        .route(
            "/v71/payments/{psp_reference}/{modification}",
            post(api::modification),
        )
        .route(
            "/pal/servlet/Payout/v68/storeDetailAndSubmitThirdParty",
            post(api::payout),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            api::require_api_key,
        ));
    let browser_and_control = Router::new()
        .route(
            "/hpp/{psp_reference}",
            get(pages::payment_page).post(pages::submit_card),
        )
        .route(
            "/3ds/{psp_reference}",
            get(pages::challenge_page).post(pages::submit_challenge),
        )
        .route("/_sim/card-on-file", put(control::card_on_file))
        .route("/_sim/refund-refusal", put(control::refund_refusal))
        .route("/_sim/payments", get(control::payments))
        .route(
            "/_sim/payments/{psp_reference}/{dispute}",
            post(control::dispute),
        )
        .route("/healthz", get(|| async { "ok" }));
    checkout
        .merge(browser_and_control)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(shared)
}

/// Binds `config.listen` and serves in the background.
pub async fn start(config: AdyenSimConfig) -> anyhow::Result<AdyenSimHandle> {
    anyhow::ensure!(
        hex::decode(&config.hmac_key_hex).is_ok_and(|key| !key.is_empty()),
        "the Adyen simulator's HMAC key must be non-empty hex"
    );
    let bound = crate::serving::bind(&config.listen, config.public_base_url.as_deref()).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the notification HTTP client")?;
    let shared = Arc::new(Simulator {
        config,
        base_url: bound.base_url().to_string(),
        store: Mutex::new(Store::default()),
        http,
        stopping: bound.stopping(),
    });
    Ok(bound.serve(router(shared), "Adyen simulator"))
}

/// Serves until ctrl-c (`kassa sim adyen`).
pub async fn run(config: AdyenSimConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for ctrl-c")?;
    handle.stop().await;
    Ok(())
}
