//! Use cases behind the API. Each one that moves money runs in one database transaction.

pub mod acquirer;
pub mod aml;
pub mod cascade;
pub mod exclusions;
pub mod inbound_log;
pub mod inbound_sources;
pub mod kyc;
pub mod limits;
pub mod payments;
pub mod payouts;
pub mod players;
pub mod provider_events;
pub mod refreshed;
pub mod registers;
pub mod risk;
pub mod routing;
pub mod success_rate;
pub mod threeds;
pub mod vault;
pub mod wallet;
pub mod webhook_endpoints;
pub mod webhook_signature;
pub mod webhook_urls;

use kassa_connectors::ProviderError;

use kassa_core::ids::{MerchantId, PaymentId, PayoutId, PlayerId, RefundId};
use kassa_core::ledger::{AccountKind, EntryStatus, Outcome};
use kassa_core::movements::{self, PaymentRef};
use kassa_core::Money;
use kassa_store::{Store, StoreError, Tx};

use crate::service::players::WalletAccounts;

/// The stable reason code stored when a provider call failed.
pub(crate) fn provider_failure_code(error: &ProviderError) -> String {
    match error {
        ProviderError::Timeout => "provider_timeout".into(),
        ProviderError::Unavailable(_) => "provider_unavailable".into(),
        ProviderError::Rejected { code, .. } => format!("provider_rejected:{code}"),
        ProviderError::Protocol(_) => "provider_protocol_error".into(),
        ProviderError::Unsupported(_) => "provider_unsupported".into(),
    }
}

/// A ledger outcome a flow did not expect: the books and the flow disagree, which only a
/// bug explains, so the transaction is rolled back and the caller gets a 500.
pub(crate) fn unexpected_ledger(outcome: &Outcome) -> StoreError {
    StoreError::Corrupt(format!(
        "unexpected ledger outcome in a payment or payout flow: {outcome:?}"
    ))
}

/// What a provider hold is for: the refund or payout whose id is the hold's txn id, which
/// the provider's answer later posts or voids.
pub(crate) enum HoldFor<'a> {
    /// A refund of a payment.
    Refund {
        refund_id: &'a RefundId,
        payment_id: &'a PaymentId,
    },
    /// A payout.
    Payout(&'a PayoutId),
}

/// Money leaving a player's wallet for a provider: a refund or a payout.
pub(crate) struct ProviderHold<'a> {
    pub merchant_id: &'a MerchantId,
    /// The provider the money goes to; its clearing account is the hold's destination.
    pub provider: &'a str,
    pub wallet: &'a WalletAccounts,
    pub hold_for: HoldFor<'a>,
    pub player_id: &'a PlayerId,
    pub amount: Money,
}

impl ProviderHold<'_> {
    /// Inside `tx`, moves the amount from the player's cash to their hold, reserved for the
    /// provider's clearing account. `Ok(Err(available_minor))`: the cash does not cover it,
    /// and nothing moved.
    pub(crate) async fn apply(
        &self,
        store: &Store,
        tx: &mut Tx,
    ) -> Result<Result<(), i64>, StoreError> {
        // A refund uses its payment's clearing shard, a payout its own.
        let movement_id = match self.hold_for {
            HoldFor::Refund { payment_id, .. } => payment_id.as_str(),
            HoldFor::Payout(payout_id) => payout_id.as_str(),
        };
        let clearing = store
            .ledger_account(
                tx,
                self.merchant_id.as_str(),
                AccountKind::ProviderClearing,
                &movements::clearing_owner(self.provider, movement_id),
                self.amount.currency,
            )
            .await?;
        let accounts = self.wallet.ledger_accounts();
        let hold = match self.hold_for {
            HoldFor::Refund {
                refund_id,
                payment_id,
            } => movements::refund_requested(
                refund_id,
                PaymentRef {
                    payment_id,
                    player_id: self.player_id,
                },
                self.amount,
                &accounts,
                clearing,
            ),
            HoldFor::Payout(payout_id) => movements::payout_requested(
                payout_id,
                self.player_id,
                self.amount,
                &accounts,
                clearing,
            ),
        };
        let outcome = store
            .apply_ledger_requests(tx, self.merchant_id.as_str(), &[hold])
            .await?;
        match &outcome[0] {
            Outcome::Recorded(entry) if entry.status == EntryStatus::Pending => Ok(Ok(())),
            Outcome::Recorded(entry) if entry.status == EntryStatus::Rejected => {
                Ok(Err(entry.subject_balance_after_minor.unwrap_or(0)))
            }
            other => Err(unexpected_ledger(other)),
        }
    }
}
