//! Unit and property tests of the ledger's rules, with an in-memory stand-in for storage.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const CASH_A: AccountId = 1;
const CASH_B: AccountId = 2;
const HOLD_A: AccountId = 3;
const HOUSE: AccountId = 4;
const CLEARING: AccountId = 5;

fn eur() -> Currency {
    Currency::from_code("EUR").unwrap()
}

/// Storage as the ledger sees it: accounts, entries and the append-only transfer log.
#[derive(Default, Clone)]
struct MemoryStore {
    accounts: HashMap<AccountId, Account>,
    entries: HashMap<String, Entry>,
    transfers: Vec<Transfer>,
}

impl MemoryStore {
    fn new() -> MemoryStore {
        let mut store = MemoryStore::default();
        for (id, floor) in [
            (CASH_A, Floor::NonNegative),
            (CASH_B, Floor::NonNegative),
            (HOLD_A, Floor::NonNegative),
            (HOUSE, Floor::Unbounded),
            (CLEARING, Floor::Unbounded),
        ] {
            store.accounts.insert(
                id,
                Account {
                    id,
                    currency: eur(),
                    balance_minor: 0,
                    floor,
                },
            );
        }
        store
    }

    /// Loads a view the way the database store does, applies the batch, persists effects.
    fn apply_batch(&mut self, requests: &[Request]) -> Vec<Outcome> {
        let mut txn_ids: Vec<&str> = requests
            .iter()
            .flat_map(|r| r.referenced_txn_ids())
            .collect();
        txn_ids.sort();
        txn_ids.dedup();
        let entries: Vec<Entry> = txn_ids
            .iter()
            .filter_map(|id| self.entries.get(*id).cloned())
            .collect();
        let mut account_ids: Vec<AccountId> = requests
            .iter()
            .flat_map(|r| r.referenced_accounts())
            .collect();
        account_ids.extend(entries.iter().flat_map(|e| e.accounts()));
        let accounts: Vec<Account> = account_ids
            .iter()
            .filter_map(|id| self.accounts.get(id).cloned())
            .collect();
        let mut view = LedgerView::new(accounts, entries);
        let outcomes = requests.iter().map(|r| view.apply(r)).collect();
        let effects = view.into_effects();
        for entry in effects.new_entries {
            assert!(
                self.entries.insert(entry.txn_id.clone(), entry).is_none(),
                "a new entry must have a new txn id"
            );
        }
        for entry in effects.changed_entries {
            assert!(self.entries.insert(entry.txn_id.clone(), entry).is_some());
        }
        for account in effects.balances {
            self.accounts.insert(account.id, account);
        }
        self.transfers.extend(effects.transfers);
        outcomes
    }

    fn balance(&self, id: AccountId) -> i64 {
        self.accounts[&id].balance_minor
    }

    /// The invariants `kassa ledger verify` checks, over the in-memory state.
    fn assert_invariants(&self) {
        // Sums in i128, as `verify` does: the journal's totals outgrow i64 long before any
        // balance does.
        let mut recomputed: HashMap<AccountId, i128> = HashMap::new();
        for transfer in &self.transfers {
            assert!(transfer.amount_minor > 0);
            assert_ne!(transfer.debit, transfer.credit);
            *recomputed.entry(transfer.debit).or_default() -= i128::from(transfer.amount_minor);
            *recomputed.entry(transfer.credit).or_default() += i128::from(transfer.amount_minor);
            assert!(
                self.entries.contains_key(&transfer.txn_id),
                "transfer without entry"
            );
        }
        let mut total = 0i128;
        for account in self.accounts.values() {
            let expected = recomputed.get(&account.id).copied().unwrap_or(0);
            assert!(
                account.balance_minor > i64::MIN,
                "account {} is past what the ledger holds",
                account.id
            );
            assert_eq!(
                i128::from(account.balance_minor),
                expected,
                "account {} drifted",
                account.id
            );
            if account.floor == Floor::NonNegative {
                assert!(
                    account.balance_minor >= 0,
                    "account {} below zero",
                    account.id
                );
            }
            total += i128::from(account.balance_minor);
        }
        assert_eq!(total, 0, "money was created or destroyed");
    }
}

fn request(txn_id: &str, label: &str, command: Command) -> Request {
    Request {
        txn_id: txn_id.to_string(),
        label: label.to_string(),
        fingerprint: format!("{label}:{command:?}"),
        command,
        subject: Some(CASH_A),
        meta: EntryMeta::default(),
    }
}

fn transfer(txn_id: &str, debit: AccountId, credit: AccountId, amount_minor: i64) -> Request {
    request(
        txn_id,
        "transfer",
        Command::Transfer {
            debit,
            credit,
            amount_minor,
        },
    )
}

fn recorded(outcome: &Outcome) -> &Entry {
    match outcome {
        Outcome::Recorded(entry) => entry,
        other => panic!("expected a recorded entry, got {other:?}"),
    }
}

#[test]
fn a_transfer_moves_money_and_reports_the_subject_balance() {
    let mut store = MemoryStore::new();
    let outcome = &store.apply_batch(&[transfer("t1", HOUSE, CASH_A, 10_000)])[0];
    assert_eq!(recorded(outcome).status, EntryStatus::Posted);
    assert_eq!(recorded(outcome).subject_balance_after_minor, Some(10_000));
    assert_eq!(store.balance(CASH_A), 10_000);
    assert_eq!(store.balance(HOUSE), -10_000);
    store.assert_invariants();
}

#[test]
fn player_money_never_goes_below_zero() {
    let mut store = MemoryStore::new();
    store.apply_batch(&[transfer("fund", HOUSE, CASH_A, 1_000)]);
    let outcomes = store.apply_batch(&[
        transfer("bet1", CASH_A, HOUSE, 600),
        transfer("bet2", CASH_A, HOUSE, 600),
    ]);
    assert_eq!(recorded(&outcomes[0]).status, EntryStatus::Posted);
    assert_eq!(recorded(&outcomes[1]).status, EntryStatus::Rejected);
    assert_eq!(
        recorded(&outcomes[1]).subject_balance_after_minor,
        Some(400)
    );
    assert_eq!(store.balance(CASH_A), 400);
    store.assert_invariants();
}

#[test]
fn a_repeated_txn_id_replays_and_a_reused_one_conflicts() {
    let mut store = MemoryStore::new();
    let first = store.apply_batch(&[transfer("t1", HOUSE, CASH_A, 500)]);
    let again = store.apply_batch(&[transfer("t1", HOUSE, CASH_A, 500)]);
    assert_eq!(again[0], Outcome::Replayed(recorded(&first[0]).clone()));
    let reused = store.apply_batch(&[transfer("t1", HOUSE, CASH_A, 501)]);
    assert!(matches!(reused[0], Outcome::TxnIdReused(_)));
    assert_eq!(store.balance(CASH_A), 500);
    store.assert_invariants();
}

#[test]
fn a_replay_within_one_batch_moves_money_once() {
    let mut store = MemoryStore::new();
    let outcomes = store.apply_batch(&[
        transfer("t1", HOUSE, CASH_A, 500),
        transfer("t1", HOUSE, CASH_A, 500),
    ]);
    assert!(matches!(outcomes[1], Outcome::Replayed(_)));
    assert_eq!(store.balance(CASH_A), 500);
}

#[test]
fn a_reversal_undoes_once_and_a_reversal_of_the_unknown_blocks_the_late_original() {
    let mut store = MemoryStore::new();
    store.apply_batch(&[transfer("fund", HOUSE, CASH_A, 1_000)]);
    store.apply_batch(&[transfer("bet", CASH_A, HOUSE, 300)]);
    let reverse = |id: &str, original: &str| {
        request(
            id,
            "rollback",
            Command::Reverse {
                original_txn_id: original.to_string(),
                original_label: Some("transfer".into()),
            },
        )
    };
    let undone = store.apply_batch(&[reverse("rb1", "bet")]);
    assert_eq!(recorded(&undone[0]).status, EntryStatus::Posted);
    assert_eq!(store.balance(CASH_A), 1_000);
    assert_eq!(store.entries["bet"].status, EntryStatus::Reversed);
    let second = store.apply_batch(&[reverse("rb2", "bet")]);
    assert_eq!(recorded(&second[0]).status, EntryStatus::NoEffect);
    assert_eq!(store.balance(CASH_A), 1_000);

    let unknown = store.apply_batch(&[reverse("rb3", "never-seen")]);
    assert_eq!(recorded(&unknown[0]).status, EntryStatus::OriginalNotFound);
    let late = store.apply_batch(&[transfer("never-seen", CASH_A, HOUSE, 100)]);
    assert!(matches!(late[0], Outcome::Cancelled(_)));
    assert_eq!(store.balance(CASH_A), 1_000);
    store.assert_invariants();
}

#[test]
fn a_reversal_of_another_kind_is_refused() {
    let mut store = MemoryStore::new();
    store.apply_batch(&[transfer("win", HOUSE, CASH_A, 100)]);
    let refused = store.apply_batch(&[request(
        "rb",
        "rollback",
        Command::Reverse {
            original_txn_id: "win".into(),
            original_label: Some("debit".into()),
        },
    )]);
    assert!(matches!(
        refused[0],
        Outcome::Refused(Refusal::NotReversible { .. })
    ));
    assert_eq!(store.balance(CASH_A), 100);
}

#[test]
fn two_phase_reserve_then_post_or_void() {
    let mut store = MemoryStore::new();
    store.apply_batch(&[transfer("fund", HOUSE, CASH_A, 1_000)]);
    let reserve = |id: &str, amount_minor| {
        request(
            id,
            "payout",
            Command::Reserve {
                debit: CASH_A,
                hold: HOLD_A,
                credit: CLEARING,
                amount_minor,
            },
        )
    };
    let held = store.apply_batch(&[reserve("po1", 700)]);
    assert_eq!(recorded(&held[0]).status, EntryStatus::Pending);
    assert_eq!((store.balance(CASH_A), store.balance(HOLD_A)), (300, 700));
    let too_much = store.apply_batch(&[reserve("po2", 400)]);
    assert_eq!(recorded(&too_much[0]).status, EntryStatus::Rejected);

    let post = request(
        "po1:post",
        "payout_paid",
        Command::Post {
            pending_txn_id: "po1".into(),
            amount_minor: Some(500),
        },
    );
    store.apply_batch(&[post]);
    assert_eq!(store.balance(HOLD_A), 0);
    assert_eq!(
        store.balance(CASH_A),
        500,
        "the unposted remainder returns to the player"
    );
    assert_eq!(store.balance(CLEARING), 500);
    let void = request(
        "po1:void",
        "payout_failed",
        Command::Void {
            pending_txn_id: "po1".into(),
        },
    );
    let refused = store.apply_batch(&[void]);
    assert!(matches!(
        refused[0],
        Outcome::Refused(Refusal::PendingClosed { .. })
    ));

    store.apply_batch(&[reserve("po3", 200)]);
    let void = request(
        "po3:void",
        "payout_failed",
        Command::Void {
            pending_txn_id: "po3".into(),
        },
    );
    store.apply_batch(&[void]);
    assert_eq!((store.balance(CASH_A), store.balance(HOLD_A)), (500, 0));
    assert_eq!(store.entries["po3"].status, EntryStatus::PendingVoided);
    store.assert_invariants();
}

#[test]
fn malformed_requests_are_refused_without_a_record() {
    let mut store = MemoryStore::new();
    let outcomes = store.apply_batch(&[
        transfer("zero", HOUSE, CASH_A, 0),
        transfer("same", CASH_A, CASH_A, 1),
        transfer("ghost", 99, CASH_A, 1),
    ]);
    assert!(matches!(
        outcomes[0],
        Outcome::Refused(Refusal::NotPositive)
    ));
    assert!(matches!(
        outcomes[1],
        Outcome::Refused(Refusal::SameAccount)
    ));
    assert!(matches!(
        outcomes[2],
        Outcome::Refused(Refusal::UnknownAccount(99))
    ));
    assert!(store.entries.is_empty());
}

/// One step of a random ledger history. Txn ids come from a small pool so that replays,
/// reuses, reversals of the unknown and late originals all happen often.
#[derive(Clone, Debug)]
enum Step {
    Credit {
        id: u8,
        player: bool,
        amount_minor: i64,
    },
    Debit {
        id: u8,
        player: bool,
        amount_minor: i64,
    },
    Rollback {
        id: u8,
        original: u8,
    },
    Reserve {
        id: u8,
        amount_minor: i64,
    },
    Post {
        id: u8,
        pending: u8,
        amount_minor: Option<i64>,
    },
    Void {
        id: u8,
        pending: u8,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    step_strategy_with(1i64..2_000)
}

/// Amounts near the top of the i64 range, so that balances and the journal's sums overflow
/// unless every step is checked.
fn huge_amount() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![
        Just(i64::MAX),
        (i64::MAX - 1_000)..=i64::MAX,
        (i64::MAX / 4)..=(i64::MAX / 2 + 1),
        1i64..1_000,
    ]
}

fn step_strategy_with(amount: impl Strategy<Value = i64> + Clone) -> impl Strategy<Value = Step> {
    let id = 0u8..24;
    prop_oneof![
        (id.clone(), any::<bool>(), amount.clone()).prop_map(|(id, player, amount_minor)| {
            Step::Credit {
                id,
                player,
                amount_minor,
            }
        }),
        (id.clone(), any::<bool>(), amount.clone()).prop_map(|(id, player, amount_minor)| {
            Step::Debit {
                id,
                player,
                amount_minor,
            }
        }),
        (id.clone(), id.clone()).prop_map(|(id, original)| Step::Rollback { id, original }),
        (id.clone(), amount.clone())
            .prop_map(|(id, amount_minor)| Step::Reserve { id, amount_minor }),
        (id.clone(), id.clone(), proptest::option::of(amount.clone())).prop_map(
            |(id, pending, amount_minor)| Step::Post {
                id,
                pending,
                amount_minor
            }
        ),
        (id.clone(), id).prop_map(|(id, pending)| Step::Void { id, pending }),
    ]
}

fn to_request(step: &Step) -> Request {
    let cash = |player: bool| if player { CASH_A } else { CASH_B };
    let name = |id: u8| format!("t{id}");
    match step {
        Step::Credit {
            id,
            player,
            amount_minor,
        } => transfer(&name(*id), HOUSE, cash(*player), *amount_minor),
        Step::Debit {
            id,
            player,
            amount_minor,
        } => {
            let mut r = transfer(&name(*id), cash(*player), HOUSE, *amount_minor);
            r.label = "debit".into();
            r.fingerprint = format!("debit:{:?}", r.command);
            r
        }
        Step::Rollback { id, original } => request(
            &name(*id),
            "rollback",
            Command::Reverse {
                original_txn_id: name(*original),
                original_label: Some("debit".into()),
            },
        ),
        Step::Reserve { id, amount_minor } => request(
            &name(*id),
            "payout",
            Command::Reserve {
                debit: CASH_A,
                hold: HOLD_A,
                credit: CLEARING,
                amount_minor: *amount_minor,
            },
        ),
        Step::Post {
            id,
            pending,
            amount_minor,
        } => request(
            &name(*id),
            "payout_paid",
            Command::Post {
                pending_txn_id: name(*pending),
                amount_minor: *amount_minor,
            },
        ),
        Step::Void { id, pending } => request(
            &name(*id),
            "payout_failed",
            Command::Void {
                pending_txn_id: name(*pending),
            },
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random histories, cut into random batches and each replayed at random, never make a
    /// player balance negative, never create or destroy money, never let balances drift
    /// from the transfer log, and never move money on a replay.
    #[test]
    fn random_histories_keep_every_invariant(
        steps in proptest::collection::vec(step_strategy(), 1..80),
        batch_sizes in proptest::collection::vec(1usize..8, 1..80),
        replay_mask in proptest::collection::vec(any::<bool>(), 80),
    ) {
        let mut store = MemoryStore::new();
        let requests: Vec<Request> = steps.iter().map(to_request).collect();
        let mut start = 0;
        for (batch_index, size) in batch_sizes.iter().cycle().enumerate() {
            if start >= requests.len() {
                break;
            }
            let end = (start + size).min(requests.len());
            let batch = &requests[start..end];
            let first = store.apply_batch(batch);
            store.assert_invariants();
            if replay_mask[batch_index % replay_mask.len()] {
                let before = store.clone();
                let replayed = store.apply_batch(batch);
                for (a, b) in first.iter().zip(&replayed) {
                    if let Outcome::Recorded(entry) = a {
                        // The first answer is what every repeat returns, unless a later
                        // request in the same batch changed the entry's status.
                        match b {
                            Outcome::Replayed(again) => prop_assert_eq!(&again.txn_id, &entry.txn_id),
                            Outcome::Cancelled(_) => {}
                            other => prop_assert!(false, "replay gave {:?}", other),
                        }
                    }
                }
                // Only a request refused the first time (never recorded) may apply on retry;
                // anything recorded must never move money again.
                let retried: Vec<&str> = batch
                    .iter()
                    .zip(&first)
                    .filter(|(_, outcome)| matches!(outcome, Outcome::Refused(_)))
                    .map(|(request, _)| request.txn_id.as_str())
                    .collect();
                for transfer in &store.transfers[before.transfers.len()..] {
                    prop_assert!(
                        retried.contains(&transfer.txn_id.as_str()),
                        "replay of {} moved money", transfer.txn_id
                    );
                }
                store.assert_invariants();
            }
            start = end;
        }
    }
}

#[test]
fn no_sequence_of_calls_takes_an_account_past_what_the_ledger_holds() {
    let mut store = MemoryStore::new();
    // The sequence: credit the most an i64 holds, debit it, credit it again.
    let outcomes = store.apply_batch(&[
        transfer("c1", HOUSE, CASH_A, i64::MAX),
        {
            let mut r = transfer("d1", CASH_A, HOUSE, i64::MAX);
            r.label = "debit".into();
            r
        },
        transfer("c2", HOUSE, CASH_A, i64::MAX),
    ]);
    assert!(outcomes
        .iter()
        .all(|o| recorded(o).status == EntryStatus::Posted));
    assert_eq!(store.balance(HOUSE), -i64::MAX);
    store.assert_invariants();
    // One more minor unit would take the house to i64::MIN, whose negation overflows:
    // refused with a typed reason, nothing recorded.
    let outcomes = store.apply_batch(&[
        transfer("c3", HOUSE, CASH_B, 1),
        transfer("c4", CLEARING, CASH_A, 1),
    ]);
    assert_eq!(outcomes[0], Outcome::Refused(Refusal::Overflow));
    assert_eq!(outcomes[1], Outcome::Refused(Refusal::Overflow));
    assert!(!store.entries.contains_key("c3") && !store.entries.contains_key("c4"));
    store.assert_invariants();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Histories of amounts near i64::MAX: every request is recorded or refused with a
    /// typed reason, never panics, and every balance stays within ±i64::MAX with the
    /// journal (summed in i128) agreeing with it.
    #[test]
    fn huge_amounts_never_break_the_ledger(
        steps in proptest::collection::vec(step_strategy_with(huge_amount()), 1..60),
        batch_size in 1usize..6,
    ) {
        let mut store = MemoryStore::new();
        let requests: Vec<Request> = steps.iter().map(to_request).collect();
        for batch in requests.chunks(batch_size) {
            store.apply_batch(batch);
            store.assert_invariants();
        }
    }
}
