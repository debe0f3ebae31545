//! National self-exclusion registers as a use case (ADR 73): the register of a player's
//! jurisdiction is asked before their first deposit, again once its answer is older than
//! `[registers] recheck_hours`, and whenever the operator asks; an `excluded` answer refuses
//! deposits and bets like a self-exclusion. When the register cannot answer, a stored answer
//! younger than `valid_hours` stands in; without one the deposit is refused (fail closed).
//!
//! The identity sent is personal data: it is read from the store only to build the request,
//! and nothing here logs it (the log names the player id, the register and the outcome).

mod recheck;

use std::sync::Arc;

use kassa_connectors::{ExclusionRegisters, ProviderError, RegisterQuestion};
use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::register::{self, CachedCheck, CheckPlan, PlayerIdentity};
use kassa_store::directory::PlayerRecord;
use kassa_store::registers::{RegisterCheckRecord, RegisterStatus};
use kassa_store::{Store, StoreError};

use crate::config::RegistersConfig;
use crate::service::players::{PlayerDirectory, PlayerError};

pub use recheck::{RecheckReport, REGISTERS_RECHECK};

/// Why a register check refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The player is unknown, or a register names them as excluded
    /// (`PlayerError::RegisterExcluded`).
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// The register needs identity fields the operator has not sent.
    #[error("the {register} check needs the player's {}; send them with PUT /v1/players/{{id}}/identity", missing.join(", "))]
    IdentityMissing {
        register: &'static str,
        missing: Vec<&'static str>,
    },
    /// The register could not answer and no stored answer stands in.
    #[error("the {register} register could not be asked: {reason}")]
    Unavailable { register: String, reason: String },
    /// The player's jurisdiction has no register (an operator's on-demand check).
    #[error("no self-exclusion register is configured for jurisdiction {jurisdiction:?}")]
    NoRegister { jurisdiction: Option<String> },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a register was asked, as the audit trail records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckReason {
    /// Before the player's first deposit (no answer stored).
    FirstDeposit,
    /// Before a deposit, the stored answer being too old or about an older identity.
    Recheck,
    /// The operator asked (`POST /v1/players/{id}/register-check`).
    Operator,
    /// The recheck job asked about an active player whose answer had grown old.
    Sweep,
}

impl CheckReason {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckReason::FirstDeposit => "first_deposit",
            CheckReason::Recheck => "recheck",
            CheckReason::Operator => "operator",
            CheckReason::Sweep => "sweep",
        }
    }
}

/// The register use cases; cheap to clone.
#[derive(Clone)]
pub struct RegistersService {
    store: Store,
    players: PlayerDirectory,
    registers: Arc<ExclusionRegisters>,
    config: Arc<RegistersConfig>,
}

impl RegistersService {
    /// Wires the service.
    pub fn new(
        store: Store,
        players: PlayerDirectory,
        registers: Arc<ExclusionRegisters>,
        config: RegistersConfig,
    ) -> RegistersService {
        RegistersService {
            store,
            players,
            registers,
            config: Arc::new(config),
        }
    }

    /// The time answers are stamped and aged with: the store's clock, which tests move.
    fn now_ms(&self) -> i64 {
        self.store.clock().now_ms()
    }

    /// The register kind the player's jurisdiction is checked against, if any.
    fn register_for(&self, player: &PlayerRecord) -> Option<&str> {
        let jurisdiction = player.jurisdiction.as_deref()?;
        self.config
            .jurisdictions
            .get(jurisdiction)
            .map(String::as_str)
    }

    /// Stores the identity register checks send (the birth date is the player's own); a
    /// stored answer about the identity before is asked again at the next deposit.
    pub async fn put_identity(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        identity: &PlayerIdentity,
    ) -> Result<i64, RegisterError> {
        self.players.get(merchant_id, player_id).await?;
        let now = self.now_ms();
        self.store
            .put_player_identity(merchant_id.as_str(), player_id.as_str(), identity, now)
            .await?;
        tracing::info!(%player_id, "register identity stored");
        Ok(now)
    }

    /// The player's latest register answer, if any.
    pub async fn status(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<Option<RegisterStatus>, StoreError> {
        self.store
            .register_status(merchant_id.as_str(), player_id.as_str())
            .await
    }

    /// Before a deposit: `Ok` unless the register of the player's jurisdiction names them
    /// as excluded, cannot be asked for lack of identity, or cannot answer with no stored
    /// answer to stand in.
    pub async fn before_deposit(
        &self,
        merchant_id: &MerchantId,
        player: &PlayerRecord,
    ) -> Result<(), RegisterError> {
        let Some(kind) = self.register_for(player) else {
            return Ok(());
        };
        let (merchant, player_id) = (merchant_id.as_str(), player.player_id.as_str());
        let cached = self
            .store
            .register_status(merchant, player_id)
            .await?
            .filter(|status| status.register == kind);
        let identity_changed_at_ms = match self.store.player_identity(merchant, player_id).await? {
            Some((_, updated_at_ms)) => updated_at_ms,
            None => 0,
        };
        let stored = cached.as_ref().map(|status| CachedCheck {
            outcome: status.outcome,
            checked_at_ms: status.checked_at_ms,
        });
        let policy = self.config.policy();
        let fallback = match register::plan(&policy, stored, identity_changed_at_ms, self.now_ms())
        {
            CheckPlan::UseCached(_) => return refuse_if_excluded(player, cached.as_ref()),
            CheckPlan::Ask { fallback } => fallback,
        };
        let reason = match cached {
            Some(_) => CheckReason::Recheck,
            None => CheckReason::FirstDeposit,
        };
        match self.ask(merchant_id, player, kind, reason).await {
            Ok(status) => refuse_if_excluded(player, Some(&status)),
            Err(RegisterError::Unavailable { register, reason }) => match (fallback, cached) {
                (Some(_), Some(status)) => {
                    tracing::warn!(player_id, %register, %reason, outcome = status.outcome.as_str(),
                        "register unreachable: its stored answer stands in");
                    refuse_if_excluded(player, Some(&status))
                }
                _ => Err(RegisterError::Unavailable { register, reason }),
            },
            Err(error) => Err(error),
        }
    }

    /// Asks the register of the player's jurisdiction now, whatever is stored (the
    /// operator's check).
    pub async fn check_now(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<RegisterStatus, RegisterError> {
        let player = self.players.get(merchant_id, player_id).await?;
        let kind = self
            .register_for(&player)
            .ok_or_else(|| RegisterError::NoRegister {
                jurisdiction: player.jurisdiction.clone(),
            })?
            .to_string();
        self.ask(merchant_id, &player, &kind, CheckReason::Operator)
            .await
    }

    /// Asks the merchant's account of register `kind` about the player, records the
    /// question in the audit trail (and the answer as the player's latest), and answers it.
    async fn ask(
        &self,
        merchant_id: &MerchantId,
        player: &PlayerRecord,
        kind: &str,
        reason: CheckReason,
    ) -> Result<RegisterStatus, RegisterError> {
        let unavailable = |reason: &str| RegisterError::Unavailable {
            register: kind.to_string(),
            reason: reason.to_string(),
        };
        let account = self
            .registers
            .for_merchant(merchant_id.as_str(), kind)
            .ok_or_else(|| unavailable("the merchant has no account of this register"))?;
        let identity = self.identity_of(merchant_id, player).await?;
        let missing = account.missing(&identity);
        if !missing.is_empty() {
            return Err(RegisterError::IdentityMissing {
                register: account.register(),
                missing,
            });
        }
        let check_id = kassa_core::ids::generate("rchk");
        let question = RegisterQuestion {
            check_id: &check_id,
            identity: &identity,
        };
        let answered = account.check(&question).await;
        let record = RegisterCheckRecord {
            id: check_id.clone(),
            merchant_id: merchant_id.to_string(),
            player_id: player.player_id.to_string(),
            register: kind.to_string(),
            account_id: account.name().to_string(),
            reason: reason.as_str().to_string(),
            outcome: answered.as_ref().ok().map(|answer| answer.outcome),
            register_reference: answered.as_ref().ok().map(|a| a.reference.clone()),
            error: answered.as_ref().err().map(ToString::to_string),
            checked_at_ms: self.now_ms(),
        };
        if self.store.record_register_check(&record).await? {
            self.players.restricted_changed();
        }
        crate::metrics::record_register_check(kind, outcome_label(&answered));
        tracing::info!(player_id = %player.player_id, register = kind, %check_id,
            reason = reason.as_str(), outcome = outcome_label(&answered), "register checked");
        let answer = answered.map_err(|error| unavailable(&error.to_string()))?;
        Ok(RegisterStatus {
            register: kind.to_string(),
            outcome: answer.outcome,
            checked_at_ms: record.checked_at_ms,
            check_id,
        })
    }

    /// The stored identity with the player's own birth date.
    async fn identity_of(
        &self,
        merchant_id: &MerchantId,
        player: &PlayerRecord,
    ) -> Result<PlayerIdentity, StoreError> {
        let stored = self
            .store
            .player_identity(merchant_id.as_str(), player.player_id.as_str())
            .await?;
        let mut identity = stored.map(|(identity, _)| identity).unwrap_or_default();
        identity.birth_date = player.birth_date.clone();
        Ok(identity)
    }
}

/// `Err(RegisterExcluded)` when `status` says the player is excluded.
fn refuse_if_excluded(
    player: &PlayerRecord,
    status: Option<&RegisterStatus>,
) -> Result<(), RegisterError> {
    match status {
        Some(status) if status.outcome.blocks() => Err(PlayerError::RegisterExcluded {
            player_id: player.player_id.to_string(),
            register: status.register.clone(),
            checked_at_ms: status.checked_at_ms,
        }
        .into()),
        _ => Ok(()),
    }
}

/// The `outcome` label of `kassa_register_checks_total`.
fn outcome_label(
    answered: &Result<kassa_connectors::RegisterAnswer, ProviderError>,
) -> &'static str {
    match answered {
        Ok(answer) => answer.outcome.as_str(),
        Err(ProviderError::Protocol(_)) => "invalid_answer",
        Err(ProviderError::Rejected { .. }) => "refused",
        Err(_) => "unavailable",
    }
}
