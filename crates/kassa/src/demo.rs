//! `kassa demo`: one deposit from start to finish, in-process, against the sandbox PSP, as a
//! player and a provider would make it — over real HTTP, printing every step.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use kassa_server::config::Config;
use kassa_server::Server;
use serde_json::{json, Value};

/// `kassa demo` options.
#[derive(Args)]
pub struct DemoArgs {
    /// Keep the server running after the demo, to look around (ctrl-c stops it).
    #[arg(long)]
    keep_running: bool,
    /// Card to pay with (see docs/sandbox-psp.md); the default asks for a 3-D Secure code.
    #[arg(long, default_value = "4000000000003220")]
    card: String,
    /// The one-time code typed on the 3-D Secure page.
    #[arg(long, default_value = "123456")]
    otp: String,
    /// Sandbox provider accounts (1 to 5). With more than one, the first is down and the
    /// deposit cascades to the next: the routing of the payment is printed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    providers: u8,
}

/// Replaces the one sandbox account by `count` (`psp_1`, `psp_2`, …) routed in that order;
/// returns their ids.
fn several_accounts(config: &mut Config, count: u8) -> Vec<String> {
    if count <= 1 {
        return Vec::new();
    }
    let template = config.providers.accounts[0].clone();
    let ids: Vec<String> = (1..=count).map(|n| format!("psp_{n}")).collect();
    config.providers.accounts = ids
        .iter()
        .map(|id| {
            let mut account = template.clone();
            account.id = id.clone();
            account.name = format!("Sandbox {id}");
            account
        })
        .collect();
    config.routing.document.rules = vec![kassa_core::routing::Rule {
        id: "demo".into(),
        description: Some("every demo deposit, accounts in order".into()),
        when: Default::default(),
        pick: kassa_core::routing::Pick::Priority {
            accounts: ids.clone(),
        },
        fallbacks: Vec::new(),
        cascade_after_3ds: false,
    }];
    ids
}

/// Puts a sandbox into an outage: every payment start answers 503.
async fn take_down(simulator_url: &str) -> anyhow::Result<()> {
    reqwest::Client::new()
        .put(format!("{simulator_url}/sandbox/behaviour"))
        .json(&json!({"outage": true}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Longest the demo waits for the provider's webhook.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(kassa_core::ids::generate("kassa-demo").to_lowercase());
    std::fs::create_dir_all(&dir)?;
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database_url = format!("sqlite://{}/kassa.db", dir.display());
    config.rate_limit.requests_per_second = 0;
    config.sandbox.webhook_delay_ms = 300;
    let accounts = several_accounts(&mut config, args.providers);
    let server = Server::start_with(config, Some(&crate::embedded::Simulators)).await?;
    if let Some(down) = accounts.first().filter(|_| accounts.len() > 1) {
        take_down(&server.simulator_urls[down]).await?;
        println!(
            "   {} sandbox accounts: {}; {down} is down",
            accounts.len(),
            accounts.join(", ")
        );
    }
    let base = format!("http://{}", server.local_addr);
    let keys = server
        .bootstrap
        .clone()
        .context("a fresh database creates the demo merchant")?;
    step(
        1,
        &format!(
            "Kassa is running at {base} on a fresh SQLite database in {}",
            dir.display()
        ),
    );
    println!(
        "   the sandbox PSP runs in the same process at {}",
        server.sandbox_url.as_deref().unwrap_or("?")
    );
    println!("   merchant API key: {}", keys.api_key);

    let api = Api {
        client: reqwest::Client::new(),
        base: base.clone(),
        key: keys.api_key.clone(),
    };
    api.call(
        reqwest::Method::PUT,
        "/v1/players/demo-player",
        Some(json!({"currency": "EUR", "country": "MT"})),
        None,
    )
    .await?;
    step(
        2,
        "The casino creates player demo-player (EUR, Malta): PUT /v1/players/demo-player",
    );

    let init = api
        .call(
            reqwest::Method::POST,
            "/v1/payments/init",
            Some(json!({
                "amount": "50.00", "currency": "EUR", "method": "card", "player_id": "demo-player",
                "return_url": format!("{base}/cashier/return"),
                "meta": {"country": "MT", "device": "desktop"}
            })),
            Some("demo-deposit-1"),
        )
        .await?;
    let payment_id = init["payment_id"]
        .as_str()
        .context("payment_id")?
        .to_string();
    let redirect_url = init["redirect_url"]
        .as_str()
        .context("redirect_url")?
        .to_string();
    step(
        3,
        &format!(
            "The player deposits 50.00 EUR: POST /v1/payments/init → {payment_id}, status {}",
            init["status"]
        ),
    );
    println!(
        "   Kassa routed it to the {} provider and sends the player to {redirect_url}",
        init["provider"]
    );

    if accounts.len() > 1 {
        let payment = api
            .call(
                reqwest::Method::GET,
                &format!("/v1/payments/{payment_id}"),
                None,
                None,
            )
            .await?;
        for attempt in payment["routing"]["attempts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            println!(
                "   asked {}: {}{}",
                attempt["provider"].as_str().unwrap_or("?"),
                attempt["outcome"].as_str().unwrap_or("?"),
                if attempt["cascaded"] == true {
                    " → cascaded to the next"
                } else {
                    ""
                }
            );
        }
    }
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = browser.get(&redirect_url).send().await?.text().await?;
    if !page.contains("card-number") {
        bail!("the hosted page has no card form");
    }
    step(
        4,
        &format!(
            "The player opens the provider's card page and pays with {}",
            masked(&args.card)
        ),
    );
    let form = [
        ("card_number", args.card.as_str()),
        ("expiry", "12/34"),
        ("cvc", "123"),
        ("cardholder", "Demo Player"),
    ];
    let answer = browser.post(&redirect_url).form(&form).send().await?;
    let mut location = location_of(&answer)?;
    if location.contains("/3ds/") {
        // The Location may be relative to the card page.
        let challenge = reqwest::Url::parse(&redirect_url)?.join(&location)?;
        step(
            5,
            "The issuer asks for 3-D Secure: the player gets a one-time code",
        );
        browser.get(challenge.clone()).send().await?;
        let answer = browser
            .post(challenge)
            .form(&[("otp", args.otp.as_str())])
            .send()
            .await?;
        println!("   the player types {} on the challenge page", args.otp);
        location = location_of(&answer)?;
    } else {
        step(5, "No challenge: the issuer approved frictionless");
    }
    step(
        6,
        &format!("The provider sends the player back to the casino: {location}"),
    );

    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    let mut last = String::new();
    loop {
        let payment = api
            .call(
                reqwest::Method::GET,
                &format!("/v1/payments/{payment_id}"),
                None,
                None,
            )
            .await?;
        let status = payment["status"].as_str().unwrap_or_default().to_string();
        if status != last {
            println!("   payment status: {status}");
            last = status.clone();
        }
        if !matches!(status.as_str(), "pending" | "authorized" | "initiated") {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no outcome from the provider within {SETTLE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    step(
        7,
        &format!(
            "The provider's signed webhook arrived; Kassa verified it and the payment is {last}"
        ),
    );
    let balance = api
        .call(
            reqwest::Method::GET,
            "/v1/players/demo-player/balance",
            None,
            None,
        )
        .await?;
    step(
        8,
        &format!(
            "The player's balance: {} {} available, {} held",
            balance["available"].as_str().unwrap_or("?"),
            balance["currency"].as_str().unwrap_or("?"),
            balance["held"].as_str().unwrap_or("?")
        ),
    );
    let store =
        kassa_store::Store::connect(&format!("sqlite://{}/kassa.db", dir.display())).await?;
    let report = store.verify_ledger().await?;
    store.close().await;
    step(
        9,
        &format!(
            "kassa ledger verify: {} ({} transfers checked)",
            if report.is_ok() {
                "ledger OK"
            } else {
                "ledger BROKEN"
            },
            report.transfers_checked
        ),
    );
    if args.keep_running {
        println!("\nStill running at {base}; try: curl -s {base}/v1/payments/{payment_id} -H 'Authorization: Bearer {}'", keys.api_key);
        tokio::signal::ctrl_c().await?;
    }
    server.stop().await?;
    if last != "captured" || !report.is_ok() {
        bail!("the demo deposit ended {last}");
    }
    Ok(())
}

fn step(n: u32, text: &str) {
    println!("{n}. {text}");
}

fn masked(card: &str) -> String {
    let digits: String = card.chars().filter(char::is_ascii_digit).collect();
    format!("card •••• {}", &digits[digits.len().saturating_sub(4)..])
}

fn location_of(response: &reqwest::Response) -> anyhow::Result<String> {
    if response.status() != reqwest::StatusCode::SEE_OTHER {
        bail!("the provider's page answered {}", response.status());
    }
    Ok(response
        .headers()
        .get("location")
        .context("redirect without a location")?
        .to_str()?
        .to_string())
}

struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path} answered {status}: {body}");
        }
        Ok(body)
    }
}
