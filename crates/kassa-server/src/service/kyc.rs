//! KYC through ID providers (issue 19 item 5, docs/kyc.md): opening a check at the
//! merchant's ID provider (one open check per player and level), applying the provider's
//! signed result, the players' level statuses, and the CDD threshold that locks withdrawals
//! until `enhanced` is verified.

use std::sync::Arc;

use kassa_connectors::{IdentityProvider, IdentityProviders, ProviderError, VerificationEvent};
use kassa_core::ids::{self, MerchantId, PlayerId};
use kassa_core::kyc::{
    next, CheckReason, KycLevel, LevelEvent, LevelStatus, PlayerKyc, VerificationResult,
};
use kassa_core::status::KycStatus;
use kassa_store::directory::PlayerRecord;
use kassa_store::kyc::{CheckCompletion, KycCheckRecord, KycStanding};
use kassa_store::{now_ms, Store, StoreError};

use crate::config::KycConfig;
use crate::service::players::{PlayerDirectory, PlayerError};
use crate::service::provider_events::{EventAnswer, ProviderEventError};

/// Most past checks `GET /v1/players/{id}/kyc` shows.
pub const HISTORY_MAX: u32 = 50;
/// Most deposits the CDD threshold looks at, newest first.
const CDD_DEPOSITS_MAX: u32 = 10_000;

/// Why a KYC use case did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum KycError {
    /// The player is unknown.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// The merchant has no ID provider account.
    #[error("no ID provider is configured for this merchant")]
    NoProvider,
    /// The level is verified already.
    #[error("the player's {level} level is verified already")]
    AlreadyVerified { level: KycLevel },
    /// The level's status does not let a check open for this reason (a rejected level opens
    /// again only for the operator).
    #[error("a {level} check cannot start while the level is {status}")]
    NotStartable {
        level: KycLevel,
        status: LevelStatus,
    },
    /// The ID provider failed or refused.
    #[error("the ID provider failed: {0}")]
    Provider(#[from] ProviderError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<kassa_store::SqlxError> for KycError {
    fn from(error: kassa_store::SqlxError) -> KycError {
        KycError::Store(error.into())
    }
}

/// Where the player verifies, as a refusal hands it to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub check_id: String,
    pub level: KycLevel,
    pub reason: CheckReason,
    pub url: String,
}

impl From<&KycCheckRecord> for Verification {
    fn from(check: &KycCheckRecord) -> Verification {
        Verification {
            check_id: check.id.clone(),
            level: check.level,
            reason: check.reason,
            url: check.verification_url.clone(),
        }
    }
}

/// A player's KYC: the level statuses and the checks, newest first.
#[derive(Clone, Debug)]
pub struct KycOverview {
    pub levels: PlayerKyc,
    /// The player's `kyc_status` as stored (what payouts require).
    pub kyc_status: KycStatus,
    /// A verified document's issuing country, when a provider reported one.
    pub kyc_country: Option<String>,
    /// Whether the CDD threshold locks the player's withdrawals now.
    pub cdd_locked: bool,
    pub checks: Vec<KycCheckRecord>,
}

/// A player's KYC as one read saw it.
#[derive(Clone, Debug)]
pub struct Standing {
    pub levels: PlayerKyc,
    /// The `kyc_status` stored beside the levels.
    pub kyc_status: KycStatus,
    /// A verified document's issuing country (ADR 86).
    pub kyc_country: Option<String>,
}

/// The KYC use cases; cheap to clone.
#[derive(Clone)]
pub struct KycService {
    store: Store,
    players: PlayerDirectory,
    identities: Arc<IdentityProviders>,
    config: Arc<KycConfig>,
    /// The AML thresholds; the CDD lock reads its threshold and window there.
    aml: Arc<kassa_core::aml::AmlSettings>,
}

impl KycService {
    /// Wires the service.
    pub fn new(
        store: Store,
        players: PlayerDirectory,
        identities: Arc<IdentityProviders>,
        config: KycConfig,
        aml: kassa_core::aml::AmlSettings,
    ) -> KycService {
        KycService {
            store,
            players,
            identities,
            config: Arc::new(config),
            aml: Arc::new(aml),
        }
    }

    /// The ID provider account `name`, for the webhook pipeline.
    pub fn provider(&self, name: &str) -> Option<&Arc<dyn IdentityProvider>> {
        self.identities.get(name)
    }

    /// The player's level statuses, `kyc_status` and KYC country, read together: the stored
    /// rows, else (basic) the `kyc_status` set through `PUT /v1/players/{id}` before any
    /// check ran.
    pub async fn standing(&self, player: &PlayerRecord) -> Result<Standing, StoreError> {
        // Players are never deleted; should the row be gone, the record read stands.
        let stored = self
            .store
            .kyc_standing(player.merchant_id.as_str(), player.player_id.as_str())
            .await?
            .unwrap_or(KycStanding {
                kyc_status: player.kyc_status,
                kyc_country: player.kyc_country.clone(),
                levels: Vec::new(),
            });
        let mut levels = PlayerKyc {
            basic: match stored.kyc_status {
                KycStatus::None => LevelStatus::NotStarted,
                KycStatus::Pending => LevelStatus::Pending,
                KycStatus::Verified => LevelStatus::Verified,
                KycStatus::Rejected => LevelStatus::Rejected,
            },
            enhanced: LevelStatus::NotStarted,
        };
        for (level, status) in stored.levels {
            match level {
                KycLevel::Basic => levels.basic = status,
                KycLevel::Enhanced => levels.enhanced = status,
            }
        }
        Ok(Standing {
            levels,
            kyc_status: stored.kyc_status,
            kyc_country: stored.kyc_country,
        })
    }

    /// Opens a check of `level` for the player, or answers the level's open one (one open
    /// check per player and level). `true` with a check it opened now.
    pub async fn request_check(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        level: KycLevel,
        reason: CheckReason,
    ) -> Result<(KycCheckRecord, bool), KycError> {
        let player = self.players.get(merchant_id, player_id).await?;
        self.open_check(&player, level, reason).await
    }

    async fn open_check(
        &self,
        player: &PlayerRecord,
        level: KycLevel,
        reason: CheckReason,
    ) -> Result<(KycCheckRecord, bool), KycError> {
        let (merchant, player_id) = (player.merchant_id.as_str(), player.player_id.as_str());
        if let Some(open) = self
            .store
            .open_kyc_check(merchant, player_id, level)
            .await?
        {
            return Ok((open, false));
        }
        let status = self.standing(player).await?.levels.level(level);
        if status == LevelStatus::Verified {
            return Err(KycError::AlreadyVerified { level });
        }
        if !status.may_start(reason) {
            return Err(KycError::NotStartable { level, status });
        }
        // The provider is called before the row is written: no transaction waits on it. A
        // concurrent request that wins the insert leaves this applicant unused.
        let check = self.open_at_provider(player, level, reason).await?;
        let mut tx = self.store.begin().await?;
        if !self.store.insert_kyc_check(&mut tx, &check).await? {
            drop(tx);
            let open = self
                .store
                .open_kyc_check(merchant, player_id, level)
                .await?;
            return open
                .map(|open| (open, false))
                .ok_or(KycError::NotStartable {
                    level,
                    status: LevelStatus::Pending,
                });
        }
        let now = check.requested_at_ms;
        // `kyc_status` changes only with a result, so a player who never finishes keeps it.
        self.store
            .put_kyc_level(
                &mut tx,
                (merchant, player_id),
                (level, LevelStatus::Pending),
                None,
                now,
            )
            .await?;
        tx.commit().await?;
        Ok((check, true))
    }

    /// A new check of `level` opened at the merchant's ID provider: its applicant and page.
    async fn open_at_provider(
        &self,
        player: &PlayerRecord,
        level: KycLevel,
        reason: CheckReason,
    ) -> Result<KycCheckRecord, KycError> {
        let provider = self
            .identities
            .for_merchant(player.merchant_id.as_str())
            .ok_or(KycError::NoProvider)?;
        let check_id = ids::generate("kyc");
        let applicant_id = provider.create_applicant(&check_id, level).await?;
        let url = provider.start_verification(&applicant_id).await?;
        Ok(KycCheckRecord {
            id: check_id,
            merchant_id: player.merchant_id.to_string(),
            player_id: player.player_id.to_string(),
            level,
            status: LevelStatus::Pending,
            reason,
            provider: provider.name().to_string(),
            applicant_id,
            verification_url: url,
            requested_at_ms: now_ms(),
            completed_at_ms: None,
            result_reason: None,
            document_checks: None,
            provider_event_id: None,
            document_country: None,
        })
    }

    /// Where the player verifies `level` for `reason` (opening the check, or the open one);
    /// `None` when no check can open (a rejected level, no provider, the provider down),
    /// logged: the refusal it goes with stands either way.
    pub async fn verification_for(
        &self,
        player: &PlayerRecord,
        level: KycLevel,
        reason: CheckReason,
    ) -> Option<Verification> {
        match self.open_check(player, level, reason).await {
            Ok((check, _)) => Some(Verification::from(&check)),
            Err(error) => {
                tracing::warn!(%error, level = level.as_str(), "no verification page for a refused payout");
                None
            }
        }
    }

    /// Whether the player's deposits reached their jurisdiction's CDD threshold while the
    /// `enhanced` level is not verified: their withdrawals are locked until it is.
    pub async fn cdd_locked(&self, player: &PlayerRecord) -> Result<bool, StoreError> {
        let levels = self.standing(player).await?.levels;
        self.cdd_locked_with(player, &levels).await
    }

    /// [`Self::cdd_locked`] with the player's levels already read.
    async fn cdd_locked_with(
        &self,
        player: &PlayerRecord,
        levels: &PlayerKyc,
    ) -> Result<bool, StoreError> {
        let Some(jurisdiction) = player.jurisdiction.as_deref() else {
            return Ok(false);
        };
        let Some(threshold) =
            self.config
                .cdd_threshold(&self.aml, jurisdiction, player.currency.code())
        else {
            return Ok(false);
        };
        if levels.enhanced == LevelStatus::Verified {
            return Ok(false);
        }
        let deposits = self
            .store
            .deposits_for_cdd(
                player.merchant_id.as_str(),
                player.player_id.as_str(),
                CDD_DEPOSITS_MAX,
            )
            .await?;
        Ok(threshold.reached(&deposits))
    }

    /// The player's levels, lock and checks (newest first, at most [`HISTORY_MAX`]).
    pub async fn overview(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<KycOverview, KycError> {
        let player = self.players.get(merchant_id, player_id).await?;
        let standing = self.standing(&player).await?;
        let checks = self
            .store
            .kyc_checks_of(merchant_id.as_str(), player_id.as_str(), HISTORY_MAX)
            .await?;
        Ok(KycOverview {
            cdd_locked: self.cdd_locked_with(&player, &standing.levels).await?,
            levels: standing.levels,
            kyc_status: standing.kyc_status,
            kyc_country: standing.kyc_country,
            checks,
        })
    }

    /// Applies an ID provider's verified result to the check it names, once: the event's
    /// answer, the check's end and the player's levels commit together. A result for a check
    /// that is no longer open is recorded and ignored.
    pub async fn apply_verification_event(
        &self,
        provider: &str,
        event: &VerificationEvent,
    ) -> Result<EventAnswer, ProviderEventError> {
        let check = self.check_of(provider, event).await?;
        let after = next(check.status, LevelEvent::Completed(event.result));
        let answer = EventAnswer::kyc(after.is_some(), after.unwrap_or(check.status));
        // Read before the transaction: SQLite's one writer connection is the transaction's.
        let levels = match after {
            Some(_) => self.levels_after(&check, event.result).await?,
            None => None,
        };
        let mut tx = self.store.begin().await?;
        let answer_json = answer.to_json();
        if !self
            .store
            .insert_webhook_event(&mut tx, provider, &event.event_id, 200, &answer_json)
            .await?
        {
            return Err(ProviderEventError::AlreadyAnswered {
                event_id: event.event_id.clone(),
            });
        }
        let Some(status) = after else {
            tx.commit().await?;
            return Ok(answer);
        };
        let completed_at_ms = now_ms();
        let document_checks = serde_json::to_string(&event.checks)
            .map_err(|_| ProviderEventError::Internal("document checks do not serialize"))?;
        let completion = CheckCompletion {
            status,
            completed_at_ms,
            result_reason: event.reason.as_deref(),
            document_checks: &document_checks,
            provider_event_id: &event.event_id,
            document_country: event.document_country.as_deref(),
        };
        if !self
            .store
            .complete_kyc_check(&mut tx, &check.id, completion)
            .await?
        {
            // Another result closed it since it was read: sent again, this one is ignored.
            return Err(ProviderEventError::Internal(
                "the check closed concurrently",
            ));
        }
        if let Some(levels) = levels {
            self.store_levels(&mut tx, &check, levels, completed_at_ms)
                .await?;
        }
        // A verified document's country is the player's KYC country from now on (ADR 86).
        if let (LevelStatus::Verified, Some(country)) = (status, &event.document_country) {
            let key = (check.merchant_id.as_str(), check.player_id.as_str());
            self.store
                .set_player_kyc_country(&mut tx, key, country, completed_at_ms)
                .await?;
        }
        tx.commit().await?;
        crate::metrics::record_kyc_check_completed(
            check.level.as_str(),
            event.result.as_str(),
            completed_at_ms - check.requested_at_ms,
        );
        Ok(answer)
    }

    /// The check a result names: its applicant on this account, with the external id and
    /// level Kassa gave it.
    async fn check_of(
        &self,
        provider: &str,
        event: &VerificationEvent,
    ) -> Result<KycCheckRecord, ProviderEventError> {
        let check = self
            .store
            .kyc_check_by_applicant(provider, &event.applicant_id)
            .await?
            .ok_or_else(|| ProviderEventError::KycCheckNotFound {
                applicant_id: event.applicant_id.clone(),
            })?;
        if check.id != event.external_id || check.level != event.level {
            return Err(ProviderEventError::Mismatch(
                "the result's external id or level is not the check's",
            ));
        }
        Ok(check)
    }

    /// The player's levels before and after `check` ends with `result`, and the player's
    /// `kyc_status`; `None` when the result does not fit the level.
    async fn levels_after(
        &self,
        check: &KycCheckRecord,
        result: VerificationResult,
    ) -> Result<Option<LevelChange>, ProviderEventError> {
        let merchant_id = MerchantId::parse(&check.merchant_id)
            .map_err(|_| ProviderEventError::Internal("a stored check names a bad merchant"))?;
        let player_id = PlayerId::parse(&check.player_id)
            .map_err(|_| ProviderEventError::Internal("a stored check names a bad player"))?;
        let player = self.players.get(&merchant_id, &player_id).await?;
        let Standing {
            levels: before,
            kyc_status,
            ..
        } = self.standing(&player).await?;
        Ok(before
            .complete(check.level, result)
            .map(|after| LevelChange {
                before,
                after,
                kyc_status,
            }))
    }

    /// Stores the levels that moved (and the check's own), with the player's `kyc_status`
    /// when the basic level changed it.
    async fn store_levels(
        &self,
        tx: &mut kassa_store::Tx,
        check: &KycCheckRecord,
        change: LevelChange,
        now: i64,
    ) -> Result<(), StoreError> {
        let LevelChange {
            before,
            after,
            kyc_status,
        } = change;
        let key = (check.merchant_id.as_str(), check.player_id.as_str());
        let new_kyc_status = (after.kyc_status() != kyc_status).then(|| after.kyc_status());
        for &level in KycLevel::ALL {
            if before.level(level) != after.level(level) || level == check.level {
                self.store
                    .put_kyc_level(tx, key, (level, after.level(level)), new_kyc_status, now)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A result's effect on the player's levels.
struct LevelChange {
    before: PlayerKyc,
    after: PlayerKyc,
    /// The player's `kyc_status` before.
    kyc_status: KycStatus,
}
