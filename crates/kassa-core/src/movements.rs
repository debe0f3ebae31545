//! Where money moves: the ledger requests of every money movement Kassa makes.
//!
//! Each function here is one business event — a deposit captured, a refund held, settled or
//! failed, a chargeback and its reversal, a payout held, paid or released, a wallet bet, win,
//! enrolled deposit or rollback — and returns the [`Request`]s that post it: which accounts,
//! which amounts, under which txn id, label and fingerprint. Services load the accounts,
//! call one function and hand its requests to the store; they never assemble requests.
//!
//! The txn ids, fingerprints and labels are part of stored data: a txn id is the
//! idempotency key of an entry (a second `captured` webhook finds `pay_…:capture` already
//! posted) and a fingerprint tells a replay from a reuse of that id, so changing how either
//! is derived would post the same money twice or refuse honest retries (ADR 0028). The unit
//! tests pin every one of them.

use sha2::{Digest, Sha256};

use crate::ids::{
    DisputeId, ExternalPaymentId, PaymentId, PayoutId, PlayerId, RefundId, RoundId, TxnId,
};
use crate::ledger::{AccountId, Command, Entry, EntryMeta, Request};
use crate::money::Money;
use crate::payout::PayoutStatus;

#[cfg(test)]
mod tests;

stored_names! {
    /// The business name of a journal entry, stored as its `label`.
    EntryLabel {
        /// A captured deposit credited to the player.
        Deposit => "deposit",
        /// A refund: its hold, and the post sending the held money to the provider.
        Refund => "refund",
        /// A refund the provider refused: its hold returned to the player.
        RefundFailed => "refund_failed",
        /// Money a chargeback took back, from the player or as the operator's loss.
        Chargeback => "chargeback",
        /// A won dispute reversing a chargeback.
        DisputeWon => "dispute_won",
        /// A payout's hold.
        Payout => "payout",
        /// A paid payout: its hold sent to the provider.
        PayoutPaid => "payout_paid",
        /// A rejected, failed or cancelled payout: its hold returned to the player.
        PayoutReleased => "payout_released",
        /// A wallet bet.
        Debit => "debit",
        /// A wallet win or enrolled deposit.
        Credit => "credit",
        /// A wallet rollback of a bet.
        Rollback => "rollback",
    }
}

impl Entry {
    /// The entry's label as a value, `None` for a label no movement writes (a tombstone
    /// of a reversal that named no original label).
    pub fn entry_label(&self) -> Option<EntryLabel> {
        EntryLabel::parse(&self.label)
    }
}

/// A player's ledger accounts, in the wallet's currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerAccounts {
    /// Spendable money.
    pub cash: AccountId,
    /// Money held for refunds and payouts in flight.
    pub hold: AccountId,
    /// The operator's side of bets and wins.
    pub house: AccountId,
    /// Where enrolled deposits come from until reconciled.
    pub suspense: AccountId,
}

/// The payment a deposit, refund or chargeback belongs to, and its player.
#[derive(Clone, Copy, Debug)]
pub struct PaymentRef<'a> {
    /// The payment; entries carry it as their reference.
    pub payment_id: &'a PaymentId,
    /// The player whose history the entries appear in.
    pub player_id: &'a PlayerId,
}

/// A dispute on a payment; its chargeback and reversal entries share its key.
#[derive(Clone, Copy, Debug)]
pub struct DisputeRef<'a> {
    /// The disputed payment.
    pub payment: PaymentRef<'a>,
    /// The provider's dispute id; a provider that sends none has one dispute per payment.
    pub dispute_id: Option<&'a DisputeId>,
}

/// The accounts a chargeback touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargebackAccounts {
    /// The player's cash, which pays as far as it goes.
    pub player_cash: AccountId,
    /// The operator's chargeback losses, which pay the rest.
    pub losses: AccountId,
    /// The provider's clearing account, which the money goes back to.
    pub clearing: AccountId,
}

/// A wallet debit or credit as the caller sent it.
#[derive(Clone, Copy, Debug)]
pub struct WalletCall<'a> {
    /// The caller's transaction id: the entry's txn id and idempotency key.
    pub txn_id: &'a TxnId,
    /// The player.
    pub player_id: &'a PlayerId,
    /// Positive amount in the wallet's currency.
    pub amount: Money,
    /// The game round, tying a bet to its win.
    pub round_id: Option<&'a RoundId>,
}

/// How many ledger accounts one provider account's clearing is spread over (ADR 42).
/// Part of stored data: changing it moves later postings of a payment to another account
/// than its earlier ones (harmless to the totals, confusing to a reader).
pub const CLEARING_SHARDS: u64 = 16;

/// The owner name of the clearing account that the movements of one payment (its
/// capture, refunds, chargebacks) or one payout use: one of [`CLEARING_SHARDS`] accounts
/// of the provider account, chosen by the payment's or payout's id, `"{provider}#{shard}"`.
///
/// Every deposit capture debits a clearing account and, on PostgreSQL, holds its row lock
/// until it commits: with one account per provider, concurrent captures queued behind that
/// one row (perf-log note 35). A provider's clearing balance is the sum over its shards.
/// The shard comes from SHA-256, not `std`'s hasher, whose output may change between Rust
/// releases.
pub fn clearing_owner(provider: &str, movement_id: &str) -> String {
    let digest = Sha256::digest(movement_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{provider}#{}", u64::from_be_bytes(first) % CLEARING_SHARDS)
}

/// The deposit credited to the player once its provider captured it: provider clearing to
/// player cash. The txn id is the payment's, so a second `captured` replays.
pub fn deposit_captured(
    payment: PaymentRef<'_>,
    amount: Money,
    player_cash: AccountId,
    clearing: AccountId,
) -> Request {
    Request {
        txn_id: format!("{}:capture", payment.payment_id),
        label: EntryLabel::Deposit.as_str().into(),
        fingerprint: format!("deposit:{}:{}", payment.payment_id, amount.amount_minor),
        command: Command::Transfer {
            debit: clearing,
            credit: player_cash,
            amount_minor: amount.amount_minor,
        },
        subject: Some(player_cash),
        meta: payment_meta(payment),
    }
}

/// A refund's hold: the amount leaves the player's cash at once, reserved for the
/// provider's clearing account until the provider answers. Rejected (nothing moves) when
/// the cash does not cover it.
pub fn refund_requested(
    refund_id: &RefundId,
    payment: PaymentRef<'_>,
    amount: Money,
    player: &PlayerAccounts,
    clearing: AccountId,
) -> Request {
    provider_hold(
        EntryLabel::Refund,
        refund_id.as_str(),
        amount,
        player,
        clearing,
        payment_meta(payment),
    )
}

/// The provider refunded: the refund's hold goes to its clearing account.
pub fn refund_settled(refund_id: &RefundId, payment: PaymentRef<'_>) -> Request {
    Request {
        txn_id: format!("{refund_id}:post"),
        label: EntryLabel::Refund.as_str().into(),
        fingerprint: format!("refund-post:{refund_id}"),
        command: Command::Post {
            pending_txn_id: refund_id.to_string(),
            amount_minor: None,
        },
        subject: None,
        meta: payment_meta(payment),
    }
}

/// The provider refused the refund: its hold returns to the player's cash.
pub fn refund_failed(refund_id: &RefundId, payment: PaymentRef<'_>) -> Request {
    Request {
        txn_id: format!("{refund_id}:void"),
        label: EntryLabel::RefundFailed.as_str().into(),
        fingerprint: format!("refund-void:{refund_id}"),
        command: Command::Void {
            pending_txn_id: refund_id.to_string(),
        },
        subject: None,
        meta: payment_meta(payment),
    }
}

/// Which part of a chargeback an entry carries; part of its txn id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChargebackPart {
    /// Taken from the player's cash.
    Player,
    /// Booked as the operator's loss.
    Loss,
}

impl ChargebackPart {
    const BOTH: [ChargebackPart; 2] = [ChargebackPart::Player, ChargebackPart::Loss];

    fn as_str(self) -> &'static str {
        match self {
            ChargebackPart::Player => "player",
            ChargebackPart::Loss => "loss",
        }
    }
}

/// A chargeback took `amount` back to the provider: from the player's cash as far as
/// `player_cash_balance_minor` (read under lock) covers it, the rest from the operator's
/// chargeback losses. One request per non-empty part, at most two.
pub fn chargeback(
    dispute: DisputeRef<'_>,
    amount: Money,
    player_cash_balance_minor: i64,
    accounts: &ChargebackAccounts,
) -> Vec<Request> {
    let covered_minor = player_cash_balance_minor.clamp(0, amount.amount_minor.max(0));
    let shortfall_minor = amount.amount_minor - covered_minor;
    let key = dispute_key(dispute);
    ChargebackPart::BOTH
        .into_iter()
        .zip([
            (accounts.player_cash, covered_minor),
            (accounts.losses, shortfall_minor),
        ])
        .filter(|(_, (_, amount_minor))| *amount_minor > 0)
        .map(|(part, (debit, amount_minor))| Request {
            txn_id: chargeback_txn_id(&key, part),
            label: EntryLabel::Chargeback.as_str().into(),
            fingerprint: format!("chargeback:{key}:{}:{amount_minor}", part.as_str()),
            command: Command::Transfer {
                debit,
                credit: accounts.clearing,
                amount_minor,
            },
            subject: Some(accounts.player_cash),
            meta: payment_meta(dispute.payment),
        })
        .collect()
}

/// A dispute won: reverses both parts of its chargeback, each returning to where it was
/// taken from. A part that was never posted is answered `original_not_found` and moves
/// nothing.
pub fn dispute_won(dispute: DisputeRef<'_>) -> Vec<Request> {
    let key = dispute_key(dispute);
    ChargebackPart::BOTH
        .into_iter()
        .map(|part| Request {
            txn_id: format!("{key}:won:{}", part.as_str()),
            label: EntryLabel::DisputeWon.as_str().into(),
            fingerprint: format!("dispute-won:{key}:{}", part.as_str()),
            command: Command::Reverse {
                original_txn_id: chargeback_txn_id(&key, part),
                original_label: Some(EntryLabel::Chargeback.as_str().into()),
            },
            subject: None,
            meta: payment_meta(dispute.payment),
        })
        .collect()
}

/// A payout's hold: the amount leaves the player's cash at once, reserved for the
/// provider's clearing account. Rejected (nothing moves) when the cash does not cover it.
pub fn payout_requested(
    payout_id: &PayoutId,
    player_id: &PlayerId,
    amount: Money,
    player: &PlayerAccounts,
    clearing: AccountId,
) -> Request {
    provider_hold(
        EntryLabel::Payout,
        payout_id.as_str(),
        amount,
        player,
        clearing,
        payout_meta(payout_id, player_id),
    )
}

/// The payout was paid: its hold goes to the provider's clearing account.
pub fn payout_paid(payout_id: &PayoutId, player_id: &PlayerId) -> Request {
    Request {
        txn_id: format!("{payout_id}:paid"),
        label: EntryLabel::PayoutPaid.as_str().into(),
        fingerprint: format!("payout-paid:{payout_id}"),
        command: Command::Post {
            pending_txn_id: payout_id.to_string(),
            amount_minor: None,
        },
        subject: None,
        meta: payout_meta(payout_id, player_id),
    }
}

/// The payout was rejected, failed or cancelled: its hold returns to the player's cash.
pub fn payout_released(payout_id: &PayoutId, player_id: &PlayerId) -> Request {
    Request {
        txn_id: format!("{payout_id}:released"),
        label: EntryLabel::PayoutReleased.as_str().into(),
        fingerprint: format!("payout-released:{payout_id}"),
        command: Command::Void {
            pending_txn_id: payout_id.to_string(),
        },
        subject: None,
        meta: payout_meta(payout_id, player_id),
    }
}

/// What reaching `status` does to the payout's hold: posts it ([`payout_paid`]), releases
/// it ([`payout_released`]), or nothing (`None`), as the payout state machine says.
pub fn payout_settled(
    status: PayoutStatus,
    payout_id: &PayoutId,
    player_id: &PlayerId,
) -> Option<Request> {
    if status.posts_hold() {
        Some(payout_paid(payout_id, player_id))
    } else if status.releases_hold() {
        Some(payout_released(payout_id, player_id))
    } else {
        None
    }
}

/// A bet: player cash to the house. Rejected (nothing moves) when the cash does not cover
/// it.
pub fn wallet_bet(call: &WalletCall<'_>, player: &PlayerAccounts) -> Request {
    let round = call.round_id.map_or("", RoundId::as_str);
    Request {
        fingerprint: wallet_fingerprint(&[
            EntryLabel::Debit.as_str(),
            call.player_id.as_str(),
            &call.amount.amount_minor.to_string(),
            call.amount.currency.code(),
            round,
        ]),
        txn_id: call.txn_id.to_string(),
        label: EntryLabel::Debit.as_str().into(),
        command: Command::Transfer {
            debit: player.cash,
            credit: player.house,
            amount_minor: call.amount.amount_minor,
        },
        subject: Some(player.cash),
        meta: wallet_meta(call, None),
    }
}

/// A win: the house to player cash.
pub fn wallet_win(call: &WalletCall<'_>, player: &PlayerAccounts) -> Request {
    wallet_credit(call, None, player.house, player)
}

/// A deposit made outside Kassa's providers, enrolled by a wallet credit: suspense to
/// player cash, until reconciliation matches it.
pub fn wallet_deposit_enrolled(
    call: &WalletCall<'_>,
    payment_id: &ExternalPaymentId,
    player: &PlayerAccounts,
) -> Request {
    wallet_credit(call, Some(payment_id), player.suspense, player)
}

/// A rollback of the bet `original_txn_id`. A bet never seen is remembered, so that it is
/// refused should it arrive later.
pub fn wallet_rollback(txn_id: &TxnId, original_txn_id: &TxnId) -> Request {
    Request {
        fingerprint: wallet_fingerprint(&[EntryLabel::Rollback.as_str(), original_txn_id.as_str()]),
        txn_id: txn_id.to_string(),
        label: EntryLabel::Rollback.as_str().into(),
        command: Command::Reverse {
            original_txn_id: original_txn_id.to_string(),
            original_label: Some(EntryLabel::Debit.as_str().into()),
        },
        subject: None,
        meta: EntryMeta::default(),
    }
}

/// Cash to hold, reserved for the provider's clearing account; the hold's txn id is the
/// refund's or payout's id, which the provider's answer later posts or voids.
fn provider_hold(
    label: EntryLabel,
    txn_id: &str,
    amount: Money,
    player: &PlayerAccounts,
    clearing: AccountId,
    meta: EntryMeta,
) -> Request {
    Request {
        txn_id: txn_id.to_string(),
        label: label.as_str().into(),
        fingerprint: format!("{label}:{txn_id}"),
        command: Command::Reserve {
            debit: player.cash,
            hold: player.hold,
            credit: clearing,
            amount_minor: amount.amount_minor,
        },
        subject: Some(player.cash),
        meta,
    }
}

fn wallet_credit(
    call: &WalletCall<'_>,
    payment_id: Option<&ExternalPaymentId>,
    source: AccountId,
    player: &PlayerAccounts,
) -> Request {
    Request {
        fingerprint: wallet_fingerprint(&[
            EntryLabel::Credit.as_str(),
            call.player_id.as_str(),
            &call.amount.amount_minor.to_string(),
            call.amount.currency.code(),
            call.round_id.map_or("", RoundId::as_str),
            payment_id.map_or("", ExternalPaymentId::as_str),
        ]),
        txn_id: call.txn_id.to_string(),
        label: EntryLabel::Credit.as_str().into(),
        command: Command::Transfer {
            debit: source,
            credit: player.cash,
            amount_minor: call.amount.amount_minor,
        },
        subject: Some(player.cash),
        meta: wallet_meta(call, payment_id),
    }
}

/// SHA-256 over the parts, each followed by a unit separator (0x1f) so that no two lists
/// of parts hash alike; hex.
fn wallet_fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    hex::encode(hasher.finalize())
}

/// `pay_…:<provider's dispute id>`, or `pay_…:dispute` when the provider sent none.
fn dispute_key(dispute: DisputeRef<'_>) -> String {
    let dispute_id = dispute.dispute_id.map_or("dispute", DisputeId::as_str);
    format!("{}:{dispute_id}", dispute.payment.payment_id)
}

fn chargeback_txn_id(dispute_key: &str, part: ChargebackPart) -> String {
    format!("{dispute_key}:chargeback:{}", part.as_str())
}

fn payment_meta(payment: PaymentRef<'_>) -> EntryMeta {
    EntryMeta {
        player_id: Some(payment.player_id.to_string()),
        round_id: None,
        reference: Some(payment.payment_id.to_string()),
        refusal: None,
    }
}

fn payout_meta(payout_id: &PayoutId, player_id: &PlayerId) -> EntryMeta {
    EntryMeta {
        player_id: Some(player_id.to_string()),
        round_id: None,
        reference: Some(payout_id.to_string()),
        refusal: None,
    }
}

fn wallet_meta(call: &WalletCall<'_>, payment_id: Option<&ExternalPaymentId>) -> EntryMeta {
    EntryMeta {
        player_id: Some(call.player_id.to_string()),
        round_id: call.round_id.map(ToString::to_string),
        reference: payment_id.map(ToString::to_string),
        refusal: None,
    }
}
