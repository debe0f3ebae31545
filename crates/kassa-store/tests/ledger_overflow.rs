//! Amounts at the top of the i64 range through real databases: the ledger refuses what
//! would overflow a balance, and `verify_ledger` sums the journal without overflowing, on
//! SQLite and PostgreSQL alike (hardening issue 21, part 1).

use kassa_core::ledger::{AccountId, Command, EntryMeta, EntryStatus, Outcome};
use kassa_core::ledger::{Refusal, Request};
use kassa_store::testing::{
    ledger_fixture as fixture, migrated_store as store, LedgerFixture as Fixture, TestBackend,
};
use kassa_store::Store;
use proptest::prelude::*;

fn transfer(
    txn_id: &str,
    label: &str,
    debit: AccountId,
    credit: AccountId,
    amount_minor: i64,
) -> Request {
    let command = Command::Transfer {
        debit,
        credit,
        amount_minor,
    };
    Request {
        txn_id: txn_id.into(),
        label: label.into(),
        fingerprint: format!("{label}:{command:?}"),
        command,
        subject: None,
        meta: EntryMeta::default(),
    }
}

async fn apply(store: &Store, merchant: &str, requests: &[Request]) -> Vec<Outcome> {
    let mut tx = store.begin().await.unwrap();
    let outcomes = store
        .apply_ledger_requests(&mut tx, merchant, requests)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    outcomes
}

/// The sequence: credit i64::MAX, debit it, credit it again. Each succeeds, and
/// `verify` must still answer (it overflowed summing the player's credits, 2 × i64::MAX).
async fn credit_debit_credit_of_the_maximum_verifies(backend: TestBackend) {
    let Some(store) = store(backend).await else {
        return;
    };
    let f = fixture(&store).await;
    let alice = f.cash[0];
    let outcomes = apply(
        &store,
        &f.merchant,
        &[
            transfer("c1", "credit", f.house, alice, i64::MAX),
            transfer("d1", "debit", alice, f.house, i64::MAX),
            transfer("c2", "credit", f.house, alice, i64::MAX),
        ],
    )
    .await;
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Outcome::Recorded(e) if e.status == EntryStatus::Posted),
            "{outcome:?}"
        );
    }
    let report = store.verify_ledger().await.expect("verify answers");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.transfers_checked, 3);
    // The house sits at -i64::MAX: one more unit anywhere it pays is refused, typed, and
    // nothing is recorded; the ledger still verifies.
    let outcomes = apply(
        &store,
        &f.merchant,
        &[transfer("c3", "credit", f.house, f.cash[1], 1)],
    )
    .await;
    assert_eq!(outcomes, vec![Outcome::Refused(Refusal::Overflow)]);
    let balances = store.balances(&[alice, f.house, f.cash[1]]).await.unwrap();
    assert_eq!(balances[&alice], i64::MAX);
    assert_eq!(balances[&f.house], -i64::MAX);
    assert_eq!(balances[&f.cash[1]], 0);
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.transfers_checked, 3);
}

/// A journal whose per-account sums pass i64 many times over still verifies, and verify
/// still catches a drifted balance there (it compares in i128, not modulo 2^64).
async fn verify_sums_far_past_i64(backend: TestBackend) {
    let Some(store) = store(backend).await else {
        return;
    };
    let f = fixture(&store).await;
    let alice = f.cash[0];
    let mut requests = Vec::new();
    for i in 0..20 {
        requests.push(transfer(
            &format!("c{i}"),
            "credit",
            f.house,
            alice,
            i64::MAX,
        ));
        requests.push(transfer(
            &format!("d{i}"),
            "debit",
            alice,
            f.house,
            i64::MAX - 7,
        ));
        requests.push(transfer(&format!("e{i}"), "debit", alice, f.house, 7));
    }
    let outcomes = apply(&store, &f.merchant, &requests).await;
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Recorded(_))));
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.transfers_checked, 60);
    // A balance edited by hand shows as drift against the exact sum, not a wrapped one.
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE ledger_accounts SET balance_minor = 1 WHERE id = $1")
        .bind(alice)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = store.verify_ledger().await.unwrap();
    assert_eq!(report.drifted_accounts, vec![(alice, 1, 0)]);
    assert_eq!(report.unbalanced_currencies, vec![("EUR".to_string(), 1)]);
}

#[derive(Clone, Debug)]
enum Step {
    Win {
        id: u8,
        player: usize,
        amount_minor: i64,
    },
    Bet {
        id: u8,
        player: usize,
        amount_minor: i64,
    },
    Rollback {
        id: u8,
        original: u8,
    },
}

fn huge_amount() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![
        Just(i64::MAX),
        (i64::MAX - 1_000)..=i64::MAX,
        (i64::MAX / 3)..=(i64::MAX / 2 + 1),
        1i64..1_000,
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0u8..20;
    prop_oneof![
        (id.clone(), 0usize..2, huge_amount()).prop_map(|(id, player, amount_minor)| {
            Step::Win {
                id,
                player,
                amount_minor,
            }
        }),
        (id.clone(), 0usize..2, huge_amount()).prop_map(|(id, player, amount_minor)| {
            Step::Bet {
                id,
                player,
                amount_minor,
            }
        }),
        (id.clone(), id).prop_map(|(id, original)| Step::Rollback { id, original }),
    ]
}

fn to_request(f: &Fixture, step: &Step) -> Request {
    let n = |id: &u8| format!("t{id}");
    match step {
        Step::Win {
            id,
            player,
            amount_minor,
        } => transfer(&n(id), "credit", f.house, f.cash[*player], *amount_minor),
        Step::Bet {
            id,
            player,
            amount_minor,
        } => transfer(&n(id), "debit", f.cash[*player], f.house, *amount_minor),
        Step::Rollback { id, original } => {
            let command = Command::Reverse {
                original_txn_id: n(original),
                original_label: Some("debit".into()),
            };
            Request {
                txn_id: n(id),
                label: "rollback".into(),
                fingerprint: format!("rollback:{command:?}"),
                command,
                subject: None,
                meta: EntryMeta::default(),
            }
        }
    }
}

/// Random histories of amounts near i64::MAX, in random batches, through the real
/// database: every call is recorded or refused (never an error, never a panic), balances
/// stay within ±i64::MAX, and `verify` answers and is clean after every batch.
fn huge_random_histories_verify(backend: TestBackend, cases: u32) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(store) = runtime.block_on(store(backend)) else {
        return;
    };
    let config = ProptestConfig {
        cases,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in proptest::collection::vec(step(), 1..30), batch in 1usize..5)| {
        runtime.block_on(async {
            let f = fixture(&store).await;
            let requests: Vec<Request> = steps.iter().map(|s| to_request(&f, s)).collect();
            for chunk in requests.chunks(batch) {
                apply(&store, &f.merchant, chunk).await;
                let report = store.verify_ledger().await.expect("verify answers");
                assert!(report.is_ok(), "{report:?}");
            }
            let balances = store.balances(&[f.cash[0], f.cash[1], f.house]).await.unwrap();
            assert!(balances.values().all(|b| *b > i64::MIN), "{balances:?}");
            let total: i128 = balances.values().map(|b| i128::from(*b)).sum();
            assert_eq!(total, 0, "money created or destroyed: {balances:?}");
        });
    });
}

#[tokio::test]
async fn sqlite_credit_debit_credit_of_the_maximum_verifies() {
    credit_debit_credit_of_the_maximum_verifies(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn postgres_credit_debit_credit_of_the_maximum_verifies() {
    credit_debit_credit_of_the_maximum_verifies(TestBackend::Postgres).await;
}

#[tokio::test]
async fn sqlite_verify_sums_far_past_i64() {
    verify_sums_far_past_i64(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn postgres_verify_sums_far_past_i64() {
    verify_sums_far_past_i64(TestBackend::Postgres).await;
}

#[test]
fn sqlite_huge_random_histories_verify() {
    huge_random_histories_verify(TestBackend::Sqlite, 24);
}

#[test]
fn postgres_huge_random_histories_verify() {
    huge_random_histories_verify(TestBackend::Postgres, 24);
}
