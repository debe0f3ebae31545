//! The routing decision's cost (issue 16 asks p99 ≤ 50 µs with 1,000 rules and 20 provider
//! accounts): `kassa_core::routing::decide` over a document whose only matching rule is the
//! last, so every decision scans all 1,000, with some accounts degraded or open.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kassa_core::routing::{
    decide, AccountHealth, CircuitState, Conditions, HealthSnapshot, Pick, RouteRequest,
    RoutingDocument, Rule, WeightedSplit,
};
use kassa_core::Currency;

use crate::bench::stats::{self, RunStats};
use crate::bench::Cell;

const RULES: usize = 1_000;
const ACCOUNTS: usize = 20;

/// The routing cell: `runs` runs of `duration` each, on a blocking thread.
pub async fn cell(duration: Duration, runs: usize) -> anyhow::Result<Cell> {
    super::codec::one_core_cell("routing", "decide", duration, runs, run).await
}

fn run(duration: Duration) -> anyhow::Result<RunStats> {
    let accounts: Vec<String> = (0..ACCOUNTS).map(|n| format!("psp_{n:02}")).collect();
    let eligible: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let document = document(&accounts).validate()?;
    let mut health = HealthSnapshot::default();
    health.insert(
        &accounts[1],
        AccountHealth {
            circuit: CircuitState::Open,
            degraded: false,
        },
    );
    health.insert(
        &accounts[2],
        AccountHealth {
            circuit: CircuitState::Closed,
            degraded: true,
        },
    );
    let eur = Currency::from_code("EUR")?;
    let mut histogram = stats::new_histogram();
    let mut decisions = 0u64;
    let mut worst_ns = 0u128;
    let mut last = None;
    let started = Instant::now();
    while started.elapsed() < duration {
        let payment_id = format!("pay_{decisions:016x}");
        let request = RouteRequest {
            payment_id: &payment_id,
            merchant: "mch_demo",
            country: "MT",
            currency: eur,
            method: "card",
            amount_minor: 5_000,
            risk_level: None,
            bin: None,
            device_class: Some("mobile"),
            first_deposit: Some(false),
            now_unix_s: 1_800_000_000,
        };
        let one = Instant::now();
        let decision = decide(black_box(&request), &document, &eligible, &health);
        let elapsed = one.elapsed();
        worst_ns = worst_ns.max(elapsed.as_nanos());
        stats::record(&mut histogram, elapsed);
        last = Some(black_box(decision));
        decisions += 1;
    }
    let mut stats = RunStats::new(decisions, 0, started.elapsed(), &histogram);
    let decided_by_last = last
        .and_then(Result::ok)
        .is_some_and(|d| d.rule.as_deref() == Some("rule_0999") && d.candidates.len() >= 3);
    stats.checks_ok = decided_by_last;
    stats.checks.push(format!(
        "{RULES} rules (the last matches), {ACCOUNTS} accounts (one open, one degraded): \
         p99 {} µs, worst {} µs per decision (target p99 ≤ 50 µs); the decision {}",
        histogram.value_at_quantile(0.99),
        worst_ns / 1_000,
        if decided_by_last {
            "came from the last rule"
        } else {
            "was WRONG"
        }
    ));
    Ok(stats)
}

/// 999 rules that do not match a Maltese card deposit of 50.00 (other countries, methods or
/// amounts), then one that does, each with a weighted split and fallbacks.
fn document(accounts: &[String]) -> RoutingDocument {
    let rules = (0..RULES)
        .map(|n| {
            let last = n == RULES - 1;
            let account = |k: usize| accounts[(n + k) % accounts.len()].clone();
            Rule {
                id: format!("rule_{n:04}"),
                description: None,
                when: Conditions {
                    countries: if last {
                        vec!["MT".into(), "DE".into()]
                    } else {
                        vec!["GB".into(), "SE".into(), "FI".into()]
                    },
                    methods: vec!["card".into()],
                    currencies: vec!["EUR".into(), "GBP".into()],
                    amount_min_minor: Some(100),
                    amount_max_minor: Some(1_000_000),
                    device_classes: vec!["mobile".into(), "desktop".into()],
                    ..Conditions::default()
                },
                pick: Pick::Weighted {
                    splits: (0..3)
                        .map(|k| WeightedSplit {
                            account: account(k),
                            weight: 10 + k as u32 * 10,
                        })
                        .collect(),
                },
                fallbacks: (3..6).map(account).collect(),
                cascade_after_3ds: false,
            }
        })
        .collect();
    RoutingDocument {
        rules,
        ..RoutingDocument::default()
    }
}
