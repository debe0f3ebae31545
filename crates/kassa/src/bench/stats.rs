//! What one measured run produced, and the median over runs.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, up to a minute, with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Records one latency, clamping outliers into range instead of dropping them.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = (elapsed.as_micros() as u64).clamp(1, 60_000_000);
    histogram.saturating_record(micros);
}

/// One run of one cell of the matrix.
#[derive(Clone, Debug, Serialize)]
pub struct RunStats {
    /// Operations answered (acknowledged), whatever the business answer.
    pub ops: u64,
    /// Requests that failed (transport error, 5xx, unexpected status).
    pub errors: u64,
    /// Wall time of the measured window.
    pub elapsed_s: f64,
    /// `ops / elapsed_s`.
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Whether every correctness check after the run passed.
    pub checks_ok: bool,
    /// What the checks looked at, or what they found wrong.
    pub checks: Vec<String>,
}

impl RunStats {
    /// Records the replay check: `passed` says what was replayed when nothing went wrong;
    /// otherwise the first wrong answers and how many balances moved.
    pub fn record_replays(&mut self, passed: String, wrong_answers: &[String], moved_len: usize) {
        if wrong_answers.is_empty() && moved_len == 0 {
            self.checks.push(passed);
        } else {
            self.checks_ok = false;
            self.checks.push(format!(
                "replays: {} wrong answers {:?}, {moved_len} balances moved",
                wrong_answers.len(),
                &wrong_answers[..wrong_answers.len().min(3)],
            ));
        }
    }

    /// Records the balance check: `passed` says what was compared when every balance
    /// matched; otherwise how many differ from `expected_from` and the first few as
    /// (player, expected, actual).
    pub fn record_balances(
        &mut self,
        passed: String,
        expected_from: &str,
        mismatches: &[(usize, i64, i64)],
    ) {
        if mismatches.is_empty() {
            self.checks.push(passed);
        } else {
            self.checks_ok = false;
            self.checks.push(format!(
                "{} players' balances differ from {expected_from}, e.g. {:?}",
                mismatches.len(),
                &mismatches[..mismatches.len().min(5)]
            ));
        }
    }

    /// Summarises a run from its merged histogram.
    pub fn new(ops: u64, errors: u64, elapsed: Duration, histogram: &Histogram<u64>) -> RunStats {
        let elapsed_s = elapsed.as_secs_f64();
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        RunStats {
            ops,
            errors,
            elapsed_s,
            ops_per_s: if elapsed_s > 0.0 {
                ops as f64 / elapsed_s
            } else {
                0.0
            },
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: histogram.max() as f64 / 1000.0,
            checks_ok: true,
            checks: Vec::new(),
        }
    }
}

/// The median of each figure over runs, taken figure by figure.
#[derive(Clone, Debug, Serialize)]
pub struct Median {
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub checks_ok: bool,
}

impl Median {
    /// Median of `runs`; `None` when there are none.
    pub fn of(runs: &[RunStats]) -> Option<Median> {
        if runs.is_empty() {
            return None;
        }
        let median = |f: fn(&RunStats) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            if values.len() % 2 == 1 {
                values[mid]
            } else {
                (values[mid - 1] + values[mid]) / 2.0
            }
        };
        Some(Median {
            ops_per_s: median(|r| r.ops_per_s),
            p50_ms: median(|r| r.p50_ms),
            p95_ms: median(|r| r.p95_ms),
            p99_ms: median(|r| r.p99_ms),
            errors: runs.iter().map(|r| r.errors).sum(),
            checks_ok: runs.iter().all(|r| r.checks_ok),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_taken_figure_by_figure() {
        let run = |ops_per_s: f64, p99_ms: f64| RunStats {
            ops: 1,
            errors: 0,
            elapsed_s: 1.0,
            ops_per_s,
            p50_ms: 1.0,
            p95_ms: 1.0,
            p99_ms,
            max_ms: 1.0,
            checks_ok: true,
            checks: vec![],
        };
        let median = Median::of(&[run(3.0, 9.0), run(1.0, 7.0), run(2.0, 8.0)]).unwrap();
        assert_eq!(median.ops_per_s, 2.0);
        assert_eq!(median.p99_ms, 8.0);
        assert!(Median::of(&[]).is_none());
    }
}
