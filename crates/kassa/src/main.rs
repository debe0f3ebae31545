//! The `kassa` binary.

mod bench;
mod demo;
mod embedded;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kassa_server::config::{Config, Overrides};
use kassa_server::{telemetry, Server};
use kassa_store::Store;

/// mimalloc instead of glibc's malloc: with many threads allocating small objects (HTTP
/// requests, JSON, SQL parameters) glibc's arenas cost measurably more (ADR 0011). Wrapped
/// so that a node handling card numbers zeroes what it frees (ADR 71).
#[global_allocator]
static GLOBAL: kassa_zeroing_alloc::ZeroOnFree<mimalloc::MiMalloc> =
    kassa_zeroing_alloc::ZeroOnFree(mimalloc::MiMalloc);

/// Kassa: payments, wallet and ledger for online casinos.
#[derive(Parser)]
#[command(name = "kassa", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP server (migrates the database first).
    Serve(ServeArgs),
    /// Applies database migrations and exits.
    Migrate(DatabaseArgs),
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Walks one deposit through the sandbox, 3-D Secure challenge included, printing each
    /// step and the final balance. Needs nothing configured.
    Demo(demo::DemoArgs),
    /// Provider simulators, as their own process.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Measures wallet throughput and latency against a hand-written baseline.
    Bench(bench::BenchArgs),
    /// Card vault tools.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Re-wraps every saved card's data key under `vault.active_key` (after a rotation), so
    /// the old master keys can be removed; the cards' ciphertext does not change.
    Rewrap(DatabaseArgs),
    /// Writes the keyed fingerprint (`vault.fingerprint_key`, ADR 80) of every saved card
    /// that has none (saved before the key was set).
    Fingerprint(FingerprintArgs),
}

#[derive(Args)]
struct FingerprintArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Every saved card, not only those without one: after `vault.fingerprint_key` changed.
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand)]
enum SimCommand {
    /// The sandbox PSP (REST API, hosted card and 3-D Secure pages, signed webhooks).
    Psp(SimPspArgs),
    /// An acquirer host speaking ISO 8583 over TCP (pyiso8583's default_ascii dialect), with
    /// test cards by the PAN's last four digits: 0005 → 05, 0051 → 51, 0091 → 91, 0096 → 96,
    /// 0077 answers late, 0099 drops the connection, others approve.
    Iso8583(SimIso8583Args),
    /// A 3-D Secure 2 Directory Server and ACS (EMVCo 2.2 JSON over HTTP: AReq/ARes, the
    /// browser challenge, RReq/RRes) for Kassa's own 3DS Server. Test cards by the PAN's last
    /// four digits: 31xx frictionless (Y), 32xx challenge (code 1234 passes), 33xx attempted
    /// (A), 34xx rejected (R), 35xx unavailable (U); others frictionless.
    Threeds(SimThreedsArgs),
    /// An Adyen-shaped PSP (Checkout API v71, Payout API v68, hosted payment page with a 3-D
    /// Secure 2 challenge, HMAC-signed notification batches). Test cards: 4111111111111111
    /// authorises, 4000020000000000 "Not enough balance", 4000300011112220 "Stolen Card",
    /// 4000000000000119 "Acquirer Error", 4212345678901237 asks for a challenge (password
    /// "password"), 4000000000000002 answers late, 4000000000000500 answers 500.
    Adyen(SimAdyenArgs),
    /// Stripe's PaymentIntents API (form bodies, idempotency keys, 3-D Secure page,
    /// `Stripe-Signature` events); Stripe's test payment methods and card numbers:
    /// pm_card_visa approves, pm_card_chargeDeclinedInsufficientFunds and
    /// pm_card_chargeDeclinedStolenCard decline hard, pm_card_chargeDeclinedProcessingError
    /// softly, pm_card_threeDSecure2Required asks for 3-D Secure, pm_card_kassaTimeout answers
    /// late, pm_card_kassaServerError answers 500.
    Stripe(SimStripeArgs),
    /// A sandbox ID provider (KYC) shaped like Sumsub or Onfido: applicants, a hosted
    /// verification page, results by a webhook signed over its timestamp (X-Idv-Signature).
    /// Test data: a document number starting EXP is rejected (document_expired), BLUR asks
    /// for a resubmission, last name Fraud is rejected (identity_mismatch), source of funds
    /// "Prefer not to say" is rejected at enhanced; anything else is approved.
    Idv(SimIdvArgs),
    /// A sandbox of GAMSTOP, Great Britain's self-exclusion register: a form POST to / or
    /// /v2 with X-API-Key, answered by X-Exclusion and X-Unique-Id headers. Test identities
    /// by last name: Excluded → Y, Lapsed → P, Unavailable → 503, Garbled → a malformed
    /// answer; anyone else → N. GET /sandbox/calls counts checks; PUT /sandbox/behaviour
    /// {"available": false} answers 503 to all.
    Gamstop(SimRegisterArgs),
    /// A sandbox of Spelpaus, Sweden's self-exclusion register: POST
    /// /api/blocking-info/{actor_id} {"requestId", "subjectId"} with X-Api-Key, answered
    /// {"isBlocked", "requestId", "responseId"}. Test personal numbers by birth number:
    /// 199001019992 blocked, 199001019984 → 503, 199001019976 a malformed answer; others not
    /// blocked (e.g. 199001011239). Same /sandbox controls as gamstop.
    Spelpaus(SimRegisterArgs),
}

/// `kassa sim gamstop`, `kassa sim spelpaus`.
async fn run_register_sim(
    shape: kassa_sim::register::RegisterShape,
    args: SimRegisterArgs,
) -> anyhow::Result<()> {
    telemetry::init("text");
    println!(
        "{shape:?} register sandbox listening on http://{} (ctrl-c stops it)",
        args.listen
    );
    kassa_sim::register::run(kassa_sim::register::RegisterSimConfig {
        listen: args.listen,
        shape,
        api_key: args.api_key,
    })
    .await
}

#[derive(Args)]
struct SimRegisterArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8093")]
    listen: String,
    /// The key expected in X-Api-Key (the account's api_key credential).
    #[arg(
        long,
        env = "KASSA_REGISTER_SIM_API_KEY",
        default_value = "register_sandbox_api_key_not_for_production"
    )]
    api_key: String,
}

#[derive(Args)]
struct SimIdvArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8092")]
    listen: String,
    /// Where to send results, e.g. http://127.0.0.1:8080/v1/providers/idv-sandbox/webhook.
    #[arg(long, env = "KASSA_IDV_SIM_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Key of the HMAC on API requests (the account's api_secret).
    #[arg(
        long,
        env = "KASSA_IDV_SIM_API_SECRET",
        default_value = "idv_sandbox_api_secret_not_for_production"
    )]
    api_secret: String,
    /// Key of the HMAC on webhooks (the account's webhook_secret).
    #[arg(
        long,
        env = "KASSA_IDV_SIM_WEBHOOK_SECRET",
        default_value = "idv_sandbox_webhook_secret_not_for_production"
    )]
    webhook_secret: String,
    /// The URL browsers reach the simulator at, when it differs from --listen.
    #[arg(long)]
    public_base_url: Option<String>,
}

#[derive(Args)]
struct SimAdyenArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: String,
    /// Where to send notifications, e.g. http://127.0.0.1:8080/v1/providers/adyen/webhook.
    #[arg(long, env = "KASSA_ADYEN_SIM_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// The notification HMAC key, hex (default: Adyen's documented example key).
    #[arg(long, env = "KASSA_ADYEN_SIM_HMAC_KEY")]
    hmac_key: Option<String>,
    /// The one X-API-Key accepted; without it any non-empty key is.
    #[arg(long, env = "KASSA_ADYEN_SIM_API_KEY")]
    api_key: Option<String>,
    /// The URL browsers reach this simulator at, when it differs from --listen.
    #[arg(long)]
    public_base_url: Option<String>,
}

#[derive(Args)]
struct SimStripeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:12111")]
    listen: String,
    /// Where to send events, e.g. http://127.0.0.1:8080/v1/providers/stripe/webhook.
    #[arg(long, env = "KASSA_STRIPE_SIM_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// The events' signing secret (whsec_…).
    #[arg(
        long,
        env = "KASSA_STRIPE_SIM_WEBHOOK_SECRET",
        default_value = "whsec_kassa_stripe_simulator"
    )]
    webhook_secret: String,
    /// The one secret key accepted; without it any sk_test_… is.
    #[arg(long, env = "KASSA_STRIPE_SIM_SECRET_KEY")]
    secret_key: Option<String>,
    /// The URL browsers reach the simulator at, when it differs from --listen.
    #[arg(long)]
    public_base_url: Option<String>,
    /// How long pm_card_kassaTimeout holds its answer.
    #[arg(long, default_value_t = 40_000)]
    slow_answer_ms: u64,
}

#[derive(Args)]
struct SimThreedsArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8093")]
    listen: String,
    /// The base URL browsers reach it at (default: http://{listen}).
    #[arg(long)]
    public_base_url: Option<String>,
}

#[derive(Args)]
struct SimIso8583Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8583")]
    listen: String,
    /// Frame header: binary_length2 (2-byte big-endian length), ascii_length4 or tpdu.
    #[arg(long, default_value = "binary_length2")]
    header: kassa_iso8583::framing::FrameHeader,
    /// Longer frames are refused and their connection closed.
    #[arg(long, default_value_t = kassa_iso8583::framing::DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// How long the slow test card (PAN ending 0077) waits before its answer.
    #[arg(long, default_value_t = 40_000)]
    slow_delay_ms: u64,
    /// Serve the settlement file over HTTP here (GET /settlement/YYYY-MM-DD: the day's
    /// approved, non-reversed transactions as CSV).
    #[arg(long)]
    settlement_listen: Option<String>,
}

#[derive(Args)]
struct SimPspArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    /// Where to send webhooks, e.g. http://127.0.0.1:8080/v1/payments/webhook.
    #[arg(long, env = "KASSA_SANDBOX_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// The URL browsers reach this sandbox at, when it differs from --listen.
    #[arg(long)]
    public_base_url: Option<String>,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Recomputes every balance from the journal; exits 1 on any difference.
    Verify(VerifyArgs),
}

/// Where the database is; shared by every subcommand that touches it.
#[derive(Args, Clone)]
struct DatabaseArgs {
    /// sqlite://PATH (default ./kassa-data/kassa.db) or postgres://USER@HOST/DB.
    #[arg(long, env = "KASSA_DATABASE_URL")]
    database_url: Option<String>,
    /// A TOML file overriding the defaults (see config/default.toml).
    #[arg(long, env = "KASSA_CONFIG")]
    config: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "KASSA_LISTEN")]
    listen: Option<String>,
    /// `text` or `json`.
    #[arg(long, env = "KASSA_LOG_FORMAT")]
    log_format: Option<String>,
    /// Requests per second per API key; 0 turns the limit off.
    #[arg(long, env = "KASSA_RATE_LIMIT_RPS")]
    rate_limit_rps: Option<u32>,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl DatabaseArgs {
    fn config(&self, mut overrides: Overrides) -> anyhow::Result<Config> {
        overrides.database_url = self.database_url.clone();
        Config::load(self.config.as_deref(), &overrides)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => {
            let config = args.config(Overrides::default())?;
            telemetry::init(&config.log_format);
            let store = Store::connect(&config.database_url).await?;
            store.migrate().await?;
            println!("migrations applied to {}", redact(&config.database_url));
            Ok(())
        }
        Command::Ledger {
            command: LedgerCommand::Verify(args),
        } => verify(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Vault {
            command: VaultCommand::Rewrap(args),
        } => rewrap(args).await,
        Command::Vault {
            command: VaultCommand::Fingerprint(args),
        } => fingerprint(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Sim {
            command: SimCommand::Psp(args),
        } => {
            telemetry::init("text");
            let mut config = kassa_sim::psp::SandboxPspConfig::from_env_defaults()?;
            config.listen = args.listen;
            if args.webhook_url.is_some() {
                config.webhook_url = args.webhook_url;
            }
            config.public_base_url = args.public_base_url;
            println!(
                "sandbox PSP listening on http://{} (ctrl-c stops it)",
                config.listen
            );
            kassa_sim::run(config).await
        }
        Command::Sim {
            command: SimCommand::Adyen(args),
        } => {
            telemetry::init("text");
            let defaults = kassa_sim::adyen::AdyenSimConfig::default();
            let config = kassa_sim::adyen::AdyenSimConfig {
                listen: args.listen,
                public_base_url: args.public_base_url,
                api_key: args.api_key,
                hmac_key_hex: args.hmac_key.unwrap_or(defaults.hmac_key_hex.clone()),
                webhook_url: args.webhook_url,
                ..defaults
            };
            println!(
                "Adyen simulator listening on http://{} (ctrl-c stops it)",
                config.listen
            );
            kassa_sim::adyen::run(config).await
        }
        Command::Sim {
            command: SimCommand::Stripe(args),
        } => {
            telemetry::init("text");
            let config = kassa_sim::stripe::StripeSimConfig {
                listen: args.listen,
                public_base_url: args.public_base_url,
                secret_key: args.secret_key,
                webhook_secret: args.webhook_secret,
                webhook_url: args.webhook_url,
                slow_answer_ms: args.slow_answer_ms,
                ..Default::default()
            };
            println!(
                "Stripe simulator listening on http://{} (ctrl-c stops it)",
                config.listen
            );
            kassa_sim::stripe::run(config).await
        }
        Command::Sim {
            command: SimCommand::Threeds(args),
        } => {
            telemetry::init("text");
            println!(
                "3-D Secure simulator listening on http://{} (ctrl-c stops it)",
                args.listen
            );
            kassa_sim::threeds::run(kassa_sim::threeds::ThreeDsSimConfig {
                listen: args.listen,
                public_base_url: args.public_base_url,
            })
            .await
        }
        Command::Sim {
            command: SimCommand::Gamstop(args),
        } => run_register_sim(kassa_sim::register::RegisterShape::Gamstop, args).await,
        Command::Sim {
            command: SimCommand::Spelpaus(args),
        } => run_register_sim(kassa_sim::register::RegisterShape::Spelpaus, args).await,
        Command::Sim {
            command: SimCommand::Idv(args),
        } => {
            telemetry::init("text");
            let config = kassa_sim::idv::IdvSimConfig {
                listen: args.listen,
                public_base_url: args.public_base_url,
                api_secret: args.api_secret,
                webhook_secret: args.webhook_secret,
                webhook_url: args.webhook_url,
                ..Default::default()
            };
            println!(
                "ID provider simulator listening on http://{} (ctrl-c stops it)",
                config.listen
            );
            kassa_sim::idv::run(config).await
        }
        Command::Sim {
            command: SimCommand::Iso8583(args),
        } => {
            telemetry::init("text");
            let config = kassa_sim::iso8583::Iso8583HostConfig {
                listen: args.listen,
                header: args.header,
                max_frame_bytes: args.max_frame_bytes,
                slow_delay_ms: args.slow_delay_ms,
                settlement_listen: args.settlement_listen,
                ..Default::default()
            };
            let handle = kassa_sim::iso8583::start(config).await?;
            println!(
                "ISO 8583 host simulator listening on {} (ctrl-c stops it)",
                handle.local_addr()
            );
            if let Some(url) = handle.settlement_url() {
                println!("settlement files at {url}/settlement/YYYY-MM-DD");
            }
            tokio::signal::ctrl_c().await?;
            handle.stop();
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.database.config(Overrides {
        listen: args.listen,
        log_format: args.log_format,
        rate_limit_rps: args.rate_limit_rps,
        ..Overrides::default()
    })?;
    telemetry::init(&config.log_format);
    let zeroing = config.zeroes_freed_memory();
    kassa_zeroing_alloc::set_zero_on_free(zeroing);
    tracing::info!(
        zero_freed_memory = zeroing,
        "freed memory zeroing decided (ADR 71)"
    );
    let database = redact(&config.database_url);
    let server = Server::start_with(config, Some(&crate::embedded::Simulators)).await?;
    if let Some(keys) = &server.bootstrap {
        println!("Created the demo merchant on this empty database. Keep these keys:");
        println!("  merchant API key: {}", keys.api_key);
        println!("  admin API key:    {}", keys.admin_key);
    }
    println!(
        "Kassa is listening on http://{} (database {database})",
        server.local_addr
    );
    if let Some(addr) = server.metrics_addr {
        println!("Prometheus metrics at http://{addr}/metrics");
    }
    tracing::info!(addr = %server.local_addr, "listening");
    let shutdown = server.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown.send(true);
    });
    server.wait().await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The vault of `config`'s database and keys, for the vault tools.
async fn vault_of(config: &Config) -> anyhow::Result<kassa_server::service::vault::Vault> {
    anyhow::ensure!(
        !config.vault.master_keys.is_empty(),
        "no vault master keys configured ([vault] master_keys)"
    );
    let store = Store::connect(&config.database_url).await?;
    store.migrate().await?;
    Ok(kassa_server::service::vault::Vault::new(
        store,
        &config.vault.master_keys,
        &config.vault.active_key,
    )?)
}

async fn fingerprint(args: FingerprintArgs) -> anyhow::Result<()> {
    let config = args.database.config(Overrides::default())?;
    telemetry::init(&config.log_format);
    let key = config
        .vault
        .fingerprint_key
        .as_ref()
        .context("no fingerprint key configured ([vault] fingerprint_key)")?;
    let fingerprints = kassa_server::service::vault::CardFingerprinter::new(key)?;
    let vault = vault_of(&config)
        .await?
        .with_fingerprints(Some(fingerprints));
    let written = vault.fingerprint_cards(args.all).await?;
    println!("{written} saved cards fingerprinted");
    Ok(())
}

async fn rewrap(args: DatabaseArgs) -> anyhow::Result<()> {
    let config = args.config(Overrides::default())?;
    telemetry::init(&config.log_format);
    let vault = vault_of(&config).await?;
    let moved = vault.rewrap().await?;
    println!(
        "{moved} saved cards re-wrapped under vault key {:?}",
        config.vault.active_key
    );
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let config = args.database.config(Overrides::default())?;
    let store = Store::connect(&config.database_url).await?;
    store.migrate().await?;
    let report = store.verify_ledger().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        println!(
            "checked {} accounts, {} entries, {} transfers",
            report.accounts_checked, report.entries_checked, report.transfers_checked
        );
        for (id, stored, recomputed) in &report.drifted_accounts {
            println!("DRIFT account {id}: stored {stored}, journal says {recomputed}");
        }
        for (id, balance) in &report.negative_accounts {
            println!("NEGATIVE account {id}: {balance}");
        }
        for (currency, total) in &report.unbalanced_currencies {
            println!("UNBALANCED {currency}: balances sum to {total}, not 0");
        }
        if report.currency_mismatches > 0 {
            println!(
                "CURRENCY {} transfers between accounts of another currency",
                report.currency_mismatches
            );
        }
        if report.inconsistent_entries > 0 {
            println!(
                "INCONSISTENT {} entries whose status disagrees with their transfers",
                report.inconsistent_entries
            );
        }
        if report.orphan_references > 0 {
            println!(
                "ORPHAN {} journal rows name an account, entry or merchant that does not exist",
                report.orphan_references
            );
        }
        println!(
            "{}",
            if report.is_ok() {
                "ledger OK"
            } else {
                "ledger BROKEN"
            }
        );
    }
    store.close().await;
    if !report.is_ok() {
        std::process::exit(1);
    }
    Ok(())
}

/// The URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
