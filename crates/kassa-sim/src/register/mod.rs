//! Sandboxes of the national self-exclusion registers, speaking their wire shapes over real
//! HTTP (docs/registers.md): GAMSTOP's (a form `POST /v2` with `X-API-Key`, answered by the
//! `X-Exclusion` and `X-Unique-Id` headers) and Spelpaus's (a JSON
//! `POST /api/blocking-info/{actor_id}`, answered `{"isBlocked", "requestId",
//! "responseId"}`). Test identities decide the answer ([`gamstop_answer`],
//! [`spelpaus_answer`]). Runs in-process (tests, `kassa serve` for register accounts without
//! a `base_url`) or as `kassa sim gamstop` / `kassa sim spelpaus`.
//!
//! For tests: `GET /sandbox/calls` counts the checks asked, `PUT /sandbox/behaviour`
//! `{"available": false}` makes every check answer `503` (the register is down).

mod api;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::routing::{get, post, put};
use axum::Router;

pub use api::{gamstop_answer, spelpaus_answer, SandboxAnswer};

/// Which register's wire shape the simulator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterShape {
    /// GAMSTOP (GB).
    Gamstop,
    /// Spelpaus (SE).
    Spelpaus,
}

impl RegisterShape {
    /// The shape of a register account's kind (`gamstop`, `spelpaus`).
    pub fn of_kind(kind: &str) -> Option<RegisterShape> {
        match kind {
            "gamstop" => Some(RegisterShape::Gamstop),
            "spelpaus" => Some(RegisterShape::Spelpaus),
            _ => None,
        }
    }
}

/// How the simulator listens and authenticates.
#[derive(Clone)]
pub struct RegisterSimConfig {
    /// Address to bind, e.g. `127.0.0.1:8093`, or `127.0.0.1:0` for any free port.
    pub listen: String,
    /// The wire shape.
    pub shape: RegisterShape,
    /// The operator's key the simulator expects in `X-API-Key`.
    pub api_key: String,
}

impl std::fmt::Debug for RegisterSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterSimConfig")
            .field("listen", &self.listen)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// Everything the handlers share.
struct Simulator {
    config: RegisterSimConfig,
    calls: AtomicU64,
    available: AtomicBool,
}

type Shared = Arc<Simulator>;

/// A running simulator. Dropping it stops it too.
pub type RegisterSimHandle = crate::serving::Serving;

fn router(shared: Shared) -> Router {
    let check = match shared.config.shape {
        // GAMSTOP's endpoint is the base URL itself (`…/v2`): either form reaches it.
        RegisterShape::Gamstop => Router::new()
            .route("/", post(api::gamstop_check))
            .route("/v2", post(api::gamstop_check)),
        RegisterShape::Spelpaus => {
            Router::new().route("/api/blocking-info/{actor_id}", post(api::spelpaus_check))
        }
    };
    check
        .route("/sandbox/calls", get(api::calls))
        .route("/sandbox/behaviour", put(api::behaviour))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

/// Binds `config.listen` and serves the simulator in the background.
pub async fn start(config: RegisterSimConfig) -> anyhow::Result<RegisterSimHandle> {
    anyhow::ensure!(
        !config.api_key.is_empty(),
        "the register simulator's api_key must not be empty"
    );
    let bound = crate::serving::bind(&config.listen, None).await?;
    let name = match config.shape {
        RegisterShape::Gamstop => "gamstop",
        RegisterShape::Spelpaus => "spelpaus",
    };
    let shared = Arc::new(Simulator {
        config,
        calls: AtomicU64::new(0),
        available: AtomicBool::new(true),
    });
    Ok(bound.serve(router(shared), name))
}

/// Serves the simulator until ctrl-c (`kassa sim gamstop`, `kassa sim spelpaus`).
pub async fn run(config: RegisterSimConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for ctrl-c")?;
    tracing::info!("register simulator stopping");
    handle.stop().await;
    Ok(())
}

impl Simulator {
    /// Counts a check; `false` while the sandbox plays a register that is down.
    fn count_call(&self) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.available.load(Ordering::SeqCst)
    }
}
