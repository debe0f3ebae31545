//! The pre-authorization risk decision's cost (issue 19 asks p99 ≤ 2 ms with 200 rules and
//! warm counters, on both backends), as a deposit start pays it since ADR 74: the
//! features read (`RiskService::prepare`), then one short transaction that locks the
//! subjects, counts their velocity, evaluates and stores the decision (`decide_in`), and
//! its commit; for one player whose player, IP, device, card and email counters hold stored
//! decisions. The read-only decision (`assess`, as a payout's) is measured beside it.

use std::time::{Duration, Instant};

use anyhow::Context;
use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::risk::features::{all_names, kind_of};
use kassa_core::risk::{Condition, FeatureKind, Rule, RuleSet, Thresholds};
use kassa_core::status::{AccountStatus, KycStatus};
use kassa_core::{Currency, Money};
use kassa_server::config::RiskConfig;
use kassa_server::service::risk::{Assessment, CardSeen, RiskKind, RiskRequest, RiskService};
use kassa_store::directory::PlayerUpsert;
use kassa_store::risk::RiskDecisionRecord;
use kassa_store::{now_ms, Store};

use crate::bench::stats::{self, RunStats};
use crate::bench::{Cell, FreshDatabase, Median};

const RULES: usize = 200;
/// Stored decisions warming the counters: the measured player's, their IP's and device's,
/// and other players'.
const WARM_DECISIONS: usize = 2_000;
const MERCHANT: &str = "mch_bench";
const PLAYER: &str = "risk_player";
const IP: &str = "203.0.113.7";
const DEVICE: &str = "device-bench";
const EMAIL: &str = "risk.player@example.com";
/// A card fingerprint as the vault's HMAC makes them (64 hex digits).
const CARD: &str = "4b6173736142656e63684361726446696e6765727072696e7430303030303031";
/// The measured decisions' subjects: each a new one, as a start's payment id (a decision
/// replacing the same subject thousands of times would measure a chain of dead row
/// versions that no production subject has; perf-log note 48).
const SUBJECT_PREFIX: &str = "pay_bench_measured_";

/// The risk cell of `backend`: `runs` runs of `duration` each over one warmed database.
pub async fn cell(
    backend: &str,
    postgres_url: &str,
    duration: Duration,
    runs: usize,
) -> anyhow::Result<Cell> {
    let database = FreshDatabase::create(backend, postgres_url).await?;
    // On a worker of the runtime, as a request's handler runs: polled from `main`'s
    // `block_on`, every database answer would be a wake-up across threads.
    let measured = tokio::spawn(measure(database.url.clone(), duration, runs))
        .await
        .context("the risk measurement's task")
        .and_then(|measured| measured);
    database.drop().await?;
    let measured = measured?;
    Ok(Cell {
        backend: backend.into(),
        system: "risk",
        players: 1,
        clients: 1,
        median: Median::of(&measured),
        runs: measured,
    })
}

async fn measure(url: String, duration: Duration, runs: usize) -> anyhow::Result<Vec<RunStats>> {
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    let player = warm(&store).await?;
    // A list of 1,000 ranges, so the IP flags are looked up as in production.
    let ip_list = std::env::temp_dir().join(format!("kassa_bench_ips_{}.txt", std::process::id()));
    let entries: String = (0..1_000)
        .map(|n| format!("10.{}.{}.0/24 hosting\n", n / 256, n % 256))
        .collect();
    std::fs::write(&ip_list, entries + "203.0.113.0/24 vpn\n")?;
    // And 2,000 BINs.
    let bin_list = ip_list.with_extension("bins.csv");
    let bins: String = (0..2_000)
        .map(|n| format!("{},DE\n", 400_000 + n))
        .collect();
    std::fs::write(&bin_list, format!("bin,country\n{bins}"))?;
    let config = RiskConfig {
        rules: Some(rule_set()),
        ip_list_path: ip_list.to_string_lossy().into_owned(),
        bin_list_path: bin_list.to_string_lossy().into_owned(),
    };
    let risk = RiskService::new(store.clone(), &config).context("the bench rule set")?;
    let mut measured = Vec::new();
    let mut failed = None;
    for _ in 0..runs {
        match run(&store, &risk, &player, duration).await {
            Ok(stats) => measured.push(stats),
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&ip_list);
    let _ = std::fs::remove_file(&bin_list);
    store.close().await;
    match failed {
        Some(error) => Err(error),
        None => Ok(measured),
    }
}

async fn run(
    store: &Store,
    risk: &RiskService,
    player: &kassa_store::directory::PlayerRecord,
    duration: Duration,
) -> anyhow::Result<RunStats> {
    let request = RiskRequest {
        kind: RiskKind::Deposit,
        player,
        amount: Money::new(5_000, Currency::from_code("EUR")?),
        method: "card",
        country: Some("DE"),
        ip: Some(IP),
        device: Some(DEVICE),
        card: Some(CardSeen {
            fingerprint: Some(CARD),
            bin: "40000100",
        }),
    };
    let (read_only, _) = decisions(
        duration / 2,
        |_| async { Ok(risk.assess(&request).await?) },
        |_| async { Ok(()) },
    )
    .await?;
    let subject = |n: u64| format!("{SUBJECT_PREFIX}{n}");
    let (stored, last) = decisions(
        duration,
        |n| async move {
            let prepared = risk.prepare(&request).await?;
            let mut tx = store
                .begin_risk_decision(&risk.lock_keys(&prepared, &request))
                .await?;
            let (assessment, _) = risk
                .decide_in(&mut tx, prepared, &request, &subject(n))
                .await?;
            // As a start of a player without deposit limits (`PaymentsService::check_start`).
            tx.commit_without_waiting_for_disk().await?;
            Ok(assessment)
        },
        // Untimed: the counters stay as warmed, for the next decision and the check below.
        |n| async move { forget_decision(store, &subject(n)).await },
    )
    .await?;
    let mut stats = RunStats::new(stored.len(), 0, duration, &stored);
    // The player has no captured deposit: only the averages of their deposits are missing.
    let averages = ["amount_vs_average_pct", "average_deposit_minor"];
    let warm = last.as_ref().is_some_and(|a| {
        a.decision
            .missing_features
            .iter()
            .all(|f| averages.contains(&f.as_str()))
            && a.features.get("player_attempts_24h")
                == Some(&kassa_core::risk::FeatureValue::Number(100))
            && a.features.get("card_attempts_24h")
                == Some(&kassa_core::risk::FeatureValue::Number(100))
            && a.decision.fired.len() > 1
    });
    stats.checks_ok = warm;
    stats.checks.push(format!(
        "{RULES} rules, {WARM_DECISIONS} stored decisions: p99 {} µs per decision stored in \
         its transaction (target p99 ≤ 2 ms), {} µs read only; every feature gathered and the \
         counters warm: {}",
        stored.value_at_quantile(0.99),
        read_only.value_at_quantile(0.99),
        if warm { "yes" } else { "NO" }
    ));
    Ok(stats)
}

/// Makes decisions with `decide` for `duration`, each followed by `after` (not timed);
/// answers their latencies and the last.
async fn decisions<F, Fut, A, AFut>(
    duration: Duration,
    decide: F,
    after: A,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, Option<Assessment>)>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Assessment>>,
    A: Fn(u64) -> AFut,
    AFut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut histogram = stats::new_histogram();
    let mut last = None;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < duration {
        let one = Instant::now();
        let assessed = decide(n).await?;
        stats::record(&mut histogram, one.elapsed());
        after(n).await?;
        last = Some(assessed);
        n += 1;
    }
    Ok((histogram, last))
}

/// Deletes the measured decision of `subject_id`, so that the next one counts the warmed
/// attempts only.
async fn forget_decision(store: &Store, subject_id: &str) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM risk_decisions WHERE subject_id = $1")
        .bind(subject_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The merchant, the measured player and the stored decisions the counters count.
async fn warm(store: &Store) -> anyhow::Result<kassa_store::directory::PlayerRecord> {
    store.create_merchant(MERCHANT, "risk bench").await?;
    let merchant_id = MerchantId::parse(MERCHANT)?;
    let upsert = PlayerUpsert {
        merchant_id: merchant_id.clone(),
        player_id: PlayerId::parse(PLAYER)?,
        currency: Currency::from_code("EUR")?,
        country: "MT".into(),
        jurisdiction: Some("MT".into()),
        kyc_status: KycStatus::Verified,
        birth_date: None,
        account_status: AccountStatus::Active,
        email: Some(kassa_core::email::EmailAddress::parse(EMAIL)?),
    };
    let (player, _) = store.upsert_player(&upsert).await?;
    let now = now_ms();
    let mut tx = store.begin().await?;
    for n in 0..WARM_DECISIONS {
        // The measured player's 100 decisions of the last 24 h share the IP and device with
        // 20 other players'; the rest spread over 30 days and other IPs and devices.
        let own = n < 100;
        let shared = n < 300;
        // The card's 100 submissions of the last 24 h, 20 of them by other players.
        let card = (300..400).contains(&n);
        let record = RiskDecisionRecord {
            id: format!("rsk_bench_{n:06}"),
            merchant_id: MERCHANT.into(),
            player_id: if own {
                PLAYER.into()
            } else {
                format!("other_{}", n % 20)
            },
            kind: if card { "card" } else { "deposit" }.into(),
            subject_id: format!("pay_bench_{n:06}"),
            jurisdiction: Some("MT".into()),
            ip: Some(if shared {
                IP.into()
            } else {
                format!("198.51.100.{}", n % 200)
            }),
            device: Some(if shared {
                DEVICE.into()
            } else {
                format!("device-{}", n % 300)
            }),
            card_fingerprint: card.then(|| CARD.to_string()),
            email_key: own.then(|| EMAIL.to_string()),
            amount_minor: 1_000 + (n as i64 % 50) * 100,
            outcome: if n % 7 == 0 { "decline" } else { "approve" }.into(),
            score: 0,
            features: "{}".into(),
            decision: "{}".into(),
            created_at_ms: now
                - (n as i64 % 1_440) * 60_000
                - if own || card { 0 } else { 86_400_000 },
        };
        store.insert_risk_decision(&mut tx, &record).await?;
    }
    tx.commit().await?;
    Ok(player)
}

/// 200 rules over the whole feature catalogue, each kind read by its conditions, some in
/// `all`/`any`/`not`; thresholds no score reaches, so every rule is evaluated every time.
fn rule_set() -> RuleSet {
    let names = all_names();
    let rules = (0..RULES)
        .map(|n| {
            let feature = &names[n % names.len()];
            let leaf = match kind_of(feature).expect("a catalogue name") {
                FeatureKind::Number => Condition::Gte(kassa_core::risk::rules::Compare {
                    feature: feature.clone(),
                    value: (n as i64 % 5) * 10,
                }),
                FeatureKind::Flag => Condition::Flag(feature.clone()),
                FeatureKind::Text => Condition::In(kassa_core::risk::rules::Membership {
                    feature: feature.clone(),
                    values: vec!["MT".into(), "deposit".into(), "card".into()],
                }),
            };
            let when = match n % 4 {
                0 => Condition::All(vec![leaf, Condition::Flag("first_deposit".into())]),
                1 => Condition::Any(vec![leaf, Condition::Flag("country_mismatch".into())]),
                2 => Condition::Not(Box::new(leaf)),
                _ => leaf,
            };
            Rule {
                id: format!("rule-{n:03}"),
                description: String::new(),
                when,
                score: 1,
            }
        })
        .collect();
    RuleSet {
        rules,
        thresholds: Thresholds {
            review: 100_000,
            step_up: 100_000,
            decline: 100_000,
        },
        step_up_refuses_deposits: false,
    }
}
