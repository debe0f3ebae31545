//! The `kassa` binary as a new user and an operator run it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kassa_store::testing::{fresh_database_url, TestBackend};
use serde_json::{json, Value};

const KASSA: &str = env!("CARGO_BIN_EXE_kassa");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kassa serve` and returns it with the lines it printed up to "listening".
fn serve(database_url: &str, port: u16, envs: &[(&str, &str)]) -> (Running, Vec<String>) {
    let mut command = Command::new(KASSA);
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            database_url,
        ])
        .env_remove("KASSA_DEMO_API_KEY")
        .env_remove("KASSA_DEMO_ADMIN_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("kassa starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        lines.push(line);
        if done {
            break;
        }
    }
    (Running(child), lines)
}

async fn call(
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn wait_healthy(port: u16) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("kassa did not become healthy");
}

#[tokio::test]
async fn a_new_user_starts_kassa_and_moves_money() {
    let url = fresh_database_url(TestBackend::Sqlite).await.unwrap();
    let port = free_port();
    let (server, lines) = serve(&url, port, &[]);
    let printed = lines.join("\n");
    let key = lines
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("merchant API key:")
                .map(|k| k.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no key printed: {printed}"));
    assert!(printed.contains("admin API key:"));
    wait_healthy(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/players/p1"),
        &key,
        Some(json!({"currency": "EUR", "country": "MT"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{base}/v1/wallet/credit"),
        &key,
        Some(json!({"txn_id": "w1", "player_id": "p1", "amount": "25.00", "currency": "EUR"})),
    )
    .await;
    assert_eq!((status, body["balance"].as_str()), (200, Some("25.00")));
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{base}/v1/wallet/debit"),
        &key,
        Some(json!({"txn_id": "b1", "player_id": "p1", "amount": "5.00", "currency": "EUR"})),
    )
    .await;
    assert_eq!((status, body["balance"].as_str()), (200, Some("20.00")));
    drop(server);

    // A restart keeps the money and prints no new keys.
    let (_server, lines) = serve(&url, port, &[]);
    assert!(!lines.join("\n").contains("merchant API key"));
    wait_healthy(port).await;
    let (_, body) = call(
        reqwest::Method::GET,
        format!("{base}/v1/players/p1/balance"),
        &key,
        None,
    )
    .await;
    assert_eq!(body["available"], "20.00");
}

#[tokio::test]
async fn a_script_chooses_the_demo_key() {
    let url = fresh_database_url(TestBackend::Sqlite).await.unwrap();
    let port = free_port();
    let chosen = "sk_test_chosen_by_a_script_123";
    let (_server, lines) = serve(&url, port, &[("KASSA_DEMO_API_KEY", chosen)]);
    assert!(lines.iter().any(|l| l.contains(chosen)));
    wait_healthy(port).await;
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("http://127.0.0.1:{port}/v1/players/p1"),
        chosen,
        Some(json!({"currency": "EUR", "country": "MT"})),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn an_acquirer_account_without_an_address_gets_an_embedded_iso8583_host() {
    let url = fresh_database_url(TestBackend::Sqlite).await.unwrap();
    let dir = std::env::temp_dir().join(format!("kassa-cli-acquirer-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kassa.toml");
    std::fs::write(
        &config,
        "[[providers.accounts]]\nid = \"acquirer\"\nmerchant = \"mch_demo\"\nkind = \"iso8583\"\n\
         name = \"Embedded acquirer\"\ncredentials = {}\n\
         settings = { terminal_id = \"CLI00001\", card_acceptor_id = \"KASSA-CLI\" }\n",
    )
    .unwrap();
    let port = free_port();
    let key = "sk_test_cli_acquirer_000000001";
    let config_path = config.to_str().unwrap();
    let (_server, _) = serve(
        &url,
        port,
        &[("KASSA_DEMO_API_KEY", key), ("KASSA_CONFIG", config_path)],
    );
    wait_healthy(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let player = json!({"currency": "EUR", "country": "MT"});
    let put = reqwest::Method::PUT;
    let (status, _) = call(put, format!("{base}/v1/players/p1"), key, Some(player)).await;
    assert_eq!(status, 201);
    let deposit = json!({"amount": "12.00", "currency": "EUR", "method": "card", "player_id": "p1",
                         "return_url": format!("{base}/cashier/return"), "meta": {"country": "MT"}});
    let init = reqwest::Client::new()
        .post(format!("{base}/v1/payments/init"))
        .bearer_auth(key)
        .header("Idempotency-Key", "cli-acquirer-1")
        .json(&deposit)
        .send()
        .await
        .unwrap();
    assert_eq!(init.status().as_u16(), 201);
    let init: Value = init.json().await.unwrap();
    let page = init["redirect_url"].as_str().unwrap();
    assert!(page.contains("/pay/card/"), "{init}");
    let form = [
        ("number", "4000000000000002"),
        ("expiry", "12/30"),
        ("cvc", "123"),
    ];
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let paid = browser.post(page).form(&form).send().await.unwrap();
    assert_eq!(paid.status().as_u16(), 303);
    let get = reqwest::Method::GET;
    let (_, balance) = call(get, format!("{base}/v1/players/p1/balance"), key, None).await;
    assert_eq!(balance["available"], "12.00", "{balance}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sqlite_ledger_verify_passes_then_fails_on_a_tampered_balance() {
    ledger_verify_passes_then_fails_on_a_tampered_balance(TestBackend::Sqlite).await;
}

#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_ledger_verify_passes_then_fails_on_a_tampered_balance() {
    ledger_verify_passes_then_fails_on_a_tampered_balance(TestBackend::Postgres).await;
}

async fn ledger_verify_passes_then_fails_on_a_tampered_balance(backend: TestBackend) {
    let url = fresh_database_url(backend).await.unwrap();
    let migrate = Command::new(KASSA)
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let port = free_port();
    let key = "sk_test_verify_key_0000000001";
    {
        // PostgreSQL refuses the public demo key hash secret (ADR 26).
        let secret = (
            "KASSA_KEY_HASH_SECRET",
            "cli-test-key-hash-secret-cli-test-secret",
        );
        let (_server, _) = serve(&url, port, &[("KASSA_DEMO_API_KEY", key), secret]);
        wait_healthy(port).await;
        let base = format!("http://127.0.0.1:{port}");
        call(
            reqwest::Method::PUT,
            format!("{base}/v1/players/p1"),
            key,
            Some(json!({"currency": "EUR", "country": "MT"})),
        )
        .await;
        call(
            reqwest::Method::POST,
            format!("{base}/v1/wallet/credit"),
            key,
            Some(json!({"txn_id": "w1", "player_id": "p1", "amount": "25.00", "currency": "EUR"})),
        )
        .await;
    }
    let ok = Command::new(KASSA)
        .args(["ledger", "verify"])
        .env("KASSA_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ledger OK"));

    let store = kassa_store::Store::connect(&url).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    sqlx::query(
        "UPDATE ledger_accounts SET balance_minor = balance_minor + 500 WHERE kind = 'player_cash'",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    let broken = Command::new(KASSA)
        .args(["ledger", "verify", "--json", "--database-url", &url])
        .output()
        .unwrap();
    assert_eq!(
        broken.status.code(),
        Some(1),
        "a drifted balance must fail verify"
    );
    let report: Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["drifted_accounts"][0]["stored_minor"], 3000);
    assert_eq!(report["drifted_accounts"][0]["recomputed_minor"], 2500);
}

#[tokio::test]
async fn sqlite_vault_fingerprint_backfills_then_rotates() {
    vault_fingerprint_backfills_then_rotates(TestBackend::Sqlite).await;
}

#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_vault_fingerprint_backfills_then_rotates() {
    vault_fingerprint_backfills_then_rotates(TestBackend::Postgres).await;
}

/// 32 bytes of '1', base64: the vault's master key in the vault tool's tests.
const VAULT_KEY: &str = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=";
/// Two fingerprint keys, before and after a change (32 bytes of 'f' and of 'g').
const FINGERPRINT_KEY_1: &str = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
const FINGERPRINT_KEY_2: &str = "Z2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2c=";

/// Runs `kassa vault fingerprint` (with `extra` arguments) on `url` under a config with the
/// vault's master key and `fingerprint_key`; answers its success and output.
fn vault_fingerprint(url: &str, fingerprint_key: Option<&str>, extra: &[&str]) -> (bool, String) {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("kassa-vault-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{run}.toml"));
    let fingerprint =
        fingerprint_key.map_or(String::new(), |k| format!("fingerprint_key = \"{k}\"\n"));
    std::fs::write(
        &config,
        format!(
            "[vault]\nmaster_keys = {{ k1 = \"{VAULT_KEY}\" }}\nactive_key = \"k1\"\n{fingerprint}"
        ),
    )
    .unwrap();
    let output = Command::new(KASSA)
        .args(["vault", "fingerprint", "--database-url", url])
        .arg("--config")
        .arg(&config)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The fingerprint of the one saved card, read from the database.
async fn stored_fingerprint(url: &str) -> Option<String> {
    let store = kassa_store::Store::connect(url).await.unwrap();
    let cards = store.player_vault_cards("mch_demo", "p1").await.unwrap();
    store.close().await;
    assert_eq!(cards.len(), 1);
    cards[0].fingerprint.clone()
}

/// A card saved before the fingerprint key was set gets its fingerprint from
/// `kassa vault fingerprint` (ADR 80), the same one the card page computes; a second run
/// writes nothing; after the key changes only `--all` recomputes, to the new key's.
async fn vault_fingerprint_backfills_then_rotates(backend: TestBackend) {
    use kassa_server::service::vault::{CardFingerprinter, Vault};
    const PAN: &str = "5555555555554444";
    let url = fresh_database_url(backend).await.unwrap();
    let store = kassa_store::Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let keys = std::collections::BTreeMap::from([("k1".to_string(), VAULT_KEY.into())]);
    let card = kassa_connectors::card::CardDetails::new(PAN, "3012", "2612").unwrap();
    // Saved by a vault without fingerprints, as before the key was configured.
    let vault = Vault::new(store.clone(), &keys, "k1").unwrap();
    vault.save("mch_demo", "p1", &card, None).await.unwrap();
    store.close().await;
    assert_eq!(stored_fingerprint(&url).await, None);
    let expected = |key: &str| CardFingerprinter::new(&key.into()).unwrap().of(&card);

    let (ok, text) = vault_fingerprint(&url, None, &[]);
    assert!(
        !ok && text.contains("no fingerprint key configured"),
        "{text}"
    );
    let (ok, text) = vault_fingerprint(&url, Some(FINGERPRINT_KEY_1), &[]);
    assert!(ok && text.contains("1 saved cards fingerprinted"), "{text}");
    assert!(!text.contains(PAN), "{text}");
    assert_eq!(
        stored_fingerprint(&url).await,
        Some(expected(FINGERPRINT_KEY_1))
    );
    let (ok, text) = vault_fingerprint(&url, Some(FINGERPRINT_KEY_1), &[]);
    assert!(ok && text.contains("0 saved cards fingerprinted"), "{text}");

    // The key changes: only --all recomputes what already has a fingerprint.
    let (ok, text) = vault_fingerprint(&url, Some(FINGERPRINT_KEY_2), &[]);
    assert!(ok && text.contains("0 saved cards fingerprinted"), "{text}");
    let (ok, text) = vault_fingerprint(&url, Some(FINGERPRINT_KEY_2), &["--all"]);
    assert!(ok && text.contains("1 saved cards fingerprinted"), "{text}");
    assert_eq!(
        stored_fingerprint(&url).await,
        Some(expected(FINGERPRINT_KEY_2))
    );
    assert_ne!(expected(FINGERPRINT_KEY_1), expected(FINGERPRINT_KEY_2));
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let output = Command::new(KASSA)
        .args(["migrate", "--database-url", "mysql://nope"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unsupported database url"));
}

#[test]
fn the_demo_walks_a_deposit_from_start_to_finish() {
    let output = Command::new(KASSA).arg("demo").output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "3-D Secure",
        "payment status: captured",
        "50.00 EUR available",
        "ledger OK",
    ] {
        assert!(
            printed.contains(expected),
            "the demo should print {expected:?}:\n{printed}"
        );
    }
}
