//! A stateful simulator of Stripe's PaymentIntents API, speaking its wire format: form bodies
//! in bracket notation, JSON objects with `object: "payment_intent"` and the like, Stripe's
//! error object and status codes, `Idempotency-Key` replays, a hosted 3-D Secure page at
//! `next_action.redirect_to_url.url`, and events signed with `Stripe-Signature` POSTed to a
//! webhook URL with retries. Test payment methods and card numbers are Stripe's own
//! ([`cards`]). Runs in-process (tests, `kassa demo`) or as `kassa sim stripe`.
//!
//! Endpoints: `POST /v1/payment_intents`, `GET /v1/payment_intents/{id}`,
//! `POST /v1/payment_intents/{id}/confirm|capture|cancel`, `POST /v1/refunds`,
//! `POST /v1/payouts`, `GET /v1/payouts/{id}`; the browser's `GET|POST /3ds/{id}`; the
//! test-only `POST /_sim/payment_intents/{id}/dispute` and `POST /_sim/disputes/{id}/close`,
//! and `GET /_sim/payment_intents?kassa_payment_id=…` (what the simulator holds).

mod api;
pub mod cards;
mod events;
mod objects;
mod pages;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

/// How the simulator listens, authenticates, signs and delays.
#[derive(Clone)]
pub struct StripeSimConfig {
    /// Address to bind, e.g. `127.0.0.1:12111`, or `127.0.0.1:0` for any free port.
    pub listen: String,
    /// Base URL browsers reach the simulator at, when it differs from `listen`.
    pub public_base_url: Option<String>,
    /// The one secret key accepted; `None` accepts any `sk_test_…`, as Stripe's mock does.
    pub secret_key: Option<String>,
    /// Key of the `Stripe-Signature` HMAC on every event (`whsec_…`).
    pub webhook_secret: String,
    /// Where events go; `None` sends none.
    pub webhook_url: Option<String>,
    /// Wait between an outcome and its events.
    pub webhook_delay_ms: u64,
    /// Attempts per event delivery, the first included (Stripe retries for days).
    pub webhook_attempts_max: u32,
    /// Wait before the first retry; doubles with every retry.
    pub webhook_retry_backoff_ms: u64,
    /// How long the time-out test card holds its answer ([`cards::TIMEOUT_PAYMENT_METHOD`]).
    pub slow_answer_ms: u64,
}

impl Default for StripeSimConfig {
    fn default() -> StripeSimConfig {
        StripeSimConfig {
            listen: "127.0.0.1:12111".into(),
            public_base_url: None,
            secret_key: None,
            webhook_secret: "whsec_kassa_stripe_simulator".into(),
            webhook_url: None,
            webhook_delay_ms: 200,
            webhook_attempts_max: 8,
            webhook_retry_backoff_ms: 500,
            slow_answer_ms: 15_000,
        }
    }
}

impl std::fmt::Debug for StripeSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSimConfig")
            .field("listen", &self.listen)
            .field("public_base_url", &self.public_base_url)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "[redacted]"),
            )
            .field("webhook_secret", &"[redacted]")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_delay_ms", &self.webhook_delay_ms)
            .finish_non_exhaustive()
    }
}

/// Everything the handlers share.
struct Simulator {
    config: StripeSimConfig,
    base_url: String,
    objects: Mutex<objects::Objects>,
    http: reqwest::Client,
    stopping: watch::Receiver<bool>,
}

type Shared = Arc<Simulator>;

impl Simulator {
    /// Runs background work (event deliveries) until it ends or the simulator stops.
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        crate::serving::spawn_until_stopped(&self.stopping, work);
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, objects::Objects> {
        self.objects.lock().expect("objects lock")
    }
}

/// A running simulator. Dropping it stops it too.
pub type StripeSimHandle = crate::serving::Serving;

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/payment_intents", post(api::create_intent))
        .route("/v1/payment_intents/{id}", get(api::get_intent))
        .route(
            "/v1/payment_intents/{id}/{action}",
            post(api::act_on_intent),
        )
        .route("/v1/refunds", post(api::create_refund))
        .route("/v1/payouts", post(api::create_payout))
        .route("/v1/payouts/{id}", get(api::get_payout))
        .route(
            "/3ds/{id}",
            get(pages::challenge_page).post(pages::answer_challenge),
        )
        .route("/_sim/payment_intents", get(pages::list_intents))
        .route(
            "/_sim/payment_intents/{id}/dispute",
            post(pages::open_dispute),
        )
        .route("/_sim/disputes/{id}/close", post(pages::close_dispute))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(api::unknown_route)
        .with_state(shared)
}

/// Binds `config.listen` and serves the simulator in the background.
pub async fn start(config: StripeSimConfig) -> anyhow::Result<StripeSimHandle> {
    anyhow::ensure!(
        !config.webhook_secret.is_empty(),
        "the Stripe simulator's webhook_secret must not be empty"
    );
    let bound = crate::serving::bind(&config.listen, config.public_base_url.as_deref()).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the webhook HTTP client")?;
    let shared = Arc::new(Simulator {
        config,
        base_url: bound.base_url().to_string(),
        objects: Mutex::new(objects::Objects::default()),
        http,
        stopping: bound.stopping(),
    });
    Ok(bound.serve(router(shared), "stripe"))
}

/// Serves the simulator until ctrl-c (`kassa sim stripe`).
pub async fn run(config: StripeSimConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for ctrl-c")?;
    tracing::info!("Stripe simulator stopping");
    handle.stop().await;
    Ok(())
}
