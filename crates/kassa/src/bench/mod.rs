//! `kassa bench`: wallet throughput and latency over real HTTP, next to a hand-written
//! baseline on the same database, with correctness checks after every run.
//!
//! By default it starts its own server in this process on 127.0.0.1:0 over a fresh
//! database (a SQLite file in the temp folder, or a new `kassa_bench_*` database on the
//! PostgreSQL server given by `--postgres-url`), with the rate limit off, and runs the
//! matrix: backend × players × clients × runs, wallet then baseline. Figures are the median
//! of the runs. Load is bounded by `--duration-s` and `--requests-max` per run.

mod acquirer;
mod baseline;
mod codec;
mod deposits;
mod http1;
mod risk;
mod routing;
mod stats;
mod wallet;
mod webhooks;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kassa_server::config::{Config, Overrides};
use kassa_server::Server;
use kassa_store::Store;
use serde::Serialize;
use sqlx::Connection;

use baseline::Baseline;
use deposits::{DepositBench, DepositTarget};
use stats::{Median, RunStats};
use wallet::{WalletBench, WalletTarget};
use webhooks::WebhookBench;

/// Prefix of every database the benchmark creates on PostgreSQL.
const DATABASE_PREFIX: &str = "kassa_bench_";

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Which database(s) to run on.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BackendChoice,
    /// PostgreSQL server where a fresh kassa_bench_* database is created.
    #[arg(
        long,
        env = "KASSA_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Concurrent clients, one cell per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Players the load spreads over (the first N of the largest set), one cell per value.
    #[arg(long, value_delimiter = ',', default_value = "10,10000")]
    players: Vec<usize>,
    /// Runs per cell; the figures are their median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Most requests a run may send, whatever the duration.
    #[arg(long, default_value_t = 2_000_000)]
    requests_max: u64,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Skip the hand-written baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Give every wallet player wager and loss limits per day, week and month and a
    /// session-time limit, all too high to refuse a bet, so that every call pays for
    /// checking and counting them (ADR 77); the wallet cells are named `kassa+rg`.
    #[arg(long)]
    play_limits: bool,
    /// Drive an already running server instead of starting one (http://host:port).
    #[arg(long, requires = "api_key")]
    target: Option<String>,
    /// Merchant key for `--target`.
    #[arg(long, env = "KASSA_BENCH_API_KEY")]
    api_key: Option<String>,
    /// With `--target`: the server's database, for `ledger verify`, the baseline and the
    /// wait for the set-up's outbox events.
    #[arg(long)]
    database_url: Option<String>,
    /// Override wallet.batch_size_max of the in-process server.
    #[arg(long)]
    batch_size_max: Option<usize>,
    /// Keep the benchmark databases instead of dropping them.
    #[arg(long)]
    keep_database: bool,
    /// Skip the `ANALYZE` before each PostgreSQL cell: measures a fresh database as it is,
    /// without planner statistics (autovacuum off, or before its first analyze).
    #[arg(long)]
    no_analyze: bool,
    /// Skip the wallet matrix (and its baseline).
    #[arg(long)]
    no_wallet: bool,
    /// Skip deposits end to end (init + signed `captured` webhook + credit).
    #[arg(long)]
    no_deposits: bool,
    /// Skip the ISO 8583 codec's throughput (pack + unpack of a `0200` on one core).
    #[arg(long)]
    no_codec: bool,
    /// Skip card authorizations through the acquirer connector and simulator over TCP.
    #[arg(long)]
    no_acquirer: bool,
    /// Skip outbound webhook delivery throughput (outbox → job queue → a local receiver).
    #[arg(long)]
    no_webhooks: bool,
    /// Outbox events per webhook delivery run.
    #[arg(long, default_value_t = 2_000)]
    webhook_events: usize,
    /// Skip the routing decision's cost (1,000 rules, 20 provider accounts, one core).
    #[arg(long)]
    no_routing: bool,
    /// Skip the risk decision's cost (200 rules, warm counters, on each backend).
    #[arg(long)]
    no_risk: bool,
    /// Players the deposits spread over.
    #[arg(long, default_value_t = 100)]
    deposit_players: usize,
    /// With `--target`: the secret its sandbox provider signs webhooks with.
    #[arg(
        long,
        env = "KASSA_SANDBOX_WEBHOOK_SECRET",
        default_value = "sandbox_webhook_secret_not_for_production",
        hide_env_values = true
    )]
    webhook_secret: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

/// The shape of one run.
#[derive(Clone, Debug)]
pub struct Load {
    pub clients: usize,
    pub players: usize,
    pub duration: Duration,
    pub requests_max: u64,
}

#[derive(Serialize)]
struct Cell {
    backend: String,
    system: &'static str,
    players: usize,
    clients: usize,
    median: Option<Median>,
    runs: Vec<RunStats>,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    commit: Option<String>,
    command_line: String,
    duration_s: f64,
    runs: usize,
    cells: Vec<Cell>,
    ratios: Vec<Ratio>,
    all_checks_ok: bool,
    note: &'static str,
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    memory: Option<String>,
    os: String,
}

#[derive(Serialize)]
struct Ratio {
    backend: String,
    players: usize,
    clients: usize,
    wallet_ops_per_s: f64,
    baseline_ops_per_s: f64,
    ratio: f64,
    wallet_p99_ms: f64,
}

/// Runs the benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(
        args.clients.iter().all(|&c| (1..=1024).contains(&c)),
        "--clients must be between 1 and 1024"
    );
    anyhow::ensure!(
        args.players.iter().all(|&p| (1..=1_000_000).contains(&p)),
        "--players must be between 1 and 1,000,000"
    );
    anyhow::ensure!(
        (1..=1_000_000).contains(&args.deposit_players),
        "--deposit-players must be between 1 and 1,000,000"
    );
    anyhow::ensure!(
        (1..=1_000_000).contains(&args.webhook_events),
        "--webhook-events must be between 1 and 1,000,000"
    );
    anyhow::ensure!(
        args.duration_s > 0.0 && args.duration_s <= 3600.0,
        "--duration-s must be in (0, 3600]"
    );
    // What a card node pays for zeroing freed memory (ADR 71): off unless asked for with
    // KASSA_ZERO_FREED_MEMORY=on, the whole process (server, simulators, load) alike.
    let zeroing = kassa_server::config::ZeroFreedMemory::from_env()
        == Some(kassa_server::config::ZeroFreedMemory::On);
    kassa_zeroing_alloc::set_zero_on_free(zeroing);
    eprintln!(
        "freed memory zeroing (ADR 71): {}",
        if zeroing { "on" } else { "off" }
    );
    let mut cells = Vec::new();
    if let Some(target) = args.target.clone() {
        let api_key = args.api_key.clone().unwrap_or_default();
        cells.extend(
            run_backend(
                &args,
                "target",
                Endpoint {
                    base: target,
                    api_key,
                    database_url: args.database_url.clone(),
                    webhook_secret: args.webhook_secret.clone(),
                },
            )
            .await?,
        );
    } else {
        for backend in backend_names(args.backend) {
            cells.extend(run_in_process(&args, backend).await?);
        }
    }
    if !args.no_codec {
        cells.push(codec::cell(Duration::from_secs_f64(args.duration_s), args.runs).await?);
    }
    if !args.no_acquirer {
        let duration = Duration::from_secs_f64(args.duration_s);
        cells.push(acquirer::cell(duration, args.runs).await?);
    }
    if !args.no_routing {
        cells.push(routing::cell(Duration::from_secs_f64(args.duration_s), args.runs).await?);
    }
    if !args.no_risk && args.target.is_none() {
        let duration = Duration::from_secs_f64(args.duration_s);
        for backend in backend_names(args.backend) {
            cells.push(risk::cell(backend, &args.postgres_url, duration, args.runs).await?);
        }
    }
    let report = report(&args, cells);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if !report.all_checks_ok {
        anyhow::bail!("a correctness check failed; see the report");
    }
    Ok(())
}

fn backend_names(choice: BackendChoice) -> &'static [&'static str] {
    match choice {
        BackendChoice::Sqlite => &["sqlite"],
        BackendChoice::Postgres => &["postgres"],
        BackendChoice::Both => &["sqlite", "postgres"],
    }
}

struct Endpoint {
    base: String,
    api_key: String,
    database_url: Option<String>,
    /// What the server's sandbox provider signs webhooks with.
    webhook_secret: String,
}

async fn run_in_process(args: &BenchArgs, backend: &str) -> anyhow::Result<Vec<Cell>> {
    let database = FreshDatabase::create(backend, &args.postgres_url).await?;
    let mut config = Config::load(
        None,
        &Overrides {
            listen: Some("127.0.0.1:0".into()),
            database_url: Some(database.url.clone()),
            rate_limit_rps: Some(0),
            ..Overrides::default()
        },
    )?;
    if let Some(batch) = args.batch_size_max {
        config.wallet.batch_size_max = batch;
    }
    if config.auth.key_hash_secret.is_empty() {
        // A throwaway database: any secret of its own will do (PostgreSQL refuses the demo one).
        config.auth.key_hash_secret = kassa_server::auth::generate_key("bench_key_hash_secret");
    }
    // The deposits benchmark plays the provider and sends the webhooks itself, all from one
    // address: the per-address webhook limit (a defence against floods) would cap it.
    config.sandbox.autopilot = false;
    config.webhooks.requests_per_second_per_address = 0;
    // The webhook benchmark's receiver listens on 127.0.0.1, which the SSRF guard refuses.
    config.webhooks.allow_private_urls = true;
    let webhook_secret = sandbox_webhook_secret(&config)?;
    // A fresh database bootstraps the demo merchant; its key drives the load.
    let server = Server::start_with(config, Some(&crate::embedded::Simulators)).await?;
    let api_key = server
        .bootstrap
        .as_ref()
        .map(|keys| keys.api_key.clone())
        .context("the fresh benchmark database did not bootstrap a merchant")?;
    let cells = run_backend(
        args,
        backend,
        Endpoint {
            base: format!("http://{}", server.local_addr),
            api_key,
            database_url: Some(database.url.clone()),
            webhook_secret,
        },
    )
    .await;
    server.stop().await?;
    if !args.keep_database {
        database.drop().await?;
    } else {
        eprintln!("kept database {}", database.url);
    }
    cells
}

async fn run_backend(
    args: &BenchArgs,
    backend: &str,
    endpoint: Endpoint,
) -> anyhow::Result<Vec<Cell>> {
    let store = match &endpoint.database_url {
        Some(url) => Some(Store::connect(url).await?),
        None => None,
    };
    let store_ref = store.as_ref();
    let verify = move || async move {
        let Some(store) = store_ref else {
            return Ok((true, "ledger verify skipped: no --database-url".into()));
        };
        let report = store.verify_ledger().await?;
        Ok(if report.is_ok() {
            (true, "ledger verify ok".into())
        } else {
            (false, format!("ledger verify FAILED: {}", report.to_json()))
        })
    };
    let mut cells = Vec::new();
    if !args.no_wallet {
        cells.extend(run_wallet(args, backend, &endpoint, store_ref, verify).await?);
    }
    if !args.no_deposits {
        cells.extend(run_deposits(args, backend, &endpoint, verify).await?);
    }
    // Only on a server of its own: a target's SSRF guard would refuse the local receiver.
    if let (false, true, Some(store)) = (args.no_webhooks, args.target.is_none(), &store) {
        cells.push(run_webhooks(args, backend, &endpoint, store.clone()).await?);
    }
    if let Some(store) = store {
        store.close().await;
    }
    Ok(cells)
}

/// The wallet matrix (players × clients × runs), each run followed by the baseline's.
async fn run_wallet<F, Fut>(
    args: &BenchArgs,
    backend: &str,
    endpoint: &Endpoint,
    store: Option<&Store>,
    verify: F,
) -> anyhow::Result<Vec<Cell>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(bool, String)>>,
{
    let players_max = args.players.iter().copied().max().unwrap_or(10);
    let clients_max = args.clients.iter().copied().max().unwrap_or(1);
    let target = WalletTarget::new(&endpoint.base, &endpoint.api_key, clients_max)?;
    eprintln!("[{backend}] creating {players_max} players");
    let mut wallet = WalletBench::setup(target, players_max, args.play_limits).await?;
    match store {
        Some(store) => outbox_drained(backend, store).await?,
        None => eprintln!("[{backend}] outbox backlog not watched: no --database-url"),
    }
    let system = if args.play_limits {
        "kassa+rg"
    } else {
        "kassa"
    };
    let baseline = match (&endpoint.database_url, args.no_baseline) {
        (Some(url), false) => {
            let baseline = Baseline::for_url(url)?;
            baseline
                .setup(players_max)
                .await
                .context("baseline setup")?;
            Some(baseline)
        }
        _ => None,
    };
    let mut cells = Vec::new();
    let mut run_index = 0u64;
    for &players in &args.players {
        for &clients in &args.clients {
            if let Some(url) = endpoint.database_url.as_ref().filter(|_| !args.no_analyze) {
                analyze(url).await?;
            }
            let load = Load {
                clients,
                players,
                duration: Duration::from_secs_f64(args.duration_s),
                requests_max: args.requests_max,
            };
            let mut wallet_runs = Vec::new();
            let mut baseline_runs = Vec::new();
            for run in 0..args.runs {
                run_index += 1;
                let stats = wallet.run(&load, &verify).await?;
                progress(backend, system, &load, run, &stats);
                wallet_runs.push(stats);
                if let Some(baseline) = &baseline {
                    let stats = baseline.run(&load, run_index).await?;
                    progress(backend, "baseline", &load, run, &stats);
                    baseline_runs.push(stats);
                }
            }
            cells.push(Cell {
                backend: backend.into(),
                system,
                players,
                clients,
                median: Median::of(&wallet_runs),
                runs: wallet_runs,
            });
            if baseline.is_some() {
                cells.push(Cell {
                    backend: backend.into(),
                    system: "baseline",
                    players,
                    clients,
                    median: Median::of(&baseline_runs),
                    runs: baseline_runs,
                });
            }
        }
    }
    Ok(cells)
}

/// Deposits end to end at each client count (no baseline: the issue gives none).
async fn run_deposits<F, Fut>(
    args: &BenchArgs,
    backend: &str,
    endpoint: &Endpoint,
    verify: F,
) -> anyhow::Result<Vec<Cell>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(bool, String)>>,
{
    let clients_max = args.clients.iter().copied().max().unwrap_or(1);
    let target = DepositTarget::new(
        &endpoint.base,
        &endpoint.api_key,
        &endpoint.webhook_secret,
        clients_max,
    )?;
    eprintln!(
        "[{backend}] creating {} deposit players",
        args.deposit_players
    );
    let mut deposits = DepositBench::setup(target, args.deposit_players).await?;
    let mut cells = Vec::new();
    for &clients in &args.clients {
        if let Some(url) = endpoint.database_url.as_ref().filter(|_| !args.no_analyze) {
            analyze(url).await?;
        }
        let load = Load {
            clients,
            players: deposits.players(),
            duration: Duration::from_secs_f64(args.duration_s),
            requests_max: args.requests_max,
        };
        let mut runs = Vec::new();
        for run in 0..args.runs {
            let stats = deposits.run(&load, &verify).await?;
            progress(backend, "deposits", &load, run, &stats);
            runs.push(stats);
        }
        cells.push(Cell {
            backend: backend.into(),
            system: "deposits",
            players: load.players,
            clients,
            median: Median::of(&runs),
            runs,
        });
    }
    Ok(cells)
}

/// Outbound webhook deliveries: `--runs` bursts of `--webhook-events` events to one local
/// endpoint, at the server's default job and delivery settings.
async fn run_webhooks(
    args: &BenchArgs,
    backend: &str,
    endpoint: &Endpoint,
    store: Store,
) -> anyhow::Result<Cell> {
    let bench = WebhookBench::setup(&endpoint.base, &endpoint.api_key, store).await?;
    let load = Load {
        clients: 1,
        players: 0,
        duration: Duration::ZERO,
        requests_max: args.webhook_events as u64,
    };
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let stats = bench.run(args.webhook_events).await?;
        progress(backend, "webhooks", &load, run, &stats);
        runs.push(stats);
    }
    Ok(Cell {
        backend: backend.into(),
        system: "webhooks",
        players: 0,
        clients: 1,
        median: Median::of(&runs),
        runs,
    })
}

/// Longest wait for the set-up's outbox events to be published.
const OUTBOX_DRAIN_WAIT_MAX: Duration = Duration::from_secs(600);

/// Waits until the outbox publisher has caught up with the set-up. Setting the play limits
/// of 10,000 players writes 70,000 `player.limit.changed` events, and their publishing, not
/// the wallet path, took a quarter of the machine during the first measured runs
/// (docs/perf-log.md, note 46).
async fn outbox_drained(backend: &str, store: &Store) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut reported = false;
    loop {
        let backlog = store.outbox_unpublished_count().await?;
        if backlog == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < OUTBOX_DRAIN_WAIT_MAX,
            "the outbox still holds {backlog} unpublished events after {OUTBOX_DRAIN_WAIT_MAX:?}"
        );
        if !reported {
            eprintln!("[{backend}] waiting for the publisher: {backlog} outbox events");
            reported = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Refreshes PostgreSQL's planner statistics, as autovacuum would on a production server
/// (the benchmark's fresh tables grow from nothing; with autovacuum off, as on some
/// development servers, plans made for empty tables — seq scans in foreign-key checks —
/// would be kept while the tables grow to 100,000s of rows).
async fn analyze(database_url: &str) -> anyhow::Result<()> {
    if !database_url.starts_with("postgres") {
        return Ok(());
    }
    let mut connection = sqlx::PgConnection::connect(database_url).await?;
    sqlx::query("ANALYZE").execute(&mut connection).await?;
    connection.close().await?;
    Ok(())
}

fn progress(backend: &str, system: &str, load: &Load, run: usize, stats: &RunStats) {
    eprintln!(
        "[{backend}] {system:<8} players={:<5} clients={:<3} run={} ops/s={:>8.0} p50={:.2}ms p95={:.2}ms p99={:.2}ms errors={} checks={}",
        load.players,
        load.clients,
        run + 1,
        stats.ops_per_s,
        stats.p50_ms,
        stats.p95_ms,
        stats.p99_ms,
        stats.errors,
        if stats.checks_ok { "ok" } else { "FAILED" },
    );
    if !stats.checks_ok {
        for check in &stats.checks {
            eprintln!("    {check}");
        }
    }
}

/// Kassa against the baseline, cell by cell. A cell may be asked for twice (`--clients
/// 64,64`): the n-th Kassa cell of a backend, player count and client count is compared
/// with the n-th baseline cell of the same, the one that ran beside it.
fn ratios(cells: &[Cell]) -> Vec<Ratio> {
    let same_load = |a: &Cell, b: &Cell| {
        a.backend == b.backend && a.players == b.players && a.clients == b.clients
    };
    cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.system == "kassa")
        .filter_map(|(index, wallet)| {
            let repeat = cells[..index]
                .iter()
                .filter(|c| c.system == "kassa" && same_load(c, wallet))
                .count();
            let baseline = cells
                .iter()
                .filter(|c| c.system == "baseline" && same_load(c, wallet))
                .nth(repeat)?;
            let (w, b) = (wallet.median.as_ref()?, baseline.median.as_ref()?);
            Some(Ratio {
                backend: wallet.backend.clone(),
                players: wallet.players,
                clients: wallet.clients,
                wallet_ops_per_s: w.ops_per_s,
                baseline_ops_per_s: b.ops_per_s,
                ratio: if b.ops_per_s > 0.0 {
                    w.ops_per_s / b.ops_per_s
                } else {
                    0.0
                },
                wallet_p99_ms: w.p99_ms,
            })
        })
        .collect()
}

fn report(args: &BenchArgs, cells: Vec<Cell>) -> Report {
    let ratios = ratios(&cells);
    let all_checks_ok = cells
        .iter()
        .all(|c| c.median.as_ref().is_none_or(|m| m.checks_ok));
    Report {
        machine: Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory: std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
            }),
            os: std::env::consts::OS.to_string(),
        },
        commit: checkout_commit(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        duration_s: args.duration_s,
        runs: args.runs,
        cells,
        ratios,
        all_checks_ok,
        note: "Wallet ops are debits (50%), credits (40%) and rollbacks (10%) over HTTP; \
               baseline ops are the same player/house transfers, one SQL transaction each. \
               Deposit ops are whole deposits (init, then the signed `captured` webhook that \
               credits the player), with no baseline. The codec row is ISO 8583 pack + unpack \
               of a `0200` on one core, its latencies per batch of 1,000 messages. The routing row \
               is one routing decision over 1,000 rules and 20 accounts on one core. The risk \
               rows are one pre-authorization decision (feature statements on the database, \
               then 200 rules) over 2,000 stored decisions, one at a time. The acquirer \
               row is card authorizations (`0200` → `0210`) through the ISO 8583 connector and \
               the host simulator over one TCP session, 32 in flight, latency per authorization. Webhook ops \
               are outbox events delivered to one local endpoint (signed POSTs through the \
               job queue, default settings), latency from the event's commit to its arrival.",
    }
}

/// The checked-out commit, with `-dirty` when tracked files differ from it (the figures
/// are then not that commit's); `None` outside a checkout.
fn checkout_commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

fn print_table(report: &Report) {
    println!(
        "machine: {} cores, {} RAM; commit {}",
        report.machine.cores,
        report.machine.memory.as_deref().unwrap_or("?"),
        report.commit.as_deref().unwrap_or("?")
    );
    println!(
        "{:<9} {:<9} {:>7} {:>7} {:>10} {:>8} {:>8} {:>8} {:>6} {:>6}",
        "backend",
        "system",
        "players",
        "clients",
        "ops/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "checks"
    );
    for cell in &report.cells {
        let Some(m) = &cell.median else { continue };
        println!(
            "{:<9} {:<9} {:>7} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>6}",
            cell.backend,
            cell.system,
            cell.players,
            cell.clients,
            m.ops_per_s,
            m.p50_ms,
            m.p95_ms,
            m.p99_ms,
            m.errors,
            if m.checks_ok { "ok" } else { "FAILED" }
        );
    }
    if !report.ratios.is_empty() {
        println!("\nkassa / baseline (median ops/s):");
        for r in &report.ratios {
            println!(
                "{:<9} players={:<6} clients={:<3} {:>8.0} / {:>7.0} = {:>5.1}x  (kassa p99 {:.2} ms)",
                r.backend, r.players, r.clients, r.wallet_ops_per_s, r.baseline_ops_per_s, r.ratio, r.wallet_p99_ms
            );
        }
    }
    println!("\n{}", report.note);
}

/// A database made for this benchmark, dropped afterwards.
struct FreshDatabase {
    url: String,
    admin: Option<(String, String)>,
    sqlite_dir: Option<std::path::PathBuf>,
}

impl FreshDatabase {
    async fn create(backend: &str, postgres_url: &str) -> anyhow::Result<FreshDatabase> {
        let name = format!("{DATABASE_PREFIX}{}", wallet::nonce());
        if backend == "sqlite" {
            let dir = std::env::temp_dir().join(&name);
            std::fs::create_dir_all(&dir)?;
            return Ok(FreshDatabase {
                url: format!("sqlite://{}/kassa.db", dir.display()),
                admin: None,
                sqlite_dir: Some(dir),
            });
        }
        let mut admin = sqlx::PgConnection::connect(postgres_url)
            .await
            .with_context(|| format!("connecting to {postgres_url}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(FreshDatabase {
            url: kassa_store::postgres_url_with_database(postgres_url, &name),
            admin: Some((postgres_url.to_string(), name)),
            sqlite_dir: None,
        })
    }

    async fn drop(self) -> anyhow::Result<()> {
        if let Some(dir) = &self.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((server, name)) = &self.admin {
            let mut admin = sqlx::PgConnection::connect(server).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            admin.close().await?;
        }
        Ok(())
    }
}

/// The webhook secret of the server's first sandbox account, which the deposit benchmark signs
/// its webhooks with.
fn sandbox_webhook_secret(config: &Config) -> anyhow::Result<String> {
    use kassa_connectors::ExposeSecret;
    config
        .providers
        .accounts
        .iter()
        .find(|account| account.kind == kassa_connectors::sandbox::KIND)
        .and_then(|account| account.credentials.get("webhook_secret"))
        .map(|secret| secret.expose_secret().to_string())
        .context("the configuration has no sandbox account with a webhook_secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(system: &'static str, clients: usize, ops_per_s: f64) -> Cell {
        Cell {
            backend: "sqlite".into(),
            system,
            players: 10,
            clients,
            median: Some(stats::Median {
                ops_per_s,
                p50_ms: 1.0,
                p95_ms: 2.0,
                p99_ms: 3.0,
                errors: 0,
                checks_ok: true,
            }),
            runs: Vec::new(),
        }
    }

    #[test]
    fn a_repeated_cell_is_compared_with_the_baseline_that_ran_beside_it() {
        let cells = vec![
            cell("kassa", 64, 1000.0),
            cell("baseline", 64, 100.0),
            cell("kassa", 8, 600.0),
            cell("baseline", 8, 300.0),
            cell("kassa", 64, 1500.0),
            cell("baseline", 64, 500.0),
        ];
        let found: Vec<(usize, f64)> = ratios(&cells)
            .iter()
            .map(|r| (r.clients, r.ratio))
            .collect();
        assert_eq!(found, vec![(64, 10.0), (8, 2.0), (64, 3.0)]);
    }
}
