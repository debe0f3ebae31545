//! Card authorizations per second through the ISO 8583 acquirer connector and Kassa's host
//! simulator over real TCP (issue 20): `clients` concurrent purchases (`0200`) on the one
//! persistent session, each timed from the call to its matched `0210`, with p99.
//!
//! Trace numbers come from memory here (the server takes them from its database, one upsert
//! per message, which the deposit rows measure): this row measures the session, the codec
//! and the simulator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kassa_connectors::acquirer::advice::{AdviceQueue, ReversalAdvice};
use kassa_connectors::acquirer::numbers::MemoryTraceNumbers;
use kassa_connectors::acquirer::{self, AcquirerConnector, AcquirerServices};
use kassa_connectors::{
    CardDetails, Credentials, PaymentProvider, PaymentRequest, ProviderAccount, ProviderError,
};
use kassa_core::Currency;
use kassa_sim::iso8583::{Iso8583HostConfig, Iso8583HostHandle};

use crate::bench::stats::{self, Median, RunStats};
use crate::bench::Cell;

/// Concurrent authorizations in flight on the session.
const CLIENTS: usize = 32;
/// An approving test card of the simulator.
const CARD: &str = "4000000000000002";

/// Counts reversal advices left queued (queued before each request, cancelled once its
/// approval is recorded): a run that leaves one has timed out somewhere.
#[derive(Default)]
struct CountedAdvices(AtomicU64);

#[async_trait]
impl AdviceQueue for CountedAdvices {
    async fn enqueue(
        &self,
        _advice: ReversalAdvice,
        _due_in: Duration,
    ) -> Result<(), ProviderError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn cancel(&self, _advice: &ReversalAdvice) -> Result<(), ProviderError> {
        self.0.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The acquirer cell: `runs` runs of `duration` each.
pub async fn cell(duration: Duration, runs: usize) -> anyhow::Result<Cell> {
    let mut measured = Vec::new();
    for _ in 0..runs {
        measured.push(run(duration).await?);
    }
    Ok(Cell {
        backend: "tcp".into(),
        system: "acquirer",
        players: 0,
        clients: CLIENTS,
        median: Median::of(&measured),
        runs: measured,
    })
}

fn connector(
    host: &Iso8583HostHandle,
    advices: Arc<CountedAdvices>,
) -> anyhow::Result<AcquirerConnector> {
    let settings = serde_json::json!({
        "address": host.local_addr().to_string(),
        "terminal_id": "BENCH001",
        "card_acceptor_id": "KASSA-BENCH",
        "timeout_ms": 5_000,
    });
    let account = ProviderAccount {
        id: "bench-acquirer".into(),
        merchant_id: "mch_bench".into(),
        kind: acquirer::KIND.into(),
        display_name: "bench".into(),
        credentials: Credentials::new(),
        settings: settings.as_object().cloned().unwrap_or_default(),
    };
    let services = AcquirerServices {
        numbers: Arc::new(MemoryTraceNumbers::default()),
        advices,
    };
    Ok(acquirer::from_account(&account, services)?)
}

/// One run: a fresh simulator and session, warmed by one purchase, then `CLIENTS` loops.
async fn run(duration: Duration) -> anyhow::Result<RunStats> {
    let host = kassa_sim::iso8583::start(Iso8583HostConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    })
    .await?;
    let advices = Arc::new(CountedAdvices::default());
    let connector = Arc::new(connector(&host, advices.clone())?);
    let card = CardDetails::new(CARD, "3012", "2601")?;
    let request = PaymentRequest {
        payment_id: "pay_bench".into(),
        amount_minor: 1_000,
        currency: Currency::from_code("EUR")?,
        method: "card".into(),
        country: None,
        return_url: String::new(),
        payment_method_token: None,
    };
    warm_up(&connector, &request, &card).await?;
    // The warm-up's approved purchase left its advice, which its recording would cancel.
    advices.0.store(0, Ordering::Relaxed);
    let histogram = Arc::new(Mutex::new(stats::new_histogram()));
    let (approved, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (connector, request, card) = (connector.clone(), request.clone(), card.clone());
        let (histogram, approved, errors) = (histogram.clone(), approved.clone(), errors.clone());
        let advices = advices.clone();
        clients.push(tokio::spawn(async move {
            let mut own = stats::new_histogram();
            while started.elapsed() < duration {
                let asked = Instant::now();
                match connector.charge_card(&request, &card, None).await {
                    Ok(charge) if charge.captured => {
                        stats::record(&mut own, asked.elapsed());
                        approved.fetch_add(1, Ordering::Relaxed);
                        // The server cancels the purchase's advice in the transaction that
                        // records the approval; here the caller plays that part.
                        if charge.reversal_advice_key.is_some() {
                            advices.0.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let mut merged = histogram.lock().unwrap_or_else(|e| e.into_inner());
            let _ = merged.add(&own);
        }));
    }
    for client in clients {
        client.await?;
    }
    let elapsed = started.elapsed();
    connector.shutdown().await;
    let histogram = histogram.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (approved, errors) = (
        approved.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    let mut stats = RunStats::new(approved, errors, elapsed, &histogram);
    check(
        &mut stats,
        &host,
        approved,
        advices.0.load(Ordering::Relaxed),
    );
    Ok(stats)
}

async fn warm_up(
    connector: &AcquirerConnector,
    request: &PaymentRequest,
    card: &CardDetails,
) -> anyhow::Result<()> {
    for _ in 0..200 {
        match connector.charge_card(request, card, None).await {
            Ok(_) => return Ok(()),
            Err(ProviderError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(error) => anyhow::bail!("the acquirer bench could not warm up: {error}"),
        }
    }
    anyhow::bail!("the acquirer session never came up")
}

/// Every answered purchase was approved, none needed a reversal, and the host saw no STAN
/// twice.
fn check(stats: &mut RunStats, host: &Iso8583HostHandle, approved: u64, advices: u64) {
    let received = host.received();
    let mut stans: Vec<&str> = received.iter().map(|(_, stan)| stan.as_str()).collect();
    let read = stans.len();
    stans.sort_unstable();
    stans.dedup();
    let unique = stans.len() == read;
    stats.checks_ok = stats.errors == 0 && advices == 0 && unique;
    stats.checks.push(format!(
        "{approved} purchases approved over one session with {CLIENTS} in flight; {} errors, \
         {advices} reversal advices; the host read {read} messages, STANs {}",
        stats.errors,
        if unique { "all distinct" } else { "REPEATED" }
    ));
}
