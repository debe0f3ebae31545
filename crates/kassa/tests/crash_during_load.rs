//! A crash in the middle of a group commit loses no acknowledged wallet call: the real
//! binary serves concurrent debits, credits and rollbacks, is killed with SIGKILL mid-run,
//! and is started again on the same database. Then `kassa ledger verify` passes, every
//! acknowledged txn_id replays with the first answer, and every balance equals the sum of
//! what was acknowledged (calls left without an answer are asked again with the same txn_id
//! and counted by what that answer says). Asserts correctness, never speed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_ledger_verifies, available_minor, money, start_node, Node};
use kassa_store::testing::{fresh_database_url, TestBackend};
use reqwest::StatusCode;
use serde_json::{json, Value};

const API_KEY: &str = "sk_test_crash_during_load_0123456789";
const PLAYERS: usize = 12;
const CLIENTS: usize = 16;
const SEED_MINOR: i64 = 100_000;
/// Load before the kill; enough for many group commits, short enough for CI.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1500);
const KEY_HASH_SECRET: &str = "crash-test-key-hash-secret-crash-test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Debit,
    Credit,
    Rollback,
}

#[derive(Clone, Debug)]
struct Call {
    kind: Kind,
    body: Value,
    player: usize,
    amount_minor: i64,
}

/// The status code and body of an answer.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    replayed: bool,
    body: Value,
}

impl Answer {
    fn effect_minor(&self, call: &Call) -> i64 {
        if self.status != StatusCode::OK {
            return 0;
        }
        match (call.kind, self.body["status"].as_str()) {
            (Kind::Debit, Some("posted")) => -call.amount_minor,
            (Kind::Credit, Some("posted")) | (Kind::Rollback, Some("rolled_back")) => {
                call.amount_minor
            }
            _ => 0,
        }
    }
}

async fn start(database_url: &str, client: &reqwest::Client) -> Node {
    start_node(database_url, API_KEY, KEY_HASH_SECRET, client, |_| {}).await
}

fn path(kind: Kind) -> &'static str {
    match kind {
        Kind::Debit => "/v1/wallet/debit",
        Kind::Credit => "/v1/wallet/credit",
        Kind::Rollback => "/v1/wallet/rollback",
    }
}

/// `None` when the call got no answer (connection refused or cut, or a 5xx).
async fn send(client: &reqwest::Client, base: &str, call: &Call) -> Option<Answer> {
    let response = client
        .post(format!("{base}{}", path(call.kind)))
        .bearer_auth(API_KEY)
        .json(&call.body)
        .send()
        .await
        .ok()?;
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let body: Value = response.json().await.ok()?;
    if status.is_server_error() {
        return None;
    }
    Some(Answer {
        status,
        replayed,
        body,
    })
}

fn move_call(kind: Kind, txn_id: &str, player: usize, amount_minor: i64) -> Call {
    Call {
        kind,
        body: json!({
            "txn_id": txn_id,
            "player_id": format!("crash-p{player}"),
            "amount": money(amount_minor),
            "currency": "EUR",
        }),
        player,
        amount_minor,
    }
}

/// One client: calls until told to stop or until the server stops answering.
async fn client_loop(
    client: reqwest::Client,
    base: String,
    index: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<(Call, Answer)>, Vec<Call>) {
    let mut acknowledged = Vec::new();
    let mut unanswered = Vec::new();
    let mut open_debits: Vec<(String, usize, i64)> = Vec::new();
    let mut seq = 0usize;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let txn_id = format!("c{index}-{seq}");
        let player = (index * 7 + seq) % PLAYERS;
        let amount_minor = 100 + ((index * 31 + seq * 17) % 900) as i64;
        let call = match seq % 10 {
            0 | 5 if !open_debits.is_empty() => {
                let (original, player, amount_minor) = open_debits.pop().unwrap();
                Call {
                    kind: Kind::Rollback,
                    body: json!({"txn_id": txn_id, "original_txn_id": original}),
                    player,
                    amount_minor,
                }
            }
            n if n % 2 == 0 => move_call(Kind::Debit, &txn_id, player, amount_minor),
            _ => move_call(Kind::Credit, &txn_id, player, amount_minor),
        };
        match send(&client, &base, &call).await {
            Some(answer) => {
                assert!(
                    answer.status == StatusCode::OK
                        || answer.status == StatusCode::PAYMENT_REQUIRED,
                    "unexpected answer {answer:?} to {call:?}"
                );
                if call.kind == Kind::Debit && answer.effect_minor(&call) != 0 {
                    open_debits.push((txn_id, call.player, call.amount_minor));
                }
                acknowledged.push((call, answer));
            }
            None => {
                // The server is gone: this call's fate is unknown; stop sending.
                unanswered.push(call);
                break;
            }
        }
    }
    (acknowledged, unanswered)
}

async fn crash_during_load(backend: TestBackend) {
    let Some(database_url) = fresh_database_url(backend).await else {
        eprintln!("skipped: {backend:?} is not configured");
        return;
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let node = start(&database_url, &client).await;

    let mut expected = [0i64; PLAYERS];
    for (player, balance) in expected.iter_mut().enumerate() {
        let created = client
            .put(format!("{}/v1/players/crash-p{player}", node.base))
            .bearer_auth(API_KEY)
            .json(&json!({"currency": "EUR", "country": "MT"}))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
        let seed = move_call(Kind::Credit, &format!("seed-{player}"), player, SEED_MINOR);
        let answer = send(&client, &node.base, &seed).await.expect("seeded");
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        *balance = SEED_MINOR;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client_loop(
                client.clone(),
                node.base.clone(),
                i,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    // SIGKILL: no shutdown hook runs, batches in flight die with the process.
    let mut node = node;
    node.child.kill().expect("SIGKILL the server");
    node.child.wait().expect("reap the server");
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    let mut unanswered = Vec::new();
    for task in clients {
        let (acked, lost) = task.await.unwrap();
        acknowledged.extend(acked);
        unanswered.extend(lost);
    }
    drop(node);
    assert!(
        acknowledged.len() > CLIENTS,
        "the load ran ({} calls acknowledged)",
        acknowledged.len()
    );

    let node = start(&database_url, &client).await;
    assert_ledger_verifies(&database_url, "after the crash");

    // Every acknowledged call is durable: its txn_id replays with the first answer.
    for (call, first) in &acknowledged {
        let again = send(&client, &node.base, call)
            .await
            .expect("the restarted server answers");
        assert_eq!(again.status, first.status, "{call:?}");
        if first.status == StatusCode::OK {
            assert!(
                again.replayed,
                "{call:?} was acknowledged but is not stored"
            );
            assert_eq!(again.body, first.body, "{call:?}");
        } else {
            assert_eq!(again.body["error"], first.body["error"], "{call:?}");
        }
        expected[call.player] += first.effect_minor(call);
    }
    // A call without an answer may or may not have committed; its replay tells which (or
    // applies it now), and that is what must show in the balance.
    for call in &unanswered {
        let answer = send(&client, &node.base, call)
            .await
            .expect("the restarted server answers");
        expected[call.player] += answer.effect_minor(call);
    }
    for (player, expected_minor) in expected.iter().enumerate() {
        let player_id = format!("crash-p{player}");
        let available = available_minor(&client, &node.base, API_KEY, &player_id).await;
        assert_eq!(available, *expected_minor, "player {player}");
    }
    eprintln!(
        "{backend:?}: {} acknowledged, {} unanswered at the kill, all accounted for",
        acknowledged.len(),
        unanswered.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_loses_no_acknowledged_call_when_killed_mid_batch() {
    crash_during_load(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_loses_no_acknowledged_call_when_killed_mid_batch() {
    crash_during_load(TestBackend::Postgres).await;
}
