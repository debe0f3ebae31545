//! Reversal advices: when a `0200`/`0100` got no answer in time, the host may have approved
//! it, so Kassa reverses it with a `0420` advice, repeated as `0421` until the host answers.
//! The advice must outlive the process (a restart, or a crash while the request is out, must
//! not forget to reverse), so the connector queues it in an [`AdviceQueue`] (the server's job
//! queue) *before* the request leaves, due a few timeouts later, and cancels it when the host
//! answers. A job that runs sends it ([`super::AcquirerConnector::send_reversal_advice`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::provider::ProviderError;

/// What a reversal advice needs to name its original, and nothing of the card: field 2 is
/// not needed (the host finds the original by terminal, STAN and RRN), so the PAN is never
/// stored in a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalAdvice {
    /// The acquirer account that sent the original.
    pub account_id: String,
    /// Kassa's payment (or payout) id of the original, for logs.
    pub reference_id: String,
    /// The original's MTI, e.g. `0200`.
    pub original_mti: String,
    /// The original's processing code (field 3).
    pub processing_code: String,
    /// The original's amount (field 4), twelve digits.
    pub amount: String,
    /// The original's currency (field 49), numeric.
    pub currency_numeric: String,
    /// The original's STAN (field 11).
    pub original_stan: String,
    /// The original's transmission date and time (field 7), `MMDDhhmmss`.
    pub original_transmitted: String,
    /// The original's RRN (field 37).
    pub rrn: String,
    /// The terminal (field 41) that sent the original.
    pub terminal_id: String,
}

/// Keeps reversal advices until the host has answered them.
#[async_trait]
pub trait AdviceQueue: Send + Sync {
    /// Queues `advice`, to be sent after `due_in` (then again until answered) unless it is
    /// cancelled first.
    async fn enqueue(
        &self,
        advice: ReversalAdvice,
        due_in: std::time::Duration,
    ) -> Result<(), ProviderError>;

    /// Cancels a queued advice whose original was answered.
    async fn cancel(&self, advice: &ReversalAdvice) -> Result<(), ProviderError>;
}

impl ReversalAdvice {
    /// One advice per original: the account, terminal, transmission time and STAN.
    pub fn key(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.account_id, self.terminal_id, self.original_transmitted, self.original_stan
        )
    }
}

/// What the host answered to an advice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdviceAnswer {
    /// `0430` with `00`: reversed.
    Reversed,
    /// `0430` with `25`: the host never had the original, so nothing was charged.
    OriginalUnknown,
    /// `0430` with another code; the advice is done (the host has heard of it), an operator
    /// should look.
    Other(String),
}
