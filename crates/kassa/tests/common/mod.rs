//! What the binary's process tests share: a `kassa serve` child process on a free port,
//! waited for until ready and killed when dropped; EUR amounts as the API writes them; and
//! `kassa ledger verify` on a database.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to answer `/readyz` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `kassa serve`; SIGKILLed and reaped when dropped.
pub struct Node {
    pub child: Child,
    pub base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `kassa serve` on `database_url` with the demo key `api_key`, the rate limit off
/// and no config file from the environment; `adjust` adds arguments or variables. Waits
/// until it is ready.
pub async fn start_node(
    database_url: &str,
    api_key: &str,
    key_hash_secret: &str,
    client: &reqwest::Client,
    adjust: impl FnOnce(&mut Command),
) -> Node {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .env("KASSA_DEMO_API_KEY", api_key)
        .env("KASSA_RATE_LIMIT_RPS", "0")
        .env("KASSA_KEY_HASH_SECRET", key_hash_secret)
        .env_remove("KASSA_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    adjust(&mut command);
    let node = Node {
        child: command.spawn().expect("kassa serve starts"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ready = client
            .get(format!("{}/readyz", node.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return node;
        }
        assert!(Instant::now() < deadline, "kassa did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `minor` EUR cents as the API writes amounts (`"12.34"`).
pub fn money(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// An EUR amount the API wrote, in cents.
pub fn parse_money(text: &str) -> i64 {
    let (units, cents) = text.split_once('.').expect("EUR amount");
    units.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap()
}

/// A player's available balance, in cents.
pub async fn available_minor(
    client: &reqwest::Client,
    base: &str,
    api_key: &str,
    player_id: &str,
) -> i64 {
    let balance: serde_json::Value = client
        .get(format!("{base}/v1/players/{player_id}/balance"))
        .bearer_auth(api_key)
        .send()
        .await
        .expect("the node answers")
        .json()
        .await
        .expect("a balance");
    let available = balance["available"].as_str();
    parse_money(available.unwrap_or_else(|| panic!("no available balance: {balance}")))
}

/// Runs `kassa ledger verify` on the database; fails the test with its output if it fails.
pub fn assert_ledger_verifies(database_url: &str, when: &str) {
    let verify = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["ledger", "verify", "--database-url", database_url])
        .env_remove("KASSA_CONFIG")
        .output()
        .expect("kassa ledger verify runs");
    assert!(
        verify.status.success(),
        "ledger verify failed {when}: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
