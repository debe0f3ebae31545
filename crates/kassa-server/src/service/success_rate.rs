//! The success-rate mode's figures (ADR 54): recent finished deposits per provider account,
//! method and country, read from the database (so every node orders by all nodes' traffic)
//! at most every [`RATES_TTL`], and the uplift report of the exploit arm against the holdout.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kassa_core::payment::PaymentStatus;
use kassa_core::routing::{Arm, SuccessRates, Tally};
use kassa_store::routing::FinishedCount;
use kassa_store::{now_ms, Store, StoreError};
use serde::Serialize;

/// How old the figures a decision orders by may be.
pub const RATES_TTL: Duration = Duration::from_secs(10);
/// The figures count deposits that finished within this many hours.
pub const RATES_WINDOW_HOURS: i64 = 24;
/// Longest period the report covers, in hours (30 days).
pub const REPORT_HOURS_MAX: u32 = 720;
/// |z| at or above which the report calls the uplift significant (two-sided, 95%).
const Z_SIGNIFICANT: f64 = 1.96;

/// Figures and when their read began.
type ReadFigures = Option<(Instant, Arc<SuccessRates>)>;

/// The cached figures; cheap to clone.
#[derive(Clone, Default)]
pub struct SuccessRateFigures {
    store: Option<Store>,
    cached: Arc<RwLock<ReadFigures>>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

fn approved(status: &str) -> bool {
    PaymentStatus::parse(status).is_some_and(PaymentStatus::is_captured_family)
}

fn count_of(row: &FinishedCount) -> u32 {
    u32::try_from(row.count).unwrap_or(u32::MAX)
}

impl SuccessRateFigures {
    /// Figures read from `store`.
    pub fn new(store: Store) -> SuccessRateFigures {
        SuccessRateFigures {
            store: Some(store),
            ..SuccessRateFigures::default()
        }
    }

    /// The figures as last read; empty before the first read.
    pub fn cached(&self) -> Arc<SuccessRates> {
        let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .map(|(_, rates)| rates.clone())
            .unwrap_or_default()
    }

    /// Reads the figures again when they are older than [`RATES_TTL`] (one read per node at
    /// a time; the others wait for it).
    pub async fn refresh_if_stale(&self) -> Result<(), StoreError> {
        let fresh = |cached: &ReadFigures| {
            cached
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < RATES_TTL)
        };
        if fresh(&self.cached.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        let _one_read = self.refreshing.lock().await;
        if fresh(&self.cached.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        let Some(store) = &self.store else {
            return Ok(());
        };
        let read_at = Instant::now();
        let since_ms = now_ms() - RATES_WINDOW_HOURS * 3_600_000;
        let mut rates = SuccessRates::default();
        for row in store.finished_deposits_by_account(since_ms).await? {
            let (account, method, country) = &row.key;
            let finished = count_of(&row);
            let approved = if approved(&row.status) { finished } else { 0 };
            rates.add(account, method, country, Tally { finished, approved });
        }
        *self.cached.write().unwrap_or_else(|e| e.into_inner()) = Some((read_at, Arc::new(rates)));
        Ok(())
    }

    /// How each arm did over the last `hours`.
    pub async fn report(&self, hours: u32) -> Result<UpliftReport, StoreError> {
        let Some(store) = &self.store else {
            return Ok(UpliftReport::of(hours, &[]));
        };
        let since_ms = now_ms() - i64::from(hours) * 3_600_000;
        let rows = store.finished_deposits_by_arm(since_ms).await?;
        Ok(UpliftReport::of(hours, &rows))
    }
}

/// One arm's finished deposits.
#[derive(Clone, Debug, Serialize)]
pub struct ArmFigures {
    pub arm: Arm,
    pub finished: u32,
    pub approved: u32,
    /// `null` with nothing finished.
    pub approval_permille: Option<u32>,
}

/// The exploit arm against the holdout.
#[derive(Clone, Debug, Serialize)]
pub struct UpliftReport {
    /// The period covered, ending now.
    pub hours: u32,
    pub arms: Vec<ArmFigures>,
    /// Exploit's approval rate minus the holdout's, in tenths of a percentage point; `null`
    /// until both arms have finished deposits.
    pub uplift_permille: Option<i64>,
    /// The two-proportion z statistic of that difference; `null` as above.
    pub z: Option<f64>,
    /// Whether |z| ≥ 1.96: a difference this large would arise by chance in under 5% of
    /// periods if the two arms did equally well.
    pub significant: bool,
}

impl UpliftReport {
    fn of(hours: u32, rows: &[FinishedCount]) -> UpliftReport {
        let tally_of = |arm: Arm| {
            rows.iter().filter(|row| row.key.0 == arm.as_str()).fold(
                Tally::default(),
                |mut tally, row| {
                    tally.finished = tally.finished.saturating_add(count_of(row));
                    if approved(&row.status) {
                        tally.approved = tally.approved.saturating_add(count_of(row));
                    }
                    tally
                },
            )
        };
        let arms: Vec<ArmFigures> = [Arm::Exploit, Arm::Holdout, Arm::Explore]
            .into_iter()
            .map(|arm| {
                let tally = tally_of(arm);
                ArmFigures {
                    arm,
                    finished: tally.finished,
                    approved: tally.approved,
                    approval_permille: tally.approval_permille(),
                }
            })
            .collect();
        let (exploit, holdout) = (tally_of(Arm::Exploit), tally_of(Arm::Holdout));
        let uplift_permille = match (exploit.approval_permille(), holdout.approval_permille()) {
            (Some(e), Some(h)) => Some(i64::from(e) - i64::from(h)),
            _ => None,
        };
        let z = z_statistic(exploit, holdout);
        UpliftReport {
            hours,
            arms,
            uplift_permille,
            z,
            significant: z.is_some_and(|z| z.abs() >= Z_SIGNIFICANT),
        }
    }
}

/// The two-proportion z statistic (pooled), a measure and not money, so a float.
fn z_statistic(a: Tally, b: Tally) -> Option<f64> {
    if a.finished == 0 || b.finished == 0 {
        return None;
    }
    let (n_a, n_b) = (f64::from(a.finished), f64::from(b.finished));
    let (p_a, p_b) = (f64::from(a.approved) / n_a, f64::from(b.approved) / n_b);
    let pooled = f64::from(a.approved + b.approved) / (n_a + n_b);
    let spread = (pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)).sqrt();
    match spread > 0.0 {
        true => Some((p_a - p_b) / spread),
        false => Some(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arm: &str, status: &str, count: i64) -> FinishedCount {
        FinishedCount {
            key: (arm.into(), String::new(), String::new()),
            status: status.into(),
            count,
        }
    }

    #[test]
    fn the_uplift_is_exploit_minus_holdout_with_its_significance() {
        let rows = [
            row("exploit", "captured", 800),
            row("exploit", "refunded", 50),
            row("exploit", "declined", 150),
            row("holdout", "captured", 70),
            row("holdout", "declined", 30),
            row("explore", "failed", 4),
        ];
        let report = UpliftReport::of(24, &rows);
        assert_eq!(report.arms[0].approval_permille, Some(850));
        assert_eq!(report.arms[1].approval_permille, Some(700));
        assert_eq!(report.arms[2].approval_permille, Some(0));
        assert_eq!(report.uplift_permille, Some(150));
        let z = report.z.unwrap();
        assert!((3.8..3.95).contains(&z), "{z}");
        assert!(report.significant);
    }

    #[test]
    fn a_small_or_missing_holdout_claims_nothing() {
        let report = UpliftReport::of(24, &[row("exploit", "captured", 10)]);
        assert_eq!(report.uplift_permille, None);
        assert_eq!(report.z, None);
        assert!(!report.significant);
        let tiny = [
            row("exploit", "captured", 9),
            row("exploit", "declined", 1),
            row("holdout", "captured", 8),
            row("holdout", "declined", 2),
        ];
        let report = UpliftReport::of(24, &tiny);
        assert_eq!(report.uplift_permille, Some(100));
        assert!(!report.significant, "{:?}", report.z);
    }
}
