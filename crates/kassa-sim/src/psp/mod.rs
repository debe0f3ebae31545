//! The sandbox PSP: a REST payment provider with a hosted card page, 3-D Secure 2, signed
//! requests and signed webhooks. The protocol is documented in `docs/sandbox-psp.md`.

mod api;
mod auth;
mod behaviour;
pub mod cards;
mod config;
mod control;
mod pages;
mod store;
mod webhooks;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use tokio::sync::watch;

pub(crate) use api::ApiError;
pub(crate) use auth::{signed_request, NonceMemory, RequestKeys};
pub use behaviour::Behaviour;
pub use config::{
    SandboxConfigError, SandboxPspConfig, DEFAULT_API_SECRET, DEFAULT_WEBHOOK_SECRET,
};
pub(crate) use pages::escape;

/// Everything the handlers share.
struct Sandbox {
    config: SandboxPspConfig,
    base_url: String,
    store: Mutex<store::Store>,
    nonces: Mutex<auth::NonceMemory>,
    /// Client for webhook deliveries, with the delivery timeout.
    http: reqwest::Client,
    stopping: watch::Receiver<bool>,
    /// How payment starts misbehave now (`PUT /sandbox/behaviour`).
    behaviour: Mutex<Behaviour>,
}

type Shared = Arc<Sandbox>;

impl Sandbox {
    /// The misbehaviour in force.
    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().expect("behaviour lock").clone()
    }

    /// Runs background work (delayed outcomes, webhook deliveries) until it ends or the
    /// sandbox stops, so nothing outlives [`SandboxHandle::stop`].
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        crate::serving::spawn_until_stopped(&self.stopping, work);
    }
}

/// A running sandbox PSP. Dropping it stops the sandbox too.
pub type SandboxHandle = crate::serving::Serving;

fn router(shared: Shared) -> Router {
    let signed_api = Router::new()
        .route("/v1/payments", post(api::create_payment))
        .route("/v1/payments/{reference}", get(api::get_payment))
        .route("/v1/payments/{reference}/cancel", post(api::cancel_payment))
        .route("/v1/refunds", post(api::create_refund))
        .route("/v1/payouts", post(api::create_payout))
        .route("/v1/payouts/{reference}", get(api::get_payout))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            auth::require_signature,
        ));
    let browser_and_control = Router::new()
        .route(
            "/pay/{reference}",
            get(pages::card_page).post(pages::submit_card),
        )
        .route("/pay/{reference}/cancel", post(pages::cancel_on_page))
        .route(
            "/3ds/{reference}",
            get(pages::challenge_page).post(pages::submit_challenge),
        )
        .route(
            "/sandbox/payments/{reference}/chargeback",
            post(control::chargeback),
        )
        .route(
            "/sandbox/payments/{reference}/dispute_won",
            post(control::dispute_won),
        )
        .route(
            "/sandbox/payments/{reference}/dispute_lost",
            post(control::dispute_lost),
        )
        .route(
            "/sandbox/behaviour",
            get(behaviour::get_behaviour).put(behaviour::put_behaviour),
        )
        .route("/healthz", get(|| async { "ok" }));
    signed_api
        .merge(browser_and_control)
        .layer(DefaultBodyLimit::max(auth::API_BODY_LEN_MAX))
        .with_state(shared)
}

/// Binds `config.listen` and serves the sandbox in the background.
pub async fn start(config: SandboxPspConfig) -> anyhow::Result<SandboxHandle> {
    config.validate()?;
    let bound = crate::serving::bind(&config.listen, config.public_base_url.as_deref()).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.webhook_timeout_ms.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the webhook HTTP client")?;
    let shared = Arc::new(Sandbox {
        behaviour: Mutex::new(config.behaviour.clone()),
        config,
        base_url: bound.base_url().to_string(),
        store: Mutex::new(store::Store::default()),
        nonces: Mutex::new(auth::NonceMemory::default()),
        http,
        stopping: bound.stopping(),
    });
    Ok(bound.serve(router(shared), "sandbox PSP"))
}

/// Serves the sandbox until ctrl-c (`kassa sim psp`).
pub async fn run(config: SandboxPspConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for ctrl-c")?;
    tracing::info!("sandbox PSP stopping");
    handle.stop().await;
    Ok(())
}
