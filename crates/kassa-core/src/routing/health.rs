//! Measured health of provider accounts from live traffic: the outcomes of the last calls per
//! account and per method and country, what they add up to (approval rate, failure rate, p95
//! time, share within the SLA), and whether the account is degraded.
//!
//! Degraded is decided with hysteresis: an account becomes degraded when at least
//! `degrade_at_failure_permille` of its last calls failed (and there are at least
//! `min_samples` of them), and healthy again only when the failures fall to
//! `recover_at_failure_permille` or below, so an account on the edge does not flap. A degraded
//! account is tried after the healthy ones; its own traffic (as a fallback, or probes by the
//! breaker) shows when it recovers. Each node measures its own traffic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::breaker::CircuitState;
use super::success_rate::SuccessRates;

/// How one call to a provider ended, for health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider took the payment (or answered the call).
    Approved,
    /// The provider refused it (a decline is an answer, not a failure).
    Declined,
    /// No answer or a server error.
    Error,
    /// No answer in time.
    Timeout,
}

impl Outcome {
    fn failed(self) -> bool {
        matches!(self, Outcome::Error | Outcome::Timeout)
    }
}

/// The thresholds of health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// Calls remembered per account.
    pub window: usize,
    /// Fewer calls than this never make an account degraded.
    pub min_samples: usize,
    /// Failure share (per mille) at or above which an account becomes degraded.
    pub degrade_at_failure_permille: u32,
    /// Failure share (per mille) at or below which a degraded account is healthy again.
    pub recover_at_failure_permille: u32,
    /// The SLA's authorization time.
    pub sla_authorization_ms: u64,
}

impl Default for HealthSettings {
    fn default() -> HealthSettings {
        HealthSettings {
            window: 200,
            min_samples: 20,
            degrade_at_failure_permille: 500,
            recover_at_failure_permille: 200,
            sla_authorization_ms: 2_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    outcome: Outcome,
    elapsed_ms: u64,
    key: u32,
}

#[derive(Debug, Default)]
struct AccountStats {
    recent: VecDeque<Sample>,
    degraded: bool,
    /// (method, country) by key, so a sample stays small.
    keys: Vec<(String, String)>,
}

/// What one account's (or one of its method × country's) recent calls add up to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Calls counted.
    pub samples: usize,
    /// Approved among answered calls (approved + declined), per mille.
    pub approval_permille: Option<u32>,
    /// Errors and timeouts among all calls, per mille.
    pub failure_permille: Option<u32>,
    /// Timeouts among all calls, per mille.
    pub timeout_permille: Option<u32>,
    /// 95th percentile of the call time.
    pub p95_ms: Option<u64>,
    /// Calls answered within the SLA's authorization time, per mille.
    pub within_sla_permille: Option<u32>,
}

/// One account's health report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountReport {
    /// The provider account.
    pub account: String,
    /// Whether it is tried after the healthy accounts.
    pub degraded: bool,
    /// All its recent calls.
    pub overall: Figures,
    /// By method and country.
    pub by_method_country: Vec<(String, String, Figures)>,
}

/// The health of every account, measured on this node.
#[derive(Debug, Default)]
pub struct HealthTracker {
    settings: HealthSettings,
    accounts: HashMap<String, AccountStats>,
}

impl HealthTracker {
    /// An empty tracker.
    pub fn new(settings: HealthSettings) -> HealthTracker {
        HealthTracker {
            settings,
            accounts: HashMap::new(),
        }
    }

    /// Records one call's outcome and updates the account's degraded flag.
    pub fn record(
        &mut self,
        account: &str,
        method: &str,
        country: &str,
        outcome: Outcome,
        elapsed_ms: u64,
    ) {
        let settings = self.settings;
        let stats = self.accounts.entry(account.to_string()).or_default();
        let key = match stats
            .keys
            .iter()
            .position(|(m, c)| m == method && c == country)
        {
            Some(key) => key,
            None => {
                stats.keys.push((method.to_string(), country.to_string()));
                stats.keys.len() - 1
            }
        } as u32;
        stats.recent.push_back(Sample {
            outcome,
            elapsed_ms,
            key,
        });
        while stats.recent.len() > settings.window.max(1) {
            stats.recent.pop_front();
        }
        let samples = stats.recent.len();
        let failed = stats.recent.iter().filter(|s| s.outcome.failed()).count();
        let failure_permille = permille(failed, samples).unwrap_or(0);
        if !stats.degraded
            && samples >= settings.min_samples
            && failure_permille >= settings.degrade_at_failure_permille
        {
            stats.degraded = true;
        } else if stats.degraded && failure_permille <= settings.recover_at_failure_permille {
            stats.degraded = false;
        }
    }

    /// Whether the account is degraded now.
    pub fn is_degraded(&self, account: &str) -> bool {
        self.accounts.get(account).is_some_and(|s| s.degraded)
    }

    /// Every measured account's figures.
    pub fn report(&self) -> Vec<AccountReport> {
        let mut reports: Vec<AccountReport> = self
            .accounts
            .iter()
            .map(|(account, stats)| {
                let mut by_key: BTreeMap<u32, Vec<Sample>> = BTreeMap::new();
                for sample in &stats.recent {
                    by_key.entry(sample.key).or_default().push(*sample);
                }
                let by_method_country = by_key
                    .into_iter()
                    .map(|(key, samples)| {
                        let (method, country) = stats.keys[key as usize].clone();
                        (method, country, figures(&samples, self.settings))
                    })
                    .collect();
                let all: Vec<Sample> = stats.recent.iter().copied().collect();
                AccountReport {
                    account: account.clone(),
                    degraded: stats.degraded,
                    overall: figures(&all, self.settings),
                    by_method_country,
                }
            })
            .collect();
        reports.sort_by(|a, b| a.account.cmp(&b.account));
        reports
    }
}

fn permille(part: usize, whole: usize) -> Option<u32> {
    (whole > 0).then(|| ((part * 1_000) / whole) as u32)
}

fn figures(samples: &[Sample], settings: HealthSettings) -> Figures {
    let count = |wanted: fn(Outcome) -> bool| samples.iter().filter(|s| wanted(s.outcome)).count();
    let approved = count(|o| o == Outcome::Approved);
    let answered = approved + count(|o| o == Outcome::Declined);
    let mut times: Vec<u64> = samples.iter().map(|s| s.elapsed_ms).collect();
    times.sort_unstable();
    let p95_ms = (!times.is_empty()).then(|| times[(times.len() * 95).div_ceil(100) - 1]);
    let within = samples
        .iter()
        .filter(|s| !s.outcome.failed() && s.elapsed_ms <= settings.sla_authorization_ms)
        .count();
    Figures {
        samples: samples.len(),
        approval_permille: permille(approved, answered),
        failure_permille: permille(count(Outcome::failed), samples.len()),
        timeout_permille: permille(count(|o| o == Outcome::Timeout), samples.len()),
        p95_ms,
        within_sla_permille: permille(within, samples.len()),
    }
}

/// What the router needs to know of one account's health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountHealth {
    /// Its circuit.
    pub circuit: CircuitState,
    /// Whether its recent calls failed too often.
    pub degraded: bool,
}

/// The health of the accounts at one moment; accounts not in it are healthy.
#[derive(Clone, Debug, Default)]
pub struct HealthSnapshot {
    accounts: HashMap<String, AccountHealth>,
    rates: Arc<SuccessRates>,
}

impl HealthSnapshot {
    /// Sets the recent approval figures the success-rate mode orders by.
    pub fn set_rates(&mut self, rates: Arc<SuccessRates>) {
        self.rates = rates;
    }

    /// The recent approval figures (empty unless set).
    pub fn rates(&self) -> &SuccessRates {
        &self.rates
    }

    /// Sets one account's health.
    pub fn insert(&mut self, account: &str, health: AccountHealth) {
        self.accounts.insert(account.to_string(), health);
    }

    /// One account's health (healthy when unknown).
    pub fn get(&self, account: &str) -> AccountHealth {
        self.accounts.get(account).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> HealthTracker {
        HealthTracker::new(HealthSettings {
            window: 50,
            min_samples: 10,
            degrade_at_failure_permille: 500,
            recover_at_failure_permille: 200,
            sla_authorization_ms: 2_000,
        })
    }

    #[test]
    fn too_few_samples_never_degrade() {
        let mut health = tracker();
        for _ in 0..9 {
            health.record("psp_a", "card", "DE", Outcome::Error, 10);
        }
        assert!(!health.is_degraded("psp_a"));
        health.record("psp_a", "card", "DE", Outcome::Error, 10);
        assert!(health.is_degraded("psp_a"));
    }

    #[test]
    fn recovery_needs_the_lower_threshold() {
        let mut health = tracker();
        for _ in 0..25 {
            health.record("psp_a", "card", "DE", Outcome::Timeout, 3_000);
        }
        for _ in 0..25 {
            health.record("psp_a", "card", "DE", Outcome::Approved, 100);
        }
        // 25 of the last 50 failed: 500 per mille, still degraded (hysteresis).
        assert!(health.is_degraded("psp_a"));
        for _ in 0..15 {
            health.record("psp_a", "card", "DE", Outcome::Approved, 100);
        }
        // 10 of 50 failed: 200 per mille, healthy again.
        assert!(!health.is_degraded("psp_a"));
    }

    #[test]
    fn the_report_adds_up_by_method_and_country() {
        let mut health = tracker();
        for elapsed_ms in 1..=20 {
            health.record("psp_a", "card", "DE", Outcome::Approved, elapsed_ms * 100);
        }
        health.record("psp_a", "card", "DE", Outcome::Declined, 50);
        health.record("psp_a", "bank_transfer", "AT", Outcome::Timeout, 5_000);
        let report = &health.report()[0];
        assert_eq!(report.overall.samples, 22);
        assert_eq!(report.overall.approval_permille, Some(952)); // 20 of 21 answered
        assert_eq!(report.overall.timeout_permille, Some(45));
        let (_, _, card) = &report.by_method_country[0];
        assert_eq!(card.samples, 21);
        assert_eq!(card.p95_ms, Some(1_900));
        // All 21 card calls within 2 s (the 2,000 ms one counts).
        assert_eq!(card.within_sla_permille, Some(1_000));
        let (method, country, transfer) = &report.by_method_country[1];
        assert_eq!((method.as_str(), country.as_str()), ("bank_transfer", "AT"));
        assert_eq!(transfer.within_sla_permille, Some(0));
    }
}
