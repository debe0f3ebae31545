//! Wallet load over real HTTP: debits, credits and rollbacks against a running Kassa, and
//! the checks that follow each run (balances equal the sum of what was acknowledged,
//! replays move nothing, the ledger verifies).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use hyper::body::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;

use super::http1::{Http1Client, Reply};
use super::stats::{self, RunStats};
use super::Load;

/// Balance every benchmark player starts with, in cents (1,000,000.00 EUR): bets of at most
/// 10.00 do not run it dry within a benchmark, so nearly every debit moves money.
const SEED_BALANCE_MINOR: i64 = 100_000_000;
/// Parallel requests used for setup and checks (not measured).
const SETUP_CONCURRENCY: usize = 32;
/// Acknowledged operations replayed after each run to prove a replay moves nothing.
const REPLAY_SAMPLE_LEN: usize = 64;
/// Debits a client remembers as candidates for a rollback.
const OPEN_DEBITS_MAX: usize = 64;
/// The limits `--play-limits` gives every player: each kind a wager, loss and session limit
/// checks, none of them reached within a benchmark (ten times the seed balance; a day of
/// play), so the load is the same as without them and only their cost shows.
const PLAY_LIMITS: &str = r#"{
    "wager": {"day": "10000000.00", "week": "10000000.00", "month": "10000000.00"},
    "loss": {"day": "10000000.00", "week": "10000000.00", "month": "10000000.00"},
    "session": {"minutes": 1440}
}"#;
/// Attempts to learn the fate of a call that got no answer.
const RESOLVE_ATTEMPTS_MAX: u32 = 20;

/// A Kassa server to drive.
#[derive(Clone)]
pub struct WalletTarget {
    base: String,
    auth: HeaderValue,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Receipt {
    status: String,
    balance: String,
}

#[derive(Deserialize)]
struct BalanceView {
    available: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Debit,
    Credit,
    Rollback,
}

impl Kind {
    /// The endpoint of this kind of call.
    fn path(self) -> &'static str {
        match self {
            Kind::Debit => "/v1/wallet/debit",
            Kind::Credit => "/v1/wallet/credit",
            Kind::Rollback => "/v1/wallet/rollback",
        }
    }
}

/// A call as sent: enough to replay it and to count what it did.
struct Sent {
    kind: Kind,
    body: String,
    player: usize,
    /// For a rollback, the amount of the debit it undoes.
    amount_minor: i64,
}

/// What the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// 200 with a receipt.
    Receipt { status: String, balance: String },
    /// 402: nothing moved.
    InsufficientFunds,
}

impl Answer {
    /// Money the call moved into the player's cash (negative for a bet).
    fn effect_minor(&self, sent: &Sent) -> i64 {
        match (self, sent.kind) {
            (Answer::Receipt { status, .. }, Kind::Debit) if status == "posted" => {
                -sent.amount_minor
            }
            (Answer::Receipt { status, .. }, Kind::Credit) if status == "posted" => {
                sent.amount_minor
            }
            (Answer::Receipt { status, .. }, Kind::Rollback) if status == "rolled_back" => {
                sent.amount_minor
            }
            _ => 0,
        }
    }
}

struct ClientResult {
    histogram: Histogram<u64>,
    acknowledged: Vec<(Sent, Answer)>,
    unanswered: Vec<Sent>,
}

impl WalletTarget {
    /// A client for the server at `base` (`http://host:port`) with a merchant key.
    pub fn new(base: &str, api_key: &str, clients_max: usize) -> anyhow::Result<WalletTarget> {
        let base = base.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients_max.max(SETUP_CONCURRENCY))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(WalletTarget {
            auth: HeaderValue::from_str(&format!("Bearer {api_key}"))?,
            client,
            base,
        })
    }

    fn url(&self, kind: Kind) -> String {
        format!("{}{}", self.base, kind.path())
    }

    /// Sends a call; `Ok(None)` when it got no usable answer (its fate is unknown).
    async fn send(&self, kind: Kind, body: &str) -> anyhow::Result<Option<(Answer, bool)>> {
        let response = self
            .client
            .post(self.url(kind))
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let Ok(response) = response else {
            return Ok(None);
        };
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let Ok(body) = response.bytes().await else {
            return Ok(None);
        };
        read_answer(Reply {
            status,
            replayed,
            body,
        })
    }

    /// A connection of its own for one measured client.
    fn load_client(&self) -> anyhow::Result<Http1Client> {
        Http1Client::new(&self.base, self.auth.clone())
    }

    /// Creates players `bp0..bp{count}`, with [`PLAY_LIMITS`] when `play_limits`, and gives
    /// each the seed balance. Returns their balances.
    pub async fn create_players(
        &self,
        count: usize,
        nonce: &str,
        play_limits: bool,
    ) -> anyhow::Result<Vec<i64>> {
        let results: Vec<anyhow::Result<i64>> = stream::iter(0..count)
            .map(|i| async move {
                let player = serde_json::json!({"currency": "EUR", "country": "MT"});
                self.put(&format!("/v1/players/{}", player_id(i)), &player)
                    .await
                    .with_context(|| format!("creating player {i}"))?;
                if play_limits {
                    let limits: serde_json::Value = serde_json::from_str(PLAY_LIMITS)?;
                    self.put(&format!("/v1/players/{}/limits", player_id(i)), &limits)
                        .await
                        .with_context(|| format!("limits of player {i}"))?;
                }
                let body = credit_body(
                    &format!("seed-{nonce}-{i}"),
                    i,
                    SEED_BALANCE_MINOR,
                    &format!("seed-{nonce}-{i}"),
                );
                for _ in 0..RESOLVE_ATTEMPTS_MAX {
                    if let Some((Answer::Receipt { balance, .. }, _)) =
                        self.send(Kind::Credit, &body).await?
                    {
                        return parse_minor(&balance);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                bail!("could not seed player {i}")
            })
            .buffered(SETUP_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn put(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<()> {
        let response = self
            .client
            .put(format!("{}{path}", self.base))
            .header(AUTHORIZATION, self.auth.clone())
            .json(body)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "{}", response.status());
        Ok(())
    }

    async fn balance(&self, player: usize) -> anyhow::Result<i64> {
        let response = self
            .client
            .get(format!(
                "{}/v1/players/{}/balance",
                self.base,
                player_id(player)
            ))
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "balance of player {player}: {}",
            response.status()
        );
        let view: BalanceView = response.json().await?;
        parse_minor(&view.available)
    }

    async fn balances(&self, players: &[usize]) -> anyhow::Result<Vec<(usize, i64)>> {
        let results: Vec<anyhow::Result<(usize, i64)>> = stream::iter(players.iter().copied())
            .map(|p| async move { Ok((p, self.balance(p).await?)) })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

/// The benchmark's view of the wallet: what every player's balance must be.
pub struct WalletBench {
    target: WalletTarget,
    expected_minor: Vec<i64>,
    runs: u64,
    nonce: String,
}

impl WalletBench {
    /// Creates `players` players on the target (with [`PLAY_LIMITS`] when `play_limits`)
    /// and remembers their balances.
    pub async fn setup(
        target: WalletTarget,
        players: usize,
        play_limits: bool,
    ) -> anyhow::Result<WalletBench> {
        let nonce = nonce();
        let expected_minor = target.create_players(players, &nonce, play_limits).await?;
        Ok(WalletBench {
            target,
            expected_minor,
            runs: 0,
            nonce,
        })
    }

    /// One measured run, then its checks (`verify` checks the ledger when the database is
    /// at hand).
    pub async fn run<F, Fut>(&mut self, load: &Load, verify: F) -> anyhow::Result<RunStats>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<(bool, String)>>,
    {
        self.runs += 1;
        let prefix = format!("{}-r{}", self.nonce, self.runs);
        let issued = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + load.duration;
        let tasks: Vec<_> = (0..load.clients)
            .map(|client| {
                let target = self.target.clone();
                let issued = issued.clone();
                let prefix = format!("{prefix}-c{client}");
                let players = load.players;
                let requests_max = load.requests_max;
                tokio::spawn(async move {
                    client_loop(target, players, deadline, issued, requests_max, prefix).await
                })
            })
            .collect();
        let mut histogram = stats::new_histogram();
        let mut acknowledged = Vec::new();
        let mut unanswered = Vec::new();
        for task in tasks {
            let result = task.await??;
            histogram.add(&result.histogram)?;
            acknowledged.extend(result.acknowledged);
            unanswered.extend(result.unanswered);
        }
        let elapsed = started.elapsed();
        let mut run = RunStats::new(
            acknowledged.len() as u64,
            unanswered.len() as u64,
            elapsed,
            &histogram,
        );
        self.check(&mut run, acknowledged, unanswered).await?;
        let (verified, note) = verify().await?;
        run.checks_ok &= verified;
        run.checks.push(note);
        Ok(run)
    }

    async fn check(
        &mut self,
        run: &mut RunStats,
        acknowledged: Vec<(Sent, Answer)>,
        unanswered: Vec<Sent>,
    ) -> anyhow::Result<()> {
        let mut touched: Vec<usize> = Vec::new();
        let mut seen = vec![false; self.expected_minor.len()];
        let mut note = |player: usize, touched: &mut Vec<usize>| {
            if !seen[player] {
                seen[player] = true;
                touched.push(player);
            }
        };
        for (sent, answer) in &acknowledged {
            self.expected_minor[sent.player] += answer.effect_minor(sent);
            note(sent.player, &mut touched);
        }
        // A call without an answer may or may not have committed: ask again with the same
        // txn_id and count what that answer says happened.
        let resolved = unanswered.len();
        for sent in &unanswered {
            let answer = self.resolve(sent).await?;
            self.expected_minor[sent.player] += answer.effect_minor(sent);
            note(sent.player, &mut touched);
        }
        let mismatches = self.compare_balances(&touched).await?;
        run.record_balances(
            format!(
                "balances of {} players equal the sum of {} acknowledged calls ({resolved} resolved by replay)",
                touched.len(),
                acknowledged.len()
            ),
            "the acknowledged calls",
            &mismatches,
        );
        // Replays answer as the first time and move nothing.
        let step = (acknowledged.len() / REPLAY_SAMPLE_LEN).max(1);
        let sample: Vec<&(Sent, Answer)> = acknowledged
            .iter()
            .step_by(step)
            .filter(|(_, a)| matches!(a, Answer::Receipt { .. }))
            .take(REPLAY_SAMPLE_LEN)
            .collect();
        let mut replay_problems = Vec::new();
        for (sent, first) in &sample {
            match self.target.send(sent.kind, &sent.body).await? {
                Some((again, true)) if &again == first => {}
                other => replay_problems.push(format!("{}: {other:?} vs {first:?}", sent.body)),
            }
        }
        let mut replayed_players: Vec<usize> = sample.iter().map(|(s, _)| s.player).collect();
        replayed_players.sort_unstable();
        replayed_players.dedup();
        let moved = self.compare_balances(&replayed_players).await?;
        run.record_replays(
            format!(
                "{} replayed txn_ids answered as first, Idempotent-Replayed, no money moved",
                sample.len()
            ),
            &replay_problems,
            moved.len(),
        );
        Ok(())
    }

    async fn resolve(&self, sent: &Sent) -> anyhow::Result<Answer> {
        for _ in 0..RESOLVE_ATTEMPTS_MAX {
            if let Some((answer, _)) = self.target.send(sent.kind, &sent.body).await? {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no answer for {} after retries", sent.body)
    }

    /// Players whose balance is not what the acknowledged calls say: (player, expected, actual).
    async fn compare_balances(&self, players: &[usize]) -> anyhow::Result<Vec<(usize, i64, i64)>> {
        Ok(self
            .target
            .balances(players)
            .await?
            .into_iter()
            .filter(|&(p, actual)| actual != self.expected_minor[p])
            .map(|(p, actual)| (p, self.expected_minor[p], actual))
            .collect())
    }
}

/// One client: sends calls one after another until the deadline or the request cap.
async fn client_loop(
    target: WalletTarget,
    players: usize,
    deadline: Instant,
    issued: Arc<AtomicU64>,
    requests_max: u64,
    prefix: String,
) -> anyhow::Result<ClientResult> {
    let mut rng = StdRng::from_entropy();
    let mut connection = target.load_client()?;
    let mut histogram = stats::new_histogram();
    let mut acknowledged = Vec::new();
    let mut unanswered = Vec::new();
    let mut open_debits: VecDeque<(String, usize, i64)> = VecDeque::new();
    let mut seq = 0u64;
    while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < requests_max {
        seq += 1;
        let txn_id = format!("{prefix}-{seq}");
        let roll: u32 = rng.gen_range(0..100);
        let sent = if roll < 10 && !open_debits.is_empty() {
            let (original, player, amount_minor) = open_debits.pop_back().expect("not empty");
            Sent {
                kind: Kind::Rollback,
                body: format!(r#"{{"txn_id":"{txn_id}","original_txn_id":"{original}"}}"#),
                player,
                amount_minor,
            }
        } else {
            let player = rng.gen_range(0..players);
            let amount_minor = rng.gen_range(1..=10) * 100 + rng.gen_range(0..100);
            let round = format!("{prefix}-{}", seq / 2);
            if roll < 60 {
                Sent {
                    kind: Kind::Debit,
                    body: debit_body(&txn_id, player, amount_minor, &round),
                    player,
                    amount_minor,
                }
            } else {
                Sent {
                    kind: Kind::Credit,
                    body: credit_body(&txn_id, player, amount_minor, &round),
                    player,
                    amount_minor,
                }
            }
        };
        let started = Instant::now();
        let reply = connection
            .post_json(
                sent.kind.path(),
                Bytes::copy_from_slice(sent.body.as_bytes()),
            )
            .await;
        stats::record(&mut histogram, started.elapsed());
        let answer = match reply {
            Some(reply) => {
                read_answer(reply).with_context(|| format!("answer to {}", sent.body))?
            }
            None => None,
        };
        match answer {
            Some((answer, _)) => {
                if sent.kind == Kind::Debit && answer.effect_minor(&sent) != 0 {
                    open_debits.push_back((txn_id, sent.player, sent.amount_minor));
                    if open_debits.len() > OPEN_DEBITS_MAX {
                        open_debits.pop_front();
                    }
                }
                acknowledged.push((sent, answer));
            }
            None => unanswered.push(sent),
        }
    }
    Ok(ClientResult {
        histogram,
        acknowledged,
        unanswered,
    })
}

/// What an answer says, or an error for an answer the wallet must never give.
fn read_answer(reply: Reply) -> anyhow::Result<Option<(Answer, bool)>> {
    match reply.status {
        StatusCode::OK => {
            let receipt: Receipt = serde_json::from_slice(&reply.body)
                .with_context(|| format!("receipt {}", String::from_utf8_lossy(&reply.body)))?;
            Ok(Some((
                Answer::Receipt {
                    status: receipt.status,
                    balance: receipt.balance,
                },
                reply.replayed,
            )))
        }
        StatusCode::PAYMENT_REQUIRED => Ok(Some((Answer::InsufficientFunds, reply.replayed))),
        s if s.is_server_error() => Ok(None),
        other => bail!(
            "unexpected {other}: {}",
            String::from_utf8_lossy(&reply.body)
        ),
    }
}

/// The id of benchmark player `i`.
pub fn player_id(i: usize) -> String {
    format!("bp{i}")
}

fn debit_body(txn_id: &str, player: usize, amount_minor: i64, round: &str) -> String {
    format!(
        r#"{{"txn_id":"{txn_id}","player_id":"bp{player}","amount":"{}.{:02}","currency":"EUR","round_id":"{round}"}}"#,
        amount_minor / 100,
        amount_minor % 100
    )
}

fn credit_body(txn_id: &str, player: usize, amount_minor: i64, round: &str) -> String {
    debit_body(txn_id, player, amount_minor, round)
}

/// A short random tag that keeps txn ids of different benchmark runs apart.
pub fn nonce() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// `"123.45"` (EUR) in cents.
pub(super) fn parse_minor(text: &str) -> anyhow::Result<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (units, cents) = digits.split_once('.').unwrap_or((digits, "0"));
    anyhow::ensure!(cents.len() <= 2, "not a EUR amount: {text:?}");
    let cents: i64 = format!("{cents:0<2}").parse()?;
    let value = units.parse::<i64>()? * 100 + cents;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip() {
        assert_eq!(parse_minor("123.45").unwrap(), 12345);
        assert_eq!(parse_minor("-0.05").unwrap(), -5);
        assert_eq!(parse_minor("7").unwrap(), 700);
        assert!(parse_minor("1.234").is_err());
        let body = debit_body("t", 3, 1005, "r");
        assert!(body.contains(r#""amount":"10.05""#), "{body}");
    }
}
