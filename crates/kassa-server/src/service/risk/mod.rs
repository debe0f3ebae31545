//! Risk as a use case: the rule sets per merchant and jurisdiction (stored versions with
//! their audit, read again by every node at most once a second), the pre-authorization
//! decision of a deposit or payout (features gathered here, the decision made by
//! `kassa_core::risk::evaluate`), and the backtest of a draft rule set over stored decisions.

pub mod bin_list;
pub mod features;
pub mod ip_list;
pub mod list_file;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kassa_connectors::CardDetails;
use kassa_core::ids::MerchantId;
use kassa_core::risk::features::VELOCITY_WINDOWS;
use kassa_core::risk::{evaluate, Decision, Features, RiskOutcome, RuleSet};
use kassa_core::routing::DocumentError;
use kassa_store::risk::{RiskDecisionRecord, RuleSetVersion, VelocityAsk};
use kassa_store::{now_ms, Conn, GroupedTx, Store, StoreError};
use serde::Serialize;

use features::Lists;
pub use features::{CardSeen, RiskKind, RiskRequest};

use crate::config::RiskConfig;
use crate::service::refreshed::Refreshed;
use crate::service::vault::CardFingerprinter;

/// How old the rule sets a decision uses may be: a change made through another node
/// applies within this time; one made through this node at once.
pub const RULES_TTL: Duration = Duration::from_secs(1);

/// The built-in default rule set, used when the configuration names none (docs/risk.md).
const BUILT_IN_RULES: &str = include_str!("default_rules.json");

/// Any merchant or any jurisdiction in a scope.
const ANY: &str = "*";

/// A backtest replays at most this many decisions.
pub const BACKTEST_DECISIONS_MAX: u32 = 50_000;
/// A backtest lists at most this many changed decisions.
pub const BACKTEST_CHANGES_MAX: usize = 100;

/// Why a risk rules change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// The rule set does not validate.
    #[error("invalid risk rule set: {0}")]
    Invalid(#[from] DocumentError),
    /// The change was based on another version than the newest.
    #[error("the risk rule set is at version {current:?}, not {based_on:?}")]
    Conflict {
        based_on: Option<i64>,
        current: Option<i64>,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A start the risk decision refused: `decline`, or `step_up` where it refuses.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", match .outcome {
    RiskOutcome::StepUp => "further identity verification (KYC step-up) is required first",
    _ => "refused by the risk rules",
})]
pub struct RiskRefusal {
    pub outcome: RiskOutcome,
    pub score: i64,
    /// The rules that fired.
    pub rules: Vec<String>,
    /// The stored decision's id.
    pub decision_id: String,
}

/// Whose rule set: one merchant's or any, one jurisdiction's or any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub merchant: Option<MerchantId>,
    pub jurisdiction: Option<String>,
}

impl Scope {
    /// The stored key, `merchant|jurisdiction` with `*` for any.
    pub fn key(&self) -> String {
        scope_key(
            self.merchant.as_ref().map(MerchantId::as_str),
            self.jurisdiction.as_deref(),
        )
    }
}

fn scope_key(merchant: Option<&str>, jurisdiction: Option<&str>) -> String {
    format!(
        "{}|{}",
        merchant.unwrap_or(ANY),
        jurisdiction.unwrap_or(ANY)
    )
}

/// Every stored scope's newest rule set.
#[derive(Debug, Default)]
pub struct RuleSets {
    by_scope: HashMap<String, (i64, Arc<RuleSet>)>,
}

/// A decision and what it was made from.
#[derive(Clone, Debug)]
pub struct Assessment {
    pub decision: Decision,
    pub features: Features,
    /// The scope whose rule set decided; `default` for the configured or built-in one.
    pub scope: String,
    /// Whether a `step_up` refuses a deposit under that rule set.
    pub step_up_refuses_deposits: bool,
    /// What was decided on: `deposit`, `card` or `payout`.
    pub kind: RiskKind,
    /// The player's email key, counted by later decisions.
    pub email_key: Option<String>,
}

/// What a decision needs that is read before the transaction storing it (ADR 74): the
/// rule set and the features that are not counted.
#[derive(Debug)]
pub struct Prepared {
    version: Option<i64>,
    scope: String,
    rules: Arc<RuleSet>,
    features: Features,
    email_key: Option<String>,
    now_ms: i64,
}

/// What a payment or payout shows of its decision.
#[derive(Debug, Serialize)]
struct StoredDecision<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    scope: &'a str,
    /// `deposit` (the start's), `card` (the card page's) or `payout`.
    kind: &'a str,
}

impl Assessment {
    /// The decision with its explanation, as stored on the payment or payout.
    pub fn json(&self) -> String {
        let stored = StoredDecision {
            decision: &self.decision,
            scope: &self.scope,
            kind: self.kind.as_str(),
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// The refusal this decision makes of a start of `kind`, if any: `decline` always,
    /// `step_up` for payouts and, where the rule set says so, for deposits (and their
    /// cards).
    pub fn refusal(&self, kind: RiskKind, decision_id: &str) -> Option<RiskRefusal> {
        let refuses = match self.decision.outcome {
            RiskOutcome::Decline => true,
            RiskOutcome::StepUp => kind == RiskKind::Payout || self.step_up_refuses_deposits,
            RiskOutcome::Approve | RiskOutcome::Review => false,
        };
        refuses.then(|| RiskRefusal {
            outcome: self.decision.outcome,
            score: self.decision.score,
            rules: self.decision.fired.iter().map(|f| f.rule.clone()).collect(),
            decision_id: decision_id.to_string(),
        })
    }

    /// The row of `risk_decisions` for this decision on `subject_id`.
    pub fn record(&self, request: &RiskRequest<'_>, subject_id: &str) -> RiskDecisionRecord {
        RiskDecisionRecord {
            id: kassa_core::ids::generate("rsk"),
            merchant_id: request.player.merchant_id.to_string(),
            player_id: request.player.player_id.to_string(),
            kind: request.kind.as_str().to_string(),
            subject_id: subject_id.to_string(),
            jurisdiction: request.player.jurisdiction.clone(),
            ip: request.ip.map(str::to_string),
            device: request.device.map(str::to_string),
            card_fingerprint: request
                .card
                .and_then(|card| card.fingerprint)
                .map(str::to_string),
            email_key: self.email_key.clone(),
            amount_minor: request.amount.amount_minor,
            outcome: self.decision.outcome.as_str().to_string(),
            score: self.decision.score,
            features: serde_json::to_string(&self.features).unwrap_or_default(),
            decision: self.json(),
            created_at_ms: now_ms(),
        }
    }
}

/// What a draft rule set would have decided on the stored decisions.
#[derive(Debug, Serialize)]
pub struct Backtest {
    pub days: u32,
    /// How many stored decisions were replayed.
    pub decisions: usize,
    /// More decisions were stored than a backtest replays; the oldest were replayed.
    pub truncated: bool,
    /// Decisions by outcome, as stored.
    pub before: BTreeMap<&'static str, usize>,
    /// Decisions by outcome under the draft.
    pub after: BTreeMap<&'static str, usize>,
    /// How many decisions the draft changes.
    pub changed: usize,
    /// The changed decisions, oldest first, at most [`BACKTEST_CHANGES_MAX`].
    pub changes: Vec<BacktestChange>,
}

/// One decision a draft would change.
#[derive(Debug, Serialize)]
pub struct BacktestChange {
    pub decision_id: String,
    pub subject_id: String,
    pub kind: String,
    pub player_id: String,
    pub before: String,
    pub after: &'static str,
    pub score_before: i64,
    pub score_after: i64,
    /// The draft's rules that fired.
    pub fired: Vec<String>,
    pub created_at_ms: i64,
}

/// The risk use cases; cheap to clone.
#[derive(Clone)]
pub struct RiskService {
    store: Store,
    default_rules: Arc<RuleSet>,
    cached: Arc<Refreshed<RuleSets>>,
    lists: Arc<Lists>,
    fingerprints: Option<CardFingerprinter>,
}

impl RiskService {
    /// Wires the service; refuses an invalid configured rule set.
    pub fn new(store: Store, config: &RiskConfig) -> Result<RiskService, DocumentError> {
        let default_rules = match &config.rules {
            Some(rules) => rules.clone().validate()?,
            None => built_in_rules(),
        };
        Ok(RiskService {
            store,
            default_rules: Arc::new(default_rules),
            cached: Arc::new(Refreshed::new(RULES_TTL)),
            lists: Arc::new(Lists {
                ips: ip_list::IpList::new(&config.ip_list_path),
                bins: bin_list::BinList::new(&config.bin_list_path),
            }),
            fingerprints: None,
        })
    }

    /// Fingerprints the cards decided on with `fingerprints` (`[vault] fingerprint_key`).
    pub fn with_fingerprints(mut self, fingerprints: Option<CardFingerprinter>) -> RiskService {
        self.fingerprints = fingerprints;
        self
    }

    /// The keyed fingerprint of `card`; `None` without a fingerprint key.
    /// The issuing country of a card by its first digits, from the BIN list (ADR 76).
    pub fn bin_country(&self, digits: &str) -> Option<String> {
        self.lists.bins.country_of(digits)
    }

    pub fn fingerprint(&self, card: &CardDetails) -> Option<String> {
        self.fingerprints.as_ref().map(|f| f.of(card))
    }

    /// The rule set deciding for a merchant's player of `jurisdiction`: the most specific
    /// stored scope (merchant and jurisdiction, merchant, jurisdiction, any), else the
    /// default. Returns its version, scope and rules.
    pub async fn rules_for(
        &self,
        merchant: &str,
        jurisdiction: Option<&str>,
    ) -> Result<(Option<i64>, String, Arc<RuleSet>), StoreError> {
        let sets = self.sets().await?;
        let candidates = [
            jurisdiction.map(|j| scope_key(Some(merchant), Some(j))),
            Some(scope_key(Some(merchant), None)),
            jurisdiction.map(|j| scope_key(None, Some(j))),
            Some(scope_key(None, None)),
        ];
        for key in candidates.into_iter().flatten() {
            if let Some((version, set)) = sets.by_scope.get(&key) {
                return Ok((Some(*version), key, set.clone()));
            }
        }
        Ok((None, "default".to_string(), self.default_rules.clone()))
    }

    async fn sets(&self) -> Result<Arc<RuleSets>, StoreError> {
        self.cached
            .get(|known| async move {
                let heads = self.store.risk_rule_heads().await?;
                let unchanged = heads.len() == known.by_scope.len()
                    && heads.iter().all(|(scope, version)| {
                        known.by_scope.get(scope).map(|(v, _)| v) == Some(version)
                    });
                if unchanged {
                    return Ok(known);
                }
                let mut by_scope = HashMap::new();
                for (scope, version) in heads {
                    let set = match known.by_scope.get(&scope) {
                        Some((known_version, set)) if *known_version == version => set.clone(),
                        _ => Arc::new(self.load(&scope).await?),
                    };
                    by_scope.insert(scope, (version, set));
                }
                Ok(Arc::new(RuleSets { by_scope }))
            })
            .await
    }

    async fn load(&self, scope: &str) -> Result<RuleSet, StoreError> {
        let stored = self.store.latest_risk_rules(scope).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("risk rules of {scope} vanished while read"))
        })?;
        parse_stored(&stored)
    }

    /// Reads what a decision on `request` needs before its transaction: the rule set and
    /// the features that are not counted.
    pub async fn prepare(&self, request: &RiskRequest<'_>) -> Result<Prepared, StoreError> {
        let player = request.player;
        let (version, scope, rules) = self
            .rules_for(player.merchant_id.as_str(), player.jurisdiction.as_deref())
            .await?;
        let email_key = player.email.as_ref().map(|e| e.match_key());
        let now = now_ms();
        let features =
            features::gather_facts(&self.store, &self.lists, request, email_key.as_deref(), now)
                .await?;
        Ok(Prepared {
            version,
            scope,
            rules,
            features,
            email_key,
            now_ms: now,
        })
    }

    /// Counts `request`'s velocity on `conn` (not counting `subject_id`'s own earlier
    /// decision) and decides.
    async fn decide_on(
        &self,
        conn: &mut Conn,
        prepared: Prepared,
        request: &RiskRequest<'_>,
        subject_id: &str,
    ) -> Result<Assessment, StoreError> {
        let Prepared {
            version,
            scope,
            rules,
            mut features,
            email_key,
            now_ms,
        } = prepared;
        let windows: Vec<i64> = VELOCITY_WINDOWS.iter().map(|(_, ms)| now_ms - ms).collect();
        let subjects = request.velocity_subjects(email_key.as_deref(), now_ms);
        let ask = VelocityAsk {
            merchant_id: request.player.merchant_id.as_str(),
            player_id: request.player.player_id.as_str(),
            subject_id,
            window_starts_ms: &windows,
        };
        let counted: Vec<_> = subjects.iter().map(|(_, s, since)| (*s, *since)).collect();
        let velocity = self.store.risk_velocity_in(conn, &ask, &counted).await?;
        let names: Vec<&str> = subjects.iter().map(|(name, _, _)| *name).collect();
        features::insert_counted(&mut features, &names, &velocity);
        let decision = evaluate(&rules, version, &features);
        crate::metrics::record_risk_decision(request.kind.as_str(), decision.outcome.as_str());
        Ok(Assessment {
            decision,
            features,
            scope,
            step_up_refuses_deposits: rules.step_up_refuses_deposits,
            kind: request.kind,
            email_key,
        })
    }

    /// Gathers the features of `request` and decides on them, storing nothing (a payout's
    /// decision, stored with its hold; the bench).
    pub async fn assess(&self, request: &RiskRequest<'_>) -> Result<Assessment, StoreError> {
        let prepared = self.prepare(request).await?;
        let mut conn = self.store.read_connection().await?;
        self.decide_on(&mut conn, prepared, request, "").await
    }

    /// The lock keys of `request`'s velocity subjects, for
    /// [`kassa_store::Store::begin_risk_decision`].
    pub fn lock_keys(&self, prepared: &Prepared, request: &RiskRequest<'_>) -> Vec<i32> {
        let merchant = request.player.merchant_id.as_str();
        request
            .velocity_subjects(prepared.email_key.as_deref(), prepared.now_ms)
            .iter()
            .map(|(_, subject, _)| subject.lock_key(merchant))
            .collect()
    }

    /// Decides on `request` for `subject_id` inside the caller's transaction and stores the
    /// decision there, in place of an earlier one of the subject (ADR 74). The subjects'
    /// locks are taken first (unless `tx` holds them from its begin), so the velocity
    /// counted sees every attempt decided before this one, on any node, and a later one
    /// sees this one once the transaction commits.
    pub async fn decide_in(
        &self,
        tx: &mut GroupedTx,
        prepared: Prepared,
        request: &RiskRequest<'_>,
        subject_id: &str,
    ) -> Result<(Assessment, RiskDecisionRecord), StoreError> {
        let keys = self.lock_keys(&prepared, request);
        self.store.lock_risk_subjects(tx, &keys).await?;
        let assessment = self.decide_on(tx, prepared, request, subject_id).await?;
        let record = assessment.record(request, subject_id);
        self.store.replace_risk_decision(tx, &record).await?;
        Ok((assessment, record))
    }

    /// Decides on `request` for `subject_id`. A refusal is stored at once (no payment or
    /// payout is stored for it) and returned; otherwise the decision, to be stored with
    /// the payment or payout in its transaction.
    pub async fn pre_authorize(
        &self,
        request: &RiskRequest<'_>,
        subject_id: &str,
    ) -> Result<Result<(Assessment, RiskDecisionRecord), RiskRefusal>, StoreError> {
        let assessment = self.assess(request).await?;
        let record = assessment.record(request, subject_id);
        if let Some(refusal) = assessment.refusal(request.kind, &record.id) {
            self.store.insert_risk_decision_alone(&record).await?;
            return Ok(Err(refusal));
        }
        Ok(Ok((assessment, record)))
    }

    /// The newest stored version of `scope`'s rule set; `None` before the first.
    pub async fn latest(&self, scope: &Scope) -> Result<Option<RuleSetVersion>, StoreError> {
        self.store.latest_risk_rules(&scope.key()).await
    }

    /// The rule set deciding when `scope` has none stored.
    pub fn default_rules(&self) -> &RuleSet {
        &self.default_rules
    }

    /// `scope`'s older versions, newest first: the audit (who, when, why, before and after).
    pub async fn history(
        &self,
        scope: &Scope,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RuleSetVersion>, StoreError> {
        self.store
            .risk_rules_history(&scope.key(), before, limit)
            .await
    }

    /// Stores `rules` as `scope`'s version after `based_on`, which must be the newest.
    pub async fn replace(
        &self,
        scope: &Scope,
        based_on: Option<i64>,
        rules: RuleSet,
        actor: &str,
        note: Option<&str>,
    ) -> Result<RuleSetVersion, RiskError> {
        let rules = rules.validate()?;
        let key = scope.key();
        let current = self.store.latest_risk_rules(&key).await?.map(|v| v.version);
        if based_on != current {
            return Err(RiskError::Conflict { based_on, current });
        }
        let text = serde_json::to_string(&rules)
            .map_err(|e| StoreError::Corrupt(format!("risk rules do not serialize: {e}")))?;
        let stored = self
            .store
            .insert_risk_rules(&key, based_on, &text, actor, note)
            .await?;
        let Some(stored) = stored else {
            let current = self.store.latest_risk_rules(&key).await?.map(|v| v.version);
            return Err(RiskError::Conflict { based_on, current });
        };
        tracing::info!(scope = %key, version = stored.version, %actor, "risk rules changed");
        self.cached.changed();
        Ok(stored)
    }

    /// What `draft` would have decided on the decisions of the last `days` days (of the
    /// scope's merchant and jurisdiction when it names them).
    pub async fn backtest(
        &self,
        scope: &Scope,
        draft: RuleSet,
        days: u32,
    ) -> Result<Backtest, RiskError> {
        let draft = draft.validate()?;
        let since_ms = now_ms() - i64::from(days) * 24 * 60 * 60 * 1_000;
        let stored = self
            .store
            .risk_decisions_since(
                since_ms,
                scope.merchant.as_ref().map(MerchantId::as_str),
                scope.jurisdiction.as_deref(),
                BACKTEST_DECISIONS_MAX,
            )
            .await?;
        let mut report = Backtest {
            days,
            decisions: stored.len(),
            truncated: stored.len() >= BACKTEST_DECISIONS_MAX as usize,
            before: outcome_counts(),
            after: outcome_counts(),
            changed: 0,
            changes: Vec::new(),
        };
        for record in &stored {
            replay(&draft, record, &mut report)?;
        }
        Ok(report)
    }
}

fn outcome_counts() -> BTreeMap<&'static str, usize> {
    [
        RiskOutcome::Approve,
        RiskOutcome::Review,
        RiskOutcome::StepUp,
        RiskOutcome::Decline,
    ]
    .into_iter()
    .map(|outcome| (outcome.as_str(), 0))
    .collect()
}

/// One stored decision decided again under `draft`, counted into `report`.
fn replay(
    draft: &RuleSet,
    record: &RiskDecisionRecord,
    report: &mut Backtest,
) -> Result<(), StoreError> {
    let features: Features = serde_json::from_str(&record.features)
        .map_err(|e| StoreError::Corrupt(format!("risk decision {}: {e}", record.id)))?;
    let after = evaluate(draft, None, &features);
    if let Some(count) = report.before.get_mut(record.outcome.as_str()) {
        *count += 1;
    }
    *report.after.entry(after.outcome.as_str()).or_default() += 1;
    if after.outcome.as_str() == record.outcome {
        return Ok(());
    }
    report.changed += 1;
    if report.changes.len() < BACKTEST_CHANGES_MAX {
        report.changes.push(BacktestChange {
            decision_id: record.id.clone(),
            subject_id: record.subject_id.clone(),
            kind: record.kind.clone(),
            player_id: record.player_id.clone(),
            before: record.outcome.clone(),
            after: after.outcome.as_str(),
            score_before: record.score,
            score_after: after.score,
            fired: after.fired.into_iter().map(|f| f.rule).collect(),
            created_at_ms: record.created_at_ms,
        });
    }
    Ok(())
}

/// The built-in default rule set (docs/risk.md).
pub fn built_in_rules() -> RuleSet {
    let parsed: RuleSet =
        serde_json::from_str(BUILT_IN_RULES).expect("the built-in rule set parses");
    parsed.validate().expect("the built-in rule set validates")
}

/// A stored rule set, which validated when it was stored.
pub fn parse_stored(stored: &RuleSetVersion) -> Result<RuleSet, StoreError> {
    serde_json::from_str(&stored.document)
        .map_err(|e| StoreError::Corrupt(format!("risk rules version {}: {e}", stored.version)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_rule_set_validates() {
        assert!(!super::built_in_rules().rules.is_empty());
    }
}
