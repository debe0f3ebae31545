//! Use cases behind the API. Each one that moves money runs in one database transaction.

pub mod payments;
pub mod payouts;
pub mod players;
pub mod provider_events;
pub mod wallet;

use kassa_connectors::ProviderError;
use kassa_core::ledger::{AccountKind, Command, EntryMeta, EntryStatus, Outcome, Request};
use kassa_core::Currency;
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

/// Money leaving a player's wallet for a provider: a refund or a payout.
pub(crate) struct ProviderHold<'a> {
    pub merchant_id: &'a str,
    /// The provider the money goes to; its clearing account is the hold's destination.
    pub provider: &'a str,
    pub currency: Currency,
    pub wallet: &'a WalletAccounts,
    /// The refund's or payout's id: the hold's txn id, which the provider's answer later
    /// posts or voids.
    pub txn_id: &'a str,
    /// `refund` or `payout`.
    pub label: &'static str,
    pub player_id: &'a str,
    /// The payment or payout the hold belongs to, for the player's history.
    pub reference: &'a str,
    pub amount_minor: i64,
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
        let clearing = kassa_store::directory::ensure_account(
            tx,
            self.merchant_id,
            AccountKind::ProviderClearing,
            self.provider,
            self.currency,
        )
        .await?;
        let hold = Request {
            txn_id: self.txn_id.to_string(),
            label: self.label.into(),
            fingerprint: format!("{}:{}", self.label, self.txn_id),
            command: Command::Reserve {
                debit: self.wallet.cash,
                hold: self.wallet.hold,
                credit: clearing,
                amount_minor: self.amount_minor,
            },
            subject: Some(self.wallet.cash),
            meta: EntryMeta {
                player_id: Some(self.player_id.to_string()),
                round_id: None,
                reference: Some(self.reference.to_string()),
            },
        };
        let outcome = store
            .apply_ledger_requests(tx, self.merchant_id, &[hold])
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
