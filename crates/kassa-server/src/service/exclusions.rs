//! Self-exclusion and time-outs as a use case (ADR 57): the rules are
//! `kassa_core::exclusion`'s; this module reads the player and the exclusion in force, stores
//! the new one with the player's `self_excluded` status and an outbox event in one
//! transaction, and ends exclusions whose time has come.

use kassa_core::exclusion::{self, ExclusionKind, ExclusionPolicy, ExclusionRefusal};
use kassa_core::ids::{MerchantId, PlayerId};
use kassa_store::exclusions::ExclusionRecord;
use kassa_store::{now_ms, Store, StoreError};
use serde_json::json;

use crate::service::players::{PlayerDirectory, PlayerError};

/// Exclusions ended per run of the recurring job; the rest wait for the next.
const END_BATCH: u32 = 200;

/// Why an exclusion was not set.
#[derive(Debug, thiserror::Error)]
pub enum ExclusionError {
    /// The player is unknown.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// The jurisdiction does not allow it, or it would shorten the one in force.
    #[error(transparent)]
    Refused(#[from] ExclusionRefusal),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A player's exclusion and the rules of their jurisdiction.
pub struct PlayerExclusion {
    pub player_id: PlayerId,
    /// The exclusion in force, if any.
    pub current: Option<ExclusionRecord>,
    pub policy: ExclusionPolicy,
    /// The national register's latest answer about the player, if one was asked (ADR 73).
    pub register: Option<kassa_store::registers::RegisterStatus>,
}

/// The exclusions use cases; cheap to clone.
#[derive(Clone)]
pub struct ExclusionsService {
    store: Store,
    players: PlayerDirectory,
}

impl ExclusionsService {
    /// Wires the service.
    pub fn new(store: Store, players: PlayerDirectory) -> ExclusionsService {
        ExclusionsService { store, players }
    }

    /// The player's exclusion in force (none once it has ended).
    pub async fn get(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<PlayerExclusion, ExclusionError> {
        let player = self.players.get(merchant_id, player_id).await?;
        let now = now_ms();
        let current = self
            .store
            .player_exclusion(merchant_id.as_str(), player_id.as_str())
            .await?
            .filter(|record| record.exclusion.in_force(now));
        let register = self
            .store
            .register_status(merchant_id.as_str(), player_id.as_str())
            .await?;
        Ok(PlayerExclusion {
            player_id: player.player_id,
            current,
            policy: ExclusionPolicy::of(player.jurisdiction.as_deref()),
            register,
        })
    }

    /// Excludes the player at once for `days` (`None`: indefinitely), if the jurisdiction
    /// allows it and it shortens nothing; deposits and bets are refused from this commit on.
    pub async fn exclude(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        kind: ExclusionKind,
        days: Option<u32>,
        set_by: &str,
        reason: Option<String>,
    ) -> Result<PlayerExclusion, ExclusionError> {
        let found = self.get(merchant_id, player_id).await?;
        let now = now_ms();
        let current = found.current.as_ref().map(|record| &record.exclusion);
        let made = exclusion::request(&found.policy, kind, days, current, now)?;
        let record = ExclusionRecord {
            exclusion: made,
            set_by: set_by.to_string(),
            reason,
        };
        let mut tx = self.store.begin().await?;
        self.store
            .put_exclusion(&mut tx, merchant_id.as_str(), player_id.as_str(), &record)
            .await?;
        let payload = json!({
            "player_id": player_id.as_str(), "kind": kind.as_str(),
            "starts_at": crate::api::rfc3339(made.starts_at_ms),
            "ends_at": made.ends_at_ms.map(crate::api::rfc3339), "set_by": set_by,
        });
        self.store
            .insert_outbox(
                &mut tx,
                merchant_id.as_str(),
                "player.excluded",
                player_id.as_str(),
                &payload.to_string(),
            )
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.players.restricted_changed();
        tracing::info!(player_id = %player_id, kind = kind.as_str(), %set_by, "player excluded");
        Ok(PlayerExclusion {
            current: Some(record),
            ..found
        })
    }

    /// Ends the exclusions whose end has come (the recurring job); answers how many.
    pub async fn end_due(&self) -> Result<u32, StoreError> {
        let ended = self.store.end_due_exclusions(now_ms(), END_BATCH).await?;
        if ended > 0 {
            self.players.restricted_changed();
            tracing::info!(ended, "exclusions ended");
        }
        Ok(ended)
    }
}
