//! The seamless wallet a game aggregator calls on every spin: debit (bet), credit (win or
//! enrolled deposit) and rollback, keyed by the caller's `txn_id`.
//!
//! Calls go to the store's wallet writer ([`kassa_store::wallet_writer`]), which commits
//! whatever has queued up in one database transaction (group commit): a burst of N calls
//! costs one commit, not N, and each caller is answered only after its batch is durable.
//! This service builds the ledger requests, submits them and maps the outcomes.

use kassa_core::ids::{ExternalPaymentId, MerchantId, PaymentId, PlayerId, RoundId, TxnId};
use kassa_core::ledger::{Entry, EntryStatus, Outcome, Refusal, Request};
use kassa_core::movements::{self, EntryLabel};
use kassa_core::play_limits::PlayLimitExceeded;
use kassa_core::{Currency, Money};
use kassa_store::wallet_writer::{
    ClaimedKey, RenderAnswer, SubmitError, WalletCall, WalletQueue, WalletQueueOptions,
};
use kassa_store::{Store, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::WalletConfig;
use crate::idempotency::IdempotencyClaim;
use crate::service::players::{PlayerDirectory, PlayerError, WalletAccounts};
use crate::views::Answer;

/// Why a wallet call did not move money as asked.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The player is unknown or holds another currency.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// The writer's queue is full or closed; safe to retry.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The `txn_id` was used for a different call.
    #[error("this txn_id was already used for a different call")]
    TxnIdReused,
    /// The `txn_id` was rolled back before it arrived.
    #[error("this txn_id was rolled back before it arrived")]
    TxnCancelled { rollback_txn_id: Option<String> },
    /// The balance does not cover a debit.
    #[error("the player's balance does not cover this amount")]
    InsufficientFunds { balance: String, txn_id: String },
    /// A bet would break the player's wager, loss or session-time limit; nothing moved.
    #[error(transparent)]
    LimitExceeded(PlayRefused),
    /// A rollback of a debit never seen (remembered, to refuse it later).
    #[error("no debit {original_txn_id:?} to roll back")]
    OriginalNotFound { original_txn_id: Option<String> },
    /// A credit names a deposit this merchant does not hold for this player.
    #[error("no payment {payment_id:?} of this player")]
    PaymentNotFound { payment_id: String },
    /// The ledger refused the request itself.
    #[error("{0}")]
    Refused(Refusal),
    /// The ledger answered with a status a wallet call never has.
    #[error("unexpected wallet entry status {status} for {txn_id}")]
    UnexpectedEntry { status: EntryStatus, txn_id: String },
    /// The database failed; the call's batch was not committed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A bet refused by a play limit, in the wallet's currency.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{exceeded}")]
pub struct PlayRefused {
    /// The limit that refused, as the writer recorded it.
    pub exceeded: PlayLimitExceeded,
    /// The wallet's currency, for the amounts.
    pub currency: Currency,
    /// The bet's txn id.
    pub txn_id: String,
}

/// What a successful wallet call answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct WalletReceipt {
    /// The caller's transaction id.
    pub txn_id: String,
    /// `posted` (money moved), `rolled_back`, or `no_effect` (a rollback with nothing to undo).
    #[schema(example = "posted")]
    pub status: String,
    /// The player's available balance right after this call, as first answered.
    #[schema(example = "90.00")]
    pub balance: String,
    /// Set when this answer repeats the first one for the same `txn_id`.
    #[serde(skip)]
    pub replayed: bool,
}

/// A debit or credit as the service takes it, already parsed.
#[derive(Clone, Debug)]
pub struct WalletMove {
    /// Caller's id for the call; its idempotency key.
    pub txn_id: TxnId,
    /// The player.
    pub player_id: PlayerId,
    /// Positive amount; its currency must be the wallet's.
    pub amount: Money,
    /// Game round tying a bet to its win.
    pub round_id: Option<RoundId>,
    /// Deposit being enrolled (credits only).
    pub payment_id: Option<ExternalPaymentId>,
}

impl WalletMove {
    /// The call as the money movements take it.
    fn as_call(&self) -> movements::WalletCall<'_> {
        movements::WalletCall {
            txn_id: &self.txn_id,
            player_id: &self.player_id,
            amount: self.amount,
            round_id: self.round_id.as_ref(),
        }
    }
}

/// Handle on the wallet writer; cheap to clone.
#[derive(Clone)]
pub struct WalletService {
    writer: WalletQueue,
    players: PlayerDirectory,
    store: Store,
}

impl WalletService {
    /// Starts the writer.
    pub fn start(store: Store, players: PlayerDirectory, config: &WalletConfig) -> WalletService {
        let writer = WalletQueue::start(
            store.clone(),
            &WalletQueueOptions {
                batch_size_max: config.batch_size_max,
                queue_len_max: config.queue_len_max,
                writer_nice: config.writer_nice,
                session_break_ms: config.play_session_break_ms(),
            },
        );
        WalletService {
            writer,
            players,
            store,
        }
    }

    /// A bet: moves money from the player to the house, or answers 402.
    pub async fn debit(
        &self,
        merchant_id: &MerchantId,
        call: WalletMove,
        claim: Option<IdempotencyClaim>,
    ) -> Result<WalletReceipt, WalletError> {
        let wallet = self.wallet_for(merchant_id, &call).await?;
        // Self-excluded and blocked players place no bets; their wins of rounds already
        // open are still paid (ADR 31).
        self.players
            .check_may_play(merchant_id, &call.player_id)
            .await?;
        let request = movements::wallet_bet(&call.as_call(), &wallet.ledger_accounts());
        self.submit(merchant_id, request, claim).await
    }

    /// A win (from the house) or an enrolled deposit (from suspense, when `payment_id` is
    /// given).
    pub async fn credit(
        &self,
        merchant_id: &MerchantId,
        call: WalletMove,
        claim: Option<IdempotencyClaim>,
    ) -> Result<WalletReceipt, WalletError> {
        let wallet = self.wallet_for(merchant_id, &call).await?;
        if let Some(payment_id) = &call.payment_id {
            self.check_payment(merchant_id, &call.player_id, payment_id)
                .await?;
        }
        let accounts = wallet.ledger_accounts();
        let request = match &call.payment_id {
            Some(payment_id) => {
                movements::wallet_deposit_enrolled(&call.as_call(), payment_id, &accounts)
            }
            None => movements::wallet_win(&call.as_call(), &accounts),
        };
        self.submit(merchant_id, request, claim).await
    }

    /// Undoes a debit. A debit never seen is answered 404 and remembered, so that it is
    /// refused should it arrive later.
    pub async fn rollback(
        &self,
        merchant_id: &MerchantId,
        txn_id: &TxnId,
        original_txn_id: &TxnId,
        claim: Option<IdempotencyClaim>,
    ) -> Result<WalletReceipt, WalletError> {
        let request = movements::wallet_rollback(txn_id, original_txn_id);
        self.submit(merchant_id, request, claim).await
    }

    /// A credit may enrol only a deposit of this merchant for this player: the entry's
    /// reference must not dangle.
    async fn check_payment(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        payment_id: &ExternalPaymentId,
    ) -> Result<(), WalletError> {
        // A deposit Kassa holds has a payment id; anything else names none of ours.
        let found = match PaymentId::parse(payment_id.as_str()) {
            Ok(payment_id) => self.store.get_payment(merchant_id, &payment_id).await?,
            Err(_) => None,
        };
        match found {
            Some(payment) if &payment.player_id == player_id => Ok(()),
            _ => Err(WalletError::PaymentNotFound {
                payment_id: payment_id.to_string(),
            }),
        }
    }

    async fn wallet_for(
        &self,
        merchant_id: &MerchantId,
        call: &WalletMove,
    ) -> Result<WalletAccounts, WalletError> {
        let wallet = self.players.wallet(merchant_id, &call.player_id).await?;
        PlayerError::check_currency(&call.player_id, wallet.currency, call.amount.currency)?;
        Ok(wallet)
    }

    async fn submit(
        &self,
        merchant_id: &MerchantId,
        request: Request,
        claim: Option<IdempotencyClaim>,
    ) -> Result<WalletReceipt, WalletError> {
        // The writer renders inside the batch's transaction, on its own thread: the error
        // bodies it stores carry this request's trace id, as the answer sent now does.
        let trace_id = crate::trace::current();
        let render: RenderAnswer = Box::new(move |outcome| {
            let answer = match receipt(outcome) {
                Ok(receipt) => Answer::of(200, &receipt),
                Err(error) => Answer::error(&error, &trace_id),
            };
            (answer.status, answer.body)
        });
        let call = WalletCall {
            merchant_id: merchant_id.to_string(),
            request,
            claimed_key: claim.as_ref().map(|claim| ClaimedKey {
                merchant_id: claim.merchant_id.clone(),
                key: claim.key.clone(),
                render,
            }),
        };
        let outcome = self
            .writer
            .submit(call)
            .await
            .map_err(|error| match error {
                SubmitError::Full => {
                    WalletError::Unavailable("the wallet is at capacity; retry shortly")
                }
                SubmitError::Stopped => WalletError::Unavailable("the wallet is shutting down"),
                SubmitError::Store(error) => WalletError::Store(error),
            })?;
        // The batch committed, and the claimed key's answer with it.
        if let Some(claim) = &claim {
            claim.mark_committed();
        }
        let answer = receipt(&outcome);
        if let (Outcome::Recorded(_), Err(WalletError::LimitExceeded(refused))) =
            (&outcome, &answer)
        {
            crate::metrics::record_limit_refusal(refused.exceeded.kind);
        }
        answer
    }
}

/// The answer a ledger outcome gives a wallet caller. A replay answers what the first call
/// answered, whatever happened to the entry since (a debit later rolled back still answers
/// `posted` with the balance it had).
pub fn receipt(outcome: &Outcome) -> Result<WalletReceipt, WalletError> {
    let (entry, replayed) = match outcome {
        Outcome::Recorded(entry) => (entry, false),
        Outcome::Replayed(entry) => (entry, true),
        Outcome::TxnIdReused(_) => return Err(WalletError::TxnIdReused),
        Outcome::Cancelled(entry) => {
            return Err(WalletError::TxnCancelled {
                rollback_txn_id: entry.ref_txn_id.clone(),
            })
        }
        Outcome::Refused(refusal) => return Err(WalletError::Refused(refusal.clone())),
    };
    let balance = |entry: &Entry| match (entry.currency, entry.subject_balance_after_minor) {
        (Some(currency), Some(balance)) => currency.format_minor(balance),
        _ => String::new(),
    };
    let status = match entry.status {
        EntryStatus::Posted | EntryStatus::Reversed
            if entry.entry_label() == Some(EntryLabel::Rollback) =>
        {
            "rolled_back"
        }
        EntryStatus::Posted | EntryStatus::Reversed => "posted",
        EntryStatus::NoEffect => "no_effect",
        EntryStatus::Rejected => {
            return Err(WalletError::InsufficientFunds {
                balance: balance(entry),
                txn_id: entry.txn_id.clone(),
            })
        }
        EntryStatus::LimitRefused => return Err(limit_refused(entry)),
        EntryStatus::OriginalNotFound => {
            return Err(WalletError::OriginalNotFound {
                original_txn_id: entry.ref_txn_id.clone(),
            })
        }
        other => {
            return Err(WalletError::UnexpectedEntry {
                status: other,
                txn_id: entry.txn_id.clone(),
            })
        }
    };
    Ok(WalletReceipt {
        txn_id: entry.txn_id.clone(),
        status: status.into(),
        balance: balance(entry),
        replayed,
    })
}

/// The refusal a bet's `limit_refused` entry recorded, answered again on a replay.
fn limit_refused(entry: &Entry) -> WalletError {
    let exceeded = entry
        .meta
        .refusal
        .as_deref()
        .and_then(PlayLimitExceeded::decode);
    match (exceeded, entry.currency) {
        (Some(exceeded), Some(currency)) => WalletError::LimitExceeded(PlayRefused {
            exceeded,
            currency,
            txn_id: entry.txn_id.clone(),
        }),
        _ => WalletError::UnexpectedEntry {
            status: entry.status,
            txn_id: entry.txn_id.clone(),
        },
    }
}
