//! Routing as a use case: the stored routing document (read again by every node at most once
//! a second, so a change applies everywhere within seconds), its versioned changes with their
//! audit, the measured health of provider accounts, and the decision for one deposit (made by
//! `kassa_core::routing::decide`; this module only gathers its inputs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kassa_connectors::ProviderRegistry;
use kassa_core::routing::{
    decide, AccountHealth, CircuitState, Decision, DocumentError, HealthSettings, HealthSnapshot,
    HealthTracker, NoRoute, Outcome, RouteRequest, RoutingDocument,
};
use kassa_store::routing::RoutingVersion;

use crate::service::success_rate::{SuccessRateFigures, UpliftReport};
use kassa_store::{Store, StoreError};
use serde::Serialize;

use crate::service::refreshed::Refreshed;

/// How old the routing document a decision uses may be: a change made through another node
/// applies within this time; one made through this node at once.
pub const ROUTING_TTL: Duration = Duration::from_secs(1);

/// Who stores the configuration file's document when the database holds none.
pub const CONFIG_ACTOR: &str = "config";

/// Why a routing change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// The document does not validate.
    #[error("invalid routing document: {0}")]
    Invalid(#[from] DocumentError),
    /// The document names a provider account this Kassa does not have.
    #[error("{place}: no provider account {account:?} is configured")]
    UnknownAccount { place: String, account: String },
    /// The change was based on another version than the newest.
    #[error("the routing document is at version {current:?}, not {based_on:?}")]
    Conflict {
        based_on: Option<i64>,
        current: Option<i64>,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The document in force and where it came from.
#[derive(Debug, Default)]
pub struct Routing {
    /// `None` until the first version is stored.
    pub version: Option<i64>,
    pub document: RoutingDocument,
}

/// One provider account's health, as shown to staff.
#[derive(Debug, Serialize)]
pub struct AccountHealthView {
    pub account: String,
    pub circuit: &'static str,
    pub degraded: bool,
    /// The account's recent calls, measured on this node; `None` before the first.
    pub measured: Option<kassa_core::routing::health::AccountReport>,
}

/// The routing use cases; cheap to clone.
#[derive(Clone)]
pub struct RoutingService {
    store: Store,
    providers: Arc<ProviderRegistry>,
    cached: Arc<Refreshed<Routing>>,
    health: Arc<Mutex<HealthTracker>>,
    rates: SuccessRateFigures,
}

impl RoutingService {
    /// Wires the service.
    pub fn new(
        store: Store,
        providers: Arc<ProviderRegistry>,
        health: HealthSettings,
    ) -> RoutingService {
        RoutingService {
            providers,
            cached: Arc::new(Refreshed::new(ROUTING_TTL)),
            health: Arc::new(Mutex::new(HealthTracker::new(health))),
            rates: SuccessRateFigures::new(store.clone()),
            store,
        }
    }

    /// Stores `document` as the first version when the database holds none (several nodes
    /// starting at once: one stores it, the others find it stored).
    pub async fn seed(&self, document: &RoutingDocument) -> Result<(), RoutingError> {
        if self.store.routing_version_number().await?.is_some() {
            return Ok(());
        }
        match self
            .replace(None, document.clone(), CONFIG_ACTOR, None)
            .await
        {
            Ok(_) | Err(RoutingError::Conflict { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The document in force, read again first if older than [`ROUTING_TTL`].
    pub async fn current(&self) -> Result<Arc<Routing>, StoreError> {
        self.cached
            .get(|known| async move {
                let newest = self.store.routing_version_number().await?;
                if newest.is_some() && newest != known.version {
                    return Ok(Arc::new(self.load_latest().await?));
                }
                Ok(known)
            })
            .await
    }

    async fn load_latest(&self) -> Result<Routing, StoreError> {
        let Some(stored) = self.store.latest_routing().await? else {
            return Ok(Routing::default());
        };
        let document = parse_stored(&stored)?;
        Ok(Routing {
            version: Some(stored.version),
            document,
        })
    }

    /// The newest stored version with who stored it; `None` before the first.
    pub async fn latest(&self) -> Result<Option<RoutingVersion>, StoreError> {
        self.store.latest_routing().await
    }

    /// Older versions, newest first: the audit of every change (who, when, the document
    /// before and after).
    pub async fn history(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RoutingVersion>, StoreError> {
        self.store.routing_history(before, limit).await
    }

    /// Stores `document` as the version after `based_on` (the newest when `None` is given
    /// for a later version: the caller reads it first), validated and with every account it
    /// names configured.
    pub async fn replace(
        &self,
        based_on: Option<i64>,
        document: RoutingDocument,
        actor: &str,
        note: Option<&str>,
    ) -> Result<RoutingVersion, RoutingError> {
        let document = document.validate()?;
        for (place, account) in document.accounts_named() {
            if self.providers.get(account).is_none() {
                return Err(RoutingError::UnknownAccount {
                    place,
                    account: account.to_string(),
                });
            }
        }
        // A base other than the newest version is stale (or from the future): refused, so
        // the versions stay 1, 2, 3, … with no gap.
        let current = self.store.routing_version_number().await?;
        if based_on != current {
            return Err(RoutingError::Conflict { based_on, current });
        }
        let text = serde_json::to_string(&document).map_err(|e| {
            StoreError::Corrupt(format!("routing document does not serialize: {e}"))
        })?;
        let stored = self
            .store
            .insert_routing_version(based_on, &text, actor, note)
            .await?
            .map_err(|conflict| RoutingError::Conflict {
                based_on,
                current: conflict.current,
            })?;
        tracing::info!(version = stored.version, %actor, "routing document changed");
        self.cached.changed();
        Ok(stored)
    }

    /// The route of one deposit: the accounts to offer it to, in order, and why. With the
    /// success-rate mode on, call [`Self::prepare`] first so its figures are fresh.
    pub fn decide(
        &self,
        routing: &Routing,
        request: &RouteRequest<'_>,
        eligible: &[&str],
    ) -> Result<Decision, NoRoute> {
        let mut snapshot = self.snapshot(eligible);
        if routing.document.success_rate.enabled {
            snapshot.set_rates(self.rates.cached());
        }
        decide(request, &routing.document, eligible, &snapshot)
    }

    /// Reads what the decision needs from the database and is stale: today the success-rate
    /// mode's figures, when the mode is on (at most one read per node every few seconds).
    pub async fn prepare(&self, routing: &Routing) -> Result<(), StoreError> {
        match routing.document.success_rate.enabled {
            true => self.rates.refresh_if_stale().await,
            false => Ok(()),
        }
    }

    /// How the success-rate mode's arms did over the last `hours`.
    pub async fn success_rate_report(&self, hours: u32) -> Result<UpliftReport, StoreError> {
        self.rates.report(hours).await
    }

    /// The health of `accounts` now: their circuits and whether they are degraded.
    fn snapshot(&self, accounts: &[&str]) -> HealthSnapshot {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let mut snapshot = HealthSnapshot::default();
        for account in accounts {
            let circuit = self
                .providers
                .circuit_state(account)
                .unwrap_or(CircuitState::Closed);
            let degraded = health.is_degraded(account);
            if circuit != CircuitState::Closed || degraded {
                snapshot.insert(account, AccountHealth { circuit, degraded });
            }
        }
        snapshot
    }

    /// Records how one call to a provider account ended.
    pub fn record(
        &self,
        account: &str,
        method: &str,
        country: &str,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(account, method, country, outcome, elapsed_ms);
    }

    /// Every configured account's health, measured on this node.
    pub fn health(&self) -> Vec<AccountHealthView> {
        let reports = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .report();
        self.providers
            .names()
            .map(|account| {
                let measured = reports.iter().find(|r| r.account == account).cloned();
                AccountHealthView {
                    account: account.to_string(),
                    circuit: self
                        .providers
                        .circuit_state(account)
                        .unwrap_or_default()
                        .as_str(),
                    degraded: measured.as_ref().is_some_and(|m| m.degraded),
                    measured,
                }
            })
            .collect()
    }
}

/// A stored document, which validated when it was stored.
pub fn parse_stored(stored: &RoutingVersion) -> Result<RoutingDocument, StoreError> {
    serde_json::from_str(&stored.document).map_err(|e| {
        StoreError::Corrupt(format!("routing document version {}: {e}", stored.version))
    })
}
