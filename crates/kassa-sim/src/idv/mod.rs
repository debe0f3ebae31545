//! A sandbox ID provider shaped like the common ones (Sumsub, Onfido): Kassa creates an
//! applicant per check and opens a hosted verification page; the player fills in name, birth
//! date, document number and an "upload"; the test data decides the result ([`decide`]),
//! which is POSTed to Kassa as a webhook signed over its timestamp and body
//! (`X-Idv-Signature: t=…,v1=…`). Runs in-process (tests, `kassa serve` for accounts without
//! a `base_url`) or as `kassa sim idv`. The wire format is in `docs/kyc.md`.
//!
//! Endpoints: `POST /applicants`, `POST /applicants/{id}/verification` (signed like the
//! sandbox PSP's API: `X-Kassa-Signature`); the browser's `GET|POST /verify/{id}`.

mod api;
mod decide;
mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::{middleware, Router};
use tokio::sync::watch;

pub use decide::{decide, Decision, Submission};

use crate::psp::NonceMemory;

/// How the simulator listens, authenticates, signs and delays.
#[derive(Clone)]
pub struct IdvSimConfig {
    /// Address to bind, e.g. `127.0.0.1:8092`, or `127.0.0.1:0` for any free port.
    pub listen: String,
    /// Base URL browsers reach the simulator at, when it differs from `listen`.
    pub public_base_url: Option<String>,
    /// Key of the HMAC on every API request.
    pub api_secret: String,
    /// Key of the HMAC on every webhook.
    pub webhook_secret: String,
    /// Where results go; `None` sends none.
    pub webhook_url: Option<String>,
    /// Wait between a submission and its webhook (a provider's review takes a while).
    pub webhook_delay_ms: u64,
    /// Attempts per webhook, the first included.
    pub webhook_attempts_max: u32,
    /// Wait before the first retry; doubles with every retry.
    pub webhook_retry_backoff_ms: u64,
}

impl Default for IdvSimConfig {
    fn default() -> IdvSimConfig {
        IdvSimConfig {
            listen: "127.0.0.1:8092".into(),
            public_base_url: None,
            api_secret: "idv_sandbox_api_secret".into(),
            webhook_secret: "idv_sandbox_webhook_secret".into(),
            webhook_url: None,
            webhook_delay_ms: 200,
            webhook_attempts_max: 6,
            webhook_retry_backoff_ms: 500,
        }
    }
}

impl std::fmt::Debug for IdvSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdvSimConfig")
            .field("listen", &self.listen)
            .field("public_base_url", &self.public_base_url)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_delay_ms", &self.webhook_delay_ms)
            .finish_non_exhaustive()
    }
}

/// One applicant: one check of Kassa's.
#[derive(Clone, Debug)]
struct Applicant {
    id: String,
    external_user_id: String,
    level: String,
    /// `init` until the page is submitted, then `completed`.
    review_status: &'static str,
}

#[derive(Default)]
struct Applicants {
    by_id: HashMap<String, Applicant>,
    by_external_id: HashMap<String, String>,
}

/// Most applicants held; a sandbox, not a database.
const APPLICANTS_MAX: usize = 100_000;

/// Everything the handlers share.
struct Simulator {
    config: IdvSimConfig,
    base_url: String,
    applicants: Mutex<Applicants>,
    nonces: Mutex<NonceMemory>,
    http: reqwest::Client,
    stopping: watch::Receiver<bool>,
}

type Shared = Arc<Simulator>;

/// A running simulator. Dropping it stops it too.
pub type IdvSimHandle = crate::serving::Serving;

async fn require_signature(
    axum::extract::State(shared): axum::extract::State<Shared>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let keys = crate::psp::RequestKeys {
        api_secret: shared.config.api_secret.as_bytes(),
        nonces: &shared.nonces,
    };
    match crate::psp::signed_request(&keys, request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

fn router(shared: Shared) -> Router {
    let api = Router::new()
        .route("/applicants", post(api::create_applicant))
        .route(
            "/applicants/{id}/verification",
            post(api::start_verification),
        )
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_signature,
        ));
    Router::new()
        .merge(api)
        .route(
            "/verify/{id}",
            get(pages::verification_page).post(pages::submit),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

/// Binds `config.listen` and serves the simulator in the background.
pub async fn start(config: IdvSimConfig) -> anyhow::Result<IdvSimHandle> {
    anyhow::ensure!(
        !config.api_secret.is_empty() && !config.webhook_secret.is_empty(),
        "the ID provider simulator's api_secret and webhook_secret must not be empty"
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
        applicants: Mutex::new(Applicants::default()),
        nonces: Mutex::new(NonceMemory::default()),
        http,
        stopping: bound.stopping(),
    });
    Ok(bound.serve(router(shared), "idv"))
}

/// Serves the simulator until ctrl-c (`kassa sim idv`).
pub async fn run(config: IdvSimConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for ctrl-c")?;
    tracing::info!("ID provider simulator stopping");
    handle.stop().await;
    Ok(())
}
