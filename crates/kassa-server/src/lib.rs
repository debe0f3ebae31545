//! Kassa's server: the HTTP API (`api`), the use cases behind it (`service`), the
//! conventions every endpoint shares (errors, trace ids, auth, rate limits, idempotency),
//! configuration and telemetry.

pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod outage;
pub mod providers;
pub mod rate_limit;
pub mod service;
pub mod telemetry;
pub mod trace;
pub mod views;
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
    /// The most one operation may move, per currency (`[limits]`).
    pub amount_limits: kassa_core::AmountLimits,
    /// Per-key rate limiter; `None` when turned off.
    pub limiter: Option<Arc<rate_limit::KeyedLimiter>>,
    /// Per-source-address limiter of inbound webhooks; `None` when turned off.
    pub webhook_limiter: Option<Arc<rate_limit::KeyedLimiter>>,
    /// The game-round wallet and its group-commit writer.
    pub wallet: service::wallet::WalletService,
    /// Players' immutable ledger wiring, cached.
    pub players: service::players::PlayerDirectory,
    /// Deposits.
    pub payments: service::payments::PaymentsService,
    /// Withdrawals.
    pub payouts: service::payouts::PayoutsService,
    /// Multi-provider routing: the document in force, its changes, provider health.
    pub routing: service::routing::RoutingService,
    /// The risk decision before deposits and payouts, and its rule sets.
    pub risk: service::risk::RiskService,
    /// KYC checks at ID providers and players' levels.
    pub kyc: service::kyc::KycService,
    /// Responsible-gambling limits.
    pub limits: service::limits::LimitsService,
    /// AML monitoring after money moved, its alerts and cases.
    pub aml: service::aml::AmlService,
    /// Self-exclusions and time-outs.
    pub exclusions: service::exclusions::ExclusionsService,
    /// National self-exclusion registers (GAMSTOP, Spelpaus).
    pub registers: service::registers::RegistersService,
    /// The operator's webhook endpoints.
    pub webhook_endpoints: service::webhook_endpoints::WebhookEndpointsService,
    /// Sends outbound webhooks (the `webhook.deliver` jobs).
    pub deliverer: workers::webhook_delivery::Deliverer,
    /// Publishes the outbox to NATS JetStream; `None` while `[events_stream]` is off.
    pub event_stream: Option<workers::event_stream::EventStream>,
    /// The addresses each provider account takes webhooks from.
    pub source_allow_lists: service::inbound_sources::SourceAllowLists,
    /// Faults tests inject into the provider-event pipeline.
    pub inbound_faults: Arc<service::inbound_sources::InboundFaults>,
    /// The ISO 8583 acquirer connectors, for their reversal advice jobs.
    pub acquirers: service::acquirer::Acquirers,
    /// The card vault; `None` when no master key is configured (cards are not saved).
    pub vault: Option<Arc<service::vault::Vault>>,
    /// Kassa's own 3DS Server for the acquirers' card-page deposits.
    pub threeds: service::threeds::ThreeDsService,
}

/// A running server, for tests and the binary.
pub struct Server {
    /// Where it listens (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    /// The demo keys created on first start, if this start created them.
    pub bootstrap: Option<bootstrap::DemoKeys>,
    /// The first embedded simulator's URL, when this server runs one.
    pub sandbox_url: Option<String>,
    /// Every embedded simulator's URL by the account it stands in for (tests drive them).
    pub simulator_urls: std::collections::BTreeMap<String, String>,
    /// Its database handle (tests count its write transactions).
    pub store: Store,
    /// Faults a test injects into the provider-event pipeline (dead-letter tests).
    pub inbound_faults: Arc<service::inbound_sources::InboundFaults>,
    /// Where `/metrics` is served, when `[metrics] listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The metrics listener; it ends with the server.
    metrics: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The job runtime; it ends after the shutdown signal, once its jobs are done or handed
    /// back.
    jobs: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
    embedded: Vec<providers::EmbeddedProvider>,
    acquirers: service::acquirer::Acquirers,
}

impl Server {
    /// [`Server::start_with`] without embedded simulators: every provider account must name
    /// its `base_url`.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        Server::start_with(config, None).await
    }

    /// Connects, migrates, bootstraps an empty database, binds, builds the provider accounts
    /// (starting an embedded simulator through `embedded` for each that names no `base_url`),
    /// starts the workers, and starts serving.
    pub async fn start_with(
        config: Config,
        embedded: Option<&dyn providers::EmbeddedProviders>,
    ) -> anyhow::Result<Server> {
        config.check_key_hash_secret_fits_database()?;
        config.limits.amount_limits()?;
        config.source_allow_lists()?;
        let store =
            Store::connect_with_sqlite_tuning(&config.database_url, config.storage.sqlite_tuning)
                .await?
                .with_sqlite_wal_gather(config.storage.sqlite_wal_gather)
                .with_sqlite_group_commit(
                    config.storage.sqlite_tuning && config.storage.sqlite_group_commit,
                );
        store.migrate().await?;
        if !config.vault.master_keys.is_empty() {
            // Refuses a start with a key that would switch the vault off.
            service::vault::Vault::new(
                store.clone(),
                &config.vault.master_keys,
                &config.vault.active_key,
            )?;
        }
        if let Some(key) = &config.vault.fingerprint_key {
            // Refuses a start with a fingerprint key that would switch the card features off.
            service::vault::CardFingerprinter::new(key)?;
        }
        let hasher = auth::KeyHasher::from_config(&config.auth);
        if config.auth.effective_key_hash_secret().1 {
            tracing::warn!(
                "API keys are hashed with the public demo secret; set auth.key_hash_secret \
                 (KASSA_KEY_HASH_SECRET) before real keys go in"
            );
        }
        let upgraded = store
            .upgrade_api_key_hashes(auth::KEYED_HASH_PREFIX, |old| {
                hasher.upgrade_legacy_hash(old)
            })
            .await?;
        if upgraded > 0 {
            tracing::info!(upgraded, "API key hashes moved to the keyed hash");
        }
        let bootstrap = bootstrap::ensure_demo_merchant(&store, &hasher).await?;
        let listener = TcpListener::bind(&config.listen).await?;
        let local_addr = listener.local_addr()?;
        let public_base_url = match config.payments.public_base_url.trim_end_matches('/') {
            "" => format!("http://{local_addr}"),
            url => url.to_string(),
        };
        let acquirers = service::acquirer::Acquirers::default();
        let context = providers::BuildContext {
            public_base_url: &public_base_url,
            embedded,
            store: &store,
            acquirers: &acquirers,
        };
        let providers::Built {
            registry,
            identities,
            registers,
            embedded,
        } = providers::build(&config, context).await?;
        let sandbox_url = embedded.first().map(|s| s.base_url.clone());
        let simulator_urls = embedded
            .iter()
            .map(|s| (s.account_id.clone(), s.base_url.clone()))
            .collect();
        let deliverer = workers::webhook_delivery::Deliverer::new(&config.webhooks)?;
        let publisher = Arc::new(workers::webhook_delivery::WebhookPublisher::new(
            store.clone(),
            &config.webhooks,
        ));
        let providers = Providers {
            registry: Arc::new(registry),
            acquirers: acquirers.clone(),
            identities: Arc::new(identities),
            registers: Arc::new(registers),
        };
        let state = AppState::new(store.clone(), config, providers, deliverer);
        state
            .routing
            .seed(&state.config.routing.document)
            .await
            .map_err(|error| anyhow::anyhow!("[routing.document]: {error}"))?;
        let inbound_faults = state.inbound_faults.clone();
        let (shutdown, mut stop) = tokio::sync::watch::channel(false);
        let jobs = workers::jobs::spawn(state.clone(), publisher, shutdown.subscribe());
        workers::spawn_idempotency_purge(state.clone(), shutdown.subscribe());
        workers::spawn_wal_checkpointer(state.clone(), shutdown.subscribe());
        workers::spawn_database_watch(state.clone(), shutdown.subscribe());
        let (metrics_addr, metrics) = match serve_metrics(&state, &shutdown).await? {
            Some((addr, task)) => (Some(addr), Some(task)),
            None => (None, None),
        };
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
            simulator_urls,
            store,
            inbound_faults,
            metrics_addr,
            metrics,
            handle,
            jobs,
            shutdown,
            embedded,
            acquirers,
        })
    }

    /// Stops accepting, finishes requests in flight, and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.handle.await??;
        self.jobs.await?;
        if let Some(metrics) = self.metrics {
            metrics.await??;
        }
        self.acquirers.shutdown().await;
        for simulator in self.embedded {
            simulator.stop().await;
        }
        Ok(())
    }

    /// Waits until the server ends (it ends on `stop` or a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.handle.await;
        // However serving ended, the jobs stop too (a no-op after a shutdown signal).
        let _ = self.shutdown.send(true);
        self.jobs.await?;
        self.acquirers.shutdown().await;
        served??;
        for simulator in self.embedded {
            simulator.stop().await;
        }
        Ok(())
    }

    /// A sender that stops the server when `true` is sent (for signal handlers).
    pub fn shutdown_handle(&self) -> tokio::sync::watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Metrics upkeep interval: histogram samples are drained into buckets this often.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// With `[metrics] listen` set: installs the recorder, marks every provider account up with
/// its circuit closed (so their series exist before anything changes them), and serves
/// `/metrics` on its own listener until `shutdown`. Returns where it listens.
async fn serve_metrics(
    state: &AppState,
    shutdown: &tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<Option<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)>> {
    if state.config.metrics.listen.is_empty() {
        return Ok(None);
    }
    metrics::install()?;
    for account in &state.config.providers.accounts {
        metrics::set_circuit_state(&account.id, metrics::CircuitState::Closed);
    }
    let listener = TcpListener::bind(&state.config.metrics.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    let mut stop = shutdown.subscribe();
    let mut upkeep_stop = shutdown.subscribe();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_UPKEEP_EVERY);
        while !*upkeep_stop.borrow() {
            tokio::select! {
                _ = every.tick() => metrics::run_upkeep(),
                changed = upkeep_stop.changed() => if changed.is_err() { break },
            }
        }
    });
    let app = api::metrics::router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await
    });
    Ok(Some((addr, task)))
}

/// The vault of `config`; `None` without master keys. Server::start checks the keys first,
/// so a bad key stops the start there rather than here.
fn vault_of(store: &Store, config: &config::VaultConfig) -> Option<Arc<service::vault::Vault>> {
    if config.master_keys.is_empty() {
        return None;
    }
    match service::vault::Vault::new(store.clone(), &config.master_keys, &config.active_key) {
        Ok(vault) => Some(Arc::new(vault.with_fingerprints(fingerprints_of(config)))),
        Err(error) => {
            tracing::error!(%error, "the card vault is off");
            None
        }
    }
}

/// The card fingerprinter of `config` (ADR 75); `None` without a fingerprint key.
/// Server::start checks the key first.
fn fingerprints_of(config: &config::VaultConfig) -> Option<service::vault::CardFingerprinter> {
    let key = config.fingerprint_key.as_ref()?;
    match service::vault::CardFingerprinter::new(key) {
        Ok(fingerprints) => Some(fingerprints),
        Err(error) => {
            tracing::error!(%error, "cards have no fingerprints");
            None
        }
    }
}

/// The provider accounts as the services take them.
pub struct Providers {
    /// Every account's connector, by account id.
    pub registry: Arc<kassa_connectors::ProviderRegistry>,
    /// The acquirer accounts' connectors again, for their reversal advice jobs.
    pub acquirers: service::acquirer::Acquirers,
    /// The ID provider accounts (KYC).
    pub identities: Arc<kassa_connectors::IdentityProviders>,
    /// The self-exclusion register accounts.
    pub registers: Arc<kassa_connectors::ExclusionRegisters>,
}

impl AppState {
    /// Wires the services over a migrated store.
    pub fn new(
        store: Store,
        config: Config,
        providers: Providers,
        deliverer: workers::webhook_delivery::Deliverer,
    ) -> AppState {
        let Providers {
            registry: providers,
            acquirers,
            identities,
            registers,
        } = providers;
        let config = Arc::new(config);
        let players = service::players::PlayerDirectory::new(store.clone());
        let wallet =
            service::wallet::WalletService::start(store.clone(), players.clone(), &config.wallet);
        // Server::start refuses invalid limits; a caller wiring state by hand gets the check
        // here instead.
        let amount_limits = config
            .limits
            .amount_limits()
            .expect("[limits] are valid (checked by Config::load and Server::start)");
        let routing = service::routing::RoutingService::new(
            store.clone(),
            providers.clone(),
            config.routing.health,
        );
        let risk = service::risk::RiskService::new(store.clone(), &config.risk)
            .expect("[risk.rules] is valid (checked by Config::load and Server::start)")
            .with_fingerprints(fingerprints_of(&config.vault));
        let kyc = service::kyc::KycService::new(
            store.clone(),
            players.clone(),
            identities,
            config.kyc.clone(),
            config.aml.settings(),
        );
        let registers = service::registers::RegistersService::new(
            store.clone(),
            players.clone(),
            registers,
            config.registers.clone(),
        );
        let payments = service::payments::PaymentsService::new(
            store.clone(),
            providers.clone(),
            players.clone(),
            amount_limits.clone(),
            routing.clone(),
        )
        .with_risk(risk.clone())
        .with_kyc(kyc.clone())
        .with_registers(registers.clone())
        .with_aml_coalescing(config.aml.monitor_coalesce_ms);
        let vault = vault_of(&store, &config.vault);
        let payouts = service::payouts::PayoutsService::new(
            store.clone(),
            providers,
            players.clone(),
            config.payouts.clone(),
        )
        .with_vault(vault.clone())
        .with_routing(routing.clone())
        .with_risk(risk.clone())
        .with_kyc(kyc.clone());
        let store_for_webhooks = store.clone();
        let limits = service::limits::LimitsService::new(
            store.clone(),
            players.clone(),
            config.wallet.play_session_break_ms(),
        );
        let exclusions =
            service::exclusions::ExclusionsService::new(store.clone(), players.clone());
        let aml = service::aml::AmlService::new(
            store.clone(),
            config.aml.settings(),
            config.aml.reporting_entity.clone(),
        );
        let source_allow_lists = config
            .source_allow_lists()
            .expect("webhook_source_cidrs are valid (checked by Config::load and Server::start)");
        AppState(Arc::new(AppStateInner {
            source_allow_lists,
            inbound_faults: Arc::default(),
            threeds: service::threeds::ThreeDsService::new(acquirers.clone()),
            acquirers,
            vault,
            auth: auth::KeyCache::new(store.clone(), auth::KeyHasher::from_config(&config.auth)),
            amount_limits,
            limiter: rate_limit::KeyedLimiter::from_config(&config.rate_limit).map(Arc::new),
            webhook_limiter: rate_limit::KeyedLimiter::from_config(&config::RateLimitConfig {
                requests_per_second: config.webhooks.requests_per_second_per_address,
                burst: config.webhooks.burst_per_address,
            })
            .map(Arc::new),
            store,
            players,
            wallet,
            payments,
            payouts,
            routing,
            risk,
            kyc,
            limits,
            aml,
            exclusions,
            registers,
            webhook_endpoints: service::webhook_endpoints::WebhookEndpointsService::new(
                store_for_webhooks,
                &config.webhooks,
            ),
            event_stream: workers::event_stream::EventStream::from_config(&config.events_stream),
            deliverer,
            config,
        }))
    }
}
