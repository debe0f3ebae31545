//! Deposits: init through a provider, the provider's verified webhooks moving the payment
//! through its state machine, refunds, chargebacks and disputes, and status sync.
//!
//! Money moves only in the transaction that applies an event: the payment row is locked,
//! the state machine decides, the ledger posts (with a txn id derived from the payment, so a
//! second `captured` can never credit twice), the event is marked processed and the outbox
//! written — all committed together or not at all.

use kassa_core::kyc::{CheckReason, KycLevel};
use kassa_core::limits::LimitKind;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kassa_connectors::{
    CardCharge, CardDetails, PaymentEvent as ProviderPaymentEvent, PaymentEventStatus,
    PaymentMethodToken, PaymentProvider, PaymentRequest, PaymentStart, PaymentStarted,
    ProviderError, ProviderPaymentStatus, ProviderRegistry, RefundAccepted, RefundRequest,
    ReportedCard,
};
use kassa_core::ids::{DisputeId, MerchantId, PaymentId, PlayerId, RefundId};
use kassa_core::ledger::{AccountKind, EntryStatus, Outcome};
use kassa_core::movements::{self, ChargebackAccounts, DisputeRef, PaymentRef};
use kassa_core::payment::{next, PaymentEvent, PaymentStatus, Transition};
use kassa_core::routing::{Decision, DeclineClasses, RouteRequest};
use kassa_core::status::{DisputeStatus, RefundStatus};
use kassa_core::{ids, Currency, Money};
use kassa_store::directory::PlayerRecord;
use kassa_store::payments::{
    PaymentCard, PaymentOutboxEvent, PaymentRecord, RefundRecord, WebhookDelivery,
};
use kassa_store::risk::RiskDecisionRecord;
use kassa_store::threeds::ThreeDsOutcomeRecord;
use kassa_store::{now_ms, HistoryEvent, Store, StoreError, Tx};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, OnceCell};

mod later_cascade;

pub use later_cascade::{CascadePayload, PAYMENT_CASCADE};

use crate::idempotency::IdempotencyClaim;
use crate::service::aml::MonitoredEvent;
use crate::service::cascade;
use crate::service::limits::{
    check_within_limits, limits_in_force, reserve, DepositRefused, LimitCheck, LimitedStart,
};
use crate::service::players::{PlayerDirectory, PlayerError, WalletAccounts};
use crate::service::provider_events::{retrying, EventAnswer, ProviderEventError};
use crate::service::risk::{Assessment, CardSeen, RiskKind, RiskRefusal, RiskRequest, RiskService};
use crate::service::routing::RoutingService;
use crate::service::threeds::Authenticated;
use crate::service::{provider_failure_code, unexpected_ledger, HoldFor, ProviderHold};
use crate::views::payments::{init_view, refund_view, NextActionView};
use crate::views::Answer;

/// Status changes published to this node's live streams (SSE); other nodes' changes are
/// found by the streams' polling.
pub type StatusFeed = broadcast::Sender<(PaymentId, PaymentStatus)>;

/// A deposit as the API asks for it, already parsed.
#[derive(Clone, Debug)]
pub struct NewPayment {
    pub player_id: PlayerId,
    pub amount: Money,
    pub method: String,
    pub return_url: String,
    pub country: String,
    pub device: Option<String>,
    /// The device fingerprint, for risk only (not stored on the payment).
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub session_id: Option<String>,
    /// The provider account that tokenized the player's payment method, and its token
    /// (ADR 64); not stored: the account keeps it.
    pub payment_method_token: Option<(String, PaymentMethodToken)>,
}

/// Why a deposit use case did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The amount or currency does not parse.
    #[error(transparent)]
    Money(#[from] kassa_core::MoneyError),
    /// The player is unknown or holds another currency.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// No configured provider takes this method, currency and country.
    #[error("no provider takes {method} payments in {currency} from {country}")]
    NoProvider {
        method: String,
        currency: Currency,
        country: String,
        /// Why each possibility was left out (switches, circuits, maintenance).
        reasons: Vec<String>,
    },
    /// The payment method was tokenized by an account this deposit's route does not offer;
    /// nothing was started.
    #[error("{}", reasons.join("; "))]
    TokenAccountOffRoute {
        account: String,
        reasons: Vec<String>,
    },
    /// A responsible-gambling deposit limit would be exceeded; nothing was started.
    #[error("{}", .0.exceeded)]
    LimitExceeded(DepositRefused),
    /// The national self-exclusion register names the player, cannot be asked for lack of
    /// identity, or cannot answer with no stored answer standing in; nothing was started.
    #[error(transparent)]
    Register(#[from] crate::service::registers::RegisterError),
    /// The risk decision refused the deposit; nothing was started.
    #[error(transparent)]
    Risk(RiskRefusal),
    /// The risk decision asks for the `enhanced` KYC level first (`step_up` where the rule
    /// set refuses deposits for it); `verification` is the page the player verifies on.
    #[error("{refusal}")]
    StepUp {
        refusal: RiskRefusal,
        verification: Option<crate::service::kyc::Verification>,
    },
    /// No such payment for this merchant.
    #[error("no payment {payment_id:?}")]
    NotFound { payment_id: String },
    /// Only payments the player has not completed can be cancelled.
    #[error("a {status} payment cannot be cancelled")]
    NotCancellable { status: PaymentStatus },
    /// The provider settled the payment while it was being cancelled.
    #[error("the payment became {status} before it could be cancelled")]
    CancelOvertaken { status: PaymentStatus },
    /// Only captured payments can be refunded.
    #[error("a {status} payment cannot be refunded")]
    NotRefundable { status: PaymentStatus },
    /// The payment's provider has no refunds.
    #[error("{provider} does not refund")]
    RefundsUnsupported { provider: String },
    /// The amount is not positive or more than is left to refund.
    #[error("at most {refundable} can be refunded")]
    RefundTooLarge { refundable: Money },
    /// The player no longer has the money the refund takes back.
    #[error("the player's balance no longer covers this refund")]
    RefundNotCovered,
    /// The provider refused the call or did not answer.
    #[error("provider call failed: {0}")]
    Provider(ProviderError),
    /// The payment names a provider this node does not have configured.
    #[error("payment {payment_id} names provider {provider:?}, which is not configured")]
    ProviderMissing {
        payment_id: String,
        provider: String,
    },
    /// The payment is not waiting for a card (never was, or it has its outcome).
    #[error("a {status} payment does not take a card")]
    CardNotExpected { status: PaymentStatus },
    /// The card of this payment was submitted before; a second would charge twice.
    #[error("the card of this payment was already submitted")]
    CardAlreadySubmitted,
    /// Another request with the same `Idempotency-Key` is running or answered first; the
    /// idempotency layer answers in its place.
    #[error("a request with this Idempotency-Key is still running")]
    KeyInUse,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<kassa_store::SqlxError> for PaymentError {
    fn from(error: kassa_store::SqlxError) -> PaymentError {
        PaymentError::Store(error.into())
    }
}

/// What applying an event did, for the webhook's answer and the delivery log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event moved the payment (and maybe money).
    Processed(PaymentStatus),
    /// The event did not fit the payment's state: recorded and ignored.
    Ignored(PaymentStatus),
}

impl Applied {
    /// The delivery log's name for what the event did.
    pub fn log_outcome(&self) -> &'static str {
        match self {
            Applied::Processed(_) => "processed",
            Applied::Ignored(_) => "ignored",
        }
    }

    /// The answer the provider gets for the event (and again for every repeat of it).
    pub fn answer(&self) -> EventAnswer {
        match *self {
            Applied::Processed(status) => EventAnswer::payment(true, status),
            Applied::Ignored(status) => EventAnswer::payment(false, status),
        }
    }
}

/// A started deposit: the payment, the answer stored for its key (sent as is) and how long
/// the provider took (for `Server-Timing`).
#[derive(Clone, Debug)]
pub struct PaymentStartOutcome {
    /// The payment as recorded.
    pub payment: PaymentRecord,
    /// The answer, exactly as stored for the `Idempotency-Key`.
    pub answer: Answer,
    /// Time spent waiting for the provider's answer.
    pub provider_elapsed: Duration,
}

/// Bytes of the SHA-256 digest a derived payment id keeps: 128 bits, as unguessable as a
/// random id.
const PAYMENT_ID_DIGEST_BYTES: usize = 16;
/// How often a provider event that found no payment looks again while this node is starting
/// that payment.
const START_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Longest a provider event about an unknown payment waits for this node's start of it;
/// after that it is answered 503 and the provider sends it again.
const START_WAIT_MAX: Duration = Duration::from_secs(2);

/// Payment ids this node is starting (between the provider call and the commit): a second
/// start with the same id is refused, and an early provider event may wait for the first.
#[derive(Clone, Default)]
struct StartsInFlight(Arc<Mutex<HashSet<PaymentId>>>);

/// Removes its payment id from [`StartsInFlight`] when the start ends, however it ends.
struct StartGuard {
    starts: StartsInFlight,
    payment_id: PaymentId,
}

impl StartsInFlight {
    fn begin(&self, payment_id: &PaymentId) -> Option<StartGuard> {
        let mut ids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ids.insert(payment_id.clone()).then(|| StartGuard {
            starts: self.clone(),
            payment_id: payment_id.clone(),
        })
    }

    fn contains(&self, payment_id: &PaymentId) -> bool {
        let ids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ids.contains(payment_id)
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        let mut ids = self.starts.0.lock().unwrap_or_else(|e| e.into_inner());
        ids.remove(&self.payment_id);
    }
}

/// The payments use cases; cheap to clone.
#[derive(Clone)]
pub struct PaymentsService {
    store: Store,
    providers: Arc<ProviderRegistry>,
    players: PlayerDirectory,
    feed: StatusFeed,
    amount_limits: kassa_core::AmountLimits,
    starts: StartsInFlight,
    payment_id_secret: Arc<OnceCell<String>>,
    routing: RoutingService,
    /// The pre-authorization decision; `None`: every deposit is let through undecided.
    risk: Option<RiskService>,
    /// Opens the `enhanced` check a risk step-up asks for; `None`: the refusal names no page.
    kyc: Option<crate::service::kyc::KycService>,
    /// National self-exclusion registers, asked before deposits (ADR 73).
    registers: Option<crate::service::registers::RegistersService>,
    /// How long a player's AML monitoring run waits for more events (ADR 87).
    aml_coalesce_ms: u64,
}

impl PaymentsService {
    /// Wires the service.
    pub fn new(
        store: Store,
        providers: Arc<ProviderRegistry>,
        players: PlayerDirectory,
        amount_limits: kassa_core::AmountLimits,
        routing: RoutingService,
    ) -> PaymentsService {
        let (feed, _) = broadcast::channel(1024);
        PaymentsService {
            store,
            providers,
            players,
            feed,
            amount_limits,
            starts: StartsInFlight::default(),
            payment_id_secret: Arc::default(),
            routing,
            risk: None,
            kyc: None,
            registers: None,
            aml_coalesce_ms: 0,
        }
    }

    /// Lets a player's AML monitoring run wait `coalesce_ms` after a capture, refund or
    /// chargeback, so that the player's next events join it (ADR 87).
    pub fn with_aml_coalescing(mut self, coalesce_ms: u64) -> PaymentsService {
        self.aml_coalesce_ms = coalesce_ms;
        self
    }

    /// Names the page of an `enhanced` check in a deposit refused for a risk step-up.
    pub fn with_kyc(mut self, kyc: crate::service::kyc::KycService) -> PaymentsService {
        self.kyc = Some(kyc);
        self
    }

    /// Asks the national self-exclusion register of the player's jurisdiction before a
    /// deposit (ADR 73).
    pub fn with_registers(
        mut self,
        registers: crate::service::registers::RegistersService,
    ) -> PaymentsService {
        self.registers = Some(registers);
        self
    }

    /// Decides on every deposit before a provider is asked (issue 19, ADR 62).
    pub fn with_risk(mut self, risk: RiskService) -> PaymentsService {
        self.risk = Some(risk);
        self
    }

    /// The live status feed of this node.
    pub fn feed(&self) -> &StatusFeed {
        &self.feed
    }

    /// The registry, for the webhook endpoint.
    pub fn provider(&self, name: &str) -> Option<Arc<dyn PaymentProvider>> {
        self.providers.get(name)
    }

    /// The route of a deposit (ADR 47): the routing document in force, decided over the
    /// merchant's accounts whose capabilities take the method, currency and country.
    async fn route(
        &self,
        merchant_id: &MerchantId,
        payment_id: &PaymentId,
        request: &NewPayment,
        risk_level: Option<&str>,
    ) -> Result<(Decision, DeclineClasses), PaymentError> {
        let routing = self.routing.current().await?;
        self.routing.prepare(&routing).await?;
        let currency = request.amount.currency;
        let eligible: Vec<&str> = self
            .providers
            .for_merchant(merchant_id.as_str())
            .filter(|(_, p)| {
                p.capabilities()
                    .supports(&request.method, currency, Some(&request.country))
            })
            .map(|(name, _)| name)
            .collect();
        let first_deposit = match routing.document.uses_first_deposit() {
            true => Some(
                !self
                    .store
                    .player_has_deposited(merchant_id, &request.player_id)
                    .await?,
            ),
            false => None,
        };
        let route_request = RouteRequest {
            payment_id: payment_id.as_str(),
            merchant: merchant_id.as_str(),
            country: &request.country,
            currency,
            method: &request.method,
            amount_minor: request.amount.amount_minor,
            risk_level,
            bin: None,
            device_class: Some(crate::metrics::device_class(request.device.as_deref())),
            first_deposit,
            now_unix_s: now_ms() / 1_000,
        };
        let mut decision = self
            .routing
            .decide(&routing, &route_request, &eligible)
            .map_err(|no_route| PaymentError::NoProvider {
                method: request.method.clone(),
                currency,
                country: request.country.clone(),
                reasons: no_route.reasons,
            })?;
        if let Some((account, _)) = &request.payment_method_token {
            decision.offer_first(account).map_err(|off_route| {
                PaymentError::TokenAccountOffRoute {
                    account: account.clone(),
                    reasons: off_route.reasons,
                }
            })?;
        }
        Ok((decision, routing.document.declines.clone()))
    }

    /// The checks of a deposit about to start, before any provider is asked, in one short
    /// transaction (ADRs 65, 74): the deposit limits (refused: nothing stored), then the
    /// risk decision, stored at once so that simultaneous starts count each other's
    /// attempts; within the limits and not refused, the amount is reserved. A refusal by
    /// risk (`decline`, or `step_up` where the rule set says so) keeps its decision and
    /// reserves nothing; a `review` goes ahead, flagged by its decision. A player without
    /// limits and a deployment without risk cost no transaction.
    async fn check_start(
        &self,
        merchant_id: &MerchantId,
        player: &PlayerRecord,
        request: &NewPayment,
        payment_id: &PaymentId,
    ) -> Result<(LimitCheck, Option<(Assessment, RiskDecisionRecord)>), PaymentError> {
        let risk_request = RiskRequest {
            kind: RiskKind::Deposit,
            player,
            amount: request.amount,
            method: &request.method,
            country: Some(&request.country),
            ip: request.ip.as_deref(),
            device: request.device_id.as_deref(),
            card: None,
        };
        // Two reads at once, on two connections: the limits, and what the risk decision
        // reads before its transaction.
        let prepared = async {
            match &self.risk {
                Some(risk) => Ok(Some((risk, risk.prepare(&risk_request).await?))),
                None => Ok::<_, StoreError>(None),
            }
        };
        let (limited, prepared) = tokio::try_join!(
            limits_in_force(&self.store, merchant_id, &player.player_id),
            prepared
        )?;
        if !limited && prepared.is_none() {
            return Ok((LimitCheck::NoLimit, None));
        }
        let start = LimitedStart {
            merchant_id,
            player_id: &player.player_id,
            payment_id: payment_id.as_str(),
            amount_minor: request.amount.amount_minor,
            currency: request.amount.currency,
        };
        let mut tx = match (limited, &prepared) {
            // Most likely the decision alone, committed without waiting (below), its locks
            // taken as it begins.
            (false, Some((risk, prepared))) => {
                let keys = risk.lock_keys(prepared, &risk_request);
                self.store.begin_risk_decision(&keys).await?
            }
            _ => self.store.begin_grouped().await?,
        };
        if limited {
            if let Err(refused) = check_within_limits(&self.store, &mut tx, &start).await? {
                tx.rollback().await?;
                crate::metrics::record_limit_refusal(LimitKind::Deposit);
                return Err(PaymentError::LimitExceeded(refused));
            }
        }
        let decided = match prepared {
            Some((risk, prepared)) => Some(
                risk.decide_in(&mut tx, prepared, &risk_request, payment_id.as_str())
                    .await?,
            ),
            None => None,
        };
        let refusal = decided
            .as_ref()
            .and_then(|(assessment, record)| assessment.refusal(RiskKind::Deposit, &record.id));
        let limit = match limited && refusal.is_none() {
            true => {
                reserve(&self.store, &mut tx, &start).await?;
                LimitCheck::Reserved
            }
            false => LimitCheck::NoLimit,
        };
        match limited || refusal.is_some() {
            // A refusal is answered at once, and what reads after the answer (a backtest,
            // the player's next start) must find its decision: on SQLite a commit that does
            // not wait is not yet visible to other connections (ADR 79).
            true => tx.commit().await?,
            // Nothing but the decision: no need to wait for the disk (ADRs 74, 79).
            false => tx.commit_without_waiting_for_disk().await?,
        }
        match refusal {
            Some(refusal) => Err(self.refused_by_risk(player, refusal).await),
            None => Ok((limit, decided)),
        }
    }

    /// The error of a start refused by risk: a step-up names the page of the `enhanced`
    /// check the player verifies on.
    async fn refused_by_risk(&self, player: &PlayerRecord, refusal: RiskRefusal) -> PaymentError {
        if refusal.outcome != kassa_core::risk::RiskOutcome::StepUp {
            return PaymentError::Risk(refusal);
        }
        let verification = match &self.kyc {
            Some(kyc) => {
                let (level, reason) = (KycLevel::Enhanced, CheckReason::RiskStepUp);
                kyc.verification_for(player, level, reason).await
            }
            None => None,
        };
        PaymentError::StepUp {
            refusal,
            verification,
        }
    }

    /// The payment, locked for the rest of `tx`, or 404.
    async fn locked_payment(
        &self,
        tx: &mut Tx,
        payment_id: &PaymentId,
    ) -> Result<PaymentRecord, PaymentError> {
        self.store
            .lock_payment(tx, payment_id)
            .await?
            .ok_or_else(|| payment_not_found(payment_id))
    }

    /// The provider a payment was made through.
    fn provider_of(
        &self,
        payment: &PaymentRecord,
    ) -> Result<Arc<dyn PaymentProvider>, PaymentError> {
        self.provider(&payment.provider)
            .ok_or_else(|| PaymentError::ProviderMissing {
                payment_id: payment.id.to_string(),
                provider: payment.provider.clone(),
            })
    }

    /// Starts a deposit in one commit (ADR 0034): asks the provider first, then records the
    /// claimed `Idempotency-Key`, the payment, the provider's answer and the stored final
    /// answer in one transaction. The payment id comes from the key, so a second attempt
    /// with the key presents the provider the same payment; on this node a second attempt
    /// waits for nothing and is told the key is in use. A provider that could not be reached
    /// leaves nothing behind but the start's risk decision (an attempt, ADR 74): a retry
    /// with the key starts afresh (with the same payment id, its decision replacing that one).
    pub async fn init(
        &self,
        merchant_id: &MerchantId,
        request: NewPayment,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<PaymentStartOutcome, PaymentError> {
        let player: PlayerRecord = self.players.get(merchant_id, &request.player_id).await?;
        PlayerError::check_currency(&player.player_id, player.currency, request.amount.currency)?;
        PlayerError::check_may_play(&player.player_id, player.account_status)?;
        PlayerError::check_age(&player, today_utc())?;
        if let Some(registers) = &self.registers {
            registers.before_deposit(merchant_id, &player).await?;
        }
        let payment_id = match claim {
            Some(claim) => self.payment_id_for(merchant_id, &claim.key).await?,
            None => PaymentId::generate(),
        };
        let (limit, risk) = self
            .check_start(merchant_id, &player, &request, &payment_id)
            .await?;
        let started = self
            .start_within_limits(
                merchant_id,
                request,
                claim,
                (payment_id.clone(), limit, risk),
            )
            .await;
        if started.is_err() && limit == LimitCheck::Reserved {
            // Nothing recorded (or recorded as failed, which released it already): the
            // amount is free again at once rather than when the reservation expires.
            self.release_reservation(&payment_id).await;
        }
        started
    }

    /// The start after its checks: routing, the provider, and the start's one transaction
    /// (which ends a reservation the checks made).
    async fn start_within_limits(
        &self,
        merchant_id: &MerchantId,
        request: NewPayment,
        claim: Option<&IdempotencyClaim>,
        (payment_id, limit, risk): (
            PaymentId,
            LimitCheck,
            Option<(Assessment, RiskDecisionRecord)>,
        ),
    ) -> Result<PaymentStartOutcome, PaymentError> {
        // The routing document's `risk_levels` condition reads the risk outcome.
        let risk_level = risk.as_ref().map(|(a, _)| a.decision.outcome.as_str());
        let (decision, declines) = self
            .route(merchant_id, &payment_id, &request, risk_level)
            .await?;
        let Some(_in_flight) = self.starts.begin(&payment_id) else {
            return Err(lose_key(claim));
        };
        let token = request.payment_method_token.clone();
        let mut payment = new_payment_record(payment_id, merchant_id, "", request);
        payment.risk = risk.as_ref().map(|(assessment, _)| assessment.json());
        let offered = cascade::offer(
            &self.routing,
            &self.providers,
            &decision.candidates,
            &declines,
            &payment_request(&payment),
            token
                .as_ref()
                .map(|(account, token)| (account.as_str(), token)),
        )
        .await;
        crate::metrics::record_routing(&decision, &offered.attempts);
        let start = offered.asked.as_ref().ok().map(|started| &started.start);
        crate::metrics::record_threeds_challenge(offered.provider.name(), start, false);
        payment.provider = offered.provider.name().to_string();
        payment.routing = Some(routing_record(&decision, &offered.attempts));
        payment.routing_arm = decision.arm.map(|arm| arm.as_str().to_string());
        let (asked, provider_elapsed) = (offered.asked, offered.provider_elapsed);
        let refusal = match &asked {
            Ok(_) => None,
            Err(error) => {
                let refusal = provider_failed(error.clone());
                if Answer::error(&refusal, &crate::trace::current()).status >= 500 {
                    // Nothing recorded and the key never claimed: a retry starts afresh.
                    return Err(refusal);
                }
                Some(refusal)
            }
        };
        let answer = self
            .record_init(&mut payment, asked, refusal.as_ref(), claim, limit)
            .await?;
        self.publish(&payment);
        crate::metrics::record_payment_started(&payment, provider_elapsed);
        self.record_fee(&payment, PaymentStatus::Initiated).await;
        match refusal {
            Some(refusal) => Err(refusal),
            None => Ok(PaymentStartOutcome {
                payment,
                answer,
                provider_elapsed,
            }),
        }
    }

    /// The start's one transaction, after the provider answered (ADR 34). What it writes is
    /// decided first, in memory: the payment as the provider's answer left it, its history
    /// and outbox events, and the start's answer. Then two steps: the key claimed with that
    /// final answer (a racing twin with the key waits for this transaction and then loses),
    /// and the payment with its history and events (one statement on PostgreSQL). Shares
    /// its durable commit with concurrent units on SQLite (ADR 39); no network I/O inside.
    async fn record_init(
        &self,
        payment: &mut PaymentRecord,
        asked: Result<PaymentStarted, ProviderError>,
        refusal: Option<&PaymentError>,
        claim: Option<&IdempotencyClaim>,
        limit: LimitCheck,
    ) -> Result<Answer, PaymentError> {
        let (answer, changes) = decide_start(payment, asked, refusal);
        let created = HistoryEvent {
            source: "api",
            event: "created",
            from: PaymentStatus::Initiated.as_str(),
            to: Some(PaymentStatus::Initiated.as_str()),
            actor: None,
            detail: None,
        };
        let history: Vec<HistoryEvent> = changes
            .iter()
            .map(|(change, name, detail)| change.history("api", name, detail.as_deref()))
            .collect();
        let outbox: Vec<PaymentOutboxEvent> = changes
            .iter()
            .filter_map(|(change, ..)| change.outbox_event())
            .collect();
        let mut tx = self.store.begin_grouped().await?;
        if let Some(claim) = claim {
            if !claim.claim_answered_in(&mut tx, &answer).await? {
                // Waits for the commit of a unit that took the key, if it is open (ADR 39).
                tx.rollback().await?;
                return Err(lose_key(Some(claim)));
            }
        }
        self.store
            .insert_started_payment(&mut tx, payment, created, &history, &outbox)
            .await?;
        if limit == LimitCheck::Reserved {
            // From this commit on the payment's own row counts against the limits.
            self.store
                .release_deposit_reservation(&mut tx, payment.id.as_str())
                .await?;
        }
        tx.commit().await?;
        if let Some(claim) = claim {
            claim.mark_committed();
        }
        Ok(answer)
    }

    /// Ends the limit reservation of a start that failed before its record; a failure here
    /// only delays the amount's return until the reservation expires.
    async fn release_reservation(&self, payment_id: &PaymentId) {
        let released = async {
            let mut tx = self.store.begin().await?;
            self.store
                .release_deposit_reservation(&mut tx, payment_id.as_str())
                .await?;
            tx.commit().await.map_err(StoreError::from)
        };
        if let Err(error) = released.await {
            tracing::warn!(%payment_id, %error, "a deposit limit reservation stays until it expires");
        }
    }

    /// The payment id of the deposit started with `key`: the same for every attempt with the
    /// key on every node, unguessable without the deployment's secret (ADR 0034).
    async fn payment_id_for(
        &self,
        merchant_id: &MerchantId,
        key: &str,
    ) -> Result<PaymentId, StoreError> {
        let secret = self
            .payment_id_secret
            .get_or_try_init(|| async {
                let fresh = ids::generate("pis");
                self.store.deployment_secret("payment_ids", &fresh).await
            })
            .await?;
        let mut hasher = Sha256::new();
        for part in [secret.as_str(), merchant_id.as_str(), key] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let id = format!(
            "{}_{}",
            PaymentId::PREFIX,
            hex::encode(&digest[..PAYMENT_ID_DIGEST_BYTES])
        );
        Ok(PaymentId::parse(&id).expect("the prefix and hex digits make a payment id"))
    }

    /// Waits (at most `wait`) while this node is starting the payment `payment_id`, so that a
    /// provider event that overtook the start's commit finds the payment.
    pub async fn wait_for_start(&self, payment_id: &PaymentId, wait: Duration) {
        let deadline = Instant::now() + wait;
        while self.starts.contains(payment_id) && Instant::now() < deadline {
            tokio::time::sleep(START_POLL_INTERVAL).await;
        }
    }

    /// A merchant's payment, or 404.
    pub async fn get(
        &self,
        merchant_id: &MerchantId,
        payment_id: &PaymentId,
    ) -> Result<PaymentRecord, PaymentError> {
        self.store
            .get_payment(merchant_id, payment_id)
            .await?
            .ok_or_else(|| payment_not_found(payment_id))
    }

    /// Cancels a payment the player has not completed. Cancelling a cancelled payment
    /// answers it again: a repeated cancel is not a conflict.
    pub async fn cancel(
        &self,
        merchant_id: &MerchantId,
        payment_id: &PaymentId,
    ) -> Result<PaymentRecord, PaymentError> {
        let payment = self.get(merchant_id, payment_id).await?;
        if payment.status == PaymentStatus::Cancelled {
            return Ok(payment);
        }
        if !matches!(
            payment.status,
            PaymentStatus::Initiated | PaymentStatus::Pending
        ) {
            return Err(PaymentError::NotCancellable {
                status: payment.status,
            });
        }
        if let Some(reference) = &payment.provider_reference {
            let provider = self.provider_of(&payment)?;
            provider.cancel(reference).await.map_err(provider_failed)?;
        }
        let mut tx = self.store.begin().await?;
        let mut payment = self.locked_payment(&mut tx, payment_id).await?;
        let was = payment.status;
        let applied = self
            .transition(
                &mut tx,
                &mut payment,
                PaymentEvent::Cancelled,
                "api",
                "cancel",
                None,
            )
            .await?;
        tx.commit().await?;
        self.publish(&payment);
        crate::metrics::record_payment_change(&payment, was);
        match applied {
            // Read back, so this answer and a repeat's carry the same stored `updated_at`.
            Applied::Processed(_) => self.get(merchant_id, payment_id).await,
            Applied::Ignored(status) => Err(PaymentError::CancelOvertaken { status }),
        }
    }

    /// Applies a verified provider event about a payment. Returns the answer for the webhook
    /// sender; a duplicate `event_id` answers what the first delivery was answered.
    /// With `log`, the delivery's log row is written in the same transaction, its outcome
    /// filled in, so an applied event costs one commit (ADR 0034).
    pub async fn apply_provider_event(
        &self,
        provider: &str,
        event: &ProviderPaymentEvent,
        source: &str,
        log: Option<&WebhookDelivery>,
    ) -> Result<Applied, ProviderEventError> {
        retrying(|| self.try_apply_provider_event(provider, event, source, log, None)).await
    }

    async fn try_apply_provider_event(
        &self,
        provider: &str,
        event: &ProviderPaymentEvent,
        source: &str,
        log: Option<&WebhookDelivery>,
        reversal_advice_key: Option<&str>,
    ) -> Result<Applied, ProviderEventError> {
        let not_found = || ProviderEventError::PaymentNotFound {
            payment_id: event.payment_id.clone(),
        };
        // An id that is not a payment id names no payment of ours.
        let payment_id = PaymentId::parse(&event.payment_id).map_err(|_| not_found())?;
        let known = self
            .find_started(&payment_id)
            .await?
            .ok_or_else(not_found)?;
        // A later soft decline may cascade (ADR 56); the document is read before the
        // transaction, and only for declines.
        let declines = match event.status {
            PaymentEventStatus::Declined => {
                Some(self.routing.current().await?.document.declines.clone())
            }
            _ => None,
        };
        // Resolve the player's accounts before the write transaction: on SQLite the writer is
        // one connection, and a lookup that needs it inside the transaction would wait forever.
        let wallet = self
            .players
            .wallet(&known.merchant_id, &known.player_id)
            .await?;
        // Shares its durable commit with concurrent units on SQLite (ADR 39).
        let mut tx = self.store.begin_grouped().await?;
        let mut payment = self
            .store
            .lock_payment(&mut tx, &payment_id)
            .await?
            .ok_or_else(not_found)?;
        check_event_matches(provider, &payment, event)?;
        if let Some(key) = reversal_advice_key {
            // The answer is recorded exactly when its reversal is called off (ADR 49).
            let cancelled = self
                .store
                .cancel_unstarted_job_on(&mut tx, crate::service::acquirer::REVERSAL_ADVICE, key)
                .await?;
            if !cancelled {
                tx.rollback().await?;
                return Err(ProviderEventError::ReversalStarted);
            }
        }
        let was = payment.status;
        if let Some(card) = &event.card {
            self.record_card(&mut tx, &mut payment, card, source, Some(&event.event_id))
                .await?;
        }
        let cascades = declines
            .as_ref()
            .is_some_and(|declines| later_cascade::cascades_later(&payment, event, declines));
        let (applied, posting) = match cascades {
            true => {
                self.defer_to_cascade(&mut tx, &payment, event, source)
                    .await?;
                (Applied::Processed(payment.status), None)
            }
            false => {
                self.apply_event(&mut tx, &mut payment, event, source)
                    .await?
            }
        };
        if !self
            .record_event_answer(&mut tx, provider, event, &applied, log)
            .await?
        {
            // Rolls this delivery's work back. On SQLite with group commit the row it met
            // may be another unit's of the same open commit: wait for that commit, so that
            // the pipeline then finds the first delivery's answer (ADR 39).
            tx.rollback().await?;
            return Err(ProviderEventError::AlreadyAnswered {
                event_id: event.event_id.clone(),
            });
        }
        self.post_event(&mut tx, &payment, &wallet, event, posting)
            .await?;
        tx.commit().await?;
        self.publish(&payment);
        let processed = matches!(applied, Applied::Processed(_));
        crate::metrics::record_payment_event(&payment, was, event.status, processed);
        crate::metrics::record_threeds_challenge(
            &payment.provider,
            None,
            processed
                && event.status == PaymentEventStatus::Captured
                && event.three_ds_challenged == Some(true),
        );
        self.record_fee(&payment, was).await;
        Ok(applied)
    }

    /// Records the card that paid on the locked payment, as a provider reported it or as
    /// the card page saw it, with a history row that names it (country, scheme, last four;
    /// ADR 84).
    async fn record_card(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        card: &ReportedCard,
        source: &str,
        event_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let card = PaymentCard {
            country: card.country.clone(),
            brand: card.brand.clone(),
            last4: card.last4.clone(),
        };
        self.store
            .record_payment_card(tx, &payment.id, &card)
            .await?;
        let detail = json!({
            "event_id": event_id, "country": card.country, "brand": card.brand,
            "last4": card.last4,
        })
        .to_string();
        let history = HistoryEvent {
            source,
            event: "card_reported",
            from: payment.status.as_str(),
            to: Some(payment.status.as_str()),
            actor: None,
            detail: Some(&detail),
        };
        self.store
            .insert_payment_event(tx, &payment.id, history)
            .await?;
        payment.card = Some(card);
        Ok(())
    }

    /// The payment, waiting a little for its start to commit when this node is still
    /// recording it: the event may have overtaken the start's commit.
    async fn find_started(
        &self,
        payment_id: &PaymentId,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        if let Some(known) = self.store.find_payment(payment_id).await? {
            return Ok(Some(known));
        }
        self.wait_for_start(payment_id, START_WAIT_MAX).await;
        self.store.find_payment(payment_id).await
    }

    /// Applies the event's status to the locked payment, and returns the money it moves, for
    /// [`post_event`](Self::post_event) to post last. A refund's event posts its own.
    async fn apply_event(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        event: &ProviderPaymentEvent,
        source: &str,
    ) -> Result<(Applied, Option<EventPosting>), ProviderEventError> {
        let detail = json!({ "event_id": event.event_id, "reason": event.reason, "refund_id": event.refund_id, "dispute_id": event.dispute_id }).to_string();
        let (payment_event, name) = match event.status {
            // Recorded with the card before this (`record_card`); the status stays.
            PaymentEventStatus::CardReported => {
                return Ok((Applied::Processed(payment.status), None))
            }
            PaymentEventStatus::Refunded => {
                let applied = self
                    .apply_refund(tx, payment, event, source, &detail)
                    .await?;
                return Ok((applied, None));
            }
            PaymentEventStatus::RefundFailed => {
                let applied = self
                    .apply_refund_failure(tx, payment, event, source, &detail)
                    .await?;
                return Ok((applied, None));
            }
            PaymentEventStatus::Chargeback => {
                (PaymentEvent::Chargeback, DisputeStatus::Open.as_str())
            }
            PaymentEventStatus::DisputeWon => {
                (PaymentEvent::DisputeWon, DisputeStatus::Won.as_str())
            }
            PaymentEventStatus::Authorized => (PaymentEvent::Authorized, event.status.as_str()),
            PaymentEventStatus::Captured => (PaymentEvent::Captured, event.status.as_str()),
            PaymentEventStatus::Declined => (PaymentEvent::Declined, event.status.as_str()),
            PaymentEventStatus::Failed => (PaymentEvent::Failed, event.status.as_str()),
            PaymentEventStatus::Cancelled => (PaymentEvent::Cancelled, event.status.as_str()),
            PaymentEventStatus::DisputeLost => (PaymentEvent::DisputeLost, event.status.as_str()),
        };
        if matches!(
            event.status,
            PaymentEventStatus::Declined | PaymentEventStatus::Failed
        ) {
            payment.failure_reason = event.reason.clone().or(payment.failure_reason.take());
        }
        let was = payment.status;
        let applied = self
            .transition(tx, payment, payment_event, source, name, Some(&detail))
            .await?;
        let processed = matches!(applied, Applied::Processed(_));
        let posting = match event.status {
            PaymentEventStatus::Chargeback if processed => {
                self.queue_aml(tx, payment, MonitoredEvent::ChargedBack)
                    .await?;
                self.dispute_event(tx, payment, event, "chargeback.created")
                    .await?;
                Some(EventPosting::Chargeback)
            }
            PaymentEventStatus::DisputeWon if processed => {
                self.dispute_event(tx, payment, event, "dispute.won")
                    .await?;
                Some(EventPosting::ChargebackReversal)
            }
            PaymentEventStatus::DisputeLost if processed => {
                self.dispute_event(tx, payment, event, "dispute.lost")
                    .await?;
                None
            }
            PaymentEventStatus::Chargeback | PaymentEventStatus::DisputeWon => None,
            _ if !was.is_captured_family() && payment.status.is_captured_family() => {
                self.queue_aml(tx, payment, MonitoredEvent::Captured)
                    .await?;
                Some(EventPosting::Credit)
            }
            _ => None,
        };
        Ok((applied, posting))
    }

    /// Posts the money an applied event moves, inside its transaction. Called after the
    /// event's other writes: the postings lock the player's and a clearing account until the
    /// commit, and other events of that player or account wait for them (perf-log note 53).
    async fn post_event(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        wallet: &WalletAccounts,
        event: &ProviderPaymentEvent,
        posting: Option<EventPosting>,
    ) -> Result<(), ProviderEventError> {
        match posting {
            Some(EventPosting::Credit) => self.credit_deposit(tx, payment, wallet).await,
            Some(EventPosting::Chargeback) => {
                self.post_chargeback(tx, payment, wallet, event).await
            }
            Some(EventPosting::ChargebackReversal) => {
                self.reverse_chargeback(tx, payment, event).await
            }
            None => Ok(()),
        }
    }

    /// Stores the event's answer (the dedupe row) and its delivery-log row in the
    /// transaction of its effect; `false` when another delivery of the event answered
    /// first.
    async fn record_event_answer(
        &self,
        tx: &mut Tx,
        provider: &str,
        event: &ProviderPaymentEvent,
        applied: &Applied,
        log: Option<&WebhookDelivery>,
    ) -> Result<bool, ProviderEventError> {
        let answer = applied.answer().to_json();
        if !self
            .store
            .insert_webhook_event(tx, provider, &event.event_id, 200, &answer)
            .await?
        {
            return Ok(false);
        }
        if let Some(log) = log {
            let log = WebhookDelivery {
                outcome: applied.log_outcome().to_string(),
                http_status: 200,
                ..log.clone()
            };
            kassa_store::payments::insert_webhook_delivery_in(tx, &log).await?;
        }
        Ok(true)
    }

    /// Credits the player once for a captured deposit: the txn id is the payment's, so even a
    /// second `captured` (another event id) finds it already posted.
    async fn credit_deposit(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        player: &WalletAccounts,
    ) -> Result<(), ProviderEventError> {
        let clearing = self
            .store
            .ledger_account(
                tx,
                payment.merchant_id.as_str(),
                AccountKind::ProviderClearing,
                &movements::clearing_owner(&payment.provider, payment.id.as_str()),
                payment.amount.currency,
            )
            .await?;
        let request = movements::deposit_captured(
            payment_ref(payment),
            payment.amount,
            player.cash,
            clearing,
        );
        let outcome = self
            .store
            .apply_ledger_requests(tx, payment.merchant_id.as_str(), &[request])
            .await?;
        match &outcome[0] {
            Outcome::Recorded(entry) if entry.status == EntryStatus::Posted => Ok(()),
            Outcome::Replayed(_) => Ok(()),
            other => Err(unexpected_ledger(other).into()),
        }
    }

    /// The refund an event names, checked against the event's amount.
    async fn refund_of_event(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        event: &ProviderPaymentEvent,
    ) -> Result<RefundRecord, ProviderEventError> {
        let refunds = self.store.refunds_of(tx, &payment.id).await?;
        let refund = event
            .refund_id
            .as_deref()
            .and_then(|id| refunds.into_iter().find(|r| r.id.as_str() == id))
            .ok_or(ProviderEventError::Mismatch(
                "the refund_id is not a refund of this payment",
            ))?;
        if refund.amount.amount_minor != event.amount_minor {
            return Err(ProviderEventError::Mismatch(
                "the amount differs from the refund's",
            ));
        }
        Ok(refund)
    }

    /// Records, without effect, a refund event for a refund already settled or failed.
    async fn ignore_refund_event(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        name: &'static str,
        source: &str,
        detail: &str,
    ) -> Result<Applied, ProviderEventError> {
        let history = HistoryEvent {
            source,
            event: name,
            from: payment.status.as_str(),
            to: None,
            actor: None,
            detail: Some(detail),
        };
        self.store
            .insert_payment_event(tx, &payment.id, history)
            .await?;
        Ok(Applied::Ignored(payment.status))
    }

    /// A refund the provider accepted and then refused: its hold goes back to the player's
    /// cash (the same movement as a refund refused at once), the refund fails, the payment
    /// keeps its status.
    async fn apply_refund_failure(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        event: &ProviderPaymentEvent,
        source: &str,
        detail: &str,
    ) -> Result<Applied, ProviderEventError> {
        let mut refund = self.refund_of_event(tx, payment, event).await?;
        if !refund.status.holds_money() {
            return self
                .ignore_refund_event(tx, payment, "refund_failed", source, detail)
                .await;
        }
        let void = movements::refund_failed(&refund.id, payment_ref(payment));
        let outcome = self
            .store
            .apply_ledger_requests(tx, payment.merchant_id.as_str(), &[void])
            .await?;
        if !matches!(&outcome[0], Outcome::Recorded(e) if e.status == EntryStatus::Posted) {
            return Err(unexpected_ledger(&outcome[0]).into());
        }
        refund.status = RefundStatus::Failed;
        refund.failure_reason = event.reason.clone().or(Some("refused_by_provider".into()));
        self.store
            .update_refund(
                tx,
                &refund.id,
                RefundStatus::Failed,
                refund.failure_reason.as_deref(),
            )
            .await?;
        self.refund_event(tx, &refund, "refund.failed").await?;
        let history = HistoryEvent {
            source,
            event: "refund_failed",
            from: payment.status.as_str(),
            to: Some(payment.status.as_str()),
            actor: None,
            detail: Some(detail),
        };
        self.store
            .insert_payment_event(tx, &payment.id, history)
            .await?;
        Ok(Applied::Processed(payment.status))
    }

    async fn apply_refund(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        event: &ProviderPaymentEvent,
        source: &str,
        detail: &str,
    ) -> Result<Applied, ProviderEventError> {
        let refund = self.refund_of_event(tx, payment, event).await?;
        if !refund.status.holds_money() {
            return self
                .ignore_refund_event(tx, payment, "refunded", source, detail)
                .await;
        }
        let refunded = Money::new(
            payment.refunded.amount_minor + refund.amount.amount_minor,
            payment.amount.currency,
        );
        let full = refunded.amount_minor >= payment.amount.amount_minor;
        let applied = self
            .transition(
                tx,
                payment,
                PaymentEvent::Refunded { full },
                source,
                "refunded",
                Some(detail),
            )
            .await?;
        if let Applied::Processed(_) = applied {
            let post = movements::refund_settled(&refund.id, payment_ref(payment));
            let outcome = self
                .store
                .apply_ledger_requests(tx, payment.merchant_id.as_str(), &[post])
                .await?;
            if !matches!(&outcome[0], Outcome::Recorded(e) if e.status == EntryStatus::Posted) {
                return Err(unexpected_ledger(&outcome[0]).into());
            }
            payment.refunded = refunded;
            self.store.update_payment(tx, payment).await?;
            self.store
                .update_refund(tx, &refund.id, RefundStatus::Succeeded, None)
                .await?;
            let succeeded = RefundRecord {
                status: RefundStatus::Succeeded,
                ..refund.clone()
            };
            self.refund_event(tx, &succeeded, "refund.succeeded")
                .await?;
            self.queue_aml(tx, payment, MonitoredEvent::Refunded)
                .await?;
        }
        Ok(applied)
    }

    /// Queues the AML scenarios' run after `event` in the event's transaction: the run
    /// itself is a job, off the webhook's path.
    async fn queue_aml(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        event: MonitoredEvent,
    ) -> Result<(), StoreError> {
        let subject = payment.id.as_str();
        crate::service::aml::queue_monitoring(
            &self.store,
            tx,
            event,
            (&payment.merchant_id, &payment.player_id),
            subject,
            self.aml_coalesce_ms,
        )
        .await
    }

    /// Takes a chargeback from the player's cash as far as it goes and books the rest as the
    /// operator's loss.
    async fn post_chargeback(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        player: &WalletAccounts,
        event: &ProviderPaymentEvent,
    ) -> Result<(), ProviderEventError> {
        let merchant = payment.merchant_id.as_str();
        let clearing = self
            .store
            .ledger_account(
                tx,
                merchant,
                AccountKind::ProviderClearing,
                &movements::clearing_owner(&payment.provider, payment.id.as_str()),
                payment.amount.currency,
            )
            .await?;
        let losses = self
            .store
            .ledger_account(
                tx,
                merchant,
                AccountKind::ChargebackLosses,
                "",
                payment.amount.currency,
            )
            .await?;
        let cash = self
            .store
            .lock_balances(tx, &[player.cash])
            .await?
            .get(&player.cash)
            .copied()
            .unwrap_or(0);
        let dispute_id = dispute_id_of(event);
        let dispute = DisputeRef {
            payment: payment_ref(payment),
            dispute_id: dispute_id.as_ref(),
        };
        let accounts = ChargebackAccounts {
            player_cash: player.cash,
            losses,
            clearing,
        };
        let amount = Money::new(event.amount_minor, payment.amount.currency);
        let requests = movements::chargeback(dispute, amount, cash, &accounts);
        let outcomes = self
            .store
            .apply_ledger_requests(tx, merchant, &requests)
            .await?;
        for outcome in &outcomes {
            if !matches!(outcome, Outcome::Recorded(e) if e.status == EntryStatus::Posted) {
                return Err(unexpected_ledger(outcome).into());
            }
        }
        Ok(())
    }

    /// A won dispute returns the money where the chargeback took it from.
    async fn reverse_chargeback(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        event: &ProviderPaymentEvent,
    ) -> Result<(), ProviderEventError> {
        let dispute_id = dispute_id_of(event);
        let requests = movements::dispute_won(DisputeRef {
            payment: payment_ref(payment),
            dispute_id: dispute_id.as_ref(),
        });
        let outcomes = self
            .store
            .apply_ledger_requests(tx, payment.merchant_id.as_str(), &requests)
            .await?;
        for outcome in &outcomes {
            let fine = match outcome {
                Outcome::Recorded(e) => matches!(
                    e.status,
                    EntryStatus::Posted | EntryStatus::OriginalNotFound | EntryStatus::NoEffect
                ),
                _ => false,
            };
            if !fine {
                return Err(unexpected_ledger(outcome).into());
            }
        }
        Ok(())
    }

    /// Starts a refund: the amount is held from the player's cash at once (402 when they no
    /// longer have it), then the provider is asked; its `refunded` webhook posts the hold.
    /// With a claimed `Idempotency-Key`, the hold's transaction stores the answer too, so no
    /// hold is ever left without one; a provider's refusal replaces it in the transaction
    /// that releases the hold.
    pub async fn refund(
        &self,
        merchant_id: &MerchantId,
        payment_id: &PaymentId,
        amount: Option<&str>,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<RefundRecord, PaymentError> {
        let known = self.get(merchant_id, payment_id).await?;
        let amount_minor = amount
            .map(|text| {
                self.amount_limits
                    .parse_positive(known.amount.currency, text)
            })
            .transpose()?;
        let player = self.players.wallet(merchant_id, &known.player_id).await?;
        let (payment, refund) = self
            .hold_refund(merchant_id, payment_id, amount_minor, &player, claim)
            .await?;
        self.send_refund(payment, refund, claim).await
    }

    /// The refund's first transaction: checks, the hold, the refund row and (staged) answer.
    async fn hold_refund(
        &self,
        merchant_id: &MerchantId,
        payment_id: &PaymentId,
        amount_minor: Option<i64>,
        player: &WalletAccounts,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<(PaymentRecord, RefundRecord), PaymentError> {
        let mut tx = self.store.begin().await?;
        let payment = self
            .store
            .lock_payment(&mut tx, payment_id)
            .await?
            .filter(|p| &p.merchant_id == merchant_id)
            .ok_or_else(|| payment_not_found(payment_id))?;
        if !matches!(
            payment.status,
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded
        ) {
            return Err(PaymentError::NotRefundable {
                status: payment.status,
            });
        }
        if !self.provider_of(&payment)?.capabilities().refunds {
            return Err(PaymentError::RefundsUnsupported {
                provider: payment.provider.clone(),
            });
        }
        let pending_minor: i64 = self
            .store
            .refunds_of(&mut tx, payment_id)
            .await?
            .iter()
            .filter(|r| r.status.holds_money())
            .map(|r| r.amount.amount_minor)
            .sum();
        let refundable_minor =
            payment.amount.amount_minor - payment.refunded.amount_minor - pending_minor;
        let amount_minor = amount_minor.unwrap_or(refundable_minor);
        if amount_minor <= 0 || amount_minor > refundable_minor {
            return Err(PaymentError::RefundTooLarge {
                refundable: Money::new(refundable_minor.max(0), payment.amount.currency),
            });
        }
        let refund = RefundRecord {
            id: RefundId::generate(),
            merchant_id: merchant_id.clone(),
            payment_id: payment.id.clone(),
            amount: Money::new(amount_minor, payment.amount.currency),
            status: RefundStatus::Pending,
            failure_reason: None,
            created_at_ms: now_ms(),
        };
        let hold = ProviderHold {
            merchant_id,
            provider: &payment.provider,
            wallet: player,
            hold_for: HoldFor::Refund {
                refund_id: &refund.id,
                payment_id: &refund.payment_id,
            },
            player_id: &payment.player_id,
            amount: refund.amount,
        };
        if hold.apply(&self.store, &mut tx).await?.is_err() {
            return Err(PaymentError::RefundNotCovered);
        }
        self.store.insert_refund(&mut tx, &refund).await?;
        self.refund_event(&mut tx, &refund, "refund.created")
            .await?;
        let detail = json!({ "refund_id": refund.id, "amount_minor": amount_minor }).to_string();
        let requested = HistoryEvent {
            source: "api",
            event: "refund_requested",
            from: payment.status.as_str(),
            to: Some(payment.status.as_str()),
            actor: None,
            detail: Some(&detail),
        };
        self.store
            .insert_payment_event(&mut tx, payment_id, requested)
            .await?;
        if let Some(claim) = claim {
            let answer = Answer::of(201, &refund_view(&refund));
            claim.stage_in(&mut tx, &answer).await?;
        }
        tx.commit().await?;
        Ok((payment, refund))
    }

    /// The refund's second step: asks the provider; its acceptance makes the staged answer
    /// final, its refusal releases the hold and answers the refusal instead.
    async fn send_refund(
        &self,
        payment: PaymentRecord,
        mut refund: RefundRecord,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<RefundRecord, PaymentError> {
        let provider = self.provider_of(&payment)?;
        let mut sent = provider
            .refund(&RefundRequest {
                provider_reference: payment.provider_reference.clone().unwrap_or_default(),
                refund_id: refund.id.to_string(),
                amount_minor: refund.amount.amount_minor,
                currency: refund.amount.currency,
            })
            .await;
        if let Ok(accepted) = &sent {
            if accepted.settled {
                match self
                    .settle_refund(&payment, refund.clone(), accepted, claim)
                    .await?
                {
                    Some(settled) => return Ok(settled),
                    None => {
                        tracing::warn!(refund_id = %refund.id, "refund answer came after its reversal advice started; the refund fails");
                        sent = Err(ProviderError::Unavailable("the refund is being reversed: its answer came after its reversal advice started".into()));
                    }
                }
            }
        }
        let mut tx = self.store.begin().await?;
        let outcome = match sent {
            Ok(_) => {
                if let Some(claim) = claim {
                    let answer = Answer::of(201, &refund_view(&refund));
                    claim.complete_in(&mut tx, &answer).await?;
                }
                Ok(refund)
            }
            Err(error) => {
                let void = movements::refund_failed(&refund.id, payment_ref(&payment));
                self.store
                    .apply_ledger_requests(&mut tx, payment.merchant_id.as_str(), &[void])
                    .await?;
                refund.status = RefundStatus::Failed;
                refund.failure_reason = Some(provider_failure_code(&error));
                let reason = refund.failure_reason.as_deref();
                self.store
                    .update_refund(&mut tx, &refund.id, RefundStatus::Failed, reason)
                    .await?;
                self.refund_event(&mut tx, &refund, "refund.failed").await?;
                let error = provider_failed(error);
                answer_refusal(claim, &mut tx, &error).await?;
                Err(error)
            }
        };
        tx.commit().await?;
        if let Some(claim) = claim {
            claim.mark_committed();
        }
        if outcome.is_err() {
            crate::metrics::record_refund(&payment.provider, "failed");
        }
        outcome
    }

    /// Charges the card submitted on Kassa's card page for a pending deposit routed to a
    /// direct acquirer (ADR 49). One submission per payment, claimed in the database before
    /// any acquirer hears of it. A soft decline or an unreachable acquirer cascades to the
    /// next acquirer of the payment's route with the same card (ADR 47), and a returning
    /// saved card (`saved_token`) goes first to the account that approved it last. The last
    /// answer settles the payment in one transaction: approved and captured (the player
    /// credited once), declined, or failed (no answer: its reversal stays queued, so nothing
    /// stays charged).
    ///
    /// `authenticated` is the card's 3-D Secure result when the account runs 3-D Secure (ADR
    /// 67): its ECI and CAVV go into the authorization, its outcome (no CAVV) is stored in
    /// the same transaction as the answer.
    pub async fn pay_with_card(
        &self,
        payment_id: &PaymentId,
        card: &CardDetails,
        saved_token: Option<&str>,
        authenticated: Option<&Authenticated>,
    ) -> Result<PaymentRecord, PaymentError> {
        let known = self.card_payment(payment_id).await?;
        let wallet = self
            .players
            .wallet(&known.merchant_id, &known.player_id)
            .await?;
        if !self
            .store
            .claim_card_submission(payment_id.as_str())
            .await?
        {
            return Err(PaymentError::CardAlreadySubmitted);
        }
        let declines = self.routing.current().await?.document.declines.clone();
        let (accounts, preferred) = self.card_accounts(&known, saved_token).await?;
        let asked_at = Instant::now();
        let offered = cascade::offer_card(
            &self.routing,
            &self.providers,
            &accounts,
            &declines,
            &payment_request(&known),
            card,
            authenticated.map(|a| &a.authentication),
        )
        .await;
        let mut tx = self.store.begin().await?;
        let mut payment = self.locked_payment(&mut tx, payment_id).await?;
        let was = payment.status;
        self.record_card(
            &mut tx,
            &mut payment,
            &self.card_page_report(card),
            "card_page",
            None,
        )
        .await?;
        self.record_card_route(&mut tx, &mut payment, &offered, preferred)
            .await?;
        if let Some(authenticated) = authenticated {
            self.store
                .insert_threeds_outcome(&mut tx, &authenticated.outcome)
                .await?;
        }
        crate::metrics::record_authorization(&payment.provider, &known.method, asked_at.elapsed());
        match offered.charged {
            Ok(charge) if !self.advice_cancelled(&mut tx, &charge).await? => {
                self.record_card_reversed(&mut tx, &mut payment, charge)
                    .await?
            }
            Ok(charge) => {
                let approved = matches!(charge.started.start, PaymentStart::Authorized);
                let completion = charge.completion_advice.clone().filter(|_| approved);
                self.record_card_charge(&mut tx, &mut payment, &wallet, charge)
                    .await?;
                if let Some(original) = completion {
                    // Queued with the credit: the completion is as durable as the money.
                    let (payload, key) = crate::service::acquirer::completion_job(&original)
                        .map_err(|e| {
                            PaymentError::Provider(ProviderError::Protocol(e.to_string()))
                        })?;
                    let job = crate::service::acquirer::completion_new_job(&payload, &key);
                    self.store.enqueue_job_on(&mut tx, &job).await?;
                }
                if let (true, Some(token)) = (approved, saved_token) {
                    self.store
                        .set_vault_card_approved_account(&mut tx, token, &payment.provider)
                        .await?;
                }
            }
            Err(error) => {
                payment.failure_reason = Some(provider_failure_code(&error));
                let detail = error.to_string();
                self.transition(
                    &mut tx,
                    &mut payment,
                    PaymentEvent::Failed,
                    "card_page",
                    "provider_error",
                    Some(&detail),
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.publish(&payment);
        crate::metrics::record_payment_change(&payment, was);
        self.record_fee(&payment, was).await;
        Ok(payment)
    }

    /// What the payment keeps of a card typed on Kassa's card page: its issuing country from
    /// the BIN list (none without risk or a list entry) and its last four digits.
    fn card_page_report(&self, card: &CardDetails) -> ReportedCard {
        let digits = card.pan().get(..8).unwrap_or_default();
        ReportedCard {
            country: self.risk.as_ref().and_then(|risk| risk.bin_country(digits)),
            brand: None,
            last4: Some(card.last4().to_string()),
        }
    }

    /// The risk decision on the card submitted for a card-page deposit (ADR 75), before
    /// 3-D Secure or the acquirer hears of it: the start's features again (its IP and device
    /// from the start's decision) with the card's (fingerprint velocity, players sharing the
    /// card, issuing country), stored as the payment's newest decision in one transaction
    /// with the subjects locked, like a start's. A refusal declines the payment in that
    /// transaction and answers it; `None`: the card goes on.
    pub async fn decide_card(
        &self,
        payment: &PaymentRecord,
        card: &CardDetails,
    ) -> Result<Option<PaymentRecord>, PaymentError> {
        let Some(risk) = &self.risk else {
            return Ok(None);
        };
        let player = self
            .players
            .get(&payment.merchant_id, &payment.player_id)
            .await?;
        let start = self
            .store
            .risk_decision_of(payment.id.as_str(), RiskKind::Deposit.as_str())
            .await?;
        let fingerprint = risk.fingerprint(card);
        let bin = card.pan().get(..8).unwrap_or_default();
        let request = RiskRequest {
            kind: RiskKind::Card,
            player: &player,
            amount: payment.amount,
            method: &payment.method,
            country: Some(&payment.country),
            ip: start.as_ref().and_then(|d| d.ip.as_deref()),
            device: start.as_ref().and_then(|d| d.device.as_deref()),
            card: Some(CardSeen {
                fingerprint: fingerprint.as_deref(),
                bin,
            }),
        };
        let prepared = risk.prepare(&request).await?;
        let mut tx = self.store.begin_grouped().await?;
        // The payment first: its status cannot change before the decision, which copies
        // whether it failed, is stored (ADR 88).
        let mut current = self.locked_payment(&mut tx, &payment.id).await?;
        let (assessment, record) = risk
            .decide_in(&mut tx, prepared, &request, payment.id.as_str())
            .await?;
        let json = assessment.json();
        self.store
            .set_payment_risk(&mut tx, payment.id.as_str(), &json)
            .await?;
        current.risk = Some(json);
        let Some(refusal) = assessment.refusal(RiskKind::Card, &record.id) else {
            tx.commit().await?;
            return Ok(None);
        };
        let was = current.status;
        self.decline_card_in(&mut tx, &mut current, &refusal)
            .await?;
        tx.commit().await?;
        self.publish(&current);
        crate::metrics::record_payment_change(&current, was);
        Ok(Some(current))
    }

    /// Declines a card-page deposit whose card the risk rules refused, inside `tx`.
    async fn decline_card_in(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        refusal: &RiskRefusal,
    ) -> Result<(), StoreError> {
        let reason = match refusal.outcome {
            kassa_core::risk::RiskOutcome::StepUp => "risk_step_up",
            _ => "risk_declined",
        };
        payment.failure_reason = Some(reason.into());
        let detail =
            json!({ "decision_id": refusal.decision_id, "rules": refusal.rules }).to_string();
        self.transition(
            tx,
            payment,
            PaymentEvent::Declined,
            "card_page",
            reason,
            Some(&detail),
        )
        .await?;
        Ok(())
    }

    /// A pending card-page deposit whose account is known: the only kind a card is taken for.
    pub async fn card_payment(
        &self,
        payment_id: &PaymentId,
    ) -> Result<PaymentRecord, PaymentError> {
        let known = self
            .store
            .find_payment(payment_id)
            .await?
            .ok_or_else(|| payment_not_found(payment_id))?;
        if known.status != PaymentStatus::Pending {
            return Err(PaymentError::CardNotExpected {
                status: known.status,
            });
        }
        self.provider_of(&known)?;
        Ok(known)
    }

    /// Declines a card-page deposit whose 3-D Secure authentication refused the card (ADR
    /// 67): no authorization is sent, nothing is charged; the outcome is stored with the
    /// decline, and the payment's one card submission is used up.
    pub async fn decline_unauthenticated(
        &self,
        payment_id: &PaymentId,
        outcome: &ThreeDsOutcomeRecord,
    ) -> Result<PaymentRecord, PaymentError> {
        self.card_payment(payment_id).await?;
        if !self
            .store
            .claim_card_submission(payment_id.as_str())
            .await?
        {
            return Err(PaymentError::CardAlreadySubmitted);
        }
        let mut tx = self.store.begin().await?;
        let mut payment = self.locked_payment(&mut tx, payment_id).await?;
        let was = payment.status;
        let reason = crate::service::threeds::decline_reason(outcome);
        payment.failure_reason = Some(reason.into());
        let detail =
            json!({ "trans_status": outcome.trans_status, "ds_trans_id": outcome.ds_trans_id })
                .to_string();
        self.transition(
            &mut tx,
            &mut payment,
            PaymentEvent::Declined,
            "card_page",
            reason,
            Some(&detail),
        )
        .await?;
        self.store.insert_threeds_outcome(&mut tx, outcome).await?;
        tx.commit().await?;
        self.publish(&payment);
        crate::metrics::record_payment_change(&payment, was);
        Ok(payment)
    }

    /// The acquirers a card submitted for `payment` is offered to, in order, and the account
    /// a returning saved card prefers when it moved one forward: the payment's account, then
    /// the accounts its route had left after it, of the same connector kind (only they take
    /// a card); the saved card's last approver first.
    async fn card_accounts(
        &self,
        payment: &PaymentRecord,
        saved_token: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), PaymentError> {
        let kind_of = |name: &str| {
            self.providers
                .accounts()
                .find(|account| account.id == name)
                .map(|account| account.kind.clone())
        };
        let kind = kind_of(&payment.provider);
        let mut accounts = vec![payment.provider.clone()];
        let routing = later_cascade::routing_of(payment);
        let after = later_cascade::accounts_after(payment, &routing)
            .into_iter()
            .filter(|name| kind_of(name) == kind);
        accounts.extend(after);
        let Some(token) = saved_token else {
            return Ok((accounts, None));
        };
        let approver = self
            .store
            .vault_card_approved_account(
                payment.merchant_id.as_str(),
                payment.player_id.as_str(),
                token,
            )
            .await?;
        let Some(position) = approver
            .as_ref()
            .and_then(|approver| accounts.iter().position(|a| a == approver))
        else {
            return Ok((accounts, None));
        };
        let preferred = accounts.remove(position);
        accounts.insert(0, preferred.clone());
        Ok((accounts, (position > 0).then_some(preferred)))
    }

    /// Stores where the card went: the account whose answer settles the payment becomes the
    /// payment's, its card-page attempts join the start's in the routing record, and the
    /// reversal advices of the soft declines before it are called off.
    async fn record_card_route(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        offered: &cascade::OfferedCharge,
        preferred: Option<String>,
    ) -> Result<(), PaymentError> {
        for key in &offered.earlier_advice_keys {
            // A declined purchase's reversal is harmless; calling it off only saves a message.
            self.store
                .cancel_unstarted_job_on(tx, crate::service::acquirer::REVERSAL_ADVICE, key)
                .await?;
        }
        let mut routing = later_cascade::routing_of(payment);
        routing["card_page"] = json!({
            "attempts": offered.attempts,
            "preferred_for_returning_card": preferred,
        });
        payment.routing = Some(routing.to_string());
        if let Some(account) = &offered.account {
            payment.provider = account.clone();
        }
        self.store.reroute_payment(tx, payment).await?;
        Ok(())
    }

    /// Cancels the charge's reversal advice in the payment's transaction, so the answer is
    /// recorded exactly when the reversal is called off (ADR 49). `false` when the advice had
    /// already started: the charge is being reversed.
    async fn advice_cancelled(
        &self,
        tx: &mut Tx,
        charge: &CardCharge,
    ) -> Result<bool, PaymentError> {
        let Some(key) = &charge.reversal_advice_key else {
            return Ok(true);
        };
        Ok(self
            .store
            .cancel_unstarted_job_on(tx, crate::service::acquirer::REVERSAL_ADVICE, key)
            .await?)
    }

    /// An answer that came after its reversal advice started: whatever the host said, the
    /// advice reverses it, so the deposit fails and nothing is credited.
    async fn record_card_reversed(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        charge: CardCharge,
    ) -> Result<(), PaymentError> {
        tracing::warn!(payment_id = %payment.id, "card answer came after its reversal started; the deposit fails");
        payment.provider_reference = Some(charge.started.provider_reference);
        payment.failure_reason = Some("reversed".into());
        self.transition(
            tx,
            payment,
            PaymentEvent::Failed,
            "card_page",
            "reversed",
            Some("the acquirer's answer came after its reversal advice started"),
        )
        .await?;
        Ok(())
    }

    /// The acquirer's answer to a card charge, inside the payment's transaction.
    async fn record_card_charge(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        wallet: &WalletAccounts,
        charge: CardCharge,
    ) -> Result<(), PaymentError> {
        let reference = charge.started.provider_reference;
        payment.provider_reference = Some(reference.clone());
        let detail =
            json!({ "provider_reference": reference, "soft_decline": charge.soft_decline })
                .to_string();
        let (event, name) = match charge.started.start {
            PaymentStart::Authorized => (PaymentEvent::Authorized, "authorized"),
            PaymentStart::Declined { reason } => {
                payment.failure_reason = Some(reason.unwrap_or_else(|| "declined".into()));
                (PaymentEvent::Declined, "declined")
            }
            other => {
                let error = ProviderError::Protocol(format!("a card charge answered {other:?}"));
                return Err(PaymentError::Provider(error));
            }
        };
        self.transition(tx, payment, event, "card_page", name, Some(&detail))
            .await?;
        if charge.captured && event == PaymentEvent::Authorized {
            // A purchase takes the funds in its approval: the capture that credits the
            // player, through the same code a provider's `captured` event runs.
            let captured = ProviderPaymentEvent {
                event_id: format!("{reference}:captured"),
                payment_id: payment.id.to_string(),
                status: PaymentEventStatus::Captured,
                amount_minor: payment.amount.amount_minor,
                currency: payment.amount.currency,
                timestamp_unix_s: now_ms() / 1000,
                provider_reference: Some(reference),
                refund_id: None,
                dispute_id: None,
                reason: None,
                three_ds_challenged: None,
                card: None,
            };
            let (_, posting) = self
                .apply_event(tx, payment, &captured, "card_page")
                .await
                .map_err(event_failed)?;
            self.post_event(tx, payment, wallet, &captured, posting)
                .await
                .map_err(event_failed)?;
        }
        Ok(())
    }

    /// A refund the provider's answer already settled (an acquirer's approved `0210`): the
    /// `refunded` event is applied at once, through the pipeline a webhook would take (so
    /// it posts the hold once), and the key gets its final answer. Its reversal advice is
    /// cancelled in that same transaction; `None` when it had already started (the refund is
    /// being reversed, so it failed).
    async fn settle_refund(
        &self,
        payment: &PaymentRecord,
        mut refund: RefundRecord,
        accepted: &RefundAccepted,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Option<RefundRecord>, PaymentError> {
        let refunded = ProviderPaymentEvent {
            event_id: format!("{}:refund:{}", accepted.provider_reference, refund.id),
            payment_id: payment.id.to_string(),
            status: PaymentEventStatus::Refunded,
            amount_minor: refund.amount.amount_minor,
            currency: refund.amount.currency,
            timestamp_unix_s: now_ms() / 1000,
            provider_reference: Some(accepted.provider_reference.clone()),
            refund_id: Some(refund.id.to_string()),
            dispute_id: None,
            reason: None,
            three_ds_challenged: None,
            card: None,
        };
        let key = accepted.reversal_advice_key.as_deref();
        let provider = &payment.provider;
        let applied = retrying(|| {
            self.try_apply_provider_event(provider, &refunded, "provider_answer", None, key)
        })
        .await;
        match applied {
            Err(ProviderEventError::ReversalStarted) => return Ok(None),
            other => other.map_err(event_failed)?,
        };
        refund.status = RefundStatus::Succeeded;
        if let Some(claim) = claim {
            let mut tx = self.store.begin().await?;
            claim
                .complete_in(&mut tx, &Answer::of(201, &refund_view(&refund)))
                .await?;
            tx.commit().await?;
            claim.mark_committed();
        }
        Ok(Some(refund))
    }

    /// Asks the providers about payments left waiting past `after_ms` and settles them from
    /// the answer; payments waiting past `expire_after_ms` with no outcome expire.
    pub async fn sync_statuses(
        &self,
        after_ms: i64,
        expire_after_ms: i64,
        batch: u32,
    ) -> Result<usize, PaymentError> {
        let now = now_ms();
        let waiting = self
            .store
            .payments_awaiting_outcome(now - after_ms, batch)
            .await?;
        let count = waiting.len();
        for payment in waiting {
            let (Some(provider), Some(reference)) = (
                self.provider(&payment.provider),
                payment.provider_reference.clone(),
            ) else {
                continue;
            };
            let status = match provider.get_status(&reference).await {
                Ok(report) if report.payment_id == payment.id.as_str() => Some(report.status),
                Ok(_) => {
                    tracing::error!(payment_id = %payment.id, "status sync: the provider reported another payment");
                    continue;
                }
                // No lookup at this provider (Adyen: outcomes come only by notification, ADR
                // 60): nothing to settle, but a payment the player abandoned still expires.
                // An authorized one waits for its notification.
                Err(ProviderError::Unsupported(_)) if payment.status == PaymentStatus::Pending => {
                    None
                }
                Err(error) => {
                    tracing::warn!(payment_id = %payment.id, error = %error, "status sync: provider did not answer");
                    continue;
                }
            };
            let event_status = match status {
                Some(ProviderPaymentStatus::Authorized)
                    if payment.status == PaymentStatus::Pending =>
                {
                    Some(PaymentEventStatus::Authorized)
                }
                Some(
                    ProviderPaymentStatus::Captured
                    | ProviderPaymentStatus::PartiallyRefunded
                    | ProviderPaymentStatus::Refunded
                    | ProviderPaymentStatus::ChargedBack,
                ) => Some(PaymentEventStatus::Captured),
                Some(ProviderPaymentStatus::Declined) => Some(PaymentEventStatus::Declined),
                Some(ProviderPaymentStatus::Failed) => Some(PaymentEventStatus::Failed),
                Some(ProviderPaymentStatus::Cancelled) => Some(PaymentEventStatus::Cancelled),
                _ => None,
            };
            let result = match event_status {
                Some(event_status) => {
                    let event = ProviderPaymentEvent {
                        event_id: format!("sync:{}:{}", payment.id, event_status.as_str()),
                        payment_id: payment.id.to_string(),
                        status: event_status,
                        amount_minor: payment.amount.amount_minor,
                        currency: payment.amount.currency,
                        timestamp_unix_s: now / 1000,
                        provider_reference: Some(reference),
                        refund_id: None,
                        dispute_id: None,
                        reason: Some("status_sync".into()),
                        three_ds_challenged: None,
                        card: None,
                    };
                    self.apply_provider_event(&payment.provider, &event, "sync", None)
                        .await
                        .map(|_| ())
                        .map_err(|error| error.to_string())
                }
                None if now - payment.created_at_ms > expire_after_ms
                    && may_expire_unanswered(&payment) =>
                {
                    self.expire(&payment.id)
                        .await
                        .map_err(|error| error.to_string())
                }
                None => self
                    .touch(&payment.id)
                    .await
                    .map_err(|error| error.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(payment_id = %payment.id, %error, "status sync could not settle a payment");
            }
        }
        Ok(count)
    }

    async fn expire(&self, payment_id: &PaymentId) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        let Some(mut payment) = self.store.lock_payment(&mut tx, payment_id).await? else {
            return Ok(());
        };
        payment.failure_reason = Some("no_answer_from_provider".into());
        let was = payment.status;
        self.transition(
            &mut tx,
            &mut payment,
            PaymentEvent::Expired,
            "sync",
            "expired",
            None,
        )
        .await?;
        tx.commit().await?;
        self.publish(&payment);
        crate::metrics::record_payment_change(&payment, was);
        Ok(())
    }

    /// Marks a payment as just asked about, so sync does not ask again at once.
    async fn touch(&self, payment_id: &PaymentId) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        if let Some(payment) = self.store.lock_payment(&mut tx, payment_id).await? {
            self.store.update_payment(&mut tx, &payment).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs the state machine on `event`; records it either way, and writes the payment and
    /// an outbox event when it applied.
    async fn transition(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        event: PaymentEvent,
        source: &str,
        name: &str,
        detail: Option<&str>,
    ) -> Result<Applied, StoreError> {
        let change = StatusChange::apply(payment, event);
        let history = change.history(source, name, detail);
        match change.to {
            Some(to) => {
                self.store
                    .record_payment_change(tx, payment, history, change.outbox_event())
                    .await?;
                Ok(Applied::Processed(to))
            }
            None => {
                tracing::info!(payment_id = %payment.id, status = %change.from, event = name, "event does not fit the payment's state; ignored");
                self.store
                    .insert_payment_event(tx, &payment.id, history)
                    .await?;
                Ok(Applied::Ignored(change.from))
            }
        }
    }

    /// Queues a refund's event (`refund.created`, `refund.succeeded`, `refund.failed`) with
    /// its public view; the refund id orders them.
    async fn refund_event(
        &self,
        tx: &mut Tx,
        refund: &RefundRecord,
        event_type: &str,
    ) -> Result<(), StoreError> {
        let mut payload = serde_json::to_value(refund_view(refund)).unwrap_or_default();
        payload["type"] = event_type.into();
        payload["failure_reason"] = refund.failure_reason.clone().into();
        let merchant_id = refund.merchant_id.as_str();
        self.store
            .insert_outbox(
                tx,
                merchant_id,
                event_type,
                refund.id.as_str(),
                &payload.to_string(),
            )
            .await
            .map(drop)
    }

    /// Queues a chargeback's or dispute's event (`chargeback.created`, `dispute.won`,
    /// `dispute.lost`); the payment id orders them with the payment's own events.
    async fn dispute_event(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        event: &ProviderPaymentEvent,
        event_type: &str,
    ) -> Result<(), StoreError> {
        let amount = Money::new(event.amount_minor, payment.amount.currency);
        let payload = json!({
            "type": event_type,
            "payment_id": payment.id,
            "dispute_id": dispute_id_of(event),
            "player_id": payment.player_id,
            "amount": amount.format_amount(),
            "currency": amount.currency.code(),
            "reason": event.reason,
        });
        let merchant_id = payment.merchant_id.as_str();
        self.store
            .insert_outbox(
                tx,
                merchant_id,
                event_type,
                payment.id.as_str(),
                &payload.to_string(),
            )
            .await
            .map(drop)
    }

    /// Counts the provider's fee of a deposit approved just now (from `was`), by the
    /// account's commission in the routing document in force: the cost per success's sum.
    /// The monthly fee is no deposit's; a document that cannot be read counts nothing.
    async fn record_fee(&self, payment: &PaymentRecord, was: PaymentStatus) {
        if !crate::metrics::installed() || !crate::metrics::newly_approved(was, payment.status) {
            return;
        }
        let Ok(routing) = self.routing.current().await else {
            return;
        };
        if let Some(commission) = routing.document.commissions.get(&payment.provider) {
            let fee_minor = commission.fee_minor(payment.amount.amount_minor);
            let currency = payment.amount.currency.code();
            crate::metrics::record_payment_cost(&payment.provider, currency, fee_minor);
        }
    }

    fn publish(&self, payment: &PaymentRecord) {
        let _ = self.feed.send((payment.id.clone(), payment.status));
    }
}

/// Money an applied provider event moves ([`PaymentsService::post_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventPosting {
    /// A captured deposit: clearing to the player's cash.
    Credit,
    /// A chargeback: the amount back to the provider.
    Chargeback,
    /// A dispute won: the chargeback reversed.
    ChargebackReversal,
}

/// A start's status changes, applied to its payment in memory in order, each with its name
/// in the history and its detail.
type StartChanges = Vec<(StatusChange, &'static str, Option<String>)>;

/// A start's outcome decided in memory, before anything is written: the payment as the
/// provider's answer (or its failure) left it, its status changes, and the start's answer
/// (201 with the payment, or the refusal's error body).
fn decide_start(
    payment: &mut PaymentRecord,
    asked: Result<PaymentStarted, ProviderError>,
    refusal: Option<&PaymentError>,
) -> (Answer, StartChanges) {
    let decided = match (asked, refusal) {
        (Ok(started), _) => {
            let (next_action, changes) = apply_start(payment, started);
            (Answer::of(201, &init_view(payment, next_action)), changes)
        }
        (Err(error), refusal) => {
            payment.failure_reason = Some(provider_failure_code(&error));
            let failed = StatusChange::apply(payment, PaymentEvent::Failed);
            let refusal = refusal.expect("a refusal for every error");
            let answer = Answer::error(refusal, &crate::trace::current());
            let detail = Some(error.to_string());
            (answer, vec![(failed, "provider_error", detail)])
        }
    };
    payment.updated_at_ms = now_ms();
    decided
}

/// What the provider's answer to a start does to the new payment, in memory: its reference,
/// redirect, failure reason and status changes; and the player's next step when the
/// payment's own fields do not carry it.
fn apply_start(
    payment: &mut PaymentRecord,
    started: PaymentStarted,
) -> (Option<NextActionView>, StartChanges) {
    payment.provider_reference = Some(started.provider_reference);
    let next_action = NextActionView::of(&started.start);
    let (then, reason) = match started.start {
        PaymentStart::Redirect { url } | PaymentStart::Challenge { url } => {
            payment.redirect_url = Some(url);
            (None, None)
        }
        PaymentStart::Authorized => (Some((PaymentEvent::Authorized, "authorized")), None),
        PaymentStart::Declined { reason } => (Some((PaymentEvent::Declined, "declined")), reason),
        PaymentStart::AwaitingFunds { .. }
        | PaymentStart::CodeSent { .. }
        | PaymentStart::Processing => (None, None),
    };
    let mut changes = vec![(
        StatusChange::apply(payment, PaymentEvent::Sent),
        "sent",
        None,
    )];
    if let Some((event, name)) = then {
        if event == PaymentEvent::Declined {
            // After `sent`, whose event carries no failure.
            payment.failure_reason = Some(reason.unwrap_or_else(|| "declined".into()));
        }
        changes.push((StatusChange::apply(payment, event), name, None));
    }
    (next_action, changes)
}

/// What an event did to a payment by the state machine, decided in memory before it is
/// written: the status before and after (`None`: the event did not fit and is only
/// recorded), and the outbox event (topic, payload) when the status changed.
struct StatusChange {
    from: PaymentStatus,
    to: Option<PaymentStatus>,
    outbox: Option<(String, String)>,
}

impl StatusChange {
    /// Applies `event` to `payment` (its status changes when the event fits).
    fn apply(payment: &mut PaymentRecord, event: PaymentEvent) -> StatusChange {
        let from = payment.status;
        let Transition::Apply(to) = next(from, event) else {
            return StatusChange {
                from,
                to: None,
                outbox: None,
            };
        };
        payment.status = to;
        // An event only when the status changed.
        let outbox = (to != from).then(|| {
            let topic = format!("payment.{}", to.as_str());
            let payload = json!({
                "type": topic,
                "payment_id": payment.id,
                "player_id": payment.player_id,
                "status": to.as_str(),
                "amount": payment.amount.format_amount(),
                "currency": payment.amount.currency.code(),
                "failure_reason": payment.failure_reason,
            })
            .to_string();
            (topic, payload)
        });
        StatusChange {
            from,
            to: Some(to),
            outbox,
        }
    }

    /// The change's outbox event, when the status changed.
    fn outbox_event(&self) -> Option<PaymentOutboxEvent<'_>> {
        let (topic, payload) = self.outbox.as_ref()?;
        Some(PaymentOutboxEvent { topic, payload })
    }

    /// The change's row in the payment's history.
    fn history<'a>(
        &self,
        source: &'a str,
        event: &'a str,
        detail: Option<&'a str>,
    ) -> HistoryEvent<'a> {
        HistoryEvent {
            source,
            event,
            from: self.from.as_str(),
            to: self.to.map(PaymentStatus::as_str),
            actor: None,
            detail,
        }
    }
}

/// The payment and its player, as the money movements take them.
fn payment_ref(payment: &PaymentRecord) -> PaymentRef<'_> {
    PaymentRef {
        payment_id: &payment.id,
        player_id: &payment.player_id,
    }
}

/// The provider's dispute id; an empty one counts as none (one dispute per payment), since
/// a dispute key must name something.
fn dispute_id_of(event: &ProviderPaymentEvent) -> Option<DisputeId> {
    event
        .dispute_id
        .as_deref()
        .and_then(|id| DisputeId::parse(id).ok())
}

/// The event must be about this payment, from its provider, for its amount and currency.
fn check_event_matches(
    provider: &str,
    payment: &PaymentRecord,
    event: &ProviderPaymentEvent,
) -> Result<(), ProviderEventError> {
    let mismatch = |what| Err(ProviderEventError::Mismatch(what));
    if payment.provider != provider {
        return mismatch("the payment belongs to another provider");
    }
    if event.currency != payment.amount.currency {
        return mismatch("the currency differs from the payment's");
    }
    if let (Some(ours), Some(theirs)) = (&payment.provider_reference, &event.provider_reference) {
        if ours != theirs {
            return mismatch("the provider_reference differs from the payment's");
        }
    }
    let amount_fits = match event.status {
        // Checked against the refund.
        PaymentEventStatus::Refunded | PaymentEventStatus::RefundFailed => true,
        PaymentEventStatus::Chargeback
        | PaymentEventStatus::DisputeWon
        | PaymentEventStatus::DisputeLost => {
            event.amount_minor > 0 && event.amount_minor <= payment.amount.amount_minor
        }
        _ => event.amount_minor == payment.amount.amount_minor,
    };
    if !amount_fits {
        return mismatch("the amount differs from the payment's");
    }
    Ok(())
}

/// A provider event Kassa made itself (from a provider's synchronous answer) that failed to
/// apply: the database failed, or the books disagree (a bug).
fn event_failed(error: ProviderEventError) -> PaymentError {
    match error {
        ProviderEventError::Store(error) => PaymentError::Store(error),
        ProviderEventError::Player(error) => PaymentError::Player(error),
        other => PaymentError::Store(StoreError::Corrupt(format!(
            "a provider answer did not apply: {other}"
        ))),
    }
}

/// The error for a start that did not get its key; the idempotency layer answers instead.
fn lose_key(claim: Option<&IdempotencyClaim>) -> PaymentError {
    if let Some(claim) = claim {
        claim.lose();
    }
    PaymentError::KeyInUse
}

/// A payment about to be started, before the provider hears of it.
fn new_payment_record(
    id: PaymentId,
    merchant_id: &MerchantId,
    provider: &str,
    request: NewPayment,
) -> PaymentRecord {
    let now = now_ms();
    PaymentRecord {
        id,
        merchant_id: merchant_id.clone(),
        player_id: request.player_id,
        provider: provider.to_string(),
        provider_reference: None,
        method: request.method,
        amount: request.amount,
        status: PaymentStatus::Initiated,
        refunded: Money::new(0, request.amount.currency),
        return_url: request.return_url,
        redirect_url: None,
        country: request.country,
        device: request.device,
        ip: request.ip,
        session_id: request.session_id,
        failure_reason: None,
        routing: None,
        risk: None,
        created_at_ms: now,
        updated_at_ms: now,
        routing_arm: None,
        card: None,
    }
}

/// What a payment keeps of its routing: the decision (rule, candidates, split, reasons) and
/// every provider account asked, as JSON text.
fn routing_record(decision: &Decision, attempts: &[cascade::Attempt]) -> String {
    json!({ "decision": decision, "attempts": attempts }).to_string()
}

/// The error for an unknown payment.
pub fn payment_not_found(payment_id: impl AsRef<str>) -> PaymentError {
    PaymentError::NotFound {
        payment_id: payment_id.as_ref().to_string(),
    }
}

/// A provider call's failure as the use case reports it; the ones worth an operator's look
/// (no answer) are logged here.
fn provider_failed(error: ProviderError) -> PaymentError {
    if !matches!(
        error,
        ProviderError::Rejected { .. } | ProviderError::Unsupported(_)
    ) {
        tracing::warn!(%error, "provider call failed");
    }
    PaymentError::Provider(error)
}

/// Inside the transaction that records a provider's refusal: a refusal the client should
/// not simply retry (4xx) becomes the key's answer; a failure to reach the provider (5xx)
/// gives the key back, so a retry with it starts afresh.
async fn answer_refusal(
    claim: Option<&IdempotencyClaim>,
    tx: &mut Tx,
    error: &PaymentError,
) -> Result<(), StoreError> {
    let Some(claim) = claim else {
        return Ok(());
    };
    let answer = Answer::error(error, &crate::trace::current());
    if answer.status >= 500 {
        claim.release_in(tx).await
    } else {
        claim.complete_in(tx, &answer).await
    }
}

/// Whether status sync may expire a payment no outcome reached in time: one with a page the
/// player may have abandoned, or one already authorized. A pending payment the provider is
/// processing with no step for the player (a SEPA debit, `PaymentStart::Processing`) is
/// waited for: its outcome comes by event days later, and expiring it would leave a debit
/// the books never credit (ADR 64).
fn may_expire_unanswered(payment: &PaymentRecord) -> bool {
    payment.status != PaymentStatus::Pending || payment.redirect_url.is_some()
}

/// What the provider is asked to start.
pub(crate) fn payment_request(payment: &PaymentRecord) -> PaymentRequest {
    PaymentRequest {
        payment_id: payment.id.to_string(),
        amount_minor: payment.amount.amount_minor,
        currency: payment.amount.currency,
        method: payment.method.clone(),
        country: Some(payment.country.clone()),
        return_url: payment.return_url.clone(),
        payment_method_token: None,
    }
}

/// Today's UTC date as (year, month, day), for age checks.
fn today_utc() -> (i32, u32, u32) {
    let today = time::OffsetDateTime::now_utc().date();
    (
        today.year(),
        u32::from(u8::from(today.month())),
        u32::from(today.day()),
    )
}
