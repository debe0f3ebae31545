//! The risk features of issue 19 item 2 and the velocity that sees simultaneous starts (ADR
//! 74), through the API on both backends: eight simultaneous starts against a velocity
//! rule, email velocity and players sharing a mailbox, and on Kassa's card page (a direct
//! acquirer, over TCP against the host simulator) the card's fingerprint velocity, the
//! players sharing a card (in the rules, the AML scenario and the case's linked players)
//! and the BIN country against the request's and the KYC country. Every rule set is stored
//! through `PUT /v1/admin/risk/rules`; every decision is read back from
//! `GET /v1/payments/{id}`.

mod common;

use std::time::Duration;

use common::risk_rules::{fired, gte, never, read, rule, set_rules};
use common::TestApp;
use kassa_server::config::{Config, ProviderAccountConfig};
use kassa_sim::iso8583::{start, Iso8583HostConfig, Iso8583HostHandle};
use kassa_store::testing::TestBackend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

backend_tests!(
    simultaneous_starts_count_each_others_attempts,
    email_velocity_and_shared_mailboxes_fire_their_rules,
    card_fingerprint_shared_cards_and_bin_country_fire_their_rules,
    a_card_the_issuer_refused_is_recorded_but_not_counted,
);

/// A server whose sandbox sends no webhook by itself (the test plays the provider).
async fn quiet(backend: TestBackend) -> Option<TestApp> {
    common::spawn_with(backend, |config| config.sandbox.autopilot = false).await
}

/// A EUR player of Malta, with `extra` fields merged in.
async fn player(app: &TestApp, player_id: &str, extra: Value) -> common::Answer {
    let mut body = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT"});
    for (name, value) in extra.as_object().unwrap() {
        body[name] = value.clone();
    }
    app.put(&format!("/v1/players/{player_id}"), body).await
}

/// Asks for a EUR card deposit from Malta under a fresh idempotency key.
async fn deposit(app: &TestApp, player_id: &str, amount: &str) -> common::Answer {
    let body = json!({
        "amount": amount, "currency": "EUR", "method": "card", "player_id": player_id,
        "return_url": format!("{}/cashier/return", app.base), "meta": {"country": "MT"},
    });
    common::post_deposit(app, &body).await
}

async fn payment(app: &TestApp, id: &str) -> Value {
    let answer = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// A deposit that must start; returns its id and stored risk decision.
async fn decided(app: &TestApp, player_id: &str) -> (String, Value) {
    let started = deposit(app, player_id, "10.00").await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let id = started.body["payment_id"].as_str().unwrap().to_string();
    let risk = payment(app, &id).await["risk"].clone();
    (id, risk)
}

/// Eight starts at once against "3 or more earlier attempts in 10 minutes → decline": each
/// start's decision is stored before its provider is asked, under its subjects' locks, so
/// each sees the ones the database ordered before it and exactly three pass. (Counting only
/// the decisions stored with a recorded payment, all eight passed.)
async fn simultaneous_starts_count_each_others_attempts(backend: TestBackend) {
    let Some(app) = quiet(backend).await else {
        return;
    };
    let rules = json!({
        "thresholds": {"review": 50, "step_up": 80, "decline": 100},
        "rules": [
            // Always fires, so the explanation shows what each start counted.
            rule("count", gte("player_attempts_10m", 0), 0),
            rule("burst", gte("player_attempts_10m", 3), 100),
        ],
    });
    set_rules(&app, "", rules).await;
    let created = player(&app, "s1", json!({})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let starts = (0..8).map(|_| deposit(&app, "s1", "10.00"));
    let answers = futures::future::join_all(starts).await;
    let passed: Vec<&common::Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .collect();
    let refused: Vec<&common::Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::FORBIDDEN)
        .collect();
    let bodies: Vec<&Value> = answers.iter().map(|a| &a.body).collect();
    assert_eq!((passed.len(), refused.len()), (3, 5), "{bodies:?}");
    for answer in &refused {
        assert_eq!(answer.error_code(), "risk_declined", "{}", answer.body);
        assert_eq!(answer.body["details"]["rules"], json!(["count", "burst"]));
    }
    // The passed starts counted 0, 1 and 2 earlier attempts: each saw the ones before it.
    let mut counted = Vec::new();
    for answer in passed {
        let id = answer.body["payment_id"].as_str().unwrap();
        let risk = payment(&app, id).await["risk"].clone();
        assert_eq!(
            (&risk["outcome"], &risk["kind"]),
            (&json!("approve"), &json!("deposit"))
        );
        counted.push(
            read(&risk, "count", "player_attempts_10m")
                .as_i64()
                .unwrap(),
        );
    }
    counted.sort_unstable();
    assert_eq!(counted, [0, 1, 2]);
    // A ninth start sees all eight attempts, refused ones included.
    let ninth = deposit(&app, "s1", "10.00").await;
    assert_eq!(ninth.status, StatusCode::FORBIDDEN, "{}", ninth.body);
    app.stop().await;
}

/// An email is stored normalised; players sharing a mailbox (a `+tag`, Gmail's dots) are
/// counted, and so are the deposits of every player with it.
async fn email_velocity_and_shared_mailboxes_fire_their_rules(backend: TestBackend) {
    let Some(app) = quiet(backend).await else {
        return;
    };
    let bad = player(&app, "e0", json!({"email": "not an address"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.error_code(), "validation_failed", "{}", bad.body);
    let first = player(&app, "e1", json!({"email": " Jane.Doe+Casino@GMail.com "})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["email"], "jane.doe+casino@gmail.com");
    let rules = json!({
        "thresholds": never(),
        "rules": [
            rule("shared-mailbox", gte("email_players", 1), 1),
            rule("mailbox-burst", gte("email_attempts_1h", 2), 2),
        ],
    });
    set_rules(&app, "", rules).await;
    let (_, alone) = decided(&app, "e1").await;
    assert_eq!(alone["outcome"], "approve", "{alone}");
    assert!(fired(&alone).is_empty(), "{alone}");
    let second = player(&app, "e2", json!({"email": "janedoe@gmail.com"})).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let (_, shared) = decided(&app, "e2").await;
    assert_eq!(fired(&shared), ["shared-mailbox"], "{shared}");
    assert_eq!(read(&shared, "shared-mailbox", "email_players"), 1);
    // e1's deposit and e2's first count for e2's second: the mailbox's attempts.
    let (_, burst) = decided(&app, "e2").await;
    assert_eq!(
        fired(&burst),
        ["shared-mailbox", "mailbox-burst"],
        "{burst}"
    );
    assert_eq!(read(&burst, "mailbox-burst", "email_attempts_1h"), 2);
    // A player without an email has no email features: the rules read them as missing.
    let none = player(&app, "e3", json!({})).await;
    assert!(none.body["email"].is_null(), "{}", none.body);
    let (_, missing) = decided(&app, "e3").await;
    assert!(fired(&missing).is_empty(), "{missing}");
    let missing_features = missing["missing_features"].as_array().unwrap();
    assert!(
        missing_features.contains(&json!("email_players")),
        "{missing}"
    );
    app.stop().await;
}

/// The demo merchant's only account becomes the acquirer at `address`; jobs run often (the
/// AML monitoring), the vault saves cards with their fingerprints, and the BIN list is the
/// sandbox's.
fn card_config(config: &mut Config, address: &str) {
    let merchant = config.providers.accounts[0].merchant.clone();
    let settings: toml::Table = toml::from_str(&format!(
        "address = \"{address}\"\nterminal_id = \"KASSA001\"\ncard_acceptor_id = \"CASINO-MT-01\"\n\
         timeout_ms = 2000"
    ))
    .unwrap();
    config.providers.accounts = vec![ProviderAccountConfig {
        id: "acquirer".into(),
        merchant,
        kind: "iso8583".into(),
        name: "Direct acquirer".into(),
        credentials: Default::default(),
        settings,
        webhook_source_cidrs: Vec::new(),
    }];
    common::fast_background(config);
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    config.vault.master_keys = [("k1".to_string(), key.to_string().into())].into();
    config.vault.active_key = "k1".into();
    config.vault.fingerprint_key = Some("ZmluZ2VycHJpbnQta2V5LWZvci10aGUtdGVzdHMtb25seQ==".into());
    config.risk.bin_list_path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/risk-bins.csv").to_string();
}

async fn host() -> Iso8583HostHandle {
    start(Iso8583HostConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Pays a deposit of `player_id` with `card` on the card page (saving it when `save`);
/// answers the payment afterwards.
async fn pay(app: &TestApp, player_id: &str, card: &str, save: bool) -> Value {
    let started = deposit(app, player_id, "10.00").await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let id = started.body["payment_id"].as_str().unwrap().to_string();
    let page = started.body["redirect_url"].as_str().unwrap().to_string();
    let mut form = vec![("number", card), ("expiry", "12/30"), ("cvc", "123")];
    if save {
        form.push(("save", "on"));
    }
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = browser.post(&page).form(&form).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    payment(app, &id).await
}

fn purchases(host: &Iso8583HostHandle) -> usize {
    host.received()
        .iter()
        .filter(|(mti, _)| mti == "0200")
        .count()
}

/// The card page decides on the card before the issuer hears of it: its fingerprint's
/// attempts, the players sharing it, its BIN's country against the request's and the
/// player's; a decline sends no authorization. The same card of two players raises the
/// AML `shared_instrument` alert, and the case lists the other player as linked by the card.
async fn card_fingerprint_shared_cards_and_bin_country_fire_their_rules(backend: TestBackend) {
    let host = host().await;
    let address = host.local_addr().to_string();
    let Some(app) = common::spawn_with(backend, |c| card_config(c, &address)).await else {
        return;
    };
    let rules = json!({
        "thresholds": {"review": 50, "step_up": 80, "decline": 100},
        "rules": [
            rule("card-shared", gte("card_players_30d", 1), 1),
            rule("bin-abroad", json!({"flag": "bin_country_mismatch_ip"}), 2),
            rule("bin-not-kyc", json!({"flag": "bin_country_mismatch_kyc"}), 4),
            rule("bin-us", json!({"in": {"feature": "bin_country", "values": ["US"]}}), 8),
            rule("card-burst", gte("card_attempts_1h", 2), 100),
        ],
    });
    set_rules(&app, "", rules).await;
    for id in ["c1", "c2"] {
        assert!(player(&app, id, json!({})).await.status.is_success());
    }
    // A US card from Malta, of a Maltese player: saved, with its fingerprint.
    const US_CARD: &str = "4111111111111111";
    let first = pay(&app, "c1", US_CARD, true).await;
    assert_eq!(first["status"], "captured", "{first}");
    let risk = &first["risk"];
    assert_eq!(risk["kind"], "card", "{risk}");
    assert_eq!(
        fired(risk),
        ["bin-abroad", "bin-not-kyc", "bin-us"],
        "{risk}"
    );
    assert_eq!(read(risk, "bin-us", "bin_country"), "US");
    // The payment keeps what the card page saw of the card (ADR 84): never the number.
    assert_eq!(
        first["card"],
        json!({"country": "US", "brand": null, "last4": "1111"}),
        "{first}"
    );
    assert!(!first.to_string().contains(US_CARD));
    let saved = app
        .store()
        .player_vault_cards("mch_demo", "c1")
        .await
        .unwrap();
    let fingerprint = saved[0].fingerprint.clone().expect("a fingerprint");
    assert_eq!(fingerprint.len(), 64);
    assert!(!fingerprint.contains(US_CARD));
    // The same card for another player: shared, and one earlier attempt.
    let second = pay(&app, "c2", US_CARD, false).await;
    assert_eq!(second["status"], "captured", "{second}");
    assert!(fired(&second["risk"]).contains(&"card-shared".to_string()));
    assert_eq!(read(&second["risk"], "card-shared", "card_players_30d"), 1);
    // A third attempt with the card within the hour: declined, no authorization sent.
    let before = purchases(&host);
    let third = pay(&app, "c2", US_CARD, false).await;
    assert_eq!(third["status"], "declined", "{third}");
    assert_eq!(third["failure_reason"], "risk_declined");
    assert_eq!(third["risk"]["outcome"], "decline");
    assert_eq!(read(&third["risk"], "card-burst", "card_attempts_1h"), 2);
    assert_eq!(purchases(&host), before, "the issuer never heard of it");
    // A Maltese card: no BIN rule, and a card of its own.
    let local = pay(&app, "c1", "4000000000000002", false).await;
    assert_eq!(local["status"], "captured", "{local}");
    assert!(fired(&local["risk"]).is_empty(), "{}", local["risk"]);
    assert_eq!(local["risk"]["outcome"], "approve");
    assert_eq!(local["card"]["country"], "MT", "{local}");
    assert_payout_reads_the_saved_card(&app, &saved[0].token).await;
    assert_aml_links(&app).await;
    app.stop().await;
}

/// `card_countries_30d` counts the cards of deposits that took the money (ADR 84): a British
/// card the issuer refused is recorded on its payment, yet the player's later decisions
/// count only the Maltese card that paid.
async fn a_card_the_issuer_refused_is_recorded_but_not_counted(backend: TestBackend) {
    let host = host().await;
    let address = host.local_addr().to_string();
    let Some(app) = common::spawn_with(backend, |c| card_config(c, &address)).await else {
        return;
    };
    let rules = json!({"thresholds": never(), "rules": [
        rule("card-countries", gte("card_countries_30d", 1), 1),
    ]});
    set_rules(&app, "", rules).await;
    assert!(player(&app, "r1", json!({})).await.status.is_success());
    // A GB BIN (config/risk-bins.csv) ending in 0051: insufficient funds at the host.
    const GB_REFUSED: &str = "4100000900000051";
    let refused = pay(&app, "r1", GB_REFUSED, false).await;
    assert_eq!(refused["status"], "declined", "{refused}");
    assert_eq!(refused["failure_reason"], "insufficient_funds");
    assert_eq!(refused["card"]["country"], "GB", "recorded: {refused}");

    let paid = pay(&app, "r1", "4000000000000002", false).await;
    assert_eq!(paid["status"], "captured", "{paid}");
    assert!(
        fired(&paid["risk"]).is_empty(),
        "the refused card counted: {}",
        paid["risk"]
    );
    let next = pay(&app, "r1", "4000000000000002", false).await;
    assert_eq!(next["status"], "captured", "{next}");
    assert_eq!(
        read(&next["risk"], "card-countries", "card_countries_30d"),
        1,
        "only the Maltese card paid: {}",
        next["risk"]
    );
    app.stop().await;
}

/// A payout to the saved US card reads the card's features from the vault: its BIN country,
/// the other player who submitted it, its attempts.
async fn assert_payout_reads_the_saved_card(app: &TestApp, token: &str) {
    let verified = player(app, "c1", json!({"kyc_status": "verified"})).await;
    assert!(verified.status.is_success(), "{}", verified.body);
    let body = json!({"amount": "5.00", "currency": "EUR", "method": "card", "player_id": "c1",
                      "destination": token});
    let requested = common::post_payout(app, &body).await;
    // A verified Maltese player: the KYC country is the player's, MT, not the card's; and
    // the card's three submissions within the hour decline the payout too.
    assert_eq!(
        requested.status,
        StatusCode::FORBIDDEN,
        "{}",
        requested.body
    );
    assert_eq!(requested.error_code(), "risk_declined");
    let rules = json!(["card-shared", "bin-not-kyc", "bin-us", "card-burst"]);
    assert_eq!(
        requested.body["details"]["rules"], rules,
        "{}",
        requested.body
    );
}

/// c2's capture with c1's card raised `shared_instrument` (keyed by the card's fingerprint),
/// and c2's case lists c1 as linked by the card.
async fn assert_aml_links(app: &TestApp) {
    let mut alerts = Vec::new();
    for _ in 0..250 {
        let page = app
            .as_admin(Method::GET, "/v1/admin/alerts?player_id=c2", None)
            .await;
        alerts = page.body["data"].as_array().cloned().unwrap_or_default();
        if !alerts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shared = alerts
        .iter()
        .find(|a| a["scenario"] == "shared_instrument")
        .unwrap_or_else(|| panic!("no shared_instrument alert: {alerts:?}"));
    assert_eq!(shared["figures"]["players"], 2, "{shared}");
    let case_id = shared["case_id"].as_str().unwrap();
    let case = app
        .as_admin(Method::GET, &format!("/v1/admin/cases/{case_id}"), None)
        .await;
    assert_eq!(case.status, StatusCode::OK, "{}", case.body);
    assert_eq!(
        case.body["linked_players"],
        json!([{"player_id": "c1", "links": ["card"]}]),
        "{}",
        case.body
    );
}
