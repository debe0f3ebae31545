//! Deposits end to end over real HTTP: `POST /v1/payments/init` (Kassa calls the sandbox
//! PSP over HTTP), then the provider's signed `captured` webhook, which credits the player.
//! The benchmark plays the provider, so the server's sandbox must not send webhooks itself
//! (`sandbox.autopilot = false`).
//!
//! After each run: the ledger verifies, every player's balance equals 10.00 × the captures
//! acknowledged with `"outcome":"processed"`, and a sample of webhooks sent again answers
//! the same and moves nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;

use super::stats::{self, RunStats};
use super::wallet::{nonce, parse_minor};
use super::Load;

/// Every deposit is 10.00 EUR.
const DEPOSIT_AMOUNT: &str = "10.00";
const DEPOSIT_MINOR: i64 = 1_000;
/// Parallel requests used for setup and checks (not measured).
const SETUP_CONCURRENCY: usize = 32;
/// Captures whose webhook is sent again after each run.
const REPLAY_SAMPLE_LEN: usize = 32;
/// Kassa refuses webhooks whose timestamp is more than 5 minutes from now, so only captures
/// younger than this are sent again (a run may last up to an hour).
const REPLAY_FRESH_FOR: Duration = Duration::from_secs(240);
/// Attempts at a step that got no answer (transport error or 5xx) before giving up.
const ATTEMPTS_MAX: u32 = 10;

/// A Kassa server to deposit into, and the secret its sandbox provider signs webhooks with.
#[derive(Clone)]
pub struct DepositTarget {
    base: String,
    auth: HeaderValue,
    client: reqwest::Client,
    init_url: Arc<str>,
    webhook_url: Arc<str>,
    webhook_secret: Arc<str>,
}

#[derive(Deserialize)]
struct InitAnswer {
    payment_id: String,
}

#[derive(Deserialize)]
struct BalanceView {
    available: String,
}

/// A capture the server acknowledged as processed: enough to send it again.
struct Captured {
    player: usize,
    /// When its webhook was signed (its timestamp is then).
    at: Instant,
    raw: String,
    signature: String,
    answer: serde_json::Value,
}

/// A processed deposit: its webhook, signature and answer, and Kassa's own init time.
type Deposited = (String, String, serde_json::Value, Option<Duration>);

struct ClientResult {
    histogram: Histogram<u64>,
    /// Kassa's own time per init, from its `Server-Timing` header.
    kassa_histogram: Histogram<u64>,
    captured: Vec<Captured>,
    errors: u64,
}

/// What one step (init or webhook) got back.
enum Reply {
    /// Status, body, and Kassa's own time from `Server-Timing` when the answer has it.
    Answer(StatusCode, Vec<u8>, Option<Duration>),
    /// Transport error or 5xx: the step may be sent again (idempotency key, event id).
    Retry,
}

impl DepositTarget {
    pub fn new(
        base: &str,
        api_key: &str,
        webhook_secret: &str,
        clients_max: usize,
    ) -> anyhow::Result<DepositTarget> {
        let base = base.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients_max.max(SETUP_CONCURRENCY))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(DepositTarget {
            auth: HeaderValue::from_str(&format!("Bearer {api_key}"))?,
            client,
            init_url: format!("{base}/v1/payments/init").into(),
            webhook_url: format!("{base}/v1/payments/webhook").into(),
            webhook_secret: webhook_secret.into(),
            base,
        })
    }

    async fn init(&self, key: &str, body: &str) -> Reply {
        let response = self
            .client
            .post(&*self.init_url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
            .await;
        reply(response).await
    }

    async fn webhook(&self, raw: &str, signature: &str) -> Reply {
        let response = self
            .client
            .post(&*self.webhook_url)
            .header(CONTENT_TYPE, "application/json")
            .header("x-signature", signature)
            .body(raw.to_string())
            .send()
            .await;
        reply(response).await
    }

    async fn create_players(&self, ids: &[String]) -> anyhow::Result<()> {
        let results: Vec<anyhow::Result<()>> = stream::iter(ids.iter())
            .map(|id| async move {
                let response = self
                    .client
                    .put(format!("{}/v1/players/{id}", self.base))
                    .header(AUTHORIZATION, self.auth.clone())
                    .json(&serde_json::json!({"currency": "EUR", "country": "MT"}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "creating player {id}: {}",
                    response.status()
                );
                Ok(())
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn balance(&self, id: &str) -> anyhow::Result<i64> {
        let response = self
            .client
            .get(format!("{}/v1/players/{id}/balance", self.base))
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "balance of player {id}: {}",
            response.status()
        );
        let view: BalanceView = response.json().await?;
        parse_minor(&view.available)
    }
}

async fn reply(response: reqwest::Result<reqwest::Response>) -> Reply {
    let Ok(response) = response else {
        return Reply::Retry;
    };
    let status = response.status();
    if status.is_server_error() {
        return Reply::Retry;
    }
    let kassa = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(kassa_duration);
    match response.bytes().await {
        Ok(bytes) => Reply::Answer(status, bytes.to_vec(), kassa),
        Err(_) => Reply::Retry,
    }
}

/// The `kassa;dur=<ms>` part of a `Server-Timing` value.
fn kassa_duration(header: &str) -> Option<Duration> {
    header.split(',').find_map(|metric| {
        let ms = metric.trim().strip_prefix("kassa;dur=")?;
        let ms: f64 = ms.parse().ok()?;
        Some(Duration::from_secs_f64(ms / 1000.0))
    })
}

/// The benchmark's view of the deposits: what every player's balance must be.
pub struct DepositBench {
    target: DepositTarget,
    player_ids: Vec<String>,
    expected_minor: Vec<i64>,
    runs: u64,
    nonce: String,
}

impl DepositBench {
    /// Creates `players` fresh players (balance 0) on the target.
    pub async fn setup(target: DepositTarget, players: usize) -> anyhow::Result<DepositBench> {
        let nonce = nonce();
        let player_ids: Vec<String> = (0..players).map(|i| format!("dp{nonce}-{i}")).collect();
        target.create_players(&player_ids).await?;
        Ok(DepositBench {
            target,
            expected_minor: vec![0; players],
            player_ids,
            runs: 0,
            nonce,
        })
    }

    /// Players the load spreads over.
    pub fn players(&self) -> usize {
        self.player_ids.len()
    }

    /// One measured run (`load.players` is ignored: all of this bench's players are used),
    /// then its checks (`verify` checks the ledger when the database is at hand).
    pub async fn run<F, Fut>(&mut self, load: &Load, verify: F) -> anyhow::Result<RunStats>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<(bool, String)>>,
    {
        self.runs += 1;
        let prefix = format!("{}-r{}", self.nonce, self.runs);
        let issued = Arc::new(AtomicU64::new(0));
        let player_ids: Arc<[String]> = self.player_ids.clone().into();
        let started = Instant::now();
        let deadline = started + load.duration;
        let tasks: Vec<_> = (0..load.clients)
            .map(|client| {
                let target = self.target.clone();
                let issued = issued.clone();
                let prefix = format!("{prefix}-c{client}");
                let player_ids = player_ids.clone();
                let requests_max = load.requests_max;
                tokio::spawn(async move {
                    client_loop(target, player_ids, deadline, issued, requests_max, prefix).await
                })
            })
            .collect();
        let mut histogram = stats::new_histogram();
        let mut kassa_histogram = stats::new_histogram();
        let mut captured = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let result = task.await??;
            histogram.add(&result.histogram)?;
            kassa_histogram.add(&result.kassa_histogram)?;
            captured.extend(result.captured);
            errors += result.errors;
        }
        let elapsed = started.elapsed();
        let mut run = RunStats::new(captured.len() as u64, errors, elapsed, &histogram);
        if errors > 0 {
            run.checks.push(format!(
                "{errors} deposits got no processed capture (not counted)"
            ));
        }
        if !kassa_histogram.is_empty() {
            let ms = |q| kassa_histogram.value_at_quantile(q) as f64 / 1000.0;
            run.checks.push(format!(
                "Kassa's own time per init (Server-Timing, provider excluded): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
                ms(0.5),
                ms(0.95),
                ms(0.99)
            ));
        }
        self.check(&mut run, &captured).await?;
        let (verified, note) = verify().await?;
        run.checks_ok &= verified;
        run.checks.push(note);
        Ok(run)
    }

    async fn check(&mut self, run: &mut RunStats, captured: &[Captured]) -> anyhow::Result<()> {
        for capture in captured {
            self.expected_minor[capture.player] += DEPOSIT_MINOR;
        }
        let all: Vec<usize> = (0..self.player_ids.len()).collect();
        let mismatches = self.compare_balances(&all).await?;
        run.record_balances(
            format!(
                "balances of {} players equal 10.00 × their {} processed captures",
                all.len(),
                captured.len()
            ),
            "the processed captures",
            &mismatches,
        );
        let fresh: Vec<&Captured> = captured
            .iter()
            .filter(|c| c.at.elapsed() < REPLAY_FRESH_FOR)
            .collect();
        let step = (fresh.len() / REPLAY_SAMPLE_LEN).max(1);
        let sample: Vec<&Captured> = fresh
            .into_iter()
            .step_by(step)
            .take(REPLAY_SAMPLE_LEN)
            .collect();
        let mut problems = Vec::new();
        for capture in &sample {
            let mut again = None;
            for _ in 0..ATTEMPTS_MAX {
                if let Reply::Answer(status, bytes, _) =
                    self.target.webhook(&capture.raw, &capture.signature).await
                {
                    again = Some((status, bytes));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match again {
                Some((StatusCode::OK, bytes))
                    if serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()
                        .as_ref()
                        == Some(&capture.answer) => {}
                other => problems.push(format!("{}: {other:?}", capture.raw)),
            }
        }
        let mut players: Vec<usize> = sample.iter().map(|c| c.player).collect();
        players.sort_unstable();
        players.dedup();
        let moved = self.compare_balances(&players).await?;
        run.record_replays(
            format!(
                "{} webhooks sent again answered as first, no money moved",
                sample.len()
            ),
            &problems,
            moved.len(),
        );
        Ok(())
    }

    /// Players whose balance is not what the captures say: (player, expected, actual).
    async fn compare_balances(&self, players: &[usize]) -> anyhow::Result<Vec<(usize, i64, i64)>> {
        let results: Vec<anyhow::Result<(usize, i64)>> = stream::iter(players.iter().copied())
            .map(|p| async move { Ok((p, self.target.balance(&self.player_ids[p]).await?)) })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
        let mut mismatches = Vec::new();
        for result in results {
            let (p, actual) = result?;
            if actual != self.expected_minor[p] {
                mismatches.push((p, self.expected_minor[p], actual));
            }
        }
        Ok(mismatches)
    }
}

/// One client: deposits one after another until the deadline or the request cap.
async fn client_loop(
    target: DepositTarget,
    player_ids: Arc<[String]>,
    deadline: Instant,
    issued: Arc<AtomicU64>,
    requests_max: u64,
    prefix: String,
) -> anyhow::Result<ClientResult> {
    let mut rng = StdRng::from_entropy();
    let mut histogram = stats::new_histogram();
    let mut kassa_histogram = stats::new_histogram();
    let mut captured = Vec::new();
    let mut errors = 0;
    let mut seq = 0u64;
    while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < requests_max {
        seq += 1;
        let player = rng.gen_range(0..player_ids.len());
        let started = Instant::now();
        match deposit(&target, &player_ids[player], &format!("{prefix}-{seq}")).await? {
            Some((raw, signature, answer, kassa)) => {
                stats::record(&mut histogram, started.elapsed());
                if let Some(kassa) = kassa {
                    stats::record(&mut kassa_histogram, kassa);
                }
                captured.push(Captured {
                    player,
                    at: Instant::now(),
                    raw,
                    signature,
                    answer,
                });
            }
            None => errors += 1,
        }
    }
    Ok(ClientResult {
        histogram,
        kassa_histogram,
        captured,
        errors,
    })
}

/// One deposit: init, then the signed `captured` webhook. `Some((raw webhook, signature,
/// answer, Kassa's own time of the init))` when the capture was processed; `None` when a
/// step never got an answer.
async fn deposit(
    target: &DepositTarget,
    player_id: &str,
    key: &str,
) -> anyhow::Result<Option<Deposited>> {
    let body = format!(
        r#"{{"amount":"{DEPOSIT_AMOUNT}","currency":"EUR","method":"card","player_id":"{player_id}","return_url":"http://127.0.0.1/x","meta":{{"country":"MT"}}}}"#
    );
    let mut payment_id = None;
    let mut kassa = None;
    for _ in 0..ATTEMPTS_MAX {
        match target.init(key, &body).await {
            Reply::Answer(StatusCode::CREATED, bytes, timing) => {
                let answer: InitAnswer = serde_json::from_slice(&bytes)
                    .with_context(|| format!("init answer {}", String::from_utf8_lossy(&bytes)))?;
                payment_id = Some(answer.payment_id);
                kassa = timing;
                break;
            }
            Reply::Answer(StatusCode::CONFLICT, ..) | Reply::Retry => {
                // Still running (idempotency_key_in_use) or no answer: ask again.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Reply::Answer(status, bytes, _) => bail!(
                "init answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    let Some(payment_id) = payment_id else {
        return Ok(None);
    };
    let raw = format!(
        r#"{{"event_id":"evt_{key}","payment_id":"{payment_id}","status":"captured","amount":"{DEPOSIT_AMOUNT}","currency":"EUR","timestamp":"{}"}}"#,
        rfc3339_now()
    );
    let signature =
        kassa_connectors::sign_webhook(target.webhook_secret.as_bytes(), raw.as_bytes());
    for _ in 0..ATTEMPTS_MAX {
        match target.webhook(&raw, &signature).await {
            Reply::Answer(StatusCode::OK, bytes, _) => {
                let answer: serde_json::Value =
                    serde_json::from_slice(&bytes).with_context(|| {
                        format!("webhook answer {}", String::from_utf8_lossy(&bytes))
                    })?;
                anyhow::ensure!(
                    answer["outcome"] == "processed",
                    "the capture of {payment_id} was not processed: {answer}"
                );
                return Ok(Some((raw, signature, answer, kassa)));
            }
            Reply::Retry => tokio::time::sleep(Duration::from_millis(20)).await,
            Reply::Answer(status, bytes, _) => bail!(
                "webhook answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    // Its fate is unknown; the balance check after the run would say if it credited.
    bail!("the capture webhook of {payment_id} got no answer after {ATTEMPTS_MAX} attempts")
}

/// Now, as RFC 3339 with whole seconds (the seed webhook's timestamp format).
fn rfc3339_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kassa_part_of_server_timing_is_read_in_milliseconds() {
        assert_eq!(
            kassa_duration("kassa;dur=1.250, provider;dur=30.000"),
            Some(Duration::from_micros(1250))
        );
        assert_eq!(
            kassa_duration("provider;dur=3, kassa;dur=0.5"),
            Some(Duration::from_micros(500))
        );
        assert_eq!(kassa_duration("provider;dur=3"), None);
    }

    #[test]
    fn timestamps_are_rfc3339_in_whole_seconds() {
        let now = rfc3339_now();
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
        assert!(
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
                .is_ok()
        );
    }
}
