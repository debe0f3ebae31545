//! Each movement's request, pinned field by field (stored txn ids, labels and fingerprints
//! depend on them), applied to the pure ledger; and a property test driving random
//! sequences of movements.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::ledger::{Account, AccountKind, EntryStatus, LedgerView, Outcome, Refusal};
use crate::Currency;

const CASH: AccountId = 1;
const HOLD: AccountId = 2;
const HOUSE: AccountId = 3;
const SUSPENSE: AccountId = 4;
const CLEARING: AccountId = 5;
const LOSSES: AccountId = 6;

const ACCOUNTS: [(AccountId, AccountKind); 6] = [
    (CASH, AccountKind::PlayerCash),
    (HOLD, AccountKind::PlayerHold),
    (HOUSE, AccountKind::OperatorRevenue),
    (SUSPENSE, AccountKind::Suspense),
    (CLEARING, AccountKind::ProviderClearing),
    (LOSSES, AccountKind::ChargebackLosses),
];

const PLAYER: PlayerAccounts = PlayerAccounts {
    cash: CASH,
    hold: HOLD,
    house: HOUSE,
    suspense: SUSPENSE,
};

const CHARGEBACK_ACCOUNTS: ChargebackAccounts = ChargebackAccounts {
    player_cash: CASH,
    losses: LOSSES,
    clearing: CLEARING,
};

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::from_code("EUR").unwrap())
}

/// A ledger holding one player's wallet and the house's accounts, all at zero, with the
/// floors their kinds give them.
fn fresh_ledger() -> LedgerView {
    let accounts = ACCOUNTS.map(|(id, kind)| Account {
        id,
        currency: Currency::from_code("EUR").unwrap(),
        balance_minor: 0,
        floor: kind.floor(),
    });
    LedgerView::new(accounts, [])
}

fn balance(view: &LedgerView, id: AccountId) -> i64 {
    view.account(id).unwrap().balance_minor
}

fn balances(view: &LedgerView) -> Vec<i64> {
    ACCOUNTS.iter().map(|(id, _)| balance(view, *id)).collect()
}

fn status_of(outcome: &Outcome) -> EntryStatus {
    match outcome {
        Outcome::Recorded(entry) => entry.status,
        other => panic!("expected a recorded entry, got {other:?}"),
    }
}

fn ids() -> (PaymentId, PlayerId) {
    (
        PaymentId::parse("pay_A1").unwrap(),
        PlayerId::parse("p1").unwrap(),
    )
}

fn wallet_call<'a>(
    txn_id: &'a TxnId,
    player_id: &'a PlayerId,
    amount_minor: i64,
) -> WalletCall<'a> {
    WalletCall {
        txn_id,
        player_id,
        amount: eur(amount_minor),
        round_id: None,
    }
}

fn payment_ref<'a>(payment_id: &'a PaymentId, player_id: &'a PlayerId) -> PaymentRef<'a> {
    PaymentRef {
        payment_id,
        player_id,
    }
}

fn payment_meta_of(payment: &PaymentId, player: &PlayerId) -> EntryMeta {
    EntryMeta {
        player_id: Some(player.to_string()),
        round_id: None,
        reference: Some(payment.to_string()),
        refusal: None,
    }
}

/// Credits the player `amount_minor` through a captured deposit.
fn deposit(view: &mut LedgerView, payment: &str, amount_minor: i64) {
    let (_, player) = ids();
    let payment_id = PaymentId::parse(payment).unwrap();
    let payment = PaymentRef {
        payment_id: &payment_id,
        player_id: &player,
    };
    let request = deposit_captured(payment, eur(amount_minor), CASH, CLEARING);
    assert_eq!(status_of(&view.apply(&request)), EntryStatus::Posted);
}

#[test]
fn labels_keep_their_stored_names() {
    let stored = [
        "deposit",
        "refund",
        "refund_failed",
        "chargeback",
        "dispute_won",
        "payout",
        "payout_paid",
        "payout_released",
        "debit",
        "credit",
        "rollback",
    ];
    let names: Vec<&str> = EntryLabel::ALL.iter().map(|l| l.as_str()).collect();
    assert_eq!(names, stored);
    for text in stored {
        assert_eq!(EntryLabel::parse(text).unwrap().as_str(), text);
    }
    assert_eq!(EntryLabel::parse("unknown"), None);
}

#[test]
fn a_captured_deposit_moves_clearing_to_cash_once() {
    let (payment_id, player_id) = ids();
    let payment = PaymentRef {
        payment_id: &payment_id,
        player_id: &player_id,
    };
    let request = deposit_captured(payment, eur(5_000), CASH, CLEARING);
    assert_eq!(
        request,
        Request {
            txn_id: "pay_A1:capture".into(),
            label: "deposit".into(),
            fingerprint: "deposit:pay_A1:5000".into(),
            command: Command::Transfer {
                debit: CLEARING,
                credit: CASH,
                amount_minor: 5_000,
            },
            subject: Some(CASH),
            meta: payment_meta_of(&payment_id, &player_id),
        }
    );
    let mut view = fresh_ledger();
    let Outcome::Recorded(entry) = view.apply(&request) else {
        panic!("not recorded");
    };
    assert_eq!(entry.entry_label(), Some(EntryLabel::Deposit));
    assert_eq!(entry.subject_balance_after_minor, Some(5_000));
    let again = deposit_captured(payment, eur(5_000), CASH, CLEARING);
    assert!(matches!(view.apply(&again), Outcome::Replayed(_)));
    let other_amount = deposit_captured(payment, eur(4_000), CASH, CLEARING);
    assert!(matches!(view.apply(&other_amount), Outcome::TxnIdReused(_)));
    assert_eq!(balances(&view), [5_000, 0, 0, 0, -5_000, 0]);
}

#[test]
fn a_refund_is_held_then_settled_or_returned() {
    let (payment_id, player_id) = ids();
    let payment = PaymentRef {
        payment_id: &payment_id,
        player_id: &player_id,
    };
    let refund_id = RefundId::parse("rf_B2").unwrap();
    let hold = refund_requested(&refund_id, payment, eur(1_500), &PLAYER, CLEARING);
    assert_eq!(
        hold,
        Request {
            txn_id: "rf_B2".into(),
            label: "refund".into(),
            fingerprint: "refund:rf_B2".into(),
            command: Command::Reserve {
                debit: CASH,
                hold: HOLD,
                credit: CLEARING,
                amount_minor: 1_500,
            },
            subject: Some(CASH),
            meta: payment_meta_of(&payment_id, &player_id),
        }
    );
    let settled = refund_settled(&refund_id, payment);
    assert_eq!(
        settled,
        Request {
            txn_id: "rf_B2:post".into(),
            label: "refund".into(),
            fingerprint: "refund-post:rf_B2".into(),
            command: Command::Post {
                pending_txn_id: "rf_B2".into(),
                amount_minor: None,
            },
            subject: None,
            meta: payment_meta_of(&payment_id, &player_id),
        }
    );
    let failed = refund_failed(&refund_id, payment);
    assert_eq!(
        failed,
        Request {
            txn_id: "rf_B2:void".into(),
            label: "refund_failed".into(),
            fingerprint: "refund-void:rf_B2".into(),
            command: Command::Void {
                pending_txn_id: "rf_B2".into(),
            },
            subject: None,
            meta: payment_meta_of(&payment_id, &player_id),
        }
    );

    let mut view = fresh_ledger();
    assert_eq!(status_of(&view.apply(&hold)), EntryStatus::Rejected);
    assert_eq!(balances(&view), [0; 6]);

    let mut settling = fresh_ledger();
    deposit(&mut settling, "pay_A1", 5_000);
    assert_eq!(status_of(&settling.apply(&hold)), EntryStatus::Pending);
    assert_eq!(balances(&settling), [3_500, 1_500, 0, 0, -5_000, 0]);
    assert_eq!(status_of(&settling.apply(&settled)), EntryStatus::Posted);
    assert_eq!(balances(&settling), [3_500, 0, 0, 0, -3_500, 0]);
    assert!(matches!(
        settling.apply(&failed),
        Outcome::Refused(Refusal::PendingClosed { .. })
    ));

    let mut failing = fresh_ledger();
    deposit(&mut failing, "pay_A1", 5_000);
    failing.apply(&hold);
    assert_eq!(status_of(&failing.apply(&failed)), EntryStatus::Posted);
    assert_eq!(balances(&failing), [5_000, 0, 0, 0, -5_000, 0]);
}

#[test]
fn a_chargeback_takes_what_the_player_has_and_books_the_rest_as_a_loss() {
    let (payment_id, player_id) = ids();
    let dispute_id = DisputeId::parse("dp_1").unwrap();
    let dispute = DisputeRef {
        payment: PaymentRef {
            payment_id: &payment_id,
            player_id: &player_id,
        },
        dispute_id: Some(&dispute_id),
    };
    let mut view = fresh_ledger();
    deposit(&mut view, "pay_A1", 5_000);
    let bet = wallet_bet(
        &WalletCall {
            txn_id: &TxnId::parse("b1").unwrap(),
            player_id: &player_id,
            amount: eur(2_000),
            round_id: None,
        },
        &PLAYER,
    );
    view.apply(&bet);
    let requests = chargeback(
        dispute,
        eur(5_000),
        balance(&view, CASH),
        &CHARGEBACK_ACCOUNTS,
    );
    let meta = payment_meta_of(&payment_id, &player_id);
    assert_eq!(
        requests,
        [
            Request {
                txn_id: "pay_A1:dp_1:chargeback:player".into(),
                label: "chargeback".into(),
                fingerprint: "chargeback:pay_A1:dp_1:player:3000".into(),
                command: Command::Transfer {
                    debit: CASH,
                    credit: CLEARING,
                    amount_minor: 3_000,
                },
                subject: Some(CASH),
                meta: meta.clone(),
            },
            Request {
                txn_id: "pay_A1:dp_1:chargeback:loss".into(),
                label: "chargeback".into(),
                fingerprint: "chargeback:pay_A1:dp_1:loss:2000".into(),
                command: Command::Transfer {
                    debit: LOSSES,
                    credit: CLEARING,
                    amount_minor: 2_000,
                },
                subject: Some(CASH),
                meta,
            },
        ]
    );
    for request in &requests {
        assert_eq!(status_of(&view.apply(request)), EntryStatus::Posted);
    }
    assert_eq!(balances(&view), [0, 0, 2_000, 0, 0, -2_000]);

    let covered = chargeback(dispute, eur(2_999), 3_000, &CHARGEBACK_ACCOUNTS);
    assert_eq!(covered.len(), 1);
    assert!(covered[0].txn_id.ends_with(":chargeback:player"));
    let uncovered = chargeback(dispute, eur(100), 0, &CHARGEBACK_ACCOUNTS);
    assert_eq!(uncovered.len(), 1);
    assert!(uncovered[0].txn_id.ends_with(":chargeback:loss"));
    let unnamed = DisputeRef {
        dispute_id: None,
        ..dispute
    };
    let unnamed = chargeback(unnamed, eur(100), 0, &CHARGEBACK_ACCOUNTS);
    assert_eq!(unnamed[0].txn_id, "pay_A1:dispute:chargeback:loss");
}

#[test]
fn a_won_dispute_returns_each_part_where_it_came_from() {
    let (payment_id, player_id) = ids();
    let dispute = DisputeRef {
        payment: PaymentRef {
            payment_id: &payment_id,
            player_id: &player_id,
        },
        dispute_id: None,
    };
    let reversals = dispute_won(dispute);
    assert_eq!(
        reversals,
        ["player", "loss"].map(|part| Request {
            txn_id: format!("pay_A1:dispute:won:{part}"),
            label: "dispute_won".into(),
            fingerprint: format!("dispute-won:pay_A1:dispute:{part}"),
            command: Command::Reverse {
                original_txn_id: format!("pay_A1:dispute:chargeback:{part}"),
                original_label: Some("chargeback".into()),
            },
            subject: None,
            meta: payment_meta_of(&payment_id, &player_id),
        })
    );
    let mut view = fresh_ledger();
    deposit(&mut view, "pay_A1", 5_000);
    // The player had it all, so the chargeback has no loss part to reverse.
    for request in chargeback(dispute, eur(5_000), 5_000, &CHARGEBACK_ACCOUNTS) {
        view.apply(&request);
    }
    assert_eq!(balances(&view), [0, 0, 0, 0, 0, 0]);
    let statuses: Vec<_> = reversals
        .iter()
        .map(|r| status_of(&view.apply(r)))
        .collect();
    assert_eq!(
        statuses,
        [EntryStatus::Posted, EntryStatus::OriginalNotFound]
    );
    assert_eq!(balances(&view), [5_000, 0, 0, 0, -5_000, 0]);
}

#[test]
fn a_payout_is_held_then_paid_or_released_as_its_status_says() {
    let payout_id = PayoutId::parse("po_C3").unwrap();
    let player_id = PlayerId::parse("p1").unwrap();
    let meta = EntryMeta {
        player_id: Some("p1".into()),
        round_id: None,
        reference: Some("po_C3".into()),
        refusal: None,
    };
    let hold = payout_requested(&payout_id, &player_id, eur(2_000), &PLAYER, CLEARING);
    assert_eq!(
        hold,
        Request {
            txn_id: "po_C3".into(),
            label: "payout".into(),
            fingerprint: "payout:po_C3".into(),
            command: Command::Reserve {
                debit: CASH,
                hold: HOLD,
                credit: CLEARING,
                amount_minor: 2_000,
            },
            subject: Some(CASH),
            meta: meta.clone(),
        }
    );
    let paid = payout_paid(&payout_id, &player_id);
    assert_eq!(
        paid,
        Request {
            txn_id: "po_C3:paid".into(),
            label: "payout_paid".into(),
            fingerprint: "payout-paid:po_C3".into(),
            command: Command::Post {
                pending_txn_id: "po_C3".into(),
                amount_minor: None,
            },
            subject: None,
            meta: meta.clone(),
        }
    );
    let released = payout_released(&payout_id, &player_id);
    assert_eq!(
        released,
        Request {
            txn_id: "po_C3:released".into(),
            label: "payout_released".into(),
            fingerprint: "payout-released:po_C3".into(),
            command: Command::Void {
                pending_txn_id: "po_C3".into(),
            },
            subject: None,
            meta,
        }
    );
    for status in PayoutStatus::ALL {
        let expected = match status {
            PayoutStatus::Paid => Some(&paid),
            PayoutStatus::Rejected | PayoutStatus::Failed | PayoutStatus::Cancelled => {
                Some(&released)
            }
            _ => None,
        };
        assert_eq!(
            payout_settled(status, &payout_id, &player_id).as_ref(),
            expected,
            "{status}"
        );
    }

    let mut view = fresh_ledger();
    deposit(&mut view, "pay_A1", 3_000);
    assert_eq!(status_of(&view.apply(&hold)), EntryStatus::Pending);
    assert_eq!(balances(&view), [1_000, 2_000, 0, 0, -3_000, 0]);
    assert_eq!(status_of(&view.apply(&paid)), EntryStatus::Posted);
    assert_eq!(balances(&view), [1_000, 0, 0, 0, -1_000, 0]);
}

#[test]
fn wallet_calls_keep_their_txn_ids_and_fingerprints() {
    let player_id = PlayerId::parse("p1").unwrap();
    let round = RoundId::parse("r1").unwrap();
    let bet_id = TxnId::parse("b1").unwrap();
    let bet = wallet_bet(
        &WalletCall {
            txn_id: &bet_id,
            player_id: &player_id,
            amount: eur(1_000),
            round_id: Some(&round),
        },
        &PLAYER,
    );
    // The fingerprints were computed outside Rust: SHA-256 of the parts, each followed by
    // 0x1f, as the wallet service derived them before this module existed.
    assert_eq!(
        bet,
        Request {
            txn_id: "b1".into(),
            label: "debit".into(),
            fingerprint: "48a3401ec51b0db90a29daa1a3677b0eab663effb2bf6b67ba9cecf6e32d1a58".into(),
            command: Command::Transfer {
                debit: CASH,
                credit: HOUSE,
                amount_minor: 1_000,
            },
            subject: Some(CASH),
            meta: EntryMeta {
                player_id: Some("p1".into()),
                round_id: Some("r1".into()),
                reference: None,
                refusal: None,
            },
        }
    );
    let win_id = TxnId::parse("w1").unwrap();
    let win = wallet_win(
        &WalletCall {
            txn_id: &win_id,
            player_id: &player_id,
            amount: eur(250),
            round_id: Some(&round),
        },
        &PLAYER,
    );
    assert_eq!(
        win.fingerprint,
        "321b277232f129925267d4658bbfe5577c66645cacfe6820b62b293e15c7e6c3"
    );
    assert_eq!(
        (win.txn_id.as_str(), win.label.as_str(), &win.command),
        (
            "w1",
            "credit",
            &Command::Transfer {
                debit: HOUSE,
                credit: CASH,
                amount_minor: 250
            }
        )
    );
    assert_eq!(win.meta.round_id.as_deref(), Some("r1"));
    let enrolled_id = TxnId::parse("e1").unwrap();
    let enrolment = wallet_deposit_enrolled(
        &WalletCall {
            txn_id: &enrolled_id,
            player_id: &player_id,
            amount: eur(5_000),
            round_id: None,
        },
        &ExternalPaymentId::parse("dep-9").unwrap(),
        &PLAYER,
    );
    assert_eq!(
        enrolment.fingerprint,
        "1b0d96e7d52416b107febd57442b3928d902db540c3f884d6f35a7c445903c78"
    );
    assert_eq!(
        enrolment.command,
        Command::Transfer {
            debit: SUSPENSE,
            credit: CASH,
            amount_minor: 5_000
        }
    );
    assert_eq!(enrolment.meta.reference.as_deref(), Some("dep-9"));
    let rollback = wallet_rollback(&TxnId::parse("rb1").unwrap(), &bet_id);
    assert_eq!(
        rollback,
        Request {
            txn_id: "rb1".into(),
            label: "rollback".into(),
            fingerprint: "3b17812f4b6531a2e56c3bc05dc3c1081a91d6bdb5aa7ab7860df8bbb4e09721".into(),
            command: Command::Reverse {
                original_txn_id: "b1".into(),
                original_label: Some("debit".into()),
            },
            subject: None,
            meta: EntryMeta::default(),
        }
    );
}

#[test]
fn a_rollback_undoes_a_bet_and_refuses_a_win() {
    let player_id = PlayerId::parse("p1").unwrap();
    let mut view = fresh_ledger();
    deposit(&mut view, "pay_A1", 1_000);
    let call = |txn_id, amount_minor| wallet_call(txn_id, &player_id, amount_minor);
    let (b1, w1) = (TxnId::parse("b1").unwrap(), TxnId::parse("w1").unwrap());
    let too_much = wallet_bet(&call(&b1, 1_001), &PLAYER);
    assert_eq!(status_of(&view.apply(&too_much)), EntryStatus::Rejected);
    let b2 = TxnId::parse("b2").unwrap();
    view.apply(&wallet_bet(&call(&b2, 400), &PLAYER));
    view.apply(&wallet_win(&call(&w1, 100), &PLAYER));
    assert_eq!(balances(&view), [700, 0, 300, 0, -1_000, 0]);
    let Outcome::Recorded(undone) =
        view.apply(&wallet_rollback(&TxnId::parse("rb1").unwrap(), &b2))
    else {
        panic!("rollback not recorded");
    };
    assert_eq!(undone.entry_label(), Some(EntryLabel::Rollback));
    assert_eq!(undone.status, EntryStatus::Posted);
    assert_eq!(balances(&view), [1_100, 0, -100, 0, -1_000, 0]);
    assert!(matches!(
        view.apply(&wallet_rollback(&TxnId::parse("rb2").unwrap(), &w1)),
        Outcome::Refused(Refusal::NotReversible { .. })
    ));
}

/// One business event in a random history; indexes pick among a few ids so that events
/// meet (a refund settled twice, a rollback of a win, a second dispute on one payment).
#[derive(Clone, Debug)]
enum Step {
    Deposit {
        payment: u8,
        amount_minor: i64,
    },
    RefundRequested {
        refund: u8,
        payment: u8,
        amount_minor: i64,
    },
    RefundSettled {
        refund: u8,
    },
    RefundFailed {
        refund: u8,
    },
    Chargeback {
        payment: u8,
        dispute: Option<u8>,
        amount_minor: i64,
    },
    DisputeWon {
        payment: u8,
        dispute: Option<u8>,
    },
    PayoutRequested {
        payout: u8,
        amount_minor: i64,
    },
    PayoutSettled {
        payout: u8,
        status: PayoutStatus,
    },
    Bet {
        txn: u8,
        amount_minor: i64,
    },
    Win {
        txn: u8,
        amount_minor: i64,
    },
    Enrolled {
        txn: u8,
        amount_minor: i64,
    },
    Rollback {
        txn: u8,
        original: u8,
    },
    /// Applies again a request recorded earlier (picked by index modulo their count).
    Replay {
        pick: usize,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let id = 0u8..4;
    let amount = 1i64..5_000;
    let dispute = proptest::option::of(0u8..2);
    let status = proptest::sample::select(PayoutStatus::ALL.to_vec());
    prop_oneof![
        (id.clone(), amount.clone()).prop_map(|(payment, amount_minor)| Step::Deposit {
            payment,
            amount_minor
        }),
        (id.clone(), id.clone(), amount.clone()).prop_map(|(refund, payment, amount_minor)| {
            Step::RefundRequested {
                refund,
                payment,
                amount_minor,
            }
        }),
        id.clone().prop_map(|refund| Step::RefundSettled { refund }),
        id.clone().prop_map(|refund| Step::RefundFailed { refund }),
        (id.clone(), dispute.clone(), amount.clone()).prop_map(
            |(payment, dispute, amount_minor)| Step::Chargeback {
                payment,
                dispute,
                amount_minor
            }
        ),
        (id.clone(), dispute).prop_map(|(payment, dispute)| Step::DisputeWon { payment, dispute }),
        (id.clone(), amount.clone()).prop_map(|(payout, amount_minor)| Step::PayoutRequested {
            payout,
            amount_minor
        }),
        (id.clone(), status).prop_map(|(payout, status)| Step::PayoutSettled { payout, status }),
        (id.clone(), amount.clone())
            .prop_map(|(txn, amount_minor)| Step::Bet { txn, amount_minor }),
        (id.clone(), amount.clone())
            .prop_map(|(txn, amount_minor)| Step::Win { txn, amount_minor }),
        (id.clone(), amount).prop_map(|(txn, amount_minor)| Step::Enrolled { txn, amount_minor }),
        (id.clone(), id).prop_map(|(txn, original)| Step::Rollback { txn, original }),
        any::<usize>().prop_map(|pick| Step::Replay { pick }),
    ]
}

/// The requests one step makes, built by the movements under test.
fn requests_for(step: &Step, view: &LedgerView, recorded: &[Request]) -> Vec<Request> {
    let player = PlayerId::parse("p1").unwrap();
    let payment_id = |i: u8| PaymentId::parse(&format!("pay_{i}")).unwrap();
    let refund_id = |i: u8| RefundId::parse(&format!("rf_{i}")).unwrap();
    let payout_id = |i: u8| PayoutId::parse(&format!("po_{i}")).unwrap();
    let txn_id = |prefix: &str, i: u8| TxnId::parse(&format!("{prefix}{i}")).unwrap();
    // Bets, wins and enrolments share txn ids on purpose: a win under a bet's id is a
    // reuse, and a rollback of it is refused.
    match step {
        Step::Deposit {
            payment,
            amount_minor,
        } => {
            let id = payment_id(*payment);
            vec![deposit_captured(
                payment_ref(&id, &player),
                eur(*amount_minor),
                CASH,
                CLEARING,
            )]
        }
        Step::RefundRequested {
            refund,
            payment,
            amount_minor,
        } => {
            let id = payment_id(*payment);
            let amount = eur(*amount_minor);
            vec![refund_requested(
                &refund_id(*refund),
                payment_ref(&id, &player),
                amount,
                &PLAYER,
                CLEARING,
            )]
        }
        Step::RefundSettled { refund } => {
            let id = payment_id(0);
            vec![refund_settled(
                &refund_id(*refund),
                payment_ref(&id, &player),
            )]
        }
        Step::RefundFailed { refund } => {
            let id = payment_id(0);
            vec![refund_failed(
                &refund_id(*refund),
                payment_ref(&id, &player),
            )]
        }
        Step::Chargeback {
            payment,
            dispute,
            amount_minor,
        } => {
            let id = payment_id(*payment);
            let dispute_id = dispute.map(|d| DisputeId::parse(&format!("dp_{d}")).unwrap());
            let dispute = DisputeRef {
                payment: payment_ref(&id, &player),
                dispute_id: dispute_id.as_ref(),
            };
            let cash = balance(view, CASH);
            chargeback(dispute, eur(*amount_minor), cash, &CHARGEBACK_ACCOUNTS)
        }
        Step::DisputeWon { payment, dispute } => {
            let id = payment_id(*payment);
            let dispute_id = dispute.map(|d| DisputeId::parse(&format!("dp_{d}")).unwrap());
            dispute_won(DisputeRef {
                payment: payment_ref(&id, &player),
                dispute_id: dispute_id.as_ref(),
            })
        }
        Step::PayoutRequested {
            payout,
            amount_minor,
        } => {
            let amount = eur(*amount_minor);
            vec![payout_requested(
                &payout_id(*payout),
                &player,
                amount,
                &PLAYER,
                CLEARING,
            )]
        }
        Step::PayoutSettled { payout, status } => {
            payout_settled(*status, &payout_id(*payout), &player)
                .into_iter()
                .collect()
        }
        Step::Bet { txn, amount_minor } => {
            vec![wallet_bet(
                &wallet_call(&txn_id("t", *txn), &player, *amount_minor),
                &PLAYER,
            )]
        }
        Step::Win { txn, amount_minor } => {
            vec![wallet_win(
                &wallet_call(&txn_id("t", *txn), &player, *amount_minor),
                &PLAYER,
            )]
        }
        Step::Enrolled { txn, amount_minor } => {
            let external = ExternalPaymentId::parse(&format!("ext-{txn}")).unwrap();
            let txn = txn_id("e", *txn);
            let call = wallet_call(&txn, &player, *amount_minor);
            vec![wallet_deposit_enrolled(&call, &external, &PLAYER)]
        }
        Step::Rollback { txn, original } => {
            vec![wallet_rollback(
                &txn_id("rb", *txn),
                &txn_id("t", *original),
            )]
        }
        Step::Replay { pick } if !recorded.is_empty() => {
            vec![recorded[pick % recorded.len()].clone()]
        }
        Step::Replay { .. } => vec![],
    }
}

/// A movement built wrong (unknown or equal accounts, a zero amount, acting on itself)
/// shows up as one of these refusals; the others are business answers to random histories.
fn refusal_is_a_business_answer(refusal: &Refusal) -> bool {
    matches!(
        refusal,
        Refusal::PendingNotFound(_) | Refusal::PendingClosed { .. } | Refusal::NotReversible { .. }
    )
}

/// Only money the player spends or withdraws can lack funds; a deposit, a win, a
/// chargeback or a settlement that is rejected was built wrong.
fn may_be_rejected(request: &Request) -> bool {
    matches!(request.command, Command::Reserve { .. })
        || EntryLabel::parse(&request.label) == Some(EntryLabel::Debit)
}

/// Checks the journal the view produced: every transfer is one positive amount between two
/// accounts, balances sum to zero, each balance is what its transfers add up to, and the
/// hold is exactly what pending reservations hold.
fn assert_journal_consistent(view: LedgerView) {
    let effects = view.into_effects();
    let mut from_transfers: HashMap<AccountId, i64> = HashMap::new();
    for transfer in &effects.transfers {
        assert!(transfer.amount_minor > 0, "{transfer:?}");
        assert_ne!(transfer.debit, transfer.credit, "{transfer:?}");
        *from_transfers.entry(transfer.debit).or_default() -= transfer.amount_minor;
        *from_transfers.entry(transfer.credit).or_default() += transfer.amount_minor;
    }
    let mut total = 0;
    for account in &effects.balances {
        let expected = from_transfers.get(&account.id).copied().unwrap_or(0);
        assert_eq!(account.balance_minor, expected, "account {}", account.id);
        total += account.balance_minor;
    }
    assert_eq!(total, 0, "money was created or lost");
    let pending_minor: i64 = effects
        .new_entries
        .iter()
        .filter(|e| e.status == EntryStatus::Pending)
        .map(|e| e.amount_minor)
        .sum();
    let hold = from_transfers.get(&HOLD).copied().unwrap_or(0);
    assert_eq!(
        hold, pending_minor,
        "the hold is not what reservations hold"
    );
    for entry in &effects.new_entries {
        if entry.status != EntryStatus::Tombstone {
            assert!(entry.entry_label().is_some(), "{entry:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever happens in whatever order, player cash and hold never go below zero, a
    /// replay moves nothing, and the journal stays balanced.
    #[test]
    fn random_sequences_of_movements_keep_the_ledger_sound(
        steps in proptest::collection::vec(step_strategy(), 1..60),
    ) {
        let mut view = fresh_ledger();
        let mut recorded: Vec<Request> = Vec::new();
        for step in &steps {
            let replay = matches!(step, Step::Replay { .. });
            for request in requests_for(step, &view, &recorded) {
                let before = balances(&view);
                let outcome = view.apply(&request);
                match &outcome {
                    Outcome::Recorded(entry) => {
                        prop_assert!(!replay, "a replay was recorded anew: {:?}", outcome);
                        if entry.status == EntryStatus::Rejected {
                            prop_assert!(may_be_rejected(&request), "{:?}", request);
                        }
                        recorded.push(request);
                    }
                    Outcome::Replayed(_) | Outcome::TxnIdReused(_) | Outcome::Cancelled(_) => {
                        prop_assert_eq!(&balances(&view), &before);
                    }
                    Outcome::Refused(refusal) => {
                        prop_assert!(refusal_is_a_business_answer(refusal), "{:?}", refusal);
                        prop_assert_eq!(&balances(&view), &before);
                    }
                }
                if replay {
                    prop_assert!(matches!(outcome, Outcome::Replayed(_)), "{:?}", outcome);
                }
                prop_assert!(balance(&view, CASH) >= 0);
                prop_assert!(balance(&view, HOLD) >= 0);
            }
        }
        assert_journal_consistent(view);
    }
}

#[test]
fn a_movement_keeps_its_clearing_shard_and_movements_spread_over_all_shards() {
    // Stored data: pinned.
    assert_eq!(clearing_owner("sandbox", "pay_1"), "sandbox#13");
    assert_eq!(clearing_owner("sandbox", "po_1"), "sandbox#2");
    let shards: std::collections::BTreeSet<String> = (0..1_000)
        .map(|n| clearing_owner("psp", &format!("pay_{n}")))
        .collect();
    let expected: std::collections::BTreeSet<String> =
        (0..CLEARING_SHARDS).map(|n| format!("psp#{n}")).collect();
    assert_eq!(shards, expected);
}
