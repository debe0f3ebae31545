//! Withdrawals: checks before any money moves (KYC, account status, balance, risk, wagering,
//! in that order), a hold on the player's money, closed-loop routing, sending or deferring,
//! the provider's webhook posting or releasing the hold, the review queue and cancellation.
//!
//! A payout never pays twice and never pays what the player does not have: the amount is
//! reserved in the ledger when the payout is accepted (two-phase transfer, txn id = payout
//! id), and only the state machine's `paid` posts it, under a txn id derived from the payout.

use std::sync::Arc;

use kassa_connectors::{
    PaymentProvider, PayoutAccepted, PayoutEvent as ProviderPayoutEvent, PayoutEventStatus,
    PayoutRequest, ProviderError, ProviderPayoutStatus, ProviderRegistry,
};
use kassa_core::ids::{MerchantId, PayoutId, PlayerId};
use kassa_core::kyc::{CheckReason, KycLevel};
use kassa_core::ledger::{EntryStatus, Outcome};
use kassa_core::movements;
use kassa_core::payout::{next, PayoutEvent, PayoutStatus, PayoutTransition};
use kassa_core::status::{AccountStatus, KycStatus};
use kassa_core::{Currency, Money};
use kassa_store::directory::PlayerRecord;
use kassa_store::payouts::PayoutRecord;
use kassa_store::risk::RiskDecisionRecord;
use kassa_store::{now_ms, HistoryEvent, Store, StoreError, Tx};
use serde_json::json;

use crate::config::PayoutsConfig;
use crate::idempotency::IdempotencyClaim;
use crate::service::acquirer::REVERSAL_ADVICE;
use crate::service::aml::MonitoredEvent;
use crate::service::kyc::{KycService, Verification};
use crate::service::players::{PlayerDirectory, PlayerError, WalletAccounts};
use crate::service::provider_events::{retrying, EventAnswer, ProviderEventError};
use crate::service::risk::{Assessment, CardSeen, RiskKind, RiskRefusal, RiskRequest, RiskService};
use crate::service::routing::RoutingService;
use crate::service::vault::Vault;
use crate::service::{provider_failure_code, HoldFor, ProviderHold};
use crate::views::payouts::payout_view;
use crate::views::Answer;

/// The switch that holds every payout back (as `deferred`) until it is turned off.
pub const PAYOUTS_PAUSED: &str = "payouts_paused";

/// The failure reason of a payout its player cancelled.
const CANCELLED_BY_PLAYER: &str = "cancelled_by_player";

/// Why a withdrawal use case did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    /// The player is unknown or holds another currency.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// Identity not verified yet; `verification` is where the player verifies, when a
    /// check could open.
    #[error("the player must complete identity verification before withdrawing")]
    KycRequired {
        kyc_status: KycStatus,
        verification: Option<Verification>,
    },
    /// The `enhanced` level must be verified first: the risk decision asked for it
    /// (`refusal`), or the player's deposits reached the CDD threshold.
    #[error("the player must complete enhanced identity verification before withdrawing")]
    StepUp {
        reason: CheckReason,
        refusal: Option<RiskRefusal>,
        verification: Option<Verification>,
    },
    /// The account is blocked.
    #[error("the player's account is blocked; withdrawals are suspended")]
    AccountBlocked { account_status: AccountStatus },
    /// The available balance does not cover the amount.
    #[error("the player's available balance does not cover this withdrawal")]
    InsufficientFunds { available: Money },
    /// Risk rules refuse it (a player with chargebacks).
    #[error("the withdrawal was refused by risk checks")]
    RiskRejected { chargebacks: i64 },
    /// The risk decision refused the payout (`decline`) or asks for a KYC step-up first.
    #[error(transparent)]
    Risk(RiskRefusal),
    /// No configured provider pays out this method and currency.
    #[error("no provider pays out {method} in {currency}")]
    NoProvider { method: String, currency: Currency },
    /// No such payout for this merchant.
    #[error("no payout {payout_id:?}")]
    NotFound { payout_id: String },
    /// A decision on a payout that is not waiting for one.
    #[error("a {status} payout is not waiting for review")]
    NotInReview { status: PayoutStatus },
    /// The player's jurisdiction forbids reversing a withdrawal.
    #[error("players licensed in {jurisdiction} may not reverse a withdrawal")]
    CancelNotAllowed { jurisdiction: String },
    /// The payout already went to a provider.
    #[error("a {status} payout already went to a provider")]
    NotCancellable { status: PayoutStatus },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<kassa_store::SqlxError> for PayoutError {
    fn from(error: kassa_store::SqlxError) -> PayoutError {
        PayoutError::Store(error.into())
    }
}

/// A withdrawal as the API asks for it, already parsed.
#[derive(Clone, Debug)]
pub struct NewPayout {
    pub player_id: PlayerId,
    pub amount: Money,
    pub method: String,
    pub destination: Option<String>,
}

/// A reviewer's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// The withdrawal use cases; cheap to clone.
#[derive(Clone)]
pub struct PayoutsService {
    store: Store,
    providers: Arc<ProviderRegistry>,
    players: PlayerDirectory,
    config: PayoutsConfig,
    vault: Option<Arc<Vault>>,
    /// The routing document's degradation plan may pause one provider's payouts.
    routing: Option<RoutingService>,
    /// The pre-authorization decision; `None`: only the fixed checks.
    risk: Option<RiskService>,
    /// KYC checks at ID providers and the CDD lock; `None`: only `kyc_status`.
    kyc: Option<KycService>,
}

/// How long a decided payout waited in the review queue (it entered it when requested).
fn record_review_time(payout: &PayoutRecord, decision: &'static str) {
    let waited_ms = payout.reviewed_at_ms.unwrap_or_else(now_ms) - payout.created_at_ms;
    let waited = std::time::Duration::from_millis(u64::try_from(waited_ms).unwrap_or(0));
    crate::metrics::record_payout_review(decision, waited);
}

/// The review reason of a payout the risk decision sent to review.
pub const RISK_REVIEW: &str = "risk_review";

/// How a payout's destination names a card saved in the vault.
const VAULT_TOKEN_PREFIX: &str = "card_";

impl PayoutsService {
    /// Wires the service.
    pub fn new(
        store: Store,
        providers: Arc<ProviderRegistry>,
        players: PlayerDirectory,
        config: PayoutsConfig,
    ) -> PayoutsService {
        PayoutsService {
            store,
            providers,
            players,
            config,
            vault: None,
            routing: None,
            risk: None,
            kyc: None,
        }
    }

    /// Opens a KYC check when a payout is refused for KYC, and locks withdrawals at the CDD
    /// threshold (issue 19 item 5, docs/kyc.md).
    pub fn with_kyc(mut self, kyc: KycService) -> PayoutsService {
        self.kyc = Some(kyc);
        self
    }

    /// Decides on every payout after the fixed checks (issue 19, ADR 62).
    pub fn with_risk(mut self, risk: RiskService) -> PayoutsService {
        self.risk = Some(risk);
        self
    }

    /// Pays out to cards saved in `vault` when a payout's destination is a vault token (an
    /// original credit transaction through a direct acquirer, ADRs 49 and 50).
    pub fn with_vault(mut self, vault: Option<Arc<Vault>>) -> PayoutsService {
        self.vault = vault;
        self
    }

    /// Lets the routing document's degradation plan pause payouts per provider account.
    pub fn with_routing(mut self, routing: RoutingService) -> PayoutsService {
        self.routing = Some(routing);
        self
    }

    /// Checks, holds and (when cleared) sends a withdrawal. With a claimed
    /// `Idempotency-Key`, the hold's transaction stores the answer as it stands then, and the
    /// send's last transaction replaces it with the answer the request gives: the status the
    /// payout reached.
    pub async fn request(
        &self,
        merchant_id: &MerchantId,
        request: NewPayout,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<PayoutRecord, PayoutError> {
        let player = self.players.get(merchant_id, &request.player_id).await?;
        PlayerError::check_currency(&player.player_id, player.currency, request.amount.currency)?;
        self.check_kyc(&player).await?;
        let wallet = self.players.wallet(merchant_id, &player.player_id).await?;
        self.check_balance(&wallet, &request).await?;
        let review_reasons = self
            .risk_checks(merchant_id, &player.player_id, request.amount)
            .await?;
        let provider = self
            .route(
                merchant_id,
                &player.player_id,
                &request.method,
                request.amount.currency,
            )
            .await?;
        let mut payout = self.new_payout(&player, provider, request, review_reasons);
        let risk = match self.pre_authorize(&player, &mut payout).await {
            Err(PayoutError::Risk(refusal))
                if refusal.outcome == kassa_core::risk::RiskOutcome::StepUp =>
            {
                let reason = CheckReason::RiskStepUp;
                return Err(self.step_up(&player, reason, Some(refusal)).await);
            }
            other => other?,
        };
        let payout = self
            .hold_and_record(payout, &wallet, claim, risk.as_ref().map(|(_, r)| r))
            .await?;
        if payout.status != PayoutStatus::Approved {
            return Ok(payout);
        }
        self.send_answering(&payout.id, claim.map(|c| (c, 201)))
            .await
    }

    /// Checks 1 and 2 (KYC, account status), then the CDD lock: a refusal for KYC names the
    /// page the player verifies on, opening a check for it.
    async fn check_kyc(&self, player: &PlayerRecord) -> Result<(), PayoutError> {
        let refused = check_may_withdraw(player);
        let Some(kyc) = &self.kyc else {
            return refused;
        };
        match refused {
            Err(PayoutError::KycRequired { kyc_status, .. }) => {
                let verification = kyc
                    .verification_for(player, KycLevel::Basic, CheckReason::FirstWithdrawal)
                    .await;
                Err(PayoutError::KycRequired {
                    kyc_status,
                    verification,
                })
            }
            Err(other) => Err(other),
            Ok(()) if kyc.cdd_locked(player).await? => {
                Err(self.step_up(player, CheckReason::CddThreshold, None).await)
            }
            Ok(()) => Ok(()),
        }
    }

    /// The refusal asking for the `enhanced` level, with its page when a check could open.
    async fn step_up(
        &self,
        player: &PlayerRecord,
        reason: CheckReason,
        refusal: Option<RiskRefusal>,
    ) -> PayoutError {
        let verification = match &self.kyc {
            Some(kyc) => {
                kyc.verification_for(player, KycLevel::Enhanced, reason)
                    .await
            }
            None => None,
        };
        match (verification, refusal) {
            // Without KYC wiring a risk step-up keeps its old answer.
            (None, Some(refusal)) if self.kyc.is_none() => PayoutError::Risk(refusal),
            (verification, refusal) => PayoutError::StepUp {
                reason,
                refusal,
                verification,
            },
        }
    }

    /// Check 3, the available balance: it must cover the amount (checked again, race-free,
    /// by the hold).
    async fn check_balance(
        &self,
        wallet: &WalletAccounts,
        request: &NewPayout,
    ) -> Result<(), PayoutError> {
        let available = self
            .store
            .balances(&[wallet.cash])
            .await?
            .get(&wallet.cash)
            .copied()
            .unwrap_or(0);
        if available < request.amount.amount_minor {
            return Err(PayoutError::InsufficientFunds {
                available: Money::new(available, request.amount.currency),
            });
        }
        Ok(())
    }

    /// Checks 4 and 5, risk and wagering: a player with a chargeback does not withdraw;
    /// large amounts, and low turnover since the last deposit, are reasons to review the
    /// payout (not refusals). Returns those reasons (none: it is approved).
    async fn risk_checks(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        amount: Money,
    ) -> Result<Vec<String>, PayoutError> {
        let chargebacks = self.store.chargebacks_of(merchant_id, player_id).await?;
        if chargebacks > 0 {
            return Err(PayoutError::RiskRejected { chargebacks });
        }
        let mut review_reasons = Vec::new();
        if amount.amount_minor >= self.config.review_threshold_minor {
            review_reasons.push("amount_at_or_over_review_threshold".to_string());
        }
        if self.low_turnover(merchant_id, player_id).await? {
            review_reasons.push("low_turnover_since_last_deposit".to_string());
        }
        Ok(review_reasons)
    }

    /// Check 6, the risk decision: `decline` and `step_up` refuse the payout (nothing held),
    /// `review` sends it to the review queue. The decision is kept on the payout.
    async fn pre_authorize(
        &self,
        player: &PlayerRecord,
        payout: &mut PayoutRecord,
    ) -> Result<Option<(Assessment, RiskDecisionRecord)>, PayoutError> {
        let Some(risk) = &self.risk else {
            return Ok(None);
        };
        let saved = self
            .saved_card_of(player, payout.destination.as_deref())
            .await?;
        let request = RiskRequest {
            kind: RiskKind::Payout,
            player,
            amount: payout.amount,
            method: &payout.method,
            country: None,
            ip: None,
            device: None,
            card: saved.as_ref().map(|card| CardSeen {
                fingerprint: card.fingerprint.as_deref(),
                bin: &card.bin,
            }),
        };
        let (assessment, record) = risk
            .pre_authorize(&request, payout.id.as_str())
            .await?
            .map_err(PayoutError::Risk)?;
        if assessment.decision.outcome == kassa_core::risk::RiskOutcome::Review {
            payout.review_reasons.push(RISK_REVIEW.to_string());
        }
        payout.risk = Some(assessment.json());
        Ok(Some((assessment, record)))
    }

    /// The player's saved card a payout's destination names (a vault token), for the risk
    /// decision's card features; `None` for any other destination.
    async fn saved_card_of(
        &self,
        player: &PlayerRecord,
        destination: Option<&str>,
    ) -> Result<Option<kassa_store::acquirer::VaultCardRecord>, StoreError> {
        let Some(token) = destination.filter(|d| d.starts_with(VAULT_TOKEN_PREFIX)) else {
            return Ok(None);
        };
        let cards = self
            .store
            .player_vault_cards(player.merchant_id.as_str(), player.player_id.as_str())
            .await?;
        Ok(cards.into_iter().find(|card| card.token == token))
    }

    /// Whether the player bet less since their last deposit than the wagering share of it.
    async fn low_turnover(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<bool, StoreError> {
        let deposits = self
            .store
            .captured_deposits(merchant_id, player_id, 1)
            .await?;
        let Some((_, deposit_minor, deposited_at_ms)) = deposits.first() else {
            return Ok(false);
        };
        let turnover = self
            .store
            .player_turnover_since(merchant_id, player_id, *deposited_at_ms)
            .await?;
        Ok(self
            .config
            .wagering_review_share
            .exceeds(turnover, *deposit_minor))
    }

    /// The payout about to be held, as requested, routed to `provider`.
    fn new_payout(
        &self,
        player: &PlayerRecord,
        provider: String,
        request: NewPayout,
        review_reasons: Vec<String>,
    ) -> PayoutRecord {
        let now = now_ms();
        PayoutRecord {
            id: PayoutId::generate(),
            merchant_id: player.merchant_id.clone(),
            player_id: player.player_id.clone(),
            provider: Some(provider),
            provider_reference: None,
            eta_hours: self
                .config
                .eta_hours
                .get(&request.method)
                .copied()
                .unwrap_or(72),
            method: request.method,
            destination: request.destination,
            amount: request.amount,
            status: PayoutStatus::Requested,
            review_reasons,
            failure_reason: None,
            jurisdiction: player.jurisdiction.clone(),
            reviewed_by: None,
            review_note: None,
            reviewed_at_ms: None,
            send_attempts: 0,
            next_attempt_at_ms: None,
            risk: None,
            created_at_ms: now,
            updated_at_ms: now,
        }
    }

    /// The request's first transaction: the hold on the player's money, the payout and its
    /// history, the risk decision (approved or in review), and the key's answer — final
    /// when the payout waits for review, staged when it is sent next.
    async fn hold_and_record(
        &self,
        mut payout: PayoutRecord,
        wallet: &WalletAccounts,
        claim: Option<&IdempotencyClaim>,
        risk: Option<&RiskDecisionRecord>,
    ) -> Result<PayoutRecord, PayoutError> {
        let mut tx = self.store.begin().await?;
        let hold = ProviderHold {
            merchant_id: &payout.merchant_id,
            provider: payout.provider.as_deref().unwrap_or_default(),
            wallet,
            hold_for: HoldFor::Payout(&payout.id),
            player_id: &payout.player_id,
            amount: payout.amount,
        };
        if let Err(available_minor) = hold.apply(&self.store, &mut tx).await? {
            return Err(PayoutError::InsufficientFunds {
                available: Money::new(available_minor, payout.amount.currency),
            });
        }
        self.store.insert_payout(&mut tx, &payout).await?;
        if let Some(risk) = risk {
            self.store.insert_risk_decision(&mut tx, risk).await?;
        }
        self.record_requested(&mut tx, &payout).await?;
        crate::service::aml::queue_monitoring(
            &self.store,
            &mut tx,
            MonitoredEvent::PayoutRequested,
            (&payout.merchant_id, &payout.player_id),
            payout.id.as_str(),
            0,
        )
        .await?;
        let event = if payout.review_reasons.is_empty() {
            PayoutEvent::Approve
        } else {
            PayoutEvent::SendToReview
        };
        self.transition(&mut tx, &mut payout, event, "risk", None, None)
            .await?;
        let sending = payout.status == PayoutStatus::Approved;
        if let Some(claim) = claim {
            let answer = Answer::of(201, &payout_view(&payout));
            if sending {
                // The hold is answered even should this node stop before the send ends.
                claim.stage_in(&mut tx, &answer).await?;
            } else {
                claim.complete_in(&mut tx, &answer).await?;
            }
        }
        tx.commit().await?;
        if let Some(claim) = claim.filter(|_| !sending) {
            claim.mark_committed();
        }
        Ok(payout)
    }

    /// The first event of a payout's history, with the reasons it goes to review.
    async fn record_requested(&self, tx: &mut Tx, payout: &PayoutRecord) -> Result<(), StoreError> {
        let detail = json!({ "review_reasons": payout.review_reasons }).to_string();
        let requested = PayoutStatus::Requested.as_str();
        let created = HistoryEvent {
            source: "api",
            event: "requested",
            from: requested,
            to: Some(requested),
            actor: None,
            detail: Some(&detail),
        };
        self.record(tx, payout, created).await
    }

    /// Closed loop: the provider the player last deposited through, if it pays out in this
    /// currency and method; otherwise the first provider that does.
    async fn route(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        method: &str,
        currency: Currency,
    ) -> Result<String, PayoutError> {
        let can_pay = |name: &str| {
            self.providers
                .get_for_merchant(merchant_id.as_str(), name)
                .is_some_and(|p| {
                    p.capabilities().payouts && p.capabilities().supports(method, currency, None)
                })
        };
        for (provider, _, _) in self
            .store
            .captured_deposits(merchant_id, player_id, 5)
            .await?
        {
            if can_pay(&provider) {
                return Ok(provider);
            }
        }
        self.providers
            .for_merchant(merchant_id.as_str())
            .map(|(name, _)| name)
            .find(|name| can_pay(name))
            .map(str::to_string)
            .ok_or_else(|| PayoutError::NoProvider {
                method: method.to_string(),
                currency,
            })
    }

    /// Hands an approved or deferred payout to its provider, or defers it when payouts are
    /// paused or the provider does not answer. Safe to call again: the provider dedupes by
    /// payout id, and the state machine refuses a second send once it is processing.
    pub async fn send(&self, payout_id: &PayoutId) -> Result<PayoutRecord, PayoutError> {
        self.send_answering(payout_id, None).await
    }

    /// [`send`](Self::send), storing the payout's view (with the status given) as the answer
    /// of the claim in whichever transaction ends the send.
    async fn send_answering(
        &self,
        payout_id: &PayoutId,
        claim: Option<(&IdempotencyClaim, u16)>,
    ) -> Result<PayoutRecord, PayoutError> {
        let (payout, provider) = match self.mark_sent(payout_id, claim).await? {
            Marked::Sent { payout, provider } => (payout, provider),
            Marked::Finished(payout) => return Ok(payout),
        };
        // No transaction is open while the provider is asked.
        let sent = self.ask_provider(provider.as_ref(), &payout).await;
        // Sent: the payout was `processing`, so an end now is a change.
        let answered = self.record_send_answer(payout_id, sent, claim).await?;
        crate::metrics::record_payout_finished(&answered);
        Ok(answered)
    }

    /// Hands the payout to its provider: to a saved card (opened from the vault for this one
    /// message) when the destination is a vault token, else as the provider takes payouts.
    async fn ask_provider(
        &self,
        provider: &dyn PaymentProvider,
        payout: &PayoutRecord,
    ) -> Result<PayoutAccepted, ProviderError> {
        let request = payout_request(payout);
        let token = payout
            .destination
            .as_deref()
            .filter(|d| d.starts_with(VAULT_TOKEN_PREFIX));
        let (Some(token), Some(vault)) = (token, &self.vault) else {
            return provider.payout(&request).await;
        };
        let today = time::OffsetDateTime::now_utc().date();
        let today_yymm = format!(
            "{:02}{:02}",
            today.year().rem_euclid(100),
            u8::from(today.month())
        );
        let merchant = payout.merchant_id.as_str();
        match vault
            .open(merchant, payout.player_id.as_str(), token, &today_yymm)
            .await
        {
            Ok(card) => provider.payout_to_card(&request, &card).await,
            Err(error) => {
                tracing::warn!(payout_id = %payout.id, %error, "payout card not usable");
                Err(ProviderError::Rejected {
                    code: "card_unusable".into(),
                    message: "the saved card cannot be paid to".into(),
                })
            }
        }
    }

    /// First transaction of a send: marks an approved or deferred payout `processing` and
    /// returns it with its provider, or finishes the send at once (another status: nothing
    /// to do; paused or no provider: deferred).
    async fn mark_sent(
        &self,
        payout_id: &PayoutId,
        claim: Option<(&IdempotencyClaim, u16)>,
    ) -> Result<Marked, PayoutError> {
        let paused = self.store.switch_enabled(PAYOUTS_PAUSED).await?;
        let routing = match &self.routing {
            Some(routing) => Some(routing.current().await?),
            None => None,
        };
        let mut tx = self.store.begin().await?;
        let mut payout = self.locked(&mut tx, payout_id).await?;
        let paused = paused
            || routing
                .zip(payout.provider.as_deref())
                .is_some_and(|(routing, name)| routing.document.switches.payouts_paused(name));
        if !matches!(
            payout.status,
            PayoutStatus::Approved | PayoutStatus::Deferred
        ) {
            return Ok(Marked::Finished(finish_send(tx, payout, claim).await?));
        }
        let provider = payout
            .provider
            .as_deref()
            .and_then(|name| self.providers.get(name));
        let Some(provider) = provider.filter(|_| !paused) else {
            let reason = if paused {
                "payouts_paused"
            } else {
                "provider_unavailable"
            };
            self.defer(&mut tx, &mut payout, reason).await?;
            return Ok(Marked::Finished(finish_send(tx, payout, claim).await?));
        };
        payout.send_attempts += 1;
        self.transition(
            &mut tx,
            &mut payout,
            PayoutEvent::Sent,
            "router",
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Marked::Sent { payout, provider })
    }

    /// Second transaction of a send: records what the provider answered (accepted, paid or
    /// failed at once; a transient error defers the payout until its attempts run out).
    async fn record_send_answer(
        &self,
        payout_id: &PayoutId,
        sent: Result<PayoutAccepted, ProviderError>,
        claim: Option<(&IdempotencyClaim, u16)>,
    ) -> Result<PayoutRecord, PayoutError> {
        let mut tx = self.store.begin().await?;
        let mut payout = self.locked(&mut tx, payout_id).await?;
        match sent {
            Ok(accepted) => {
                // An acquirer's paid OCT: its reversal advice is called off in this
                // transaction, which records the payment (ADR 49); if it already started, the
                // credit is being reversed, so the payout failed.
                let reversed = match &accepted.reversal_advice_key {
                    Some(key) => {
                        !self
                            .store
                            .cancel_unstarted_job_on(&mut tx, REVERSAL_ADVICE, key)
                            .await?
                    }
                    None => false,
                };
                payout.provider_reference = Some(accepted.provider_reference);
                self.store.update_payout(&mut tx, &payout).await?;
                let settled = match accepted.status {
                    _ if reversed => {
                        tracing::warn!(%payout_id, "payout answer came after its reversal advice started; the payout fails");
                        payout.failure_reason = Some("reversed".into());
                        Some(PayoutEvent::Failed)
                    }
                    ProviderPayoutStatus::Paid => Some(PayoutEvent::Paid),
                    ProviderPayoutStatus::Failed => Some(PayoutEvent::Failed),
                    ProviderPayoutStatus::Pending => None,
                };
                if let Some(event) = settled {
                    self.settle(&mut tx, &mut payout, event, "provider", None)
                        .await?;
                }
            }
            Err(error)
                if error.is_transient() && payout.send_attempts < self.config.send_attempts_max =>
            {
                tracing::warn!(%payout_id, error = %error, "payout deferred: the provider did not take it");
                self.defer(&mut tx, &mut payout, &provider_failure_code(&error))
                    .await?;
            }
            Err(error) => {
                payout.failure_reason = Some(provider_failure_code(&error));
                let detail = error.to_string();
                self.settle(
                    &mut tx,
                    &mut payout,
                    PayoutEvent::Failed,
                    "router",
                    Some(&detail),
                )
                .await?;
            }
        }
        finish_send(tx, payout, claim).await
    }

    /// The payout, locked in `tx`, or `NotFound`.
    async fn locked(&self, tx: &mut Tx, payout_id: &PayoutId) -> Result<PayoutRecord, PayoutError> {
        self.store
            .lock_payout(tx, payout_id)
            .await?
            .ok_or_else(|| payout_not_found(payout_id))
    }

    /// Defers the payout to the next retry, recording why.
    async fn defer(
        &self,
        tx: &mut Tx,
        payout: &mut PayoutRecord,
        reason: &str,
    ) -> Result<(), PayoutError> {
        payout.next_attempt_at_ms = Some(now_ms() + self.config.retry_backoff_ms);
        self.transition(tx, payout, PayoutEvent::Defer, "router", None, Some(reason))
            .await?;
        Ok(())
    }

    /// Applies a verified provider event about a payout, exactly once per event id.
    pub async fn apply_provider_event(
        &self,
        provider: &str,
        event: &ProviderPayoutEvent,
    ) -> Result<(PayoutStatus, bool), ProviderEventError> {
        retrying(|| self.try_apply_provider_event(provider, event)).await
    }

    async fn try_apply_provider_event(
        &self,
        provider: &str,
        event: &ProviderPayoutEvent,
    ) -> Result<(PayoutStatus, bool), ProviderEventError> {
        let not_found = || ProviderEventError::PayoutNotFound {
            payout_id: event.payout_id.clone(),
        };
        // An id that is not a payout id names no payout of ours.
        let payout_id = PayoutId::parse(&event.payout_id).map_err(|_| not_found())?;
        let mut tx = self.store.begin().await?;
        let mut payout = self
            .store
            .lock_payout(&mut tx, &payout_id)
            .await?
            .ok_or_else(not_found)?;
        let mismatch = |what| Err(ProviderEventError::Mismatch(what));
        if payout.provider.as_deref() != Some(provider) {
            return mismatch("the payout belongs to another provider");
        }
        if payout.amount.amount_minor != event.amount_minor
            || payout.amount.currency != event.currency
        {
            return mismatch("the amount or currency differs from the payout's");
        }
        if let (Some(ours), Some(theirs)) = (&payout.provider_reference, &event.provider_reference)
        {
            if ours != theirs {
                return mismatch("the provider_reference differs from the payout's");
            }
        }
        let kind = match event.status {
            PayoutEventStatus::Paid => PayoutEvent::Paid,
            PayoutEventStatus::Failed => PayoutEvent::Failed,
        };
        if kind == PayoutEvent::Failed {
            payout.failure_reason = event.reason.clone().or(Some("provider_failed".into()));
        }
        let detail = json!({ "event_id": event.event_id, "reason": event.reason }).to_string();
        let applied = self
            .settle(&mut tx, &mut payout, kind, "webhook", Some(&detail))
            .await?;
        let answer = EventAnswer::payout(applied, payout.status).to_json();
        if !self
            .store
            .insert_webhook_event(&mut tx, provider, &event.event_id, 200, &answer)
            .await?
        {
            // Dropping `tx` rolls this delivery's work back.
            return Err(ProviderEventError::AlreadyAnswered {
                event_id: event.event_id.clone(),
            });
        }
        tx.commit().await?;
        if applied {
            crate::metrics::record_payout_finished(&payout);
        }
        Ok((payout.status, applied))
    }

    /// A reviewer approves (and the payout is sent) or rejects (and the hold is released).
    /// The same decision again answers the payout as it is now, as a repeated cancel does.
    /// With a claimed key, the answer (200 and the payout's view) commits with the decision:
    /// staged with an approval, final when its send ends (ADR 36).
    pub async fn review(
        &self,
        payout_id: &PayoutId,
        decision: Decision,
        (reviewer, reason): (&str, &str),
        claim: Option<&IdempotencyClaim>,
    ) -> Result<PayoutRecord, PayoutError> {
        let mut tx = self.store.begin().await?;
        let mut payout = self
            .store
            .lock_payout(&mut tx, payout_id)
            .await?
            .ok_or_else(|| payout_not_found(payout_id))?;
        if payout.status != PayoutStatus::InReview {
            if decided_already(&payout, decision) {
                return finish_send(tx, payout, claim.map(|c| (c, REVIEW_ANSWER_STATUS))).await;
            }
            return Err(PayoutError::NotInReview {
                status: payout.status,
            });
        }
        payout.reviewed_by = Some(reviewer.to_string());
        payout.review_note = Some(reason.to_string());
        payout.reviewed_at_ms = Some(now_ms());
        let detail = json!({ "reason": reason }).to_string();
        match decision {
            Decision::Approve => {
                self.transition(
                    &mut tx,
                    &mut payout,
                    PayoutEvent::Approve,
                    "review",
                    Some(reviewer),
                    Some(&detail),
                )
                .await?;
            }
            Decision::Reject => {
                payout.failure_reason = Some("rejected_in_review".into());
                self.settle(
                    &mut tx,
                    &mut payout,
                    PayoutEvent::Reject,
                    "review",
                    Some(&detail),
                )
                .await?;
            }
        }
        let answering = claim.map(|c| (c, REVIEW_ANSWER_STATUS));
        if payout.status != PayoutStatus::Approved {
            // Rejected: it was in review, so its end is a change.
            let rejected = finish_send(tx, payout, answering).await?;
            crate::metrics::record_payout_finished(&rejected);
            record_review_time(&rejected, "rejected");
            return Ok(rejected);
        }
        if let Some(claim) = claim {
            // The approval is answered even should this node stop before the send ends.
            let answer = Answer::of(REVIEW_ANSWER_STATUS, &payout_view(&payout));
            claim.stage_in(&mut tx, &answer).await?;
        }
        tx.commit().await?;
        record_review_time(&payout, "approved");
        self.send_answering(payout_id, answering).await
    }

    /// The player withdraws their request, where the jurisdiction allows it and the payout
    /// has never been handed to a provider. Cancelling a payout the player cancelled answers
    /// it again: a repeated cancel is not a conflict.
    pub async fn cancel(
        &self,
        merchant_id: &MerchantId,
        payout_id: &PayoutId,
    ) -> Result<PayoutRecord, PayoutError> {
        let mut tx = self.store.begin().await?;
        let mut payout = self
            .store
            .lock_payout(&mut tx, payout_id)
            .await?
            .filter(|p| &p.merchant_id == merchant_id)
            .ok_or_else(|| payout_not_found(payout_id))?;
        if let Some(jurisdiction) = &payout.jurisdiction {
            if self
                .config
                .reversal_forbidden_jurisdictions
                .iter()
                .any(|j| j.eq_ignore_ascii_case(jurisdiction))
            {
                return Err(PayoutError::CancelNotAllowed {
                    jurisdiction: jurisdiction.clone(),
                });
            }
        }
        if payout.status == PayoutStatus::Cancelled
            && payout.failure_reason.as_deref() == Some(CANCELLED_BY_PLAYER)
        {
            return Ok(payout);
        }
        if !payout.status.is_unsent() || payout.send_attempts > 0 {
            return Err(PayoutError::NotCancellable {
                status: payout.status,
            });
        }
        payout.failure_reason = Some(CANCELLED_BY_PLAYER.into());
        self.settle(&mut tx, &mut payout, PayoutEvent::Cancel, "api", None)
            .await?;
        tx.commit().await?;
        crate::metrics::record_payout_finished(&payout);
        // Read back, so this answer and a repeat's carry the same stored `updated_at`.
        self.get(merchant_id, payout_id).await
    }

    /// A merchant's payout, or 404.
    pub async fn get(
        &self,
        merchant_id: &MerchantId,
        payout_id: &PayoutId,
    ) -> Result<PayoutRecord, PayoutError> {
        self.store
            .find_payout(payout_id)
            .await?
            .filter(|p| &p.merchant_id == merchant_id)
            .ok_or_else(|| payout_not_found(payout_id))
    }

    /// Moves the payout and settles its hold when the new status says so: `paid` posts it to
    /// the provider's clearing account, `rejected`/`failed`/`cancelled` release it.
    async fn settle(
        &self,
        tx: &mut Tx,
        payout: &mut PayoutRecord,
        event: PayoutEvent,
        source: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let before = payout.status;
        self.transition(tx, payout, event, source, None, detail)
            .await?;
        if payout.status == before {
            return Ok(false);
        }
        let Some(request) = movements::payout_settled(payout.status, &payout.id, &payout.player_id)
        else {
            return Ok(true);
        };
        let outcome = self
            .store
            .apply_ledger_requests(tx, payout.merchant_id.as_str(), &[request])
            .await?;
        match &outcome[0] {
            Outcome::Recorded(entry) if entry.status == EntryStatus::Posted => Ok(true),
            other => {
                tracing::error!(payout_id = %payout.id, ?other, "the payout's hold could not be settled");
                Err(StoreError::Corrupt(format!(
                    "hold of {} not settled",
                    payout.id
                )))
            }
        }
    }

    /// Runs the state machine; records the event either way, and writes the payout and an
    /// outbox event (the player's notification) when it applied.
    async fn transition(
        &self,
        tx: &mut Tx,
        payout: &mut PayoutRecord,
        event: PayoutEvent,
        source: &str,
        actor: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let from = payout.status;
        let name = event_name(event);
        match next(from, event) {
            PayoutTransition::Apply(to) => {
                payout.status = to;
                self.store.update_payout(tx, payout).await?;
                self.record(
                    tx,
                    payout,
                    HistoryEvent {
                        source,
                        event: name,
                        from: from.as_str(),
                        to: Some(to.as_str()),
                        actor,
                        detail,
                    },
                )
                .await?;
                if to != from {
                    let event_type = format!("payout.{}", to.as_str());
                    let payload = json!({
                        "type": event_type,
                        "payout_id": payout.id,
                        "player_id": payout.player_id,
                        "status": to.as_str(),
                        "amount": payout.amount.format_amount(),
                        "currency": payout.amount.currency.code(),
                        "method": payout.method,
                        "eta_hours": payout.eta_hours,
                        "reason": payout.failure_reason,
                    });
                    self.store
                        .insert_outbox(
                            tx,
                            payout.merchant_id.as_str(),
                            &event_type,
                            payout.id.as_str(),
                            &payload.to_string(),
                        )
                        .await?;
                }
            }
            PayoutTransition::Ignore => {
                tracing::info!(payout_id = %payout.id, status = %from, event = name, "event does not fit the payout's state; ignored");
                self.record(
                    tx,
                    payout,
                    HistoryEvent {
                        source,
                        event: name,
                        from: from.as_str(),
                        to: None,
                        actor,
                        detail,
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn record(
        &self,
        tx: &mut Tx,
        payout: &PayoutRecord,
        e: HistoryEvent<'_>,
    ) -> Result<(), StoreError> {
        self.store.insert_payout_event(tx, &payout.id, e).await
    }
}

fn event_name(event: PayoutEvent) -> &'static str {
    match event {
        PayoutEvent::SendToReview => "send_to_review",
        PayoutEvent::Approve => "approve",
        PayoutEvent::Reject => "reject",
        PayoutEvent::Defer => "defer",
        PayoutEvent::Sent => "sent",
        PayoutEvent::Paid => "paid",
        PayoutEvent::Failed => "failed",
        PayoutEvent::Cancel => "cancel",
    }
}

/// The error for an unknown payout.
pub fn payout_not_found(payout_id: impl AsRef<str>) -> PayoutError {
    PayoutError::NotFound {
        payout_id: payout_id.as_ref().to_string(),
    }
}

/// Checks 1 and 2: KYC (identity verified before the first withdrawal), then responsible
/// gambling (self-excluded players may withdraw their money; blocked accounts may not).
fn check_may_withdraw(player: &PlayerRecord) -> Result<(), PayoutError> {
    if !player.kyc_status.allows_withdrawal() {
        return Err(PayoutError::KycRequired {
            kyc_status: player.kyc_status,
            verification: None,
        });
    }
    if !player.account_status.allows_withdrawal() {
        return Err(PayoutError::AccountBlocked {
            account_status: player.account_status,
        });
    }
    Ok(())
}

/// The status of a review decision's answer.
const REVIEW_ANSWER_STATUS: u16 = 200;

/// Whether `payout`, no longer in review, already got `decision` from a reviewer: approved
/// (whatever its send did since) or rejected in review.
fn decided_already(payout: &PayoutRecord, decision: Decision) -> bool {
    if payout.reviewed_by.is_none() {
        return false;
    }
    match decision {
        Decision::Approve => matches!(
            payout.status,
            PayoutStatus::Approved
                | PayoutStatus::Deferred
                | PayoutStatus::Processing
                | PayoutStatus::Paid
                | PayoutStatus::Failed
        ),
        Decision::Reject => payout.status == PayoutStatus::Rejected,
    }
}

/// What the first transaction of a send left to do.
enum Marked {
    /// Marked `processing`: ask this provider.
    Sent {
        payout: PayoutRecord,
        provider: Arc<dyn PaymentProvider>,
    },
    /// Nothing to send; the send's answer is this payout.
    Finished(PayoutRecord),
}

/// What the provider is asked to pay out.
fn payout_request(payout: &PayoutRecord) -> PayoutRequest {
    PayoutRequest {
        payout_id: payout.id.to_string(),
        amount_minor: payout.amount.amount_minor,
        currency: payout.amount.currency,
        method: payout.method.clone(),
        destination: payout.destination.clone(),
    }
}

/// Commits the send's last transaction, with the request's answer (the payout's view with
/// the status given) when it has a claim.
async fn finish_send(
    mut tx: Tx,
    payout: PayoutRecord,
    claim: Option<(&IdempotencyClaim, u16)>,
) -> Result<PayoutRecord, PayoutError> {
    if let Some((claim, status)) = claim {
        let answer = Answer::of(status, &payout_view(&payout));
        claim.complete_in(&mut tx, &answer).await?;
    }
    tx.commit().await?;
    if let Some((claim, _)) = claim {
        claim.mark_committed();
    }
    Ok(payout)
}
