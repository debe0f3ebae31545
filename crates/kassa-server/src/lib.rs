//! Kassa's server: the HTTP API (`api`), the use cases behind it (`service`), the
//! conventions every endpoint shares (errors, trace ids, auth, rate limits, idempotency),
//! configuration and telemetry.

pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod idempotency;
pub mod providers;
pub mod rate_limit;
pub mod service;
pub mod telemetry;
pub mod trace;
pub mod web;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use kassa_store::Store;
use tokio::net::TcpListener;

pub use config::Config;

/// Everything a request handler may reach; cheap to clone: axum clones the state for every
/// middleware and extractor of every request, so it is one `Arc` (ADR 11), and its fields are
/// reached through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct AppStateInner {
    /// The database.
    pub store: Store,
    /// Loaded configuration.
    pub config: Arc<Config>,
    /// API key lookups.
    pub auth: auth::KeyCache,
    /// Per-key rate limiter; `None` when turned off.
    pub limiter: Option<Arc<rate_limit::KeyedLimiter>>,
    /// The game-round wallet and its group-commit writer.
    pub wallet: service::wallet::WalletService,
    /// Players' immutable ledger wiring, cached.
    pub players: service::players::PlayerDirectory,
    /// Deposits.
    pub payments: service::payments::PaymentsService,
    /// Withdrawals.
    pub payouts: service::payouts::PayoutsService,
}

/// A running server, for tests and the binary.
pub struct Server {
    /// Where it listens (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    /// The demo keys created on first start, if this start created them.
    pub bootstrap: Option<bootstrap::DemoKeys>,
    /// The in-process sandbox PSP's URL, when this server runs one.
    pub sandbox_url: Option<String>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    sandbox: Option<kassa_sim::psp::SandboxHandle>,
}

impl Server {
    /// Connects, migrates, bootstraps an empty database, binds, starts the sandbox provider
    /// (in-process unless configured elsewhere) and the workers, and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let store =
            Store::connect_with_sqlite_tuning(&config.database_url, config.storage.sqlite_tuning)
                .await?;
        store.migrate().await?;
        let bootstrap = bootstrap::ensure_demo_merchant(&store).await?;
        let listener = TcpListener::bind(&config.listen).await?;
        let local_addr = listener.local_addr()?;
        let public_base_url = match config.payments.public_base_url.trim_end_matches('/') {
            "" => format!("http://{local_addr}"),
            url => url.to_string(),
        };
        let (registry, sandbox) = providers::build(&config, &public_base_url).await?;
        let sandbox_url = sandbox.as_ref().map(|s| s.base_url().to_string());
        let state = AppState::new(store, config, Arc::new(registry));
        let (shutdown, mut stop) = tokio::sync::watch::channel(false);
        workers::spawn_status_sync(state.clone(), shutdown.subscribe());
        workers::spawn_payout_sender(state.clone(), shutdown.subscribe());
        workers::spawn_idempotency_purge(state.clone(), shutdown.subscribe());
        workers::spawn_wal_checkpointer(state.clone(), shutdown.subscribe());
        let app = api::router(state);
        let handle = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await
        });
        Ok(Server {
            local_addr,
            bootstrap,
            sandbox_url,
            handle,
            shutdown,
            sandbox,
        })
    }

    /// Stops accepting, finishes requests in flight, and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.handle.await??;
        if let Some(sandbox) = self.sandbox {
            sandbox.stop().await;
        }
        Ok(())
    }

    /// Waits until the server ends (it ends on `stop` or a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await??;
        if let Some(sandbox) = self.sandbox {
            sandbox.stop().await;
        }
        Ok(())
    }

    /// A sender that stops the server when `true` is sent (for signal handlers).
    pub fn shutdown_handle(&self) -> tokio::sync::watch::Sender<bool> {
        self.shutdown.clone()
    }
}

impl AppState {
    /// Wires the services over a migrated store.
    pub fn new(
        store: Store,
        config: Config,
        providers: Arc<kassa_connectors::ProviderRegistry>,
    ) -> AppState {
        let config = Arc::new(config);
        let players = service::players::PlayerDirectory::new(store.clone());
        let wallet =
            service::wallet::WalletService::start(store.clone(), players.clone(), &config.wallet);
        let payments = service::payments::PaymentsService::new(
            store.clone(),
            providers.clone(),
            players.clone(),
        );
        let payouts = service::payouts::PayoutsService::new(
            store.clone(),
            providers,
            players.clone(),
            config.payouts.clone(),
        );
        AppState(Arc::new(AppStateInner {
            auth: auth::KeyCache::new(store.clone()),
            limiter: rate_limit::KeyedLimiter::from_config(&config.rate_limit).map(Arc::new),
            store,
            players,
            wallet,
            payments,
            payouts,
            config,
        }))
    }
}
